/**
 * Line-end conversions over byte streams, as DJB's addcr, delcr and fixcrio
 * do them. Each conversion is a small incremental converter (`push` a chunk,
 * get the converted bytes; `end` at EOF) so state carries across chunk
 * boundaries, plus a TransformStream factory over it. Binary-safe: only CR
 * (13) and LF (10) are ever looked at. Chunks needing no change are passed
 * through without copying.
 */
import { concatBytes } from "../core/bytes.ts";

const CR = 13;
const LF = 10;
const EMPTY = new Uint8Array(0);

/** An incremental byte converter: `push` each chunk in order, then `end` once. */
export interface Converter {
  /** Converts the next chunk; may hold back bytes until the next call. */
  push(chunk: Uint8Array): Uint8Array;
  /**
   * As push, but writes into `out` (at least 2 * chunk.length + 1 bytes,
   * reusable) and returns how many bytes it wrote: no allocation per chunk.
   */
  pushInto?(chunk: Uint8Array, out: Uint8Array): number;
  /** Whatever was held back, at end of input. */
  end(): Uint8Array;
}

// Each conversion fills an output buffer: by copying the runs between the
// LFs it acts on when LFs are few (binary data; indexOf is a native memchr),
// or in one byte loop when lines are short (text), where per-run copies cost
// more. push fills a scratch buffer shared by all converters (push is
// synchronous, so nothing else can use it meanwhile) and copies the result
// out; a chunk needing no change is returned as is.

/** Runs of at least this many bytes per LF on average are copied, not looped. */
const SPARSE = 64;
/** Chunks up to this size use the shared scratch buffer; bigger get their own. */
const SCRATCH_MAX = 1 << 20;
let scratch = new Uint8Array(0);

function scratchFor(len: number): Uint8Array {
  const need = 2 * len + 1;
  if (len > SCRATCH_MAX) return new Uint8Array(need);
  if (scratch.length < need) scratch = new Uint8Array(Math.max(need, 2 * 65536 + 1));
  return scratch;
}

/** True when chunk has more than one LF per SPARSE bytes (stops counting there). */
function dense(chunk: Uint8Array): boolean {
  const limit = chunk.length / SPARSE;
  let n = 0;
  for (let i = chunk.indexOf(LF); i >= 0; i = chunk.indexOf(LF, i + 1)) {
    if (++n > limit) return true;
  }
  return false;
}

/** Copies chunk[from, to) into out at j; returns the new j. */
function run(chunk: Uint8Array, from: number, to: number, out: Uint8Array, j: number): number {
  if (to - from < 16) {
    for (let i = from; i < to; i++) out[j++] = chunk[i];
  } else {
    out.set(chunk.subarray(from, to), j);
    j += to - from;
  }
  return j;
}

/**
 * Fill for addcr (`always`) and fixcr: a CR before each LF whose preceding
 * byte (`before` stands for the one before the chunk) is not a CR.
 */
function insertFill(chunk: Uint8Array, out: Uint8Array, before: number, always: boolean): number {
  const len = chunk.length;
  let j = 0;
  if (dense(chunk)) {
    // two loops, not one with a flag: this is the hot path on text
    if (always) {
      for (let i = 0; i < len; i++) {
        const b = chunk[i];
        if (b === LF) out[j++] = CR;
        out[j++] = b;
      }
      return j;
    }
    if (chunk[0] === LF && before !== CR) out[j++] = CR;
    if (len > 0) out[j++] = chunk[0];
    for (let i = 1; i < len; i++) {
      const b = chunk[i];
      if (b === LF && chunk[i - 1] !== CR) out[j++] = CR;
      out[j++] = b;
    }
    return j;
  }
  let from = 0;
  for (let i = chunk.indexOf(LF); i >= 0; i = chunk.indexOf(LF, i + 1)) {
    if (always || (i > 0 ? chunk[i - 1] : before) !== CR) {
      j = run(chunk, from, i, out, j);
      out[j++] = CR;
      from = i;
    }
  }
  return run(chunk, from, len, out, j);
}

/** delcr's fill: `heldCr` is a CR held back from the chunk before. */
function delcrFill(chunk: Uint8Array, out: Uint8Array, heldCr: boolean): number {
  const len = chunk.length;
  let j = 0;
  if (heldCr && chunk[0] !== LF) out[j++] = CR; // the held CR survives
  const stop = chunk[len - 1] === CR ? len - 1 : len; // hold a final CR back
  if (dense(chunk)) {
    for (let i = 0; i < stop; i++) {
      const b = chunk[i];
      if (b === CR && chunk[i + 1] === LF) continue; // i + 1 < len here
      out[j++] = b;
    }
    return j;
  }
  let from = 0;
  for (let i = chunk.indexOf(LF, 1); i >= 0; i = chunk.indexOf(LF, i + 1)) {
    if (chunk[i - 1] === CR) {
      j = run(chunk, from, i - 1, out, j);
      from = i;
    }
  }
  return run(chunk, from, stop, out, j);
}

/**
 * A Converter that only inserts bytes and holds none back: a chunk that
 * came out as long as it went in is passed on as it is.
 */
function insertingConverter(
  pushInto: (chunk: Uint8Array, out: Uint8Array) => number,
): Converter {
  return {
    push(chunk) {
      const out = scratchFor(chunk.length);
      const j = pushInto(chunk, out);
      return j === chunk.length ? chunk : out.slice(0, j);
    },
    pushInto,
    end: () => EMPTY,
  };
}

/** addcr: a CR before every LF (also one already preceded by a CR); nothing at EOF. */
export function addcrConverter(): Converter {
  const pushInto = (chunk: Uint8Array, out: Uint8Array) => insertFill(chunk, out, 0, true);
  return insertingConverter(pushInto);
}

/**
 * delcr: drops the one CR right before each LF (so CR CR LF becomes CR LF);
 * a CR at the very end of the input (a partial final line) is kept.
 */
export function delcrConverter(): Converter {
  let heldCr = false; // the previous chunk ended in a CR, not yet written
  const pushInto = (chunk: Uint8Array, out: Uint8Array) => {
    if (chunk.length === 0) return 0;
    const j = delcrFill(chunk, out, heldCr);
    heldCr = chunk[chunk.length - 1] === CR;
    return j;
  };
  return {
    push(chunk) {
      const lead = heldCr && chunk.length > 0 && chunk[0] !== LF;
      const out = scratchFor(chunk.length);
      const j = pushInto(chunk, out);
      // Nothing added, nothing held back, and as long: nothing dropped either.
      return !lead && !heldCr && j === chunk.length ? chunk : out.slice(0, j);
    },
    pushInto,
    end() {
      const was = heldCr;
      heldCr = false;
      return was ? Uint8Array.of(CR) : EMPTY;
    },
  };
}

/**
 * fixcrio's conversion: a CR before each LF that does not already follow a
 * CR; CRs elsewhere are left alone. Idempotent.
 */
export function fixcrConverter(): Converter {
  let lastCr = false; // the last byte seen was a CR
  const pushInto = (chunk: Uint8Array, out: Uint8Array) => {
    if (chunk.length === 0) return 0;
    const j = insertFill(chunk, out, lastCr ? CR : 0, false);
    lastCr = chunk[chunk.length - 1] === CR;
    return j;
  };
  return insertingConverter(pushInto);
}

/** A TransformStream running a Converter; empty results are not enqueued. */
export function converterStream(conv: Converter): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      const out = conv.push(chunk);
      if (out.length) controller.enqueue(out);
    },
    flush(controller) {
      const out = conv.end();
      if (out.length) controller.enqueue(out);
    },
  });
}

/** addcr as a stream transform: CR inserted before each LF. */
export function addcr(): TransformStream<Uint8Array, Uint8Array> {
  return converterStream(addcrConverter());
}

/** delcr as a stream transform: the CR before each LF removed. */
export function delcr(): TransformStream<Uint8Array, Uint8Array> {
  return converterStream(delcrConverter());
}

/** fixcrio's transform (either direction): missing CRs before LFs inserted. */
export function fixcr(): TransformStream<Uint8Array, Uint8Array> {
  return converterStream(fixcrConverter());
}

/** Runs a Converter over a whole buffer at once (tests, small messages). */
export function convertAll(conv: Converter, data: Uint8Array): Uint8Array {
  const a = conv.push(data);
  return concatBytes(a, conv.end());
}

/**
 * A readable that runs `conv` over `src`, reading `src` only when its own
 * reader asks (no read-ahead: a stage never takes bytes the next program has
 * not asked for). At EOF of `src` runs `conv.end()`; a cancel is passed on to
 * `src` without it (DJB's tools just stop).
 */
export function pullThrough(
  src: ReadableStream<Uint8Array>,
  conv: Converter,
): ReadableStream<Uint8Array> {
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  let cancelled = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      reader ??= src.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (cancelled) return; // a read still pending when we were cancelled
        if (done) {
          const tail = conv.end();
          if (tail.length) controller.enqueue(tail);
          controller.close();
          return;
        }
        if (!value.length) continue;
        const out = conv.push(value);
        if (out.length) {
          controller.enqueue(out);
          return;
        }
      }
    },
    cancel(reason) {
      cancelled = true;
      return reader ? reader.cancel(reason) : src.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/**
 * A writable that runs `conv` over what is written and writes the result to
 * `dst`. Closing it runs `conv.end()` and closes `dst`; aborting it aborts
 * `dst` without `conv.end()`.
 */
export function writeThrough(
  dst: WritableStream<Uint8Array>,
  conv: Converter,
): WritableStream<Uint8Array> {
  let writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  const w = () => (writer ??= dst.getWriter());
  return new WritableStream<Uint8Array>({
    async write(chunk) {
      if (!chunk.length) return;
      const out = conv.push(chunk);
      if (out.length) await w().write(out);
    },
    async close() {
      const tail = conv.end();
      if (tail.length) await w().write(tail);
      await w().close();
    },
    async abort(reason) {
      await w().abort(reason);
    },
  });
}
