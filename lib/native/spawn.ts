/**
 * Starting a connection's program on the native path: posix_spawn with the
 * socket itself as its fd 0 and 1, as C tcpserver's fork/exec gives it, so
 * no byte passes through the server and the program owns half-close and
 * FIN. Children are reaped on SIGCHLD with waitpid(pid, WNOHANG) for our
 * own pids only (Deno reaps its own children).
 */
import { utf8ByteString } from "../core/bytes.ts";
import { execEnvironment } from "../core/environ.ts";
import { E } from "./errno.ts";
import { errno, L, sysError } from "./libc.ts";

const WNOHANG = 1;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;

const waiting = new Map<number, (wstat: number) => void>();
let sigchldInstalled = false;
const statusBuf = new Int32Array(1);
let attr: Uint8Array | null = null;

/** Reaps pid if it ended; true when it did. */
function reapOne(pid: number, done: (wstat: number) => void): boolean {
  const r = L().waitpid(pid, statusBuf, WNOHANG);
  if (r === pid || (r < 0 && errno() === E.ECHILD)) {
    waiting.delete(pid);
    done(r === pid ? statusBuf[0] : 0);
    return true;
  }
  return false;
}

function reap(): void {
  for (const [pid, done] of waiting) reapOne(pid, done);
  idle();
}

function idle(): void {
  if (waiting.size === 0 && sigchldInstalled) {
    Deno.removeSignalListener("SIGCHLD", reap);
    sigchldInstalled = false;
  }
}

function watch(pid: number): Promise<number> {
  return new Promise((resolve) => {
    waiting.set(pid, resolve);
    if (!sigchldInstalled) {
      Deno.addSignalListener("SIGCHLD", reap);
      sigchldInstalled = true;
    }
    // it may have ended before the listener was in place
    queueMicrotask(() => {
      if (waiting.get(pid) === resolve && reapOne(pid, resolve)) idle();
    });
  });
}

function spawnAttr(): Uint8Array {
  if (attr) return attr;
  const l = L();
  const a = new Uint8Array(512);
  l.posix_spawnattr_init(a);
  // Default dispositions for 1-31 except KILL and STOP (Deno ignores SIGPIPE;
  // an ignored signal would stay ignored across exec), and no blocked signals.
  const def = new BigUint64Array(16);
  let m = 0n;
  for (let s = 1; s <= 31; s++) if (s !== 9 && s !== 19) m |= 1n << BigInt(s - 1);
  def[0] = m;
  l.posix_spawnattr_setsigdefault(a, new Uint8Array(def.buffer));
  l.posix_spawnattr_setsigmask(a, new Uint8Array(128));
  l.posix_spawnattr_setflags(a, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  attr = a;
  return a;
}

const enc = new TextEncoder();

/**
 * NUL-terminated strings and the NULL-terminated pointer array to them, for
 * argv and envp. Each string is a byte string (lib/core/bytes.ts: one char, one
 * byte), written byte for byte; a NUL in one ends it there, as C reads it
 * (execEnvironment already cut env values at their NUL), so a NUL can never
 * split one entry into two.
 */
function cStrings(list: string[]): { ptrs: Uint8Array; keep: Uint8Array } {
  let total = 0;
  for (const s of list) total += s.length + 1;
  const keep = new Uint8Array(total);
  const base = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(keep)));
  const ptrs = new BigUint64Array(list.length + 1);
  let off = 0;
  for (let i = 0; i < list.length; i++) {
    ptrs[i] = base + BigInt(off);
    const s = list[i];
    let j = 0;
    for (; j < s.length; j++) {
      const c = s.charCodeAt(j) & 0xff;
      if (c === 0) break;
      keep[off + j] = c;
    }
    keep[off + j] = 0;
    off += s.length + 1;
  }
  return { ptrs: new Uint8Array(ptrs.buffer), keep };
}

/** A program started on a socket. */
export interface Spawned {
  /** Its process id. */
  pid: number;
  /** Resolves with the wait(2) status when the program ended. */
  status: Promise<number>;
}

/**
 * Starts `file` with argv (argv[0] as given) and env, the socket fd as its
 * fd 0 and 1, stderr inherited, with the server's own uid and gid: on the
 * native path tcpserver -u/-g switches the whole process (dropIds) before
 * it accepts, so programs inherit the ids. `creds` naming other ids is
 * refused (throws) rather than run with the wrong ones. Throws (with
 * `code`: ENOENT, EACCES...) when the program cannot be started.
 */
export async function spawnOnSocket(
  file: string,
  argv: string[],
  env: Map<string, string>,
  fd: number,
  creds: { uid?: number; gid?: number } = {},
): Promise<Spawned> {
  if (creds.uid !== undefined || creds.gid !== undefined) {
    throw new Error(
      `unable to run ${file}: the native path runs programs with the server's ids (dropIds)`,
    );
  }
  // argv is text (our command line): its UTF-8 bytes; env is byte strings.
  return await spawnProcess(file, argv.map(utf8ByteString), env, [[fd, 0], [fd, 1]]);
}

/**
 * Starts `file` with argv and env (byte strings, written byte for byte),
 * each [from, to] of `dups` dup2'ed in the child before the exec, every
 * other descriptor as the parent has it (close-on-exec ones closed), signal
 * dispositions reset and no signal blocked. Throws (with `code`) when the
 * program cannot be started.
 */
export async function spawnProcess(
  file: string,
  argv: string[],
  env: Map<string, string>,
  dups: Array<[from: number, to: number]>,
): Promise<Spawned> {
  const l = L();
  const fa = new Uint8Array(128);
  l.posix_spawn_file_actions_init(fa);
  try {
    for (const [from, to] of dups) l.posix_spawn_file_actions_adddup2(fa, from, to);
    const path = enc.encode(file + "\0");
    const args = cStrings(argv);
    const envs: string[] = [];
    for (const [k, v] of execEnvironment(env)) envs.push(k + "=" + v);
    const envp = cStrings(envs);
    const pidOut = new Int32Array(32); // [0]; off V8's heap, as the poll buffer
    const r = await l.posix_spawn(
      new Uint8Array(pidOut.buffer),
      path,
      fa,
      spawnAttr(),
      args.ptrs,
      envp.ptrs,
    );
    // keep the strings alive until here
    void args.keep;
    void envp.keep;
    if (r !== 0) throw sysError(`unable to run ${file}`, r);
    const pid = pidOut[0];
    return { pid, status: watch(pid) };
  } finally {
    l.posix_spawn_file_actions_destroy(fa);
  }
}
