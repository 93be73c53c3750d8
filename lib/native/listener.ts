/**
 * The native path's listening socket: made with socket/bind/listen (or
 * inherited from a supervisor, see `inheritedListener`), non-blocking;
 * connections are taken with accept4 on the main thread (SOCK_CLOEXEC, so
 * only the program started on a connection inherits it), and the shared
 * poller (lib/native/poller.ts) waits while the queue is empty. Ended
 * programs are reaped here, before each accept (lib/native/reaper.ts).
 */
import { NativeConn } from "./conn.ts";
import { E } from "./errno.ts";
import {
  AF_INET,
  AF_INET6,
  errno,
  IPPROTO_IPV6,
  IPV6_V6ONLY,
  L,
  libc,
  setInt,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  SOL_SOCKET,
  sysError,
} from "./libc.ts";
import { POLLIN, thePoller } from "./poller.ts";
import { reapEnded } from "./reaper.ts";
import { nameOf, type NativeEndpoint, sockaddr } from "./sockaddr.ts";

/**
 * accept(2) errors that belong to the queued connection, not the listener:
 * ECONNABORTED, and what Linux passes on from the new socket (EPROTO,
 * ENOPROTOOPT, ENETDOWN, ENONET, EHOSTDOWN, EHOSTUNREACH, EOPNOTSUPP,
 * ENETUNREACH), EPERM (a firewall rule), ECONNRESET, ETIMEDOUT.
 */
const ACCEPT_RETRY = new Set<number>([
  E.ECONNABORTED,
  E.EPROTO,
  E.ENOPROTOOPT,
  E.ENETDOWN,
  E.ENONET,
  E.EHOSTDOWN,
  E.EHOSTUNREACH,
  E.EOPNOTSUPP,
  E.ENETUNREACH,
  E.EPERM,
  E.ECONNRESET,
  E.ETIMEDOUT,
]);

/** The listen backlog when none is given (what Deno.listen uses). */
const BACKLOG = 511;

/** A listening socket made with libc (or inherited). */
export class NativeListener {
  /** The listening socket's descriptor. */
  readonly fd: number;
  /** The address it is bound to (getsockname). */
  readonly local: NativeEndpoint;
  #closed = false;

  /**
   * Wraps listening socket fd (non-blocking, close-on-exec); throws when
   * getsockname fails. Use `open` or `inheritedListener`.
   */
  protected constructor(fd: number) {
    this.fd = fd;
    this.local = nameOf(fd, false);
  }

  /** Wraps a listening socket already checked and made non-blocking (inheritedListener). */
  static adopt(fd: number): NativeListener {
    thePoller();
    return new NativeListener(fd);
  }

  /**
   * Binds and listens on ip:port (a literal address; "::" is dual-stack)
   * with the given backlog, SO_REUSEADDR as Deno sets it, SO_REUSEPORT when
   * asked. Returns null on any failure: the caller then lets Deno.listen
   * try (and report the error with Deno's error classes, as before).
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
      // No eventfd (descriptors exhausted): Deno.listen's try reports it.
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
      // getsockname failed on a socket we just bound: give up on the native
      // path; Deno.listen's try reports whatever is wrong.
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
      // Programs that ended are reaped before a connection is judged (their
      // per-IP counts given back), as C's SIGCHLD handler runs first.
      reapEnded();
      const fd = l.accept4(this.fd, null, null, SOCK_CLOEXEC);
      if (fd >= 0) {
        try {
          return new NativeConn(fd);
        } catch {
          l.close(fd); // the client is gone already (ENOTCONN): take the next
          continue;
        }
      }
      const e = errno();
      // accept(2): errors of the one queued connection (aborted, network
      // errors pending on it) are to be retried at once.
      if (e === E.EINTR || ACCEPT_RETRY.has(e)) continue;
      if (e !== E.EAGAIN) throw sysError("accept", e);
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
