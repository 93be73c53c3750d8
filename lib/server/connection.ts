/**
 * One connection, whichever path accepted it (the native one: libc sockets,
 * the program started on the socket itself; the pure one: Deno.listen, the
 * program's stdio pumped): its endpoints, its streams, and how its program
 * is run. The pipeline (lib/server/server.ts) and its steps see only this.
 */
import { NativeConn, spawnOnSocket } from "../native/native.ts";
import { findProgram } from "../process/pathexec.ts";
import { BoundedMap } from "../core/bounded.ts";
import { writeAll } from "../core/write_all.ts";
import { getRunAs } from "../process/spawn.ts";
import { type Ended, endedOf, waitStatus } from "../process/status.ts";
import type { Io } from "../stages/stage.ts";
import { socketHandOff } from "../process/socket_spawn.ts";
import type { Socket } from "node:net";

/** An address and port. */
export interface Endpoint {
  /** The address in its printed form (lib/net/ip.ts). */
  ip: string;
  /** The TCP port. */
  port: number;
}

/**
 * Says how long the prefix at the start of `buf` is: its length, null while
 * `buf` is a proper prefix of one (more bytes needed), or throws when the
 * bytes cannot start one.
 */
export type PrefixMeasure = (buf: Uint8Array) => number | null;

/** A connection as the pipeline sees it, whichever path accepted it. */
export interface Connection {
  /** Our end (the listening address and port). */
  local: Endpoint;
  /** The client's end. */
  remote: Endpoint;
  /** The socket's own streams (made on first use). */
  io(): Io;
  /**
   * Takes a prefix off the socket without reading a byte past it (the
   * native path: MSG_PEEK, then an exact recv), so the socket stays
   * pristine for the program; see NativeConn.takePrefix.
   */
  takePrefix?: (measure: PrefixMeasure, max: number, timeoutMs: number) => Promise<Uint8Array>;
  /** Writes to the socket directly (the native path: keeps it pristine). */
  write?: (data: Uint8Array) => Promise<void>;
  /** Closes our descriptor of the socket (the program may hold its own). */
  close(): void;
  /** -D (true) / -d: TCP_NODELAY; a failure (the client gone) is ignored. */
  setNoDelay(on: boolean): void;
  /**
   * Starts the program with the socket itself as its fd 0 and 1 when it
   * can (the native path, the socket pristine, the program not one of our
   * in-process stages): resolves true once it runs, and `onExit` gets its
   * wait status at its exit; nothing of the connection is kept meanwhile.
   * Resolves false when it cannot (then use run); throws when the program
   * cannot be started.
   */
  startOnSocket?(
    argv: string[],
    env: Map<string, string>,
    onExit: (wstat: number) => void,
  ): Promise<boolean>;
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

type Chain = typeof import("../stages/chain.ts");
let chainModule: Chain | null = null;

/**
 * Loads the in-process stages (lib/stages/chain.ts: rblsmtpd, fixcrio,
 * TLS...) once. They bring Node compatibility modules (TLS, crypto, streams)
 * that listening does not need: the server loads them after it listens and
 * before it accepts (a module loaded later could meet a process out of
 * descriptors, and Deno cannot load a module then).
 */
export async function loadStages(): Promise<void> {
  chainModule ??= await import("../stages/chain.ts");
}

async function chain(): Promise<Chain> {
  await loadStages();
  return chainModule!;
}

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
  found.set(key, { path, at: now });
  return { path, cached: false };
}

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
 * A connection accepted on the native path: the same pipeline; the program
 * gets the socket itself when nothing runs in-process before it (or what ran
 * did not touch the stream), else the stages talk over the socket from here.
 */
export function nativeConnection(
  conn: NativeConn,
  id: number,
  log: (line: string) => void,
): Connection {
  const io = (): Io => conn.io(log);
  const runAs = getRunAs();
  const start = async (
    file: string,
    argv: string[],
    env: Map<string, string>,
    onEnd?: (wstat: number) => void,
  ) => {
    const child = await spawnOnSocket(file, argv, env, conn.fd, runAs, onEnd);
    conn.close(); // as C's parent after fork: the program owns the socket
    return child;
  };
  // the program found on PATH (remembered: see findCached), started on the socket
  const startFound = async (
    argv: string[],
    env: Map<string, string>,
    onEnd?: (wstat: number) => void,
  ) => {
    let file = findCached(argv[0], env);
    try {
      return await start(file.path, argv, env, onEnd);
    } catch (e) {
      if (!file.cached) throw e;
      // what PATH found a moment ago is gone: search again
      file = findCached(argv[0], env, true);
      return await start(file.path, argv, env, onEnd);
    }
  };
  return {
    local: { ...conn.local },
    remote: { ...conn.remote },
    io,
    write: (data) => conn.writeAll(data),
    close: () => void conn.close(),
    takePrefix: (measure, max, timeoutMs) => conn.takePrefix(measure, max, timeoutMs),
    // A native socket starts with Nagle on (as the listener has it): only
    // -D needs the setsockopt.
    setNoDelay: (on) => {
      if (on) conn.setNoDelay(true);
    },
    startOnSocket: async (argv, env, onExit) => {
      const { isOurs } = chainModule ?? await chain();
      if (!conn.pristine || argv.length === 0 || isOurs(argv[0], env)) return false;
      await startFound(argv, env, onExit);
      return true;
    },
    run: async (argv, env, wrapped, onExit) => {
      const exited = (e: Ended) => onExit(waitStatus(e));
      const { isOurs, runConnectionProgram } = chainModule ?? await chain();
      if (wrapped) {
        return waitStatus(
          await runConnectionProgram(argv, env, wrapped, { pid: id, onExit: exited }),
        );
      }
      if (conn.pristine && argv.length > 0 && !isOurs(argv[0], env)) {
        return await (await startFound(argv, env)).status;
      }
      const ended = await runConnectionProgram(argv, env, io(), {
        pid: id,
        onExit: exited,
        spawnDirect: (file, a, via) =>
          via === io() && conn.pristine
            ? start(file, a, env).then(async (child) => endedOf(await child.status))
            : null,
      });
      return waitStatus(ended);
    },
  };
}

/** A connection accepted by Deno.listen (the pure path): the program's stdio is pumped. */
export function denoConnection(
  conn: Deno.TcpConn,
  id: number,
  log: (line: string) => void,
): Connection {
  const la = conn.localAddr as Deno.NetAddr;
  const ra = conn.remoteAddr as Deno.NetAddr;
  let io: Io | null = null;
  return {
    local: { ip: la.hostname, port: la.port },
    remote: { ip: ra.hostname, port: ra.port },
    io: () => (io ??= socketIo(conn, log)),
    close: () => conn.close(),
    setNoDelay: (on) => {
      try {
        conn.setNoDelay(on);
      } catch { /* not a TCP socket any more (the client is gone) */ }
    },
    run: async (argv, env, wrapped, onExit) => {
      const via = wrapped ?? (io ??= socketIo(conn, log));
      const { runConnectionProgram } = chainModule ?? await chain();
      return waitStatus(
        await runConnectionProgram(argv, env, via, {
          pid: id,
          onExit: (e) => onExit(waitStatus(e)),
        }),
      );
    },
  };
}

/**
 * The Io of a node:net socket (accepted paused and half-open, as
 * lib/server/node_listener.ts does): the same contract as socketIo. `onRead`
 * is called before the first read: from then on the socket is no longer
 * pristine (bytes may sit in our buffers).
 */
export function nodeSocketIo(sock: Socket, log: (line: string) => void, onRead: () => void): Io {
  let ended = false;
  const input = new ReadableStream<Uint8Array>({
    start(c) {
      const finish = () => {
        if (ended) return;
        ended = true;
        c.close();
      };
      sock.on("data", (chunk: Uint8Array) => {
        if (ended) return;
        c.enqueue(chunk);
        if ((c.desiredSize ?? 0) <= 0) sock.pause();
      });
      // a reset reads as the end, as socketIo's failed read
      sock.once("end", finish);
      sock.once("error", finish);
      sock.once("close", finish);
    },
    pull() {
      onRead();
      sock.resume();
    },
    cancel() {
      ended = true;
      sock.pause();
    },
  }, { highWaterMark: 0 });
  const output = new WritableStream<Uint8Array>({
    write(chunk) {
      return new Promise<void>((resolve, reject) => {
        sock.write(chunk, (e) => (e ? reject(e) : resolve()));
      });
    },
    close() {
      // half-close: FIN after everything written; a dead socket is no error
      return new Promise<void>((resolve) => {
        if (sock.destroyed || sock.writableEnded) return resolve();
        sock.once("close", () => resolve());
        sock.end(() => resolve());
      });
    },
  });
  return { input, output, log };
}

/**
 * A connection accepted by node:net (the pure path, lib/server/node_listener.ts):
 * a program that is not ours gets the socket itself as fd 0/1 while nothing
 * has read from it (lib/process/socket_spawn.ts), as on the native path;
 * in-process stages, PROXY and TLS talk over nodeSocketIo, and the program
 * after them is pumped.
 */
export function nodeConnection(
  sock: Socket,
  id: number,
  log: (line: string) => void,
): Connection {
  let pristine = true;
  let io: Io | null = null;
  const getIo = (): Io => (io ??= nodeSocketIo(sock, log, () => (pristine = false)));
  const runAs = getRunAs();
  const start = (file: string, argv: string[], env: Map<string, string>): Promise<Ended> | null =>
    socketHandOff(sock, file, argv, env, runAs);
  return {
    local: { ip: sock.localAddress ?? "", port: sock.localPort ?? 0 },
    remote: { ip: sock.remoteAddress ?? "", port: sock.remotePort ?? 0 },
    io: getIo,
    write: (data) =>
      new Promise<void>((resolve, reject) => {
        sock.write(data, (e) => (e ? reject(e) : resolve()));
      }),
    close: () => void sock.destroy(),
    setNoDelay: (on) => void sock.setNoDelay(on),
    run: async (argv, env, wrapped, onExit) => {
      const exited = (e: Ended) => onExit(waitStatus(e));
      const { isOurs, runConnectionProgram } = chainModule ?? await chain();
      if (wrapped) {
        return waitStatus(
          await runConnectionProgram(argv, env, wrapped, { pid: id, onExit: exited }),
        );
      }
      if (pristine && argv.length > 0 && !isOurs(argv[0], env)) {
        const file = findCached(argv[0], env);
        const direct = start(file.path, argv, env);
        if (direct) {
          try {
            return waitStatus(await direct);
          } catch (e) {
            if (!file.cached) throw e;
            // what PATH found a moment ago is gone (nothing started): search again
            const again = start(findCached(argv[0], env, true).path, argv, env);
            if (again) return waitStatus(await again);
          }
        }
      }
      const ended = await runConnectionProgram(argv, env, getIo(), {
        pid: id,
        onExit: exited,
        spawnDirect: (file, a, via) => (via === io && pristine ? start(file, a, env) : null),
      });
      return waitStatus(ended);
    },
  };
}
