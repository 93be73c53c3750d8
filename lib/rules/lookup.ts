/**
 * tcpserver's rule lookup (DJB's rules.c order, plus our CIDR step) over the
 * records lib/rules/compile.ts writes, and what a rule's data says: deny,
 * set and unset instructions (tcprulescheck prints them, tcpserver applies
 * them). Pure: the records come through a `get` function.
 */
import { formatIp, type Ip, parseIp4, parseIp6, prefixKey, unmapped } from "../net/ip.ts";
import { CIDR_V4_KEY, CIDR_V6_KEY } from "./compile.ts";
import { byteString } from "../core/bytes.ts";

const DOT = 46;

function indexOf(b: Uint8Array, c: number, from: number, end: number): number {
  for (let i = from; i < end; i++) if (b[i] === c) return i;
  return -1;
}

/** What tcpserver does with a connection. */
export interface RuleDecision {
  /** The key that matched, null = none (default allow). */
  rule: string | null;
  /** False when the rule says deny. */
  allow: boolean;
  /** Variables to set (value) or unset (null), in rule order; byte strings (lib/core/bytes.ts). */
  env: Array<[name: string, value: string | null]>;
}

/** A rule found: its key and raw data. */
export interface RuleMatch {
  /** The key that matched, a byte string. */
  key: string;
  /** The record's data (a view into the cdb): the instructions, see ruleItems. */
  data: Uint8Array;
}

/**
 * Finds the rule for a client in DJB's order: info@ip, info@=host, ip,
 * =host, shorter ip prefixes ending in a dot, then (ours) CIDR prefixes
 * longest first, then =.suffixes of host, "=", and "". `host`/`info`
 * undefined = not known (steps using them are skipped; "" is a value). An
 * IPv4-mapped IPv6 ip is looked up as IPv4; IPv6 in canonical form. ip,
 * host and info are byte strings (environment values, lib/core/bytes.ts), and so
 * is every key handed to `get` (Cdb.get reads a string key that way).
 */
export function findRule(
  get: (key: string) => Uint8Array | null,
  ip: string,
  host?: string,
  info?: string,
): RuleMatch | null {
  let parsed: Ip | null = null;
  if (ip.includes(":")) {
    const v6 = parseIp6(ip);
    if (v6) {
      parsed = unmapped({ family: 6, bytes: v6 });
      ip = formatIp(parsed);
    }
  } else {
    const v4 = parseIp4(ip);
    if (v4) parsed = { family: 4, bytes: v4 };
  }
  const tryKey = (key: string): RuleMatch | null => {
    const data = get(key);
    return data === null ? null : { key, data };
  };
  let m: RuleMatch | null;
  if (info !== undefined) {
    if ((m = tryKey(`${info}@${ip}`))) return m;
    if (host !== undefined && (m = tryKey(`${info}@=${host}`))) return m;
  }
  if ((m = tryKey(ip))) return m;
  if (host !== undefined && (m = tryKey(`=${host}`))) return m;
  for (let j = ip.length - 1; j >= 0; j--) {
    if (ip.charCodeAt(j) === DOT && (m = tryKey(ip.slice(0, j + 1)))) return m;
  }
  if (parsed) {
    const lens = get(parsed.family === 4 ? CIDR_V4_KEY : CIDR_V6_KEY);
    if (lens) {
      const max = parsed.family === 4 ? 32 : 128;
      for (const bits of lens) {
        if (bits <= max && (m = tryKey(prefixKey(parsed, bits)))) return m;
      }
    }
  }
  if (host !== undefined) {
    for (let j = 0; j < host.length; j++) {
      if (host.charCodeAt(j) === DOT && (m = tryKey(`=${host.slice(j)}`))) return m;
    }
    if ((m = tryKey("="))) return m;
  }
  return tryKey("");
}

/** One instruction of a rule's data, as tcprulescheck reports it (text, name: byte strings). */
export type RuleItem =
  | { kind: "deny" }
  | { kind: "set"; text: string }
  | { kind: "unset"; name: string };

/**
 * The instructions in a rule's data, in order, as DJB's tcprulescheck reads
 * them: NUL-terminated items; "D" = deny (nothing after it counts), "+" =
 * set, "-" = unset (ours); other items and an unterminated tail are ignored.
 * Names and values are byte strings (lib/core/bytes.ts): the rule's exact bytes.
 */
export function ruleItems(data: Uint8Array): RuleItem[] {
  const items: RuleItem[] = [];
  let s = 0;
  for (;;) {
    const z = indexOf(data, 0, s, data.length);
    if (z < 0) break;
    const kind = data[s];
    if (z > s) {
      if (kind === 68) {
        items.push({ kind: "deny" });
        break;
      }
      if (kind === 43) items.push({ kind: "set", text: byteString(data.subarray(s + 1, z)) });
      else if (kind === 45) {
        items.push({ kind: "unset", name: byteString(data.subarray(s + 1, z)) });
      }
    }
    s = z + 1;
  }
  return items;
}

/** A rule's data as a decision (a "+NAME" item without "=" is ignored, as tcpserver does). */
export function decide(match: RuleMatch | null): RuleDecision {
  if (!match) return { rule: null, allow: true, env: [] };
  const env: Array<[string, string | null]> = [];
  let allow = true;
  for (const item of ruleItems(match.data)) {
    if (item.kind === "deny") allow = false;
    else if (item.kind === "unset") env.push([item.name, null]);
    else {
      const eq = item.text.indexOf("=");
      if (eq >= 0) env.push([item.text.slice(0, eq), item.text.slice(eq + 1)]);
    }
  }
  return { rule: match.key, allow, env };
}

/** findRule + decide: the decision for a client (see findRule for the order). */
export function lookupRules(
  get: (key: string) => Uint8Array | null,
  ip: string,
  host?: string,
  info?: string,
): RuleDecision {
  return decide(findRule(get, ip, host, info));
}
