/**
 * Failures as DJB's tools report them: one stderr line and an exit code.
 * Only `mod.ts` turns a ToolError into text on stderr and a process exit.
 */
import { errnoCode } from "../native/errno.ts";
import { stringBytes } from "./bytes.ts";

/** A failure carrying the complete stderr line (without newline) and DJB's exit code. */
export class ToolError extends Error {
  /**
   * A failure printing `message` (one or more lines) and exiting with
   * `exitCode`. `byteMessage`: the message is a byte string (it shows bytes
   * read from input, lib/core/bytes.ts) and is written as those bytes;
   * otherwise it is text, written as UTF-8.
   */
  constructor(message: string, readonly exitCode: number, readonly byteMessage = false) {
    super(message);
    this.name = "ToolError";
  }
}

/** What `mod.ts` writes on stderr for a ToolError: its message and a newline, as bytes. */
export function toolErrorBytes(e: ToolError): Uint8Array {
  const line = e.message + "\n";
  return e.byteMessage ? stringBytes(line) : new TextEncoder().encode(line);
}

/** `prog: usage: text`, exit 100. */
export function usage(prog: string, text: string): ToolError {
  return new ToolError(`${prog}: usage: ${text}`, 100);
}

/** `prog: fatal: text`, exit 111 (DJB's temporary failure). */
export function fatal(prog: string, text: string, exitCode = 111): ToolError {
  return new ToolError(`${prog}: fatal: ${text}`, exitCode);
}

/** `prog: fatal: text: reason`, where reason is errorText(cause). */
export function fatalSys(prog: string, text: string, cause: unknown, exitCode = 111): ToolError {
  return fatal(prog, `${text}: ${errorText(cause)}`, exitCode);
}

/** DJB's error_str() texts, keyed by errno name. */
const ERRNO_TEXT: Record<string, string> = {
  EINTR: "interrupted system call",
  ENOMEM: "out of memory",
  ENOENT: "file does not exist",
  ETXTBSY: "text busy",
  EIO: "input/output error",
  EEXIST: "file already exists",
  ETIMEDOUT: "timed out",
  EINPROGRESS: "operation in progress",
  EAGAIN: "temporary failure",
  EWOULDBLOCK: "input/output would block",
  EPIPE: "broken pipe",
  EPERM: "permission denied",
  EACCES: "access denied",
  ENXIO: "device not configured",
  EPROTO: "protocol error",
  EISDIR: "is a directory",
  ENOTDIR: "not a directory",
  ESRCH: "no such process",
  E2BIG: "argument list too long",
  ENOEXEC: "exec format error",
  EBADF: "file descriptor not open",
  ECHILD: "no child processes",
  EDEADLK: "operation would cause deadlock",
  EFAULT: "bad address",
  ENOTBLK: "not a block device",
  EBUSY: "device busy",
  EXDEV: "cross-device link",
  ENODEV: "device does not support operation",
  EINVAL: "invalid argument",
  ENFILE: "system cannot open more files",
  EMFILE: "process cannot open more files",
  ENOTTY: "not a tty",
  EFBIG: "file too big",
  ENOSPC: "out of disk space",
  ESPIPE: "unseekable descriptor",
  EROFS: "read-only file system",
  EMLINK: "too many links",
  EDOM: "input out of range",
  ERANGE: "output out of range",
  EALREADY: "operation already in progress",
  ENOTSOCK: "not a socket",
  EDESTADDRREQ: "destination address required",
  EMSGSIZE: "message too long",
  EPROTOTYPE: "incorrect protocol type",
  ENOPROTOOPT: "protocol not available",
  EPROTONOSUPPORT: "protocol not supported",
  ESOCKTNOSUPPORT: "socket type not supported",
  EOPNOTSUPP: "operation not supported",
  EPFNOSUPPORT: "protocol family not supported",
  EAFNOSUPPORT: "address family not supported",
  EADDRINUSE: "address already used",
  EADDRNOTAVAIL: "address not available",
  ENETDOWN: "network down",
  ENETUNREACH: "network unreachable",
  ENETRESET: "network reset",
  ECONNABORTED: "connection aborted",
  ECONNRESET: "connection reset",
  ENOBUFS: "out of buffer space",
  EISCONN: "already connected",
  ENOTCONN: "not connected",
  ESHUTDOWN: "socket shut down",
  ETOOMANYREFS: "too many references",
  ECONNREFUSED: "connection refused",
  ELOOP: "symbolic link loop",
  ENAMETOOLONG: "file name too long",
  EHOSTDOWN: "host down",
  EHOSTUNREACH: "host unreachable",
  ENOTEMPTY: "directory not empty",
  EPROCLIM: "too many processes",
  EUSERS: "too many users",
  EDQUOT: "disk quota exceeded",
  ESTALE: "stale NFS file handle",
  EREMOTE: "too many levels of remote in path",
  EBADRPC: "RPC structure is bad",
  ERPCMISMATCH: "RPC version mismatch",
  EPROGUNAVAIL: "RPC program unavailable",
  EPROGMISMATCH: "program version mismatch",
  EPROCUNAVAIL: "bad procedure for program",
  ENOLCK: "no locks available",
  ENOSYS: "system call not available",
  EFTYPE: "bad file type",
  EAUTH: "authentication error",
  ENEEDAUTH: "not authenticated",
  ENOSTR: "not a stream device",
  ETIME: "timer expired",
  ENOSR: "out of stream resources",
  ENOMSG: "no message of desired type",
  EBADMSG: "bad message type",
  EIDRM: "identifier removed",
  ENONET: "machine not on network",
  ENOLINK: "link severed",
  ECOMM: "communication error",
  EMULTIHOP: "multihop attempted",
  EREMCHG: "remote address changed",
};

/** Deno's error classes, mapped to the errno they stand for. */
const DENO_ERROR_ERRNO: Record<string, string> = {
  NotFound: "ENOENT",
  PermissionDenied: "EACCES",
  ConnectionRefused: "ECONNREFUSED",
  ConnectionReset: "ECONNRESET",
  ConnectionAborted: "ECONNABORTED",
  NotConnected: "ENOTCONN",
  AddrInUse: "EADDRINUSE",
  AddrNotAvailable: "EADDRNOTAVAIL",
  BrokenPipe: "EPIPE",
  AlreadyExists: "EEXIST",
  TimedOut: "ETIMEDOUT",
  Interrupted: "EINTR",
  WouldBlock: "EAGAIN",
  IsADirectory: "EISDIR",
  NotADirectory: "ENOTDIR",
  NetworkUnreachable: "ENETUNREACH",
  FilesystemLoop: "ELOOP",
};

/** The errno name behind an error from Deno or node:, if one can be found. */
export function errnoName(e: unknown): string | undefined {
  if (e && typeof e === "object") {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && code.startsWith("E")) return code;
    const name = (e as { name?: unknown }).name;
    if (typeof name === "string" && name in DENO_ERROR_ERRNO) {
      // Deno's PermissionDenied covers EPERM too; the OS message tells which.
      const msg = String((e as { message?: unknown }).message ?? "");
      if (name === "PermissionDenied" && /not permitted|EPERM/i.test(msg)) return "EPERM";
      const m = /os error (\d+)/.exec(msg);
      if (m) return errnoFromNumber(Number(m[1])) ?? DENO_ERROR_ERRNO[name];
      return DENO_ERROR_ERRNO[name];
    }
    const msg = String((e as { message?: unknown }).message ?? "");
    const m = /os error (\d+)/.exec(msg);
    if (m) return errnoFromNumber(Number(m[1]));
  }
  return undefined;
}

function errnoFromNumber(n: number): string | undefined {
  return errnoCode(n);
}

/** DJB's text for an error ("file does not exist", "address already used", ...). */
export function errorText(e: unknown): string {
  const errno = errnoName(e);
  if (errno && ERRNO_TEXT[errno]) return ERRNO_TEXT[errno];
  if (e && typeof e === "object" && (e as { name?: unknown }).name === "NotCapable") {
    return `missing Deno permission (${(e as Error).message})`;
  }
  if (e instanceof Error) return e.message;
  return String(e);
}
