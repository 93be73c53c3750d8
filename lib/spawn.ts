/**
 * Running the next program: with our own stdio (a tool run as a process hands
 * over, as DJB's exec does) or with its stdin/stdout pumped from/to an Io.
 */
import { spawn as nodeSpawn } from "node:child_process";
import process from "node:process";
import type { Io } from "./stage.ts";

/** How the next program ended: an exit code, or the signal that killed it. */
export interface Ended {
  code: number | null;
  signal: string | null;
}

/** The exit status a shell would report: the code, or 128 + signal number. */
export function statusOf(ended: Ended): number {
  if (ended.code !== null) return ended.code;
  const n = ended.signal ? SIGNAL_NUMBERS[ended.signal] ?? 0 : 0;
  return 128 + n;
}

/** Linux signal numbers by name. */
export const SIGNAL_NUMBERS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGSTKFLT: 16,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPWR: 30,
  SIGSYS: 31,
};

/** A wait(2) status as an Ended (exit code, or the signal's name). */
export function endedOf(wstat: number): Ended {
  const sig = wstat & 0x7f;
  if (sig === 0) return { code: (wstat >> 8) & 0xff, signal: null };
  const name = Object.keys(SIGNAL_NUMBERS).find((k) => SIGNAL_NUMBERS[k] === sig);
  return { code: null, signal: name ?? `SIG${sig}` };
}

/** The wait(2) status word for an exit code or a terminating signal. */
export function waitStatus(ended: Ended): number {
  if (ended.code !== null) return (ended.code & 0xff) << 8;
  return ended.signal ? SIGNAL_NUMBERS[ended.signal] ?? 0 : 0;
}

/** The user and group programs run as (tcpserver -u/-g/-U). */
export interface Credentials {
  uid?: number;
  gid?: number;
}

let runAs: Credentials = {};

/**
 * From now on, runPumped starts every program with this uid and gid (and no
 * supplementary groups), as DJB's tcpserver switches ids once after binding.
 * Called by tcpserver at start-up, never at import time.
 */
export function setRunAs(creds: Credentials): void {
  runAs = { ...creds };
}

/** The uid/gid set by setRunAs (none: the server's own). */
export function getRunAs(): Credentials {
  return { ...runAs };
}

function envObject(env: Map<string, string> | undefined): Record<string, string> | undefined {
  return env ? Object.fromEntries(env) : undefined;
}

/**
 * Runs argv with our stdin, stdout and stderr (what exec would give it) and
 * resolves when it ends. Rejects (with the spawn error, code ENOENT, EACCES...)
 * when it cannot be started. `onSpawn` gets the program's pid once it runs.
 */
export function runInherited(
  argv: string[],
  env?: Map<string, string>,
  argv0?: string,
  onSpawn?: (pid: number) => void,
): Promise<Ended> {
  return new Promise((resolve, reject) => {
    const child = nodeSpawn(argv[0], argv.slice(1), {
      stdio: "inherit",
      env: envObject(env) ?? process.env,
      argv0: argv0 ?? argv[0],
    });
    child.once("error", reject);
    child.once("spawn", () => child.pid !== undefined && onSpawn?.(child.pid));
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
}

/**
 * Runs argv with stdin fed from io.input and stdout copied to io.output
 * (stderr inherited). The program sees EOF when io.input ends; io.output is
 * closed after all of the program's output was written. Backpressure holds in
 * both directions. Resolves when the program has exited and both pumps ended;
 * `onExit` is called at the exit itself (a grandchild may keep its stdout
 * open, and the pumps running, longer).
 */
export async function runPumped(
  argv: string[],
  env: Map<string, string> | undefined,
  io: Io,
  argv0?: string,
  onExit?: (ended: Ended) => void,
): Promise<Ended> {
  // Deno.Command is the fast path (native pipes, no Node stream layer); it
  // cannot set argv[0], so a renamed program (argv0) goes through node:.
  if (argv0 === undefined || argv0 === argv[0]) return await runPumpedDeno(argv, env, io, onExit);
  const child = nodeSpawn(argv[0], argv.slice(1), {
    stdio: ["pipe", "pipe", "inherit"],
    env: envObject(env) ?? process.env,
    argv0: argv0 ?? argv[0],
    ...runAs,
  });
  const started = new Promise<void>((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", reject);
  });
  const exited = new Promise<Ended>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  await started;
  if (child.pid !== undefined) io.started?.(child.pid);
  const reader = io.input.getReader();
  const toChild = (async () => {
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        if (!child.stdin!.write(value)) {
          await new Promise<void>((r) => {
            const ok = () => {
              child.stdin!.off("close", ok);
              child.stdin!.off("drain", ok);
              r();
            };
            child.stdin!.once("drain", ok);
            child.stdin!.once("close", ok);
          });
          if (child.stdin!.destroyed) break;
        }
      }
    } catch {
      // the peer went away: the program sees EOF
    } finally {
      reader.releaseLock();
      child.stdin!.end();
    }
  })();
  child.stdin!.on("error", () => {}); // EPIPE when the program stops reading
  const fromChild = (async () => {
    const writer = io.output.getWriter();
    try {
      for await (const chunk of child.stdout!) {
        await writer.write(chunk as Uint8Array);
      }
      await writer.close();
    } catch {
      child.stdout!.destroy();
      try {
        await writer.abort();
      } catch { /* already closed */ }
    }
  })();
  const ended = await exited;
  onExit?.(ended);
  await fromChild;
  // The program is gone: stop feeding it, even if the client never sends EOF.
  reader.cancel().catch(() => {});
  await toChild.catch(() => {});
  return ended;
}

async function runPumpedDeno(
  argv: string[],
  env: Map<string, string> | undefined,
  io: Io,
  onExit?: (ended: Ended) => void,
): Promise<Ended> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: env ? Object.fromEntries(env) : undefined,
    clearEnv: env !== undefined,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
    uid: runAs.uid,
    gid: runAs.gid,
  }).spawn();
  io.started?.(child.pid);
  const stopFeeding = new AbortController();
  const toChild = io.input.pipeTo(child.stdin, { signal: stopFeeding.signal }).catch(() => {
    // the client went away or the program stopped reading: it sees EOF
    child.stdin.close().catch(() => {});
  });
  const fromChild = child.stdout.pipeTo(io.output).catch(async () => {
    // the client went away: the program gets EPIPE on its next write
    await child.stdout.cancel().catch(() => {});
  });
  const status = await child.status;
  const ended = {
    code: status.signal === null ? status.code : null,
    signal: status.signal,
  };
  onExit?.(ended);
  await fromChild;
  // The program is gone: stop feeding it, even if the client never sends EOF.
  stopFeeding.abort();
  await toChild;
  return ended;
}

/**
 * The signals a supervisor sends to what it thinks is the program (svc -t,
 * -h, -a, -1, -2, -i, -c): DJB's tools exec, so the program gets them.
 */
export const FORWARDED: Deno.Signal[] = [
  "SIGTERM",
  "SIGHUP",
  "SIGALRM",
  "SIGUSR1",
  "SIGUSR2",
  "SIGINT",
  "SIGCONT",
];

/**
 * Passes the supervisor's signals on to the program: we stay alive until it
 * exits and report its status. Listening starts at once, so a signal that
 * comes while the program is being started is held and delivered when
 * `attach` names its pid. `detach` restores the default handling.
 */
export function forwardSignals(): { attach: (pid: number) => void; detach: () => void } {
  let pid: number | undefined;
  const held: Deno.Signal[] = [];
  const send = (sig: Deno.Signal) => {
    try {
      Deno.kill(pid!, sig);
    } catch { /* already gone */ }
  };
  const installed: [Deno.Signal, () => void][] = [];
  for (const sig of FORWARDED) {
    const handler = () => pid === undefined ? held.push(sig) : send(sig);
    try {
      Deno.addSignalListener(sig, handler);
      installed.push([sig, handler]);
    } catch { /* not supported here */ }
  }
  return {
    attach(p) {
      pid = p;
      for (const sig of held.splice(0)) send(sig);
    },
    detach() {
      for (const [sig, handler] of installed) Deno.removeSignalListener(sig, handler);
      installed.length = 0;
    },
  };
}
