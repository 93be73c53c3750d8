/**
 * Linux errno numbers and their names: the one table (x86-64 and arm64
 * share asm-generic's numbering). lib/core/errors.ts names the "os error N"
 * of Deno's errors with it; the native path names what libc left in errno.
 * Pure data: importing it opens nothing.
 */

/** errno number -> name, for every errno Linux's asm-generic headers define that we can meet. */
export const LINUX_ERRNO: Readonly<Record<number, string>> = Object.freeze({
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  7: "E2BIG",
  8: "ENOEXEC",
  9: "EBADF",
  10: "ECHILD",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  15: "ENOTBLK",
  16: "EBUSY",
  17: "EEXIST",
  18: "EXDEV",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  25: "ENOTTY",
  26: "ETXTBSY",
  27: "EFBIG",
  28: "ENOSPC",
  29: "ESPIPE",
  30: "EROFS",
  31: "EMLINK",
  32: "EPIPE",
  33: "EDOM",
  34: "ERANGE",
  35: "EDEADLK",
  36: "ENAMETOOLONG",
  37: "ENOLCK",
  38: "ENOSYS",
  39: "ENOTEMPTY",
  40: "ELOOP",
  42: "ENOMSG",
  43: "EIDRM",
  60: "ENOSTR",
  62: "ETIME",
  63: "ENOSR",
  64: "ENONET",
  66: "EREMOTE",
  67: "ENOLINK",
  70: "ECOMM",
  71: "EPROTO",
  72: "EMULTIHOP",
  74: "EBADMSG",
  78: "EREMCHG",
  87: "EUSERS",
  88: "ENOTSOCK",
  89: "EDESTADDRREQ",
  90: "EMSGSIZE",
  91: "EPROTOTYPE",
  92: "ENOPROTOOPT",
  93: "EPROTONOSUPPORT",
  94: "ESOCKTNOSUPPORT",
  95: "EOPNOTSUPP",
  96: "EPFNOSUPPORT",
  97: "EAFNOSUPPORT",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  100: "ENETDOWN",
  101: "ENETUNREACH",
  102: "ENETRESET",
  103: "ECONNABORTED",
  104: "ECONNRESET",
  105: "ENOBUFS",
  106: "EISCONN",
  107: "ENOTCONN",
  108: "ESHUTDOWN",
  109: "ETOOMANYREFS",
  110: "ETIMEDOUT",
  111: "ECONNREFUSED",
  112: "EHOSTDOWN",
  113: "EHOSTUNREACH",
  114: "EALREADY",
  115: "EINPROGRESS",
  116: "ESTALE",
  122: "EDQUOT",
});

/** The name of Linux errno `n` ("EMFILE"), or undefined for a number the table lacks. */
export function errnoCode(n: number): string | undefined {
  return LINUX_ERRNO[n];
}

/** errno values the native path tests for by number, by name. */
export interface ErrnoNumbers {
  /** Operation not permitted (a firewall rule refusing an accepted connection). */
  readonly EPERM: 1;
  /** Interrupted system call. */
  readonly EINTR: 4;
  /** Bad file descriptor. */
  readonly EBADF: 9;
  /** No child processes. */
  readonly ECHILD: 10;
  /** Try again (would block). */
  readonly EAGAIN: 11;
  /** Broken pipe. */
  readonly EPIPE: 32;
  /** Machine is not on the network. */
  readonly ENONET: 64;
  /** Protocol error. */
  readonly EPROTO: 71;
  /** Protocol not available. */
  readonly ENOPROTOOPT: 92;
  /** Operation not supported. */
  readonly EOPNOTSUPP: 95;
  /** Network is down. */
  readonly ENETDOWN: 100;
  /** Network is unreachable. */
  readonly ENETUNREACH: 101;
  /** Connection aborted. */
  readonly ECONNABORTED: 103;
  /** Connection reset by peer. */
  readonly ECONNRESET: 104;
  /** Connection timed out. */
  readonly ETIMEDOUT: 110;
  /** Host is down. */
  readonly EHOSTDOWN: 112;
  /** No route to host. */
  readonly EHOSTUNREACH: 113;
}

/** errno values the native path tests for by number. */
export const E: ErrnoNumbers = Object.freeze({
  EPERM: 1,
  EINTR: 4,
  EBADF: 9,
  ECHILD: 10,
  EAGAIN: 11,
  EPIPE: 32,
  ENONET: 64,
  EPROTO: 71,
  ENOPROTOOPT: 92,
  EOPNOTSUPP: 95,
  ENETDOWN: 100,
  ENETUNREACH: 101,
  ECONNABORTED: 103,
  ECONNRESET: 104,
  ETIMEDOUT: 110,
  EHOSTDOWN: 112,
  EHOSTUNREACH: 113,
});
