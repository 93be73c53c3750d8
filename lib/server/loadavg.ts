/**
 * The 1-minute load average as tcpserver's MAXLOAD limit needs it: an integer
 * (load x 100, so 3.50 is 350), read from /proc/loadavg — or from the file
 * named by $TCPSERVER_LOADAVG_FILE, which lets tests fake any load — and
 * cached, so that admitting a connection never reads a file.
 *
 * The cache is "stale while revalidate": a call returns the cached figure at
 * once and, when that figure is older than the refresh interval (1 second),
 * starts one asynchronous re-read whose result later calls see. Only the very
 * first call of a sampler reads the file synchronously (once per process).
 * While nobody asks (no MAXLOAD in use) nothing is read at all: no timers.
 */
import { readFileSync } from "node:fs";

/** The environment variable naming a file to read instead of /proc/loadavg. */
export const LOADAVG_FILE_VAR = "TCPSERVER_LOADAVG_FILE";

/** The kernel's load average file. */
export const PROC_LOADAVG = "/proc/loadavg";

/**
 * The file a sampler reads: $TCPSERVER_LOADAVG_FILE from `env` when set and
 * not empty, else /proc/loadavg.
 */
export function loadavgPath(env: Map<string, string> | Record<string, string | undefined>): string {
  const v = env instanceof Map ? env.get(LOADAVG_FILE_VAR) : env[LOADAVG_FILE_VAR];
  return v ? v : PROC_LOADAVG;
}

/**
 * Parses the text of /proc/loadavg ("0.52 0.58 0.59 1/234 5678") and returns
 * the first field x 100, rounded; NaN when the text does not start with a
 * non-negative decimal number.
 */
export function parseLoadavg(text: string): number {
  const m = /^\s*(\d+)(?:\.(\d*))?(?:\s|$)/.exec(text);
  if (!m) return NaN;
  const whole = Number(m[1]);
  const frac = (m[2] ?? "").padEnd(3, "0");
  // Integer arithmetic: hundredths plus rounding on the thousandths digit.
  const hundredths = whole * 100 + Number(frac.slice(0, 2));
  return hundredths + (Number(frac[2]) >= 5 ? 1 : 0);
}

/** Options of a load sampler (all optional; the defaults are for production). */
export interface LoadSamplerOptions {
  /** The file to read; default loadavgPath(Deno's environment). */
  path?: string;
  /** Minimum milliseconds between reads; default 1000. */
  refreshMs?: number;
  /** The clock, in milliseconds; default Date.now (tests may fake it). */
  now?: () => number;
}

/**
 * A cached load reader: calling it returns the last known 1-minute load x 100
 * without blocking (NaN when the file cannot be read or parsed; MAXLOAD is then
 * not enforced), refreshing the cache in the background at most once per
 * `refreshMs`.
 */
export interface LoadSampler {
  (): number;
  /** Resolves when no background re-read is pending (for tests). */
  settled(): Promise<void>;
  /** The file this sampler reads. */
  readonly path: string;
}

/** Makes a cached load reader (see LoadSampler). */
export function loadSampler(opts: LoadSamplerOptions = {}): LoadSampler {
  const path = opts.path ?? loadavgPath(Deno.env.toObject());
  const refreshMs = opts.refreshMs ?? 1000;
  const now = opts.now ?? Date.now;
  let value = NaN;
  let readAt = -Infinity;
  let first = true;
  let pending: Promise<void> | null = null;

  const sample = (() => {
    if (first) {
      first = false;
      readAt = now();
      try {
        value = parseLoadavg(readFileSync(path, "utf8"));
      } catch {
        value = NaN;
      }
      return value;
    }
    if (pending === null && now() - readAt >= refreshMs) {
      readAt = now();
      pending = Deno.readTextFile(path)
        .then((t) => {
          value = parseLoadavg(t);
        }, () => {
          value = NaN;
        })
        .finally(() => {
          pending = null;
        });
    }
    return value;
  }) as LoadSampler;
  sample.settled = async () => {
    while (pending) await pending;
  };
  Object.defineProperty(sample, "path", { value: path });
  return sample;
}
