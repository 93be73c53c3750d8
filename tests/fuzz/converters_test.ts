/**
 * Fuzz: the byte converters that sit on connection data — addcr, delcr,
 * fixcrio's conversion (lib/stages/crlf.ts), and the client tools' `cat -v`
 * and http@ body filter (lib/client/clienttools.ts, fed by whatever a server
 * sends). Each, on random and mutated input cut into random pieces, gives
 * exactly what a plain whole-buffer model of the C tool gives, never throws,
 * and does not depend on where the pieces are cut. Also: a line far longer
 * than any buffer (a hostile server that never sends a newline).
 */
import assert from "node:assert/strict";
import {
  addcrConverter,
  type Converter,
  delcrConverter,
  fixcrConverter,
} from "../../lib/stages/crlf.ts";
import { catvConverter, httpBodyConverter } from "../../lib/client/clienttools.ts";
import { type FuzzTarget, fuzzTest } from "../support/fuzz.ts";
import { prng } from "../support/helpers.ts";

const CR = 13;
const LF = 10;

/** addcr(1): CR before every LF. */
function addcrModel(b: Uint8Array): number[] {
  const out: number[] = [];
  for (const c of b) {
    if (c === LF) out.push(CR);
    out.push(c);
  }
  return out;
}

/** delcr(1): the CR right before an LF removed; a CR ending the input kept. */
function delcrModel(b: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < b.length; i++) {
    if (b[i] === CR && b[i + 1] === LF) continue;
    out.push(b[i]);
  }
  return out;
}

/** fixcrio: CR before each LF not already after a CR. */
function fixcrModel(b: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < b.length; i++) {
    if (b[i] === LF && (i === 0 || b[i - 1] !== CR)) out.push(CR);
    out.push(b[i]);
  }
  return out;
}

/** cat -v: ^X for controls but tab and newline, ^? for DEL, M- for the high half. */
function catvModel(b: Uint8Array): number[] {
  const out: number[] = [];
  for (let c of b) {
    if (c >= 128) {
      out.push(77, 45);
      c -= 128;
      if (c === 127) out.push(94, 63);
      else if (c < 32) out.push(94, c + 64);
      else out.push(c);
      continue;
    }
    if (c === 127) out.push(94, 63);
    else if (c < 32 && c !== 9 && c !== 10) out.push(94, c + 64);
    else out.push(c);
  }
  return out;
}

/** awk '/^$/ { body=1; next } { if (body) print }' (a partial last line printed too). */
function httpBodyModel(b: Uint8Array): number[] {
  const out: number[] = [];
  let body = false;
  let start = 0;
  for (let i = 0; i <= b.length; i++) {
    if (i < b.length && b[i] !== LF) continue;
    if (i === b.length && start === b.length) break;
    const line = b.subarray(start, i);
    if (line.length === 0) body = true;
    else if (body) {
      for (const c of line) out.push(c);
      out.push(LF);
    }
    start = i + 1;
  }
  return out;
}

/** Runs a converter over input cut at `cuts`, gathering the output. */
function convert(make: () => Converter, input: Uint8Array, cuts: number[]): number[] {
  const conv = make();
  const out: number[] = [];
  let at = 0;
  for (const c of [...cuts, input.length]) {
    const end = Math.max(at, Math.min(c, input.length));
    for (const x of conv.push(input.subarray(at, end))) out.push(x);
    at = end;
  }
  for (const x of conv.end()) out.push(x);
  return out;
}

const CONVERTERS: Array<[string, () => Converter, (b: Uint8Array) => number[]]> = [
  ["addcr", addcrConverter, addcrModel],
  ["delcr", delcrConverter, delcrModel],
  ["fixcrio", fixcrConverter, fixcrModel],
  ["cat -v", catvConverter, catvModel],
  ["http@", httpBodyConverter, httpBodyModel],
];

const enc = (s: string) => new TextEncoder().encode(s);

export const target: FuzzTarget = {
  name: "converters",
  seeds: [
    enc("HTTP/1.0 200 OK\r\nA: b\r\n\r\nbody\r\n\r\nmore\n"),
    enc("\r\n\r\r\n\n\r"),
    Uint8Array.from([0, 1, 9, 10, 13, 27, 127, 128, 137, 138, 141, 255, 10, 13]),
    enc("no newline at all"),
    enc("\n\n\nline\rwith\rcrs\r"),
  ],
  maxLength: 2048,
  run: (input) => {
    const n = input.length;
    const cuts = [n >> 3, n >> 2, (n >> 2) + 1, n >> 1, n - 1];
    for (const [name, make, model] of CONVERTERS) {
      const want = model(input);
      const whole = convert(make, input, []);
      const pieces = convert(make, input, cuts);
      const single = convert(make, input, Array.from({ length: Math.min(n, 64) }, (_, i) => i));
      for (const [how, got] of [["whole", whole], ["in pieces", pieces], ["bytewise", single]]) {
        if (
          (got as number[]).length !== want.length ||
          (got as number[]).some((x, i) => x !== want[i])
        ) {
          throw new Error(`${name} ${how}: differs from the model`);
        }
      }
    }
  },
};

fuzzTest(target, 500);

Deno.test("converters: a 3 MB line without a newline goes through each converter whole", () => {
  const rand = prng(7);
  const line = new Uint8Array(3 << 20);
  for (let i = 0; i < line.length; i++) line[i] = 32 + Math.floor(rand() * 90);
  const input = enc("HTTP/1.0 200 OK\r\n\n");
  const all = new Uint8Array(input.length + line.length);
  all.set(input);
  all.set(line, input.length);
  for (const [name, make, model] of CONVERTERS) {
    const got = convert(make, all, [1 << 16, 1 << 20, 2 << 20]);
    assert.equal(got.length, model(all).length, name);
  }
});
