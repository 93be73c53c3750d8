/**
 * The banner step (-B): written to the client before the peer-info
 * lookups, as C's doit() writes it before it looks anything up. On the
 * native path it goes straight to the socket (which stays pristine: the
 * program can still get the socket itself); over a wrapped stream (TLS)
 * through that stream.
 */
import type { Connection } from "../connection.ts";
import type { Io } from "../../stages/stage.ts";

const enc = new TextEncoder();

/** Writes banner (text from the command line) to the client; throws when it cannot. */
export async function writeBanner(
  c: Connection,
  wrapped: Io | null,
  banner: string,
): Promise<void> {
  const bytes = enc.encode(banner);
  if (!wrapped && c.write) return await c.write(bytes);
  const w = (wrapped ?? c.io()).output.getWriter();
  try {
    await w.write(bytes);
  } finally {
    w.releaseLock();
  }
}
