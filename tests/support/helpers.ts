/** Shared test helpers: run our tools and DJB's C tools as processes. */
import { fileURLToPath as fromFileUrl } from "node:url";
import { nativeAvailable } from "../../lib/native/libc.ts";

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

/**
 * The names in $UCSPI_TEST_WITHOUT (comma-separated): things the tests treat
 * as missing even when present, so the ignore path can be exercised.
 */
function withheld(): Set<string> {
  const v = Deno.env.get("UCSPI_TEST_WITHOUT") ?? "";
  return new Set(v.split(",").map((s) => s.trim()).filter((s) => s !== ""));
}

function executableAt(path: string): boolean {
  try {
    const st = Deno.statSync(path);
    return st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/**
 * The path of program NAME, or null when it is missing or withheld by
 * $UCSPI_TEST_WITHOUT. Debian's directories come first, so DJB's C tools are
 * found there before anything of the same name elsewhere on $PATH; the sbin
 * directories last, as a non-root $PATH often lacks them (haproxy, exim4).
 */
export function program(name: string): string | null {
  if (withheld().has(name)) return null;
  const path = (Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== "");
  const dirs = ["/usr/bin", "/usr/local/bin", "/bin", ...path, "/usr/sbin", "/sbin"];
  for (const dir of new Set(dirs)) {
    if (executableAt(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return null;
}

/** The path of DJB's C tool NAME (Debian's ucspi-tcp), or null when not installed. */
export function cTool(name: string): string | null {
  return program(name);
}

/** Whether a test can run here, as `Deno.test({ name, ignore, fn })` wants it (see needs()). */
export interface Needs {
  /** True when something needed is missing: the test's `ignore`. */
  ignore: boolean;
  /** What is missing and why; "" when nothing is. */
  reason: string;
  /** " (needs A, B)" naming every requirement, to end the test's name; "" for none. */
  reasonSuffix: string;
}

/** Whether this host can listen on HOST (IPv6 loopback, IPv4-mapped addresses). */
function canListen(hostname: string): string | null {
  try {
    Deno.listen({ hostname, port: 0 }).close();
    return null;
  } catch (e) {
    return `cannot listen on ${hostname}: ${(e as Error).message.split("\n")[0]}`;
  }
}

/** Why THING is missing, or null when it is here. */
function missing(thing: string): string | null {
  if (withheld().has(thing)) return "withheld by UCSPI_TEST_WITHOUT";
  switch (thing) {
    case "root":
      return Deno.uid() === 0 ? null : `uid is ${Deno.uid()}, not 0`;
    case "ffi":
      // What this host can do, whatever $UCSPI_NATIVE the test run inherited.
      return nativeAvailable(new Map())
        ? null
        : "no native path (needs Linux, libc and --allow-ffi)";
    case "ipv6":
      return canListen("::1");
    case "ipv4-mapped":
      return canListen("::ffff:127.0.0.1");
    default:
      return program(thing) ? null : "not installed";
  }
}

/**
 * What a test needs, checked when the test is declared, so a test that
 * cannot run here shows as ignored instead of passing by an early return:
 * `const n = needs("haproxy", "root");`
 * `Deno.test({ name: "..." + n.reasonSuffix, ignore: n.ignore, fn })`.
 * THINGS: a program (on $PATH or in Debian's bin/sbin directories), "root",
 * "ffi" (the native path can work here: Linux, libc, --allow-ffi), "ipv6" (can listen on ::1),
 * "ipv4-mapped" (can listen on ::ffff:127.0.0.1). Any of them named in
 * $UCSPI_TEST_WITHOUT (e.g. `UCSPI_TEST_WITHOUT=tcpserver,root`) counts as
 * missing.
 */
export function needs(...things: string[]): Needs {
  const why: string[] = [];
  for (const t of things) {
    const m = missing(t);
    if (m !== null) why.push(`${t}: ${m}`);
  }
  return {
    ignore: why.length > 0,
    reason: why.join("; "),
    reasonSuffix: things.length > 0 ? ` (needs ${things.join(", ")})` : "",
  };
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
