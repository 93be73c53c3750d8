/**
 * tcpserver's log lines, byte for byte as DJB's tcpserver writes them on
 * stderr (with -v): status, pid, ok/deny, end. Network-supplied strings go
 * through safe(), DJB's safecats: at most 100 characters (then "..."), and
 * anything outside printable ASCII, '%' and ':' becomes '?'. An address
 * field that is an IP address is written as it is (`::1`, as Debian's IPv6
 * tcpserver and ucspi-tcp6 print it, not DJB's `??1`); host names, ident
 * answers and anything that is not an address still go through safe().
 */
import { parseIp } from "../net/ip.ts";

/** DJB's safecats: a log-safe copy of s. */
export function safe(s: string): string {
  let out = "";
  const n = s.length;
  for (let i = 0; i < 100; i++) {
    if (i >= n) return out;
    const c = s.charCodeAt(i);
    if (c === 0) return out;
    out += c < 33 || c > 126 || c === 37 || c === 58 ? "?" : s[i];
  }
  return out + "...";
}

/**
 * An address field of a log line: an IPv4 or IPv6 address (as our own
 * formatting writes it: digits, hex, '.' and ':') unchanged, anything else
 * through safe().
 */
export function safeIp(s: string): string {
  return s.length <= 45 && parseIp(s) ? s : safe(s);
}

/** `tcpserver: status: N/LIMIT` */
export function statusLine(prog: string, active: number, limit: number): string {
  return `${prog}: status: ${active}/${limit}`;
}

/** `tcpserver: pid PID from IP` */
export function pidLine(prog: string, pid: number, remoteIp: string): string {
  return `${prog}: pid ${pid} from ${remoteIp}`;
}

/** What the ok/deny line reports about a connection. */
export interface ConnectionFacts {
  /** The local host name (-l or -h's lookup); null or absent prints as empty. */
  localHost?: string | null;
  /** The local address. */
  localIp: string;
  /** The local port. */
  localPort: number | string;
  /** The remote host name (-h); null or absent prints as empty. */
  remoteHost?: string | null;
  /** The remote address. */
  remoteIp: string;
  /** The ident answer (-r); null or absent prints as empty. */
  remoteInfo?: string | null;
  /** The remote port. */
  remotePort: number | string;
}

/**
 * `tcpserver: ok PID LOCALHOST:LOCALIP:LOCALPORT REMOTEHOST:REMOTEIP:REMOTEINFO:REMOTEPORT`
 * (or `deny`); `extra` (e.g. " MAXCONNIP: 2") is appended as given.
 */
export function decisionLine(
  prog: string,
  verdict: "ok" | "deny",
  pid: number,
  f: ConnectionFacts,
  extra = "",
): string {
  const opt = (s: string | null | undefined) => (s === null || s === undefined ? "" : safe(s));
  return `${prog}: ${verdict} ${pid} ${opt(f.localHost)}:${safeIp(f.localIp)}:${
    safe(String(f.localPort))
  } ${opt(f.remoteHost)}:${safeIp(f.remoteIp)}:${opt(f.remoteInfo)}:${
    safe(String(f.remotePort))
  }${extra}`;
}

/** `tcpserver: end PID status WSTAT` (WSTAT is the raw wait status). */
export function endLine(prog: string, pid: number, wstat: number): string {
  return `${prog}: end ${pid} status ${wstat}`;
}
