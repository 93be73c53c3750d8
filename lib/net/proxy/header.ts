/**
 * The PROXY protocol's header (HAProxy's proxy-protocol.txt, versions 1 and
 * 2) as bytes: decoding it incrementally from the first bytes of a
 * connection (a valid prefix is INCOMPLETE, anything else fails as early as
 * it can), and building one (for tests and for proxies we write ourselves).
 * Pure functions: no I/O, no policy.
 */

import {
  formatIp4,
  formatUnmapped,
  parseIp16,
  parseIp4 as scanIp4,
  parseIp6 as scanIp6,
} from "../ip.ts";

/** The 12-byte signature that starts a version 2 header. */
export const V2_SIGNATURE = new Uint8Array([
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
]);

/** A version 1 line is at most 107 bytes including CRLF. */
export const V1_MAX = 107;

/** Version 2: the fixed part before the address block. */
export const V2_FIXED = 16;

const V1_PREFIX = new TextEncoder().encode("PROXY ");

/** The original endpoints a header announced. IPs are in tcpserver's text form. */
export interface ProxyEndpoints {
  /** "TCP4" or "TCP6" (v2 DGRAM is reported with its family too). */
  family: "TCP4" | "TCP6";
  /** The client's address (IPv4-mapped shown as IPv4). */
  sourceIp: string;
  /** The address the client connected to. */
  destIp: string;
  /** The client's port. */
  sourcePort: number;
  /** The port the client connected to. */
  destPort: number;
}

/** A decoded header. */
export interface ProxyHeader {
  /** 1 (text line) or 2 (binary). */
  version: 1 | 2;
  /**
   * The announced endpoints, or null when the real socket addresses must be
   * used (v1 UNKNOWN, v2 LOCAL, v2 AF_UNSPEC / AF_UNIX / unspecified transport).
   */
  endpoints: ProxyEndpoints | null;
  /** The header's length in bytes. */
  length: number;
}

/** A header that does not match the protocol; the connection must be dropped. */
export class ProxyError extends Error {
  /** `message` says what is wrong with the header (for the log). */
  constructor(message: string) {
    super(message);
    this.name = "ProxyError";
  }
}

/** Marker: the bytes so far are a valid prefix of a header, but it is not complete. */
export const INCOMPLETE = "incomplete" as const;

/** Options bounding a header read. */
export interface ProxyLimits {
  /** Largest v2 address block (the 16-bit length field) accepted; default 65535. */
  maxV2Length?: number;
}

/**
 * Decodes a header at the start of `buf`. Returns INCOMPLETE while `buf` is a
 * proper prefix of a possibly valid header; throws ProxyError as soon as the
 * bytes cannot start a valid header (so a bad sender is refused early).
 */
export function parseProxyHeader(
  buf: Uint8Array,
  limits: ProxyLimits = {},
): ProxyHeader | typeof INCOMPLETE {
  if (buf.length === 0) return INCOMPLETE;
  if (buf[0] === 0x50) return parseV1(buf);
  if (buf[0] === 0x0d) return parseV2(buf, limits.maxV2Length ?? 0xffff);
  throw new ProxyError("no PROXY header");
}

function parseV1(buf: Uint8Array): ProxyHeader | typeof INCOMPLETE {
  const n = Math.min(buf.length, V1_PREFIX.length);
  for (let i = 0; i < n; i++) {
    if (buf[i] !== V1_PREFIX[i]) throw new ProxyError("no PROXY header");
  }
  let end = -1;
  // The line is at most V1_MAX bytes with its CRLF: the CR comes at index
  // V1_MAX - 2 at the latest (fuzz: a CR at V1_MAX - 1 made a 108-byte line).
  const limit = Math.min(buf.length, V1_MAX - 1);
  for (let i = 0; i < limit; i++) {
    const c = buf[i];
    if (c === 0x0d) {
      if (i + 1 >= buf.length) return INCOMPLETE;
      if (buf[i + 1] !== 0x0a) throw new ProxyError("PROXY v1: CR without LF");
      end = i;
      break;
    }
    if (c === 0x0a) throw new ProxyError("PROXY v1: LF without CR");
    if (c < 0x20 || c > 0x7e) throw new ProxyError("PROXY v1: bad character");
  }
  if (end < 0) {
    if (buf.length >= V1_MAX - 1) throw new ProxyError("PROXY v1: line too long");
    return INCOMPLETE;
  }
  const line = new TextDecoder().decode(buf.subarray(0, end));
  const length = end + 2;
  const words = line.split(" ");
  if (words[1] === "UNKNOWN") return { version: 1, endpoints: null, length };
  if (words.length !== 6) throw new ProxyError("PROXY v1: wrong number of fields");
  const [, proto, src, dst, sport, dport] = words;
  let sourceIp: string, destIp: string;
  if (proto === "TCP4") {
    const s = parseIp4(src), d = parseIp4(dst);
    if (!s || !d) throw new ProxyError("PROXY v1: bad IPv4 address");
    sourceIp = formatIp4(s);
    destIp = formatIp4(d);
  } else if (proto === "TCP6") {
    const s = parseIp6(src), d = parseIp6(dst);
    if (!s || !d) throw new ProxyError("PROXY v1: bad IPv6 address");
    sourceIp = formatUnmapped(s);
    destIp = formatUnmapped(d);
  } else {
    throw new ProxyError("PROXY v1: unknown protocol");
  }
  const sourcePort = parsePort(sport), destPort = parsePort(dport);
  if (sourcePort < 0 || destPort < 0) throw new ProxyError("PROXY v1: bad port");
  return {
    version: 1,
    endpoints: { family: proto, sourceIp, destIp, sourcePort, destPort },
    length,
  };
}

function parseV2(buf: Uint8Array, maxLength: number): ProxyHeader | typeof INCOMPLETE {
  const n = Math.min(buf.length, V2_SIGNATURE.length);
  for (let i = 0; i < n; i++) {
    if (buf[i] !== V2_SIGNATURE[i]) throw new ProxyError("no PROXY header");
  }
  if (buf.length < 13) return INCOMPLETE;
  const verCmd = buf[12];
  if (verCmd >> 4 !== 2) throw new ProxyError("PROXY v2: bad version");
  const command = verCmd & 0x0f;
  if (command > 1) throw new ProxyError("PROXY v2: bad command");
  if (buf.length < 14) return INCOMPLETE;
  const famProto = buf[13];
  const family = famProto >> 4, transport = famProto & 0x0f;
  if (family > 3) throw new ProxyError("PROXY v2: bad address family");
  if (transport > 2) throw new ProxyError("PROXY v2: bad transport");
  if (buf.length < V2_FIXED) return INCOMPLETE;
  const addrLen = (buf[14] << 8) | buf[15];
  if (addrLen > maxLength) throw new ProxyError("PROXY v2: header too long");
  const length = V2_FIXED + addrLen;
  if (buf.length < length) return INCOMPLETE;
  // LOCAL: health checks and the like; the real endpoints count.
  if (command === 0) return { version: 2, endpoints: null, length };
  if (transport === 0 || family === 0 || family === 3) {
    return { version: 2, endpoints: null, length };
  }
  const block = buf.subarray(V2_FIXED, length);
  if (family === 1) {
    if (addrLen < 12) throw new ProxyError("PROXY v2: address block too short");
    return {
      version: 2,
      endpoints: {
        family: "TCP4",
        sourceIp: formatIp4(block.subarray(0, 4)),
        destIp: formatIp4(block.subarray(4, 8)),
        sourcePort: (block[8] << 8) | block[9],
        destPort: (block[10] << 8) | block[11],
      },
      length,
    };
  }
  if (addrLen < 36) throw new ProxyError("PROXY v2: address block too short");
  return {
    version: 2,
    endpoints: {
      family: "TCP6",
      sourceIp: formatUnmapped(block.subarray(0, 16)),
      destIp: formatUnmapped(block.subarray(16, 32)),
      sourcePort: (block[32] << 8) | block[33],
      destPort: (block[34] << 8) | block[35],
    },
    length,
  };
}

/** A decimal port 0..65535 without leading zeros, or -1. */
function parsePort(s: string): number {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(s)) return -1;
  const n = Number(s);
  return n <= 65535 ? n : -1;
}

/**
 * The PROXY protocol's addresses are written by inet_ntop and read (haproxy)
 * with inet_pton: no leading zeros in a dotted quad, alone or ending an IPv6
 * address (lib/net/ip.ts's "inet_pton" syntax).
 */
const parseIp4 = (s: string) => scanIp4(s, "inet_pton");
const parseIp6 = (s: string) => scanIp6(s, "inet_pton");

/** 16-byte form of an IPv4 or IPv6 text address (IPv4 as IPv4-mapped), or null. */
export function ipBytes16(ip: string): Uint8Array | null {
  return parseIp16(ip, "inet_pton");
}

/** Builds a version 1 header line (for tests and for proxies we write ourselves). */
export function buildV1(e: ProxyEndpoints | null): Uint8Array {
  // TCP6 endpoints may hold IPv4 text (a v4-mapped address as parsed): sent v4-mapped.
  const ip = (s: string) => (e?.family === "TCP6" && parseIp4(s) ? `::ffff:${s}` : s);
  const line = e
    ? `PROXY ${e.family} ${ip(e.sourceIp)} ${ip(e.destIp)} ${e.sourcePort} ${e.destPort}\r\n`
    : "PROXY UNKNOWN\r\n";
  return new TextEncoder().encode(line);
}

/**
 * Builds a version 2 header: PROXY with the endpoints, or LOCAL when null.
 * `tlvs` are appended raw after the addresses (they are skipped by readers).
 */
export function buildV2(e: ProxyEndpoints | null, tlvs = new Uint8Array(0)): Uint8Array {
  let block: Uint8Array;
  let fam = 0x00;
  if (e) {
    const v6 = e.family === "TCP6";
    fam = v6 ? 0x21 : 0x11;
    const alen = v6 ? 16 : 4;
    const parse = (s: string) => {
      // TCP6 endpoints may hold IPv4 text: a v4-mapped address as parsed.
      const b = v6 ? ipBytes16(s) : parseIp4(s);
      if (!b) throw new Error(`bad address ${s}`);
      return b;
    };
    block = new Uint8Array(2 * alen + 4);
    block.set(parse(e.sourceIp), 0);
    block.set(parse(e.destIp), alen);
    block[2 * alen] = e.sourcePort >> 8;
    block[2 * alen + 1] = e.sourcePort & 0xff;
    block[2 * alen + 2] = e.destPort >> 8;
    block[2 * alen + 3] = e.destPort & 0xff;
  } else {
    block = new Uint8Array(0);
  }
  const len = block.length + tlvs.length;
  const out = new Uint8Array(V2_FIXED + len);
  out.set(V2_SIGNATURE, 0);
  out[12] = e ? 0x21 : 0x20;
  out[13] = fam;
  out[14] = len >> 8;
  out[15] = len & 0xff;
  out.set(block, V2_FIXED);
  out.set(tlvs, V2_FIXED + block.length);
  return out;
}
