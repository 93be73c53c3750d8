/**
 * The client side of UCSPI-TCP, as DJB's tcpclient does it: find the server's
 * addresses, connect (each address in turn, within -T x+y), build the
 * environment (PROTO, TCPLOCAL*, TCPREMOTE*), and run a program with the
 * network on descriptors 6 (read) and 7 (write).
 *
 * The steps are separate exports so other clients reuse them: the client
 * tools (who@, mconnect, ...) connect and then talk over the socket
 * in-process; sslclient inserts a TLS step through `ClientHooks.secure`,
 * which turns the connected socket into the stream the program talks over.
 */
import { spawn } from "node:child_process";
import net from "node:net";
import process from "node:process";
import { Duplex } from "node:stream";
import { DnsTemporaryError } from "../net/dns/errors.ts";
import { resolveAddrs, resolvePtr } from "../net/dns/resolver.ts";
import { formatIp4, ip4Literals, parseIp6, parseIp6Loose, scanIp4 } from "../net/ip.ts";
import { applyEnviron, showAddress, tcpEnviron } from "../core/environ.ts";
import { errnoName, errorText, fatal, fatalSys, ToolError, usage } from "../core/errors.ts";
import { stderrLine } from "../core/log.ts";
import type { Option } from "../core/getopt.ts";
import { scanUlong } from "../core/getopt.ts";
import { remoteInfo } from "../net/ident.ts";
import { parsePort } from "../net/services.ts";
import { type Ended, forwardSignals, statusOf } from "../process/spawn.ts";

/** tcpclient's options (the defaults are DJB's). */
export interface ClientOptions {
  /** 0 quiet (-q), 1 errors (-Q, default), 2 verbose (-v). */
  verbosity: number;
  /** Address family to look names up in: 4 (-4), 6 (-6) or 0 (both, IPv4 first). */
  family: 0 | 4 | 6;
  /** -d (true, default) or -D (TCP_NODELAY). */
  delay: boolean;
  /** -h (default) looks up $TCPREMOTEHOST; -H removes it. */
  remoteHost: boolean;
  /** -r (default) asks the server's ident service for $TCPREMOTEINFO; -R removes it. */
  remoteInfo: boolean;
  /** -t: seconds for the ident lookup (default 26). */
  infoTimeout: number;
  /** -T x+y: seconds per address on the first and second try (default 2+58). */
  connTimeout: [number, number];
  /** -i: the local address to bind. */
  localIp?: string;
  /** -p: the local port to bind (0: any). */
  localPort: number;
  /** -l: $TCPLOCALHOST without a DNS lookup. */
  localName?: string;
}

/** DJB's defaults. */
export function defaultClientOptions(): ClientOptions {
  return {
    verbosity: 1,
    family: 0,
    delay: true,
    remoteHost: true,
    remoteInfo: true,
    infoTimeout: 26,
    connTimeout: [2, 58],
    localPort: 0,
  };
}

/** The option letters tcpclient takes (getopt spec). */
export const CLIENT_OPTSPEC = "46dDvqQhHrRi:p:t:T:l:";

/** tcpclient's usage text (Debian's C tcpclient, word for word). */
export const CLIENT_USAGE =
  "tcpclient [ -hHrRdDqQv ] [ -i localip ] [ -p localport ] [ -T timeoutconn ] [ -l localname ] [ -t timeoutinfo ] host port program";

/**
 * Applies one parsed option to opts. Returns false for a letter that is not
 * tcpclient's (a caller with more options handles it); throws usage(prog,
 * usageText) for a bad -i address, as DJB's ip4_scan check does.
 */
export function applyClientOption(
  opts: ClientOptions,
  opt: Option,
  prog: string,
  usageText: string,
): boolean {
  const v = opt.value;
  switch (opt.letter) {
    case "4":
      opts.family = 4;
      break;
    case "6":
      opts.family = 6;
      break;
    case "d":
      opts.delay = true;
      break;
    case "D":
      opts.delay = false;
      break;
    case "v":
      opts.verbosity = 2;
      break;
    case "q":
      opts.verbosity = 0;
      break;
    case "Q":
      opts.verbosity = 1;
      break;
    case "h":
      opts.remoteHost = true;
      break;
    case "H":
      opts.remoteHost = false;
      break;
    case "r":
      opts.remoteInfo = true;
      break;
    case "R":
      opts.remoteInfo = false;
      break;
    case "l":
      opts.localName = v;
      break;
    case "t":
      opts.infoTimeout = scanUlong(v);
      break;
    case "T": {
      const m = /^(\d*)(\+?)(.*)$/s.exec(v)!;
      opts.connTimeout = [scanUlong(m[1]), scanUlong(m[3])];
      break;
    }
    case "i": {
      const ip = scanLocalIp(v);
      if (ip === null) throw usage(prog, usageText);
      opts.localIp = ip;
      break;
    }
    case "p":
      opts.localPort = scanUlong(v) & 0xffff;
      break;
    default:
      return false;
  }
  return true;
}

/**
 * A local address for -i: DJB's ip4_scan (four dot-separated numbers at the
 * start of the text, each taken modulo 256) or an IPv6 address (brackets
 * allowed). Null when it is neither.
 */
export function scanLocalIp(s: string): string | null {
  const v4 = scanIp4(s);
  if (v4) return formatIp4(v4.bytes);
  const bare = s.replace(/^\[(.*)\]$/s, "$1");
  if (parseIp6Loose(bare)) return bare;
  return null;
}

/**
 * DJB's dns_ip4 on a name made only of digits, dots and brackets: each
 * dot-separated number is one byte (modulo 256), brackets are ignored, and the
 * bytes make as many whole IPv4 addresses as they fill. Null when the text has
 * any other character (a name for DNS).
 */
export function numericIp4(host: string): string[] | null {
  return ip4Literals(host)?.map(formatIp4) ?? null;
}

/** The search domains dns_ip4_qualify appends to a dotless name. */
function searchDomains(): string[] {
  const local = process.env.LOCALDOMAIN;
  if (local !== undefined) return local.split(" ").filter((d) => d !== "");
  let text = "";
  try {
    text = Deno.readTextFileSync("/etc/resolv.conf");
  } catch (e) {
    // djbdns's dns_resolvconfrewrite: a missing file is an empty one; any other failure
    // to read it makes the name temporarily unresolvable, with the reason as DJB words it.
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new DnsTemporaryError(errorText(e), errorText(e));
    }
  }
  for (const line of text.split("\n")) {
    const m = /^(?:search|domain)[ \t](.*)$/.exec(line);
    if (m) return m[1].split(/[ \t]+/).filter((d) => d !== "");
  }
  let host: string;
  try {
    host = Deno.hostname();
  } catch (e) {
    // C's gethostname does not fail; ours does without --allow-sys: say so, as DJB's
    // rewrite fails the lookup when gethostname does.
    throw new DnsTemporaryError(errorText(e), errorText(e));
  }
  const dot = host.indexOf(".");
  if (dot >= 0 && dot + 1 < host.length) return [host.slice(dot + 1)];
  return [];
}

/**
 * The addresses of host, as tcpclient finds them: "" and "0" are the local
 * host (127.0.0.1; ::1 with family 6); digits and dots are DJB's numeric
 * IPv4; an IPv6 literal (brackets allowed) is itself; anything else goes to
 * DNS ($DNSCACHEIP, else resolv.conf) after qualification (a dotless name
 * gets $LOCALDOMAIN's or resolv.conf's search domains, the first giving
 * addresses wins; a trailing dot is dropped). Throws DnsTemporaryError when
 * DNS fails for now; [] when the name has no address.
 */
export async function hostAddresses(
  host: string,
  family: 0 | 4 | 6 = 0,
  timeoutMs = 30000,
): Promise<string[]> {
  if (host === "" || host === "0") return [family === 6 ? "::1" : "127.0.0.1"];
  const numeric = numericIp4(host);
  if (numeric) return family === 6 ? [] : numeric;
  const bare = host.replace(/^\[(.*)\]$/s, "$1").replace(/%.*$/s, "");
  if (parseIp6(bare)) return family === 4 ? [] : [bare];
  // Empty labels vanish; lib/net/dns/wire.ts fromDot reads escapes and throws DnsProtocolError
  // ("protocol error", as DJB's dns_domain_fromdot) for a label over 63 or a name over 255 bytes.
  const labels = host.split(".").filter((l) => l !== "");
  const name = labels.join(".");
  if (host.endsWith(".")) {
    // fully qualified: no search domains
  } else if (!host.includes(".")) {
    for (const d of searchDomains()) {
      const ips = await resolveAddrs(`${name}.${d}`, { family, timeoutMs });
      if (ips.length) return ips;
    }
    if (searchDomains().length) return [];
  }
  if (name === "") return [];
  return await resolveAddrs(name, { family, timeoutMs });
}

/**
 * The port operand: all digits (also empty: port 0), taken modulo 65536, or
 * a service name. Throws tcpclient's fatal error for an unknown name.
 */
export function remotePort(prog: string, x: string): number {
  const p = parsePort(x);
  if (p === null) throw fatal(prog, `unable to figure out port number for ${x}`);
  return p;
}

/** Where a connection attempt failed: binding the local address, or connecting. */
class AttemptError extends Error {
  constructor(readonly stage: "bind" | "connect", readonly reason: unknown) {
    super(errorText(reason));
  }
}

function timedOut(): Error {
  return Object.assign(new Error("timed out"), { code: "ETIMEDOUT" });
}

/**
 * What a timeout of 0 seconds allows: C's tcpclient polls once without
 * waiting, so a connection the kernel completes at once (loopback) still
 * succeeds; Deno reports even those asynchronously, so give it a moment.
 */
const ZERO_WAIT_MS = 20;

/** One connection attempt to ip:port within seconds. */
function attempt(
  ip: string,
  port: number,
  opts: ClientOptions,
  seconds: number,
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = new net.Socket({ allowHalfOpen: true });
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      sock.destroy();
      reject(new AttemptError("connect", timedOut()));
    }, Math.max(seconds * 1000, ZERO_WAIT_MS));
    sock.once("error", (e: Error & { syscall?: string; code?: string }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (e.syscall === "bind") {
        // Deno reports an address not on this host as EINVAL; the kernel says EADDRNOTAVAIL.
        const cause = e.code === "EINVAL" ? Object.assign(e, { code: "EADDRNOTAVAIL" }) : e;
        reject(new AttemptError("bind", cause));
      } else reject(new AttemptError("connect", e));
    });
    sock.once("connect", () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(sock);
    });
    const family = parseIp6Loose(ip) ? 6 : 4;
    const local: { localAddress?: string; localPort?: number } = {};
    if (opts.localIp !== undefined) local.localAddress = opts.localIp;
    else if (opts.localPort) local.localAddress = family === 6 ? "::" : "0.0.0.0";
    if (opts.localPort) local.localPort = opts.localPort;
    sock.connect({ host: ip, port, family, ...local });
  });
}

/**
 * Connects to port on one of addresses, DJB's way: each address in turn with
 * the first timeout; addresses that timed out are retried with the second
 * (a single address gets both at once). Each failure is reported through
 * warn as "PROG: unable to connect to IP port N: reason". A failure to bind
 * the local address (-i, -p) is fatal. Resolves null when every attempt failed.
 */
export async function connectAny(
  prog: string,
  addresses: string[],
  port: number,
  opts: ClientOptions,
  warn: (line: string) => void,
): Promise<net.Socket | null> {
  let [t0, t1] = opts.connTimeout;
  if (addresses.length === 1) {
    t0 += t1;
    t1 = 0;
  }
  const timeouts = [t0, t1];
  let todo = addresses;
  for (let round = 0; round < 2; round++) {
    const more: string[] = [];
    for (const ip of todo) {
      try {
        return await attempt(ip, port, opts, timeouts[round]);
      } catch (e) {
        const err = e as AttemptError;
        if (err.stage === "bind") throw fatalSys(prog, "unable to bind socket", err.reason);
        if (round === 0 && t1 && errnoName(err.reason) === "ETIMEDOUT") more.push(ip);
        else warn(`${prog}: unable to connect to ${ip} port ${port}: ${err.message}`);
      }
    }
    todo = more;
  }
  return null;
}

/** The first name DNS gives for ip ("" when none), or undefined when DNS fails for now. */
async function nameOf(ip: string): Promise<string | undefined> {
  try {
    const names = await resolvePtr(ip, { timeoutMs: 30000 });
    return names.length ? names[0].replace(/\.$/, "") : "";
  } catch (e) {
    if (e instanceof DnsTemporaryError || e instanceof TypeError) return undefined;
    throw e;
  }
}

/** The two ends of a connected socket, as the environment names them. */
export interface Endpoints {
  /** Our address ($TCPLOCALIP). */
  localIp: string;
  /** Our port ($TCPLOCALPORT). */
  localPort: number;
  /** The server's address ($TCPREMOTEIP). */
  remoteIp: string;
  /** The server's port ($TCPREMOTEPORT). */
  remotePort: number;
}

/** The addresses of a connected socket (IPv4-mapped addresses as IPv4). */
export function endpointsOf(sock: net.Socket): Endpoints {
  return {
    localIp: showAddress(sock.localAddress ?? "").ip,
    localPort: sock.localPort ?? 0,
    remoteIp: showAddress(sock.remoteAddress ?? "").ip,
    remotePort: sock.remotePort ?? 0,
  };
}

/**
 * Sets (or removes) the UCSPI-TCP variables in env as tcpclient does, through
 * lib/environ (shared with tcpserver): PROTO (TCP, or TCP6 and the TCP6*
 * names for an IPv6 connection), TCPLOCALPORT, TCPLOCALIP, TCPLOCALHOST (-l,
 * else the local address's DNS name: "" when it has none, removed when DNS
 * fails), TCPREMOTEPORT, TCPREMOTEIP, TCPREMOTEHOST (-h as TCPLOCALHOST; -H
 * removes it), TCPREMOTEINFO (-r: the server's ident answer within -t
 * seconds, lib/ident; -R removes it).
 */
export async function setClientEnv(
  env: Map<string, string>,
  ends: Endpoints,
  opts: ClientOptions,
): Promise<void> {
  const [localHost, remoteHost, info] = await Promise.all([
    opts.localName !== undefined ? opts.localName : nameOf(ends.localIp),
    opts.remoteHost ? nameOf(ends.remoteIp) : undefined,
    opts.remoteInfo
      ? remoteInfo({
        remoteIp: ends.remoteIp,
        remotePort: ends.remotePort,
        localIp: ends.localIp,
        localPort: ends.localPort,
        timeoutMs: opts.infoTimeout * 1000,
      })
      : null,
  ]);
  applyEnviron(
    env,
    tcpEnviron({
      localIp: ends.localIp,
      localPort: ends.localPort,
      localHost,
      remoteIp: ends.remoteIp,
      remotePort: ends.remotePort,
      remoteHost,
      remoteInfo: info,
    }),
  );
}

/**
 * Runs argv with our stdin, stdout and stderr on 0-2, reading the network on
 * descriptor 6 and writing it on descriptor 7 (socket pairs pumped to and
 * from network). The program closing 7 half-closes the network; the peer
 * closing gives the program EOF on 6. Resolves when the program has exited
 * and everything it wrote to 7 reached the network; rejects with the spawn
 * error when it cannot be started. A supervisor's signals (TERM, HUP, ALRM,
 * USR1, USR2, INT, CONT) are passed on to the program meanwhile.
 * When it is over, network is destroyed; or, given close, it is unpiped
 * from the program and close() does it (resolving once closed), as
 * `SecuredNetwork.close` describes.
 */
export function runWithNetwork(
  argv: string[],
  env: Map<string, string>,
  network: Duplex,
  close?: () => Promise<void>,
): Promise<Ended> {
  return new Promise((resolve, reject) => {
    const forwarding = forwardSignals();
    const child = spawn(argv[0], argv.slice(1), {
      stdio: ["inherit", "inherit", "inherit", "ignore", "ignore", "ignore", "pipe", "pipe"],
      env: Object.fromEntries(env),
    });
    let ended: Ended | undefined;
    let flushed = false;
    const stdio = child.stdio as unknown as (net.Socket | null)[];
    const fd6 = stdio[6]!;
    const fd7 = stdio[7]!;
    let finished = false;
    const finish = () => {
      if (!ended || !flushed || finished) return;
      finished = true;
      if (close) {
        network.unpipe(fd6);
        fd6.destroy();
        const status = ended;
        close().catch(() => network.destroy()).finally(() => resolve(status));
        return;
      }
      fd6.destroy();
      network.destroy();
      resolve(ended);
    };
    child.once("error", (e) => {
      forwarding.detach();
      fd6?.destroy();
      fd7?.destroy();
      reject(e);
    });
    child.once("spawn", () => {
      if (child.pid !== undefined) forwarding.attach(child.pid);
      fd6.on("error", () => network.unpipe(fd6));
      // Descriptor 7 failing is the program's side going away: its close ends the pump.
      fd7.on("error", () => {});
      network.on("error", () => {
        // The peer reset: the program sees EOF on 6 and a broken pipe on 7.
        fd6.end();
        fd7.destroy();
      });
      network.pipe(fd6);
      fd7.pipe(network);
      // The program and everything it started closed descriptor 7.
      fd7.once("close", () => {
        flushed = true;
        if (network.writableFinished || network.destroyed) finish();
        else {
          network.once("finish", finish);
          network.once("close", finish);
        }
      });
      fd7.resume();
    });
    child.once("exit", (code, signal) => {
      forwarding.detach();
      ended = { code, signal };
      finish();
    });
  });
}

/**
 * What a `secure` hook may give instead of a bare stream: the stream the
 * program talks over, and how to close it. tcpclient destroys a bare stream
 * (and the socket) as soon as the program is done and its data went out;
 * with `close`, it calls close() instead and destroys the socket only once
 * that resolved. sslclient closes lingering there: if the server still
 * sends, closing at once (with its data unread) makes the kernel send a
 * reset, which destroys our last data and the TLS close_notify on their way.
 */
export interface SecuredNetwork {
  /** The stream the program talks over (piped to its descriptors 6 and 7). */
  stream: Duplex;
  /**
   * Called when the program is done and everything it wrote was handed to
   * stream (stream ended): closes stream and the connection underneath.
   */
  close: () => Promise<void>;
}

/** What sslclient (or another client) adds between connecting and running the program. */
export interface ClientHooks {
  /**
   * Turns the connected socket into the stream the program talks over (a TLS
   * handshake, say), or a SecuredNetwork (the stream and how to close it),
   * and may add to env. Throw a ToolError to give up.
   */
  secure?: (
    sock: net.Socket,
    env: Map<string, string>,
  ) => Promise<Duplex | SecuredNetwork>;
}

/** A connection made: the socket and its two ends. */
export interface Connected {
  /** The connected socket. */
  sock: net.Socket;
  /** Its two ends, as the environment shows them. */
  ends: Endpoints;
}

/**
 * Finds host's addresses, connects to port (as connectAny), and applies -D.
 * Throws tcpclient's fatal errors (no address, DNS failure,
 * bind failure); a connection failure after every address was tried
 * throws a ToolError with an empty message and exit 111 (the per-address
 * lines have gone to warn already).
 */
export async function connectClient(
  prog: string,
  host: string,
  portNumber: number,
  opts: ClientOptions,
  warn: (line: string) => void,
): Promise<Connected> {
  let addresses: string[];
  try {
    addresses = await hostAddresses(host, opts.family);
  } catch (e) {
    if (e instanceof DnsTemporaryError) {
      const why = e.reason; // DJB's wording: timed out, temporary failure, protocol error
      throw fatal(prog, `temporarily unable to figure out IP address for ${host}: ${why}`);
    }
    // A name DNS cannot carry (an empty or overlong label): no address, as C says.
    if (e instanceof TypeError || e instanceof RangeError) addresses = [];
    else throw e;
  }
  if (addresses.length === 0) throw fatal(prog, `no IP address for ${host}`);
  const sock = await connectAny(prog, addresses, portNumber, opts, warn);
  if (!sock) throw new ToolError("", 111);
  sock.setNoDelay(!opts.delay);
  return { sock, ends: endpointsOf(sock) };
}

/**
 * Writes one line to stderr at once, so it precedes the program's output; never
 * throws (lib/core/log.ts: a byte string, as every log line). Re-exported for
 * sslclient and the client tools.
 */
export { stderrLine };

/**
 * tcpclient from parsed operands: connect, set the environment, run argv
 * with the network on 6 and 7; resolves the program's exit status. Errors
 * are ToolErrors with DJB's texts (an empty message: say nothing more).
 */
export async function tcpclient(
  prog: string,
  opts: ClientOptions,
  host: string,
  port: number,
  argv: string[],
  hooks: ClientHooks = {},
): Promise<number> {
  const warn = (line: string) => {
    if (opts.verbosity > 0) stderrLine(line);
  };
  const { sock, ends } = await connectClient(prog, host, port, opts, warn);
  const env = new Map(Object.entries(process.env) as [string, string][]);
  try {
    if (opts.verbosity >= 2) {
      warn(`${prog}: connected to ${ends.remoteIp} port ${ends.remotePort}`);
    }
    await setClientEnv(env, ends, opts);
    const secured = hooks.secure ? await hooks.secure(sock, env) : sock;
    const { stream: network, close } = secured instanceof Duplex
      ? { stream: secured, close: undefined }
      : secured;
    let ended: Ended;
    try {
      ended = await runWithNetwork(argv, env, network, close);
    } catch (e) {
      throw fatalSys(prog, `unable to run ${argv[0]}`, e);
    }
    return statusOf(ended);
  } finally {
    sock.destroy();
  }
}
