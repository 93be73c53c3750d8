import assert from "node:assert/strict";
import {
  canonicalIp,
  formatIp6,
  isV4Mapped,
  mapV4,
  maskBits,
  networkKey,
  parseIp4,
  parseIp4Loose,
  parseIp6,
  unmapV4,
} from "../../lib/net/ip.ts";
import { Cdb, makeCdb } from "../../lib/rules/cdb.ts";
import { compileRules, RuleSyntaxError } from "../../lib/rules/compile.ts";
import { findRule, lookupRules, type RuleDecision, ruleItems } from "../../lib/rules/lookup.ts";
import { RulesFile } from "../../lib/rules/rules_file.ts";
import { tempDir } from "../support/helpers.ts";

const dec = new TextDecoder();
const show = (recs: Array<[Uint8Array, Uint8Array]>) =>
  recs.map(([k, d]) => [dec.decode(k), dec.decode(d)]);

// ---------------------------------------------------------------- addresses

Deno.test("addr: strict and loose IPv4", () => {
  assert.deepEqual(parseIp4("1.2.3.4"), Uint8Array.of(1, 2, 3, 4));
  assert.deepEqual(parseIp4("255.255.255.255"), Uint8Array.of(255, 255, 255, 255));
  for (
    const bad of [
      "1.2.3",
      "1.2.3.4.",
      "1.2.3.256",
      "1..3.4",
      "a.b.c.d",
      "1.2.3.4 ",
      "0001.2.3.4",
      "",
    ]
  ) {
    assert.equal(parseIp4(bad), null, bad);
  }
  assert.deepEqual(parseIp4Loose("[127.0.0.1]"), Uint8Array.of(127, 0, 0, 1));
  assert.deepEqual(parseIp4Loose("127.000.000.001"), Uint8Array.of(127, 0, 0, 1));
  assert.deepEqual(parseIp4Loose("0000010.0.0.1"), Uint8Array.of(10, 0, 0, 1));
  for (const bad of ["[1.2.3.4", "1.2.3.4]", "1.2.3", "1.2.3.300", "1.2.3.x", "[]"]) {
    assert.equal(parseIp4Loose(bad), null, bad);
  }
});

Deno.test("addr: IPv6 parsing and RFC 5952 canonical form", () => {
  const cases: Array<[string, string]> = [
    ["::", "::"],
    ["::1", "::1"],
    ["1::", "1::"],
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // first of equal runs
    ["2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:db8::ff00:42:8329"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], // a single zero group stays
    ["fe80::a:b:cd:1234", "fe80::a:b:cd:1234"],
    ["::ffff:1.2.3.4", "::ffff:1.2.3.4"],
    ["::ffff:0102:0304", "::ffff:1.2.3.4"],
    ["1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"],
  ];
  for (const [text, canon] of cases) {
    const b = parseIp6(text);
    assert.ok(b, text);
    assert.equal(formatIp6(b), canon, text);
  }
  for (
    const bad of [
      ":",
      ":::",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      "12345::",
      "1:2:3:4:5:6:7:8::",
      ":1::",
      "1:",
      "g::",
      "::1.2.3",
      "1:2:3:4:5:6:7:1.2.3.4",
      "[::1]",
    ]
  ) {
    assert.equal(parseIp6(bad), null, bad);
  }
});

Deno.test("addr: IPv4-mapped detection, unmapping, canonicalIp, masks and network keys", () => {
  const m = parseIp6("::ffff:10.1.2.3")!;
  assert.ok(isV4Mapped(m));
  assert.ok(!isV4Mapped(parseIp6("::10.1.2.3")!));
  assert.deepEqual(unmapV4(m), Uint8Array.of(10, 1, 2, 3));
  assert.deepEqual(mapV4(Uint8Array.of(10, 1, 2, 3)), m);
  assert.equal(canonicalIp("::FFFF:10.1.2.3"), "10.1.2.3");
  assert.equal(canonicalIp("2001:DB8::0:1"), "2001:db8::1");
  assert.equal(canonicalIp("nonsense"), null);
  assert.deepEqual(
    maskBits(Uint8Array.of(255, 255, 255, 255), 20),
    Uint8Array.of(255, 255, 240, 0),
  );
  assert.deepEqual(maskBits(Uint8Array.of(1, 2, 3, 4), 0), Uint8Array.of(0, 0, 0, 0));
  assert.equal(networkKey("1.2.3.4"), "1.2.3.0/24");
  assert.equal(networkKey("::ffff:1.2.3.4"), "1.2.3.0/24");
  assert.equal(networkKey("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  assert.equal(networkKey("2001:db8:1:2:3:4:5:6", 24, 48), "2001:db8:1::/48");
});

// ---------------------------------------------------------------- compiling

Deno.test("rules: DJB's records, as C tcprules writes them (checked with cdb -d)", () => {
  const text = [
    "1:allow",
    "2:deny",
    "3:deny,A=:x:",
    "127.0.0.1:allow,which=/first/",
    "4:allow,Z,Y=/a/", // C: the name runs to the "="
    "5:allow,=/x/",
    "6:allow,,A=/x/",
    "7:deny,A=xx,B=yy",
    "8:allow,A=/a,b/",
    'ABC:allow,X="Y"', // no case folding
    " 9 :allow  \t", // trailing blanks go, leading stay
    "# comment:deny",
    "  #x:deny",
    "",
    "no colon is ignored",
    "joe@1.2-3.4:allow", // "@": no range
    "=a-b:allow",
    "1.2.3.37-40:allow",
    "127.0-2.:deny",
    "5-2.:allow", // bot > top: nothing
    "300-302.1:allow", // beyond 255: nothing
    "1.2.254-300:deny", // top capped at 255
    "1.2.3.-1:deny", // empty bot = 0
    "01.2.3.04-05:deny", // numbers printed plainly
    "1.2.3.4-5.6-7:deny", // only the first dash
    ":deny",
  ].join("\n");
  assert.deepEqual(show(compileRules(text)), [
    ["1", ""],
    ["2", "D\0"],
    ["3", "D\0+A=x\0"],
    ["127.0.0.1", "+which=first\0"],
    ["4", "+Z,Y=a\0"],
    ["5", "+=x\0"],
    ["6", "+,A=x\0"],
    ["7", "D\0+A=\0+B=\0"],
    ["8", "+A=a,b\0"],
    ["ABC", "+X=Y\0"],
    [" 9 ", ""],
    ["  #x", "D\0"],
    ["joe@1.2-3.4", ""],
    ["=a-b", ""],
    ["1.2.3.37", ""],
    ["1.2.3.38", ""],
    ["1.2.3.39", ""],
    ["1.2.3.40", ""],
    ["127.0.", "D\0"],
    ["127.1.", "D\0"],
    ["127.2.", "D\0"],
    ["1.2.254", "D\0"],
    ["1.2.255", "D\0"],
    ["1.2.3.0", "D\0"],
    ["1.2.3.1", "D\0"],
    ["01.2.3.4", "D\0"],
    ["01.2.3.5", "D\0"],
    ["1.2.3.4.6-7", "D\0"],
    ["1.2.3.5.6-7", "D\0"],
    ["", "D\0"],
  ]);
});

Deno.test("rules: DJB's syntax errors (message shows the stripped line up to a NUL)", () => {
  const bad = [
    "1:allowx",
    "1:",
    "1:denyallow",
    "1:allow,A=",
    "1:allow,A=/",
    "1:allow,A==",
    '1:allow,A="y',
    "1:allow,A=/x/,",
    "1:allow,A=/x/B=/y/",
    "1:allow\r",
    "1.2.3.4-5x:deny",
    "1.2.3.x4-5:deny",
    "1-2-3:deny",
    "b:a@1-2:deny",
  ];
  for (const line of bad) {
    assert.throws(() => compileRules(line + "  "), (e) => {
      assert.ok(e instanceof RuleSyntaxError, line);
      assert.equal(e.message, `unable to parse this line: ${line}`);
      return true;
    });
  }
  assert.throws(() => compileRules("x:deny\0y"), /unable to parse this line: x:deny$/);
});

Deno.test("rules: our unset form, only where DJB's tcprules has no meaning", () => {
  assert.deepEqual(show(compileRules("1:allow,X=/y/,Z")), [["1", "+X=y\0-Z\0"]]);
  assert.deepEqual(show(compileRules("1:deny,A,B")), [["1", "D\0-A\0-B\0"]]);
  // With an "=" later on the line DJB's meaning stands.
  assert.deepEqual(show(compileRules("1:allow,A,B=/x/")), [["1", "+A,B=x\0"]]);
  assert.throws(() => compileRules("1:allow,A,,B"), RuleSyntaxError);
  assert.throws(() => compileRules("1:allow,"), RuleSyntaxError);
});

Deno.test("rules: CIDR and IPv6 rules compile to canonical keys plus prefix-length lists", () => {
  const text = [
    "10.0.0.0/8:deny",
    "127.0/8:allow,X=/y/", // missing parts are zero
    "192.168.3.0/24:allow",
    "0.0.0.0/0:deny",
    "10.0.0.0/8:allow", // a repeat: the first stays in force
    "2001:db8::/32:deny",
    "2001:DE01:2:3:4:a:b:c:deny",
    "::1:allow",
    "2001:db8::deny", // the rule's colon is the second of "::"
    "::ffff:1.2.3.4:deny,A=/b/", // IPv4-mapped = IPv4
    "::ffff:10.0.0.0/104:deny", // = 10.0.0.0/8
    "joe@2001:db8::1:allow",
    "fe80::a:b:cd:1234:allow,X=/a:deny/",
  ].join("\n");
  assert.deepEqual(show(compileRules(text)), [
    ["10.0.0.0/8", "D\0"],
    ["127.0.0.0/8", "+X=y\0"],
    ["192.168.3.0/24", ""],
    ["0.0.0.0/0", "D\0"],
    ["10.0.0.0/8", ""],
    ["2001:db8::/32", "D\0"],
    ["2001:de01:2:3:4:a:b:c", "D\0"],
    ["::1", ""],
    ["2001:db8::", "D\0"],
    ["1.2.3.4", "D\0+A=b\0"],
    ["10.0.0.0/8", "D\0"],
    ["joe@2001:db8::1", ""],
    ["fe80::a:b:cd:1234", "+X=a:deny\0"],
    ["cidr:v4", "\x18\x08\x00"],
    ["cidr:v6", "\x20"],
  ]);
  for (
    const bad of [
      "10.1.0.0/8:deny", // bits set beyond the prefix
      "10.0.0.1/31:deny",
      "10.0.0.0/33:deny",
      "10.0.0.0/:deny",
      "10.0.0.0/8x:deny",
      "1.2.3.4.5/8:deny",
      "x/8:deny",
      "2001:db8::1/32:deny",
      "2001:db8::/129:deny",
      "joe@2001:db8::/32:deny",
      "2001:zz::1:deny",
      "=h:o:st:allow",
    ]
  ) {
    assert.throws(() => compileRules(bad), RuleSyntaxError, bad);
  }
});

// ---------------------------------------------------------------- lookup

function rulesGet(text: string): (k: string) => Uint8Array | null {
  const cdb = new Cdb(makeCdb(compileRules(text)));
  return (k) => cdb.get(k);
}

const ORDER = [
  "joe@1.2.3.4:allow,S=/info@ip/",
  "joe@=h.example.com:allow,S=/info@=host/",
  "1.2.3.4:allow,S=/ip/",
  "=h.example.com:allow,S=/=host/",
  "1.2.3.:allow,S=/1.2.3./",
  "1.2.:allow,S=/1.2./",
  "1.:allow,S=/1./",
  "1.2.3.0/24:allow,S=/cidr24/",
  "1.0.0.0/8:allow,S=/cidr8/",
  "=.example.com:allow,S=/=.example.com/",
  "=.com:allow,S=/=.com/",
  "=:allow,S=/=/",
  ":allow,S=/empty/",
].join("\n");

function step(d: RuleDecision): string | null {
  return d.env.find(([n]) => n === "S")?.[1] ?? null;
}

Deno.test("rules: lookup follows DJB's order, CIDR after the dotted prefixes", () => {
  // Remove rules one by one from the top: each time the next step must answer.
  const lines = ORDER.split("\n");
  const expect = [
    "info@ip",
    "info@=host",
    "ip",
    "=host",
    "1.2.3.",
    "1.2.",
    "1.",
    "cidr24",
    "cidr8",
    "=.example.com",
    "=.com",
    "=",
    "empty",
  ];
  for (let i = 0; i < lines.length; i++) {
    const get = rulesGet(lines.slice(i).join("\n"));
    const d = lookupRules(get, "1.2.3.4", "h.example.com", "joe");
    assert.equal(step(d), expect[i], `without the first ${i} rules`);
    assert.equal(d.allow, true);
  }
  const none = lookupRules(rulesGet("9.9.9.9:deny"), "1.2.3.4", "h.example.com", "joe");
  assert.deepEqual(none, { rule: null, allow: true, env: [] });
});

Deno.test("rules: host and info steps only when known; '' is a value", () => {
  const get = rulesGet(ORDER);
  // No host (tcpserver -H): =host, =.suffix and = are not tried.
  assert.equal(step(lookupRules(get, "9.9.9.9", undefined, "joe")), "empty");
  assert.equal(step(lookupRules(get, "9.9.9.9", "x.example.com")), "=.example.com");
  assert.equal(step(lookupRules(get, "9.9.9.9", "")), "=");
  // Info other than joe: straight to the ip.
  assert.equal(step(lookupRules(get, "1.2.3.4", "h.example.com", "bill")), "ip");
  assert.equal(lookupRules(rulesGet("@1.2.3.4:deny"), "1.2.3.4", undefined, "").allow, false);
});

Deno.test("rules: CIDR longest prefix first, IPv6, and IPv4-mapped peers meet IPv4 rules", () => {
  const get = rulesGet([
    "10.0.0.0/8:deny",
    "10.1.0.0/16:allow,N=/16/",
    "10.1.2.0/24:deny",
    "2001:db8::/32:deny",
    "2001:db8:1::/48:allow,N=/48/",
    "2001:db8:1::7:deny",
    "::ffff:192.0.2.0/120:deny",
    "127.:allow",
  ].join("\n"));
  const d = (ip: string) => lookupRules(get, ip);
  assert.equal(d("10.9.9.9").allow, false);
  assert.equal(d("10.9.9.9").rule, "10.0.0.0/8");
  assert.deepEqual(d("10.1.9.9"), { rule: "10.1.0.0/16", allow: true, env: [["N", "16"]] });
  assert.equal(d("10.1.2.3").allow, false);
  assert.equal(d("11.0.0.1").rule, null);
  // IPv4-mapped IPv6 cannot bypass an IPv4 deny.
  assert.equal(d("::ffff:10.1.2.3").allow, false);
  assert.equal(d("::FFFF:10.1.2.3").rule, "10.1.2.0/24");
  assert.equal(d("::ffff:127.0.0.1").rule, "127.");
  assert.equal(d("192.0.2.77").rule, "192.0.2.0/24");
  assert.equal(d("2001:db8:ffff::1").allow, false);
  assert.equal(d("2001:db8:1:0::9").rule, "2001:db8:1::/48");
  assert.equal(d("2001:DB8:1:0:0:0:0:7").rule, "2001:db8:1::7");
  assert.equal(d("2001:db9::1").rule, null);
  // A non-address ip simply misses the CIDR step.
  assert.equal(d("not-an-ip").rule, null);
});

Deno.test("rules: items and decisions as tcprulescheck and tcpserver read them", () => {
  const enc = new TextEncoder();
  assert.deepEqual(ruleItems(enc.encode("+A=b\0D\0+C=d\0")), [
    { kind: "set", text: "A=b" },
    { kind: "deny" },
  ]);
  assert.deepEqual(ruleItems(enc.encode("+A=b\0X\0-C\0+Q")), [
    { kind: "set", text: "A=b" },
    { kind: "unset", name: "C" },
  ]);
  assert.deepEqual(ruleItems(enc.encode("D")), []); // unterminated: ignored
  const get = (k: string) => (k === "" ? enc.encode("+A=b=c\0+NOEQ\0-U\0") : null);
  assert.deepEqual(lookupRules(get, "1.2.3.4"), {
    rule: "",
    allow: true,
    env: [["A", "b=c"], ["U", null]],
  });
  assert.equal(findRule(get, "1.2.3.4")?.key, "");
});

// ---------------------------------------------------------------- RulesFile

Deno.test("rules: RulesFile keeps the cdb in memory and reloads when tcprules renames a new one over it", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir.path}/rules.cdb`;
    const rf = new RulesFile(path, { checkIntervalMs: 0 });
    assert.equal(await rf.lookup("1.2.3.4"), "missing");
    const install = async (text: string) => {
      await Deno.writeFile(`${path}.tmp`, makeCdb(compileRules(text)));
      await Deno.rename(`${path}.tmp`, path);
    };
    await install("1.2.3.4:deny");
    assert.equal((await rf.lookup("1.2.3.4") as RuleDecision).allow, false);
    await install("1.2.3.4:allow,X=/1/");
    assert.deepEqual(await rf.lookup("1.2.3.4"), {
      rule: "1.2.3.4",
      allow: true,
      env: [["X", "1"]],
    });
    // Within the check interval the file is not looked at again.
    const slow = new RulesFile(path, { checkIntervalMs: 3_600_000 });
    assert.equal((await slow.lookup("1.2.3.4") as RuleDecision).allow, true);
    await install("1.2.3.4:deny");
    assert.equal((await slow.lookup("1.2.3.4") as RuleDecision).allow, true);
    assert.equal((await rf.lookup("1.2.3.4") as RuleDecision).allow, false);
    // A corrupt file throws (tcpserver drops the connection), a removed one is "missing".
    await Deno.writeFile(`${path}.tmp`, new Uint8Array(10));
    await Deno.rename(`${path}.tmp`, path);
    await assert.rejects(rf.lookup("1.2.3.4"), /protocol error/);
    await Deno.remove(path);
    assert.equal(await rf.lookup("1.2.3.4"), "missing");
    rf.close();
    slow.close();
  } finally {
    await dir.cleanup();
  }
});
