/**
 * The limits step's I/O (the policy is lib/server/limits.ts's): a client
 * over MAXLOAD, MAXCONNIP or MAXCONNC gets its DIEMSG and CRLF, then the
 * close; without a message the connection is closed after a second (as the
 * patched C tcpservers do), without holding a -c slot meanwhile.
 */
import { stringBytes } from "../../core/bytes.ts";
import type { Io } from "../../stages/stage.ts";

/** How long a refused client without a message waits for the close. */
export const SILENT_CLOSE_MS = 1000;

/**
 * Turns a refused client away: writes message (a byte string: rules and
 * environment values are bytes) and CRLF over io and closes its output; or,
 * for a null message, calls closeLater after SILENT_CLOSE_MS.
 */
export async function turnAway(
  io: () => Io,
  message: string | null,
  closeLater: () => void,
): Promise<void> {
  if (message === null) {
    setTimeout(closeLater, SILENT_CLOSE_MS);
    return;
  }
  const w = io().output.getWriter();
  try {
    await w.write(stringBytes(message + "\r\n"));
    await w.close();
  } catch { /* the client is gone: nothing to tell it */ }
}
