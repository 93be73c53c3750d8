/**
 * DNS names as djbdns reads and writes them: between dotted text and wire
 * bytes (dns_domain_fromdot, dns_domain_todot_cat's escaping), compared as
 * dns_domain_equal does, read from a message bounded whatever the bytes
 * (255-byte names, 1000 pointer steps); and the names addresses are looked
 * up under (RBL labels, PTR names). Pure functions: no I/O.
 */
import { utf8ByteString } from "../../core/bytes.ts";
import { formatIp4, isV4Mapped, parseIp4, parseIp6Loose, unmapV4 } from "../ip.ts";
import { DnsProtocolError } from "./errors.ts";

// ---------------------------------------------------------------- addresses as names

/**
 * The label sequence an RBL uses for ip (without a base): IPv4 a.b.c.d gives
 * "d.c.b.a"; IPv6 gives its 32 nibbles in reverse order, dot-separated; an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) is treated as its IPv4 address.
 * Throws TypeError when ip is not an address.
 */
export function reverseName(ip: string): string {
  // IPv4 text is reversed at its dots as written, as DJB's rblsmtpd reverses $TCPREMOTEIP.
  if (parseIp4(ip)) return ip.split(".").reverse().join(".");
  const bytes = parseIp6Loose(ip);
  if (!bytes) throw new TypeError(`not an IP address: ${ip}`);
  if (isV4Mapped(bytes)) return reverseName(formatIp4(unmapV4(bytes)));
  const nibbles: string[] = [];
  for (let i = 15; i >= 0; i--) {
    nibbles.push((bytes[i] & 0xf).toString(16), (bytes[i] >> 4).toString(16));
  }
  return nibbles.join(".");
}

/** The PTR query name of ip: d.c.b.a.in-addr.arpa or the nibbles under ip6.arpa. */
export function ptrName(ip: string): string {
  if (parseIp4(ip)) return `${reverseName(ip)}.in-addr.arpa`;
  const bytes = parseIp6Loose(ip);
  if (!bytes) throw new TypeError(`not an IP address: ${ip}`);
  if (isV4Mapped(bytes)) return `${reverseName(formatIp4(unmapV4(bytes)))}.in-addr.arpa`;
  return `${reverseName(ip)}.ip6.arpa`;
}

// ---------------------------------------------------------------- names

/** The longest name on the wire, its final zero byte included (RFC 1035, djbdns). */
const MAX_NAME = 255;

/**
 * A dotted name as djbdns's dns_domain_fromdot reads it: `\ooo` (one to
 * three octal digits) and `\c` give a byte, empty labels vanish, a label
 * over 63 bytes or a name over 255 bytes throws DnsProtocolError. `name` is
 * text (an argument, or toDot's ASCII): non-ASCII characters go as their
 * UTF-8 bytes, as a C tool given the argument would send them; any byte
 * can be written as `\ooo`. Returns the wire form (length-prefixed labels,
 * then 0).
 */
export function fromDot(name: string): Uint8Array {
  const src = utf8ByteString(name);
  const out: number[] = [];
  let label: number[] = [];
  const endLabel = () => {
    if (label.length === 0) return;
    if (out.length + label.length + 1 > MAX_NAME - 1) {
      throw new DnsProtocolError("name over 255 bytes");
    }
    out.push(label.length, ...label);
    label = [];
  };
  for (let i = 0; i < src.length; i++) {
    let ch = src.charCodeAt(i) & 0xff;
    if (ch === 0x2e) {
      endLabel();
      continue;
    }
    if (ch === 0x5c) {
      if (++i >= src.length) break; // a lone trailing backslash is dropped, as C does
      ch = src.charCodeAt(i) & 0xff;
      if (ch >= 0x30 && ch <= 0x37) {
        ch -= 0x30;
        for (let k = 0; k < 2 && i + 1 < src.length; k++) {
          const d = src.charCodeAt(i + 1);
          if (d < 0x30 || d > 0x37) break;
          ch = ((ch << 3) + d - 0x30) & 0xff;
          i++;
        }
      }
    }
    if (label.length >= 63) throw new DnsProtocolError("label over 63 bytes");
    label.push(ch);
  }
  endLabel();
  out.push(0);
  return new Uint8Array(out);
}

/** fromDot under its older name: the wire form of a dotted name. */
export const encodeName: (name: string) => Uint8Array = fromDot;

/**
 * A wire-form name as djbdns's dns_domain_todot_cat writes it: lowercased;
 * a-z, 0-9, '-' and '_' kept; every other byte (a dot inside a label, NUL,
 * '=', a newline, 8-bit bytes, ...) as a backslash and three octal digits;
 * labels joined by dots; the root as ".". The result is printable ASCII, so
 * it is safe in an environment, a log line and a rules key.
 */
export function toDot(wire: Uint8Array): string {
  if (wire.length === 0 || wire[0] === 0) return ".";
  let s = "";
  for (let i = 0; i < wire.length;) {
    const n = wire[i++];
    if (n === 0) break;
    if (s !== "") s += ".";
    for (const end = Math.min(i + n, wire.length); i < end; i++) {
      let c = wire[i];
      if (c >= 0x41 && c <= 0x5a) c += 32;
      if ((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f) {
        s += String.fromCharCode(c);
      } else {
        s += "\\" + (c >> 6) + ((c >> 3) & 7) + (c & 7);
      }
    }
  }
  return s;
}

/** Whether two wire-form names are equal, ASCII letters compared case-insensitively (dns_domain_equal). */
export function nameEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    let x = a[i], y = b[i];
    if (x >= 0x41 && x <= 0x5a) x += 32;
    if (y >= 0x41 && y <= 0x5a) y += 32;
    if (x !== y) return false;
  }
  return true;
}

/**
 * Reads a possibly compressed name at off (as djbdns's dns_packet_getname):
 * returns its wire form and the offset after it. Throws DnsProtocolError for
 * a name running off the message, a label type other than length or
 * pointer, a name over 255 bytes, or more than 1000 steps (pointer loops).
 */
export function readName(msg: Uint8Array, off: number): [Uint8Array, number] {
  const name: number[] = [];
  let end = -1;
  let steps = 0;
  for (;;) {
    if (off >= msg.length) throw new DnsProtocolError("truncated name");
    if (++steps >= 1000) throw new DnsProtocolError("name pointer loop");
    const len = msg[off];
    if (len >= 0xc0) {
      if (off + 1 >= msg.length) throw new DnsProtocolError("truncated pointer");
      if (end < 0) end = off + 2;
      off = ((len & 0x3f) << 8) | msg[off + 1];
      continue;
    }
    if (len >= 0x40) throw new DnsProtocolError("bad label type");
    if (name.length + 1 + len > MAX_NAME) throw new DnsProtocolError("name over 255 bytes");
    if (off + 1 + len > msg.length) throw new DnsProtocolError("truncated label");
    name.push(len);
    if (len === 0) {
      off += 1;
      break;
    }
    for (let i = 1; i <= len; i++) name.push(msg[off + i]);
    off += 1 + len;
  }
  return [new Uint8Array(name), end >= 0 ? end : off];
}

/**
 * The offset after the name at off without reading it (dns_packet_skipname):
 * a pointer ends it. Throws DnsProtocolError when it runs off the message.
 */
export function skipName(msg: Uint8Array, off: number): number {
  for (;;) {
    if (off >= msg.length) throw new DnsProtocolError("truncated name");
    const len = msg[off++];
    if (len >= 0xc0) return off + 1;
    if (len >= 0x40) throw new DnsProtocolError("bad label type");
    if (len === 0) return off;
    off += len;
  }
}

/** Reads the name at off as dotted text (toDot), and the offset after it. */
export function decodeName(msg: Uint8Array, off: number): [string, number] {
  const [wire, next] = readName(msg, off);
  return [toDot(wire), next];
}
