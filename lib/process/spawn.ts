/**
 * Running the next program: with our own stdio (a tool run as a process hands
 * over, as DJB's exec does) or with its stdin/stdout pumped from/to an Io.
 *
 * Environment values are byte strings (lib/core/bytes.ts), but Deno.Command and
 * node:child_process take only text and pass its UTF-8 encoding. So
 * (textCommand) a variable whose name and value are valid UTF-8 is passed
 * decoded, which gives the program the same bytes; when one is not (a rules
 * value U="\xe4"), the program is started through `/bin/sh -c`: the script
 * builds each such entry with printf octal escapes (`\344`, all ASCII) and
 * ends in `exec env -i -- ENTRY... NAME ARG...`, so the program gets exactly
 * the environment asked for (env -i: none of the shell's own variables, no
 * PWD, names the shell could not hold kept) under its own name as argv[0]
 * (env finds it by the new PATH, as DJB's pathexec). Measured with dash and
 * bash: every byte 1-255 (0x80-0x9f included) and trailing newlines arrive
 * unchanged. This costs two extra execs for such connections only, needs
 * run permission for /bin/sh (without it the program is not started: a
 * NotCapable error names the variable) and keeps the escaped entries under
 * Linux's 128 KiB limit for one argument. The native path (lib/native/native.ts)
 * needs none of this: it builds envp from the bytes.
 */
import { spawn as nodeSpawn } from "node:child_process";
import process from "node:process";
import { byteStringText } from "../core/bytes.ts";
import { execEnvironment } from "../core/environ.ts";
import type { Io } from "../stages/stage.ts";

/** How the next program ended: an exit code, or the signal that killed it. */
export interface Ended {
  /** The exit code, or null when a signal ended it. */
  code: number | null;
  /** The signal's name ("SIGTERM"), or null when it exited. */
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
  /** The user id (none: ours). */
  uid?: number;
  /** The group id, also the only group (none: ours). */
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

/** How to start a program through an API that takes only text. */
export interface TextCommand {
  /** The file to start. */
  command: string;
  /** Its arguments after argv[0]. */
  args: string[];
  /** The whole environment (clearEnv), or undefined to inherit ours. */
  env: Record<string, string> | undefined;
  /** argv[0] the program must see when it is not `command` (node's argv0). */
  argv0?: string;
}

/** The shell the byte-exact start goes through. */
export const BYTE_SHELL = "/bin/sh";

/**
 * How to start `file` with args, env (byte strings) and argv0 through
 * Deno.Command or node's spawn so that the program receives exactly env's
 * bytes (see the module comment): the plain command when every name and
 * value is UTF-8, else BYTE_SHELL's script. Throws (NotCapable naming the
 * variable) when the script is needed but cannot be run or cannot keep
 * argv0.
 */
export function textCommand(
  file: string,
  args: string[],
  env: Map<string, string> | undefined,
  argv0?: string,
): TextCommand {
  const same = argv0 === undefined || argv0 === file ? undefined : argv0;
  if (env === undefined) return { command: file, args, env: undefined, argv0: same };
  const entries = execEnvironment(env);
  const text: Record<string, string> = {};
  let odd: string | undefined;
  for (const [name, value] of entries) {
    const n = byteStringText(name);
    const v = byteStringText(value);
    if (n === null || v === null) {
      odd ??= name;
      continue;
    }
    text[n] = v;
  }
  if (odd === undefined) return { command: file, args, env: text, argv0: same };
  return shellCommand(file, args, entries, argv0 ?? file, odd, env);
}

function shellCommand(
  file: string,
  args: string[],
  entries: Array<[string, string]>,
  name: string,
  odd: string,
  env: Map<string, string>,
): TextCommand {
  const why = `to pass $${odd}, whose bytes are not UTF-8`;
  if (Deno.permissions.querySync({ name: "run", command: BYTE_SHELL }).state !== "granted") {
    throw new Deno.errors.NotCapable(
      `Requires run access to "${BYTE_SHELL}" ${why}, run again with the --allow-run flag`,
    );
  }
  // Deno refuses these to a program unless --allow-run is unrestricted; the
  // script must not be a way around that.
  const guarded = entries.find(([n]) => n.startsWith("LD_") || n.startsWith("DYLD_"));
  if (guarded && Deno.permissions.querySync({ name: "run" }).state !== "granted") {
    throw new Deno.errors.NotCapable(
      `Requires --allow-run permissions to spawn subprocess with ${
        guarded[0]
      } environment variable`,
    );
  }
  // env execs `name` found by the new PATH (keeping it as argv[0]): only
  // when that is `file` (and env cannot take the name for an assignment).
  if (name.includes("=") || (name !== file && !execFinds(name, file, env))) {
    throw new Error(`unable ${why}: ${name} does not name ${file} (use the native path)`);
  }
  let script = "";
  const built: string[] = [];
  const plain: string[] = [];
  entries.forEach(([n, v], i) => {
    const entry = n + "=" + v;
    const t = byteStringText(entry);
    if (t !== null) {
      plain.push(t);
      return;
    }
    // the "x" keeps trailing newlines from the command substitution
    script += `e${i}=$(printf '${octalEscaped(entry)}x'); e${i}=\${e${i}%x}; `;
    built.push(`"$e${i}"`);
  });
  script += `exec env -i -- ${built.join(" ")} "$@"`;
  return {
    command: BYTE_SHELL,
    args: ["-c", script, "sh", ...plain, name, ...args],
    env: { PATH: "/usr/bin:/bin" },
  };
}

/** s (a byte string) as a printf format printing its bytes: [A-Za-z0-9] as is, others \ooo. */
export function octalEscaped(s: string): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) & 0xff;
    const alnum = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
    out += alnum ? s[i] : "\\" + c.toString(8).padStart(3, "0");
  }
  return out;
}

/** Whether execvp(name) under env's PATH runs `file` (same file after symlinks). */
function execFinds(name: string, file: string, env: Map<string, string>): boolean {
  try {
    const want = Deno.realPathSync(file);
    if (name.includes("/")) return Deno.realPathSync(name) === want;
    const path = byteStringText(env.get("PATH") ?? "/bin:/usr/bin") ?? "";
    for (const dir of path.split(":")) {
      const f = `${dir === "" ? "." : dir}/${name}`;
      let info: Deno.FileInfo;
      try {
        info = Deno.statSync(f);
      } catch {
        continue; // not there (or not searchable): execvp tries the next entry too
      }
      if (!info.isFile || ((info.mode ?? 0o111) & 0o111) === 0) continue;
      return Deno.realPathSync(f) === want;
    }
  } catch { /* cannot tell: no */ }
  return false;
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
    const t = textCommand(argv[0], argv.slice(1), env, argv0);
    const child = nodeSpawn(t.command, t.args, {
      stdio: "inherit",
      env: t.env ?? process.env,
      argv0: t.argv0 ?? t.command,
    });
    child.once("error", reject);
    child.once("spawn", () => child.pid !== undefined && onSpawn?.(child.pid));
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
}

/**
 * An Io that starts its program itself, because the program needs more than
 * stdin and stdout over it (UCSPI-TLS, lib/tls/ucspitls.ts: a control socket
 * and the descriptors of the TLS tunnel). runPumped hands it the program;
 * it may decline (null) for an io that is not its own (a transform stage
 * wrapped it), and the program is then pumped as usual.
 */
export interface ProgramStarter {
  /** Runs argv as runPumped would, or null to decline. */
  runProgram(
    argv: string[],
    env: Map<string, string> | undefined,
    io: Io,
    argv0?: string,
    onExit?: (ended: Ended) => void,
  ): Promise<Ended> | null;
}

/**
 * Runs argv with stdin fed from io.input and stdout copied to io.output
 * (stderr inherited). The program sees EOF when io.input ends; io.output is
 * closed after all of the program's output was written. Backpressure holds in
 * both directions (an io that is a ProgramStarter starts the program itself).
 * Resolves when the program has exited and both pumps ended;
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
  const own = (io as Partial<ProgramStarter>).runProgram?.(argv, env, io, argv0, onExit);
  if (own) return await own;
  const t = textCommand(argv[0], argv.slice(1), env, argv0);
  // Deno.Command is the fast path (native pipes, no Node stream layer); it
  // cannot set argv[0], so a renamed program (argv0) goes through node:.
  if (t.argv0 === undefined) return await runPumpedDeno(t, io, onExit);
  const child = nodeSpawn(t.command, t.args, {
    stdio: ["pipe", "pipe", "inherit"],
    env: t.env ?? process.env,
    argv0: t.argv0,
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
      // the client went away: stop reading the program (it gets EPIPE)
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
  // (both fail only when the input already ended or failed: the same outcome)
  reader.cancel().catch(() => {});
  await toChild.catch(() => {});
  return ended;
}

async function runPumpedDeno(
  t: TextCommand,
  io: Io,
  onExit?: (ended: Ended) => void,
): Promise<Ended> {
  const child = new Deno.Command(t.command, {
    args: t.args,
    env: t.env,
    clearEnv: t.env !== undefined,
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
