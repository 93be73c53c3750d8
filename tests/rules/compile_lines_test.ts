/**
 * RuleCompiler.lines (tcprules' chunked fast path) against line() on each
 * line: the same records in the same order, the same RuleSyntaxError, the
 * same line number, for random rules text full of the cases the fast path
 * hands back to line() (trailing blanks, unsets, long values, odd quotes).
 */
import assert from "node:assert/strict";
import { byteString, stringBytes } from "../../lib/core/bytes.ts";
import { RuleCompiler, RuleSyntaxError } from "../../lib/rules/compile.ts";
import { prng } from "../support/helpers.ts";

type Result = { records: string[]; error: string | null; lineCount: number };

function record(records: string[]) {
  return (k: Uint8Array, d: Uint8Array) => records.push(`${byteString(k)} -> ${byteString(d)}`);
}

/** Each line through line(), as tcprules did before lines() existed. */
function perLine(b: Uint8Array): Result {
  const records: string[] = [];
  const c = new RuleCompiler(record(records));
  let error: string | null = null;
  try {
    let s = 0;
    while (s < b.length) {
      let e = b.indexOf(10, s);
      if (e < 0) e = b.length;
      c.line(b, s, e);
      s = e + 1;
    }
    c.finish();
  } catch (e) {
    if (!(e instanceof RuleSyntaxError)) throw e;
    error = e.message;
  }
  return { records, error, lineCount: c.lineCount };
}

/** The input cut into chunks at `cuts`, each chunk's complete lines through lines(). */
function chunked(b: Uint8Array, cuts: number[]): Result {
  const records: string[] = [];
  const c = new RuleCompiler(record(records));
  let error: string | null = null;
  try {
    let pending = new Uint8Array(0);
    for (const [i, end] of [...cuts, b.length].entries()) {
      const from = i === 0 ? 0 : cuts[i - 1];
      const buf = new Uint8Array(pending.length + end - from);
      buf.set(pending);
      buf.set(b.subarray(from, end), pending.length);
      pending = buf.slice(c.lines(buf, 0, buf.length));
    }
    if (pending.length) c.line(pending, 0, pending.length);
    c.finish();
  } catch (e) {
    if (!(e instanceof RuleSyntaxError)) throw e;
    error = e.message;
  }
  return { records, error, lineCount: c.lineCount };
}

const PIECES = [
  "1.2.3.4",
  "10.",
  "1.2.3.37-53",
  "10.2-3.",
  "10.0.0.0/8",
  "127.0/8",
  "2001:db8::",
  "::1",
  "joe@",
  "=host.example",
  "=",
  ":",
  ":allow",
  ":deny",
  "allow",
  "deny",
  ",",
  ",X",
  ",X=",
  '"',
  "/",
  "+",
  "=",
  "@",
  "-",
  "y",
  " ",
  "\t",
  "\0",
  "\xff",
  "#",
  "\r",
  "x".repeat(300),
];

const GOOD = [
  "1.2.3.4:deny",
  '1.2.3.4:allow,RELAYCLIENT=""',
  "1.2.3.4:allow,X=/y/,Y=+z+",
  "10.:allow,A,B",
  "1.2.3.37-53:allow,W==x=",
  "10.0.0.0/8:deny",
  "2001:db8::/32:deny",
  "2001:db8::deny",
  "=.example.com:allow",
  "joe@1.2.3.4:deny",
  "# comment",
  "",
  "no colon here",
  `1:allow,LONG="${"v".repeat(700)}"`,
];

function randomText(rand: () => number): Uint8Array {
  const lines: string[] = [];
  const n = 1 + Math.floor(rand() * 12);
  for (let i = 0; i < n; i++) {
    let line = rand() < 0.5 ? GOOD[Math.floor(rand() * GOOD.length)] : "";
    const k = rand() < 0.5 ? 0 : 1 + Math.floor(rand() * 8);
    for (let j = 0; j < k; j++) line += PIECES[Math.floor(rand() * PIECES.length)];
    if (rand() < 0.2) line += rand() < 0.5 ? " " : "\t ";
    lines.push(line);
  }
  return stringBytes(lines.join("\n") + (rand() < 0.7 ? "\n" : ""));
}

Deno.test("RuleCompiler.lines: the records, errors and line numbers of line() per line", () => {
  const rand = prng(20240611);
  for (let iter = 0; iter < 3000; iter++) {
    const b = randomText(rand);
    const cuts: number[] = [];
    for (let at = 0; at < b.length;) {
      at += 1 + Math.floor(rand() * 40);
      if (at < b.length) cuts.push(at);
    }
    const want = perLine(b);
    assert.deepEqual(chunked(b, []), want, byteString(b));
    assert.deepEqual(chunked(b, cuts), want, byteString(b));
  }
});

Deno.test("RuleCompiler.lines: returns where the unfinished line begins", () => {
  const records: string[] = [];
  const c = new RuleCompiler(record(records));
  const b = stringBytes("1.2.3.4:deny\n5.6.7.8:all");
  assert.equal(c.lines(b), 13);
  assert.equal(c.lines(b, 13), 13);
  assert.equal(c.lineCount, 1);
  assert.deepEqual(records, ["1.2.3.4 -> D\0"]);
  // trailing blanks are trimmed as line() trims them
  assert.equal(c.lines(stringBytes('1:allow,X="a b" \t\n')), 18);
  assert.deepEqual(records.slice(1), ["1 -> +X=a b\0"]);
});
