/**
 * Fuzz: pop3d-starttls-proxy's POP3 parsing (lib/stages/starttls/pop3.ts)
 * on hostile bytes, against a model written with regular expressions over
 * the bytes as Latin-1: the lines come from the relay's line splitter fed
 * in input-chosen chunks (cut anywhere); each client line gets the decision
 * the model expects, and the answer tracker passes every server line
 * through unchanged but for one STLS line before the end of a successful
 * CAPA list that lacks it, saying an answer ended exactly where the model
 * does.
 */
import { POP3_PROTOCOL } from "../../lib/stages/starttls/pop3.ts";
import { LineSplitter } from "../../lib/stages/starttls/smtp.ts";
import { below, type FuzzTarget, fuzzTest, randomBytes } from "../support/fuzz.ts";

const enc = new TextEncoder();
const text = (b: Uint8Array) => String.fromCharCode(...b);

function fail(why: string): never {
  throw new Error(why);
}

const PIECES = [
  "CAPA\r\n",
  "capa\r\n",
  "STLS\r\n",
  "stls x\r\n",
  "STLS \r\n",
  "USER a\r\n",
  "QUIT\r\n",
  "+OK\r\n",
  "+OK hi\r\n",
  "-ERR no\r\n",
  "+OKAY\r\n",
  "STLS\r\n",
  "stls extra\r\n",
  ".\r\n",
  ".\n",
  "..\r\n",
  "USER\r\n",
  "\r\n",
  "\xff\x00",
];

/** The lines of data, split by a LineSplitter fed in chunks the data's own bytes choose. */
function linesOf(data: Uint8Array, max: number): Uint8Array[] {
  const sp = new LineSplitter(max);
  const out: Uint8Array[] = [];
  let at = 0;
  while (at < data.length) {
    const n = Math.min(data.length - at, 1 + (data[at] % 13));
    sp.push(data.slice(at, at + n));
    at += n;
    for (let t = sp.take(); t !== null; t = sp.take()) out.push("line" in t ? t.line : t.overlong);
  }
  const rest = sp.rest();
  if (rest.length) out.push(rest);
  return out;
}

/** The model's decision for a client line. */
function modelDecision(l: string, requireTls: boolean): string {
  const m = /^([A-Za-z]{1,8})(?=[ \r\n]|$)/.exec(l);
  const verb = m ? m[1].toUpperCase() : "";
  const args = m ? /[^ \r\n]/.test(l.slice(m[1].length)) : false;
  if (verb === "CAPA") return "program";
  if (verb === "STLS") return args ? "client" : "tls";
  if (verb === "QUIT") return "plain";
  return requireTls ? "client" : "plain";
}

export const target: FuzzTarget = {
  name: "starttls_pop3",
  seeds: [
    enc.encode("\x00+OK ready\r\nCAPA\r\n+OK\r\nUSER\r\nSTLS\r\n.\r\nSTLS\r\n"),
    enc.encode("\x01-ERR\r\nUSER a\r\n+OK\r\n.\n"),
  ],
  generate: (rand) => {
    const parts: number[] = [below(rand, 256)];
    const n = below(rand, 24);
    for (let i = 0; i < n; i++) {
      if (below(rand, 5) === 0) parts.push(...randomBytes(rand, below(rand, 40)));
      else parts.push(...enc.encode(PIECES[below(rand, PIECES.length)]));
    }
    return new Uint8Array(parts);
  },
  run: (input) => {
    if (input.length === 0) return;
    const flags = input[0];
    const lines = linesOf(input.subarray(1), 16 + (flags & 63));
    // the client side
    const requireTls = (flags & 64) !== 0;
    const d = POP3_PROTOCOL.dialogue(requireTls);
    for (const line of lines) {
      const want = modelDecision(text(line), requireTls);
      const got = d.command(line).to;
      if (got !== want) fail(`${JSON.stringify(text(line))}: ${got}, model ${want}`);
    }
    // the server side: every line a server line; CAPA expected where the flags say
    const s = POP3_PROTOCOL.dialogue(false);
    let inList = false;
    let hasStls = false;
    let capa = false;
    let i = 0;
    for (const line of lines) {
      const l = text(line);
      if (!inList && ((flags >> 7) + i++) % 2 === 0) {
        s.command(enc.encode("CAPA\r\n"));
        capa = true;
      }
      const r = s.reply(line);
      let want: string[];
      let ended: boolean;
      if (inList) {
        if (/^\.\r?\n$/.test(l)) {
          want = hasStls ? [l] : ["STLS\r\n", l];
          ended = true;
          inList = false;
        } else {
          if (/^STLS(?=[ \r\n]|$)/i.test(l)) hasStls = true;
          want = [l];
          ended = false;
        }
      } else {
        const status = /^(\+OK|-ERR)(?=[ \r\n]|$)/.exec(l);
        if (!status) {
          if (r !== null) fail(`not POP3, but followed: ${JSON.stringify(l)}`);
          // the relay stops parsing here: so does the model
          break;
        }
        want = [l];
        ended = !(capa && status[1] === "+OK");
        if (!ended) {
          inList = true;
          hasStls = false;
        }
        capa = false;
      }
      if (!r) fail(`POP3 line refused: ${JSON.stringify(l)}`);
      const outs = r.out.map(text);
      if (JSON.stringify(outs) !== JSON.stringify(want)) {
        fail(`${JSON.stringify(l)} gave ${JSON.stringify(outs)}, model ${JSON.stringify(want)}`);
      }
      if (r.ended !== ended) fail(`${JSON.stringify(l)}: ended ${r.ended}, model ${ended}`);
    }
  },
};

fuzzTest(target);
