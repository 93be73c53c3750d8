/**
 * The connection-side pieces of ucspitlsd's options: reading the client's
 * ClientHello ahead of the handshake for its server name (-k), and the two
 * ways the tunnel's end can reach the client (-S, -s). The decisions are
 * ucspitlsd's (lib/tls/ucspitlsd.ts); the ClientHello parser is pure
 * (lib/tls/client_hello.ts).
 */
import { CLIENT_HELLO_MAX, clientHelloName } from "./client_hello.ts";
import type { StreamPair } from "./streams.ts";
import type { TlsSession } from "./tls.ts";

/** A connection whose first bytes were read ahead, and the name they asked for. */
export interface Peeked {
  /** The server name of the ClientHello, lower case, or null. */
  name: string | null;
  /** The same connection, the bytes read ahead first. */
  pair: StreamPair;
}

/** The most bytes read ahead: a whole ClientHello in records of any size. */
const PEEK_MAX = CLIENT_HELLO_MAX + 5 * 16;

/**
 * Reads pair's input until its ClientHello is complete (or is none, or the
 * client stops sending, or `deadline` passes) and returns its server name
 * with a pair that gives the handshake every byte, in order.
 */
export async function peekServerName(pair: StreamPair, deadline: Promise<void>): Promise<Peeked> {
  const reader = pair.readable.getReader();
  const chunks: Uint8Array[] = [];
  let have = 0;
  let name: string | null = null;
  let ended = false;
  // a read still on its way when the deadline passed: the handshake gets its bytes first
  let pending: Promise<ReadableStreamReadResult<Uint8Array>> | null = null;
  const late = deadline.then(() => "late" as const);
  for (;;) {
    const read = reader.read();
    const r = await Promise.race([read, late]);
    if (r === "late") {
      pending = read;
      // its failure, if nobody reads on, is the connection's end: never an unhandled rejection
      read.catch(() => {});
      break;
    }
    if (r.done) {
      ended = true;
      break;
    }
    chunks.push(r.value);
    have += r.value.length;
    const data = new Uint8Array(have);
    let at = 0;
    for (const c of chunks) {
      data.set(c, at);
      at += c.length;
    }
    const scan = clientHelloName(data);
    if ("name" in scan) {
      name = scan.name;
      break;
    }
    if (have > PEEK_MAX) break;
  }
  const readable = new ReadableStream<Uint8Array>({
    async pull(c) {
      const next = chunks.shift();
      if (next) return c.enqueue(next);
      if (ended) return c.close();
      try {
        const { value, done } = await (pending ?? reader.read());
        pending = null;
        if (done) c.close();
        else c.enqueue(value);
      } catch (e) {
        c.error(e);
      }
    },
    cancel(reason) {
      return reader.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
  return { name, pair: { ...pair, readable } };
}

/**
 * A TLS record splitter's state: where records begin in the bytes written.
 * Bytes before the session ends go straight through; once it is closing,
 * they are held, so that the last record (the close_notify node:tls writes
 * on end()) can be left out.
 */
class RecordFrames {
  /** Header bytes of the current record seen so far (0-5). */
  #header = new Uint8Array(5);
  #headerHave = 0;
  /** Body bytes of the current record still to come. */
  #body = 0;

  /** Offsets in chunk where a record begins. */
  starts(chunk: Uint8Array): number[] {
    const out: number[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.#body > 0) {
        const n = Math.min(this.#body, chunk.length - at);
        this.#body -= n;
        at += n;
        continue;
      }
      if (this.#headerHave === 0) out.push(at);
      this.#header[this.#headerHave++] = chunk[at++];
      if (this.#headerHave === 5) {
        this.#body = (this.#header[3] << 8) | this.#header[4];
        this.#headerHave = 0;
      }
    }
    return out;
  }
}

/** What withoutCloseNotify gives. */
export interface QuietEnd {
  /** The pair acceptTls runs over. */
  pair: StreamPair;
  /** Called just before the session's plaintext output is ended: hold what it writes from now. */
  closing(): void;
  /**
   * Called once the session's output has ended: sends what was held but its
   * last record (the close_notify), then half-closes the connection.
   */
  finish(): Promise<void>;
}

/**
 * -s: the connection under a TLS session whose local end goes out as a TCP
 * half-close without close_notify (see QuietEnd). An end the client started
 * (its own close_notify answered) is not touched.
 */
export function withoutCloseNotify(pair: StreamPair): QuietEnd {
  const writer = pair.writable.getWriter();
  const frames = new RecordFrames();
  let state: "open" | "closing" | "closed" = "open";
  const held: Uint8Array[] = [];
  let heldLength = 0;
  let lastStart = -1;
  let last: Promise<unknown> = Promise.resolve();
  async function finish(): Promise<void> {
    if (state === "closed") return;
    const wasClosing = state === "closing";
    state = "closed";
    await last.catch(() => {});
    if (wasClosing && heldLength > 0) {
      const keep = lastStart < 0 ? heldLength : lastStart;
      const all = new Uint8Array(heldLength);
      let at = 0;
      for (const c of held) {
        all.set(c, at);
        at += c.length;
      }
      if (keep > 0) await writer.write(all.subarray(0, keep)).catch(() => {});
    }
    await writer.close().catch(() => {});
  }
  const writable = new WritableStream<Uint8Array>({
    write(chunk) {
      const starts = frames.starts(chunk);
      if (state === "open") return (last = writer.write(chunk));
      if (state === "closed") return;
      if (starts.length) lastStart = heldLength + starts[starts.length - 1];
      held.push(chunk);
      heldLength += chunk.length;
    },
    close: finish,
    abort() {
      state = "closed";
      return writer.abort().catch(() => {});
    },
  });
  return {
    pair: { ...pair, writable },
    closing() {
      if (state === "open") state = "closing";
    },
    finish,
  };
}

/**
 * The plaintext side of session with the tunnel's end handled as -S or -s
 * say: "break" (-S) ends the session (close_notify) and then breaks the
 * connection, so the tunnel's input ends too; "eof" (-s) ends it through
 * `quiet` (withoutCloseNotify's), so the client gets a half-close without
 * close_notify and the tunnel's input stays open.
 */
export function tunnelEnd(session: TlsSession, how: "break" | "eof", quiet?: QuietEnd): StreamPair {
  const writer = session.writable.getWriter();
  const writable = new WritableStream<Uint8Array>({
    write: (chunk) => writer.write(chunk),
    async close() {
      if (how === "eof") quiet?.closing();
      await writer.close().catch(() => {});
      if (how === "break") session.shutdown();
      else await quiet?.finish();
    },
    abort: (reason) => writer.abort(reason).catch(() => {}),
  });
  return { ...session, writable };
}
