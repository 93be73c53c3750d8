/**
 * Starting a connection's program on the native path: posix_spawn with the
 * socket itself as its fd 0 and 1, as C tcpserver's fork/exec gives it, so
 * no byte passes through the server and the program owns half-close and
 * FIN. Children are reaped on SIGCHLD with waitpid(pid, WNOHANG) for our
 * own pids only (Deno reaps its own children): waitid(WNOWAIT) names the
 * children that ended, so a SIGCHLD costs a call per ended child, not one
 * per program still running.
 */
import { utf8ByteString } from "../core/bytes.ts";
import { execEntry } from "../core/environ.ts";
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

const P_ALL = 0;
const WEXITED = 4;
const WNOWAIT = 0x01000000;
/** siginfo_t (128 bytes on Linux; si_pid at 16), off V8's heap. */
const siginfo = new Uint8Array(128);
const siginfoView = new DataView(siginfo.buffer);

/**
 * Reaps every program of ours that ended: waitid(WNOWAIT) names an ended
 * child without reaping it; ours is reaped and the next one asked for. A
 * child that is not ours (Deno's own, about to be reaped by Deno) would be
 * named again and again: then, as when waitid fails, every pid of ours is
 * asked in turn.
 */
function reap(): void {
  const l = L();
  for (;;) {
    siginfo.fill(0);
    if (l.waitid(P_ALL, 0, siginfo, WEXITED | WNOHANG | WNOWAIT) !== 0) break;
    const pid = siginfoView.getInt32(16, true);
    if (pid === 0) return; // no child has ended
    const done = waiting.get(pid);
    if (done === undefined || !reapOne(pid, done)) break;
  }
  for (const [pid, done] of waiting) reapOne(pid, done);
}

/**
 * Calls done with pid's wait status when it ends. The SIGCHLD listener, once
 * added, stays: adding and removing it each time no program runs cost a
 * signal stream bind and unbind per moment of calm, and a listener neither
 * keeps the process alive nor reaps anyone else's child (waitpid names our
 * own pids).
 */
function watch(pid: number, done: (wstat: number) => void): void {
  waiting.set(pid, done);
  if (!sigchldInstalled) {
    Deno.addSignalListener("SIGCHLD", reap);
    sigchldInstalled = true;
  }
  // it may have ended before it was in the table (its SIGCHLD reaped nothing)
  queueMicrotask(() => {
    if (waiting.get(pid) === done) reapOne(pid, done);
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
const TWO_32 = 2 ** 32;
/** The smallest buffer V8 surely keeps off its heap (see Poller). */
const MIN_OFF_HEAP = 128;

/**
 * NUL-terminated C strings in one buffer and the NULL-terminated pointer
 * array to them, for argv and envp. `count` strings, each written by `put`
 * (see putByteString) at the offset it is given; `bytes` is an upper bound
 * of the total. The buffer must stay referenced until the call using the
 * pointers returned.
 */
class CStrings {
  /** The strings, back to back. */
  readonly keep: Uint8Array;
  /** The pointer array (char *[count + 1]), as bytes. */
  readonly ptrs: Uint8Array;
  readonly #words: Uint32Array;
  readonly #base: number;
  #n = 0;
  #off = 0;

  constructor(count: number, bytes: number) {
    // (at least MIN_OFF_HEAP bytes each: V8 keeps small typed arrays in its
    // heap, where they could move while the worker thread reads them)
    this.keep = new Uint8Array(Math.max(bytes, MIN_OFF_HEAP));
    // one address for the buffer, each string's pointer an offset from it
    // (as two 32-bit halves: no BigInt per string)
    this.#base = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.keep)));
    this.#words = new Uint32Array(Math.max(2 * (count + 1), MIN_OFF_HEAP / 4));
    this.ptrs = new Uint8Array(this.#words.buffer);
  }

  /** Appends a pointer to bytes (holding no NUL), copied with a NUL after them. */
  addBytes(bytes: Uint8Array): void {
    this.#pointTo(this.#off);
    this.keep.set(bytes, this.#off);
    this.keep[this.#off + bytes.length] = 0;
    this.#off += bytes.length + 1;
  }

  #pointTo(off: number): void {
    const at = this.#base + off;
    this.#words[2 * this.#n] = at % TWO_32;
    this.#words[2 * this.#n + 1] = Math.floor(at / TWO_32);
    this.#n++;
  }

  /** Appends a pointer to the string written next, then writes it with its NUL. */
  add(s: string): void {
    this.#pointTo(this.#off);
    const off = putByteString(this.keep, this.#off, s);
    this.keep[off] = 0;
    this.#off = off + 1;
  }
}

/**
 * Writes byte string s (lib/core/bytes.ts: one char, one byte) at off, byte
 * for byte, up to its first NUL, as C reads it (execEnvironment already cut
 * env values at their NUL, so a NUL can never split one entry into two).
 * Returns the offset after the last byte written.
 */
function putByteString(buf: Uint8Array, off: number, s: string): number {
  for (let j = 0; j < s.length; j++) {
    const c = s.charCodeAt(j) & 0xff;
    if (c === 0) return off + j;
    buf[off + j] = c;
  }
  return off + s.length;
}

/** argv's strings as a C argv. */
function cArgv(list: string[]): CStrings {
  let total = 0;
  for (const s of list) total += s.length + 1;
  const out = new CStrings(list.length, total);
  for (const s of list) out.add(s);
  return out;
}

/**
 * Each variable's "NAME=value" bytes as last encoded (null: left out, see
 * execEntry), by name: a server's programs get the same base environment
 * every time, so most entries are copied, not encoded again; a value that
 * differs from the remembered one (TCPREMOTEPORT) is encoded afresh.
 */
const encodedEntries = new Map<string, { value: string; bytes: Uint8Array | null }>();
/** How many names encodedEntries remembers (a server sets a few dozen). */
const ENCODED_ENTRIES_MAX = 1024;

function encodedEntry(name: string, value: string): Uint8Array | null {
  const hit = encodedEntries.get(name);
  if (hit !== undefined && hit.value === value) return hit.bytes;
  const entry = execEntry(name, value);
  let bytes: Uint8Array | null = null;
  if (entry !== null) {
    const [k, v] = entry;
    bytes = new Uint8Array(k.length + 1 + v.length);
    const end = putByteString(bytes, putByteString(bytes, 0, k) + 1, v);
    bytes[k.length] = 0x3d; // "="
    if (end < bytes.length) bytes = bytes.subarray(0, end); // (execEntry cut any NUL)
  }
  if (hit === undefined && encodedEntries.size < ENCODED_ENTRIES_MAX) {
    encodedEntries.set(name, { value, bytes });
  } else if (hit !== undefined) {
    // the newest value: a per-connection one is replaced each time, a base
    // one seen again is found
    hit.value = value;
    hit.bytes = bytes;
  }
  return bytes;
}

/** env as a C envp ("NAME=value" each), as execEnvironment passes it. */
function cEnvp(env: Map<string, string>): CStrings {
  const entries: Uint8Array[] = [];
  let total = 0;
  for (const [k, v] of env) {
    const bytes = encodedEntry(k, v);
    if (bytes === null) continue;
    entries.push(bytes);
    total += bytes.length + 1;
  }
  const out = new CStrings(entries.length, total);
  for (const bytes of entries) out.addBytes(bytes);
  return out;
}

/** A program started on a socket. */
export interface Spawned {
  /** Its process id. */
  pid: number;
  /** Resolves with the wait(2) status when the program ended (never, with onEnd). */
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
export function spawnOnSocket(
  file: string,
  argv: string[],
  env: Map<string, string>,
  fd: number,
  creds: { uid?: number; gid?: number } = {},
  onEnd?: (wstat: number) => void,
): Promise<Spawned> {
  if (creds.uid !== undefined || creds.gid !== undefined) {
    return Promise.reject(
      new Error(
        `unable to run ${file}: the native path runs programs with the server's ids (dropIds)`,
      ),
    );
  }
  // argv is text (our command line): its UTF-8 bytes; env is byte strings.
  return spawnProcess(file, argv.map(utf8ByteString), env, [[fd, 0], [fd, 1]], onEnd);
}

/**
 * Starts `file` with argv and env (byte strings, written byte for byte),
 * each [from, to] of `dups` dup2'ed in the child before the exec, every
 * other descriptor as the parent has it (close-on-exec ones closed), signal
 * dispositions reset and no signal blocked. Throws (with `code`) when the
 * program cannot be started. Its wait status goes to `onEnd` when given
 * (then `status` never settles: a caller that only needs a callback keeps
 * no promise per program), else `status` resolves with it.
 */
export async function spawnProcess(
  file: string,
  argv: string[],
  env: Map<string, string>,
  dups: Array<[from: number, to: number]>,
  onEnd?: (wstat: number) => void,
): Promise<Spawned> {
  const l = L();
  const fa = new Uint8Array(128);
  l.posix_spawn_file_actions_init(fa);
  try {
    for (const [from, to] of dups) l.posix_spawn_file_actions_adddup2(fa, from, to);
    const path = new Uint8Array(Math.max(MIN_OFF_HEAP, 3 * file.length + 1));
    enc.encodeInto(file, path);
    const args = cArgv(argv);
    const envp = cEnvp(env);
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
    if (onEnd) {
      watch(pid, onEnd);
      return { pid, status: NEVER };
    }
    return { pid, status: new Promise((resolve) => watch(pid, resolve)) };
  } finally {
    l.posix_spawn_file_actions_destroy(fa);
  }
}

/** The status of a program whose end goes to a callback instead. */
const NEVER: Promise<number> = new Promise(() => {});
