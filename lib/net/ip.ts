/**
 * IP addresses as text and bytes, the one parser and formatter of the tools:
 * strict and lenient IPv4 parsing, IPv6 parsing (compressed, embedded IPv4,
 * optional brackets and zone), canonical formatting (RFC 5952, IPv4-mapped as
 * ::ffff:a.b.c.d as ucspi-tcp6's ip6_fmt), IPv4-mapped detection and
 * unmapping, prefix masking, and the /24 and /64 network keys per-network
 * limits count by. Pure functions.
 *
 * A dotted quad, alone or ending an IPv6 address, is read as DJB's ip4_scan
 * reads its parts: decimal, so a leading zero is just a zero
 * ("::ffff:010.0.0.1" is ::ffff:10.0.0.1; ucspi-tcp6's ip6_scan reads the
 * tail with ip4_scan too). A protocol that forbids leading zeros (PROXY v1,
 * written by inet_ntop and read by haproxy with inet_pton) asks for the
 * "inet_pton" syntax, which refuses them in both places.
 */

/** 4 bytes (IPv4) or 16 bytes (IPv6). */
export type IpBytes = Uint8Array;

/** A parsed address: its family and bytes. */
export interface Ip {
  /** 4 or 6 (an IPv4-mapped address is family 6 until unmapped). */
  family: 4 | 6;
  /** 4 bytes for family 4, 16 for family 6. */
  bytes: IpBytes;
}

/**
 * How the parts of a dotted quad may be written: "djb" as DJB's ip4_scan
 * (decimal, leading zeros allowed: "010" is 10), "inet_pton" without leading
 * zeros ("010" is refused, as inet_pton and the PROXY protocol refuse it).
 */
export type Ip4Syntax = "djb" | "inet_pton";

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/**
 * Strict dotted quad: four decimal parts 0..255 of 1 to 3 digits, nothing
 * else ("1.2.3.4"; "010.0.0.1" is decimal 10 in the default "djb" syntax,
 * refused in "inet_pton"). Returns null if not.
 */
export function parseIp4(s: string, syntax: Ip4Syntax = "djb"): IpBytes | null {
  const out = new Uint8Array(4);
  let part = 0;
  let i = 0;
  while (part < 4) {
    let n = 0;
    let digits = 0;
    const first = i;
    while (i < s.length && isDigit(s.charCodeAt(i))) {
      n = n * 10 + s.charCodeAt(i) - 48;
      i++;
      if (++digits > 3) return null;
    }
    if (digits === 0 || n > 255) return null;
    if (syntax === "inet_pton" && digits > 1 && s.charCodeAt(first) === 48) return null;
    out[part++] = n;
    if (part < 4) {
      if (s[i] !== ".") return null;
      i++;
    }
  }
  return i === s.length ? out : null;
}

/**
 * IPv4 as a client may write it: an optional pair of brackets ("[1.2.3.4]")
 * and zero-padded parts of any length ("127.000.000.001"), each 0..255.
 * Returns null if s is not such an address. (tcpclient uses this.)
 */
export function parseIp4Loose(s: string): IpBytes | null {
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let k = 0; k < 4; k++) {
    const p = parts[k];
    if (p.length === 0) return null;
    let n = 0;
    for (let i = 0; i < p.length; i++) {
      const c = p.charCodeAt(i);
      if (!isDigit(c)) return null;
      n = n * 10 + c - 48;
      if (n > 255) return null;
    }
    out[k] = n;
  }
  return out;
}

/**
 * DJB's ip4_scan: four dot-separated decimal numbers at the start of s, each
 * of any length and taken modulo 256 (scan_ulong into a char); what follows
 * them is not looked at. Returns the bytes and how many chars were read, or
 * null when s does not start so. (tcpclient -i reads its address so.)
 */
export function scanIp4(s: string): { bytes: IpBytes; length: number } | null {
  const out = new Uint8Array(4);
  let i = 0;
  for (let part = 0; part < 4; part++) {
    if (part > 0) {
      if (s[i] !== ".") return null;
      i++;
    }
    const first = i;
    let n = 0;
    while (i < s.length && isDigit(s.charCodeAt(i))) n = (n * 10 + s.charCodeAt(i++) - 48) & 255;
    if (i === first) return null;
    out[part] = n;
  }
  return { bytes: out, length: i };
}

/**
 * djbdns's dns_ip4 on a name made only of digits, dots and brackets: each
 * dot-separated number is one byte (modulo 256), brackets are ignored, and
 * the bytes make as many whole IPv4 addresses as they fill ("1.2.3.4.5.6.7.8"
 * is two). Null when s has any other character (a name for DNS).
 */
export function ip4Literals(s: string): IpBytes[] | null {
  if (!/^[0-9.[\]]*$/.test(s)) return null;
  const bytes: number[] = [];
  let code = 0;
  for (const ch of s + ".") {
    if (ch === "[" || ch === "]") continue;
    if (ch === ".") {
      bytes.push(code);
      code = 0;
      continue;
    }
    code = (code * 10 + ch.charCodeAt(0) - 48) & 255;
  }
  const out: IpBytes[] = [];
  for (let i = 0; i + 4 <= bytes.length; i += 4) out.push(Uint8Array.from(bytes.slice(i, i + 4)));
  return out;
}

/** "a.b.c.d". */
export function formatIp4(b: IpBytes): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/**
 * IPv6 text (RFC 4291): eight groups of 1 to 4 hex digits, one "::" standing
 * for one or more zero groups, optionally ending in a dotted IPv4 address
 * ("::ffff:1.2.3.4", its parts read in `syntax`, as parseIp4). No brackets,
 * no zone. Returns 16 bytes or null.
 */
export function parseIp6(s: string, syntax: Ip4Syntax = "djb"): IpBytes | null {
  if (s.length < 2 || s.length > 45) return null;
  const groups: number[] = [];
  let gap = -1; // index in groups where "::" stands
  let i = 0;
  if (s.startsWith("::")) {
    gap = 0;
    i = 2;
    if (i === s.length) return new Uint8Array(16);
  } else if (s[0] === ":") return null;
  while (i < s.length) {
    // A dotted IPv4 tail?
    let j = i;
    while (j < s.length && s[j] !== ":" && s[j] !== ".") j++;
    if (s[j] === ".") {
      const v4 = parseIp4(s.slice(i), syntax);
      if (!v4 || groups.length > 6) return null;
      groups.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      i = s.length;
      break;
    }
    const len = j - i;
    if (len < 1 || len > 4) return null;
    let g = 0;
    for (let k = i; k < j; k++) {
      const v = hexValue(s.charCodeAt(k));
      if (v < 0) return null;
      g = (g << 4) | v;
    }
    groups.push(g);
    if (groups.length > 8) return null;
    i = j;
    if (i === s.length) break;
    // s[i] is ":"
    if (s[i + 1] === ":") {
      if (gap >= 0) return null;
      gap = groups.length;
      i += 2;
    } else {
      i += 1;
      if (i === s.length) return null; // trailing single colon
    }
  }
  const out = new Uint8Array(16);
  if (gap < 0) {
    if (groups.length !== 8) return null;
    groups.forEach((g, k) => {
      out[2 * k] = g >> 8;
      out[2 * k + 1] = g & 255;
    });
    return out;
  }
  if (groups.length > 7) return null;
  const tail = groups.length - gap;
  for (let k = 0; k < gap; k++) {
    out[2 * k] = groups[k] >> 8;
    out[2 * k + 1] = groups[k] & 255;
  }
  for (let k = 0; k < tail; k++) {
    const at = 8 - tail + k;
    out[2 * at] = groups[gap + k] >> 8;
    out[2 * at + 1] = groups[gap + k] & 255;
  }
  return out;
}

/**
 * IPv6 as a user or a resolver file may write it: parseIp6 after dropping a
 * pair of brackets ("[::1]") and a zone ("fe80::1%eth0"), which the bytes
 * cannot carry. Returns 16 bytes or null.
 */
export function parseIp6Loose(s: string): IpBytes | null {
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  const pct = s.indexOf("%");
  return parseIp6(pct < 0 ? s : s.slice(0, pct));
}

/** True for dotted-quad IPv4 text (parseIp4). */
export function isIPv4(s: string): boolean {
  return parseIp4(s) !== null;
}

/** True for IPv6 text, brackets and a zone allowed (parseIp6Loose). */
export function isIPv6(s: string): boolean {
  return parseIp6Loose(s) !== null;
}

/** True for ::ffff:a.b.c.d. */
export function isV4Mapped(b: IpBytes): boolean {
  if (b.length !== 16) return false;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 255 && b[11] === 255;
}

/** The IPv4 address inside an IPv4-mapped IPv6 address (4 bytes). */
export function unmapV4(b: IpBytes): IpBytes {
  return b.slice(12, 16);
}

/** ::ffff:a.b.c.d for an IPv4 address. */
export function mapV4(b: IpBytes): IpBytes {
  const out = new Uint8Array(16);
  out[10] = 255;
  out[11] = 255;
  out.set(b.subarray(0, 4), 12);
  return out;
}

/**
 * Canonical IPv6 text (RFC 5952): lower-case hex without leading zeros, the
 * longest run of two or more zero groups (the first of equal runs) as "::",
 * and IPv4-mapped addresses as ::ffff:a.b.c.d.
 */
export function formatIp6(b: IpBytes): string {
  if (isV4Mapped(b)) return `::ffff:${formatIp4(b.subarray(12))}`;
  const g: number[] = [];
  for (let k = 0; k < 8; k++) g.push((b[2 * k] << 8) | b[2 * k + 1]);
  let bestAt = -1;
  let bestLen = 1;
  for (let k = 0; k < 8;) {
    if (g[k] !== 0) {
      k++;
      continue;
    }
    let e = k;
    while (e < 8 && g[e] === 0) e++;
    if (e - k > bestLen) {
      bestAt = k;
      bestLen = e - k;
    }
    k = e;
  }
  const hex = (from: number, to: number) => g.slice(from, to).map((x) => x.toString(16)).join(":");
  if (bestAt < 0) return hex(0, 8);
  return `${hex(0, bestAt)}::${hex(bestAt + bestLen, 8)}`;
}

/** IPv4 or IPv6 text to bytes (dotted quads in `syntax`, as parseIp4); null when it is neither. */
export function parseIp(s: string, syntax: Ip4Syntax = "djb"): Ip | null {
  const v4 = parseIp4(s, syntax);
  if (v4) return { family: 4, bytes: v4 };
  const v6 = parseIp6(s, syntax);
  if (v6) return { family: 6, bytes: v6 };
  return null;
}

/**
 * IPv4 or IPv6 text as 16 bytes, IPv4 as IPv4-mapped (one form to compare
 * addresses of either family in); null when it is neither.
 */
export function parseIp16(s: string, syntax: Ip4Syntax = "djb"): IpBytes | null {
  const ip = parseIp(s, syntax);
  if (!ip) return null;
  return ip.family === 4 ? mapV4(ip.bytes) : ip.bytes;
}

/** An IPv4-mapped IPv6 address as the IPv4 address; anything else unchanged. */
export function unmapped(ip: Ip): Ip {
  return ip.family === 6 && isV4Mapped(ip.bytes) ? { family: 4, bytes: unmapV4(ip.bytes) } : ip;
}

/** Canonical text: dotted quad for IPv4, RFC 5952 for IPv6. */
export function formatIp(ip: Ip): string {
  return ip.family === 4 ? formatIp4(ip.bytes) : formatIp6(ip.bytes);
}

/**
 * 4 or 16 bytes as tcpserver shows a client: IPv4-mapped IPv6 as the plain
 * dotted quad (a dual-stack socket's IPv4 client), else as formatIp.
 */
export function formatUnmapped(b: IpBytes): string {
  return formatIp(unmapped({ family: b.length === 4 ? 4 : 6, bytes: b }));
}

/**
 * The canonical form of an address as rules and limits see it: IPv4-mapped
 * IPv6 becomes plain IPv4 ("::ffff:1.2.3.4" -> "1.2.3.4"), IPv6 is
 * compressed lower-case. Null when s is not an address.
 */
export function canonicalIp(s: string): string | null {
  const ip = parseIp(s);
  return ip ? formatIp(unmapped(ip)) : null;
}

/** A copy of b with every bit after the first `bits` cleared. */
export function maskBits(b: IpBytes, bits: number): IpBytes {
  const out = b.slice();
  for (let i = 0; i < out.length; i++) {
    const keep = bits - i * 8;
    if (keep >= 8) continue;
    out[i] = keep <= 0 ? 0 : out[i] & (0xff << (8 - keep));
  }
  return out;
}

/** True when some bit after the first `bits` is set (the address is not a network of that length). */
export function hasHostBits(b: IpBytes, bits: number): boolean {
  const m = maskBits(b, bits);
  for (let i = 0; i < b.length; i++) if (m[i] !== b[i]) return true;
  return false;
}

/** "network/bits" in canonical text, e.g. prefixKey(1.2.3.4, 24) = "1.2.3.0/24". */
export function prefixKey(ip: Ip, bits: number): string {
  return `${formatIp({ family: ip.family, bytes: maskBits(ip.bytes, bits) })}/${bits}`;
}

/**
 * The network a client counts in for per-network limits: its IPv4 /24, or
 * for IPv6 its /64 ("1.2.3.0/24", "2001:db8:1:2::/64"). IPv4-mapped clients
 * count as IPv4. Text that is not an address is returned unchanged.
 */
export function networkKey(s: string, v4bits = 24, v6bits = 64): string {
  const ip = parseIp(s);
  if (!ip) return s;
  const u = unmapped(ip);
  return prefixKey(u, u.family === 4 ? v4bits : v6bits);
}
