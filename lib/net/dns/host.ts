/**
 * The host argument of tcpserver and tcpclient, resolved as DJB's tools do
 * it: both hand it to dns_ip4_qualify (tcpserver.c and tcpclient.c alike,
 * after mapping "" and "0" to an address of their own), which qualifies the
 * name with djbdns's rewriting rules and then asks dns_ip4 for each name in
 * turn: digits, dots and brackets are read as numeric IPv4 (no DNS), any
 * other name is looked up. Like DJB's tools, and unlike the C library's
 * resolver, this never reads /etc/hosts: "localhost" is a name for DNS
 * (qualified by the search domains when it has no dot).
 *
 * The rules are djbdns's defaults (dns_rcrw.c without a rewrite file): a
 * name without a dot or bracket gets the search domains of $LOCALDOMAIN, else
 * of resolv.conf's first `search` or `domain` line, else the domain of the
 * host name; the first of them giving addresses wins, and the bare name is
 * not tried. A trailing dot is dropped (and stops qualification). We do not
 * read $DNSREWRITEFILE or /etc/dnsrewrite. Beyond DJB's (IPv4 only) tools:
 * an IPv6 literal (brackets allowed, a %scope kept) is itself, and names are
 * also asked for AAAA records when the family allows.
 */
import process from "node:process";
import { errorText, fatal } from "../../core/errors.ts";
import { formatIp4, ip4Literals, parseIp6 } from "../ip.ts";
import { DnsTemporaryError } from "./errors.ts";
import { resolveAddrs } from "./resolver.ts";

/**
 * DJB's dns_ip4 on a name made only of digits, dots and brackets: each
 * dot-separated number is one byte (modulo 256), brackets are ignored, and the
 * bytes make as many whole IPv4 addresses as they fill. Null when the text has
 * any other character (a name for DNS).
 */
export function numericIp4(host: string): string[] | null {
  return ip4Literals(host)?.map(formatIp4) ?? null;
}

/**
 * What djbdns's dns_resolvconfrewrite has its "?" rule append to a dotless
 * name: "+.d" for each domain of $LOCALDOMAIN (split at each space, as C
 * does) or else of resolv.conf's first search/domain line, each "+" an
 * alternative; else the host name's domain with its dot (".example.org", one
 * plain suffix); else nothing.
 */
function searchRule(): string {
  const local = process.env.LOCALDOMAIN;
  if (local !== undefined) return local.split(" ").map((d) => "+." + d).join("");
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
    if (m) return m[1].split(/[ \t]+/).filter((d) => d !== "").map((d) => "+." + d).join("");
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
  return dot >= 0 ? host.slice(dot) : "";
}

/**
 * The names dns_ip4_qualify asks dns_ip4 for, in order: the default rules
 * "?:" + searchRule() (a name without '.', '[' or ']' gets it appended) and
 * "*.:" (one trailing dot dropped), the result split at its '+' signs into
 * the part before the first joined with each part after it. Throws
 * DnsTemporaryError when the search domains cannot be read.
 */
export function qualifiedNames(host: string): string[] {
  let work = /[.[\]]/.test(host) ? host : host + searchRule();
  if (work.endsWith(".")) work = work.slice(0, -1);
  const plus = work.indexOf("+");
  if (plus < 0) return [work];
  const base = work.slice(0, plus);
  return work.slice(plus + 1).split("+").map((part) => base + part);
}

/** How a host argument is resolved. */
export interface HostArgumentOptions {
  /** Which records a name is asked for: A (4), AAAA (6), or both, IPv4 first (0). */
  family: 0 | 4 | 6;
  /**
   * What "" and "0" name, as each tool maps them before dns_ip4_qualify:
   * "loopback" (tcpclient: 127.0.0.1, ::1 with family 6) or "any"
   * (tcpserver: every local address, 0.0.0.0 with family 4, else the dual
   * stack ::).
   */
  unspecified: "loopback" | "any";
  /**
   * Whether a literal must be of the family too (tcpclient: -6 with an IPv4
   * address is no address); tcpserver uses a literal whatever -4/-6 say
   * (they choose the lookups and how clients are reported).
   */
  literalsByFamily: boolean;
  /** The time a DNS lookup may take, in milliseconds (default 30000). */
  timeoutMs?: number;
}

/**
 * The addresses of a host argument (see the module comment). Throws DnsTemporaryError when DNS (or reading the
 * search domains) fails for now; [] when the name has no address.
 */
export async function resolveHostArgument(
  host: string,
  o: HostArgumentOptions,
): Promise<string[]> {
  if (host === "" || host === "0") {
    if (o.unspecified === "any") return [o.family === 4 ? "0.0.0.0" : "::"];
    return [o.family === 6 ? "::1" : "127.0.0.1"];
  }
  const literal = host.replace(/^\[(.*)\]$/s, "$1");
  if (parseIp6(literal.replace(/%.*$/s, ""))) {
    return o.literalsByFamily && o.family === 4 ? [] : [literal];
  }
  const timeoutMs = o.timeoutMs ?? 30000;
  for (const name of qualifiedNames(host)) {
    const numeric = numericIp4(name);
    if (numeric) {
      // dns_ip4 giving no whole address: the next name is tried.
      if (numeric.length === 0 || (o.literalsByFamily && o.family === 6)) continue;
      return numeric;
    }
    // Empty labels vanish; lib/net/dns/name.ts fromDot reads escapes and throws DnsProtocolError
    // ("protocol error", as DJB's dns_domain_fromdot) for a label over 63 or a name over 255 bytes.
    const dotted = name.split(".").filter((l) => l !== "").join(".");
    const ips = await resolveAddrs(dotted, { family: o.family, timeoutMs });
    if (ips.length) return ips;
  }
  return [];
}

/**
 * resolveHostArgument with the fatal errors tcpserver and tcpclient print:
 * "temporarily unable to figure out IP address for HOST: REASON" (DJB's
 * reason: timed out, temporary failure, protocol error; or ours, such as a
 * missing permission) and "no IP address for HOST", both exit 111.
 */
export async function hostArgumentAddresses(
  prog: string,
  host: string,
  o: HostArgumentOptions,
): Promise<string[]> {
  let addresses: string[];
  try {
    addresses = await resolveHostArgument(host, o);
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError) addresses = [];
    else {
      const why = e instanceof DnsTemporaryError ? e.reason : errorText(e);
      throw fatal(prog, `temporarily unable to figure out IP address for ${host}: ${why}`);
    }
  }
  if (addresses.length === 0) throw fatal(prog, `no IP address for ${host}`);
  return addresses;
}
