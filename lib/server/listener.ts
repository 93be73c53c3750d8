/**
 * The listening socket and the accept gate's mechanism: which socket to
 * accept on (one a supervisor passed, a native one, or Deno's), which
 * accept failures concern only the queued client (go on at once) and which
 * the process (pause), and -L's answer to a client over the -c limit.
 */
import { errnoName } from "../core/errors.ts";
import { writeAll } from "../core/write_all.ts";
import { nativeAvailable, NativeConn, NativeListener } from "../native/native.ts";
import { inheritedListener } from "../native/activation.ts";
import type { Endpoint } from "./connection.ts";
import { NodeListener } from "./node_listener.ts";
import { mayChain } from "../stages/chainable.ts";
import { Socket } from "node:net";
import type { ServerOptions } from "./options.ts";

/** The socket a server accepts on: native (libc) or Deno's, and its address. */
export interface OpenListener {
  /** The native listener (socket activation or our own), or null. */
  native: NativeListener | null;
  /** Deno's listener (the pure path when node:net cannot hand sockets over), or null. */
  deno: Deno.TcpListener | null;
  /** node:net's listener (the pure path: programs get the socket itself), or null. */
  node: NodeListener | null;
  /** The address it is bound to (port 0 picks one). */
  local: Endpoint;
}

/**
 * Binds and listens as opts say (throws Deno's error: AddrInUse,
 * PermissionDenied...): on descriptor 3 when a supervisor passed it (socket
 * activation), else natively when available, else through node:net when
 * every connection's program gets the socket itself (handsOver), else with
 * Deno.listen.
 */
export function openListener(opts: ServerOptions): OpenListener {
  const usable = opts.native !== false;
  const passed = inheritedListener(opts.baseEnv, usable);
  if (passed) return { native: passed, deno: null, node: null, local: { ...passed.local } };
  if (usable && !opts.hostname.includes("%") && nativeAvailable(opts.baseEnv)) {
    // Any failure here: Deno.listen below tries again and reports it.
    const n = NativeListener.open(opts.hostname, opts.port, opts.reusePort, opts.backlog);
    if (n) return { native: n, deno: null, node: null, local: { ...n.local } };
  }
  if (handsOver(opts)) {
    // Any failure here: Deno.listen below tries again and reports it.
    const n = NodeListener.open(opts.hostname, opts.port, opts.backlog ?? 511);
    if (n) return { native: null, deno: null, node: n, local: { ...n.local } };
  }
  const o: Deno.TcpListenOptions = { hostname: opts.hostname, port: opts.port };
  if (opts.reusePort) o.reusePort = true;
  const l = Deno.listen({ ...o, transport: "tcp" });
  const a = l.addr as Deno.NetAddr;
  return { native: null, deno: l, node: null, local: { ip: a.hostname, port: a.port } };
}

/**
 * Whether the pure path listens through node:net (lib/server/node_listener.ts)
 * and hands each socket to its program: only when asked ($UCSPI_HANDOFF=1
 * in our environment), no $REUSEPORT (Deno.listen's), and nothing but the
 * program ever talks over the socket: no -B banner, no -L message, no PROXY
 * or TLS step, no in-process stage at the head of argv. Why so narrow, with
 * Deno 2.9.6's node:net: a write fails with EPIPE once the client's FIN is
 * there and nothing is left unread (a half-closed client would lose what we
 * write; a program on the socket itself never writes through Deno), and its
 * accept stops for good once it met EMFILE (Deno.listen's goes on when
 * descriptors come back).
 */
export function handsOver(opts: ServerOptions): boolean {
  return opts.baseEnv.get("UCSPI_HANDOFF") === "1" &&
    !opts.reusePort && !opts.banner && !opts.overLimitMessage &&
    !(opts.steps?.length) && opts.argv.length > 0 && !mayChain(opts.argv[0]);
}

/** How long the accept loop pauses when the process is out of descriptors or buffers. */
export const ACCEPT_PAUSE_MS = 100;

/** errno names of accept failures the kernel reports for one queued connection only. */
const CLIENT_GONE = new Set([
  "ECONNABORTED",
  "ECONNRESET",
  "ENOTCONN",
  "EPROTO",
  "ENETDOWN",
  "ENOPROTOOPT",
  "EHOSTDOWN",
  "ENONET",
  "EHOSTUNREACH",
  "EOPNOTSUPP",
  "ENETUNREACH",
  "ETIMEDOUT",
  "EPERM",
  "EAGAIN",
  "EINTR",
]);

/**
 * True when an accept failure concerns only the connection being accepted
 * (reset or aborted while queued, as Linux's accept(2) lists): the loop
 * goes on at once. Exhaustion (EMFILE, ENFILE, ENOBUFS, ENOMEM) and
 * anything unknown are false.
 */
export function acceptGoesOn(e: unknown): boolean {
  const code = errnoName(e);
  return code !== undefined && CLIENT_GONE.has(code);
}
const enc = new TextEncoder();

/** -L: writes message and CRLF to a client over the -c limit, then closes it (never throws). */
export function refuseBusy(conn: Deno.TcpConn | NativeConn | Socket, message: string): void {
  const data = enc.encode(message + "\r\n");
  if (conn instanceof Socket) {
    // closed once the message is out (errors go to the listener's handler)
    conn.end(data, () => conn.destroy());
    return;
  }
  void (async () => {
    try {
      if (conn instanceof NativeConn) await conn.writeAll(data);
      else await writeAll(conn, data);
    } catch { /* the client is gone */ }
    try {
      conn.close();
    } catch { /* closed */ }
  })();
}
