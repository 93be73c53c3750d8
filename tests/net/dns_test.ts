/** lib/net/dns/ (resolver, wire, cache, errors) against tests/support/dns_server.ts. */
import assert from "node:assert/strict";
import { DnsProtocolError, DnsTemporaryError } from "../../lib/net/dns/errors.ts";
import { fromDot, nameEqual, ptrName, reverseName, toDot } from "../../lib/net/dns/name.ts";
import { DnsCache } from "../../lib/net/dns/cache.ts";
import {
  lookup,
  resolveA,
  resolveAddrs,
  resolvePtr,
  resolveTxt,
} from "../../lib/net/dns/resolver.ts";
import { parseIp6Loose as expandIPv6 } from "../../lib/net/ip.ts";
import { RTYPE, startDnsServer, wireName, type Zones } from "../support/dns_server.ts";
import { evilEntry, hostilePtrZones, LONG_LABEL, v4OnlyZone } from "../support/dns_zones.ts";

const ZONES = {
  "host.test": { A: ["192.0.2.1", "192.0.2.2"], AAAA: ["2001:db8::1"], ttl: 120 },
  "alias.test": { CNAME: "host.test" },
  "1.2.0.192.in-addr.arpa": { PTR: ["one.example.test"] },
  "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa": {
    PTR: ["six.example.test"],
  },
  "2.0.0.127.rbl.test": { TXT: ["listed: see http://rbl.test/2"], A: ["127.0.0.2"], ttl: 60 },
  "long.rbl.test": { TXT: ["x".repeat(600)] },
  "multi.rbl.test": { TXT: [["part one ", "part two"], "second record"] },
  "empty.test": { A: [] },
  "fail.test": { behaviour: "servfail" as const },
  "refused.test": { behaviour: "refused" as const },
  "gone.test": { behaviour: "nxdomain" as const },
  "slow.test": { behaviour: "timeout" as const },
  "big.test": { behaviour: "truncate" as const, A: ["198.51.100.7"], TXT: ["via tcp"] },
  "*.wild.test": { A: ["203.0.113.9"] },
};

async function withServer(
  fn: (servers: { address: string; port: number }[]) => Promise<void>,
  negativeTtl?: number,
) {
  const dns = await startDnsServer(structuredClone(ZONES), { port: 0, negativeTtl });
  try {
    await fn([{ address: dns.address, port: dns.port }]);
  } finally {
    await dns.close();
  }
}

Deno.test("dns: reverseName and ptrName for IPv4, IPv6 and mapped IPv4", () => {
  assert.equal(reverseName("127.0.0.2"), "2.0.0.127");
  assert.equal(reverseName("::ffff:192.0.2.1"), "1.2.0.192");
  assert.equal(
    reverseName("2001:db8::1"),
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2",
  );
  assert.equal(ptrName("192.0.2.1"), "1.2.0.192.in-addr.arpa");
  assert.equal(ptrName("::1").endsWith(".0.ip6.arpa"), true);
  assert.equal(ptrName("::1").startsWith("1.0.0.0"), true);
  assert.deepEqual(Array.from(expandIPv6("::ffff:1.2.3.4")!.subarray(10)), [255, 255, 1, 2, 3, 4]);
  assert.equal(expandIPv6("1::2::3"), null);
  assert.equal(expandIPv6("1:2:3:4:5:6:7:8:9"), null);
  assert.throws(() => reverseName("not.an.ip"), TypeError);
});

Deno.test("dns: A, AAAA, CNAME, wildcard, TTL", async () => {
  await withServer(async (servers) => {
    const a = await resolveA("host.test", { servers });
    assert.deepEqual(a.ips, ["192.0.2.1", "192.0.2.2"]);
    assert.equal(a.ttl, 120);
    assert.deepEqual(await resolveAddrs("HOST.test.", { servers, family: 6 }), ["2001:db8::1"]);
    assert.deepEqual(await resolveAddrs("host.test", { servers }), [
      "192.0.2.1",
      "192.0.2.2",
      "2001:db8::1",
    ]);
    assert.deepEqual((await resolveA("alias.test", { servers })).ips, ["192.0.2.1", "192.0.2.2"]);
    assert.deepEqual((await resolveA("x.y.wild.test", { servers })).ips, ["203.0.113.9"]);
    assert.deepEqual(await resolveAddrs("10.1.2.3", { servers }), ["10.1.2.3"]);
  });
});

Deno.test("dns: PTR for IPv4 and IPv6", async () => {
  await withServer(async (servers) => {
    assert.deepEqual(await resolvePtr("192.0.2.1", { servers }), ["one.example.test"]);
    assert.deepEqual(await resolvePtr("2001:db8::1", { servers }), ["six.example.test"]);
    assert.deepEqual(await resolvePtr("192.0.2.99", { servers }), []);
  });
});

Deno.test("dns: TXT joins a record's strings, keeps records apart", async () => {
  await withServer(async (servers) => {
    const t = await resolveTxt("2.0.0.127.rbl.test", { servers });
    assert.deepEqual(t, { texts: ["listed: see http://rbl.test/2"], ttl: 60 });
    assert.deepEqual((await resolveTxt("long.rbl.test", { servers })).texts, ["x".repeat(600)]);
    assert.deepEqual((await resolveTxt("multi.rbl.test", { servers })).texts, [
      "part one part two",
      "second record",
    ]);
  });
});

Deno.test("dns: NXDOMAIN and no data are empty; SERVFAIL/REFUSED/timeout are temporary", async () => {
  await withServer(async (servers) => {
    assert.deepEqual((await resolveA("nowhere.test", { servers })).ips, []);
    assert.deepEqual((await resolveA("gone.test", { servers })).ips, []);
    assert.deepEqual((await resolveA("empty.test", { servers })).ips, []);
    assert.deepEqual((await resolveTxt("host.test", { servers })).texts, []);
    await assert.rejects(resolveA("fail.test", { servers }), DnsTemporaryError);
    await assert.rejects(resolveTxt("refused.test", { servers }), DnsTemporaryError);
    await assert.rejects(resolveA("slow.test", { servers, timeoutMs: 300 }), DnsTemporaryError);
  });
});

Deno.test("dns: abort signal ends a lookup with DnsTemporaryError", async () => {
  await withServer(async (servers) => {
    const ac = new AbortController();
    const p = resolveA("slow.test", { servers, signal: ac.signal, timeoutMs: 60000 });
    ac.abort();
    await assert.rejects(p, DnsTemporaryError);
  });
});

Deno.test("dns: truncated UDP answer is retried over TCP", async () => {
  const dns = await startDnsServer(structuredClone(ZONES), { port: 0 });
  try {
    const servers = [{ address: dns.address, port: dns.port }];
    assert.deepEqual((await resolveA("big.test", { servers })).ips, ["198.51.100.7"]);
    assert.deepEqual((await resolveTxt("big.test", { servers })).texts, ["via tcp"]);
    assert.deepEqual(
      dns.queries.filter((q) => q.name === "big.test" && q.type === RTYPE.A).map((q) => q.proto),
      ["udp", "tcp"],
    );
  } finally {
    await dns.close();
  }
});

Deno.test("dns: unreachable server is a temporary error", async () => {
  // Bind then close a server so nothing listens at its address.
  const dns = await startDnsServer({}, { port: 0 });
  const servers = [{ address: dns.address, port: dns.port }];
  await dns.close();
  await assert.rejects(resolveA("host.test", { servers, timeoutMs: 500 }), DnsTemporaryError);
});

Deno.test("dns: second server answers when the first is silent", async () => {
  const good = await startDnsServer(structuredClone(ZONES), { port: 0 });
  const silent = await startDnsServer({ "*.test": { behaviour: "timeout" } }, { port: 0 });
  silent.zones["host.test"] = { behaviour: "timeout" };
  try {
    const servers = [
      { address: silent.address, port: silent.port },
      { address: good.address, port: good.port },
    ];
    assert.deepEqual((await resolveA("host.test", { servers, timeoutMs: 5000 })).ips, [
      "192.0.2.1",
      "192.0.2.2",
    ]);
  } finally {
    await good.close();
    await silent.close();
  }
});

Deno.test("dns: cache answers within TTL, is bounded, caches negatives per SOA", async () => {
  const dns = await startDnsServer(structuredClone(ZONES), { port: 0, negativeTtl: 30 });
  try {
    const servers = [{ address: dns.address, port: dns.port }];
    let now = 1_000_000;
    const cache = new DnsCache(2, () => now);
    await resolveTxt("2.0.0.127.rbl.test", { servers, cache });
    await resolveTxt("2.0.0.127.rbl.test", { servers, cache });
    assert.equal(dns.queries.length, 1);
    now += 61_000; // past the 60 s TTL
    await resolveTxt("2.0.0.127.rbl.test", { servers, cache });
    assert.equal(dns.queries.length, 2);
    // negative answer kept for the SOA minimum
    assert.deepEqual((await resolveA("nowhere.test", { servers, cache })).ips, []);
    assert.deepEqual((await resolveA("nowhere.test", { servers, cache })).ips, []);
    assert.equal(dns.queries.length, 3);
    // bounded: a third name evicts the oldest
    await resolveA("host.test", { servers, cache });
    assert.equal(cache.size, 2);
    // concurrent askers share one query
    cache.clear();
    const before = dns.queries.length;
    const both = await Promise.all([
      resolveA("host.test", { servers, cache }),
      resolveA("host.test", { servers, cache }),
    ]);
    assert.deepEqual(both[0], both[1]);
    assert.equal(dns.queries.length, before + 1);
    // temporary failures are not cached
    await assert.rejects(resolveA("fail.test", { servers, cache }), DnsTemporaryError);
    await assert.rejects(resolveA("fail.test", { servers, cache }), DnsTemporaryError);
    assert.equal(dns.queries.filter((q) => q.name === "fail.test").length, 2);
  } finally {
    await dns.close();
  }
});

Deno.test("dns: $DNSCACHEIP on port 53 (as the C tools use it)", async () => {
  const dns = await startDnsServer(structuredClone(ZONES)); // 127.53.x.y:53
  const saved = Deno.env.get("DNSCACHEIP");
  try {
    Deno.env.set("DNSCACHEIP", dns.address);
    assert.deepEqual((await resolveA("host.test")).ips, ["192.0.2.1", "192.0.2.2"]);
    assert.equal(dns.port, 53);
  } finally {
    if (saved === undefined) Deno.env.delete("DNSCACHEIP");
    else Deno.env.set("DNSCACHEIP", saved);
    await dns.close();
  }
});

// ---------------------------------------------------------------- hostile answers (issue 9)

const big = LONG_LABEL;
const EVIL = evilEntry();

/** The hostile zones: raw-byte names and texts, planted records, forged replies. */
function hostileZones(): Zones {
  return {
    ...hostilePtrZones(),
    "x\\000injected\\075yes.example": { A: ["127.0.0.11"] },
    "rfc2317.test": { CNAME: "11.0-25.0.0.127.in-addr.arpa" },
    "11.0-25.0.0.127.in-addr.arpa": { PTR: ["classless.example"] },
    "planted.test": {
      A: ["192.0.2.7"],
      extra: [
        { owner: "victim.example", type: "A", value: "192.0.2.66" },
        { owner: "planted.test", type: "A", value: "192.0.2.67", class: 3 },
      ],
    },
    "txt.test": {
      TXT: [Uint8Array.from([5, 0, 0x3d, 10, 0x80, 0x9f, 3, 0xe4, 0xff, 0x81])],
    },
    "forged.test": {
      A: ["192.0.2.1"],
      forged: [
        { kind: "source", entry: EVIL },
        { kind: "id", entry: EVIL },
        { kind: "question", entry: EVIL, name: "evil.example" },
      ],
    },
    "onlyforged.test": {
      behaviour: "timeout",
      forged: [
        { kind: "source", entry: EVIL },
        { kind: "id", entry: EVIL },
        { kind: "question", entry: EVIL, name: "onlyforged.test.evil" },
      ],
    },
    "tcpforged.test": { A: ["192.0.2.1"], behaviour: "truncate", tcpQuestion: "evil.example" },
    ...v4OnlyZone(),
    "v6only.test": { AAAA: ["::1"], typeBehaviour: { A: "servfail" } },
    "neither.test": { A: [], typeBehaviour: { AAAA: "servfail" } },
  };
}

Deno.test("dns: toDot escapes as djbdns's dns_domain_todot_cat; fromDot reads it back", () => {
  assert.equal(toDot(wireName("x\0INJECTED=yes", "Example")), "x\\000injected\\075yes.example");
  assert.equal(toDot(wireName("a.b", "c-d_e", "\xff\n")), "a\\056b.c-d_e.\\377\\012");
  assert.equal(toDot(new Uint8Array([0])), ".");
  for (const name of ["x\\000injected\\075yes.example", "a\\056b.c", "\\377\\134"]) {
    assert.equal(toDot(fromDot(name)), name);
  }
  assert.deepEqual(fromDot("A\\056b\\1\\12x\\"), wireName("A.b\x01\nx"));
  assert.deepEqual(fromDot("a..b."), wireName("a", "b"));
  assert.throws(() => fromDot(`${"a".repeat(64)}.test`), DnsProtocolError);
  assert.throws(() => fromDot([big, big, big, big].join(".")), DnsProtocolError);
  assert.equal(fromDot([big, big, big, "a".repeat(61)].join(".")).length, 255);
  assert.equal(nameEqual(fromDot("HOST.test"), fromDot("host.TEST")), true);
  assert.equal(nameEqual(fromDot("h\\304"), fromDot("h\\344")), false); // only ASCII folds
});

Deno.test("dns: hostile PTR names come back escaped, bounded, or not at all", async () => {
  const dns = await startDnsServer(hostileZones(), { port: 0 });
  const servers = [{ address: dns.address, port: dns.port }];
  try {
    const ptr = (ip: string) => resolvePtr(ip, { servers });
    assert.deepEqual(await ptr("127.0.0.11"), ["x\\000injected\\075yes.example"]);
    assert.deepEqual(await ptr("127.0.0.12"), [
      "a\\012b\\033c\\015d\\040e\\072f\\045g\\134h.example",
    ]);
    assert.deepEqual(await ptr("127.0.0.13"), ["\\344\\366\\374\\200\\237\\377.test"]);
    assert.deepEqual(await ptr("127.0.0.14"), ["evil\\056com.x"]);
    await assert.rejects(ptr("127.0.0.15"), DnsProtocolError); // 256 bytes
    assert.deepEqual(await ptr("127.0.0.16"), [[big, big, big, "a".repeat(61)].join(".")]);
    assert.deepEqual(await ptr("127.0.0.17"), ["."]);
    await assert.rejects(ptr("127.0.0.18"), DnsProtocolError); // pointer loop
    // the escaped name is queried as its original bytes (tcpserver -p)
    assert.deepEqual(await resolveAddrs("x\\000injected\\075yes.example", { servers, family: 4 }), [
      "127.0.0.11",
    ]);
    assert.equal(dns.queries.at(-1)!.name, "x\0injected=yes.example");
    // RFC 2317: a PTR reached through a CNAME in the answer
    const viaCname = await lookup("rfc2317.test", RTYPE.PTR, { servers });
    assert.deepEqual(viaCname.values, ["classless.example"]);
  } finally {
    await dns.close();
  }
});

Deno.test("dns: TXT data is the byte string of the bytes sent (no windows-1252)", async () => {
  const dns = await startDnsServer(hostileZones(), { port: 0 });
  try {
    const t = await resolveTxt("txt.test", { servers: [{ address: dns.address, port: dns.port }] });
    assert.deepEqual(t.texts, ["\0=\n\x80\x9f\xe4\xff\x81"]);
  } finally {
    await dns.close();
  }
});

Deno.test("dns: forged replies (other source, wrong id, other question, TCP) are not used or cached", async () => {
  const dns = await startDnsServer(hostileZones(), { port: 0 });
  const servers = [{ address: dns.address, port: dns.port }];
  const cache = new DnsCache();
  try {
    // forged replies arrive first; the real one is still taken
    assert.deepEqual((await resolveA("forged.test", { servers, cache })).ips, ["192.0.2.1"]);
    // nothing but forged replies: the lookup times out and nothing is cached
    await assert.rejects(
      resolveA("onlyforged.test", { servers, cache, timeoutMs: 1200 }),
      DnsTemporaryError,
    );
    assert.equal(cache.size, 1);
    dns.zones["onlyforged.test"] = { A: ["192.0.2.2"] };
    assert.deepEqual((await resolveA("onlyforged.test", { servers, cache })).ips, ["192.0.2.2"]);
    // over TCP, an answer to another question fails the lookup
    await assert.rejects(resolveA("tcpforged.test", { servers }), DnsTemporaryError);
    // records owned by other names, or of another class, are ignored
    assert.deepEqual((await resolveA("planted.test", { servers })).ips, ["192.0.2.7"]);
  } finally {
    await dns.close();
  }
});

Deno.test("dns: query ids come from the CSPRNG (not Math.random)", async () => {
  const dns = await startDnsServer(structuredClone(ZONES), { port: 0 });
  const random = Math.random;
  Math.random = () => 0.5;
  try {
    const servers = [{ address: dns.address, port: dns.port }];
    for (let i = 0; i < 8; i++) await resolveA("host.test", { servers });
    assert.ok(new Set(dns.queries.map((q) => q.id)).size > 1, "every query had the same id");
  } finally {
    Math.random = random;
    await dns.close();
  }
});

Deno.test("dns: resolveAddrs uses the family that answered; fails only when all failed", async () => {
  const dns = await startDnsServer(hostileZones(), { port: 0 });
  const servers = [{ address: dns.address, port: dns.port }];
  try {
    assert.deepEqual(await resolveAddrs("v4only.test", { servers }), ["127.0.0.1"]);
    assert.deepEqual(await resolveAddrs("v6only.test", { servers }), ["::1"]);
    await assert.rejects(resolveAddrs("v4only.test", { servers, family: 6 }), DnsTemporaryError);
    await assert.rejects(resolveAddrs("neither.test", { servers }), DnsTemporaryError);
    await assert.rejects(resolveAddrs(`${"a".repeat(64)}.test`, { servers }), DnsProtocolError);
  } finally {
    await dns.close();
  }
});

Deno.test("dns: the cache forgets the oldest stored answer first; storing again renews", () => {
  let now = 0;
  const cache = new DnsCache(2, () => now);
  const answer = (v: string) => ({ values: [v], ttl: 60 });
  cache.set("a", answer("1"));
  cache.set("b", answer("2"));
  cache.set("a", answer("3")); // a is now the newest
  cache.set("c", answer("4")); // evicts b
  assert.equal(cache.size, 2);
  assert.equal(cache.get("b"), undefined);
  assert.deepEqual(cache.get("a")?.values, ["3"]);
  assert.deepEqual(cache.get("c")?.values, ["4"]);
  cache.set("zero", { values: ["x"], ttl: 0 }); // TTL 0: not stored, nothing evicted
  assert.equal(cache.size, 2);
  now = 60_000;
  assert.equal(cache.get("a"), undefined); // expired
  const none = new DnsCache(0);
  none.set("a", answer("1"));
  assert.equal(none.size, 0);
});
