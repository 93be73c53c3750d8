/**
 * DNS messages, as djbdns reads and writes them: query packets, response
 * parsing that is bounded whatever the bytes (names through name.ts), the
 * check that a reply answers our question (dns_transmit's), the records
 * owned by the question's name or its CNAME chain, and record values as
 * text. Pure functions: no I/O.
 */
import { byteString } from "../../core/bytes.ts";
import { formatIp4, formatIp6 } from "../ip.ts";
import { DnsProtocolError } from "./errors.ts";
import { fromDot, nameEqual, readName, skipName, toDot } from "./name.ts";

/** Record types this client asks for. */
export const TYPE = { A: 1, PTR: 12, TXT: 16, AAAA: 28, CNAME: 5 } as const;

/** The rcode of "no such name" (a permanent answer, as NOERROR is). */
export const RCODE_NXDOMAIN = 3;

/** The class of every record this client asks for and uses. */
export const CLASS_IN = 1;

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
