/**
 * Socket activation: accepting on a listening socket a supervisor made and
 * passed to us, as systemd (`ListenStream=`, `systemd-socket-activate`) and
 * s6 (s6-fdholder, s6-ipcserver-socketbinder) hand one over, instead of
 * binding host:port ourselves. The supervisor keeps its copy of the socket
 * across a restart of the server, so a connection arriving meanwhile waits
 * in the listen queue instead of being refused.
 *
 * The protocol is sd_listen_fds(3)'s: when $LISTEN_PID is our pid and
 * $LISTEN_FDS is N >= 1, descriptors 3 .. 3+N-1 (SD_LISTEN_FDS_START) are
 * ours; $LISTEN_FDNAMES names them. We accept on descriptor 3, after
 * checking that it is a listening TCP socket (SO_ACCEPTCONN, SO_TYPE, an
 * IPv4 or IPv6 address); every passed descriptor is made close-on-exec and
 * the three variables are unset, as sd_listen_fds(unset_environment=1)
 * does, so the programs we start inherit neither.
 *
 * Only on the native path (lib/native/libc.ts): Deno has no way to accept
 * on a descriptor it did not open itself.
 */
import { E } from "./errno.ts";
import { errorText } from "../core/errors.ts";
import {
  AF_INET,
  AF_INET6,
  errno,
  F_GETFD,
  F_GETFL,
  F_SETFD,
  F_SETFL,
  FD_CLOEXEC,
  getInt,
  L,
  nativeAvailable,
  O_NONBLOCK,
  SO_ACCEPTCONN,
  SO_TYPE,
  SOCK_STREAM,
  SOL_SOCKET,
  sysError,
} from "./libc.ts";
import { NativeListener } from "./listener.ts";
import { familyOf } from "./sockaddr.ts";

/** The first passed descriptor (sd-daemon.h's SD_LISTEN_FDS_START). */
export const SD_LISTEN_FDS_START = 3;

/** The variables of the protocol, unset once the descriptors are taken. */
export const ACTIVATION_VARIABLES: readonly string[] = [
  "LISTEN_PID",
  "LISTEN_FDS",
  "LISTEN_FDNAMES",
];

/** $name from env (a byte-string map), or else the process environment; undefined if unreadable. */
function variable(env: Map<string, string> | undefined, name: string): string | undefined {
  if (env) return env.get(name);
  try {
    return Deno.env.get(name);
  } catch {
    // No env permission: no activation can be seen, so there is none.
    return undefined;
  }
}

/**
 * How many descriptors a supervisor passed us: $LISTEN_FDS when $LISTEN_PID
 * is our pid (both decimal), else 0. Read from env when given, else from
 * the process environment. Pure: looks at nothing but the variables.
 */
export function listenFds(env?: Map<string, string>, pid: number = Deno.pid): number {
  const p = variable(env, "LISTEN_PID");
  const n = variable(env, "LISTEN_FDS");
  if (p === undefined || n === undefined) return 0;
  if (!/^\d{1,10}$/.test(p) || Number(p) !== pid) return 0;
  if (!/^\d{1,10}$/.test(n)) return 0;
  return Number(n);
}

/** An Error for a bad activation, its message read after "unable to bind: ". */
function activationError(text: string): Error {
  return new Error(`socket activation ($LISTEN_FDS): ${text}`);
}

/**
 * The listening socket a supervisor passed us on descriptor 3, ready to
 * accept (non-blocking, close-on-exec), or null when no activation is meant
 * for us (see listenFds). `env` is the server's base environment (byte
 * strings; the process environment when not given): the protocol's
 * variables are deleted from it and from the process environment once the
 * socket is taken. `canUseNative` false (a server that must use Deno's
 * sockets) refuses an activation as the missing native path does.
 *
 * Throws an Error (no `code`: the message says it all) when an activation
 * is meant for us but cannot be served: no native path (needs Linux,
 * --allow-ffi and $UCSPI_NATIVE not "0"), or descriptor 3 is not a
 * listening TCP socket.
 */
export function inheritedListener(
  env?: Map<string, string>,
  canUseNative = true,
): NativeListener | null {
  const count = listenFds(env);
  if (count < 1) return null;
  if (!canUseNative) {
    throw activationError(
      "this server does not use the native path (tcpserver -W and sslserver use Deno's sockets)",
    );
  }
  if (!nativeAvailable(env)) {
    throw activationError(
      "needs the native path: Linux, the ffi permission (--allow-ffi) and $UCSPI_NATIVE not 0",
    );
  }
  const fd = SD_LISTEN_FDS_START;
  const l = L();
  const bad = (what: string, n = errno()) =>
    activationError(`descriptor ${fd} ${what}: ${errorText(sysError("", n))}`);
  const accepting = getInt(fd, SOL_SOCKET, SO_ACCEPTCONN);
  if (accepting === null) throw bad("is not a socket");
  const type = getInt(fd, SOL_SOCKET, SO_TYPE);
  const family = familyOf(fd);
  if (accepting !== 1 || type !== SOCK_STREAM || (family !== AF_INET && family !== AF_INET6)) {
    throw activationError(`descriptor ${fd} is not a listening TCP socket`);
  }
  const flags = l.fcntl(fd, F_GETFL, 0);
  if (flags < 0 || l.fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    throw bad("cannot be made non-blocking");
  }
  // Every passed descriptor close-on-exec (sd_listen_fds does it): our
  // programs must not hold the listener, or a restart would not free it.
  for (let i = fd; i < fd + count; i++) {
    const fdFlags = l.fcntl(i, F_GETFD, 0);
    if (fdFlags >= 0) l.fcntl(i, F_SETFD, fdFlags | FD_CLOEXEC);
    else if (errno() !== E.EBADF && i === fd) throw bad("cannot be made close-on-exec");
    // (a descriptor above 3 that is not open: nothing of ours to protect)
  }
  for (const name of ACTIVATION_VARIABLES) {
    env?.delete(name);
    try {
      Deno.env.delete(name);
    } catch {
      // No env permission: the programs' environment is `env`, built by
      // the caller, which has no such variables any more.
    }
  }
  return NativeListener.adopt(fd);
}
