/**
 * A small asynchronous DNS stub client: queries a recursive resolver over UDP
 * (TCP when the answer is truncated) and reports TTLs, so callers can cache,
 * and tells a permanent "no such record" (NXDOMAIN, no data: an empty result)
 * from a temporary failure (SERVFAIL, REFUSED, timeout, network error:
 * DnsTemporaryError).
 *
 * The resolver is `$DNSCACHEIP` (djbdns's convention: one or more IP
 * addresses, port 53), else the `nameserver` lines of /etc/resolv.conf (read
 * once), else 127.0.0.1.
 *
 * Every answer is written by whoever can send a datagram, so it is checked
 * as djbdns's dns_transmit checks it, and then some: a reply counts only
 * from the server's address and port (a connected socket on a fresh random
 * port), with the query's id (from the CSPRNG), exactly one question equal
 * to ours (name compared case-insensitively, type, class IN) and the QR
 * bit; anything else is ignored and the wait for the real reply goes on.
 * Over TCP, a reply to another question fails that server. Of an accepted
 * reply, only class-IN records owned by the question's name (or a name its
 * CNAME chain leads to) are used. Names are handled as wire bytes and
 * returned as djbdns's dns_domain_todot_cat prints them (toDot): lowercase
 * ASCII with every byte outside a-z 0-9 - _ as `\ooo`; a name over 255
 * bytes, a compression loop or a malformed message is DnsProtocolError.
 * TXT data is returned as byte strings, unchanged.
 */
import dgram from "node:dgram";
import process from "node:process";
import { byteString, utf8ByteString } from "../core/bytes.ts";
import { formatIp4, formatIp6, isV4Mapped, parseIp4, parseIp6Loose, unmapV4 } from "./ip.ts";

/** A lookup failed for now (SERVFAIL, REFUSED, timeout, network error): try again later. */
export class DnsTemporaryError extends Error {
  /**
   * @param message what happened, for logs
   * @param reason the failure as DJB's tools word it after "temporarily
   *   unable to figure out IP address for HOST: " ("timed out", "temporary
   *   failure", "protocol error")
   */
  constructor(message: string, readonly reason = "temporary failure") {
    super(message);
    this.name = "DnsTemporaryError";
  }
}

/** A resolver to ask: an IPv4 or IPv6 address and a port. */
export interface DnsServer {
  address: string;
  port: number;
}

/** Options every lookup takes. */
export interface LookupOptions {
  /** Give up (DnsTemporaryError) after this many milliseconds; default 10000. */
  timeoutMs?: number;
  /** Abort the lookup (rejects with DnsTemporaryError). */
  signal?: AbortSignal;
  /** Resolvers to ask instead of $DNSCACHEIP / resolv.conf. */
  servers?: DnsServer[];
  /** A cache to answer from and fill (answers kept for their TTL). */
  cache?: DnsCache;
}

/** Record types this client asks for. */
export const TYPE = { A: 1, PTR: 12, TXT: 16, AAAA: 28, CNAME: 5 } as const;

const RCODE_NXDOMAIN = 3;

/** The records of one type an answer holds, and the smallest TTL among them. */
export interface Answer {
  /** A/AAAA: address text; PTR/CNAME: the name as toDot prints it; TXT: the record's strings joined, a byte string. */
  values: string[];
  /** Seconds the answer may be cached (for an empty answer: a short negative TTL). */
  ttl: number;
}

// ---------------------------------------------------------------- servers

let defaultServersCache: { key: string; servers: DnsServer[] } | undefined;
let resolvConfServers: DnsServer[] | undefined;

function parseIpList(text: string): string[] {
  return text.split(/[\s,]+/).filter((s) => s !== "" && (isIPv4(s) || isIPv6(s)));
}

function readResolvConf(): DnsServer[] {
  if (resolvConfServers) return resolvConfServers;
  const out: DnsServer[] = [];
  try {
    const text = Deno.readTextFileSync("/etc/resolv.conf");
    for (const line of text.split("\n")) {
      const m = /^\s*nameserver\s+(\S+)/.exec(line);
      if (m) {
        const ip = m[1].replace(/%.*$/, "");
        if (isIPv4(ip) || isIPv6(ip)) out.push({ address: ip, port: 53 });
      }
    }
  } catch { /* no resolv.conf: fall back to 127.0.0.1 */ }
  resolvConfServers = out;
  return out;
}

/**
 * The resolvers a lookup asks by default: $DNSCACHEIP (read at each call, so a
 * stage's environment can change it), else /etc/resolv.conf, else 127.0.0.1.
 */
export function defaultServers(env?: Map<string, string>): DnsServer[] {
  const fromEnv = env ? env.get("DNSCACHEIP") : process.env.DNSCACHEIP;
  const key = fromEnv ?? "";
  if (defaultServersCache && defaultServersCache.key === key) return defaultServersCache.servers;
  let servers: DnsServer[] = [];
  if (fromEnv !== undefined) {
    servers = parseIpList(fromEnv).map((address) => ({ address, port: 53 }));
  }
  if (servers.length === 0) servers = readResolvConf();
  if (servers.length === 0) servers = [{ address: "127.0.0.1", port: 53 }];
  defaultServersCache = { key, servers };
  return servers;
}

// ---------------------------------------------------------------- addresses

/** True for dotted-quad IPv4 text (lib/net/ip.ts parseIp4). */
export function isIPv4(s: string): boolean {
  return parseIp4(s) !== null;
}

/** True for IPv6 text (an embedded IPv4 tail, brackets and a zone allowed: parseIp6Loose). */
export function isIPv6(s: string): boolean {
  return parseIp6Loose(s) !== null;
}

/** The 16 bytes of an IPv6 address (brackets and a zone allowed), or null when s is not one. */
export function expandIPv6(s: string): Uint8Array | null {
  return parseIp6Loose(s);
}

/**
 * The label sequence an RBL uses for ip (without a base): IPv4 a.b.c.d gives
 * "d.c.b.a"; IPv6 gives its 32 nibbles in reverse order, dot-separated; an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) is treated as its IPv4 address.
 * Throws TypeError when ip is not an address.
 */
export function reverseName(ip: string): string {
  // IPv4 text is reversed at its dots as written, as DJB's rblsmtpd reverses $TCPREMOTEIP.
  if (isIPv4(ip)) return ip.split(".").reverse().join(".");
  const bytes = expandIPv6(ip);
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
  if (isIPv4(ip)) return `${reverseName(ip)}.in-addr.arpa`;
  const bytes = expandIPv6(ip);
  if (!bytes) throw new TypeError(`not an IP address: ${ip}`);
  if (isV4Mapped(bytes)) return `${reverseName(formatIp4(unmapV4(bytes)))}.in-addr.arpa`;
  return `${reverseName(ip)}.ip6.arpa`;
}

// ---------------------------------------------------------------- names

/**
 * A DNS message or name DNS cannot carry or that breaks the wire format: a
 * label over 63 bytes, a name over 255 bytes, a truncated or looping
 * message. A temporary failure whose reason is djbdns's "protocol error".
 */
export class DnsProtocolError extends DnsTemporaryError {
  constructor(readonly detail: string) {
    super("protocol error", "protocol error");
    this.name = "DnsProtocolError";
  }
}

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

const CLASS_IN = 1;

/** One resource record of a response's answer section. */
export interface ResourceRecord {
  /** The owner name (wire form), or null when it cannot be read (never matches a question). */
  owner: Uint8Array | null;
  type: number;
  class: number;
  ttl: number;
  /** The record data (a view into the message). */
  data: Uint8Array;
  /** Where the data starts in the message (names in it may point back). */
  offset: number;
}

/** A parsed response: its id, flags, rcode, question and answer section. */
export interface Response {
  id: number;
  /** The QR bit: this is a response. */
  isResponse: boolean;
  truncated: boolean;
  rcode: number;
  /** The first question (wire-form name), null when there is none. */
  question: { name: Uint8Array; type: number; class: number } | null;
  /** How many questions the header announces. */
  questionCount: number;
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
  } catch {
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

// ---------------------------------------------------------------- transport

const RETRANSMIT_MS = [1000, 3000, 11000, 45000];

function abortError(): DnsTemporaryError {
  return new DnsTemporaryError("DNS lookup aborted", "timed out");
}

/** A 16-bit query id from the system's CSPRNG (a guessable id invites forged answers). */
function randomId(): number {
  return crypto.getRandomValues(new Uint16Array(1))[0];
}

/** Whether text address a and b are the same address. */
function sameAddress(a: string, b: string): boolean {
  if (a === b) return true;
  const x = isIPv6(a) ? expandIPv6(a) : null, y = isIPv6(b) ? expandIPv6(b) : null;
  if (!x || !y) return false;
  return x.every((v, i) => v === y[i]);
}

/**
 * Sends query to one server over UDP from a fresh socket (a random port)
 * connected to the server, so the kernel drops datagrams from any other
 * address; resolves the first reply that answers the query (answersQuery)
 * or null on timeout. Datagrams from elsewhere or answering something else
 * are ignored and the wait goes on.
 */
function udpExchange(
  server: DnsServer,
  query: Uint8Array,
  waitMs: number,
  signal?: AbortSignal,
): Promise<Uint8Array | null> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket(isIPv6(server.address) ? "udp6" : "udp4");
    let done = false;
    const finish = (err: Error | null, value: Uint8Array | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      try {
        sock.close();
      } catch { /* already closed */ }
      if (err) reject(err);
      else resolve(value);
    };
    const netError = (e: Error) =>
      finish(new DnsTemporaryError(`DNS network error: ${e.message}`, "timed out"), null);
    const onAbort = () => finish(abortError(), null);
    const timer = setTimeout(() => finish(null, null), waitMs);
    signal?.addEventListener("abort", onAbort, { once: true });
    sock.on("error", netError);
    sock.on("message", (msg: Uint8Array, rinfo: { address: string; port: number }) => {
      // connect() already filters; checked again in case a runtime does not.
      if (rinfo.port !== server.port || !sameAddress(rinfo.address, server.address)) return;
      const raw = new Uint8Array(msg);
      if (!answersQuery(raw, query)) return;
      finish(null, raw);
    });
    try {
      sock.connect(server.port, server.address, () => {
        sock.send(query, (e) => {
          if (e) netError(e);
        });
      });
    } catch (e) {
      netError(e as Error);
    }
  });
}

/** Sends query to one server over TCP (for truncated UDP answers); the reply must answer it. */
async function tcpExchange(
  server: DnsServer,
  query: Uint8Array,
  waitMs: number,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  let conn: Deno.TcpConn | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const onAbort = () => conn?.close();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const work = (async () => {
      conn = await Deno.connect({ hostname: server.address, port: server.port });
      const framed = new Uint8Array(2 + query.length);
      framed[0] = query.length >> 8;
      framed[1] = query.length & 0xff;
      framed.set(query, 2);
      let w = 0;
      while (w < framed.length) w += await conn.write(framed.subarray(w));
      const readExact = async (n: number) => {
        const buf = new Uint8Array(n);
        let got = 0;
        while (got < n) {
          const r = await conn!.read(buf.subarray(got));
          if (r === null) throw new Error("connection closed");
          got += r;
        }
        return buf;
      };
      const len = await readExact(2);
      const raw = await readExact((len[0] << 8) | len[1]);
      // One exchange per connection: a reply to something else is this server's failure.
      if (!answersQuery(raw, query)) throw new DnsProtocolError("TCP reply to another query");
      return raw;
    })();
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new DnsTemporaryError("DNS lookup timed out", "timed out")),
        waitMs,
      );
    });
    return await Promise.race([work, timeout]);
  } catch (e) {
    if (e instanceof DnsTemporaryError) throw e;
    if (signal?.aborted) throw abortError();
    throw new DnsTemporaryError(`DNS network error: ${(e as Error).message}`, "timed out");
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    try {
      conn?.close();
    } catch { /* closed */ }
  }
}

/**
 * Asks for (name, type): UDP to each server in turn, retransmitting with
 * growing waits until timeoutMs; TCP when the answer is truncated. `name` is
 * dotted text as fromDot reads it (escapes allowed) or a wire-form name.
 * Only replies from the server asked, with the query's random id and its
 * question, count (answersQuery). Resolves the parsed response with rcode
 * NOERROR or NXDOMAIN; throws DnsTemporaryError for anything else
 * (DnsProtocolError for a name DNS cannot carry or a malformed answer).
 */
export async function query(
  name: string | Uint8Array,
  type: number,
  opts: LookupOptions = {},
): Promise<Response> {
  const qname = typeof name === "string" ? fromDot(name) : name;
  const servers = opts.servers ?? defaultServers();
  const timeoutMs = opts.timeoutMs ?? 10000;
  const deadline = Date.now() + timeoutMs;
  const signal = opts.signal;
  const timedOut = () => new DnsTemporaryError("DNS lookup timed out", "timed out");
  let lastError: DnsTemporaryError | null = null;
  for (const step of RETRANSMIT_MS) {
    let silent = 0;
    for (const server of servers) {
      if (signal?.aborted) throw abortError();
      const left = deadline - Date.now();
      if (left <= 0) throw lastError ?? timedOut();
      const q = encodeQuery(randomId(), qname, type);
      let raw: Uint8Array | null;
      try {
        raw = await udpExchange(server, q, Math.min(step, left), signal);
      } catch (e) {
        if (signal?.aborted) throw abortError();
        lastError = e instanceof DnsTemporaryError ? e : new DnsTemporaryError(String(e));
        continue;
      }
      if (raw === null) {
        silent++;
        continue;
      }
      let resp: Response;
      try {
        resp = decodeResponse(raw);
        if (resp.truncated) {
          resp = decodeResponse(
            await tcpExchange(server, q, Math.max(1, deadline - Date.now()), signal),
          );
        }
      } catch (e) {
        lastError = e instanceof DnsTemporaryError ? e : new DnsProtocolError(String(e));
        continue;
      }
      if (resp.rcode === 0 || resp.rcode === RCODE_NXDOMAIN) return resp;
      lastError = new DnsTemporaryError(
        `DNS server failure (rcode ${resp.rcode})`,
        "temporary failure",
      );
      // SERVFAIL/REFUSED from this server: try the next one
    }
    // Every server failed outright (no timeouts): asking again will not help.
    if (silent === 0 && lastError) throw lastError;
  }
  throw lastError ?? timedOut();
}

// ---------------------------------------------------------------- cache

/** A bounded cache of answers, each kept for its TTL (least recently stored evicted first). */
export class DnsCache {
  #map = new Map<string, { answer: Answer; expires: number }>();
  constructor(readonly maxEntries = 10000, readonly now: () => number = Date.now) {}

  /** The cached answer for key, if not expired. */
  get(key: string): Answer | undefined {
    const e = this.#map.get(key);
    if (!e) return undefined;
    if (e.expires <= this.now()) {
      this.#map.delete(key);
      return undefined;
    }
    return {
      values: e.answer.values,
      ttl: Math.max(0, Math.ceil((e.expires - this.now()) / 1000)),
    };
  }

  /** Stores answer for its TTL (nothing for TTL 0). */
  set(key: string, answer: Answer): void {
    if (answer.ttl <= 0 || this.maxEntries <= 0) return;
    this.#map.delete(key);
    while (this.#map.size >= this.maxEntries) {
      const oldest = this.#map.keys().next().value as string;
      this.#map.delete(oldest);
    }
    this.#map.set(key, { answer, expires: this.now() + answer.ttl * 1000 });
  }

  /** Number of entries held (expired ones included until looked up). */
  get size(): number {
    return this.#map.size;
  }

  /** Forgets everything. */
  clear(): void {
    this.#map.clear();
  }

  /**
   * Lookups under way, by key: concurrent askers of one name (through the
   * same servers) share one query, made with the first asker's options.
   */
  readonly inflight: Map<string, Promise<Answer>> = new Map();
}

const NEGATIVE_TTL_CAP = 300;

/**
 * The records of one type for name: [] for NXDOMAIN or no data. Throws
 * DnsTemporaryError on a temporary failure (DnsProtocolError when name
 * cannot be sent or the answer is malformed). Only answers that passed
 * answersQuery and relevantRecords are used or cached.
 */
export function lookup(name: string, type: number, opts: LookupOptions = {}): Promise<Answer> {
  let qname: Uint8Array;
  try {
    qname = fromDot(name);
  } catch (e) {
    return Promise.reject(e);
  }
  const cache = opts.cache;
  if (!cache) return ask(qname, type, opts);
  const via = opts.servers?.map((v) => `${v.address}#${v.port}`).join(",") ?? "";
  const key = `${type}/${toDot(qname)}/${via}`;
  const hit = cache.get(key);
  if (hit) return Promise.resolve(hit);
  const pending = cache.inflight.get(key);
  if (pending) return pending;
  const p = ask(qname, type, opts).then((answer) => {
    cache.set(key, answer);
    return answer;
  }).finally(() => cache.inflight.delete(key));
  cache.inflight.set(key, p);
  return p;
}

async function ask(qname: Uint8Array, type: number, opts: LookupOptions): Promise<Answer> {
  const resp = await query(qname, type, opts);
  const values: string[] = [];
  let ttl = Infinity;
  for (const r of relevantRecords(resp, qname, type)) {
    const value = recordValue(resp.message, r);
    if (value === null) continue;
    values.push(value);
    ttl = Math.min(ttl, r.ttl);
    // djbdns's dns_name reads the first PTR only (a later, broken one must not fail the lookup).
    if (type === TYPE.PTR) break;
  }
  return {
    values,
    ttl: values.length ? ttl : Math.min(resp.negativeTtl ?? 0, NEGATIVE_TTL_CAP),
  };
}

// ---------------------------------------------------------------- lookups

/**
 * The name of ip (PTR under in-addr.arpa or ip6.arpa): [] when there is
 * none, else the first PTR record's target as toDot text (djbdns-escaped,
 * lowercased ASCII: it cannot carry a NUL, '=', a newline or an 8-bit byte).
 * A name over 255 bytes or a malformed answer throws DnsProtocolError.
 */
export async function resolvePtr(ip: string, opts: LookupOptions = {}): Promise<string[]> {
  return (await lookup(ptrName(ip), TYPE.PTR, opts)).values;
}

/** The IPv4 addresses of name (dotted text, escapes as fromDot) and their TTL; ips [] when there are none. */
export async function resolveA(
  name: string,
  opts: LookupOptions = {},
): Promise<{ ips: string[]; ttl: number }> {
  const a = await lookup(name, TYPE.A, opts);
  return { ips: a.values, ttl: a.ttl };
}

/**
 * The TXT records of name, each record's strings concatenated as a byte
 * string (the bytes as sent: cleaning them is the caller's job), and their
 * TTL.
 */
export async function resolveTxt(
  name: string,
  opts: LookupOptions = {},
): Promise<{ texts: string[]; ttl: number }> {
  const a = await lookup(name, TYPE.TXT, opts);
  return { texts: a.values, ttl: a.ttl };
}

/**
 * The addresses of name: family 4 (A), 6 (AAAA) or 0 (both, asked at once;
 * IPv4 first). A literal address resolves to itself. With both families a
 * failing query does not hide the other's addresses: it throws only when no
 * family gave an address and at least one failed (a resolver that refuses
 * AAAA still lets an IPv4 name resolve, as DJB's and fehcom's tools do).
 */
export async function resolveAddrs(
  name: string,
  opts: LookupOptions & { family?: 4 | 6 | 0 } = {},
): Promise<string[]> {
  const family = opts.family ?? 0;
  if (isIPv4(name)) return family === 6 ? [] : [name];
  if (isIPv6(name)) return family === 4 ? [] : [name];
  const types = family === 4 ? [TYPE.A] : family === 6 ? [TYPE.AAAA] : [TYPE.A, TYPE.AAAA];
  const results = await Promise.allSettled(types.map((t) => lookup(name, t, opts)));
  const out: string[] = [];
  let failure: unknown = undefined;
  for (const r of results) {
    if (r.status === "fulfilled") out.push(...r.value.values);
    else failure ??= r.reason;
  }
  if (out.length === 0 && failure !== undefined) throw failure;
  return out;
}
