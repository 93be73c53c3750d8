/**
 * An RFC 1413 (ident) client as DJB's remoteinfo(): connect from the
 * connection's local address to the client's port 113, ask
 * "REMOTEPORT , LOCALPORT\r\n", and take what follows the third colon of the
 * reply line, with spaces, tabs and CRs removed, at most 257 bytes. A reply
 * such as "... : ERROR : NO-USER" has no third colon and yields "" (a value:
 * $TCPREMOTEINFO set empty, as C does). Null (unset) on refusal, timeout, or
 * a reply that ends without a newline.
 */
import net from "node:net";
import { networkString } from "./environ.ts";

/** The question: the connection as seen from the server. */
export interface IdentQuery {
  remoteIp: string;
  remotePort: number;
  localIp: string;
  localPort: number;
  /** Give up after this many milliseconds (tcpserver -t, in seconds x 1000). */
  timeoutMs: number;
  /** The ident port (default 113). */
  port?: number;
}

/** Asks the client's ident server who owns the connection (see the module comment). */
export function remoteInfo(q: IdentQuery): Promise<string | null> {
  return new Promise((resolve) => {
    const out: number[] = [];
    let colons = 0;
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
      for (let i = 0; i < chunk.length; i++) {
        const ch = chunk[i];
        if (ch === 32 || ch === 9 || ch === 13) continue;
        if (ch === 10) return finish(networkString(Uint8Array.from(out)));
        if (colons < 3) {
          if (ch === 58) colons++;
        } else {
          out.push(ch);
          if (out.length > 256) return finish(networkString(Uint8Array.from(out)));
        }
      }
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
      finish(null);
    }
  });
}
