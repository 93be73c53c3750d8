/**
 * tcpserver's core: listen, the accept gate (-c, and the -L over-limit
 * mode), and each connection's pipeline:
 *
 *   accept -> steps (PROXY header -W, TLS: sslserver; steps/step.ts) -> banner (-B)
 *     -> peer info (TCPLOCAL*, TCPREMOTE*: -l/-h/-p DNS and -r ident, with
 *        timeouts) -> rules (-x) -> limits (MAXLOAD, MAXCONNIP, MAXCONNC)
 *     -> log "ok" -> runConnectionProgram (lib/stages/chain.ts) -> log "end"
 *
 * The server takes parsed options (cli/tcpserver.ts parses the command
 * line); a tool built on it (sslserver) adds its per-connection steps to
 * the list instead of copying this file. The steps' own modules are in
 * lib/server/steps/ (peer info, banner, rules, limits) and where their
 * mechanism lives (PROXY: lib/net/proxy/step.ts, TLS: lib/tls/server_hook.ts).
 *
 * Two paths share this pipeline: the native one (lib/native/native.ts: libc
 * sockets through FFI; a foreign program gets the socket itself as fd 0/1,
 * as under C) when FFI is available and nothing wraps the stream, else the
 * pure-Deno one: node:net (lib/server/node_listener.ts; a foreign program
 * gets the socket itself when nothing read from it, else is pumped), or
 * Deno.listen (the program's stdin/stdout pumped) where node:net cannot
 * hand a socket over.
 *
 * Log lines are DJB's (lib/server/log.ts). Where C prints a child's pid, this
 * server prints a connection number (1, 2, ...): a connection is not a
 * process here (rules may deny it, rblsmtpd may answer it in-process), and
 * the number is the same on its "pid", "ok"/"deny" and "end" lines and in
 * rblsmtpd's lines. The "end" status is the wait status C would report: the
 * program's exit code x 256 or its signal; 25600 (exit 100) for a denied
 * connection, 28416 (exit 111) for a dropped one.
 */
import { errorText } from "../core/errors.ts";
import { applyEnviron, showAddress, tcpEnviron } from "../core/environ.ts";
import type { Limits } from "./limits.ts";
import { NativeConn, type NativeListener, promptReaping } from "../native/native.ts";
import { stderrLine } from "../core/log.ts";
import { utf8ByteString } from "../core/bytes.ts";
import { RulesFile } from "../rules/rules.ts";

import type { Io } from "../stages/stage.ts";
import type { PeerInfo } from "./steps/peerinfo.ts";
import { writeBanner } from "./steps/banner.ts";
import { applyRules } from "./steps/rules.ts";
import { turnAway } from "./steps/limits.ts";
import {
  type Connection,
  denoConnection,
  type Endpoint,
  loadStages,
  nativeConnection,
  nodeConnection,
} from "./connection.ts";
import { Socket } from "node:net";
import type { NodeListener } from "./node_listener.ts";

export type { Endpoint };
export type { PrepareContext, Prepared, PrepareHook } from "./steps/step.ts";
import { decisionLine, endLine, pidLine, statusLine } from "./log.ts";
import type { ServerOptions } from "./options.ts";
import { ACCEPT_PAUSE_MS, acceptGoesOn, openListener, refuseBusy } from "./listener.ts";

export type { ServerOptions };
export { acceptGoesOn };
import { CONN_SCOPE, ConnScope, installFaultHandlers } from "./scope.ts";

const DROP = "warning: dropping connection, ";

const WSTAT_DENY = 100 << 8;
const WSTAT_DROP = 111 << 8;

/**
 * A connection's place under -c: given back once, with its end line, at
 * the program's exit (as C's wait) or when the connection's handling ended
 * without one. Holds only its number and the server's one callback, as it
 * is what a connection whose program owns the socket keeps.
 */
class Slot {
  #ended = false;
  readonly #id: number;
  readonly #finished: (id: number, wstat: number) => void;

  constructor(id: number, finished: (id: number, wstat: number) => void) {
    this.#id = id;
    this.#finished = finished;
  }

  /** Ends the slot with wait status wstat (once; later calls do nothing). */
  readonly end = (wstat: number): void => {
    if (this.#ended) return;
    this.#ended = true;
    this.#finished(this.#id, wstat);
  };
}

/**
 * What runs at the exit of a program that owns its socket: the per-IP
 * counts released, the slot ended (its end line), the steps' cleanup. Made
 * outside the pipeline so that it keeps only these, not the pipeline's
 * variables. It runs from the SIGCHLD reaper, outside the connection's
 * scope: an error in it is reported through `fault` instead of escaping
 * into the reaper.
 */
function programExit(
  release: () => void,
  end: (wstat: number) => void,
  cleanup: (() => void | Promise<void>) | undefined,
  fault: (e: unknown) => void,
): (wstat: number) => void {
  return (wstat) => {
    try {
      release();
      end(wstat);
    } catch (e) {
      fault(e);
    }
    if (cleanup) {
      (async () => await cleanup())().catch(() => {/* as the pipeline's own cleanup */});
    }
  };
}

/** Writes one log line to stderr at once (lib/core/log.ts; re-exported for sslserver). */
export { stderrLine };

/** A listening tcpserver. */
export class TcpServer {
  /** The program name in log lines. */
  readonly prog: string;
  /** The options the server was made with. */
  readonly opts: ServerOptions;
  readonly #log: (line: string) => void;
  readonly #verbosity: number;
  readonly #rules: RulesFile | null;
  // Made once listening, before the first accept (#connectionParts): their
  // modules bring node:net (ident) and node:fs (the load average), which
  // listening does not need.
  #limits: Limits | null = null;
  #peers: PeerInfo | null = null;
  #parts: Promise<void> | null = null;
  #listener: Deno.TcpListener | null = null;
  #native: NativeListener | null = null;
  #node: NodeListener | null = null;
  #local: Endpoint | null = null;
  #active = 0;
  #nextId = 0;
  #stopping = false;
  #wake: (() => void) | null = null;
  #idle: (() => void) | null = null;
  #done: Promise<void> | null = null;
  /** Gives back the prompt reaping asked for while draining (native path). */
  #draining: (() => void) | null = null;

  /** Nothing listens until listen(). */
  constructor(opts: ServerOptions) {
    this.opts = opts;
    this.prog = opts.prog ?? "tcpserver";
    this.#verbosity = opts.verbosity ?? 1;
    this.#log = opts.log ?? stderrLine;
    this.#rules = opts.rules ? new RulesFile(opts.rules) : null;
  }

  /** Loads the peer-info and limits modules and makes the server's one of each. */
  #connectionParts(): Promise<void> {
    return this.#parts ??= (async () => {
      const [{ PeerInfo }, { Limits }] = await Promise.all([
        import("./steps/peerinfo.ts"),
        import("./limits.ts"),
      ]);
      const opts = this.opts;
      this.#peers = new PeerInfo(opts.dnsTimeoutMs ?? 10000);
      this.#limits = new Limits({
        maxConnIp: opts.maxConnIp,
        // a byte string as every other message (from the command line: UTF-8)
        maxConnIpMessage: opts.maxConnIpMessage === undefined
          ? undefined
          : utf8ByteString(opts.maxConnIpMessage),
        baseEnv: opts.baseEnv,
        log: (line) => this.#warn(line),
      });
    })();
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
    const l = openListener(this.opts);
    this.#native = l.native;
    this.#listener = l.deno;
    this.#node = l.node;
    return this.#local = l.local;
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
    const node = this.#node;
    if (!l && !native && !node) throw new Error("listen() first");
    // The rest of the modules a connection needs, loaded now that the port is
    // open (clients wait in the backlog): never with a connection in hand.
    await Promise.all([this.#connectionParts(), loadStages()]);
    await this.opts.beforeAccept?.().catch(() => {});
    this.#status();
    const overLimit = this.opts.overLimitMessage ?? null;
    for (;;) {
      while (!this.#stopping && overLimit === null && this.#active >= this.opts.limit) {
        // a slot is given back at a program's end
        await this.#endsNoticed(new Promise<void>((r) => (this.#wake = r)));
      }
      if (this.#stopping) break;
      let conn: Deno.TcpConn | NativeConn | Socket;
      try {
        if (native || node) {
          const c = await (native ?? node)!.accept();
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
        const resumed = new Promise<void>((r) => {
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
        // a program's end frees a descriptor
        await this.#endsNoticed(resumed);
        continue;
      }
      if (this.#active >= this.opts.limit && overLimit !== null) {
        refuseBusy(conn, overLimit);
        continue;
      }
      this.#active++;
      this.#status();
      const id = ++this.#nextId;
      const slot = new Slot(id, this.#finishedOne);
      const scope = new ConnScope();
      const c = conn;
      CONN_SCOPE.run(scope, () => this.#guarded(c, id, scope, slot.end)).then((wstat) => {
        // null: the program owns the socket; its exit ends the slot
        if (wstat !== null) slot.end(wstat);
      }, (e) => {
        // Whatever failed inside this connection's handling (a missing Deno
        // permission, a bug): logged once, the connection dropped, the
        // server goes on.
        this.#warn(`${this.prog}: ${DROP}${errorText(e)}`);
        slot.end(WSTAT_DROP);
      });
    }
  }

  /**
   * Waits for `woken` (made first: it sets #wake) while programs' ends are
   * noticed as they happen on the native path (lib/native/reaper.ts), not
   * at its lazy timer; promptReaping reaps at once what already ended, so
   * #wake may run before this awaits.
   */
  async #endsNoticed(woken: Promise<void>): Promise<void> {
    const given = this.#native ? promptReaping() : null;
    try {
      await woken;
    } finally {
      given?.();
    }
  }

  /** #finished, made once for every Slot. */
  readonly #finishedOne = (id: number, wstat: number) => this.#finished(id, wstat);

  /**
   * One connection, with its failures contained: a rejection of the
   * pipeline, or an error thrown where nothing catches it (a callback, a
   * forgotten promise) while this connection's work runs, rejects here and
   * closes the socket; the pipeline is told (scope.fault) not to go on.
   */
  async #guarded(
    conn: Deno.TcpConn | NativeConn | Socket,
    id: number,
    scope: ConnScope,
    end: (wstat: number) => void,
  ): Promise<number | null> {
    installFaultHandlers();
    const work = this.#handle(conn, id, scope, end);
    try {
      return await Promise.race([work, scope.faulted]);
    } catch (e) {
      scope.raise(e);
      work.catch(() => {}); // it ends on its own (the socket is closed below)
      try {
        if (conn instanceof Socket) conn.destroy();
        else conn.close();
      } catch { /* closed */ }
      throw e;
    }
  }

  /** An error at a program's exit (programExit): logged, the server goes on. */
  readonly #exitFault = (e: unknown) => this.#warn(`${this.prog}: warning: ${errorText(e)}`);

  #finished(id: number, wstat: number): void {
    if (this.#verbosity >= 2) this.#log(endLine(this.prog, id, wstat));
    if (this.#active > 0) this.#active--;
    this.#status();
    const w = this.#wake;
    this.#wake = null;
    w?.();
    if (this.#active === 0) {
      this.#draining?.();
      this.#draining = null;
      const i = this.#idle;
      this.#idle = null;
      i?.();
    }
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
    this.#node?.close();
    await this.#native?.close();
    listenerClosed?.();
    const w = this.#wake;
    this.#wake = null;
    w?.();
    await this.#done?.catch(() => {});
    if (this.#native && this.#draining === null) {
      // No accept reaps any more: the rest end as they happen (and what
      // already ended, at once).
      const given = promptReaping();
      if (this.#active === 0) given();
      else this.#draining = given;
    }
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

  /**
   * One connection, start to end; resolves with the wait status to log, or
   * null once a program owns the socket (startOnSocket): `end` then gets
   * the status at its exit. `end` is also called at the program's exit
   * when the status comes later (its output still being drained).
   */
  #handle(
    conn: Deno.TcpConn | NativeConn | Socket,
    id: number,
    scope: ConnScope,
    end: (wstat: number) => void,
  ): Promise<number | null> {
    if (conn instanceof NativeConn) {
      return this.#pipeline(id, scope, end, nativeConnection(conn, id, this.#log));
    }
    if (conn instanceof Socket) {
      return this.#pipeline(id, scope, end, nodeConnection(conn, id, this.#log));
    }
    // the untouched Deno socket goes along: sslserver runs node:tls on its handle
    return this.#pipeline(id, scope, end, denoConnection(conn, id, this.#log), conn);
  }

  async #pipeline(
    id: number,
    scope: ConnScope,
    end: (wstat: number) => void,
    c: Connection,
    tcp?: Deno.TcpConn,
  ): Promise<number | null> {
    const o = this.opts;
    const prog = this.prog;
    let cleanup: (() => void | Promise<void>) | undefined;
    // The connection is closed exactly once: at the end here, or a second
    // later by a silent turn-away (which then owns it); a step may change
    // how (TLS: close_notify and a lingering close first).
    let closeHow: () => void = () => c.close();
    let closed = false;
    const closeOnce = () => {
      if (closed) return;
      closed = true;
      try {
        closeHow();
      } catch { /* closed already (the client's reset) */ }
    };
    let closeHere = true;
    try {
      let local: Endpoint = c.local;
      let remote: Endpoint = c.remote;
      if (this.#verbosity >= 2) {
        this.#log(pidLine(prog, id, showAddress(remote.ip, o.forceV6).ip));
      }
      c.setNoDelay(o.noDelay ?? false);
      let wrapped: Io | null = null;
      const io = () => wrapped ?? c.io();
      let extraEnv: Array<[string, string | null]> = [];
      const edits: Array<(env: Map<string, string>) => void> = [];
      for (const step of o.steps ?? []) {
        const p = await step(c, {
          id,
          // made on first use: the native PROXY step takes the header off
          // the socket and never needs the streams
          get io() {
            return io();
          },
          local,
          remote,
          takePrefix: wrapped ? undefined : c.takePrefix,
          tcp: wrapped ? undefined : tcp,
        });
        if (p === null || scope.fault) return WSTAT_DROP;
        if (p.cleanup) {
          const before = cleanup;
          const own = p.cleanup;
          // the later steps' first, as their streams sit on the earlier ones'
          cleanup = async () => {
            await own();
            await before?.();
          };
        }
        if (p.close) closeHow = p.close;
        if (p.io) wrapped = p.io;
        if (p.local) local = p.local;
        if (p.remote) remote = p.remote;
        if (p.extraEnv) extraEnv = [...extraEnv, ...p.extraEnv];
        if (p.environ) edits.push(p.environ);
      }
      if (o.banner) {
        try {
          await writeBanner(c, wrapped, o.banner);
        } catch (e) {
          this.#warn(`${prog}: ${DROP}unable to print banner: ${errorText(e)}`);
          return WSTAT_DROP;
        }
      }

      const localShown = showAddress(local.ip, o.forceV6);
      const remoteShown = showAddress(remote.ip, o.forceV6);
      const plainRemote = showAddress(remote.ip).ip;
      if (this.#peers === null) await this.#connectionParts();
      const { localHost, remoteHost, info } = await this.#peers!.lookup(local, remote, {
        localName: o.localName,
        remoteHost: o.remoteHost ?? true,
        paranoid: o.paranoid ?? false,
        remoteInfo: o.remoteInfo ?? true,
        infoTimeoutMs: (o.infoTimeout ?? 26) * 1000,
      });
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
      for (const edit of edits) edit(env);

      let allow = true;
      if (this.#rules) {
        const verdict = await applyRules(this.#rules, o.allowNoRules ?? false, {
          ip: plainRemote,
          host: remoteHost,
          info,
        }, env);
        if ("drop" in verdict) {
          this.#warn(`${prog}: ${DROP}${verdict.drop}`);
          return WSTAT_DROP;
        }
        allow = verdict.allow;
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

      const admitted = this.#limits!.admit(plainRemote, env);
      if (!admitted.admitted) {
        if (this.#verbosity >= 2) {
          this.#log(
            decisionLine(prog, "deny", id, facts, ` ${admitted.label}: ${admitted.figure}`),
          );
        }
        if (admitted.message === null) {
          // closed later, outside this connection's slot and its finally
          const clean = cleanup;
          cleanup = undefined;
          closeHere = false;
          void turnAway(io, null, () => {
            closeOnce();
            clean?.();
          });
        } else await turnAway(io, admitted.message, () => {});
        return WSTAT_DENY;
      }
      env.set("TCPCONNNUM", String(admitted.connNum));
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        admitted.release();
      };
      // true once the program owns the socket: its exit releases the counts
      let handedOver = false;
      try {
        if (scope.fault) return WSTAT_DROP;
        if (this.#verbosity >= 2) this.#log(decisionLine(prog, "ok", id, facts));
        try {
          if (wrapped === null && c.startOnSocket) {
            // Nothing of this connection is kept while its program runs but
            // what programExit holds (its counts, its slot, the cleanup).
            const atExit = programExit(admitted.release, end, cleanup, this.#exitFault);
            if (await c.startOnSocket(o.argv, env, atExit)) {
              handedOver = true;
              cleanup = undefined;
              return null;
            }
          }
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
        closeOnce();
        if (!handedOver) release();
      }
    } finally {
      if (closeHere) closeOnce();
      try {
        await cleanup?.();
      } catch { /* ignore */ }
    }
  }
}
