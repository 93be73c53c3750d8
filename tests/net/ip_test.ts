/**
 * lib/net/ip.ts, the one IP parser and formatter: dotted quads as DJB's
 * ip4_scan reads them (checked against the C tcpclient's -i), IPv6 with an
 * embedded IPv4 tail as ucspi-tcp6's ip6_scan reads it, the "inet_pton"
 * syntax the PROXY protocol uses (checked against node:net's isIPv6/isIPv4),
 * RFC 5952 formatting, and a seeded round trip of random addresses written in
 * random legal ways.
 */
import assert from "node:assert/strict";
import net from "node:net";
import {
  formatIp,
  formatIp4,
  formatIp6,
  formatUnmapped,
  type Ip,
  ip4Literals,
  parseIp,
  parseIp16,
  parseIp4,
  parseIp6,
  parseIp6Loose,
  scanIp4,
} from "../../lib/net/ip.ts";
import { below, type Rand } from "../support/fuzz.ts";
import { cTool, prng } from "../support/helpers.ts";

const b6 = (...g: number[]) => {
  const out = new Uint8Array(16);
  g.forEach((x, i) => {
    out[2 * i] = x >> 8;
    out[2 * i + 1] = x & 0xff;
  });
  return out;
};

Deno.test("ip: a leading zero in a dotted quad is decimal (ip4_scan), alone or ending IPv6", () => {
  assert.deepEqual(parseIp4("010.0.0.1"), Uint8Array.of(10, 0, 0, 1));
  assert.deepEqual(parseIp4("127.000.000.001"), Uint8Array.of(127, 0, 0, 1));
  // ucspi-tcp6's ip6_scan reads the tail with ip4_scan: not octal, not refused.
  assert.equal(formatIp6(parseIp6("::ffff:010.0.0.1")!), "::ffff:10.0.0.1");
  assert.equal(formatIp6(parseIp6("::ffff:1.2.3.04")!), "::ffff:1.2.3.4");
  assert.equal(formatIp6(parseIp6("1:2:3:4:5:6:010.0.0.1")!), "1:2:3:4:5:6:a00:1");
  assert.equal(formatIp(parseIp("::ffff:010.0.0.1")!), "::ffff:10.0.0.1");
  assert.equal(formatUnmapped(parseIp16("010.0.0.1")!), "10.0.0.1");
  // Parts stay 1 to 3 digits of at most 255 in the strict parsers.
  for (const bad of ["::ffff:0010.0.0.1", "::ffff:256.0.0.1", "::ffff:1.2.3", "::ffff:1.2.3.4.5"]) {
    assert.equal(parseIp6(bad), null, bad);
  }
});

Deno.test("ip: the inet_pton syntax refuses leading zeros in both families", () => {
  assert.equal(parseIp4("010.0.0.1", "inet_pton"), null);
  assert.equal(parseIp4("1.2.3.00", "inet_pton"), null);
  assert.deepEqual(parseIp4("10.0.0.0", "inet_pton"), Uint8Array.of(10, 0, 0, 0));
  assert.equal(parseIp6("::ffff:010.0.0.1", "inet_pton"), null);
  assert.equal(parseIp16("010.0.0.1", "inet_pton"), null);
  assert.equal(formatIp6(parseIp6("::ffff:10.0.0.1", "inet_pton")!), "::ffff:10.0.0.1");
  // Leading zeros in hex groups are fine in every syntax.
  assert.equal(formatIp6(parseIp6("0001:0db8::0001", "inet_pton")!), "1:db8::1");
});

Deno.test("ip: IPv6 parsing refuses what RFC 4291 does", () => {
  for (
    const bad of [
      "",
      ":",
      ":::",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7",
      "12345::1",
      "1:2:3:4:5:6:7:1.2.3.4",
      "1.2.3.4::",
      "::1.2.3.4:5",
      ":1::",
      "1::2:",
      "g::1",
      "[::1]",
      "::1%lo",
      " ::1",
    ]
  ) {
    assert.equal(parseIp6(bad), null, JSON.stringify(bad));
  }
  assert.equal(formatIp6(parseIp6Loose("[::1]")!), "::1");
  assert.equal(formatIp6(parseIp6Loose("fe80::1%eth0")!), "fe80::1");
  assert.equal(formatIp6(parseIp6Loose("[fe80::1%2]")!), "fe80::1");
  assert.equal(parseIp6Loose("[1.2.3.4]"), null);
});

Deno.test("ip: RFC 5952 formatting, IPv4-mapped as ip6_fmt writes it", () => {
  assert.equal(formatIp6(b6(0, 0, 0, 0, 0, 0, 0, 0)), "::");
  assert.equal(formatIp6(b6(0, 0, 0, 0, 0, 0, 0, 1)), "::1");
  assert.equal(formatIp6(b6(1, 0, 0, 2, 0, 0, 0, 3)), "1:0:0:2::3"); // the longest run
  assert.equal(formatIp6(b6(1, 0, 0, 2, 3, 0, 0, 4)), "1::2:3:0:0:4"); // the first of equal runs
  assert.equal(formatIp6(b6(1, 0, 2, 3, 4, 5, 6, 7)), "1:0:2:3:4:5:6:7"); // one zero group stays
  assert.equal(formatIp6(b6(0xfe80, 0, 0, 0, 0, 0, 0, 1)), "fe80::1");
  assert.equal(formatIp6(b6(0x2001, 0xdb8, 0, 0, 0, 0, 0xabcd, 0)), "2001:db8::abcd:0");
  assert.equal(formatIp6(b6(0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304)), "::ffff:1.2.3.4");
  assert.equal(formatUnmapped(b6(0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304)), "1.2.3.4");
  assert.equal(formatUnmapped(b6(0, 0, 0, 0, 0, 0, 0x0102, 0x0304)), "::102:304");
  assert.equal(formatUnmapped(Uint8Array.of(1, 2, 3, 4)), "1.2.3.4");
});

Deno.test("ip: scanIp4 is ip4_scan (a prefix, any length, modulo 256)", () => {
  const scan = (s: string) => {
    const r = scanIp4(s);
    return r && [formatIp4(r.bytes), r.length];
  };
  assert.deepEqual(scan("127.0.0.010"), ["127.0.0.10", 11]);
  assert.deepEqual(scan("127.0.0.266"), ["127.0.0.10", 11]);
  assert.deepEqual(scan("1.2.3.4x"), ["1.2.3.4", 7]);
  assert.deepEqual(scan("1.2.3.4.5"), ["1.2.3.4", 7]);
  assert.deepEqual(scan("99999999999999999999999.0.0.1"), [
    `${99999999999999999999999n % 256n}.0.0.1`,
    29,
  ]);
  for (const bad of ["", "1.2.3", "1..2.3", ".1.2.3.4", "a.1.2.3", "::1"]) {
    assert.equal(scanIp4(bad), null, bad);
  }
});

Deno.test("ip: ip4Literals is dns_ip4's numeric shortcut", () => {
  const lit = (s: string) => ip4Literals(s)?.map(formatIp4) ?? null;
  assert.deepEqual(lit("1.2.3.4"), ["1.2.3.4"]);
  assert.deepEqual(lit("[1.2.3.4]"), ["1.2.3.4"]);
  assert.deepEqual(lit("1.2.3.4.5.6.7.8"), ["1.2.3.4", "5.6.7.8"]);
  assert.deepEqual(lit("1.2.3"), []);
  assert.deepEqual(lit("256.0.0.1"), ["0.0.0.1"]);
  assert.equal(lit("1.2.3.x"), null);
});

const C_TCPCLIENT = cTool("tcpclient");

Deno.test({
  name: "ip: scanIp4 reads -i addresses as the C tcpclient binds them (needs C tcpclient)",
  ignore: C_TCPCLIENT === null,
  async fn() {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    const accepting = (async () => {
      for await (const c of listener) c.close();
    })();
    try {
      for (const text of ["127.0.0.010", "127.0.0.266", "127.000.000.012x", "0127.0.0.1"]) {
        const out = await new Deno.Command(C_TCPCLIENT!, {
          args: ["-RHl0", "-i", text, "127.0.0.1", String(port), "sh", "-c", 'echo "$TCPLOCALIP"'],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const theirs = new TextDecoder().decode(out.stdout).trim();
        assert.equal(formatIp4(scanIp4(text)!.bytes), theirs, text);
      }
    } finally {
      listener.close();
      await accepting.catch(() => {});
    }
  },
});

// ------------------------------------------------------------ seeded round trip

function randomIp(rand: Rand): Ip {
  switch (below(rand, 4)) {
    case 0:
      return { family: 4, bytes: Uint8Array.from({ length: 4 }, () => below(rand, 256)) };
    case 1: { // IPv4-mapped
      const b = new Uint8Array(16);
      b[10] = b[11] = 255;
      for (let i = 12; i < 16; i++) b[i] = below(rand, 256);
      return { family: 6, bytes: b };
    }
    default: { // groups that are often zero, so "::" lands in many places
      const g = Array.from({ length: 8 }, () => rand() < 0.45 ? 0 : below(rand, 0x10000));
      return { family: 6, bytes: b6(...g) };
    }
  }
}

/** One of the many legal ways to write an address (leading zeros, case, "::", IPv4 tail). */
function randomText(rand: Rand, ip: Ip, leadingZeros: boolean): string {
  const quad = (b: Uint8Array) =>
    Array.from(b, (x) => {
      const s = String(x);
      return leadingZeros && rand() < 0.3
        ? s.padStart(Math.min(3, s.length + 1 + below(rand, 2)), "0")
        : s;
    }).join(".");
  if (ip.family === 4) return quad(ip.bytes);
  const b = ip.bytes;
  const groups: string[] = [];
  for (let k = 0; k < 8; k++) {
    let h = ((b[2 * k] << 8) | b[2 * k + 1]).toString(16);
    if (rand() < 0.3) h = h.padStart(1 + below(rand, 4), "0").padStart(h.length, "0");
    if (rand() < 0.3) h = h.toUpperCase();
    groups.push(h);
  }
  const v4tail = rand() < 0.4;
  const words = v4tail ? groups.slice(0, 6) : groups;
  // Pick one run of two or more zero words at random (or none) to write as "::".
  const runs: [number, number][] = [];
  for (let k = 0; k < words.length;) {
    if (parseInt(words[k], 16) !== 0) {
      k++;
      continue;
    }
    let e = k;
    while (e < words.length && parseInt(words[e], 16) === 0) e++;
    for (let from = k; from < e; from++) {
      for (let to = from + 1; to <= e; to++) if (to - from >= 1) runs.push([from, to]);
    }
    k = e;
  }
  const tail = v4tail ? quad(b.subarray(12, 16)) : "";
  if (runs.length && rand() < 0.8) {
    const [from, to] = runs[below(rand, runs.length)];
    const head = words.slice(0, from).join(":");
    const rest = [...words.slice(to), ...(tail ? [tail] : [])].join(":");
    return `${head}::${rest}`;
  }
  return [...words, ...(tail ? [tail] : [])].join(":");
}

Deno.test("ip: seeded round trip (format, parse, every legal spelling, node:net agrees)", () => {
  for (const seed of [1, 2, 3, 4]) {
    const rand = prng(seed);
    for (let n = 0; n < 3000; n++) {
      const ip = randomIp(rand);
      const canon = formatIp(ip);
      const where = `seed ${seed} #${n}: ${canon}`;
      // The canonical text reads back as the same bytes, and is a fixed point.
      const back = parseIp(canon, "inet_pton");
      assert.ok(back, where);
      assert.deepEqual(back.bytes, ip.bytes, where);
      assert.equal(formatIp(back), canon, where);
      assert.equal(ip.family === 4 ? net.isIPv4(canon) : net.isIPv6(canon), true, where);
      // Any legal spelling reads as the same bytes ...
      const text = randomText(rand, ip, true);
      const read = parseIp(text);
      assert.ok(read, `${where} from ${text}`);
      assert.deepEqual(read.bytes, ip.bytes, `${where} from ${text}`);
      assert.equal(formatIp(read), canon, `${where} from ${text}`);
      // ... and the inet_pton syntax takes it exactly when inet_pton (node:net) does.
      const pton = parseIp(text, "inet_pton") !== null;
      assert.equal(pton, net.isIP(text) !== 0, `${where}: inet_pton on ${text}`);
      // A corrupted spelling is refused or reads as something that round-trips.
      const chars = [...text];
      chars[below(rand, chars.length)] = ":.0aF9%"[below(rand, 7)];
      const bent = chars.join("");
      const got = parseIp(bent);
      if (got) assert.equal(formatIp(parseIp(formatIp(got))!), formatIp(got), bent);
      if (!bent.includes("%")) {
        assert.equal(
          parseIp(bent, "inet_pton") !== null,
          net.isIP(bent) !== 0,
          `inet_pton on ${bent}`,
        );
      }
    }
  }
});
