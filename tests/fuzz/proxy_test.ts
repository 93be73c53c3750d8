/**
 * Fuzz: the PROXY v1/v2 header parser (lib/net/proxy/header.ts, read.ts) on random and mutated
 * headers, whole and read from a stream in random chunks.
 *
 * Properties, for every input:
 * - parseProxyHeader returns INCOMPLETE or a header, or throws ProxyError;
 *   nothing else.
 * - A header is no longer than the input and than its version's bound (v1:
 *   107 bytes; v2: 16 + the largest address block allowed), its ports are
 *   0..65535, its addresses are what lib/net/ip.ts reads the same text as (one
 *   definition of an address), and building it again (buildV1/buildV2) gives
 *   a header that parses to the same endpoints.
 * - Incremental: every proper prefix of a header parses as INCOMPLETE (a
 *   header is never refused before it is complete), so the stream reader
 *   decides like the whole-buffer parser.
 * - readProxyHeader over the input cut into random chunks then closed gives
 *   the same header and the bytes after it as `rest`, or a ProxyReadError
 *   ("invalid" exactly when the parser refuses, "eof" when it is incomplete);
 *   it never hangs (the harness bounds each input) and never reads past the
 *   header's bound.
 */
import {
  buildV1,
  buildV2,
  INCOMPLETE,
  parseProxyHeader,
  type ProxyEndpoints,
  ProxyError,
  type ProxyHeader,
  V1_MAX,
  V2_FIXED,
} from "../../lib/net/proxy/header.ts";
import { ProxyReadError, readProxyHeader } from "../../lib/net/proxy/read.ts";
import { canonicalIp, parseIp } from "../../lib/net/ip.ts";
import { below, type FuzzTarget, fuzzTest, type Rand, randomBytes } from "../support/fuzz.ts";
import { prng } from "../support/helpers.ts";

const enc = new TextEncoder();
/** A small bound, so that the fuzzer reaches "header too long" often. */
const MAX_V2 = 600;

function tlv(type: number, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(3 + value.length);
  out[0] = type;
  out[1] = value.length >> 8;
  out[2] = value.length & 0xff;
  out.set(value, 3);
  return out;
}

function cat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

const E4: ProxyEndpoints = {
  family: "TCP4",
  sourceIp: "192.0.2.1",
  destIp: "198.51.100.7",
  sourcePort: 56324,
  destPort: 25,
};
const E6: ProxyEndpoints = {
  family: "TCP6",
  sourceIp: "2001:db8::1",
  destIp: "::ffff:10.0.0.1",
  sourcePort: 1,
  destPort: 65535,
};
const TLVS = cat(
  tlv(0x01, enc.encode("smtp")), // ALPN
  tlv(0x02, enc.encode("mx.example")), // authority
  tlv(0x20, Uint8Array.from([0x07, 0, 0, 0, 0, ...tlv(0x21, enc.encode("TLSv1.3"))])), // SSL
  tlv(0x04, new Uint8Array(0)), // NOOP
);

const SEEDS = [
  buildV1(E4),
  buildV1(E6),
  buildV1(null),
  enc.encode("PROXY UNKNOWN ffff::1 ::1 1 2\r\nEHLO x\r\n"),
  enc.encode("PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n"),
  enc.encode("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 :: 65535 65535\r\n"),
  cat(buildV1(E4), enc.encode("HELO after\r\n")),
  buildV2(E4),
  buildV2(E6),
  buildV2(null),
  buildV2(E4, TLVS),
  buildV2(E6, TLVS),
  cat(buildV2(E6, TLVS), enc.encode("\x16\x03\x01 tls follows")),
];

/** A v1 line from random parts (well-formed or nearly so). */
function genV1(rand: Rand): Uint8Array {
  const pick = <T>(xs: T[]) => xs[below(rand, xs.length)];
  const octet = () => pick(["0", "1", "255", "256", "01", String(below(rand, 300)), ""]);
  const v4 = () => [octet(), octet(), octet(), octet()].join(".");
  const group = () => pick(["0", "ffff", "1", "abcd", "12345", "g", ""]);
  const v6 = () => {
    const n = below(rand, 9);
    const gs = Array.from({ length: n }, group);
    if (rand() < 0.5) gs.splice(below(rand, n + 1), 0, "");
    let s = gs.join(":");
    if (rand() < 0.2) s += ":" + v4();
    if (rand() < 0.1) s = v4() + "::";
    return s;
  };
  const port = () => pick(["0", "25", "65535", "65536", "007", String(below(rand, 70000)), ""]);
  const proto = pick(["TCP4", "TCP6", "UNKNOWN", "TCP5", "tcp4"]);
  const addr = proto === "TCP4" ? v4 : proto === "TCP6" ? v6 : rand() < 0.5 ? v4 : v6;
  const fields = ["PROXY", proto, addr(), addr(), port(), port()];
  if (rand() < 0.1) fields.pop();
  if (rand() < 0.1) fields.push(port());
  const sep = rand() < 0.9 ? " " : pick(["  ", "\t", ""]);
  const end = pick(["\r\n", "\r\n", "\r\n", "\n", "\r", ""]);
  return enc.encode(fields.join(sep) + end + (rand() < 0.3 ? "EHLO x\r\n" : ""));
}

/** A v2 header from random parts: any command/family/transport, lengths right or not. */
function genV2(rand: Rand): Uint8Array {
  const verCmd = rand() < 0.8 ? 0x20 | below(rand, 2) : below(rand, 256);
  const fam = rand() < 0.8
    ? ([0x11, 0x12, 0x21, 0x22, 0x00, 0x31][below(rand, 6)])
    : below(rand, 256);
  const want = fam >> 4 === 1 ? 12 : fam >> 4 === 2 ? 36 : fam >> 4 === 3 ? 216 : 0;
  const body = randomBytes(rand, rand() < 0.7 ? want : below(rand, 64));
  const extra = rand() < 0.5 ? TLVS : randomBytes(rand, below(rand, 32));
  const block = cat(body, extra);
  let len = block.length;
  if (rand() < 0.2) {
    len = [0, 11, 35, 0xffff, MAX_V2, MAX_V2 + 1, below(rand, 0x10000)][below(rand, 7)];
  }
  const head = new Uint8Array(V2_FIXED);
  head.set(buildV2(null).subarray(0, 12));
  head[12] = verCmd;
  head[13] = fam;
  head[14] = len >> 8;
  head[15] = len & 0xff;
  return cat(head, block, rand() < 0.3 ? enc.encode("after") : new Uint8Array(0));
}

/** The address as lib/net/ip.ts reads and writes it (v4-mapped as IPv4), or null. */
function addrText(s: string): string | null {
  return canonicalIp(s);
}

function fail(msg: string): never {
  throw new Error(msg);
}

function checkHeader(h: ProxyHeader, input: Uint8Array): void {
  if (h.length > input.length) fail(`length ${h.length} past the input (${input.length})`);
  const bound = h.version === 1 ? V1_MAX : V2_FIXED + MAX_V2;
  if (h.length > bound) fail(`v${h.version} header of ${h.length} bytes`);
  const e = h.endpoints;
  if (!e) return;
  for (const p of [e.sourcePort, e.destPort]) {
    if (!Number.isInteger(p) || p < 0 || p > 65535) fail(`port ${p}`);
  }
  for (const ip of [e.sourceIp, e.destIp]) {
    const ours = addrText(ip);
    if (ours === null) fail(`address ${JSON.stringify(ip)} is no address to lib/net/ip.ts`);
    // (TCP6 may carry IPv4 text: a v4-mapped address is shown as IPv4, as
    // tcpserver shows a mapped client; TCP4 never carries IPv6.)
    if (e.family === "TCP4" && parseIp(ip)!.family !== 4) fail(`TCP4 with address ${ip}`);
  }
  if (h.version === 1) {
    // The text as sent must be an address lib/net/ip.ts reads the same way.
    const words = new TextDecoder().decode(input.subarray(0, h.length - 2)).split(" ");
    for (const [k, ip] of [[2, e.sourceIp], [3, e.destIp]] as const) {
      const sent = addrText(words[k]);
      const got = addrText(ip);
      if (sent !== got) {
        fail(`v1 ${JSON.stringify(words[k])} read as ${ip}, lib/net/ip.ts: ${sent}`);
      }
    }
  }
  // Building the endpoints again gives a header with the same endpoints.
  const again = parseProxyHeader(h.version === 1 ? buildV1(e) : buildV2(e), {
    maxV2Length: MAX_V2,
  });
  if (again === INCOMPLETE || JSON.stringify(again.endpoints) !== JSON.stringify(e)) {
    fail(`rebuilt header differs: ${JSON.stringify(again)} vs ${JSON.stringify(e)}`);
  }
}

/** What parseProxyHeader says, as a value. */
function parse(b: Uint8Array): ProxyHeader | typeof INCOMPLETE | ProxyError {
  try {
    return parseProxyHeader(b, { maxV2Length: MAX_V2 });
  } catch (e) {
    if (e instanceof ProxyError) return e;
    throw e;
  }
}

/** The input as a stream of random chunks (seeded by the input itself), then EOF. */
function chunked(input: Uint8Array): { stream: ReadableStream<Uint8Array>; pulled: () => number } {
  let seed = 7;
  for (const b of input.subarray(0, 64)) seed = (seed * 31 + b) >>> 0;
  const rand = prng(seed);
  let off = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (off >= input.length) return c.close();
      const n = 1 + below(rand, rand() < 0.5 ? 4 : 200);
      c.enqueue(input.slice(off, off + n));
      off += n;
    },
  }, { highWaterMark: 0 });
  return { stream, pulled: () => Math.min(off, input.length) };
}

export const target: FuzzTarget = {
  name: "proxy",
  seeds: SEEDS,
  generate: (rand) => (rand() < 0.5 ? genV1(rand) : genV2(rand)),
  maxLength: 2048,
  run: async (input) => {
    const whole = parse(input);
    if (whole !== INCOMPLETE && !(whole instanceof ProxyError)) {
      checkHeader(whole, input);
      // every proper prefix is incomplete (check all of a v1 line, a sample of v2)
      const step = whole.length > 200 ? Math.ceil(whole.length / 100) : 1;
      for (let k = 0; k < whole.length; k += step) {
        const p = parse(input.subarray(0, k));
        if (p !== INCOMPLETE) {
          fail(`prefix of ${k} bytes: ${p instanceof Error ? p.message : "a header"}`);
        }
      }
    }
    const { stream, pulled } = chunked(input);
    const reader = stream.getReader();
    try {
      const r = await readProxyHeader(reader, { maxV2Length: MAX_V2, timeoutMs: 1000 });
      if (whole === INCOMPLETE || whole instanceof ProxyError) {
        fail(`the stream reader found a header the parser did not: ${JSON.stringify(r.header)}`);
      }
      if (JSON.stringify(r.header) !== JSON.stringify(whole)) fail("stream and parser differ");
      const after = input.subarray(whole.length, pulled());
      if (r.rest.length !== after.length || r.rest.some((b, i) => b !== after[i])) {
        fail("rest is not the bytes after the header");
      }
    } catch (e) {
      if (!(e instanceof ProxyReadError)) throw e;
      const want = whole instanceof ProxyError
        ? "invalid"
        : whole === INCOMPLETE
        ? "eof"
        : "header";
      if (e.kind !== want) fail(`stream reader: ${e.kind} (${e.message}), parser: ${want}`);
    } finally {
      reader.releaseLock();
    }
    // never read far beyond the bound
    const bound = Math.max(V1_MAX, V2_FIXED + MAX_V2) + 200;
    if (pulled() > bound) fail(`read ${pulled()} bytes`);
  },
  expected: (e) => e instanceof ProxyError,
};

fuzzTest(target);
