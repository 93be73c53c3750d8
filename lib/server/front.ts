/**
 * Restarts as C tcpserver gives them, on the native path: the process a
 * supervisor starts (`supervise`, runit, systemd) is a small *front*; the
 * server proper is its child. At SIGTERM (`svc -t`, `sv restart`) the front
 * asks the server to close its listening socket, waits for that (a few
 * milliseconds; at most FRONT_STOP_WAIT_MS), and exits: the supervisor
 * starts the next generation at once, which can bind the port, while the
 * old server, no longer listening, finishes every session it carries (the
 * programs it started, and the sessions running through in-process stages:
 * fixcrio, recordio, a blocked rblsmtpd conversation) exactly as it would
 * have, logs their `end` lines, and exits when the last one ended. In C the
 * same happens because every session is its own process.
 *
 * Nothing is transferred at the restart, so nothing can be lost in a
 * transfer: the sessions never move. The cost is one more process per
 * server (an idle Deno) while it runs.
 *
 * The two talk over a socketpair whose server end is named by
 * $TCPSERVER_FRONT (taken out of the environment at once, close-on-exec, so
 * no program inherits it). Front to server: `t` (stop accepting). Server to
 * front: `r` (listening, ids switched; the front takes the same ids and
 * answers `d`) and `k` (listener closed). The front
 * ending for any reason (SIGKILL too) reads as `t`: the server never keeps a
 * port the next generation needs. The server ending ends the front with its
 * exit status.
 *
 * Only on the native path (FFI): the pure path cannot hand a socket to a
 * child it spawns with Deno.Command, and keeps the drain
 * ($TCPSERVER_DRAIN); so does a socket-activated server, whose supervisor
 * owns the listening socket.
 */
import { ownEnviron } from "../core/environ.ts";
import { byteString } from "../core/bytes.ts";
import {
  AF_UNIX,
  errno,
  F_DUPFD,
  F_GETFL,
  F_SETFD,
  F_SETFL,
  FD_CLOEXEC,
  L,
  nativeAvailable,
  O_CLOEXEC,
  O_NONBLOCK,
  SOCK_CLOEXEC,
  SOCK_STREAM,
  sysError,
} from "../native/libc.ts";
import { POLLIN, thePoller } from "../native/poller.ts";
import { spawnProcess } from "../native/spawn.ts";
import { dropIds } from "../native/ids.ts";
import { E } from "../native/errno.ts";

/** The variable naming the server's end of the socketpair (a descriptor number). */
export const FRONT_VARIABLE = "TCPSERVER_FRONT";

/** How long the front waits at SIGTERM for the server to close its listener. */
export const FRONT_STOP_WAIT_MS = 1000;

const MSG_STOP = 0x74; // "t"
const MSG_READY = 0x72; // "r"
const MSG_CLOSED = 0x6b; // "k"
const MSG_DROPPED = 0x64; // "d"

/**
 * Whether this process should be a front: the native path is available, we
 * are not already a front's server, and no supervisor passed us a listening
 * socket (socket activation keeps the drain). Never throws.
 */
export function frontWanted(): boolean {
  try {
    if (!nativeAvailable()) return false;
    if (Deno.env.get(FRONT_VARIABLE) !== undefined) return false;
    if (Deno.env.get("LISTEN_PID") === String(Deno.pid)) return false;
    return true;
  } catch {
    // No env permission: no front (the server runs as it always did).
    return false;
  }
}

/** Reads a whole small file with libc (the ffi permission, not read, is what the native path has). */
function readProcFile(path: string): Uint8Array {
  const l = L();
  const fd = l.open(new TextEncoder().encode(path + "\0"), O_CLOEXEC, 0);
  if (fd < 0) throw sysError(`unable to read ${path}`, errno());
  const parts: Uint8Array[] = [];
  let total = 0;
  try {
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = Number(l.read(fd, buf, BigInt(buf.length)));
      if (n < 0 && errno() === E.EINTR) continue;
      if (n < 0) throw sysError(`unable to read ${path}`, errno());
      if (n === 0) break;
      parts.push(buf.slice(0, n));
      total += n;
    }
  } finally {
    l.close(fd);
  }
  const all = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.length;
  }
  return all;
}

/** Our own argv, byte for byte (argv[0] as we were called, Deno's flags, the script). */
function ownArgv(): string[] {
  const s = byteString(readProcFile("/proc/self/cmdline"));
  const list = s.split("\0");
  if (list.at(-1) === "") list.pop();
  return list;
}

/**
 * V8's young generation capped at 1 MB (two semi-spaces, default up to 16
 * MB each): a server's allocations are short-lived and small, and the
 * default lets the young generation grow to ~16 MB more resident memory
 * for no gain in connections per second (bench/README.md, "Where the
 * server's CPU goes"). The compiled binary has it built in (deno.json's
 * compile task).
 */
export const SERVER_V8_FLAGS = "--v8-flags=--max-semi-space-size=1";

/**
 * The argv the server is started with: ours, plus SERVER_V8_FLAGS when we
 * run under `deno run` and no V8 flags were given (given ones are passed on
 * as they are, as every other flag of Deno's).
 */
export function serverArgv(own: string[], standalone = Deno.build.standalone): string[] {
  if (standalone || own[1] !== "run" || own.some((a) => a.startsWith("--v8-flags"))) return own;
  return [own[0], own[1], SERVER_V8_FLAGS, ...own.slice(2)];
}

/** uid and gid (real) of process pid, from /proc/pid/status. */
function idsOf(pid: number): { uid: number; gid: number } | null {
  const text = byteString(readProcFile(`/proc/${pid}/status`));
  const uid = /^Uid:\s+(\d+)/m.exec(text);
  const gid = /^Gid:\s+(\d+)/m.exec(text);
  return uid && gid ? { uid: Number(uid[1]), gid: Number(gid[1]) } : null;
}

/** A non-blocking socket end: waits for and reads one message byte (null: the other end is gone). */
async function readMessage(fd: number): Promise<number | null> {
  const l = L();
  const b = new Uint8Array(1);
  for (;;) {
    const n = Number(l.read(fd, b, 1n));
    if (n === 1) return b[0];
    if (n === 0) return null;
    const e = errno();
    if (e === E.EINTR) continue;
    if (e !== E.EAGAIN) return null;
    await thePoller().wait(fd, POLLIN);
  }
}

/** Sends one message byte; false when the other end is gone. */
function sendMessage(fd: number, msg: number): boolean {
  for (;;) {
    const n = Number(L().write(fd, new Uint8Array([msg]), 1n));
    if (n === 1) return true;
    if (n < 0 && errno() === E.EINTR) continue;
    return false;
  }
}

function nonBlocking(fd: number): void {
  const l = L();
  l.fcntl(fd, F_SETFL, l.fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
}

/** The exit status a front passes on for its server's wait(2) status. */
export function frontExitCode(wstat: number): { code: number; signal?: number } {
  const sig = wstat & 0x7f;
  if (sig === 0) return { code: (wstat >> 8) & 0xff };
  return { code: 111, signal: sig };
}

/**
 * Runs this process as the front of a server (see the module comment):
 * starts our own binary again, with our argv and environment and
 * $TCPSERVER_FRONT, and resolves with the exit code to exit with — the
 * server's, or 0 after a SIGTERM once the server has closed its listener.
 * `warn` gets a line when the server died of a signal; the signals in
 * `forward` are passed on to the server. Resolves null (after a warning)
 * when no server could be started: the caller then serves itself.
 */
export async function runFront(
  prog: string,
  warn: (line: string) => void,
  forward: Deno.Signal[] = [],
): Promise<number | null> {
  const l = L();
  const pair = new Int32Array(2);
  if (l.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, new Uint8Array(pair.buffer)) !== 0) {
    warn(`${prog}: warning: running without a restart front: socketpair: os error ${errno()}`);
    return null;
  }
  const [own, theirs] = pair;
  // The server's end, not close-on-exec, above the descriptors a supervisor
  // or a caller may pass on (3 for sslserver's password, 3.. for LISTEN_FDS).
  const passed = l.fcntl(theirs, F_DUPFD, 10);
  l.close(theirs);
  let server;
  try {
    if (passed < 0) throw sysError("unable to duplicate descriptor", errno());
    const env = ownEnviron();
    env.set(FRONT_VARIABLE, String(passed));
    server = await spawnProcess("/proc/self/exe", serverArgv(ownArgv()), env, []);
  } catch (e) {
    // Nothing started: this process serves itself, draining at SIGTERM.
    l.close(own);
    warn(`${prog}: warning: running without a restart front: ${(e as Error).message}`);
    return null;
  } finally {
    if (passed >= 0) l.close(passed);
  }
  nonBlocking(own);

  let stopping = false;
  let stopped: () => void = () => {};
  const stoppedNow = new Promise<void>((r) => (stopped = r));
  const onTerm = () => {
    if (stopping) return;
    stopping = true;
    if (!sendMessage(own, MSG_STOP)) stopped();
    setTimeout(() => stopped(), FRONT_STOP_WAIT_MS);
  };
  Deno.addSignalListener("SIGTERM", onTerm);
  // Signals the server acts on (sslserver's SIGHUP) are passed on to it.
  const pass = (sig: Deno.Signal) => () => {
    try {
      Deno.kill(server.pid, sig);
    } catch { /* the server is gone: its status ends us */ }
  };
  const passers = forward.map((sig) => [sig, pass(sig)] as const);
  for (const [sig, f] of passers) Deno.addSignalListener(sig, f);

  // The server's messages: ready (then the front takes the server's ids:
  // it needs no privilege to wait), listener closed (the front may go).
  void (async () => {
    for (;;) {
      const msg = await readMessage(own);
      // The server gone without being asked: its exit status says why.
      if (msg === null) return stopping ? stopped() : undefined;
      if (msg === MSG_CLOSED) return stopped();
      if (msg === MSG_READY) {
        dropToIdsOf(server.pid);
        sendMessage(own, MSG_DROPPED);
      }
    }
  })();

  const ended = server.status.then((wstat) => ({ wstat }));
  const outcome = await Promise.race([ended, stoppedNow.then(() => null)]);
  Deno.removeSignalListener("SIGTERM", onTerm);
  for (const [sig, f] of passers) Deno.removeSignalListener(sig, f);
  // Stopped: the server lives on without us, finishing its sessions.
  if (outcome === null) return 0;
  const { code, signal } = frontExitCode(outcome.wstat);
  if (signal !== undefined) warn(`${prog}: fatal: server process ended by signal ${signal}`);
  return code;
}

/** Switches the front to the server's uid and gid (after tcpserver's -u/-g took effect there). */
function dropToIdsOf(pid: number): void {
  try {
    const ids = idsOf(pid);
    const ownUid = Deno.uid() ?? 0;
    if (!ids || ownUid !== 0 || (ids.uid === 0 && ids.gid === 0)) return;
    dropIds(ids.gid, ids.uid);
  } catch {
    // The front keeps its ids: it only waits and signals, and reads nothing
    // from the network; the server's own switch is what matters.
  }
}

/**
 * The server's side of the front's socketpair (see the module comment):
 * `ready` and `closed` tell the front; `stopRequested` resolves when the
 * front asks to stop accepting or is gone.
 */
export class FrontLink {
  readonly #fd: number;
  #open = true;
  #dropped: (() => void) | null = null;
  /** Resolves when the front sent `t` or ended: time to close the listener. */
  readonly stopRequested: Promise<void>;

  /** Takes socket end fd (made close-on-exec and non-blocking here). */
  constructor(fd: number) {
    this.#fd = fd;
    L().fcntl(fd, F_SETFD, FD_CLOEXEC);
    nonBlocking(fd);
    this.stopRequested = (async () => {
      for (;;) {
        const msg = await readMessage(fd);
        if (msg === MSG_DROPPED) this.#dropped?.();
        else if (msg === null || msg === MSG_STOP) return this.#dropped?.();
      }
    })();
  }

  /**
   * Tells the front the server listens with its final ids, and resolves
   * once the front has taken them too (or is gone, or after
   * FRONT_STOP_WAIT_MS): before the server says it is ready (-1), neither
   * process runs with ids it should not have.
   */
  async ready(): Promise<void> {
    if (!this.#open) return;
    const dropped = new Promise<void>((r) => (this.#dropped = r));
    if (!sendMessage(this.#fd, MSG_READY)) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([dropped, new Promise((r) => (timer = setTimeout(r, FRONT_STOP_WAIT_MS)))]);
    clearTimeout(timer);
    this.#dropped = null;
  }

  /** Tells the front the listener is closed, and lets go of the link. */
  closed(): void {
    if (!this.#open) return;
    sendMessage(this.#fd, MSG_CLOSED);
    this.#open = false;
    thePoller().forget(this.#fd);
    L().close(this.#fd);
  }
}

/**
 * The link to our front when we are a front's server: takes
 * $TCPSERVER_FRONT out of `env` and of the process environment (programs
 * never see it) and checks that it names a socket. Null otherwise.
 */
export function takeFront(env: Map<string, string>): FrontLink | null {
  const v = env.get(FRONT_VARIABLE);
  if (v === undefined) return null;
  env.delete(FRONT_VARIABLE);
  try {
    Deno.env.delete(FRONT_VARIABLE);
  } catch { /* no env permission: the map (what programs get) is what counts */ }
  if (!/^\d{1,9}$/.test(v) || !nativeAvailable(env)) return null;
  const fd = Number(v);
  if (L().fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) return null;
  return new FrontLink(fd);
}

/**
 * The server behind process pid when pid is a front (its child running the
 * same command line, or it with SERVER_V8_FLAGS: the one `ps`, tests and
 * benches should look at), else
 * pid itself. Reads /proc (children of every thread: the server is spawned
 * from an FFI worker thread); never throws.
 */
export function serverBehind(pid: number): number {
  const cmdline = (n: number) => {
    try {
      return Deno.readTextFileSync(`/proc/${n}/cmdline`);
    } catch {
      return null;
    }
  };
  const own = cmdline(pid);
  if (own === null) return pid;
  // the server's argv is the front's, with SERVER_V8_FLAGS under deno run
  const list = own.split("\0");
  if (list.at(-1) === "") list.pop();
  const withFlags = serverArgv(list, false).join("\0") + "\0";
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      let text = "";
      try {
        text = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/children`);
      } catch { /* the thread ended */ }
      for (const c of text.trim().split(/\s+/)) {
        if (c === "") continue;
        const theirs = cmdline(Number(c));
        if (theirs === own || theirs === withFlags) return Number(c);
      }
    }
  } catch { /* pid ended */ }
  return pid;
}
