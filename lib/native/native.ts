/**
 * tcpserver's native fast path: libc through Deno FFI (Linux, glibc).
 *
 * The listening socket is made with socket/bind/listen, connections are
 * taken with accept4 (on a worker thread, SOCK_CLOEXEC), and a connection's
 * program is started with posix_spawn with the socket itself as its fd 0 and
 * 1, as C tcpserver's fork/exec gives it: no byte passes through the server,
 * the program owns half-close and FIN. Children are reaped on SIGCHLD with
 * waitpid(pid, WNOHANG) for our own pids only (Deno reaps its own children).
 *
 * Used only when available (see `nativeAvailable`): Linux, the ffi
 * permission granted (--allow-ffi), libc.so.6 loadable, and
 * $UCSPI_NATIVE not "0". Otherwise tcpserver keeps its pure-Deno path.
 * Importing this module has no side effects: libc is opened on first use.
 */
import { spawn as nodeSpawn } from "node:child_process";
import { formatIp4, formatIp6, parseIp4, parseIp6 } from "../net/ip.ts";
import { utf8ByteString } from "../core/bytes.ts";
import { execEnvironment } from "../core/environ.ts";
import { textCommand, waitStatus } from "../process/spawn.ts";
import type { Io } from "../stages/stage.ts";

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  // On a worker thread: the parent waits in posix_spawn until the child's
  // execve is done, which is most of a spawn's cost (C pays it in the child).
  posix_spawn: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  posix_spawn_file_actions_init: { parameters: ["buffer"], result: "i32" },
  posix_spawn_file_actions_adddup2: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  posix_spawn_file_actions_destroy: { parameters: ["buffer"], result: "i32" },
  posix_spawnattr_init: { parameters: ["buffer"], result: "i32" },
  posix_spawnattr_setflags: { parameters: ["buffer", "i16"], result: "i32" },
  posix_spawnattr_setsigmask: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawnattr_setsigdefault: { parameters: ["buffer", "buffer"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const SOCK_NONBLOCK = 0o4000;
const POLLIN = 1;
const EINTR = 4;
const EAGAIN = 11;
const ECONNABORTED = 103;
/**
 * accept(2) errors that belong to the queued connection, not the listener:
 * ECONNABORTED, and what Linux passes on from the new socket (EPROTO,
 * ENOPROTOOPT, ENETDOWN, ENONET, EHOSTDOWN, EHOSTUNREACH, EOPNOTSUPP,
 * ENETUNREACH), EPERM (a firewall rule), ECONNRESET, ETIMEDOUT.
 */
const ACCEPT_RETRY = new Set([ECONNABORTED, 71, 92, 100, 64, 112, 113, 95, 101, 1, 104, 110]);
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_REUSEPORT = 15;
const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const SHUT_WR = 1;
const WNOHANG = 1;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
/** The listen backlog when none is given (what Deno.listen uses). */
const BACKLOG = 511;

let lib: Libc | null | undefined;
let attr: Uint8Array | null = null;

/**
 * Whether the native path can be used: Linux, $UCSPI_NATIVE (in env, or
 * the process environment) is not "0", the ffi permission is granted and
 * libc.so.6 loads. Never throws, never prompts.
 */
export function nativeAvailable(env?: Map<string, string>): boolean {
  let flag: string | undefined;
  try {
    flag = env ? env.get("UCSPI_NATIVE") : Deno.env.get("UCSPI_NATIVE");
  } catch {
    flag = undefined;
  }
  if (flag === "0") return false;
  return libc() !== null;
}

function libc(): Libc | null {
  if (lib !== undefined) return lib;
  lib = null;
  try {
    if (Deno.build.os !== "linux") return null;
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
    lib = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  } catch {
    lib = null;
  }
  return lib;
}

function L(): Libc {
  const l = libc();
  if (!l) throw new Error("native path not available");
  return l;
}

function errno(): number {
  const p = L().__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

const ERRNO_CODES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  7: "E2BIG",
  8: "ENOEXEC",
  12: "ENOMEM",
  13: "EACCES",
  20: "ENOTDIR",
  23: "ENFILE",
  24: "EMFILE",
  26: "ETXTBSY",
  36: "ENAMETOOLONG",
  40: "ELOOP",
  105: "ENOBUFS",
};

function sysError(what: string, n: number): Error {
  const e = new Error(`${what}: os error ${n}`) as Error & { code?: string };
  const code = ERRNO_CODES[n];
  if (code) e.code = code;
  return e;
}

/** An address and port. */
export interface NativeEndpoint {
  ip: string;
  port: number;
}

function sockaddr(ip: string, port: number): Uint8Array | null {
  const v4 = parseIp4(ip);
  if (v4) {
    const b = new Uint8Array(16);
    new DataView(b.buffer).setUint16(0, AF_INET, true);
    new DataView(b.buffer).setUint16(2, port, false);
    b.set(v4, 4);
    return b;
  }
  const v6 = parseIp6(ip);
  if (!v6) return null;
  const b = new Uint8Array(28);
  new DataView(b.buffer).setUint16(0, AF_INET6, true);
  new DataView(b.buffer).setUint16(2, port, false);
  b.set(v6, 8);
  return b;
}

/** A sockaddr_in/sockaddr_in6 as Deno would show it ("::ffff:a.b.c.d" for mapped). */
function endpointOf(b: Uint8Array): NativeEndpoint {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const family = dv.getUint16(0, true);
  const port = dv.getUint16(2, false);
  if (family === AF_INET) return { ip: formatIp4(b.subarray(4, 8)), port };
  const scope = dv.getUint32(24, true);
  const ip = formatIp6(b.subarray(8, 24));
  return { ip: scope ? `${ip}%${scope}` : ip, port };
}

function nameOf(fd: number, peer: boolean): NativeEndpoint {
  const b = new Uint8Array(128);
  const len = new Uint32Array([128]);
  const r = peer ? L().getpeername(fd, b, len) : L().getsockname(fd, b, len);
  if (r !== 0) throw sysError(peer ? "getpeername" : "getsockname", errno());
  return endpointOf(b);
}

function setInt(fd: number, level: number, opt: number, value: number): boolean {
  return L().setsockopt(fd, level, opt, new Int32Array([value]), 4) === 0;
}

// --- one poller for every socket --------------------------------------------

const POLLOUT = 4;
const POLLERR = 8;
const POLLHUP = 16;
const POLLNVAL = 32;
const EFD_FLAGS = 0o2000000 | 0o4000; // EFD_CLOEXEC | EFD_NONBLOCK
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;

interface Interest {
  read: Array<() => void>;
  write: Array<() => void>;
}

/**
 * Waits for sockets to become readable or writable with ONE poll(2) call on
 * one worker thread for all of them (Deno runs blocking FFI calls on a small
 * thread pool: a blocked call per connection would starve it). An eventfd
 * wakes the poll when the set of interests changes.
 */
class Poller {
  readonly #efd: number;
  readonly #want = new Map<number, Interest>();
  /** fd -> events of the poll in flight (null: none in flight). */
  #inFlight: Map<number, number> | null = null;
  #running = false;
  readonly #one = new BigUint64Array([1n]);
  readonly #drain = new Uint8Array(8);

  constructor(efd: number) {
    this.#efd = efd;
  }

  /** Resolves when fd is readable (POLLIN) or writable (POLLOUT), or has an error. */
  wait(fd: number, events: number): Promise<void> {
    return new Promise((resolve) => {
      let w = this.#want.get(fd);
      if (!w) this.#want.set(fd, w = { read: [], write: [] });
      (events === POLLIN ? w.read : w.write).push(resolve);
      if (!this.#running) {
        this.#running = true;
        void this.#loop();
      } else if (this.#inFlight && ((this.#inFlight.get(fd) ?? 0) & events) === 0) {
        this.#wake();
      }
    });
  }

  /** Drops fd (before it is closed): its waiters are resolved and see it closed. */
  forget(fd: number): void {
    const w = this.#want.get(fd);
    if (!w) return;
    this.#want.delete(fd);
    for (const f of [...w.read, ...w.write]) f();
    if (this.#inFlight?.has(fd)) this.#wake();
  }

  #wake(): void {
    L().write(this.#efd, new Uint8Array(this.#one.buffer), 8n);
  }

  async #loop(): Promise<void> {
    const l = L();
    try {
      while (this.#want.size > 0) {
        const fds = [...this.#want.keys()];
        // (at least 128 bytes: V8 keeps small typed arrays in its heap, where
        // they could move while the worker thread writes revents)
        const buf = new Uint8Array(Math.max(128, 8 * (fds.length + 1)));
        const dv = new DataView(buf.buffer);
        dv.setInt32(0, this.#efd, true);
        dv.setInt16(4, POLLIN, true);
        const inFlight = new Map<number, number>();
        fds.forEach((fd, i) => {
          const w = this.#want.get(fd)!;
          const ev = (w.read.length ? POLLIN : 0) | (w.write.length ? POLLOUT : 0);
          dv.setInt32(8 * (i + 1), fd, true);
          dv.setInt16(8 * (i + 1) + 4, ev, true);
          inFlight.set(fd, ev);
        });
        this.#inFlight = inFlight;
        await l.poll(buf, BigInt(fds.length + 1), -1);
        this.#inFlight = null;
        if (dv.getInt16(6, true) !== 0) l.read(this.#efd, this.#drain, 8n);
        fds.forEach((fd, i) => {
          const rev = dv.getInt16(8 * (i + 1) + 6, true);
          if (rev === 0) return;
          const w = this.#want.get(fd);
          if (!w) return;
          const bad = POLLERR | POLLHUP | POLLNVAL;
          if (rev & (POLLIN | bad)) { for (const f of w.read.splice(0)) f(); }
          if (rev & (POLLOUT | bad)) { for (const f of w.write.splice(0)) f(); }
          if (!w.read.length && !w.write.length) this.#want.delete(fd);
        });
      }
    } finally {
      this.#running = false;
      this.#inFlight = null;
    }
  }
}

let poller: Poller | null = null;

function thePoller(): Poller {
  if (!poller) {
    const efd = L().eventfd(0, EFD_FLAGS);
    if (efd < 0) throw sysError("eventfd", errno());
    poller = new Poller(efd);
  }
  return poller;
}

/** A listening socket made with libc. */
export class NativeListener {
  readonly fd: number;
  readonly local: NativeEndpoint;
  #closed = false;

  private constructor(fd: number) {
    this.fd = fd;
    this.local = nameOf(fd, false);
  }

  /**
   * Binds and listens on ip:port (a literal address; "::" is dual-stack)
   * with the given backlog, SO_REUSEADDR as Deno sets it, SO_REUSEPORT when
   * asked. Returns null on
   * any failure: the caller then lets Deno.listen try (and report the error
   * with Deno's error classes, as before).
   */
  static open(
    ip: string,
    port: number,
    reusePort = false,
    backlog = BACKLOG,
  ): NativeListener | null {
    const sa = sockaddr(ip, port);
    const l = libc();
    if (!sa || !l) return null;
    try {
      thePoller();
    } catch {
      return null;
    }
    const v6 = sa.length === 28;
    // Non-blocking: accept4 drains the queue synchronously; the poller
    // waits when it is empty.
    const fd = l.socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return null;
    const ok = setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1) &&
      (!reusePort || setInt(fd, SOL_SOCKET, SO_REUSEPORT, 1)) &&
      (!v6 || ip !== "::" || setInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0)) &&
      l.bind(fd, sa, sa.length) === 0 &&
      l.listen(fd, backlog) === 0;
    if (!ok) {
      l.close(fd);
      return null;
    }
    try {
      return new NativeListener(fd);
    } catch {
      l.close(fd);
      return null;
    }
  }

  /**
   * The next connection (a blocking socket, close-on-exec), or null once
   * closed. Connections that failed while queued are skipped; an error of
   * the listener or the process (EMFILE, ENFILE, ENOBUFS, ENOMEM) is thrown,
   * with its errno name in `code`.
   */
  async accept(): Promise<NativeConn | null> {
    const l = L();
    while (!this.#closed) {
      const fd = l.accept4(this.fd, null, null, SOCK_CLOEXEC);
      if (fd >= 0) {
        try {
          return new NativeConn(fd);
        } catch {
          l.close(fd); // the client is gone already (ENOTCONN)
          continue;
        }
      }
      const e = errno();
      // accept(2): errors of the one queued connection (aborted, network
      // errors pending on it) are to be retried at once.
      if (e === EINTR || ACCEPT_RETRY.has(e)) continue;
      if (e !== EAGAIN) throw sysError("accept", e);
      await thePoller().wait(this.fd, POLLIN);
    }
    return null;
  }

  /** True after close(). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Stops accepting and closes the socket. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    thePoller().forget(this.fd);
    L().close(this.fd);
  }
}

const READ_SIZE = 64 * 1024;

/** An accepted connection's socket (a file descriptor we own until close). */
export class NativeConn {
  readonly fd: number;
  readonly local: NativeEndpoint;
  readonly remote: NativeEndpoint;
  #closed = false;
  #writing = false;
  #io: Io | null = null;
  #readAny = false;

  constructor(fd: number) {
    this.fd = fd;
    this.local = nameOf(fd, false);
    this.remote = nameOf(fd, true);
  }

  /** TCP_NODELAY on or off. */
  setNoDelay(on: boolean): void {
    setInt(this.fd, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0);
  }

  /** Reads what is there (waiting for some); null at EOF, an error, or close(). */
  async read(buf: Uint8Array): Promise<number | null> {
    this.#readAny = true;
    const l = L();
    while (!this.#closed) {
      const n = Number(l.recv(this.fd, buf, BigInt(buf.length), MSG_DONTWAIT));
      if (n > 0) return n;
      if (n === 0) return null;
      const e = errno();
      if (e === EINTR) continue;
      if (e !== EAGAIN) return null;
      await thePoller().wait(this.fd, POLLIN);
    }
    return null;
  }

  /** Writes all of data; throws when the client is gone (or after close()). */
  async writeAll(data: Uint8Array): Promise<void> {
    const l = L();
    this.#writing = true;
    try {
      let off = 0;
      while (off < data.length) {
        if (this.#closed) throw sysError("write", 32);
        const chunk = data.subarray(off);
        const n = Number(
          l.send(this.fd, chunk, BigInt(chunk.length), MSG_DONTWAIT | MSG_NOSIGNAL),
        );
        if (n > 0) {
          off += n;
          continue;
        }
        const e = errno();
        if (n < 0 && e === EINTR) continue;
        if (n < 0 && e === EAGAIN) {
          await thePoller().wait(this.fd, POLLOUT);
          continue;
        }
        throw sysError("write", e || 32);
      }
    } finally {
      this.#writing = false;
    }
  }

  /**
   * The connection as an Io (for stages that run in-process): input ends
   * at the client's FIN, closing output half-closes the socket.
   */
  io(log: (line: string) => void): Io {
    if (this.#io) return this.#io;
    let ended = false;
    // Small first (most in-process stages read a line or two), doubling
    // up to READ_SIZE while reads fill the buffer.
    let size = 4096;
    const input = new ReadableStream<Uint8Array>({
      pull: async (c) => {
        if (ended) return;
        const buf = new Uint8Array(size);
        const n = await this.read(buf);
        if (n === null) {
          ended = true;
          c.close();
        } else {
          if (n === size && size < READ_SIZE) size *= 2;
          c.enqueue(buf.subarray(0, n));
        }
      },
      cancel() {
        ended = true;
      },
    }, { highWaterMark: 0 });
    const output = new WritableStream<Uint8Array>({
      write: (chunk) => this.writeAll(chunk),
      close: () => {
        if (!this.#closed) L().shutdown(this.fd, SHUT_WR);
      },
    });
    this.#io = { input, output, log };
    return this.#io;
  }

  /**
   * True while the socket can go to a program as it is: nothing read from
   * it by a stage, no write under way, not closed.
   */
  get pristine(): boolean {
    return !this.#readAny && !this.#closed && !this.#writing;
  }

  /** Our copy was given to a program (after spawn): close() only drops ours. */
  handedOver(): void {
    // Nothing else to do: closing our copy leaves the program's.
  }

  /** Closes our descriptor once; waiting reads and writes return (EOF, error). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    thePoller().forget(this.fd);
    L().close(this.fd);
  }
}

// --- spawning and reaping -------------------------------------------------

const waiting = new Map<number, (wstat: number) => void>();
let sigchldInstalled = false;
const statusBuf = new Int32Array(1);

/** Reaps pid if it ended; true when it did. */
function reapOne(pid: number, done: (wstat: number) => void): boolean {
  const r = L().waitpid(pid, statusBuf, WNOHANG);
  if (r === pid || (r < 0 && errno() === 10 /* ECHILD */)) {
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
  pid: number;
  /** Resolves with the wait(2) status when the program ended. */
  status: Promise<number>;
}

/**
 * Starts `file` with argv (argv[0] as given) and env, the socket fd as its
 * fd 0 and 1, stderr inherited. posix_spawn without uid/gid; with them
 * (tcpserver -u/-g), node's spawn, which can set both. Throws (with `code`:
 * ENOENT, EACCES...) when the program cannot be started.
 */
export async function spawnOnSocket(
  file: string,
  argv: string[],
  env: Map<string, string>,
  fd: number,
  creds: { uid?: number; gid?: number } = {},
): Promise<Spawned> {
  if (creds.uid !== undefined || creds.gid !== undefined) {
    return await spawnNode(file, argv, env, fd, creds);
  }
  const l = L();
  const fa = new Uint8Array(128);
  l.posix_spawn_file_actions_init(fa);
  try {
    l.posix_spawn_file_actions_adddup2(fa, fd, 0);
    l.posix_spawn_file_actions_adddup2(fa, fd, 1);
    const path = enc.encode(file + "\0");
    // argv is text (our command line): its UTF-8 bytes; env is byte strings.
    const args = cStrings(argv.map(utf8ByteString));
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

function spawnNode(
  file: string,
  argv: string[],
  env: Map<string, string>,
  fd: number,
  creds: { uid?: number; gid?: number },
): Promise<Spawned> {
  return new Promise((resolve, reject) => {
    // node's spawn takes text: textCommand keeps the bytes (lib/process/spawn.ts)
    const t = textCommand(file, argv.slice(1), env, argv[0]);
    const child = nodeSpawn(t.command, t.args, {
      stdio: [fd, fd, "inherit"],
      env: t.env,
      argv0: t.argv0 ?? t.command,
      uid: creds.uid,
      gid: creds.gid,
    });
    const status = new Promise<number>((r) => {
      child.once("exit", (code, signal) => {
        r(waitStatus({ code, signal }));
      });
    });
    child.once("error", reject);
    child.once("spawn", () => resolve({ pid: child.pid ?? 0, status }));
  });
}

// --- dropping the server's ids (tcpserver -u/-g) -----------------------------

/**
 * glibc's own setgroups/setgid/setuid (not raw syscalls): on Linux they
 * apply the change to every thread of the process (nptl's setxid), and
 * Deno runs several threads. Opened separately, on first use.
 */
const ID_SYMBOLS = {
  setgroups: { parameters: ["usize", "buffer"], result: "i32" },
  setgid: { parameters: ["u32"], result: "i32" },
  setuid: { parameters: ["u32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

let idLib: Deno.DynamicLibrary<typeof ID_SYMBOLS>["symbols"] | null = null;

/**
 * Switches the whole process to gid and uid as DJB's tcpserver does after
 * binding (prot_gid, prot_uid): when gid is not 0, setgroups to just gid and
 * setgid(gid); then, when uid is not 0, setuid(uid). Throws an Error
 * ("os error N") naming which step failed in `step` ("gid" or "uid").
 * Only when nativeAvailable() said yes.
 */
export function dropIds(gid: number, uid: number): void {
  if (!libc()) throw new Error("native path not available");
  idLib ??= Deno.dlopen("libc.so.6", ID_SYMBOLS).symbols;
  const l = idLib;
  const fail = (step: "gid" | "uid", what: string): never => {
    const p = l.__errno_location();
    const n = p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
    const e = new Error(`${what}: os error ${n}`) as Error & { step?: string };
    e.step = step;
    throw e;
  };
  if (gid) {
    if (l.setgroups(1n, new Uint32Array([gid])) !== 0) fail("gid", "setgroups");
    if (l.setgid(gid) !== 0) fail("gid", "setgid");
  }
  if (uid && l.setuid(uid) !== 0) fail("uid", "setuid");
}
