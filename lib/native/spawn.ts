/**
 * Starting a connection's program on the native path: posix_spawn with the
 * socket itself as its fd 0 and 1, as C tcpserver's fork/exec gives it, so
 * no byte passes through the server and the program owns half-close and
 * FIN. The call is synchronous, on the main thread, as C's fork: the
 * buffers it reads (argv, envp, file actions) are therefore made once and
 * reused. Programs are reaped by lib/native/reaper.ts.
 */
import { utf8ByteString } from "../core/bytes.ts";
import { execEntry } from "../core/environ.ts";
import { L, sysError } from "./libc.ts";
import { statusOf, watch } from "./reaper.ts";

const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;

let attr: Uint8Array | null = null;

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
 * array to them, for argv and envp, reused from one spawn to the next (the
 * call reading them is synchronous). `reset` makes room for `count` strings
 * of at most `bytes` in all; `add`/`addBytes` append one; `finish` ends the
 * pointer array.
 */
class CStrings {
  /** The strings, back to back. */
  keep = new Uint8Array(0);
  /** The pointer array (char *[count + 1]), as bytes. */
  ptrs = new Uint8Array(0);
  #words = new Uint32Array(0);
  #base = 0;
  #n = 0;
  #off = 0;

  /** Empties the array, with room for count strings of bytes in all. */
  reset(count: number, bytes: number): void {
    if (this.keep.length < bytes) {
      // (at least MIN_OFF_HEAP bytes: V8 keeps small typed arrays in its
      // heap, where they could move between taking an address and the call)
      this.keep = new Uint8Array(Math.max(bytes, MIN_OFF_HEAP, 2 * this.keep.length));
      // one address for the buffer, each string's pointer an offset from it
      // (as two 32-bit halves: no BigInt per string)
      this.#base = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.keep)));
    }
    if (this.#words.length < 2 * (count + 1)) {
      this.#words = new Uint32Array(
        Math.max(2 * (count + 1), MIN_OFF_HEAP / 4, 2 * this.#words.length),
      );
      this.ptrs = new Uint8Array(this.#words.buffer);
    }
    this.#n = 0;
    this.#off = 0;
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

  /** Ends the pointer array with its NULL. */
  finish(): void {
    this.#words[2 * this.#n] = 0;
    this.#words[2 * this.#n + 1] = 0;
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

const argvStrings = new CStrings();
const envpStrings = new CStrings();

/** argv's strings as a C argv (in the one reused buffer). */
function cArgv(list: string[]): CStrings {
  let total = 0;
  for (const s of list) total += s.length + 1;
  const out = argvStrings;
  out.reset(list.length, total);
  for (const s of list) out.add(s);
  out.finish();
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
  const out = envpStrings;
  out.reset(entries.length, total);
  for (const bytes of entries) out.addBytes(bytes);
  out.finish();
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
export function spawnProcess(
  file: string,
  argv: string[],
  env: Map<string, string>,
  dups: Array<[from: number, to: number]>,
  onEnd?: (wstat: number) => void,
): Promise<Spawned> {
  try {
    return Promise.resolve(spawnNow(file, argv, env, dups, onEnd));
  } catch (e) {
    return Promise.reject(e);
  }
}

/** The path, reused (grown when a longer one comes). */
let pathBuf = new Uint8Array(MIN_OFF_HEAP);
/** posix_spawn's pid out-parameter ([0]), off V8's heap. */
const pidOut = new Int32Array(MIN_OFF_HEAP / 4);
const pidOutBytes = new Uint8Array(pidOut.buffer);

/**
 * File actions by their dups ("from>to,..."): a server's sockets come back
 * under the same few descriptor numbers, and glibc's adddup2 asks the
 * descriptor limit (getrlimit) on every call.
 */
const fileActions = new Map<string, Uint8Array>();
const FILE_ACTIONS_MAX = 256;

function fileActionsFor(dups: Array<[from: number, to: number]>): Uint8Array {
  let key = "";
  for (const [from, to] of dups) key += `${from}>${to},`;
  const hit = fileActions.get(key);
  if (hit) return hit;
  const l = L();
  const fa = new Uint8Array(MIN_OFF_HEAP);
  l.posix_spawn_file_actions_init(fa);
  for (const [from, to] of dups) {
    const r = l.posix_spawn_file_actions_adddup2(fa, from, to);
    if (r !== 0) {
      l.posix_spawn_file_actions_destroy(fa);
      throw sysError("unable to prepare descriptors", r);
    }
  }
  if (fileActions.size >= FILE_ACTIONS_MAX) {
    const [oldKey, old] = fileActions.entries().next().value!;
    fileActions.delete(oldKey);
    l.posix_spawn_file_actions_destroy(old);
  }
  fileActions.set(key, fa);
  return fa;
}

function spawnNow(
  file: string,
  argv: string[],
  env: Map<string, string>,
  dups: Array<[from: number, to: number]>,
  onEnd?: (wstat: number) => void,
): Spawned {
  const l = L();
  const fa = fileActionsFor(dups);
  if (pathBuf.length < 3 * file.length + 1) pathBuf = new Uint8Array(3 * file.length + 1);
  const { written } = enc.encodeInto(file, pathBuf);
  pathBuf[written] = 0;
  const args = cArgv(argv);
  const envp = cEnvp(env);
  const r = l.posix_spawn(pidOutBytes, pathBuf, fa, spawnAttr(), args.ptrs, envp.ptrs);
  if (r !== 0) throw sysError(`unable to run ${file}`, r);
  const pid = pidOut[0];
  if (onEnd) {
    watch(pid, onEnd);
    return { pid, status: NEVER };
  }
  return { pid, status: statusOf(pid) };
}

/** The status of a program whose end goes to a callback instead. */
const NEVER: Promise<number> = new Promise(() => {});
