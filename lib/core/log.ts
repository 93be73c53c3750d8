/**
 * Log lines on stderr, the one definition of how they become bytes and how
 * they are written. A log line is a byte string where it carries connection
 * data (recordio's packets, host names, ident answers): chars 0-255 are one
 * byte each; anything above 255 (text that was never a byte string) is UTF-8.
 *
 * Two writers, each for its use; neither throws. A log line is never worth a
 * failure: DJB's strerr_warn and buffer_2 ignore a failed write to fd 2, and
 * a server whose log pipe went away must go on serving (supervise restarts
 * the logger; the lines in between are lost, as with C).
 * - `stderrLine`: one synchronous write per line, at once (tcpserver's
 *   status/ok/end lines, warnings), so it precedes what happens next.
 * - `stderrLog`: the lines of one turn of the event loop gathered and written
 *   together in writes of at most PIPE_BUF bytes (recordio logs a line per
 *   packet and direction); `flushLog` writes what is gathered now (before
 *   the process ends).
 */
import { stringBytes } from "./bytes.ts";
import { writeAllSync } from "./write_all.ts";

const utf8 = new TextEncoder();
const WIDE = /[^\0-\xff]/;

/**
 * A log line as the bytes to write: chars 0-255 are one byte each (log lines
 * carrying connection data are byte strings), anything above is UTF-8.
 */
export function logLineBytes(line: string): Uint8Array {
  if (!WIDE.test(line)) return stringBytes(line);
  const parts: number[] = [];
  for (const ch of line) {
    const c = ch.codePointAt(0)!;
    if (c <= 255) parts.push(c);
    else parts.push(...utf8.encode(ch));
  }
  return Uint8Array.from(parts);
}

/** Writes to stderr, ignoring a failure (see the module comment: a log line never fails). */
function toStderr(bytes: Uint8Array): void {
  try {
    writeAllSync(Deno.stderr, bytes);
  } catch { /* stderr gone: nothing to tell, and nobody to tell it to */ }
}

let lineBuf = new Uint8Array(256);

/**
 * Writes one log line (newline added) to stderr now, in one write when it
 * fits one (DJB's buffer_2 flush per line); never throws.
 */
export function stderrLine(line: string): void {
  const n = line.length;
  if (lineBuf.length < n + 1) lineBuf = new Uint8Array(n * 2 + 1);
  for (let i = 0; i < n; i++) {
    const c = line.charCodeAt(i);
    if (c > 255) return toStderr(logLineBytes(line + "\n"));
    lineBuf[i] = c;
  }
  lineBuf[n] = 10;
  toStderr(lineBuf.subarray(0, n + 1));
}

/** Log bytes gathered in this turn of the event loop, written together. */
const LOG_BATCH = 4096; // PIPE_BUF: a write up to this size is never split
const logBuf = new Uint8Array(LOG_BATCH);
let logLen = 0;
let flushQueued = false;

/** Writes the lines stderrLog gathered so far (a no-op when there are none). */
export function flushLog(): void {
  flushQueued = false;
  if (logLen === 0) return;
  const n = logLen;
  logLen = 0;
  toStderr(logBuf.subarray(0, n));
}

/**
 * Writes one log line (newline added) to stderr. Lines logged in the same
 * turn of the event loop (recordio's lines for one packet) go out in one
 * write of at most 4096 bytes, so, as with DJB's line-per-write, no line is
 * ever split by another writer; a longer line is one write of its own.
 * Never throws.
 */
export function stderrLog(line: string): void {
  const n = line.length;
  if (logLen + n + 1 > LOG_BATCH) flushLog();
  let narrow = n + 1 <= LOG_BATCH;
  if (narrow) {
    // one byte per char, straight into the batch (the common case)
    for (let i = 0; i < n; i++) {
      const c = line.charCodeAt(i);
      if (c > 255) {
        narrow = false;
        break;
      }
      logBuf[logLen + i] = c;
    }
  }
  if (narrow) {
    logBuf[logLen + n] = 10;
    logLen += n + 1;
  } else {
    const bytes = logLineBytes(line + "\n");
    if (logLen + bytes.length > LOG_BATCH) flushLog();
    if (bytes.length > LOG_BATCH) {
      toStderr(bytes);
      return;
    }
    logBuf.set(bytes, logLen);
    logLen += bytes.length;
  }
  if (!flushQueued) {
    flushQueued = true;
    queueMicrotask(flushLog);
  }
}
