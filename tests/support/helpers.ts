/** Shared test helpers: run our tools and DJB's C tools as processes. */
import { fileURLToPath as fromFileUrl } from "node:url";

export const DENO = Deno.execPath();
export const MOD = fromFileUrl(new URL("../../mod.ts", import.meta.url));
export const ROOT = fromFileUrl(new URL("../../", import.meta.url));

export interface Result {
  code: number;
  stdout: Uint8Array;
  stderr: Uint8Array;
  /** stdout as text */
  out: string;
  /** stderr as text */
  err: string;
}

export interface RunOptions {
  stdin?: Uint8Array | string;
  env?: Record<string, string>;
  /** Start from an empty environment plus `env` (PATH kept). */
  clearEnv?: boolean;
  cwd?: string;
}

async function runCommand(cmd: string, args: string[], opts: RunOptions): Promise<Result> {
  const env = opts.clearEnv
    ? { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", ...opts.env }
    : opts.env;
  const child = new Deno.Command(cmd, {
    args,
    env,
    clearEnv: opts.clearEnv ?? false,
    cwd: opts.cwd,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    const data = typeof opts.stdin === "string" ? new TextEncoder().encode(opts.stdin) : opts.stdin;
    // A tool may exit before reading all of its input; that is not a test failure.
    await w.write(data).catch(() => {});
    await w.close().catch(() => {});
  }
  return resultOf(await child.output());
}

/** A finished command's output as a Result. */
export function resultOf(r: Deno.CommandOutput): Result {
  const dec = new TextDecoder();
  return {
    code: r.code,
    stdout: r.stdout,
    stderr: r.stderr,
    out: dec.decode(r.stdout),
    err: dec.decode(r.stderr),
  };
}

/** Runs our tool NAME exactly as the compiled binary reached through a symlink NAME would. */
export function ours(name: string, args: string[] = [], opts: RunOptions = {}): Promise<Result> {
  return runCommand(
    "bash",
    ["-c", `exec -a "$0" "${DENO}" run -A "${MOD}" "$@"`, name, ...args],
    opts,
  );
}

/** The command line (argv) that runs our tool NAME, for spawning it directly. */
export function oursArgv(name: string, args: string[] = []): string[] {
  return ["bash", "-c", `exec -a "$0" "${DENO}" run -A "${MOD}" "$@"`, name, ...args];
}

/** The path of DJB's C tool NAME (Debian's ucspi-tcp), or null when not installed. */
export function cTool(name: string): string | null {
  for (const dir of ["/usr/bin", "/usr/local/bin", "/bin"]) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch { /* not here */ }
  }
  return null;
}

/** Runs DJB's C tool NAME. */
export function theirs(name: string, args: string[] = [], opts: RunOptions = {}): Promise<Result> {
  const path = cTool(name);
  if (!path) throw new Error(`C ${name} is not installed`);
  return runCommand(path, args, opts);
}

/**
 * True when the C tool is installed; otherwise prints why the differential
 * test skips (so CI output says it) and returns false.
 */
export function haveC(name: string): boolean {
  if (cTool(name)) return true;
  console.log(`skip: C ${name} not installed (apt-get install ucspi-tcp tinycdb)`);
  return false;
}

/** A fresh temporary directory, removed by the returned function. */
export async function tempDir(): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await Deno.makeTempDir({ prefix: "ucspi-test-" });
  return { path, cleanup: () => Deno.remove(path, { recursive: true }).catch(() => {}) };
}

/** A running daemon whose stderr is collected. */
export interface Daemon {
  /** All stderr text so far. */
  log(): string;
  /** SIGTERM and wait for the exit (and the end of stderr). */
  stop(): Promise<void>;
}

/**
 * Spawns argv (stdout discarded), reads its stderr until `ready` matches (the
 * daemon is up), then keeps collecting stderr so the daemon never blocks on it.
 */
export async function startDaemon(
  argv: string[],
  env: Record<string, string>,
  ready: RegExp,
): Promise<Daemon> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!ready.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${argv[0]} did not start: ${text}`);
    text += value;
  }
  const pump = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
  })();
  return {
    log: () => text,
    stop: async () => {
      child.kill("SIGTERM");
      await child.status;
      await pump.catch(() => {});
    },
  };
}

/**
 * Polls until something listens on host:port (for daemons that print nothing
 * when ready): up to 400 tries 25 ms apart; true when a connect succeeded.
 */
export async function waitListening(hostname: string, port: number): Promise<boolean> {
  for (let i = 0; i < 400; i++) {
    try {
      (await Deno.connect({ hostname, port })).close();
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  return false;
}

/** A small seeded PRNG (mulberry32), so generated test inputs reproduce. */
export function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
