/**
 * Fuzz: the RFC 1413 reply parser (lib/net/ident.ts) on random and mutated
 * replies, fed in random pieces, never throws, keeps at most 257 bytes,
 * returns a byte string without NUL, and gives the same answer however the
 * reply is cut into pieces.
 */
import { IdentReplyParser } from "../../lib/net/ident.ts";
import { type FuzzTarget, fuzzTest } from "../support/fuzz.ts";

const enc = (s: string) => new TextEncoder().encode(s);

function parse(input: Uint8Array, cuts: number[]): string | undefined {
  const p = new IdentReplyParser();
  let at = 0;
  for (const c of [...cuts, input.length]) {
    const end = Math.max(at, Math.min(c, input.length));
    const r = p.feed(input.subarray(at, end));
    if (r !== undefined) return r;
    at = end;
  }
  return undefined;
}

export const target: FuzzTarget = {
  name: "ident",
  seeds: [
    enc("6193, 23 : USERID : UNIX : stjohns\r\n"),
    enc("6195, 23 : ERROR : NO-USER\r\n"),
    enc("1 , 2 : USERID : OTHER : a:b:c\0hidden\n"),
    enc(`1,2:USERID:UNIX:${"x".repeat(300)}\n`),
    Uint8Array.from([...enc("1,2:USERID:UNIX:"), 0xe4, 0xff, 0x80, 10]),
  ],
  maxLength: 1024,
  run: (input) => {
    const whole = parse(input, []);
    const cuts = [input.length >> 2, input.length >> 1, (input.length * 3) >> 2];
    const pieces = parse(input, cuts);
    if (whole !== pieces) throw new Error(`answer depends on the pieces: ${whole} / ${pieces}`);
    if (whole === undefined) return;
    if (whole.length > 257) throw new Error(`answer of ${whole.length} bytes`);
    for (let i = 0; i < whole.length; i++) {
      const c = whole.charCodeAt(i);
      if (c === 0 || c > 255 || c === 10 || c === 13 || c === 32 || c === 9) {
        throw new Error(`answer holds byte ${c}`);
      }
    }
  },
};

fuzzTest(target);
