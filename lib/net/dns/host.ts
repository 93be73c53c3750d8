/**
 * A host argument's addresses, as DJB's tcpclient finds them: the local
 * host, DJB's numeric IPv4, an IPv6 literal, else DNS after dns_ip4_qualify's
 * qualification with the search domains.
 */
import process from "node:process";
import { errorText } from "../../core/errors.ts";
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
  // Empty labels vanish; lib/net/dns/name.ts fromDot reads escapes and throws DnsProtocolError
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
