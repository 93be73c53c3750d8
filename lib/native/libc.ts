/**
 * libc through Deno FFI (Linux, glibc): the symbols the native path calls,
 * opened once on first use, the errno they leave, and the socket constants.
 *
 * Used only when available (see `nativeAvailable`): Linux, the ffi
 * permission granted (--allow-ffi), libc.so.6 loadable, and $UCSPI_NATIVE
 * not "0". Importing this module has no side effects.
 */
import { errnoCode } from "./errno.ts";

/** The libc functions the native path calls, as Deno.dlopen takes them. */
export const LIBC_SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  // A call that blocks (lib/native/poller.ts): on Deno's FFI worker thread.
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  waitid: { parameters: ["i32", "u32", "buffer", "i32"], result: "i32" },
  // Blocked until a child ends, on an FFI worker thread (lib/native/reaper.ts).
  waitid_blocking: {
    name: "waitid",
    parameters: ["i32", "u32", "buffer", "i32"],
    result: "i32",
    nonblocking: true,
  },
  // On the main thread, as C tcpserver's fork: the parent waits until the
  // child's execve is done (CLONE_VFORK), which costs it less CPU than a
  // worker thread's hand-off and wake-up (lib/native/spawn.ts).
  posix_spawn: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
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

/** The libc functions the native path calls. */
export type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

/** Socket, option and flag constants (Linux values). */
export const AF_INET = 2;
/** Unix-domain sockets (socketpair). */
export const AF_UNIX = 1;
/** IPv6 address family. */
export const AF_INET6 = 10;
/** A byte-stream socket (TCP). */
export const SOCK_STREAM = 1;
/** socket/accept4 flag: close-on-exec. */
export const SOCK_CLOEXEC = 0o2000000;
/** socket/accept4 flag: non-blocking. */
export const SOCK_NONBLOCK = 0o4000;
/** setsockopt level of the socket itself. */
export const SOL_SOCKET = 1;
/** Allow binding while old connections of the port linger (Deno sets it too). */
export const SO_REUSEADDR = 2;
/** getsockopt: the socket's type (SOCK_STREAM...). */
export const SO_TYPE = 3;
/** Several sockets bound to one port (tcpserver's reuse-port option). */
export const SO_REUSEPORT = 15;
/** getsockopt: 1 when the socket is listening. */
export const SO_ACCEPTCONN = 30;
/** setsockopt level of TCP. */
export const IPPROTO_TCP = 6;
/** TCP option: no Nagle delay. */
export const TCP_NODELAY = 1;
/** setsockopt level of IPv6. */
export const IPPROTO_IPV6 = 41;
/** IPv6 option: refuse IPv4-mapped connections (we clear it for "::"). */
export const IPV6_V6ONLY = 26;
/** shutdown: no more sending (FIN). */
export const SHUT_WR = 1;
/** fcntl: read the file status flags. */
export const F_GETFL = 3;
/** fcntl: set the file status flags. */
export const F_SETFL = 4;
/** fcntl: read the descriptor flags. */
export const F_GETFD = 1;
/** fcntl: set the descriptor flags. */
export const F_SETFD = 2;
/** fcntl: duplicate to the lowest free descriptor >= arg (not close-on-exec). */
export const F_DUPFD = 0;
/** open flag: close-on-exec. */
export const O_CLOEXEC = 0o2000000;
/** Descriptor flag: close-on-exec. */
export const FD_CLOEXEC = 1;
/** File status flag: non-blocking. */
export const O_NONBLOCK = 0o4000;

let lib: Libc | null | undefined;

/**
 * libc's symbols, or null when the native path cannot be used (not Linux,
 * no ffi permission, libc.so.6 not loadable). Opened once; never throws.
 */
export function libc(): Libc | null {
  if (lib !== undefined) return lib;
  lib = null;
  try {
    if (Deno.build.os !== "linux") return null;
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
    lib = Deno.dlopen("libc.so.6", LIBC_SYMBOLS).symbols;
  } catch {
    // Any failure to open libc (no glibc, a sandbox refusing dlopen) means
    // "no native path": the callers use Deno's own sockets instead.
    lib = null;
  }
  return lib;
}

/** libc's symbols; throws when not available (callers checked nativeAvailable first). */
export function L(): Libc {
  const l = libc();
  if (!l) throw new Error("native path not available");
  return l;
}

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
    // No env permission: $UCSPI_NATIVE cannot be read, so it is not "0".
    flag = undefined;
  }
  if (flag === "0") return false;
  return libc() !== null;
}

/** The calling thread's errno (right after the libc call that failed). */
export function errno(): number {
  const p = L().__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

/**
 * An Error for errno `n` after `what` failed: message `what: os error N`
 * (which lib/core/errors.ts's errnoName reads) and the errno's name in
 * `code`, as node: errors carry it.
 */
export function sysError(what: string, n: number): Error & { code?: string } {
  const e = new Error(`${what}: os error ${n}`) as Error & { code?: string };
  const code = errnoCode(n);
  if (code) e.code = code;
  return e;
}

/** setsockopt(fd, level, opt, int value); true when it succeeded. */
export function setInt(fd: number, level: number, opt: number, value: number): boolean {
  return L().setsockopt(fd, level, opt, new Int32Array([value]), 4) === 0;
}

/** getsockopt(fd, level, opt) as an int, or null when it failed (errno says why). */
export function getInt(fd: number, level: number, opt: number): number | null {
  const v = new Int32Array(1);
  const len = new Uint32Array([4]);
  return L().getsockopt(fd, level, opt, v, len) === 0 ? v[0] : null;
}
