/**
 * Connecting as DJB's tcpclient does: find the host's addresses, try each in
 * turn within -T x+y (addresses that timed out get the second timeout),
 * bind -i/-p first, apply -D; and the two ends of the connected socket.
 */
import net from "node:net";
import { showAddress } from "../core/environ.ts";
import { errnoName, errorText, fatalSys, ToolError } from "../core/errors.ts";
import { hostArgumentAddresses } from "../net/dns/host.ts";
import { parseIp6Loose } from "../net/ip.ts";
import type { ClientOptions } from "./options.ts";

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
  const addresses = await hostArgumentAddresses(prog, host, {
    family: opts.family,
    unspecified: "loopback",
    literalsByFamily: true,
  });
  const sock = await connectAny(prog, addresses, portNumber, opts, warn);
  if (!sock) throw new ToolError("", 111);
  sock.setNoDelay(!opts.delay);
  return { sock, ends: endpointsOf(sock) };
}
