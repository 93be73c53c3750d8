/**
 * Running the next program: with our own stdio (a tool run as a process hands
 * over, as DJB's exec does) or with its stdin/stdout pumped from/to an Io;
 * and the uid/gid every program runs as (tcpserver -u/-g/-U). The byte-exact
 * environment is text_command.ts's; how a program ended, status.ts's.
 */
import { spawn as nodeSpawn } from "node:child_process";
import process from "node:process";
import type { Io } from "../stages/stage.ts";
import type { Ended } from "./status.ts";
import { type TextCommand, textCommand } from "./text_command.ts";

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
