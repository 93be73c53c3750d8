/**
 * Fuzz: smtpd-starttls-proxy's SMTP parsing (lib/stages/starttls/smtp.ts) on
 * hostile bytes. The line splitter, fed in input-chosen chunks, loses and
 * adds no byte and never holds or returns more than its bound; the command
 * parser never throws; the reply tracker passes every line through unchanged
 * but for adding STARTTLS to a successful EHLO answer in the documented way,
 * and says a reply ended exactly at a last line.
 */
import {
  LineSplitter,
  parseCommand,
  parseReplyLine,
  ReplyTracker,
} from "../../lib/stages/starttls/smtp.ts";
import { below, type FuzzTarget, fuzzTest, randomBytes } from "../support/fuzz.ts";

const enc = new TextEncoder();
const MORE = "250-STARTTLS\r\n";
const LAST = "250 STARTTLS\r\n";
const text = (b: Uint8Array) => String.fromCharCode(...b);

function fail(why: string): never {
  throw new Error(why);
}

const PIECES = [
  "EHLO x\r\n",
  "STARTTLS\r\n",
  "starttls  \r\n",
  "MAIL FROM:<a@b>\r\n",
  "250-host\r\n",
  "250 host\r\n",
  "250\r\n",
  "250-STARTTLS\r\n",
  "550 no\r\n",
  "220 hi\n",
  "\r\n",
  "\n",
  "ehlo\n",
  "25",
  "0-x",
  "\xff\x00",
];

export const target: FuzzTarget = {
  name: "starttls_smtp",
  seeds: [
    enc.encode(
      "\x00220 ready\r\n250-host\r\n250-PIPELINING\r\n250 8BITMIME\r\nEHLO a\r\nSTARTTLS\r\n",
    ),
    enc.encode("\x01250 host\r\n250\r\n550 no\r\nHELO x\r\n"),
    enc.encode("\x07" + "A".repeat(100) + "\n"),
  ],
  generate: (rand) => {
    const parts: Uint8Array[] = [new Uint8Array([below(rand, 256)])];
    const n = below(rand, 20);
    for (let i = 0; i < n; i++) {
      parts.push(
        below(rand, 4) === 0
          ? randomBytes(rand, below(rand, 80))
          : enc.encode(PIECES[below(rand, PIECES.length)]),
      );
    }
    let len = 0;
    for (const p of parts) len += p.length;
    const out = new Uint8Array(len);
    len = 0;
    for (const p of parts) {
      out.set(p, len);
      len += p.length;
    }
    return out;
  },
  maxLength: 4096,
  run: (input) => {
    if (input.length === 0) return;
    const flags = input[0];
    const data = input.subarray(1);
    // the splitter, with a small bound so overlong lines happen, in chunks
    // cut where the input's own bytes say
    const max = 8 + (flags & 63);
    const sp = new LineSplitter(max);
    const got: number[] = [];
    let at = 0;
    let step = 1;
    while (at < data.length) {
      const n = Math.min(data.length - at, 1 + (data[at] % (step + 7)));
      sp.push(data.slice(at, at + n));
      at += n;
      step++;
      for (;;) {
        const t = sp.take();
        if (t === null) break;
        if ("line" in t) {
          const l = t.line;
          if (l.length > max) fail(`line of ${l.length} > ${max}`);
          if (l.indexOf(10) !== l.length - 1) fail("a line with a LF inside or none at its end");
          got.push(...l);
          parseCommand(l);
          parseReplyLine(l);
        } else {
          if (t.overlong.length < max) fail(`overlong of only ${t.overlong.length}`);
          if (t.overlong.subarray(0, max).includes(10)) fail("overlong holds a line end");
          got.push(...t.overlong);
        }
      }
      if (sp.pending >= max) fail(`holds ${sp.pending} bytes, bound ${max}`);
    }
    got.push(...sp.rest());
    if (got.length !== data.length || got.some((b, i) => b !== data[i])) {
      fail("the splitter changed the bytes");
    }
    // the reply tracker over the lines of data
    const tr = new ReplyTracker();
    let ehloNext = (flags & 64) !== 0;
    if (ehloNext) tr.expectEhlo();
    let start = 0;
    while (start < data.length) {
      let end = data.indexOf(10, start);
      if (end < 0) end = data.length - 1;
      const line = data.subarray(start, end + 1);
      start = end + 1;
      const parsed = parseReplyLine(line);
      const r = tr.line(line);
      if (!parsed) {
        if (r !== null) fail(`not a reply line, but relayed: ${JSON.stringify(text(line))}`);
        continue;
      }
      if (!r) fail(`reply line refused: ${JSON.stringify(text(line))}`);
      if (r.ended !== parsed.last) fail("ended is not the line's last flag");
      const outs = r.out.map(text);
      const l = text(line);
      if (outs.length === 1) {
        if (outs[0] !== l) fail(`changed ${JSON.stringify(l)} to ${JSON.stringify(outs[0])}`);
      } else {
        if (!ehloNext || !parsed.last || parsed.code < 200 || parsed.code > 299) {
          fail(`STARTTLS added to a reply that is no successful EHLO answer: ${JSON.stringify(l)}`);
        }
        if (outs.length !== 2) fail("more than one line added");
        if (outs[0] === MORE) {
          if (outs[1] !== l) fail("the last line was changed");
        } else if (outs[1] === LAST) {
          const body = l[3] === " " ? l.slice(4) : l.slice(3);
          if (outs[0] !== `${l.slice(0, 3)}-${body}`) fail(`bad rewrite of ${JSON.stringify(l)}`);
        } else fail(`unexpected lines ${JSON.stringify(outs)}`);
      }
      if (parsed.last) {
        // every third reply is announced as an EHLO answer, by the flags
        ehloNext = ((flags >> 1) + start) % 3 === 0;
        if (ehloNext) tr.expectEhlo();
      }
    }
  },
};

fuzzTest(target);
