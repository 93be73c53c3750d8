/**
 * Seeded fuzzing for the parsers of outside input. A target is a function over
 * one input that may throw only the module's own typed error; anything else
 * (a TypeError, a RangeError, a hang, an oversized result) is a finding.
 * `fuzzTest` registers a bounded run in `deno test`; `deno task fuzz`
 * (scripts/fuzz.ts) runs every target in tests/fuzz/ for as long as asked and
 * prints the seed and input of any failure, so it reproduces with
 * `deno task fuzz --seed N --target NAME`.
 */
import { prng } from "./helpers.ts";

/** A random source in [0, 1), seeded. */
export type Rand = () => number;

/** One parser under test. */
export interface FuzzTarget {
  /** Short name (the file's name without _test.ts). */
  name: string;
  /** Valid or interesting inputs the mutator starts from. */
  seeds: Uint8Array[];
  /** Makes a fresh input from scratch (structured generators); optional. */
  generate?: (rand: Rand) => Uint8Array;
  /**
   * Feeds one input to the parser. Must return (or resolve) normally or throw
   * an error for which `expected` says true; must not take longer than the
   * per-input bound.
   */
  run: (input: Uint8Array) => unknown | Promise<unknown>;
  /** Whether a thrown error is the module's typed error (default: none is). */
  expected?: (e: unknown) => boolean;
  /** Largest input the mutator makes (default 4096 bytes). */
  maxLength?: number;
}

/** An input that broke a target, with what reproduces it. */
export interface FuzzFailure {
  target: string;
  seed: number;
  iteration: number;
  input: Uint8Array;
  error: unknown;
}

/** Integer in [0, n). */
export function below(rand: Rand, n: number): number {
  return Math.floor(rand() * n);
}

/** `n` random bytes. */
export function randomBytes(rand: Rand, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = below(rand, 256);
  return out;
}

const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x3f, 0x40, 0xc0, 10, 13, 0x3d, 0x2e, 0x3a];

/** A mutation of `input`: flips, interesting bytes, inserts, deletes, splices, truncation. */
export function mutate(rand: Rand, input: Uint8Array, maxLength = 4096): Uint8Array {
  let b = Array.from(input);
  const rounds = 1 + below(rand, 4);
  for (let r = 0; r < rounds; r++) {
    const at = b.length === 0 ? 0 : below(rand, b.length);
    switch (below(rand, 8)) {
      case 0:
        if (b.length) b[at] ^= 1 << below(rand, 8);
        break;
      case 1:
        if (b.length) b[at] = INTERESTING[below(rand, INTERESTING.length)];
        break;
      case 2:
        if (b.length) b[at] = below(rand, 256);
        break;
      case 3:
        b.splice(at, 0, ...randomBytes(rand, 1 + below(rand, 8)));
        break;
      case 4:
        b.splice(at, 1 + below(rand, 8));
        break;
      case 5: // repeat a slice (length fields, nested structures)
        b.splice(at, 0, ...b.slice(at, at + 1 + below(rand, 16)));
        break;
      case 6:
        b = b.slice(0, at);
        break;
      default: // 16-bit big-endian field to an edge value
        if (b.length > 1) {
          const v = [0, 1, 0xff, 0x100, 0x7fff, 0xffff][below(rand, 6)];
          b[at] = v >> 8;
          if (at + 1 < b.length) b[at + 1] = v & 0xff;
        }
    }
  }
  if (b.length > maxLength) b.length = maxLength;
  return Uint8Array.from(b);
}

/** The next input of a run: a seed, a mutated seed, or a generated input. */
export function inputFor(target: FuzzTarget, rand: Rand): Uint8Array {
  const pick = rand();
  if (target.generate && (pick < 0.4 || target.seeds.length === 0)) return target.generate(rand);
  if (target.seeds.length === 0) return randomBytes(rand, below(rand, 64));
  const base = target.seeds[below(rand, target.seeds.length)];
  return pick < 0.5 ? base : mutate(rand, base, target.maxLength);
}

/** Runs one input; returns the unexpected error, or undefined. */
export async function tryInput(target: FuzzTarget, input: Uint8Array, boundMs = 2000) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const result = target.run(input);
    if (result instanceof Promise) {
      await Promise.race([
        result,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`hang: no answer in ${boundMs} ms`)), boundMs);
        }),
      ]);
    }
    return undefined;
  } catch (e) {
    if (target.expected?.(e)) return undefined;
    return e ?? new Error("threw undefined");
  } finally {
    clearTimeout(timer);
  }
}

/** Options of one run. */
export interface FuzzOptions {
  seed: number;
  /** Stop after this many inputs ... */
  iterations?: number;
  /** ... or after this many milliseconds, whichever comes first. */
  timeMs?: number;
}

/** Runs `target` on generated and mutated inputs; returns the first failure, or null. */
export async function fuzz(target: FuzzTarget, opts: FuzzOptions): Promise<FuzzFailure | null> {
  const rand = prng(opts.seed);
  const end = opts.timeMs === undefined ? Infinity : Date.now() + opts.timeMs;
  const n = opts.iterations ?? Infinity;
  for (let i = 0; i < n && Date.now() < end; i++) {
    const input = inputFor(target, rand);
    const error = await tryInput(target, input);
    if (error !== undefined) {
      return { target: target.name, seed: opts.seed, iteration: i, input, error };
    }
  }
  return null;
}

/** A failure as a report: seed, iteration, input in hex, the error. */
export function describeFailure(f: FuzzFailure): string {
  const hex = Array.from(f.input, (b) => b.toString(16).padStart(2, "0")).join("");
  const err = f.error instanceof Error ? (f.error.stack ?? f.error.message) : String(f.error);
  return `fuzz ${f.target}: seed ${f.seed} iteration ${f.iteration}\ninput ${hex}\n${err}`;
}

/** Fixed seeds for `deno test`, so a failure in CI reproduces. */
export const TEST_SEEDS = [1, 2, 3];

/**
 * Registers the bounded test run of `target`: `iterations` inputs for each of
 * TEST_SEEDS (keep each target's test under about 3 s; all of them together
 * must stay under 30 s).
 */
export function fuzzTest(target: FuzzTarget, iterations = 2000): void {
  Deno.test(`fuzz: ${target.name} (${TEST_SEEDS.length} seeds x ${iterations} inputs)`, async () => {
    for (const seed of TEST_SEEDS) {
      const failure = await fuzz(target, { seed, iterations, timeMs: 10_000 });
      if (failure) throw new Error(describeFailure(failure));
    }
  });
}
