/**
 * Running a server as tcpserver does, once its command line is parsed
 * (cli/tcpserver.ts, cli/sslserver.ts): resolve the host argument and
 * listen (dual stack for 0, IPv4 alone where there is no IPv6), switch ids
 * (-u/-g/-U: the whole process on the native path, else the programs),
 * print the port (-1), and serve until SIGTERM: through the front when
 * there is one (lib/server/front.ts), else draining $TCPSERVER_DRAIN
 * seconds.
 */
import process from "node:process";
import { fatal, fatalSys, ToolError } from "../core/errors.ts";
import { byteEnviron } from "../core/environ.ts";
import { stderrLine } from "../core/log.ts";
import { hostArgumentAddresses } from "../net/dns/host.ts";
import { parsePort } from "../net/services.ts";
import { dropIds, nativeAvailable } from "../native/native.ts";
import { setRunAs } from "../process/spawn.ts";
import { type ServerOptions, TcpServer } from "./server.ts";
import { takeFront } from "./front.ts";

/** Seconds running connections get to finish after SIGTERM ($TCPSERVER_DRAIN). */
export const DEFAULT_DRAIN_SECONDS = 10;

/** The parsed command line. */
export interface TcpserverArgs {
  /** What the options decide for the server itself (the address comes later, from host and port). */
  server: Omit<ServerOptions, "hostname" | "port" | "baseEnv">;
  /** The host argument as given ("0", "", a name, a literal address). */
  host: string;
  /** The port argument as given (a number, a service name, or "0"). */
  port: string;
  /** -1: print the local port on stdout once listening. */
  flag1: boolean;
  /** -u / -U's $UID: the uid the program runs as (0: unchanged). */
  uid: number;
  /** -g / -U's $GID: the gid the program runs as (0: unchanged). */
  gid: number;
  /** -4 / -6: the address family to listen on (0: whichever the host gives, dual stack for "0"). */
  family: 0 | 4 | 6;
  /** -I: the interface a link-local host argument is scoped to. */
  iface?: string;
  /** -b, when given; otherwise the listen backlog is Deno's 511 (C: 20). */
  backlog?: number;
}

/**
 * The address to listen on for the host argument: resolved as C tcpserver's
 * dns_ip4_qualify does (lib/net/dns/host.ts, shared with tcpclient), the
 * first address; ucspi-tcp6's ":0" is every address, and -I scopes a
 * link-local IPv6 address.
 */
async function listenAddress(a: TcpserverArgs, PROG: string): Promise<string> {
  // ucspi-tcp6's ":0": every address, IPv4 and IPv6 on one socket ("::" is dual stack here).
  if (a.host === ":0") return "::";
  const [ip] = await hostArgumentAddresses(PROG, a.host, {
    family: a.family,
    unspecified: "any",
    literalsByFamily: false,
  });
  if (a.iface && !ip.includes("%") && /^fe[89ab]/i.test(ip)) return `${ip}%${a.iface}`;
  return ip;
}

function isRoot(): boolean {
  try {
    return process.getuid?.() === 0;
  } catch {
    return false;
  }
}

async function start(
  a: TcpserverArgs,
  baseEnv: Map<string, string>,
  PROG: string,
): Promise<TcpServer> {
  const port = parsePort(a.port);
  if (port === null) throw fatal(PROG, `unable to figure out port number for ${a.port}`);
  // The programs' environment is byte strings (lib/core/bytes.ts), exact bytes included.
  baseEnv = byteEnviron(baseEnv);
  const hostname = await listenAddress(a, PROG);
  // $REUSEPORT: SO_REUSEPORT, so that several servers share the port (Linux
  // spreads the connections over them).
  if (baseEnv.has("REUSEPORT")) a.server.reusePort = true;
  a.server.backlog = a.backlog;
  const server = new TcpServer({ ...a.server, prog: PROG, hostname, port, baseEnv });
  try {
    server.listen();
  } catch (e) {
    if (!(hostname === "::" && a.family === 0 && !(e instanceof Deno.errors.AddrInUse))) {
      throw fatalSys(PROG, "unable to bind", e);
    }
    // No IPv6 here: host 0 means every IPv4 address.
    const v4 = new TcpServer({ ...a.server, prog: PROG, hostname: "0.0.0.0", port, baseEnv });
    try {
      v4.listen();
    } catch (e2) {
      throw fatalSys(PROG, "unable to bind", e2);
    }
    return v4;
  }
  return server;
}

/** How runServer applies -u/-g/-U. */
export interface RunServerOptions {
  /**
   * Drop the ids of the whole server process after listening, as C does
   * (only when libc is reachable through FFI: lib/native/native.ts); otherwise
   * only the programs run as uid/gid.
   */
  dropProcessIds?: boolean;
  /**
   * The ids the server process itself takes instead of -u/-g (sslserver's
   * $SSL_UID/$SSL_GID: the user that does TLS and reads the credentials).
   * The programs still run as -u/-g, which must then be the same ids: one
   * process does TLS for every connection and starts every program.
   */
  processIds?: { uid?: number; gid?: number };
  /**
   * Runs after binding, before the ids are switched and the port printed:
   * sslserver loads its credentials here (as ucspi-ssl: a port in use fails
   * before any credential is read or logged).
   */
  afterListen?: () => Promise<void>;
}

/**
 * Applies -u/-g after binding, as C's tcpserver: gid first (setgroups to
 * just gid, setgid), then uid; 0 means "leave it". With FFI (and
 * `dropProcess`) the server process itself switches, so programs inherit
 * the ids; without, the server keeps its ids and programs are started as
 * uid/gid (setRunAs). Throws C's fatal messages.
 */
function switchIds(
  PROG: string,
  a: TcpserverArgs,
  baseEnv: Map<string, string>,
  dropProcess: boolean,
  processIds: { uid?: number; gid?: number } = {},
  warn: (line: string) => void = stderrLine,
): void {
  const procUid = processIds.uid || a.uid;
  const procGid = processIds.gid || a.gid;
  if (dropProcess && (procUid || procGid) && nativeAvailable(baseEnv)) {
    // The programs inherit the process's ids: what they would run as (-u/-g,
    // else the ids we have) must be what the process takes.
    const ownUid = process.getuid?.() ?? 0;
    const ownGid = process.getgid?.() ?? 0;
    if ((a.uid || ownUid) !== (procUid || ownUid)) {
      throw fatal(
        PROG,
        `unable to set uid: $SSL_UID ${procUid} is not the programs' uid ${a.uid || ownUid}`,
      );
    }
    if ((a.gid || ownGid) !== (procGid || ownGid)) {
      throw fatal(
        PROG,
        `unable to set gid: $SSL_GID ${procGid} is not the programs' gid ${a.gid || ownGid}`,
      );
    }
    try {
      dropIds(procGid, procUid);
    } catch (e) {
      const step = (e as { step?: string }).step === "uid" ? "uid" : "gid";
      throw fatalSys(PROG, `unable to set ${step}`, e);
    }
    setRunAs({});
    return;
  }
  // Without FFI: only programs switch. Without root, only our own uid is
  // possible, and no gid (setgroups needs root).
  const root = isRoot();
  if (root && (a.uid || a.gid || procUid || procGid)) {
    warn(
      `${PROG}: warning: without FFI (--allow-ffi) the server process keeps uid ${
        process.getuid?.() ?? 0
      } gid ${process.getgid?.() ?? 0}; only the programs run as -u/-g`,
    );
  }
  if (a.gid) {
    if (!root) throw fatal(PROG, "unable to set gid: permission denied");
  }
  if (a.uid) {
    if (!root && process.getuid?.() !== a.uid) {
      throw fatal(PROG, "unable to set uid: permission denied");
    }
  }
  if (root && (a.uid || a.gid)) {
    setRunAs({
      uid: a.uid || undefined,
      gid: a.gid || undefined,
    });
  }
}

/**
 * Listens, switches ids, prints the port (-1) and serves until SIGTERM, as
 * tcpserver does; `prog` names the tool in messages (sslserver runs here too).
 */
export async function runServer(
  PROG: string,
  a: TcpserverArgs,
  baseEnv: Map<string, string>,
  opts: RunServerOptions = {},
): Promise<number> {
  const quiet = a.server.verbosity === 0;
  // A front's server (lib/server/front.ts): the front stands for us before
  // the supervisor, and at its SIGTERM we stop accepting and finish.
  const front = takeFront(baseEnv);
  let server: TcpServer;
  try {
    server = await start(a, baseEnv, PROG);
    await opts.afterListen?.();
    switchIds(
      PROG,
      a,
      baseEnv,
      opts.dropProcessIds === true,
      opts.processIds,
      (line) => quiet || stderrLine(line),
    );
  } catch (e) {
    if (quiet && e instanceof ToolError) return e.exitCode;
    throw e;
  }
  await front?.ready();
  const port = (server as TcpServer).listenPort;
  if (a.flag1) {
    try {
      await Deno.stdout.write(new TextEncoder().encode(`${port}\n`));
    } catch { /* stdout closed */ }
  }
  const drainEnv = baseEnv.get("TCPSERVER_DRAIN");
  const drainMs =
    (drainEnv !== undefined && /^\d+$/.test(drainEnv) ? Number(drainEnv) : DEFAULT_DRAIN_SECONDS) *
    1000;
  let terms = 0;
  let forceExit: (() => void) | null = null;
  const forced = new Promise<void>((r) => (forceExit = r));
  const onTerm = () => {
    terms++;
    if (terms === 1) void server.stop(drainMs).then(() => forceExit?.());
    else forceExit?.();
  };
  Deno.addSignalListener("SIGTERM", onTerm);
  if (front) {
    // The front was told to stop (svc -t) or is gone: free the port at once,
    // then every session finishes as it would have, with no time limit (as
    // C's per-connection processes); a SIGTERM to us still drains.
    void front.stopRequested.then(() =>
      server.stop(Infinity, () => front.closed()).then(() => forceExit?.())
    );
  }
  try {
    await Promise.race([server.serve().then(() => forced), forced]);
  } finally {
    Deno.removeSignalListener("SIGTERM", onTerm);
  }
  if (a.server.verbosity === 2 && server.active > 0) {
    stderrLine(`${PROG}: warning: exiting with ${server.active} connections open`);
  }
  return 0;
}
