/**
 * An RFC 1413 (ident) client as DJB's remoteinfo(): connect from the
 * connection's local address to the client's port 113, ask
 * "REMOTEPORT , LOCALPORT\r\n", and take what follows the third colon of the
 * reply line, with spaces, tabs and CRs removed, at most 257 bytes. A reply
 * such as "... : ERROR : NO-USER" has no third colon and yields "" (a value:
 * $TCPREMOTEINFO set empty, as C does). Null (unset) on refusal, timeout, or
 * a reply that ends without a newline. The answer is a byte string (the
 * bytes sent, cut at a NUL as C's string is), as C passes it on.
 */
import net from "node:net";
import { byteString } from "../core/bytes.ts";

/** Most bytes of an answer kept: DJB's remoteinfo stops past 256. */
const MAX_ANSWER = 257;

/**
 * The reply parser, fed the reply as it arrives: spaces, tabs and CRs are
 * dropped, the answer is what follows the third colon, a newline or the
 * 257th answer byte ends it. Never throws; holds at most 257 bytes.
 */
export class IdentReplyParser {
  #out = new Uint8Array(MAX_ANSWER);
  #len = 0;
  #colons = 0;
  #done = false;

  /**
   * Feeds more of the reply. Returns the answer (a byte string cut at the
   * first NUL) once the reply is complete, else undefined (feed more; at
   * the connection's end the reply is incomplete: no answer).
   */
  feed(chunk: Uint8Array): string | undefined {
    if (this.#done) return undefined;
    for (let i = 0; i < chunk.length; i++) {
      const ch = chunk[i];
      if (ch === 32 || ch === 9 || ch === 13) continue;
      if (ch === 10) return this.#finish();
      if (this.#colons < 3) {
        if (ch === 58) this.#colons++;
      } else {
        this.#out[this.#len++] = ch;
        if (this.#len >= MAX_ANSWER) return this.#finish();
      }
    }
    return undefined;
  }

  #finish(): string {
    this.#done = true;
    const b = this.#out.subarray(0, this.#len);
    const nul = b.indexOf(0);
    return byteString(nul >= 0 ? b.subarray(0, nul) : b);
  }
}

/** The question: the connection as seen from the server. */
export interface IdentQuery {
  /** The client's address: its ident server is asked. */
  remoteIp: string;
  /** The client's port (first in the question). */
  remotePort: number;
  /** Our address, bound for the ident connection (so it comes from where the client knows). */
  localIp: string;
  /** Our port (second in the question). */
  localPort: number;
  /** Give up after this many milliseconds (tcpserver -t, in seconds x 1000). */
  timeoutMs: number;
  /** The ident port (default 113). */
  port?: number;
}

/** Asks the client's ident server who owns the connection (see the module comment). */
export function remoteInfo(q: IdentQuery): Promise<string | null> {
  return new Promise((resolve) => {
    const parser = new IdentReplyParser();
    let done = false;
    const sock = new net.Socket();
    const finish = (v: string | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => finish(null), Math.max(0, q.timeoutMs));
    sock.on("error", () => finish(null));
    sock.on("end", () => finish(null));
    sock.on("close", () => finish(null));
    sock.on("data", (chunk: Uint8Array) => {
      const answer = parser.feed(chunk);
      if (answer !== undefined) finish(answer);
    });
    sock.once("connect", () => sock.write(`${q.remotePort} , ${q.localPort}\r\n`));
    const v6 = q.remoteIp.includes(":");
    try {
      sock.connect({
        host: q.remoteIp,
        port: q.port ?? 113,
        localAddress: q.localIp,
        family: v6 ? 6 : 4,
      });
    } catch {
      // An address the socket refuses at once is an ident lookup that failed: no
      // $TCPREMOTEINFO, as when the ident server does not answer.
      finish(null);
    }
  });
}
