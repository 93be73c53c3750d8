/**
 * Writing all of a buffer: Deno's write/writeSync may write less than asked
 * (a pipe, a socket, a signal), and DJB's buffer_put loops until all is
 * out. The one definition of that loop, for files, stdio and sockets.
 */

/** Anything with Deno's synchronous partial write (Deno.stdout, Deno.FsFile). */
export interface SyncWriter {
  /** Writes some of p; returns how many bytes. */
  writeSync(p: Uint8Array): number;
}

/** Anything with Deno's asynchronous partial write (Deno.Conn, Deno.stdout, Deno.FsFile). */
export interface AsyncWriter {
  /** Writes some of p; resolves how many bytes. */
  write(p: Uint8Array): Promise<number>;
}

/** Writes all of data with w.writeSync; throws what writeSync throws (the rest unwritten). */
export function writeAllSync(w: SyncWriter, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += w.writeSync(data.subarray(off));
}

/** Writes all of data with w.write; rejects with what write rejects (the rest unwritten). */
export async function writeAll(w: AsyncWriter, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await w.write(data.subarray(off));
}
