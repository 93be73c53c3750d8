/**
 * Reading a PROXY header from a stream: bounded in time and in size (never
 * more than the header's bound), handing back the bytes that followed it in
 * the same reads, and a stream that yields those bytes first and then the
 * rest of the connection (they belong to the program, or to TLS).
 */

import { INCOMPLETE, parseProxyHeader, type ProxyHeader, type ProxyLimits } from "./header.ts";

/** Why a header read failed: a protocol error, a timeout, or the peer hung up early. */
export type ProxyReadFailure = "invalid" | "timeout" | "eof";

/** A header read that failed; `message` says why (for the log). */
export class ProxyReadError extends Error {
  /** `kind` tells the caller how to log and count the failure. */
  constructor(message: string, readonly kind: ProxyReadFailure) {
    super(message);
    this.name = "ProxyReadError";
  }
}

/** Bounds for readProxyHeader. */
export interface ReadOptions extends ProxyLimits {
  /** Give up after this many milliseconds (default 10000). */
  timeoutMs?: number;
}

/** A header read from a stream, and the bytes that came after it. */
export interface ProxyRead {
  /** The header as decoded. */
  header: ProxyHeader;
  /** Bytes already read past the header: the start of the real conversation. */
  rest: Uint8Array;
}

/**
 * Reads one header from `reader`, never more than the header's bound in total
 * (v1: 107 bytes; v2: 16 + maxV2Length), within timeoutMs. Bytes that arrived in
 * the same reads after the header are returned as `rest`. The reader stays
 * locked to the caller, who goes on reading the conversation from it.
 * Throws ProxyReadError (invalid / timeout / eof).
 */
export async function readProxyHeader(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  opts: ReadOptions = {},
): Promise<ProxyRead> {
  const timeoutMs = opts.timeoutMs ?? 10000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ProxyReadError("timed out reading PROXY header", "timeout")),
      timeoutMs,
    );
  });
  // The bytes so far are store[0, len): the store doubles when full, so a
  // header dribbled in one byte per read costs linear copying, not quadratic.
  let store = new Uint8Array(256);
  let len = 0;
  let buf = store.subarray(0, 0);
  try {
    while (true) {
      let parsed: ProxyHeader | typeof INCOMPLETE;
      try {
        parsed = parseProxyHeader(buf, opts);
      } catch (e) {
        throw new ProxyReadError((e as Error).message, "invalid");
      }
      if (parsed !== INCOMPLETE) {
        return { header: parsed, rest: buf.slice(parsed.length) };
      }
      const { value, done } = await Promise.race([reader.read(), timedOut]);
      if (done) {
        throw new ProxyReadError(
          buf.length ? "connection closed inside PROXY header" : "no PROXY header",
          "eof",
        );
      }
      if (value.length === 0) continue;
      if (len + value.length > store.length) {
        const next = new Uint8Array(Math.max(2 * store.length, len + value.length));
        next.set(store.subarray(0, len));
        store = next;
      }
      store.set(value, len);
      len += value.length;
      buf = store.subarray(0, len);
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A stream that yields `first` (when not empty) and then the rest of
 * `reader`: the conversation after a header, as the program must see it.
 * Cancelling it cancels the reader.
 */
export function prependBytes(
  first: Uint8Array,
  reader: ReadableStreamDefaultReader<Uint8Array>,
): ReadableStream<Uint8Array> {
  let pending: Uint8Array | null = first.length ? first : null;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (pending) {
        controller.enqueue(pending);
        pending = null;
        return;
      }
      try {
        const { value, done } = await reader.read();
        if (done) {
          controller.close();
          reader.releaseLock();
        } else controller.enqueue(value);
      } catch (e) {
        controller.error(e);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
