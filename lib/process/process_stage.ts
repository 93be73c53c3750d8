/**
 * Running a stage as its own process, as DJB's tools run: io is our
 * stdin/stdout/stderr, env is our environment, and `{ next }` is run the way
 * DJB's pathexec_run finds and execs it (we cannot exec, so we spawn it and
 * exit with its status). Also the stdin-to-stdout filter loop of addcr and
 * delcr.
 */
import type { Converter } from "../stages/crlf.ts";
import { ownEnviron } from "../core/environ.ts";
import { errorText, fatal, ToolError } from "../core/errors.ts";
import { flushLog, stderrLog } from "../core/log.ts";
import { writeAll, writeAllSync } from "../core/write_all.ts";
import { findProgram } from "./pathexec.ts";
import type { Io, Stage } from "../stages/stage.ts";

/**
 * Our stdin as a stream that reads only when asked (so a program run after a
 * stage that never read still gets every byte), our stdout as a stream
 * (closing it closes fd 1, so the peer sees EOF), and stderr for the log.
 */
export function stdioIo(log: (line: string) => void = stderrLog): Io {
  const input = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const buf = new Uint8Array(65536);
      const n = await Deno.stdin.read(buf);
      if (n === null) controller.close();
      else controller.enqueue(buf.subarray(0, n));
    },
  }, { highWaterMark: 0 });
  const output = new WritableStream<Uint8Array>({
    write: (chunk) => writeAll(Deno.stdout, chunk),
    close() {
      try {
        Deno.stdout.close();
      } catch { /* already closed */ }
    },
  });
  return { input, output, log };
}

/**
 * Runs `stage` (the tool `prog`, args without argv[0]) over our stdio and
 * environment (byte strings, exact when FFI is granted: ownEnviron).
 * `{ exit }` is returned; `{ next }` is found on PATH as DJB's
 * pathexec does and run with our stdio (or pumped over the stage's wrapped
 * io), and its status returned. When it cannot be run: ToolError
 * `prog: fatal: unable to run NAME: reason`, exit 111, followed by what the
 * stage logs when the program's output ends (recordio's `PID > [EOF]`), in
 * the order DJB's tools print them.
 */
export async function runStageAsProcess(
  prog: string,
  stage: Stage,
  args: string[],
): Promise<number> {
  const env = ownEnviron();
  let captured: string[] | null = null;
  const log = (line: string) => captured ? captured.push(line) : stderrLog(line);
  const outcome = await stage(args, env, stdioIo(log));
  if ("exit" in outcome) return outcome.exit;
  const name = outcome.next[0];
  let argv: string[];
  try {
    argv = [findProgram(name, env), ...outcome.next.slice(1)];
  } catch (e) {
    throw await cannotRun(e);
  }
  const argv0 = outcome.argv0 ?? name;
  // Loaded only when a program is run: it brings node:child_process, which
  // addcr and delcr (and a stage that ends the conversation) never need.
  const { runInherited, runPumped } = await import("./spawn.ts");
  const { forwardSignals } = await import("./signals.ts");
  const { statusOf } = await import("./status.ts");
  const signals = forwardSignals();
  try {
    const inner = outcome.io;
    const ended = inner
      ? await runPumped(argv, env, {
        ...inner,
        started: (pid) => {
          signals.attach(pid);
          inner.started?.(pid);
        },
      }, argv0)
      : await runInherited(argv, env, argv0, signals.attach);
    return statusOf(ended);
  } catch (e) {
    throw await cannotRun(e);
  } finally {
    signals.detach();
    flushLog();
  }

  async function cannotRun(e: unknown): Promise<ToolError> {
    captured = [];
    const lines = captured;
    if (outcome && "next" in outcome && outcome.io) {
      // The program's output ended before it began, as DJB's forked child sees it.
      // (closing fails only when the client is gone: nothing to tell it)
      await outcome.io.output.close().catch(() => {});
    }
    captured = null;
    const err = fatal(prog, `unable to run ${name}: ${errorText(e)}`);
    return lines.length ? new ToolError([err.message, ...lines].join("\n"), err.exitCode) : err;
  }
}

/**
 * addcr/delcr's loop: stdin through `conv` to stdout. Returns 0 at EOF, or
 * 111 (DJB's tools say nothing) when reading or writing fails. Synchronous
 * reads and writes (the process has nothing else to do; about a quarter
 * faster than awaiting each).
 */
export function filterStdio(conv: Converter): Promise<number> {
  const buf = new Uint8Array(1 << 18);
  const into = conv.pushInto?.bind(conv);
  const scratch = new Uint8Array(into ? 2 * buf.length + 1 : 0);
  const convert = into
    ? (chunk: Uint8Array) => scratch.subarray(0, into(chunk, scratch))
    : (chunk: Uint8Array) => conv.push(chunk);
  for (;;) {
    let n: number | null;
    try {
      n = Deno.stdin.readSync(buf);
    } catch {
      // DJB's addcr/delcr exit 111 silently on a read error: so do we.
      return Promise.resolve(111);
    }
    try {
      if (n === null) {
        writeAllSync(Deno.stdout, conv.end());
        return Promise.resolve(0);
      }
      writeAllSync(Deno.stdout, convert(buf.subarray(0, n)));
    } catch {
      // a write error (EPIPE: the reader left) is DJB's silent exit 111 too
      return Promise.resolve(111);
    }
  }
}
