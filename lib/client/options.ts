/**
 * tcpclient's command line: the options (DJB's defaults), applying one
 * parsed option (shared with sslclient, which takes more letters), the -i
 * address and the port operand.
 */
import { fatal, usage } from "../core/errors.ts";
import type { Option } from "../core/getopt.ts";
import { scanUlong } from "../core/getopt.ts";
import { formatIp4, parseIp6Loose, scanIp4 } from "../net/ip.ts";
import { parsePort } from "../net/services.ts";

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
 * The port operand: all digits (also empty: port 0), taken modulo 65536, or
 * a service name. Throws tcpclient's fatal error for an unknown name.
 */
export function remotePort(prog: string, x: string): number {
  const p = parsePort(x);
  if (p === null) throw fatal(prog, `unable to figure out port number for ${x}`);
  return p;
}
