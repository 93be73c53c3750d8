/**
 * Line-end conversions over byte streams, as DJB's addcr, delcr and fixcrio
 * do them. Each conversion is a small incremental converter (`push` a chunk,
 * get the converted bytes; `end` at EOF) so state carries across chunk
 * boundaries, plus a TransformStream factory over it. Binary-safe: only CR
 * (13) and LF (10) are ever looked at. Chunks needing no change are passed
 * through without copying.
 */

const CR = 13;
const LF = 10;
const EMPTY = new Uint8Array(0);

/** An incremental byte converter: `push` each chunk in order, then `end` once. */
export interface Converter {
  /** Converts the next chunk; may hold back bytes until the next call. */
  push(chunk: Uint8Array): Uint8Array;
  /** Whatever was held back, at end of input. */
  end(): Uint8Array;
}

/**
 * Copies `chunk` into a new buffer with a CR inserted before every LF at the
 * given positions (ascending).
 */
function insertCrs(chunk: Uint8Array, at: number[]): Uint8Array {
  const out = new Uint8Array(chunk.length + at.length);
  let from = 0;
  let to = 0;
  for (const i of at) {
    out.set(chunk.subarray(from, i), to);
    to += i - from;
    out[to++] = CR;
    from = i;
  }
  out.set(chunk.subarray(from), to);
  return out;
}

/** addcr: a CR before every LF (also one already preceded by a CR); nothing at EOF. */
export function addcrConverter(): Converter {
  return {
    push(chunk) {
      const at: number[] = [];
      for (let i = chunk.indexOf(LF); i >= 0; i = chunk.indexOf(LF, i + 1)) at.push(i);
      return at.length ? insertCrs(chunk, at) : chunk;
    },
    end: () => EMPTY,
  };
}

/**
 * delcr: drops the one CR right before each LF (so CR CR LF becomes CR LF);
 * a CR at the very end of the input (a partial final line) is kept.
 */
export function delcrConverter(): Converter {
  let heldCr = false; // the previous chunk ended in a CR, not yet written
  return {
    push(chunk) {
      if (chunk.length === 0) return chunk;
      const drop: number[] = []; // positions of CRs to remove
      for (let i = chunk.indexOf(LF); i >= 0; i = chunk.indexOf(LF, i + 1)) {
        if (i > 0 && chunk[i - 1] === CR) drop.push(i - 1);
      }
      const lead = heldCr && chunk[0] !== LF; // the held CR survives
      const hold = chunk[chunk.length - 1] === CR;
      heldCr = hold;
      if (!lead && !hold && drop.length === 0) return chunk;
      const keep = chunk.length - drop.length - (hold ? 1 : 0);
      const out = new Uint8Array(keep + (lead ? 1 : 0));
      let to = 0;
      if (lead) out[to++] = CR;
      let from = 0;
      const stop = hold ? chunk.length - 1 : chunk.length;
      for (const i of drop) {
        out.set(chunk.subarray(from, i), to);
        to += i - from;
        from = i + 1;
      }
      out.set(chunk.subarray(from, stop), to);
      return out;
    },
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
  return {
    push(chunk) {
      if (chunk.length === 0) return chunk;
      const at: number[] = [];
      for (let i = chunk.indexOf(LF); i >= 0; i = chunk.indexOf(LF, i + 1)) {
        const prevCr = i > 0 ? chunk[i - 1] === CR : lastCr;
        if (!prevCr) at.push(i);
      }
      lastCr = chunk[chunk.length - 1] === CR;
      return at.length ? insertCrs(chunk, at) : chunk;
    },
    end: () => EMPTY,
  };
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
  const b = conv.end();
  if (!b.length) return a;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
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
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      reader ??= src.getReader();
      for (;;) {
        const { value, done } = await reader.read();
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
