/**
 * A node net.Socket on an accepted Deno socket, so node:tls runs on Deno's
 * native TCP handle: Deno's TLS layer (rustls, in Rust) then reads and
 * writes the socket itself, where over a JS Duplex (lib/tls/streams.ts
 * duplexOver) every TLS record crosses into JS and back, which costs about
 * twice the CPU of a bulk transfer. The socket is a duplicate of the
 * connection's descriptor (Deno's TCP handle opened from the connection's
 * resource), so the Deno.TcpConn stays open and is closed separately.
 *
 * This uses two Deno internals that are not public API: the connection's
 * resource id (an own symbol property of Deno's Conn) and
 * process.binding("tcp_wrap")'s TCP.openFromRid. When either is missing
 * (another Deno), nodeSocketOn answers null and the caller keeps the
 * portable adapter.
 */
import net from "node:net";
import process from "node:process";

/** Deno's node TCP handle, as far as it is used here. */
interface TcpHandle {
  openFromRid(rid: number): number;
  readStart(): number;
  readStop(): number;
  close(cb?: () => void): void;
}

interface TcpBinding {
  TCP: new (type: number) => TcpHandle;
  constants: { SOCKET: number };
}

let binding: TcpBinding | null | undefined;

function tcpBinding(): TcpBinding | null {
  if (binding !== undefined) return binding;
  try {
    const b = (process as unknown as { binding(name: string): TcpBinding }).binding("tcp_wrap");
    const probe = b && typeof b.TCP === "function" ? b.TCP.prototype : null;
    binding = probe && typeof (probe as TcpHandle).openFromRid === "function" ? b : null;
  } catch {
    binding = null;
  }
  return binding;
}

let ridSymbol: symbol | null | undefined;

function ridOf(conn: Deno.TcpConn): number | undefined {
  if (ridSymbol === undefined) {
    ridSymbol = Object.getOwnPropertySymbols(conn).find((s) =>
      s.description === "Deno.internal.rid"
    ) ?? null;
  }
  if (ridSymbol === null) return undefined;
  const rid = (conn as unknown as Record<symbol, unknown>)[ridSymbol];
  return typeof rid === "number" ? rid : undefined;
}

/**
 * A node socket on a duplicate of conn's descriptor (allowHalfOpen, not yet
 * reading), or null when this Deno cannot make one or the descriptor cannot
 * be duplicated (then conn is untouched). Nothing may read conn afterwards.
 */
export function nodeSocketOn(conn: Deno.TcpConn): net.Socket | null {
  const b = tcpBinding();
  const rid = ridOf(conn);
  if (!b || rid === undefined) return null;
  const handle = new b.TCP(b.constants.SOCKET);
  if (handle.openFromRid(rid) !== 0) {
    try {
      handle.close();
    } catch { /* never opened */ }
    return null;
  }
  return new net.Socket({ handle, allowHalfOpen: true } as net.SocketConstructorOpts);
}

/**
 * Starts or stops reading a native socket's descriptor (what InputGate
 * does for one): the TLS layer reads the handle of the socket it runs on,
 * so stopping the handle holds the peer back in TCP.
 */
export function handleReading(socket: net.Socket): { stop(): void; start(): void } | null {
  const h = (socket as unknown as { _handle?: Partial<TcpHandle> })._handle;
  if (!h || typeof h.readStop !== "function" || typeof h.readStart !== "function") return null;
  return { stop: () => void h.readStop!(), start: () => void h.readStart!() };
}
