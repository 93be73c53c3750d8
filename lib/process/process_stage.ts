/**
 * Running a stage as its own process, as DJB's tools run: io is our
 * stdin/stdout/stderr, env is our environment, and `{ next }` is run the way
 * DJB's pathexec_run finds and execs it (we cannot exec, so we spawn it and
 * exit with its status). Also the stdin-to-stdout filter loop of addcr and
 * delcr.
 */
import { byteStringText, stringBytes } from "../core/bytes.ts";
import type { Converter } from "../stages/crlf.ts";
import { ownEnviron } from "../core/environ.ts";
import { errnoName, errorText, fatal, ToolError } from "../core/errors.ts";
import { forwardSignals, runInherited, runPumped, statusOf } from "./spawn.ts";
import type { Io, Stage } from "../stages/stage.ts";

const utf8 = new TextEncoder();
const WIDE = /[^\0-\xff]/;

/** An error carrying an errno name in `code`, as node: errors do. */
function errnoError(code: string, path: string): Error {
  return Object.assign(new Error(`${code}: ${path}`), { code });
}

function executable(info: Deno.FileInfo): boolean {
  const mode = info.mode ?? 0o755;
  let uid = -1;
  let gid = -1;
  try {
    uid = Deno.uid() ?? -1;
    gid = Deno.gid() ?? -1;
  } catch { /* no --allow-sys: judge by "others" */ }
  if (uid === 0) return (mode & 0o111) !== 0;
  if (info.uid === uid) return (mode & 0o100) !== 0;
  if (info.gid === gid) return (mode & 0o010) !== 0;
  return (mode & 0o001) !== 0;
}

let binfmtMisc: boolean | undefined;

/** Whether the kernel has extra executable formats registered (binfmt_misc). */
function haveBinfmtMisc(): boolean {
  if (binfmtMisc === undefined) {
    binfmtMisc = false;
    try {
      for (const e of Deno.readDirSync("/proc/sys/fs/binfmt_misc")) {
        if (e.name !== "register" && e.name !== "status") binfmtMisc = true;
      }
    } catch { /* not mounted */ }
  }
  return binfmtMisc;
}

/**
 * `file`, unless execve would refuse it with ENOEXEC (neither "#!" nor ELF,
 * e.g. a script without its #! line): node's spawn would run that with
 * /bin/sh, DJB's tools fail with "exec format error". Unreadable files and
 * hosts with binfmt_misc formats are left to the kernel.
 */
function checkFormat(file: string): string {
  let head: Uint8Array;
  try {
    const f = Deno.openSync(file, { read: true });
    try {
      head = new Uint8Array(4);
      const n = f.readSync(head) ?? 0;
      head = head.subarray(0, n);
    } finally {
      f.close();
    }
  } catch {
    return file;
  }
  const script = head[0] === 0x23 && head[1] === 0x21; // "#!"
  const elf = head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46;
  if (script || elf || haveBinfmtMisc()) return file;
  throw errnoError("ENOEXEC", file);
}

/**
 * The file DJB's pathexec_run would exec for `name`: `name` itself when it
 * contains a slash, else the first PATH entry (from `env`; "/bin:/usr/bin"
 * when unset; an empty entry is ".") holding an executable `name`. Entries
 * failing with "access denied" (not executable, a directory) are skipped but
 * remembered; any other error but "file does not exist" stops the search.
 * Throws an error with `code` (ENOENT, EACCES, ENOTDIR, ENOEXEC...) when
 * none fits. env's PATH is a byte string: it is decoded as UTF-8 to name
 * files (Deno's paths are text).
 */
export function findProgram(name: string, env: Map<string, string>): string {
  if (name.includes("/")) return checkFormat(name);
  const raw = env.get("PATH") ?? "/bin:/usr/bin";
  const path = byteStringText(raw) ?? raw;
  let saved: string | undefined;
  for (const dir of path.split(":")) {
    const file = `${dir === "" ? "." : dir}/${name}`;
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(file);
    } catch (e) {
      const code = errnoName(e) ?? "ENOENT";
      if (code === "ENOENT") continue;
      saved = code;
      if (code !== "EACCES" && code !== "EPERM") break;
      continue;
    }
    if (info.isDirectory || !executable(info)) {
      saved = "EACCES";
      continue;
    }
    return checkFormat(file);
  }
  throw errnoError(saved ?? "ENOENT", name);
}

/**
 * A log line as the bytes to write: chars 0-255 are one byte each (log lines
 * carrying connection data are byte strings), anything above is UTF-8.
 */
export function logLineBytes(line: string): Uint8Array {
  if (!WIDE.test(line)) return stringBytes(line);
  const parts: number[] = [];
  for (const ch of line) {
    const c = ch.codePointAt(0)!;
    if (c <= 255) parts.push(c);
    else parts.push(...utf8.encode(ch));
  }
  return Uint8Array.from(parts);
}

function writeAllSync(w: { writeSync(p: Uint8Array): number }, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += w.writeSync(data.subarray(off));
}

async function writeAll(w: { write(p: Uint8Array): Promise<number> }, data: Uint8Array) {
  let off = 0;
  while (off < data.length) off += await w.write(data.subarray(off));
}

/** Log bytes gathered in this turn of the event loop, written together. */
const LOG_BATCH = 4096; // PIPE_BUF: a write up to this size is never split
const logBuf = new Uint8Array(LOG_BATCH);
let logLen = 0;
let flushQueued = false;

function flushLog(): void {
  flushQueued = false;
  if (logLen === 0) return;
  const n = logLen;
  logLen = 0;
  try {
    writeAllSync(Deno.stderr, logBuf.subarray(0, n));
  } catch { /* stderr gone: nothing to tell */ }
}

/**
 * Writes one log line (newline added) to stderr. Lines logged in the same
 * turn of the event loop (recordio's lines for one packet) go out in one
 * write of at most 4096 bytes, so, as with DJB's line-per-write, no line is
 * ever split by another writer; a longer line is one write of its own.
 */
export function stderrLog(line: string): void {
  const n = line.length;
  if (logLen + n + 1 > LOG_BATCH) flushLog();
  let narrow = n + 1 <= LOG_BATCH;
  if (narrow) {
    // one byte per char, straight into the batch (the common case)
    for (let i = 0; i < n; i++) {
      const c = line.charCodeAt(i);
      if (c > 255) {
        narrow = false;
        break;
      }
      logBuf[logLen + i] = c;
    }
  }
  if (narrow) {
    logBuf[logLen + n] = 10;
    logLen += n + 1;
  } else {
    const bytes = logLineBytes(line + "\n");
    if (logLen + bytes.length > LOG_BATCH) flushLog();
    if (bytes.length > LOG_BATCH) {
      try {
        writeAllSync(Deno.stderr, bytes);
      } catch { /* stderr gone */ }
      return;
    }
    logBuf.set(bytes, logLen);
    logLen += bytes.length;
  }
  if (!flushQueued) {
    flushQueued = true;
    queueMicrotask(flushLog);
  }
}

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
      return Promise.resolve(111);
    }
    try {
      if (n === null) {
        writeAllSync(Deno.stdout, conv.end());
        return Promise.resolve(0);
      }
      writeAllSync(Deno.stdout, convert(buf.subarray(0, n)));
    } catch {
      return Promise.resolve(111);
    }
  }
}
