/**
 * The pure path's listening socket through node:net instead of Deno.listen:
 * its accepted sockets can be handed to a program as its fd 0 and 1
 * (lib/process/socket_spawn.ts), which Deno.listen's cannot (closing a
 * Deno.TcpConn shuts its write side down, for the program too). Bound
 * synchronously through the TCP handle (errors at start-up stay
 * synchronous: on any failure the caller binds with Deno.listen, which
 * reports it as before), with -b's backlog, then served by a net.Server
 * whose sockets start paused (nothing read before the program gets them)
 * and half-open (the client's FIN ends only our input).
 *
 * The net.Server accepts as fast as connections come; accept() hands them
 * out in order. Under -c the surplus waits here, accepted, instead of in
 * the kernel's backlog, and at most as many as the backlog: past that a
 * new connection is closed at once (a full backlog), so a flood cannot
 * turn the wait into one descriptor per attacker's connection.
 */
import net from "node:net";
import process from "node:process";
import type { Endpoint } from "./connection.ts";

/** The parts of Deno's node:net TCP handle used to bind. */
interface ServerHandle {
  bind(ip: string, port: number): number;
  bind6(ip: string, port: number, flags: number): number;
  listen(backlog: number): number;
  getsockname(out: { address?: string; port?: number }): number;
  close(): void;
}

interface TcpWrapBinding {
  TCP: new (type: number) => ServerHandle;
  constants: { SERVER: number };
}

function tcpWrap(): TcpWrapBinding | null {
  try {
    const binding = (process as unknown as { binding?: (name: string) => unknown }).binding;
    const b = binding?.("tcp_wrap") as Partial<TcpWrapBinding> | undefined;
    if (typeof b?.TCP !== "function" || typeof b.constants?.SERVER !== "number") return null;
    // without it no socket can be handed over: Deno.listen's pumping is as good
    if (typeof (b.TCP.prototype as { fdForIpc?: unknown }).fdForIpc !== "function") return null;
    return b as TcpWrapBinding;
  } catch {
    return null;
  }
}

/** How often a waiting accept() restarts Deno's accept loop (see accept()). */
const REARM_MS = 1000;

/**
 * Whether a socket still has its peer (asked of the kernel, not node's
 * cached address): a client that reset while queued has none, and costs
 * no process.
 */
function connected(s: net.Socket): boolean {
  const h = (s as unknown as { _handle?: { getpeername?(out: object): number } | null })._handle;
  return !s.destroyed && !!h && h.getpeername?.({}) === 0;
}

/** A listening node:net server and its accepted sockets, in order. */
export class NodeListener {
  /** The address bound (port 0 picked one). */
  readonly local: Endpoint;
  readonly #server: net.Server;
  readonly #ready: net.Socket[] = [];
  #failure: Error | null = null;
  #waiter: ((s: net.Socket | null | Error) => void) | null = null;
  #closed = false;
  readonly #rearm: () => void;
  readonly #backlog: number;
  #rearming: ReturnType<typeof setInterval> | undefined;

  private constructor(server: net.Server, local: Endpoint, rearm: () => void, backlog: number) {
    this.#server = server;
    this.local = local;
    this.#rearm = rearm;
    this.#backlog = backlog;
    server.on("connection", (sock: net.Socket) => {
      // a reset fails only its own reads and writes
      sock.on("error", () => {});
      if (this.#closed) sock.destroy();
      else this.#deliver(sock);
    });
    // An accept failure (EMFILE...): the next accept() rejects with it.
    server.on("error", (e: Error) => this.#deliver(e));
  }

  #deliver(s: net.Socket | Error): void {
    if (s instanceof net.Socket && !connected(s)) {
      s.destroy(); // reset already: as an accept that failed for it alone
      return;
    }
    const w = this.#waiter;
    if (w) {
      this.#waiter = null;
      clearInterval(this.#rearming);
      w(s);
    } else if (s instanceof Error) this.#failure = s;
    else if (this.#ready.length >= this.#backlog) s.destroy(); // the queue is full
    else this.#ready.push(s);
  }

  /**
   * Binds hostname (an IP address) and port with backlog and listens, or
   * null when this Deno has no TCP handle to do it with or binding fails
   * (the caller then binds with Deno.listen, which throws the reason).
   */
  static open(hostname: string, port: number, backlog: number): NodeListener | null {
    const wrap = tcpWrap();
    // only a plain literal: names, zones (%eth0) and the like stay Deno.listen's
    if (wrap === null || net.isIP(hostname) === 0) return null;
    let h: ServerHandle | null = null;
    try {
      h = new wrap.TCP(wrap.constants.SERVER);
      const bound = net.isIP(hostname) === 6 ? h.bind6(hostname, port, 0) : h.bind(hostname, port);
      if (bound !== 0 || h.listen(backlog) !== 0) throw new Error("bind");
      const name: { address?: string; port?: number } = {};
      if (h.getsockname(name) !== 0 || name.port === undefined) throw new Error("getsockname");
      const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
      const handle = h;
      const l = new NodeListener(
        server,
        { ip: name.address ?? hostname, port: name.port },
        () => handle.listen(backlog),
        backlog,
      );
      server.listen(h, backlog);
      return l;
    } catch {
      try {
        h?.close();
      } catch { /* not open */ }
      return null;
    }
  }

  /** The next accepted socket (paused); null once closed; rejects with an accept failure. */
  accept(): Promise<net.Socket | null> {
    for (let s = this.#ready.shift(); s; s = this.#ready.shift()) {
      if (connected(s)) return Promise.resolve(s);
      s.destroy(); // reset while it waited here: as an accept that failed for it alone
    }
    if (this.#closed) return Promise.resolve(null);
    const f = this.#failure;
    if (f) {
      this.#failure = null;
      return Promise.reject(f);
    }
    // Deno 2.9's accept loop ends silently at EMFILE and listen() on the
    // listening socket starts it again (a no-op while it runs: measured,
    // 200,000 calls in 4 ms, no growth): while we wait, once a second, so
    // the server accepts again within a second of descriptors coming back.
    this.#rearming = setInterval(this.#rearm, REARM_MS);
    return new Promise((resolve, reject) => {
      this.#waiter = (v) => v instanceof Error ? reject(v) : resolve(v);
    });
  }

  /** Stops listening (the port is free once this returns) and drops sockets not yet taken. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    for (const s of this.#ready.splice(0)) s.destroy();
    clearInterval(this.#rearming);
    const w = this.#waiter;
    this.#waiter = null;
    w?.(null);
  }
}
