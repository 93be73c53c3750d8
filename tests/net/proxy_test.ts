/** Unit tests of lib/net/proxy/ (header.ts, read.ts, trusted.ts): PROXY protocol v1/v2 decoding, bounded reads, trust lists. */
import assert from "node:assert/strict";
import {
  buildV1,
  buildV2,
  INCOMPLETE,
  parseProxyHeader,
  ProxyError,
  V2_SIGNATURE,
} from "../../lib/net/proxy/header.ts";
import { prependBytes, ProxyReadError, readProxyHeader } from "../../lib/net/proxy/read.ts";
import { isTrusted, parseTrusted } from "../../lib/net/proxy/trusted.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function cat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function v2(verCmd: number, fam: number, block: number[]): Uint8Array {
  return cat(
    V2_SIGNATURE,
    new Uint8Array([verCmd, fam, block.length >> 8, block.length & 0xff]),
    new Uint8Array(block),
  );
}

Deno.test("v1 TCP4 header", () => {
  const h = parseProxyHeader(enc.encode("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET"));
  assert.notEqual(h, INCOMPLETE);
  if (h === INCOMPLETE) return;
  assert.equal(h.version, 1);
  assert.equal(h.length, 47);
  assert.deepEqual(h.endpoints, {
    family: "TCP4",
    sourceIp: "192.168.0.1",
    destIp: "192.168.0.11",
    sourcePort: 56324,
    destPort: 443,
  });
});

Deno.test("v1 TCP6 header is normalised to compact form", () => {
  const h = parseProxyHeader(
    enc.encode("PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::ffff:10.0.0.1 65535 0\r\n"),
  );
  if (h === INCOMPLETE) throw new Error("incomplete");
  assert.equal(h.endpoints?.sourceIp, "2001:db8::1");
  assert.equal(h.endpoints?.destIp, "10.0.0.1");
  assert.equal(h.endpoints?.sourcePort, 65535);
  assert.equal(h.endpoints?.destPort, 0);
});

Deno.test("v1 UNKNOWN: real addresses, rest of line ignored", () => {
  for (const s of ["PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"]) {
    const h = parseProxyHeader(enc.encode(s + "x"));
    if (h === INCOMPLETE) throw new Error("incomplete");
    assert.equal(h.endpoints, null);
    assert.equal(h.length, s.length);
  }
});

Deno.test("v1 longest valid line (107 bytes) is accepted", () => {
  const f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const s = `PROXY UNKNOWN ${f} ${f} 65535 65535\r\n`;
  assert.equal(s.length, 107);
  const h = parseProxyHeader(enc.encode(s));
  assert.notEqual(h, INCOMPLETE);
  const t = `PROXY TCP6 ${f} ${f} 65535 65535\r\n`;
  const h6 = parseProxyHeader(enc.encode(t));
  if (h6 === INCOMPLETE) throw new Error("incomplete");
  assert.equal(h6.endpoints?.sourceIp, f);
});

Deno.test("v1 invalid headers are refused", () => {
  const bad = [
    "GET / HTTP/1.0\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", // LF alone
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
    "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", // two spaces
    "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
    "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", // leading zero
    // ... also in an IPv4 tail: inet_pton (haproxy's reader) refuses it in both families
    "PROXY TCP6 ::ffff:010.0.0.1 ::1 1 2\r\n",
    "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
    "PROXY TCP4 ::1 5.6.7.8 1 2\r\n", // family mismatch
    "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
    "PROXY TCP6 1::2::3 ::1 1 2\r\n",
    "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n",
    "PROXY TCP6 12345::1 ::1 1 2\r\n",
    // a dotted quad only ends an IPv6 address (fuzz: was read as 102:304::)
    "PROXY TCP6 1.2.3.4:: ::1 1 2\r\n",
    "PROXY TCP6 ::1 1.2.3.4::5 1 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
    "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY\r\n",
    "PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\x00\r\n",
    "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
  ];
  for (const s of bad) {
    assert.throws(() => parseProxyHeader(enc.encode(s)), ProxyError, JSON.stringify(s));
  }
});

Deno.test("v1 line without CRLF in 107 bytes is refused; shorter is incomplete", () => {
  assert.equal(parseProxyHeader(enc.encode("PROXY TCP4 1.2.3.4")), INCOMPLETE);
  assert.equal(parseProxyHeader(enc.encode("PRO")), INCOMPLETE);
  assert.equal(parseProxyHeader(enc.encode("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r")), INCOMPLETE);
  assert.throws(() => parseProxyHeader(enc.encode("PROXY UNKNOWN " + "a".repeat(93))), ProxyError);
  // 108 bytes with the CRLF is one too many, however the line is cut (fuzz)
  const long = "PROXY UNKNOWN " + "a".repeat(92) + "\r\n";
  assert.equal(long.length, 108);
  assert.throws(() => parseProxyHeader(enc.encode(long)), ProxyError);
  assert.throws(() => parseProxyHeader(enc.encode(long.slice(0, 106))), ProxyError);
  assert.equal(parseProxyHeader(enc.encode(long.slice(0, 105))), INCOMPLETE);
  assert.equal(parseProxyHeader(enc.encode(long.slice(0, 104) + "\r")), INCOMPLETE);
  // garbage is refused at the first wrong byte, without waiting for more
  assert.throws(() => parseProxyHeader(enc.encode("PX")), ProxyError);
  assert.throws(() => parseProxyHeader(enc.encode("\r\n\r\n\x01")), ProxyError);
});

Deno.test("v2 TCP4 and TCP6, with TLVs skipped", () => {
  const h4 = parseProxyHeader(
    v2(0x21, 0x11, [127, 0, 0, 5, 10, 1, 2, 3, 0x30, 0x39, 0x00, 0x19, 0x04, 0x00, 0x01, 0x41]),
  );
  if (h4 === INCOMPLETE) throw new Error("incomplete");
  assert.equal(h4.version, 2);
  assert.equal(h4.length, 16 + 16);
  assert.deepEqual(h4.endpoints, {
    family: "TCP4",
    sourceIp: "127.0.0.5",
    destIp: "10.1.2.3",
    sourcePort: 12345,
    destPort: 25,
  });
  const src6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
  const dst6 = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
  const h6 = parseProxyHeader(v2(0x21, 0x21, [...src6, ...dst6, 0xff, 0xff, 0x01, 0xbb]));
  if (h6 === INCOMPLETE) throw new Error("incomplete");
  assert.deepEqual(h6.endpoints, {
    family: "TCP6",
    sourceIp: "2001:db8::1",
    destIp: "::1",
    sourcePort: 65535,
    destPort: 443,
  });
});

Deno.test("v2 LOCAL, UNSPEC and UNIX use the real endpoints", () => {
  for (
    const [vc, fam, len] of [[0x20, 0x00, 0], [0x20, 0x11, 12], [0x21, 0x00, 5], [
      0x21,
      0x31,
      216,
    ], [0x21, 0x10, 12]]
  ) {
    const h = parseProxyHeader(v2(vc, fam, new Array(len).fill(7)));
    if (h === INCOMPLETE) throw new Error("incomplete");
    assert.equal(h.endpoints, null);
    assert.equal(h.length, 16 + len);
  }
});

Deno.test("v2 invalid headers are refused", () => {
  const cases: Uint8Array[] = [
    v2(0x11, 0x11, new Array(12).fill(0)), // version 1 in a v2 header
    v2(0x31, 0x11, new Array(12).fill(0)),
    v2(0x22, 0x11, new Array(12).fill(0)), // command 2
    v2(0x21, 0x41, new Array(12).fill(0)), // family 4
    v2(0x21, 0x13, new Array(12).fill(0)), // transport 3
    v2(0x21, 0x11, new Array(11).fill(0)), // too short for IPv4
    v2(0x21, 0x21, new Array(35).fill(0)), // too short for IPv6
  ];
  for (const c of cases) assert.throws(() => parseProxyHeader(c), ProxyError);
  const sig = V2_SIGNATURE.slice();
  sig[11] = 0x0b;
  assert.throws(() => parseProxyHeader(sig), ProxyError);
  // the length bound
  assert.throws(
    () => parseProxyHeader(v2(0x21, 0x11, new Array(600).fill(0)), { maxV2Length: 512 }),
    ProxyError,
  );
});

Deno.test("v2 truncated at every length is incomplete", () => {
  const full = v2(0x21, 0x11, [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
  for (let i = 0; i < full.length; i++) {
    assert.equal(parseProxyHeader(full.subarray(0, i)), INCOMPLETE, `prefix ${i}`);
  }
  assert.notEqual(parseProxyHeader(full), INCOMPLETE);
});

Deno.test("builders round-trip", () => {
  const e = {
    family: "TCP6" as const,
    sourceIp: "fe80::1:2",
    destIp: "::1",
    sourcePort: 1,
    destPort: 65535,
  };
  for (const b of [buildV1(e), buildV2(e), buildV2(e, new Uint8Array([1, 0, 1, 9]))]) {
    const h = parseProxyHeader(b);
    if (h === INCOMPLETE) throw new Error("incomplete");
    assert.deepEqual(h.endpoints, e);
    assert.equal(h.length, b.length);
  }
  // A v4-mapped TCP6 address is shown as IPv4; building it again maps it (fuzz).
  const m = { ...e, sourceIp: "10.0.0.1" };
  for (const b of [buildV1(m), buildV2(m)]) {
    const h = parseProxyHeader(b);
    if (h === INCOMPLETE) throw new Error("incomplete");
    assert.deepEqual(h.endpoints, m);
  }
  assert.equal(dec.decode(buildV1(m)), "PROXY TCP6 ::ffff:10.0.0.1 ::1 1 65535\r\n");
  const l = parseProxyHeader(buildV2(null));
  if (l === INCOMPLETE) throw new Error("incomplete");
  assert.equal(l.endpoints, null);
});

/** A stream that delivers chunks one by one, each after the consumer asks. */
function chunked(chunks: Uint8Array[], thenHang = false): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (i < chunks.length) c.enqueue(chunks[i++]);
      else if (!thenHang) c.close();
      // else: never answers, like a silent client
    },
  }, { highWaterMark: 0 });
}

Deno.test("readProxyHeader: byte-by-byte header, rest passed on", async () => {
  const all = enc.encode("PROXY TCP4 127.0.0.5 127.0.0.1 40000 25\r\nEHLO x\r\n");
  const chunks = [...all.subarray(0, 45)].map((b) => new Uint8Array([b]));
  chunks.push(all.subarray(45));
  const reader = chunked(chunks).getReader();
  const { header, rest } = await readProxyHeader(reader, { timeoutMs: 5000 });
  assert.equal(header.endpoints?.sourceIp, "127.0.0.5");
  const body = await new Response(prependBytes(rest, reader)).text();
  assert.equal(body, "EHLO x\r\n");
});

Deno.test("readProxyHeader: header and data in one read", async () => {
  const hdr = buildV2({
    family: "TCP4",
    sourceIp: "1.2.3.4",
    destIp: "5.6.7.8",
    sourcePort: 9,
    destPort: 10,
  });
  const reader = chunked([cat(hdr, enc.encode("hello")), enc.encode(" world")]).getReader();
  const { header, rest } = await readProxyHeader(reader);
  assert.equal(header.endpoints?.destPort, 10);
  assert.equal(dec.decode(rest), "hello");
  assert.equal(await new Response(prependBytes(rest, reader)).text(), "hello world");
});

Deno.test("readProxyHeader: silent client times out", async () => {
  const reader = chunked([enc.encode("PROXY TCP4 ")], true).getReader();
  await assert.rejects(
    readProxyHeader(reader, { timeoutMs: 50 }),
    (e: unknown) => e instanceof ProxyReadError && e.kind === "timeout",
  );
  await reader.cancel();
});

Deno.test("readProxyHeader: early EOF and garbage", async () => {
  await assert.rejects(
    readProxyHeader(chunked([enc.encode("PROXY TCP4 1.2")]).getReader()),
    (e: unknown) => e instanceof ProxyReadError && e.kind === "eof",
  );
  await assert.rejects(
    readProxyHeader(chunked([]).getReader()),
    (e: unknown) => e instanceof ProxyReadError && e.kind === "eof",
  );
  // garbage is refused at once, even while the client keeps the line open
  await assert.rejects(
    readProxyHeader(chunked([enc.encode("HELO there\r\n")], true).getReader(), {
      timeoutMs: 60000,
    }),
    (e: unknown) => e instanceof ProxyReadError && e.kind === "invalid",
  );
  // an endless v1 line stops at the bound
  const reader = chunked(
    Array.from({ length: 20 }, () => enc.encode("PROXY UNKNOWN aaaaaaaaaa")),
    true,
  ).getReader();
  await assert.rejects(
    readProxyHeader(reader, { timeoutMs: 60000 }),
    (e: unknown) => e instanceof ProxyReadError && e.kind === "invalid",
  );
});

Deno.test("readProxyHeader over a real loopback socket", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const client = (async () => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    const w = c.writable.getWriter();
    await w.write(enc.encode("PROXY TCP6 ::1 ::2 1 2\r"));
    await w.write(enc.encode("\ndata"));
    await w.close();
  })();
  const conn = await listener.accept();
  const reader = conn.readable.getReader();
  const { header, rest } = await readProxyHeader(reader, { timeoutMs: 5000 });
  assert.equal(header.endpoints?.destIp, "::2");
  assert.equal(await new Response(prependBytes(rest, reader)).text(), "data");
  await client;
  try {
    conn.close();
  } catch { /* closed with its streams */ }
  listener.close();
});

Deno.test("trusted sender lists", () => {
  const list = parseTrusted("127.0.0.1, 10.0.0.0/8 fd00::/8\n::1");
  assert.ok(isTrusted("127.0.0.1", list));
  assert.ok(!isTrusted("127.0.0.2", list));
  assert.ok(isTrusted("10.200.3.4", list));
  assert.ok(isTrusted("::ffff:10.1.1.1", list));
  assert.ok(isTrusted("fdab::7", list));
  assert.ok(!isTrusted("fe00::7", list));
  assert.ok(isTrusted("::1", list));
  assert.ok(!isTrusted("11.0.0.1", list));
  assert.ok(isTrusted("9.9.9.9", parseTrusted("0.0.0.0/0")));
  assert.ok(!isTrusted("::2", parseTrusted("0.0.0.0/0")));
  assert.throws(() => parseTrusted("10.0.0.0/33"));
  assert.throws(() => parseTrusted("nonsense"));
  assert.deepEqual(parseTrusted(""), []);
});
