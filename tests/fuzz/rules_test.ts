/**
 * Fuzz: the rules compiler on random and mutated rules text, then lookups of
 * random addresses, hosts and infos in the resulting cdb. Only
 * RuleSyntaxError may be thrown (per line, as tcprules stops at it); every
 * decision's names and values are byte strings.
 */
import { byteString, stringBytes } from "../../lib/core/bytes.ts";
import { Cdb, makeCdb } from "../../lib/rules/cdb.ts";
import { lookupRules, RuleCompiler, RuleSyntaxError } from "../../lib/rules/rules.ts";
import { prng } from "../support/helpers.ts";
import { below, type FuzzTarget, fuzzTest, type Rand, randomBytes } from "../support/fuzz.ts";

const LINES = [
  '1.2.3.4:allow,U="\xe4\xf6\xfc"',
  '127.:allow,RELAYCLIENT=""',
  "10.0.0.0/8:deny",
  "127.0/8:allow,X=/y/",
  '192.168.3.0/24:allow,A="1",B=+2+',
  "2001:db8::/32:deny",
  "::ffff:10.0.0.0/104:allow",
  "2001:db8::deny",
  "joe@2001:db8::1:allow",
  "1.2.3.37-53:allow,W==x=",
  "10.2-3.:deny",
  "joe@1.2.3.4:deny",
  "info@=host.example:allow",
  '=.example.com:allow,H="\x85\x9f\xff"',
  "=:deny",
  ":allow,,UNSET,OTHER",
  "# comment",
  "no colon here",
  "0.0.0.0/0:allow",
];

const PIECES = [
  "1",
  "2",
  "255",
  "256",
  "0",
  ".",
  ":",
  "::",
  "/",
  "-",
  "@",
  "=",
  ",",
  '"',
  "allow",
  "deny",
  "ffff",
  "db8",
  "x",
  "\x00",
  "\xff",
  "\t",
  " ",
  "\xe4",
  "%",
  "#",
  "99999999999999999999",
];

function generate(rand: Rand): Uint8Array {
  const lines: string[] = [];
  const n = 1 + below(rand, 6);
  for (let i = 0; i < n; i++) {
    if (rand() < 0.5) lines.push(LINES[below(rand, LINES.length)]);
    else {
      let l = "";
      const k = 1 + below(rand, 12);
      for (let j = 0; j < k; j++) l += PIECES[below(rand, PIECES.length)];
      lines.push(l);
    }
  }
  return stringBytes(lines.join("\n"));
}

/** Addresses, hosts and infos to look up, drawn from the input (so runs reproduce). */
function probes(
  input: Uint8Array,
  rand: Rand,
): Array<[string, string | undefined, string | undefined]> {
  const text = byteString(input);
  const words = text.split(/[\n:,]/).filter((w) => w.length > 0 && w.length < 80);
  const pick = () => words.length ? words[below(rand, words.length)] : "";
  const out: Array<[string, string | undefined, string | undefined]> = [
    ["1.2.3.4", undefined, undefined],
    ["::ffff:10.1.2.3", "host.example", "joe"],
    ["2001:db8::1", "a.example.com", ""],
  ];
  for (let i = 0; i < 8; i++) {
    const ip = rand() < 0.3
      ? `${below(rand, 256)}.${below(rand, 256)}.${below(rand, 256)}.${below(rand, 256)}`
      : rand() < 0.5
      ? pick()
      : byteString(randomBytes(rand, below(rand, 20)));
    out.push([ip, rand() < 0.5 ? pick() : undefined, rand() < 0.3 ? pick() : undefined]);
  }
  return out;
}

export const target: FuzzTarget = {
  name: "rules",
  seeds: [stringBytes(LINES.join("\n")), ...LINES.map(stringBytes)],
  generate,
  run: (input) => {
    const records: Array<[Uint8Array, Uint8Array]> = [];
    const c = new RuleCompiler((k, d) => records.push([k.slice(), d.slice()]));
    let s = 0;
    while (s <= input.length) {
      let e = input.indexOf(10, s);
      if (e < 0) e = input.length;
      try {
        c.line(input, s, e);
      } catch (err) {
        if (!(err instanceof RuleSyntaxError)) throw err;
      }
      s = e + 1;
    }
    c.finish();
    const cdb = new Cdb(makeCdb(records));
    let seed = 0;
    for (const b of input) seed = (seed * 31 + b) >>> 0;
    const rand = prng(seed);
    for (const [ip, host, info] of probes(input, rand)) {
      const d = lookupRules((k) => cdb.get(k), ip, host, info);
      for (const [name, value] of d.env) {
        if (/[^\0-\xff]/.test(name + (value ?? ""))) throw new Error(`not a byte string: ${name}`);
      }
      if (d.rule !== null && cdb.get(d.rule) === null) {
        throw new Error(`rule ${d.rule} not in the cdb`);
      }
    }
  },
  expected: (e) => e instanceof RuleSyntaxError,
};

fuzzTest(target, 3000);
