/**
 * tcpserver's core: listen, the accept gate (-c, and the -L over-limit
 * mode), and each connection's pipeline:
 *
 *   accept -> prepare hook (PROXY header, TLS: sslserver) -> banner (-B)
 *     -> peer info (TCPLOCAL*, TCPREMOTE*: -l/-h/-p DNS and -r ident, with
 *        timeouts) -> rules (-x) -> limits (MAXLOAD, MAXCONNIP, MAXCONNC)
 *     -> log "ok" -> runConnectionProgram (lib/stages/chain.ts) -> log "end"
 *
 * The server takes parsed options (cli/tcpserver.ts parses the command
 * line); a tool built on it (sslserver) adds its per-connection steps with
 * the `prepare` hook instead of copying this file.
 *
 * Two paths share this pipeline: the native one (lib/native/native.ts: libc
 * sockets through FFI; a foreign program gets the socket itself as fd 0/1,
 * as under C) when FFI is available and nothing wraps the stream, else the
 * pure-Deno one (Deno.listen; the program's stdin/stdout pumped).
 *
 * Log lines are DJB's (lib/server/log.ts). Where C prints a child's pid, this
 * server prints a connection number (1, 2, ...): a connection is not a
 * process here (rules may deny it, rblsmtpd may answer it in-process), and
 * the number is the same on its "pid", "ok"/"deny" and "end" lines and in
 * rblsmtpd's lines. The "end" status is the wait status C would report: the
 * program's exit code x 256 or its signal; 25600 (exit 100) for a denied
 * connection, 28416 (exit 111) for a dropped one.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { isOurs, runConnectionProgram } from "../stages/chain.ts";
import { DnsCache, resolveAddrs, resolvePtr } from "../net/dns.ts";
import { errnoName, errorText } from "../core/errors.ts";
import { applyEnviron, showAddress, tcpEnviron } from "../core/environ.ts";
import { type IdentQuery, remoteInfo } from "../net/ident.ts";
import { Limits } from "./limits.ts";
import { nativeAvailable, NativeConn, NativeListener, spawnOnSocket } from "../native/native.ts";
import { inheritedListener } from "../native/activation.ts";
import { findProgram } from "../process/pathexec.ts";
import { stderrLine } from "../core/log.ts";
import { BoundedMap } from "../core/bounded.ts";
import { writeAll } from "../core/write_all.ts";
import { RulesFile } from "../rules/rules.ts";
import { type Ended, endedOf, getRunAs, waitStatus } from "../process/spawn.ts";
import type { Io } from "../stages/stage.ts";
import { decisionLine, endLine, pidLine, statusLine } from "./log.ts";

/** An address and port. */
export interface Endpoint {
  ip: string;
  port: number;
}

/** Everything tcpserver's options decide. */
export interface ServerOptions {
  /** The program name in log lines (default "tcpserver"). */
  prog?: string;
  /** Address to listen on ("::" = dual stack, "0.0.0.0", a literal address). */
  hostname: string;
  port: number;
  /** SO_REUSEPORT on the listening socket (several servers on one port). */
  reusePort?: boolean;
  /** -b: the listen backlog (native path only; Deno.listen's is fixed at 511). */
  backlog?: number;
  /** -c: connections handled at once (default 40). */
  limit: number;
  /**
   * -L: at the -c limit, accept each excess connection, write this message
   * and CRLF, and close it. Null: stop accepting until a connection ends.
   */
  overLimitMessage?: string | null;
  /** -x: the rules cdb, or null. */
  rules?: string | null;
  /** -X: allow when the rules cdb does not exist. */
  allowNoRules?: boolean;
  /** -B: written to the client first ("" = none). */
  banner?: string;
  /** -D: TCP_NODELAY (true), -d: Nagle (false, the default). */
  noDelay?: boolean;
  /** -h (default) / -H: look up TCPREMOTEHOST. */
  remoteHost?: boolean;
  /** -p: keep TCPREMOTEHOST only when the name maps back to the address. */
  paranoid?: boolean;
  /** -l: TCPLOCALHOST without a DNS lookup; undefined = look it up. */
  localName?: string;
  /** -r (default) / -R: ask the client's ident server for TCPREMOTEINFO. */
  remoteInfo?: boolean;
  /** -t: ident timeout in seconds (default 26). */
  infoTimeout?: number;
  /** DNS lookups give up after this many ms (default 10000). */
  dnsTimeoutMs?: number;
  /** 0 (-q), 1 (-Q, default), 2 (-v). */
  verbosity?: number;
  /** -6: report IPv4 clients as IPv4-mapped IPv6 with PROTO=TCP6. */
  forceV6?: boolean;
  /** -C n[:message]: the default MAXCONNIP and its message. */
  maxConnIp?: number;
  maxConnIpMessage?: string;
  /** The program and its arguments. */
  argv: string[];
  /** tcpserver's own environment: every connection's starts from a copy. */
  baseEnv: Map<string, string>;
  /** Where log lines go (default: stderr, one write each). */
  log?: (line: string) => void;
  /** A per-connection step before peer info and rules (see PrepareHook). */
  prepare?: PrepareHook;
  /**
   * The native path (lib/native/native.ts: libc sockets, the program gets the
   * socket itself). Default: used when available and there is no prepare
   * hook; false: never.
   */
  native?: boolean;
}

/** What the prepare hook learns about a fresh connection. */
export interface PrepareContext {
  /** The connection number (the "pid" of the log lines). */
  id: number;
  /** The connection's streams so far (the raw socket). */
  io: Io;
  local: Endpoint;
  remote: Endpoint;
}

/** What the prepare hook hands back. */
export interface Prepared {
  /** New streams to talk over (a TLS session), replacing the raw socket's. */
  io?: Io;
  /** The real endpoints (a PROXY header): used for env, rules, limits, logs. */
  local?: Endpoint;
  remote?: Endpoint;
  /** Variables to set (or remove: null) after the TCP ones, before the rules. */
  extraEnv?: Array<[string, string | null]>;
  /** Called once when the connection is finished (after the socket is closed). */
  cleanup?: () => void | Promise<void>;
  /**
   * Edits the environment after the TCP variables and extraEnv, before the
   * rules (sslserver renames TCP* to SSL*, as ucspi-ssl does).
   */
  environ?: (env: Map<string, string>) => void;
}

/**
 * A step run on each accepted connection before anything else (before the
 * banner): read a PROXY header, do a TLS handshake. Resolving null drops the
 * connection (the hook logs why); throwing drops it and logs the error.
 */
export type PrepareHook = (conn: Deno.TcpConn, ctx: PrepareContext) => Promise<Prepared | null>;

const found = new BoundedMap<string, { path: string; at: number }>(1024);

/**
 * findProgram (PATH search as DJB's pathexec) remembered for a second per
 * (name, PATH): a stat per PATH entry per connection is most of a spawn's
 * cost in the server. `fresh` searches again.
 */
function findCached(
  name: string,
  env: Map<string, string>,
  fresh = false,
): { path: string; cached: boolean } {
  const key = name + "\0" + (env.get("PATH") ?? "");
  const now = Date.now();
  const hit = found.get(key);
  if (!fresh && hit && now - hit.at < 1000) return { path: hit.path, cached: true };
  const path = findProgram(name, env);
  if (found.size >= 1024) found.clear();
  found.set(key, { path, at: now });
  return { path, cached: false };
}

/** A connection as the pipeline sees it, whichever path accepted it. */
interface Sock {
  local: Endpoint;
  remote: Endpoint;
  /** The socket's own streams (made on first use). */
  io(): Io;
  /** The Deno connection, for the prepare hook (the Deno path only). */
  raw?: Deno.TcpConn;
  /** Writes to the socket directly (the native path: keeps it pristine). */
  write?: (data: Uint8Array) => Promise<void>;
  close(): void;
  /**
   * Runs the program; resolves with its wait status once its output is
   * drained; `onExit` gets the status at its exit (a grandchild may hold
   * its stdout longer).
   */
  run(
    argv: string[],
    env: Map<string, string>,
    wrapped: Io | null,
    onExit: (wstat: number) => void,
  ): Promise<number>;
}

const DROP = "warning: dropping connection, ";

/** How long the accept loop pauses when the process is out of descriptors or buffers. */
const ACCEPT_PAUSE_MS = 100;

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
const WSTAT_DENY = 100 << 8;
const WSTAT_DROP = 111 << 8;

const enc = new TextEncoder();

/** Writes one log line to stderr at once (lib/core/log.ts; re-exported for sslserver). */
export { stderrLine };

const READ_SIZE = 64 * 1024;

/**
 * The Io of a socket: input ends at the client's FIN (or a reset), closing
 * output half-closes the socket (the client sees FIN after all output);
 * neither closes the socket itself.
 */
export function socketIo(conn: Deno.Conn, log: (line: string) => void): Io {
  let ended = false;
  const input = new ReadableStream<Uint8Array>({
    async pull(c) {
      if (ended) return;
      const buf = new Uint8Array(READ_SIZE);
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch {
        n = null;
      }
      if (n === null) {
        ended = true;
        c.close();
      } else c.enqueue(buf.subarray(0, n));
    },
    cancel() {
      ended = true;
    },
  }, { highWaterMark: 0 });
  const output = new WritableStream<Uint8Array>({
    async write(chunk) {
      await writeAll(conn, chunk);
    },
    async close() {
      try {
        await conn.closeWrite();
      } catch { /* already gone */ }
    },
  });
  return { input, output, log };
}

/**
 * A connection's fault state: the first error raised inside its handling
 * (see #guarded), and the promise that rejects with it.
 */
class ConnScope {
  fault: unknown = null;
  #reject: ((e: unknown) => void) | null = null;
  readonly faulted: Promise<never>;

  constructor() {
    this.faulted = new Promise<never>((_, reject) => (this.#reject = reject));
    this.faulted.catch(() => {});
  }

  /** Records the first fault (later ones are the same failure's echoes). */
  raise(e: unknown): void {
    if (this.fault !== null) return;
    this.fault = e ?? new Error("unknown error");
    this.#reject?.(this.fault);
  }
}

/** Which connection the running code works for (follows timers, callbacks, promises). */
const CONN_SCOPE = new AsyncLocalStorage<ConnScope>();
let faultHandlers = false;

/**
 * Once per process: an error nothing caught ("error" event) or a rejection
 * nothing handled, raised while a connection's work ran, is that
 * connection's fault, not the server's: it drops that connection only.
 * Anything else keeps Deno's default (the process ends: a bug of the
 * server itself).
 */
function installFaultHandlers(): void {
  if (faultHandlers) return;
  faultHandlers = true;
  const fault = (ev: Event, err: unknown) => {
    const scope = CONN_SCOPE.getStore();
    if (!scope) return;
    ev.preventDefault();
    scope.raise(err);
  };
  globalThis.addEventListener("error", (ev) => fault(ev, (ev as ErrorEvent).error));
  globalThis.addEventListener(
    "unhandledrejection",
    (ev) => fault(ev, (ev as PromiseRejectionEvent).reason),
  );
}

const DENIED = /Requires \S+ access to .*?, run again with the --allow-\S+ flag/;

/**
 * The missing Deno permission behind e (NotCapable itself, or a lookup
 * error that carried its message), as a NotCapable error; null otherwise.
 * A lookup that was not allowed must drop the connection with that reason
 * rather than pass as "no answer".
 */
export function permissionFault(e: unknown): Error | null {
  for (let cur = e, depth = 0; cur && depth < 5; depth++) {
    const err = cur as { name?: unknown; message?: unknown; cause?: unknown };
    if (err.name === "NotCapable") return cur as Error;
    const m = DENIED.exec(String(err.message ?? ""));
    if (m) return new Deno.errors.NotCapable(m[0]);
    cur = err.cause;
  }
  return null;
}

/**
 * The ident lookup (lib/net/ident.ts), first checking the net permission for
 * the client's port 113: without it the connection attempt would fail
 * quietly as "no answer"; it is a missing permission (NotCapable).
 */
function identInfo(q: IdentQuery): Promise<string | null> {
  const host = q.remoteIp.includes(":") ? `[${q.remoteIp}]:113` : `${q.remoteIp}:113`;
  let state: string;
  try {
    state = Deno.permissions.querySync({ name: "net", host }).state;
  } catch {
    state = "granted"; // no permission API: let the lookup try
  }
  if (state !== "granted") {
    return Promise.reject(
      new Deno.errors.NotCapable(
        `Requires net access to "${host}", run again with the --allow-net flag`,
      ),
    );
  }
  return remoteInfo(q);
}

/** A listening tcpserver. */
export class TcpServer {
  readonly prog: string;
  readonly opts: ServerOptions;
  readonly #log: (line: string) => void;
  readonly #verbosity: number;
  readonly #rules: RulesFile | null;
  readonly #limits: Limits;
  readonly #dnsCache = new DnsCache(10000);
  readonly #localNames = new BoundedMap<string, { at: number; name: Promise<string | null> }>(1000);
  readonly #inflight = new Map<string, Promise<unknown>>();
  #listener: Deno.TcpListener | null = null;
  #native: NativeListener | null = null;
  #local: Endpoint | null = null;
  #active = 0;
  #nextId = 0;
  #stopping = false;
  #wake: (() => void) | null = null;
  #idle: (() => void) | null = null;
  #done: Promise<void> | null = null;

  constructor(opts: ServerOptions) {
    this.opts = opts;
    this.prog = opts.prog ?? "tcpserver";
    this.#verbosity = opts.verbosity ?? 1;
    this.#log = opts.log ?? stderrLine;
    this.#rules = opts.rules ? new RulesFile(opts.rules) : null;
    this.#limits = new Limits({
      maxConnIp: opts.maxConnIp,
      maxConnIpMessage: opts.maxConnIpMessage,
      baseEnv: opts.baseEnv,
      log: (line) => this.#warn(line),
    });
  }

  #warn(line: string): void {
    if (this.#verbosity >= 1) this.#log(line);
  }

  #status(): void {
    if (this.#verbosity >= 2) this.#log(statusLine(this.prog, this.#active, this.opts.limit));
  }

  /** Connections being handled now. */
  get active(): number {
    return this.#active;
  }

  /**
   * Binds and listens (throws Deno's error: AddrInUse, PermissionDenied...).
   * Returns the local address (port 0 picks one).
   */
  listen(): Endpoint {
    // Socket activation (systemd, s6): accept on the passed descriptor 3.
    const usable = this.opts.native !== false && !this.opts.prepare;
    const passed = inheritedListener(this.opts.baseEnv, usable);
    if (passed) return this.#local = { ...(this.#native = passed).local };
    if (
      this.opts.native !== false && !this.opts.prepare && !this.opts.hostname.includes("%") &&
      nativeAvailable(this.opts.baseEnv)
    ) {
      // Any failure here: Deno.listen below tries again and reports it.
      const n = NativeListener.open(
        this.opts.hostname,
        this.opts.port,
        this.opts.reusePort,
        this.opts.backlog,
      );
      if (n) {
        this.#native = n;
        this.#local = { ...n.local };
        return this.#local;
      }
    }
    const o: Deno.TcpListenOptions = { hostname: this.opts.hostname, port: this.opts.port };
    if (this.opts.reusePort) o.reusePort = true;
    const l = Deno.listen({ ...o, transport: "tcp" });
    this.#listener = l;
    const a = l.addr as Deno.NetAddr;
    this.#local = { ip: a.hostname, port: a.port };
    return this.#local;
  }

  /** True when listening on the native path (lib/native/native.ts). */
  get isNative(): boolean {
    return this.#native !== null;
  }

  /** The port listened on (after listen()). */
  get listenPort(): number {
    return this.#local?.port ?? 0;
  }

  /** Accepts and serves until stop(); resolves when the accept loop ended. */
  serve(): Promise<void> {
    this.#done ??= this.#acceptLoop();
    return this.#done;
  }

  async #acceptLoop(): Promise<void> {
    const l = this.#listener;
    const native = this.#native;
    if (!l && !native) throw new Error("listen() first");
    this.#status();
    const overLimit = this.opts.overLimitMessage ?? null;
    for (;;) {
      while (!this.#stopping && overLimit === null && this.#active >= this.opts.limit) {
        await new Promise<void>((r) => (this.#wake = r));
      }
      if (this.#stopping) break;
      let conn: Deno.TcpConn | NativeConn;
      try {
        if (native) {
          const c = await native.accept();
          if (c === null) break; // closed
          conn = c;
        } else conn = await l!.accept();
      } catch (e) {
        if (this.#stopping || e instanceof Deno.errors.BadResource) break;
        // A client that reset or aborted while queued fails only its own
        // accept: go straight on to the next one, as C does (a pause here
        // lets a reset flood delay every good client behind it).
        if (acceptGoesOn(e)) continue;
        // Out of descriptors or buffers (EMFILE, ENFILE, ENOBUFS, ENOMEM),
        // or anything unknown: the next accept would fail the same way at
        // once. Pause briefly (until a connection ends frees a descriptor,
        // at most ACCEPT_PAUSE_MS), one log line per pause.
        this.#warn(`${this.prog}: warning: unable to accept: ${errorText(e)}; pausing`);
        await new Promise<void>((r) => {
          const t = setTimeout(() => {
            if (this.#wake === done) this.#wake = null;
            r();
          }, ACCEPT_PAUSE_MS);
          const done = () => {
            clearTimeout(t);
            r();
          };
          this.#wake = done;
        });
        continue;
      }
      if (this.#active >= this.opts.limit && overLimit !== null) {
        this.#refuseBusy(conn, overLimit);
        continue;
      }
      this.#active++;
      this.#status();
      const id = ++this.#nextId;
      // The slot is released once: at the program's exit (as C's wait), or
      // when the connection's handling ends without a program.
      let ended = false;
      const end = (wstat: number) => {
        if (ended) return;
        ended = true;
        this.#finished(id, wstat);
      };
      const scope = new ConnScope();
      const c = conn;
      CONN_SCOPE.run(scope, () => this.#guarded(c, id, scope, end)).then(end, (e) => {
        // Whatever failed inside this connection's handling (a missing Deno
        // permission, a bug): logged once, the connection dropped, the
        // server goes on.
        this.#warn(`${this.prog}: ${DROP}${errorText(e)}`);
        end(WSTAT_DROP);
      });
    }
  }

  /**
   * One connection, with its failures contained: a rejection of the
   * pipeline, or an error thrown where nothing catches it (a callback, a
   * forgotten promise) while this connection's work runs, rejects here and
   * closes the socket; the pipeline is told (scope.fault) not to go on.
   */
  async #guarded(
    conn: Deno.TcpConn | NativeConn,
    id: number,
    scope: ConnScope,
    end: (wstat: number) => void,
  ): Promise<number> {
    installFaultHandlers();
    const work = this.#handle(conn, id, scope, end);
    try {
      return await Promise.race([work, scope.faulted]);
    } catch (e) {
      scope.raise(e);
      work.catch(() => {}); // it ends on its own (the socket is closed below)
      try {
        conn.close();
      } catch { /* closed */ }
      throw e;
    }
  }

  #finished(id: number, wstat: number): void {
    if (this.#verbosity >= 2) this.#log(endLine(this.prog, id, wstat));
    if (this.#active > 0) this.#active--;
    this.#status();
    const w = this.#wake;
    this.#wake = null;
    w?.();
    if (this.#active === 0) {
      const i = this.#idle;
      this.#idle = null;
      i?.();
    }
  }

  #refuseBusy(conn: Deno.TcpConn | NativeConn, message: string): void {
    const data = enc.encode(message + "\r\n");
    if (conn instanceof NativeConn) {
      conn.writeAll(data).catch(() => {}).finally(() => conn.close());
      return;
    }
    (async () => {
      try {
        await writeAll(conn, data);
      } catch { /* the client is gone */ }
      try {
        conn.close();
      } catch { /* closed */ }
    })();
  }

  /**
   * Stops accepting (`listenerClosed` is called once the listening socket
   * is closed: the port is free for the next generation), then waits for
   * running connections to end, at most drainMs (Infinity: until the last
   * one ended). Resolves true when none is left.
   */
  async stop(drainMs = 0, listenerClosed?: () => void): Promise<boolean> {
    this.#stopping = true;
    try {
      this.#listener?.close();
    } catch { /* closed already: a second stop (TERM after the front's stop) */ }
    await this.#native?.close();
    listenerClosed?.();
    const w = this.#wake;
    this.#wake = null;
    w?.();
    await this.#done?.catch(() => {});
    if (this.#active === 0) return true;
    if (drainMs <= 0) return false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const idle = new Promise<boolean>((r) => (this.#idle = () => r(true)));
    if (drainMs === Infinity) return await idle;
    const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), drainMs)));
    const ok = await Promise.race([idle, timeout]);
    clearTimeout(timer);
    return ok;
  }

  #localName(ip: string): Promise<string | null> {
    const now = Date.now();
    const hit = this.#localNames.get(ip);
    if (hit && now - hit.at < 60_000) return hit.name;
    const name = this.#ptr(ip);
    this.#localNames.set(ip, { at: now, name });
    return name;
  }

  /**
   * Runs a lookup in its own fault scope, shared by concurrent callers with
   * the same key: an error thrown where nothing catches it inside the lookup
   * (node:dgram's bind without net permission) rejects it for every caller,
   * each of which drops its connection, instead of leaving them to wait for
   * the DNS timeout.
   */
  #lookup<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const hit = this.#inflight.get(key);
    if (hit) return hit as Promise<T>;
    const scope = new ConnScope();
    const p = CONN_SCOPE.run(scope, () => Promise.race([fn(), scope.faulted]));
    this.#inflight.set(key, p);
    const forget = () => {
      if (this.#inflight.get(key) === p) this.#inflight.delete(key);
    };
    p.then(forget, forget);
    return p;
  }

  async #ptr(ip: string): Promise<string | null> {
    try {
      const names = await this.#lookup("ptr " + ip, () =>
        resolvePtr(ip, {
          timeoutMs: this.opts.dnsTimeoutMs ?? 10000,
          cache: this.#dnsCache,
        }));
      // Already as C prints it (lib/net/dns.ts toDot): lowercase, escaped, the root as ".".
      return names.length ? names[0] : null;
    } catch (e) {
      const denied = permissionFault(e);
      if (denied) throw denied;
      return null;
    }
  }

  async #remoteHost(ip: string): Promise<string | null> {
    const name = await this.#ptr(ip);
    if (name === null || !this.opts.paranoid) return name;
    try {
      const family = ip.includes(":") ? 6 : 4;
      const addrs = await this.#lookup(`addr${family} ${name}`, () =>
        resolveAddrs(name, {
          family,
          timeoutMs: this.opts.dnsTimeoutMs ?? 10000,
          cache: this.#dnsCache,
        }));
      for (const a of addrs) if (showAddress(a).ip === ip) return name;
    } catch (e) {
      const denied = permissionFault(e);
      if (denied) throw denied;
      // not confirmed
    }
    return null;
  }

  /**
   * One connection, start to end; resolves with the wait status to log.
   * `end` is called at the program's exit (before its output is drained).
   */
  #handle(
    conn: Deno.TcpConn | NativeConn,
    id: number,
    scope: ConnScope,
    end: (wstat: number) => void,
  ): Promise<number> {
    return conn instanceof NativeConn
      ? this.#handleNative(conn, id, scope, end)
      : this.#handleDeno(conn, id, scope, end);
  }

  /**
   * A native connection: the same pipeline; the program gets the socket
   * itself when nothing runs in-process before it (or what ran did not
   * touch the stream), else the stages talk over the socket from here.
   */
  #handleNative(
    conn: NativeConn,
    id: number,
    scope: ConnScope,
    end: (wstat: number) => void,
  ): Promise<number> {
    const io = (): Io => conn.io(this.#log);
    const runAs = getRunAs();
    const start = async (file: string, argv: string[], env: Map<string, string>) => {
      const child = await spawnOnSocket(file, argv, env, conn.fd, runAs);
      await conn.close(); // as C's parent after fork: the program owns the socket
      return await child.status;
    };
    return this.#pipeline(conn, id, scope, end, {
      local: { ...conn.local },
      remote: { ...conn.remote },
      io,
      write: (data) => conn.writeAll(data),
      close: () => void conn.close(),
      run: async (argv, env, wrapped, onExit) => {
        const exited = (e: Ended) => onExit(waitStatus(e));
        if (wrapped) {
          return waitStatus(
            await runConnectionProgram(argv, env, wrapped, { pid: id, onExit: exited }),
          );
        }
        if (conn.pristine && argv.length > 0 && !isOurs(argv[0], env)) {
          let file = findCached(argv[0], env);
          try {
            return await start(file.path, argv, env);
          } catch (e) {
            if (!file.cached) throw e;
            // what PATH found a moment ago is gone: search again
            file = findCached(argv[0], env, true);
            return await start(file.path, argv, env);
          }
        }
        const ended = await runConnectionProgram(argv, env, io(), {
          pid: id,
          onExit: exited,
          spawnDirect: (file, a, via) =>
            via === io() && conn.pristine ? start(file, a, env).then((w) => endedOf(w)) : null,
        });
        return waitStatus(ended);
      },
    });
  }

  #handleDeno(
    conn: Deno.TcpConn,
    id: number,
    scope: ConnScope,
    end: (wstat: number) => void,
  ): Promise<number> {
    const la = conn.localAddr as Deno.NetAddr;
    const ra = conn.remoteAddr as Deno.NetAddr;
    let io: Io | null = null;
    return this.#pipeline(conn, id, scope, end, {
      local: { ip: la.hostname, port: la.port },
      remote: { ip: ra.hostname, port: ra.port },
      io: () => (io ??= socketIo(conn, this.#log)),
      raw: conn,
      close: () => conn.close(),
      run: async (argv, env, wrapped, onExit) => {
        const via = wrapped ?? (io ??= socketIo(conn, this.#log));
        return waitStatus(
          await runConnectionProgram(argv, env, via, {
            pid: id,
            onExit: (e) => onExit(waitStatus(e)),
          }),
        );
      },
    });
  }

  async #pipeline(
    sock: Deno.TcpConn | NativeConn,
    id: number,
    scope: ConnScope,
    end: (wstat: number) => void,
    c: Sock,
  ): Promise<number> {
    const o = this.opts;
    const prog = this.prog;
    let cleanup: (() => void | Promise<void>) | undefined;
    let conn: Sock | null = c;
    try {
      let local: Endpoint = c.local;
      let remote: Endpoint = c.remote;
      if (this.#verbosity >= 2) {
        this.#log(pidLine(prog, id, showAddress(remote.ip, o.forceV6).ip));
      }
      // A native socket starts with Nagle on (as the listener has it): only
      // -D needs the setsockopt.
      if (o.noDelay || !(sock instanceof NativeConn)) {
        try {
          sock.setNoDelay(o.noDelay ?? false);
        } catch { /* not a TCP socket any more */ }
      }
      let wrapped: Io | null = null;
      const io = () => wrapped ?? c.io();
      let extraEnv: Array<[string, string | null]> = [];
      let editEnv: ((env: Map<string, string>) => void) | undefined;
      if (o.prepare && c.raw) {
        const p = await o.prepare(c.raw, { id, io: io(), local, remote });
        if (p === null || scope.fault) return WSTAT_DROP;
        cleanup = p.cleanup;
        if (p.io) wrapped = p.io;
        if (p.local) local = p.local;
        if (p.remote) remote = p.remote;
        if (p.extraEnv) extraEnv = p.extraEnv;
        editEnv = p.environ;
      }
      if (o.banner) {
        const bytes = enc.encode(o.banner);
        if (!wrapped && c.write) {
          try {
            await c.write(bytes);
          } catch (e) {
            this.#warn(`${prog}: ${DROP}unable to print banner: ${errorText(e)}`);
            return WSTAT_DROP;
          }
        } else {
          const w = io().output.getWriter();
          try {
            await w.write(bytes);
          } catch (e) {
            this.#warn(`${prog}: ${DROP}unable to print banner: ${errorText(e)}`);
            return WSTAT_DROP;
          } finally {
            w.releaseLock();
          }
        }
      }

      const localShown = showAddress(local.ip, o.forceV6);
      const remoteShown = showAddress(remote.ip, o.forceV6);
      const plainRemote = showAddress(remote.ip).ip;
      const infoTimeout = (o.infoTimeout ?? 26) * 1000;
      const [localHost, remoteHost, info] = await Promise.all([
        o.localName !== undefined
          ? Promise.resolve(o.localName)
          : this.#localName(showAddress(local.ip).ip),
        (o.remoteHost ?? true) ? this.#remoteHost(plainRemote) : Promise.resolve(null),
        (o.remoteInfo ?? true)
          ? identInfo({
            remoteIp: plainRemote,
            remotePort: remote.port,
            localIp: showAddress(local.ip).ip,
            localPort: local.port,
            timeoutMs: infoTimeout,
          })
          : Promise.resolve(null),
      ]);
      if (scope.fault) return WSTAT_DROP;

      const env = new Map(o.baseEnv);
      applyEnviron(
        env,
        tcpEnviron({
          localIp: local.ip,
          localPort: local.port,
          localHost,
          remoteIp: remote.ip,
          remotePort: remote.port,
          remoteHost,
          remoteInfo: info,
          forceV6: o.forceV6,
        }),
      );
      for (const [k, v] of extraEnv) v === null ? env.delete(k) : env.set(k, v);
      editEnv?.(env);

      let allow = true;
      if (this.#rules) {
        let d;
        try {
          d = await this.#rules.lookup(
            plainRemote,
            remoteHost ?? undefined,
            info ?? undefined,
          );
        } catch (e) {
          this.#warn(`${prog}: ${DROP}unable to read ${this.#rules.path}: ${errorText(e)}`);
          return WSTAT_DROP;
        }
        if (d === "missing") {
          if (!o.allowNoRules) {
            this.#warn(`${prog}: ${DROP}unable to read ${this.#rules.path}: file does not exist`);
            return WSTAT_DROP;
          }
        } else {
          allow = d.allow;
          for (const [k, v] of d.env) v === null ? env.delete(k) : env.set(k, v);
        }
      }

      const facts = {
        localHost,
        localIp: localShown.ip,
        localPort: local.port,
        remoteHost,
        remoteIp: remoteShown.ip,
        remoteInfo: info,
        remotePort: remote.port,
      };
      if (!allow) {
        if (this.#verbosity >= 2) this.#log(decisionLine(prog, "deny", id, facts));
        return WSTAT_DENY;
      }

      const admitted = this.#limits.admit(plainRemote, env);
      if (!admitted.admitted) {
        if (this.#verbosity >= 2) {
          this.#log(
            decisionLine(prog, "deny", id, facts, ` ${admitted.label}: ${admitted.figure}`),
          );
        }
        if (admitted.message !== null) {
          const w = io().output.getWriter();
          try {
            await w.write(enc.encode(admitted.message + "\r\n"));
            await w.close();
          } catch { /* the client is gone */ }
        } else {
          // Close after a second, without holding a -c slot meanwhile.
          const clean = cleanup;
          const late = conn; // `conn` is nulled below; close this one later
          cleanup = undefined;
          setTimeout(() => {
            try {
              late?.close();
            } catch { /* closed */ }
            clean?.();
          }, 1000);
          conn = null;
        }
        return WSTAT_DENY;
      }
      env.set("TCPCONNNUM", String(admitted.connNum));
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        admitted.release();
      };
      try {
        if (scope.fault) return WSTAT_DROP;
        if (this.#verbosity >= 2) this.#log(decisionLine(prog, "ok", id, facts));
        try {
          // At the program's exit its slot and per-IP count are free, as
          // C's: a grandchild still writing is pumped outside the count.
          return await c.run(o.argv, env, wrapped, (wstat) => {
            release();
            end(wstat);
          });
        } catch (e) {
          this.#warn(`${prog}: ${DROP}unable to run ${o.argv[0]}: ${errorText(e)}`);
          return WSTAT_DROP;
        }
      } finally {
        try {
          conn?.close();
        } catch { /* closed */ }
        conn = null;
        release();
      }
    } finally {
      try {
        conn?.close();
      } catch { /* closed */ }
      try {
        await cleanup?.();
      } catch { /* ignore */ }
    }
  }
}
