/**
 * The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2) as a
 * receiver: the first bytes of a connection from a load balancer name the
 * original client and server. This module parses the header incrementally,
 * reads it from a stream with a time bound and a size bound, and hands back
 * the bytes that followed it (they belong to the program, or to TLS).
 *
 * Policy (who may send a header, what to do on error) is the caller's; this
 * module only decodes.
 */

import {
  formatIp4,
  formatUnmapped,
  parseIp16,
  parseIp4 as scanIp4,
  parseIp6 as scanIp6,
} from "./ip.ts";
import type { Io } from "../stages/stage.ts";
import type { Endpoint, PrepareHook } from "../server/server.ts";

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

/** Why a header read failed: a protocol error, a timeout, or the peer hung up early. */
export type ProxyReadFailure = "invalid" | "timeout" | "eof";

/** A header read that failed; `message` says why (for the log). */
export class ProxyReadError extends Error {
  /** `kind` tells the caller how to log and count the failure. */
  constructor(message: string, readonly kind: ProxyReadFailure) {
    super(message);
    this.name = "ProxyReadError";
  }
}

/** Bounds for readProxyHeader. */
export interface ReadOptions extends ProxyLimits {
  /** Give up after this many milliseconds (default 10000). */
  timeoutMs?: number;
}

/** A header read from a stream, and the bytes that came after it. */
export interface ProxyRead {
  /** The header as decoded. */
  header: ProxyHeader;
  /** Bytes already read past the header: the start of the real conversation. */
  rest: Uint8Array;
}

/**
 * Reads one header from `reader`, never more than the header's bound in total
 * (v1: 107 bytes; v2: 16 + maxV2Length), within timeoutMs. Bytes that arrived in
 * the same reads after the header are returned as `rest`. The reader stays
 * locked to the caller, who goes on reading the conversation from it.
 * Throws ProxyReadError (invalid / timeout / eof).
 */
export async function readProxyHeader(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  opts: ReadOptions = {},
): Promise<ProxyRead> {
  const timeoutMs = opts.timeoutMs ?? 10000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ProxyReadError("timed out reading PROXY header", "timeout")),
      timeoutMs,
    );
  });
  // The bytes so far are store[0, len): the store doubles when full, so a
  // header dribbled in one byte per read costs linear copying, not quadratic.
  let store = new Uint8Array(256);
  let len = 0;
  let buf = store.subarray(0, 0);
  try {
    while (true) {
      let parsed: ProxyHeader | typeof INCOMPLETE;
      try {
        parsed = parseProxyHeader(buf, opts);
      } catch (e) {
        throw new ProxyReadError((e as Error).message, "invalid");
      }
      if (parsed !== INCOMPLETE) {
        return { header: parsed, rest: buf.slice(parsed.length) };
      }
      const { value, done } = await Promise.race([reader.read(), timedOut]);
      if (done) {
        throw new ProxyReadError(
          buf.length ? "connection closed inside PROXY header" : "no PROXY header",
          "eof",
        );
      }
      if (value.length === 0) continue;
      if (len + value.length > store.length) {
        const next = new Uint8Array(Math.max(2 * store.length, len + value.length));
        next.set(store.subarray(0, len));
        store = next;
      }
      store.set(value, len);
      len += value.length;
      buf = store.subarray(0, len);
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A stream that yields `first` (when not empty) and then the rest of
 * `reader`: the conversation after a header, as the program must see it.
 * Cancelling it cancels the reader.
 */
export function prependBytes(
  first: Uint8Array,
  reader: ReadableStreamDefaultReader<Uint8Array>,
): ReadableStream<Uint8Array> {
  let pending: Uint8Array | null = first.length ? first : null;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (pending) {
        controller.enqueue(pending);
        pending = null;
        return;
      }
      try {
        const { value, done } = await reader.read();
        if (done) {
          controller.close();
          reader.releaseLock();
        } else controller.enqueue(value);
      } catch (e) {
        controller.error(e);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
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

/** One entry of a trusted-sender list: an address and a prefix length. */
export interface Cidr {
  /** The network, 16 bytes (IPv4 as IPv4-mapped). */
  bytes: Uint8Array;
  /** The prefix length over those 16 bytes (an IPv4 /8 is 104). */
  bits: number;
}

/** 16-byte form of an IPv4 or IPv6 text address (IPv4 as IPv4-mapped), or null. */
export function ipBytes16(ip: string): Uint8Array | null {
  return parseIp16(ip, "inet_pton");
}

/**
 * Parses a list of addresses or CIDR prefixes separated by commas or white
 * space ("127.0.0.1,10.0.0.0/8 ::1 fd00::/8"). IPv4 prefixes are matched
 * against IPv4 clients also when they arrive IPv4-mapped. Throws Error naming
 * the first bad entry.
 */
export function parseTrusted(spec: string): Cidr[] {
  const out: Cidr[] = [];
  for (const word of spec.split(/[\s,]+/)) {
    if (word === "") continue;
    const slash = word.indexOf("/");
    const ip = slash < 0 ? word : word.slice(0, slash);
    const bytes = ipBytes16(ip);
    const isV4 = parseIp4(ip) !== null;
    let bits = isV4 ? 32 : 128;
    if (slash >= 0) {
      const b = word.slice(slash + 1);
      if (!/^[0-9]{1,3}$/.test(b) || Number(b) > bits) throw new Error(`bad prefix: ${word}`);
      bits = Number(b);
    }
    if (!bytes) throw new Error(`bad address: ${word}`);
    out.push({ bytes, bits: isV4 ? bits + 96 : bits });
  }
  return out;
}

/** Whether the text address ip lies in one of the prefixes. */
export function isTrusted(ip: string, list: Cidr[]): boolean {
  const b = ipBytes16(ip);
  if (!b) return false;
  for (const { bytes, bits } of list) {
    let ok = true;
    for (let i = 0; i < 16 && ok; i++) {
      const take = Math.max(0, Math.min(8, bits - 8 * i));
      if (take === 0) break;
      const mask = (0xff << (8 - take)) & 0xff;
      if ((b[i] & mask) !== (bytes[i] & mask)) ok = false;
    }
    if (ok) return true;
  }
  return false;
}

/** How a server treats PROXY headers (tcpserver -W, sslserver -W). */
export interface ProxyPolicy {
  /** The program name for log lines. */
  prog: string;
  /**
   * Senders that must send a header ($PROXY_TRUSTED); other clients are
   * taken as direct clients, with their own addresses. null: every
   * connection must start with a header.
   */
  trusted: Cidr[] | null;
  /** Time to wait for a complete header, in milliseconds ($PROXY_TIMEOUT). */
  timeoutMs: number;
  /** Writes a warning line (the caller drops it under -q). */
  warn: (line: string) => void;
}

/** A connection's streams and endpoints, before and after the header. */
export interface ProxyStepInput {
  /** The connection's streams. */
  io: Io;
  /** Our end of the socket (or, after the header, the announced destination). */
  local: Endpoint;
  /** The peer's end (or, after the header, the announced source). */
  remote: Endpoint;
}

/**
 * Reads the PROXY header of a connection as the policy says. Resolves the
 * streams to go on with (the bytes after the header first) and the original
 * endpoints, or null after logging why the connection must be dropped.
 */
export async function proxyStep(
  c: ProxyStepInput,
  policy: ProxyPolicy,
): Promise<ProxyStepInput | null> {
  if (policy.trusted && !isTrusted(c.remote.ip, policy.trusted)) return c;
  const reader = c.io.input.getReader();
  let got: ProxyRead;
  try {
    got = await readProxyHeader(reader, { timeoutMs: policy.timeoutMs });
  } catch (e) {
    policy.warn(
      `${policy.prog}: warning: dropping connection, unable to read PROXY header from ${
        plainIp(c.remote.ip)
      }: ${(e as Error).message}`,
    );
    // The connection is dropped: a cancel that fails has nothing left to clean up.
    reader.cancel().catch(() => {});
    return null;
  }
  const io: Io = { ...c.io, input: prependBytes(got.rest, reader) };
  const e = got.header.endpoints;
  if (!e) return { io, local: c.local, remote: c.remote };
  return {
    io,
    local: { ip: e.destIp, port: e.destPort },
    remote: { ip: e.sourceIp, port: e.sourcePort },
  };
}

function plainIp(ip: string): string {
  const b = ipBytes16(ip);
  if (!b) return ip;
  return formatUnmapped(b);
}

/** tcpserver's prepare hook for -W: the PROXY step alone. */
export function proxyPrepareHook(policy: ProxyPolicy): PrepareHook {
  return async (_conn, ctx) => {
    const r = await proxyStep(ctx, policy);
    if (!r) return null;
    return { io: r.io, local: r.local, remote: r.remote };
  };
}

/**
 * The policy from the environment: $PROXY_TRUSTED (addresses and CIDR
 * prefixes allowed, and required, to send a header; unset: every client
 * must) and $PROXY_TIMEOUT (seconds, default 10). Throws Error on a bad list.
 */
export function proxyPolicyFromEnv(
  prog: string,
  env: Map<string, string>,
  warn: (line: string) => void,
): ProxyPolicy {
  const list = env.get("PROXY_TRUSTED");
  const t = env.get("PROXY_TIMEOUT");
  const seconds = t !== undefined && /^[0-9]+$/.test(t) && Number(t) > 0 ? Number(t) : 10;
  return {
    prog,
    trusted: list === undefined ? null : parseTrusted(list),
    timeoutMs: seconds * 1000,
    warn,
  };
}
