/**
 * tcpserver's abuse limits (the "tcpserver limits" patch variables): MAXLOAD,
 * MAXCONNIP, MAXCONNC and the DIEMSG messages, plus the per-IP connection
 * numbers behind $TCPCONNNUM. Policy and counters only: tcpserver does the
 * I/O (writing the message, the 1 second delay, the log line).
 *
 * Where a value comes from, first found wins:
 *   1. the connection's environment after the -x rules were applied (a rule
 *      such as `10.0.0.:allow,MAXCONNIP="2"` overrides for those clients);
 *   2. tcpserver's own environment (`baseEnv`: the default for everyone);
 *   3. `-C n[:message]` on the command line: the default MAXCONNIP and its
 *      message (the default DIEMSG_MAXCONNIP).
 * An empty value (`MAXCONNIP=""`) means "no limit" and stops the search, so a
 * rule can exempt trusted clients from a global limit. A value that is not a
 * decimal number is ignored (logged once) and the search goes on, so a typo in
 * a rule falls back to the global default instead of lifting the limit.
 *
 * Check order: MAXLOAD, then MAXCONNIP, then MAXCONNC; the first limit
 * exceeded refuses the connection. A refused connection never counts.
 * Message for a refusal by LIMIT: DIEMSG_LIMIT, else DIEMSG (each searched as
 * above; -C's message ranks as a DIEMSG_MAXCONNIP below the environment's);
 * an empty message means none.
 */
import { canonicalIp, networkKey } from "../net/ip.ts";
import { loadavgPath, loadSampler } from "./loadavg.ts";

/** A connection that passed the limits: it counts until release(). */
export interface Admitted {
  /** Tells an Admitted from a Refused. */
  admitted: true;
  /** Connections from the same IP including this one ($TCPCONNNUM). */
  connNum: number;
  /** Stops counting this connection; a second call is a no-op. */
  release(): void;
}

/** A connection over a limit. */
export interface Refused {
  /** Tells a Refused from an Admitted. */
  admitted: false;
  /** "MAXLOAD" | "MAXCONNIP" | "MAXCONNC" */
  label: string;
  /** The load x 100 for MAXLOAD, the limit for the others. */
  figure: number;
  /** DIEMSG_<label> ?? DIEMSG; null when neither is set (close after 1 s). */
  message: string | null;
}

/** Construction options of Limits. */
export interface LimitsOptions {
  /** -C n: the default MAXCONNIP. */
  maxConnIp?: number;
  /** -C n:message: the default message for MAXCONNIP refusals. */
  maxConnIpMessage?: string;
  /** tcpserver's own environment: the defaults for every connection. */
  baseEnv: Map<string, string>;
  /**
   * The 1-minute load x 100, cheap to call; default a cached reader of
   * $TCPSERVER_LOADAVG_FILE (from baseEnv) or /proc/loadavg, created the first
   * time a MAXLOAD is in force.
   */
  loadavg?: () => number;
  /** Where warnings about invalid values go (one line each, once per value). */
  log?: (line: string) => void;
}

/** The limit labels, in check order. */
export const LIMIT_LABELS = ["MAXLOAD", "MAXCONNIP", "MAXCONNC"] as const;

/** The counting keys of a client address: the IP itself and its /24 or /64. */
export interface ClientKeys {
  /** Canonical address (lib/net/ip.ts): dotted quad, or RFC 5952 IPv6. */
  ip: string;
  /** "a.b.c.0/24" for IPv4 (and IPv4-mapped IPv6), e.g. "2001:db8:1:2::/64" for IPv6. */
  net: string;
}

/**
 * The counting keys of `ip` as tcpserver reports it ($TCPREMOTEIP or Deno's
 * hostname; brackets and an IPv6 zone id are ignored). IPv4-mapped IPv6
 * (::ffff:a.b.c.d) counts as the IPv4 address. Text that is no address is its
 * own key (and its own network).
 */
export function clientKeys(ip: string): ClientKeys {
  let t = ip;
  if (t.startsWith("[") && t.endsWith("]")) t = t.slice(1, -1);
  const pct = t.indexOf("%");
  if (pct >= 0 && t.includes(":")) t = t.slice(0, pct);
  const canon = canonicalIp(t);
  if (canon === null) return { ip, net: ip };
  return { ip: canon, net: networkKey(canon) };
}

type Lookup = { found: true; value: string } | { found: false };

/** Per-IP and per-network connection counters with the limit policy. */
export class Limits {
  readonly #perIp = new Map<string, number>();
  readonly #perNet = new Map<string, number>();
  readonly #base: Map<string, string>;
  readonly #cMax: number | undefined;
  readonly #cMsg: string | undefined;
  readonly #log: (line: string) => void;
  readonly #warned = new Set<string>();
  #loadavg: (() => number) | undefined;
  #total = 0;

  /** The limits come from opts; nothing is counted until the first admission. */
  constructor(opts: LimitsOptions) {
    this.#base = opts.baseEnv;
    this.#cMax = opts.maxConnIp;
    this.#cMsg = opts.maxConnIpMessage;
    this.#loadavg = opts.loadavg;
    this.#log = opts.log ?? (() => {});
  }

  /** Connections admitted and not yet released. */
  get total(): number {
    return this.#total;
  }

  /** Connections currently counted for the address `ip`. */
  countIp(ip: string): number {
    return this.#perIp.get(clientKeys(ip).ip) ?? 0;
  }

  /** Connections currently counted for the /24 or /64 of `ip`. */
  countNet(ip: string): number {
    return this.#perNet.get(clientKeys(ip).net) ?? 0;
  }

  /**
   * Decides whether a connection from `ip` with environment `env` (after the
   * rules) may run; if so it counts until release() is called.
   */
  admit(ip: string, env: Map<string, string>): Admitted | Refused {
    const keys = clientKeys(ip);

    const maxLoad = this.#limit("MAXLOAD", env);
    if (maxLoad !== null) {
      this.#loadavg ??= loadSampler({ path: loadavgPath(this.#base) });
      const load = this.#loadavg();
      if (Number.isFinite(load)) {
        if (load >= maxLoad) return this.#refuse("MAXLOAD", load, env);
      } else this.#warnOnce("load", "warning: unable to read load average, MAXLOAD not enforced");
    }

    const ipCount = this.#perIp.get(keys.ip) ?? 0;
    const maxIp = this.#limit("MAXCONNIP", env);
    if (maxIp !== null && ipCount >= maxIp) return this.#refuse("MAXCONNIP", maxIp, env);

    const netCount = this.#perNet.get(keys.net) ?? 0;
    const maxNet = this.#limit("MAXCONNC", env);
    if (maxNet !== null && netCount >= maxNet) return this.#refuse("MAXCONNC", maxNet, env);

    this.#perIp.set(keys.ip, ipCount + 1);
    this.#perNet.set(keys.net, netCount + 1);
    this.#total++;
    let released = false;
    return {
      admitted: true,
      connNum: ipCount + 1,
      release: () => {
        if (released) return;
        released = true;
        this.#total--;
        this.#decrement(this.#perIp, keys.ip);
        this.#decrement(this.#perNet, keys.net);
      },
    };
  }

  #decrement(map: Map<string, number>, key: string): void {
    const n = (map.get(key) ?? 0) - 1;
    if (n > 0) map.set(key, n);
    else map.delete(key);
  }

  #warnOnce(key: string, text: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#log(`tcpserver: ${text}`);
  }

  /** The candidate values of `name`, most specific first. */
  #candidates(name: string, env: Map<string, string>): string[] {
    const out: string[] = [];
    const fromRule = env.get(name);
    const fromBase = this.#base.get(name);
    if (fromRule !== undefined) out.push(fromRule);
    if (fromBase !== undefined && fromBase !== fromRule) out.push(fromBase);
    return out;
  }

  /** The limit `name` in force for this connection, or null for none. */
  #limit(name: string, env: Map<string, string>): number | null {
    for (const v of this.#candidates(name, env)) {
      if (v === "") return null;
      if (/^\d+$/.test(v)) return Number(v);
      this.#warnOnce(`${name}=${v}`, `warning: ignoring invalid ${name}=${v}`);
    }
    if (name === "MAXCONNIP" && this.#cMax !== undefined) return this.#cMax;
    return null;
  }

  #message(label: string, env: Map<string, string>): string | null {
    const pick = (name: string): Lookup => {
      const c = this.#candidates(name, env);
      return c.length ? { found: true, value: c[0] } : { found: false };
    };
    let m = pick(`DIEMSG_${label}`);
    if (!m.found && label === "MAXCONNIP" && this.#cMsg !== undefined) {
      m = { found: true, value: this.#cMsg };
    }
    if (!m.found) m = pick("DIEMSG");
    return m.found && m.value !== "" ? m.value : null;
  }

  #refuse(label: string, figure: number, env: Map<string, string>): Refused {
    return { admitted: false, label, figure, message: this.#message(label, env) };
  }
}
