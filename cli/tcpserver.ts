/**
 * tcpserver: accepts TCP connections and runs a program for each, with the
 * connection on its stdin/stdout and the UCSPI-TCP environment. Options as
 * DJB's tcpserver 0.88, plus -4/-6/-I/-j (ucspi-tcp IPv6 patch), -C n[:msg]
 * (per-IP limit, as ipsvd's tcpsvd), -L (over-limit message mode) and -W
 * (a PROXY protocol header starts each connection: lib/net/proxy/step.ts).
 */
import process from "node:process";
import { fatal, fatalSys, ToolError, usage } from "../lib/core/errors.ts";
import { byteEnviron } from "../lib/core/environ.ts";
import { getopt, scanUlong } from "../lib/core/getopt.ts";
import { idOf } from "../lib/process/ids.ts";
import { hostArgumentAddresses } from "../lib/net/dns/host.ts";
import { parsePort } from "../lib/net/services.ts";
import { dropIds, nativeAvailable } from "../lib/native/native.ts";
import { setRunAs } from "../lib/process/spawn.ts";
import { type ServerOptions, stderrLine, TcpServer } from "../lib/server/server.ts";
import { takeFront } from "../lib/server/front.ts";
import { proxyPolicyFromEnv, proxyPrepareHook } from "../lib/net/proxy/step.ts";

const PROG = "tcpserver";
/** DJB's usage line with our additions (-46jLW, -I, -C) where DJB's has its options. */
export const USAGE =
  "tcpserver [ -1UXpPhHrRoOdDqQv46jLW ] [ -c limit ] [ -x rules.cdb ] [ -B banner ] [ -g gid ] [ -u uid ] [ -b backlog ] [ -l localname ] [ -t timeout ] [ -I interface ] [ -C n[:message] ] host port program";
const SPEC = "dDvqQhHrR1UXx:t:u:g:l:b:B:c:pPoO46jI:C:LW";

/** The -L message when neither $DIEMSG nor anything else says otherwise. */
export const BUSY_MESSAGE = "421 service busy, try again later";

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
 * The id a -u/-g value names: a number, or a user/group name looked up now.
 * C reads a name as 0 (root, silently); we refuse it instead.
 */
function idArg(prog: string, value: string, kind: "user" | "group"): number {
  const id = idOf(value, kind);
  if (id === null) {
    const file = kind === "user" ? "/etc/passwd" : "/etc/group";
    throw fatal(prog, `unknown ${kind} ${value}: neither a number nor a name in ${file}`);
  }
  return id;
}

/**
 * Parses the options tcpserver and sslserver share, with `defaults` for the
 * server settings. `own(letter, value)` sees every option first and returns
 * true for the ones it handled itself (sslserver's additions). Throws the
 * usage ToolError.
 */
export function parseServerArgs(
  prog: string,
  args: string[],
  spec: string,
  usageText: string,
  env: Map<string, string>,
  defaults: Partial<TcpserverArgs["server"]>,
  own: (letter: string, value: string) => boolean = () => false,
): TcpserverArgs {
  const { options, rest } = getopt(prog, args, spec, usageText);
  const s: TcpserverArgs["server"] = {
    limit: 40,
    argv: [],
    verbosity: 1,
    noDelay: false,
    remoteHost: true,
    paranoid: false,
    remoteInfo: true,
    infoTimeout: 26,
    banner: "",
    rules: null,
    allowNoRules: false,
    overLimitMessage: null,
    ...defaults,
  };
  let flag1 = false;
  let uid = 0;
  let gid = 0;
  let family: 0 | 4 | 6 = 0;
  let iface: string | undefined;
  let backlog: number | undefined;
  let overLimit = false;
  for (const { letter, value } of options) {
    if (own(letter, value)) continue;
    switch (letter) {
      case "b":
        backlog = scanUlong(value);
        break;
      case "c":
        s.limit = scanUlong(value);
        break;
      case "X":
        s.allowNoRules = true;
        break;
      case "x":
        s.rules = value;
        break;
      case "B":
        s.banner = value;
        break;
      case "d":
        s.noDelay = false;
        break;
      case "D":
        s.noDelay = true;
        break;
      case "v":
        s.verbosity = 2;
        break;
      case "q":
        s.verbosity = 0;
        break;
      case "Q":
        s.verbosity = 1;
        break;
      case "P":
        s.paranoid = false;
        break;
      case "p":
        s.paranoid = true;
        break;
      case "H":
        s.remoteHost = false;
        break;
      case "h":
        s.remoteHost = true;
        break;
      case "R":
        s.remoteInfo = false;
        break;
      case "r":
        s.remoteInfo = true;
        break;
      case "t":
        s.infoTimeout = scanUlong(value);
        break;
      case "U": {
        const u = env.get("UID");
        if (u !== undefined) uid = scanUlong(u);
        const g = env.get("GID");
        if (g !== undefined) gid = scanUlong(g);
        break;
      }
      case "u":
        uid = idArg(prog, value, "user");
        break;
      case "g":
        gid = idArg(prog, value, "group");
        break;
      case "1":
        flag1 = true;
        break;
      case "l":
        s.localName = value;
        break;
      case "4":
        family = 4;
        s.forceV6 = false;
        break;
      case "6":
        family = 6;
        s.forceV6 = true;
        break;
      case "I":
        iface = value;
        break;
      case "C": {
        const colon = value.indexOf(":");
        s.maxConnIp = scanUlong(colon >= 0 ? value.slice(0, colon) : value);
        if (colon >= 0) s.maxConnIpMessage = value.slice(colon + 1);
        break;
      }
      case "L":
        overLimit = true;
        break;
        // accepted without effect: -o, -O (IP options), -j, anything `own` ignores
    }
  }
  if (overLimit) s.overLimitMessage = env.get("DIEMSG") || BUSY_MESSAGE;
  const [host, port, ...argv] = rest;
  if (host === undefined || port === undefined || argv.length === 0) {
    throw usage(prog, usageText);
  }
  s.argv = argv;
  return { server: s, host, port, flag1, uid, gid, family, iface, backlog };
}

/** Parses tcpserver's arguments (throws the usage ToolError). */
export function parseArgs(args: string[], env: Map<string, string>): TcpserverArgs {
  let proxy = false;
  const a = parseServerArgs(PROG, args, SPEC, USAGE, env, {}, (letter) => {
    if (letter !== "W") return false;
    proxy = true;
    return true;
  });
  if (proxy) {
    const quiet = a.server.verbosity === 0;
    try {
      a.server.steps = [
        proxyPrepareHook(proxyPolicyFromEnv(PROG, env, (line) => quiet || stderrLine(line))),
      ];
    } catch (e) {
      throw fatal(PROG, `unable to parse $PROXY_TRUSTED: ${(e as Error).message}`);
    }
  }
  return a;
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

/** Runs tcpserver; resolves 0 after SIGTERM. */
export async function main(args: string[]): Promise<number> {
  const baseEnv = new Map(Object.entries(Deno.env.toObject()));
  const a = parseArgs(args, baseEnv);
  return await runServer(PROG, a, baseEnv, { dropProcessIds: true });
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
