/**
 * The byte streams under and over node:tls: a node Duplex adapting a
 * connection's Web stream pair (what TLSSocket runs over), the plaintext
 * side of a TLS socket as Web streams again, flow control done below TLS
 * (InputGate, because of a Deno node:tls bug, see keepEofDeliverable), and
 * the lingering close that lets our last data reach a peer still sending.
 */
import { Duplex } from "node:stream";
import type tls from "node:tls";

/** A connection as two Web streams. */
export interface StreamPair {
  /** What the peer sends. */
  readable: ReadableStream<Uint8Array>;
  /** What goes to the peer. */
  writable: WritableStream<Uint8Array>;
  /** Closes the whole connection at once (Deno.Conn's close), when available. */
  close?: () => void;
  /**
   * Lingering close (servers): after our end went out, read and discard
   * what the peer still sends until it closes or is quiet this many
   * milliseconds, before closing. Closing with unread input makes the
   * kernel send a reset, which throws away our last data still on its way
   * (and the close_notify), so a client that was still sending when the
   * program exited would lose the end of the answer.
   */
  lingerMs?: number;
  /**
   * The accepted Deno socket under `readable` and `writable`, untouched:
   * acceptTls then runs node:tls on its native handle instead (see
   * lib/tls/tcp_handle.ts) and closes it with `close`.
   */
  tcp?: Deno.TcpConn;
}

/**
 * Flow control for the encrypted input: open while the plaintext reader has
 * room. Closing it stops reading the connection (so the peer's sending
 * blocks in TCP, as with a plain socket), instead of asking node:tls to stop
 * reading (see keepEofDeliverable). `reading`, for a TLS socket on a native
 * handle, stops and starts that handle's reads; duplexOver checks `open`
 * itself.
 */
export class InputGate {
  #open = true;
  #waiters: Array<() => void> = [];
  #reading?: { stop(): void; start(): void };
  /** `reading`: what stops and restarts the reads of a native handle. */
  constructor(reading?: { stop(): void; start(): void }) {
    this.#reading = reading;
  }
  /** Whether the connection may be read now. */
  get open(): boolean {
    return this.#open;
  }
  /** Stops reading: the plaintext reader is full. */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#reading?.stop();
  }
  /** Reads on, running what waited for it. */
  release(): void {
    if (!this.#open) {
      this.#open = true;
      this.#reading?.start();
    }
    for (const w of this.#waiters.splice(0)) w();
  }
  /** Runs f now if open, else once released. */
  when(f: () => void): void {
    if (this.#open) f();
    else this.#waiters.push(f);
  }
}

/**
 * A node Duplex over a Web stream pair (what node:tls needs underneath).
 * Reads the pair only while `gate` is open. Destroying it lets writes
 * already accepted reach the socket first (a TLS alert, Finished or
 * close_notify message), then closes the connection.
 */
export function duplexOver(pair: StreamPair, gate: InputGate): Duplex {
  const reader = pair.readable.getReader();
  const writer = pair.writable.getWriter();
  let last: Promise<unknown> = Promise.resolve();
  let closing = false;
  return new Duplex({
    allowHalfOpen: true,
    read() {
      gate.when(() =>
        reader.read().then(
          ({ value, done }) => {
            if (done) this.push(null);
            else this.push(value);
          },
          () => this.push(null),
        )
      );
    },
    write(chunk: Uint8Array, _enc, cb) {
      last = writer.write(chunk);
      last.then(() => cb(), (e) => cb(e as Error));
    },
    final(cb) {
      closing = true;
      last = writer.close();
      last.then(() => cb(), () => cb());
    },
    destroy(err, cb) {
      gate.release();
      const linger = !err && (pair.lingerMs ?? 0) > 0;
      if (!linger) reader.cancel().catch(() => {});
      last.catch(() => {}).finally(async () => {
        if (!closing) await writer.close().catch(() => {});
        if (linger) await drain(reader, pair.lingerMs!);
        try {
          pair.close?.();
        } catch { /* already closed */ }
      });
      cb(err);
    },
  });
}

/** Reads and discards until the end, an error, or ms without data. */
async function drain(reader: ReadableStreamDefaultReader<Uint8Array>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let quiet = false;
  // A peer that never stops sending must not hold the connection (and a -c
  // slot) forever: the whole linger is bounded too.
  const cap = setTimeout(() => {
    quiet = true;
    reader.cancel().catch(() => {});
  }, ms * LINGER_CAP_FACTOR);
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      quiet = true;
      reader.cancel().catch(() => {});
    }, ms);
  };
  try {
    for (;;) {
      arm();
      const { done } = await reader.read();
      if (done || quiet) break;
    }
  } catch {
    /* reset or cancelled: done */
  } finally {
    clearTimeout(timer);
    clearTimeout(cap);
    reader.cancel().catch(() => {});
  }
}

/** A lingering close lasts at most this many times its quiet time. */
const LINGER_CAP_FACTOR = 5;

/**
 * Works around a Deno 2.9 node:tls bug that loses the peer's end of data.
 * When node:tls stops reading (readStop: its buffer is full, or pause()),
 * Deno's TLSWrap parks decrypted data and a received close_notify; on the
 * next readStart it hands over the parked data first, and if that fills the
 * buffer again node:tls calls readStop inside readStart, and the parked
 * end-of-data is then delivered to no one and forgotten: the peer's
 * half-close never shows as 'end', and the connection hangs (seen with bulk
 * traffic both ways when one side half-closes). Deno's readStop does not
 * stop the underlying input anyway (the parked data grows without bound),
 * so it is made a no-op here: decrypted data always goes straight into the
 * socket's buffer and the close_notify always becomes 'end'. Flow control
 * is done below TLS instead (InputGate for our adapter; for a native
 * socket Deno's TLS layer reads on regardless, as before).
 */
export function keepEofDeliverable(sock: tls.TLSSocket): void {
  const handle = (sock as unknown as { _handle?: { readStop?: () => number } })._handle;
  if (handle && typeof handle.readStop === "function") handle.readStop = () => 0;
}

/** A TLS socket over pair whose end also ends the connection underneath. */
export function tieDown(sock: tls.TLSSocket, duplex: Duplex): tls.TLSSocket {
  sock.once("close", () => duplex.destroy());
  return sock;
}

/**
 * The plaintext side of a TLS connection as Web streams. The socket is never
 * paused (see keepEofDeliverable); when the reader falls behind, `gate`
 * (if any) stops reading the connection underneath until it catches up.
 *
 * `onNativeHandle`, for a server's socket on Deno's native TCP handle whose
 * session ends with lingeringClose:
 * - closing the writable while the peer is still sending leaves the TLS
 *   end (close_notify) until the peer's input has ended or the socket
 *   closes. On a native handle Deno sends the TCP FIN together with the
 *   close_notify, and a Deno or Node client still uploading then stops
 *   sending (the upload is cut short); over the JS adapter no FIN goes
 *   before the session ends, and a client finishes its upload.
 * - cancelling the readable only discards the input, and aborting the
 *   writable does nothing: destroying a native socket closes it at once,
 *   and with the peer's unread data in it the kernel resets the connection
 *   and throws away our last data (the JS adapter's destroy lingers
 *   itself). The session's lingering close ends it.
 */
export function streamsOf(
  sock: tls.TLSSocket,
  gate?: InputGate,
  onNativeHandle = false,
): StreamPair {
  let ended = false;
  let cancelled = false;
  const readable = new ReadableStream<Uint8Array>({
    start(controller) {
      const finish = () => {
        if (ended) return;
        ended = true;
        if (cancelled) return;
        try {
          controller.close();
        } catch { /* cancelled */ }
      };
      sock.on("data", (chunk: Uint8Array) => {
        if (cancelled || ended) return;
        controller.enqueue(new Uint8Array(chunk));
        if ((controller.desiredSize ?? 0) <= 0) gate?.close();
      });
      sock.on("end", finish);
      sock.on("close", finish);
      sock.on("error", () => {/* reported through close; logged by the caller */});
    },
    pull() {
      gate?.release();
    },
    cancel() {
      // Nobody reads any more: discard what comes (never stall the peer's
      // close), and close the connection once our own data is out.
      cancelled = true;
      gate?.release();
      if (onNativeHandle) return;
      if (sock.writableFinished || sock.destroyed) sock.destroy();
      else sock.once("finish", () => sock.destroy());
    },
  }, { highWaterMark: 4 });
  const writable = new WritableStream<Uint8Array>({
    write(chunk) {
      if (sock.destroyed) return Promise.reject(new Error("connection closed"));
      return new Promise<void>((resolve, reject) => {
        const ok = sock.write(chunk, (err?: Error | null) => {
          if (err && ok) reject(err);
        });
        if (ok) resolve();
        else {
          const done = () => {
            sock.off("drain", done);
            sock.off("close", done);
            if (sock.destroyed && !sock.writableFinished) reject(new Error("connection closed"));
            else resolve();
          };
          sock.on("drain", done);
          sock.on("close", done);
        }
      });
    },
    close() {
      return new Promise<void>((resolve) => {
        if (sock.destroyed) return resolve();
        if (onNativeHandle && !sock.readableEnded) {
          const endNow = () => {
            sock.off("end", endNow);
            sock.off("close", endNow);
            if (!sock.destroyed && !sock.writableEnded) sock.end();
          };
          sock.once("end", endNow);
          sock.once("close", endNow);
          return resolve();
        }
        sock.end(() => resolve());
        sock.once("close", () => resolve());
      });
    },
    abort() {
      // on a native handle the session's lingering close ends it (see above)
      if (!onNativeHandle) sock.destroy();
    },
  });
  return { readable, writable };
}

/**
 * Lingering close of a TLS socket (what StreamPair.lingerMs does for a
 * session over a stream pair, for a node TLS socket such as the one
 * connectTlsSocket gives): ends our side (close_notify) if not yet done,
 * then reads and discards what the peer still sends until it ends, fails
 * or is quiet ms milliseconds, and destroys the socket once our own data
 * is out. Resolves when the socket is closed.
 */
export async function lingeringClose(sock: tls.TLSSocket, ms: number): Promise<void> {
  if (!sock.writableEnded && !sock.destroyed) sock.end();
  if (!sock.destroyed && !sock.readableEnded) {
    // streamsOf's reader, cancelled by drain, destroys sock after our end;
    // resume: a pipe's backpressure may have left sock paused.
    const reader = streamsOf(sock).readable.getReader();
    sock.resume();
    await drain(reader, ms);
  } else if (!sock.destroyed) {
    if (sock.writableFinished) sock.destroy();
    else sock.once("finish", () => sock.destroy());
  }
  if (!sock.closed) await new Promise((r) => sock.once("close", r));
}
