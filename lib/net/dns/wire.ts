/**
 * The DNS wire format, as djbdns reads and writes it: names between dotted
 * text and wire bytes (dns_domain_fromdot, dns_domain_todot_cat's escaping,
 * dns_domain_equal), query packets, response parsing that is bounded whatever
 * the bytes (255-byte names, 1000 pointer steps), the check that a reply
 * answers our question (dns_transmit's), the records owned by the question's
 * name or its CNAME chain, and record values as text. Pure functions: no I/O.
 */
import { byteString, utf8ByteString } from "../../core/bytes.ts";
import { formatIp4, formatIp6, isV4Mapped, parseIp4, parseIp6Loose, unmapV4 } from "../ip.ts";
import { DnsProtocolError } from "./errors.ts";

/** Record types this client asks for. */
export const TYPE = { A: 1, PTR: 12, TXT: 16, AAAA: 28, CNAME: 5 } as const;

/** The rcode of "no such name" (a permanent answer, as NOERROR is). */
export const RCODE_NXDOMAIN = 3;

/** The class of every record this client asks for and uses. */
export const CLASS_IN = 1;

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
function skipName(msg: Uint8Array, off: number): number {
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

// ---------------------------------------------------------------- messages

/** A query packet for (name, type, class IN) with id and recursion desired. */
export function encodeQuery(id: number, name: string | Uint8Array, type: number): Uint8Array {
  const qname = typeof name === "string" ? fromDot(name) : name;
  const out = new Uint8Array(12 + qname.length + 4);
  const v = new DataView(out.buffer);
  v.setUint16(0, id);
  v.setUint16(2, 0x0100); // RD
  v.setUint16(4, 1);
  out.set(qname, 12);
  v.setUint16(12 + qname.length, type);
  v.setUint16(14 + qname.length, CLASS_IN);
  return out;
}

/** One resource record of a response's answer section. */
export interface ResourceRecord {
  /** The owner name (wire form), or null when it cannot be read (never matches a question). */
  owner: Uint8Array | null;
  /** The record type (TYPE). */
  type: number;
  /** The record class (only CLASS_IN records are used). */
  class: number;
  /** Seconds the record may be cached. */
  ttl: number;
  /** The record data (a view into the message). */
  data: Uint8Array;
  /** Where the data starts in the message (names in it may point back). */
  offset: number;
}

/** A parsed response: its id, flags, rcode, question and answer section. */
export interface Response {
  /** The message id (ours, when answersQuery accepted it). */
  id: number;
  /** The QR bit: this is a response. */
  isResponse: boolean;
  /** The TC bit: the answer did not fit (ask again over TCP). */
  truncated: boolean;
  /** The response code (0 NOERROR, 3 NXDOMAIN, else a failure). */
  rcode: number;
  /** The first question (wire-form name), null when there is none. */
  question: { name: Uint8Array; type: number; class: number } | null;
  /** How many questions the header announces. */
  questionCount: number;
  /** The answer section's records, in order. */
  answers: ResourceRecord[];
  /** Minimum of the SOA TTL/minimum in the authority section (negative caching). */
  negativeTtl: number | null;
  /** The whole message (record data refers into it). */
  message: Uint8Array;
}

/**
 * Parses a DNS response. Throws DnsProtocolError (and nothing else) when it
 * is malformed; names are bounded (255 bytes, 1000 steps), so no message
 * makes it loop or allocate more than a bounded multiple of its size.
 */
export function decodeResponse(msg: Uint8Array): Response {
  if (msg.length < 12) throw new DnsProtocolError("short DNS packet");
  const v = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  const id = v.getUint16(0);
  const flags = v.getUint16(2);
  const qd = v.getUint16(4), an = v.getUint16(6), ns = v.getUint16(8);
  let off = 12;
  let question: Response["question"] = null;
  for (let i = 0; i < qd; i++) {
    if (i === 0) {
      const [name, next] = readName(msg, off);
      if (next + 4 > msg.length) throw new DnsProtocolError("truncated question");
      question = { name, type: v.getUint16(next), class: v.getUint16(next + 2) };
      off = next + 4;
    } else {
      off = skipName(msg, off) + 4;
      if (off > msg.length) throw new DnsProtocolError("truncated question");
    }
  }
  const answers: ResourceRecord[] = [];
  let negativeTtl: number | null = null;
  for (let i = 0; i < an + ns; i++) {
    const at = off;
    const next = skipName(msg, off);
    if (next + 10 > msg.length) throw new DnsProtocolError("truncated record");
    const type = v.getUint16(next);
    const klass = v.getUint16(next + 2);
    const ttl = v.getUint32(next + 4);
    const rdlen = v.getUint16(next + 8);
    const start = next + 10;
    if (start + rdlen > msg.length) throw new DnsProtocolError("truncated rdata");
    if (i < an) {
      let owner: Uint8Array | null = null;
      try {
        owner = readName(msg, at)[0];
      } catch (e) {
        if (!(e instanceof DnsProtocolError)) throw e;
        // An owner name that cannot be read matches no question: the record is ignored.
      }
      answers.push({
        owner,
        type,
        class: klass,
        ttl,
        data: msg.subarray(start, start + rdlen),
        offset: start,
      });
    } else if (type === 6) {
      // SOA: negative TTL is min(record TTL, SOA minimum)
      try {
        const [, a] = readName(msg, start);
        const [, b] = readName(msg, a);
        if (b + 20 <= start + rdlen) {
          const minimum = v.getUint32(b + 16);
          negativeTtl = Math.min(ttl, minimum);
        }
      } catch (e) {
        if (!(e instanceof DnsProtocolError)) throw e;
        // a bad SOA only costs the negative TTL
      }
    }
    off = start + rdlen;
  }
  return {
    id,
    isResponse: (flags & 0x8000) !== 0,
    truncated: (flags & 0x0200) !== 0,
    rcode: flags & 0x0f,
    question,
    questionCount: qd,
    answers,
    negativeTtl,
    message: msg,
  };
}

/**
 * Whether raw is an answer to query (as djbdns's dns_transmit does, plus the
 * QR bit): the same id, exactly one question, and that question equal to
 * ours (name case-insensitively, type, class IN). Anything else, forged or
 * stray, is not an answer and is ignored.
 */
export function answersQuery(raw: Uint8Array, query: Uint8Array): boolean {
  if (raw.length < 12 || raw[0] !== query[0] || raw[1] !== query[1]) return false;
  if ((raw[2] & 0x80) === 0 || raw[4] !== 0 || raw[5] !== 1) return false;
  let name: Uint8Array, next: number;
  try {
    [name, next] = readName(raw, 12);
  } catch (e) {
    if (!(e instanceof DnsProtocolError)) throw e;
    // A question we cannot read is no answer to ours: ignored, as a stray datagram is.
    return false;
  }
  const qname = query.subarray(12, query.length - 4);
  if (!nameEqual(name, qname) || next + 4 > raw.length) return false;
  for (let i = 0; i < 4; i++) if (raw[next + i] !== query[query.length - 4 + i]) return false;
  return true;
}

/**
 * The records of response that answer (qname, type): class IN, owned by the
 * question's name or by a name the answer's CNAME chain leads to from it. A
 * record owned by any other name (an attempt to plant data for it) is
 * ignored.
 */
export function relevantRecords(resp: Response, qname: Uint8Array, type: number): ResourceRecord[] {
  const owners: Uint8Array[] = [qname];
  const owned = (r: ResourceRecord) =>
    r.owner !== null && r.class === CLASS_IN && owners.some((o) => nameEqual(o, r.owner!));
  if (type !== TYPE.CNAME) {
    for (let grew = true; grew && owners.length < 16;) {
      grew = false;
      for (const r of resp.answers) {
        if (r.type !== TYPE.CNAME || !owned(r)) continue;
        let target: Uint8Array;
        try {
          target = readName(resp.message, r.offset)[0];
        } catch (e) {
          if (e instanceof DnsProtocolError) continue;
          throw e;
        }
        if (owners.some((o) => nameEqual(o, target))) continue;
        owners.push(target);
        grew = true;
      }
    }
  }
  return resp.answers.filter((r) => r.type === type && owned(r));
}

/**
 * The value of one record: A/AAAA address text (null for a record of the
 * wrong size, which C skips too), a PTR/CNAME target as toDot text (throws
 * DnsProtocolError when it cannot be read, as C's dns_name fails), TXT as the
 * byte string of its strings concatenated.
 */
export function recordValue(msg: Uint8Array, r: ResourceRecord): string | null {
  const d = r.data;
  switch (r.type) {
    case TYPE.A:
      return d.length === 4 ? formatIp4(d) : null;
    case TYPE.AAAA:
      return d.length === 16 ? formatIp6(d) : null;
    case TYPE.PTR:
    case TYPE.CNAME:
      return toDot(readName(msg, r.offset)[0]);
    case TYPE.TXT: {
      const parts: string[] = [];
      for (let i = 0; i < d.length;) {
        const n = d[i];
        parts.push(byteString(d.subarray(i + 1, i + 1 + n)));
        i += 1 + n;
      }
      return parts.join("");
    }
  }
  return null;
}
