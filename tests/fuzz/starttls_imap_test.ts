/**
 * Fuzz: imapd-starttls-proxy's IMAP parsing (lib/stages/starttls/imap.ts)
 * on hostile bytes, against a model written with regular expressions over
 * the bytes as Latin-1. The lines come from the relay's line splitter fed
 * in input-chosen chunks (cut anywhere). The literal at a line's end, the
 * tag, and each client line's decision are the model's (a line ending in a
 * literal is never a command the proxy acts on); a refused command's
 * literals are skipped as the model counts them; the response tracker
 * passes every server line through unchanged but for capability words
 * added to a capability list that lacked them.
 */
import { IMAP_PROTOCOL, imapTag, literalAtEnd } from "../../lib/stages/starttls/imap.ts";
import { LineSplitter } from "../../lib/stages/starttls/smtp.ts";
import { below, type FuzzTarget, fuzzTest, randomBytes } from "../support/fuzz.ts";

const enc = new TextEncoder();
const text = (b: Uint8Array) => String.fromCharCode(...b);

function fail(why: string): never {
  throw new Error(why);
}

const PIECES = [
  "a CAPABILITY\r\n",
  "a1 capability\r\n",
  "b STARTTLS\r\n",
  "b starttls x\r\n",
  "c LOGIN u p\r\n",
  "c LOGIN {5}\r\n",
  "d LOGIN {3+}\r\n",
  "{2+}\r\n",
  " {0}\r\n",
  "e NOOP\r\n",
  "f ID NIL\r\n",
  "+ go\r\n",
  "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n",
  "* OK [capability IMAP4rev1 starttls]\r\n",
  "* CAPABILITY IMAP4rev1\r\n",
  "* CAPABILITY STARTTLS\r\n",
  "* PREAUTH hi\r\n",
  "a OK done\r\n",
  "a OK [CAPABILITY X] done\r\n",
  "* 1 FETCH (BODY {4}\r\n",
  "x LOGOUT\r\n",
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

function modelLiteral(l: string): { size: number; sync: boolean } | null {
  const m = /\{(\d+)(\+?)\}$/.exec(l.replace(/\n$/, "").replace(/\r$/, ""));
  if (!m) return null;
  return { size: m[1].length > 15 ? Infinity : Number(m[1]), sync: m[2] === "" };
}

// the model names the excluded control bytes as RFC 3501 does
// deno-lint-ignore no-control-regex
const TAG = /^([^\x00-\x20\x7f-\xff(){%*"\\+]{1,64}) /;

function modelDecision(l: string, requireTls: boolean): string {
  const refuse = requireTls ? "client" : "plain";
  const t = TAG.exec(l);
  if (!t) return refuse;
  if (modelLiteral(l)) return refuse;
  const m = /^([A-Za-z]{1,16})(?=[ \r\n]|$)/.exec(l.slice(t[0].length));
  const verb = m ? m[1].toUpperCase() : "";
  if (["CAPABILITY", "NOOP", "ID"].includes(verb)) return "program";
  if (verb === "STARTTLS") {
    return /[^ \r\n]/.test(l.slice(t[0].length + verb.length)) ? "client" : "tls";
  }
  if (verb === "LOGOUT") return "plain";
  return refuse;
}

/** Whether `out` is `line` with some of `words` (each once, space first) inserted at one place. */
function isInsertion(line: string, out: string, words: string[]): boolean {
  if (out === line) return true;
  for (let at = 0; at <= line.length; at++) {
    if (out.slice(0, at) !== line.slice(0, at)) return false;
    const tail = line.slice(at);
    if (!out.endsWith(tail)) continue;
    const added = out.slice(at, out.length - tail.length);
    const ws = added.split(" ");
    if (ws[0] !== "" || ws.length < 2) continue;
    if (ws.slice(1).every((w, i) => words.includes(w) && ws.indexOf(w, 1) === i + 1)) return true;
  }
  return false;
}

export const target: FuzzTarget = {
  name: "starttls_imap",
  seeds: [
    enc.encode(
      "\x00* OK [CAPABILITY IMAP4rev1] hi\r\na CAPABILITY\r\n* CAPABILITY IMAP4rev1\r\na OK\r\n",
    ),
    enc.encode("\x40c LOGIN {3+}\r\nabc {2+}\r\nxy\r\n"),
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
    const lines = linesOf(input.subarray(1), 24 + (flags & 63));
    const requireTls = (flags & 64) !== 0;
    const words = requireTls ? ["STARTTLS", "LOGINDISABLED"] : ["STARTTLS"];
    // pure pieces against the model
    for (const line of lines) {
      const l = text(line);
      const lit = literalAtEnd(line);
      const ml = modelLiteral(l);
      if (JSON.stringify(lit) !== JSON.stringify(ml)) {
        fail(
          `literal of ${JSON.stringify(l)}: ${JSON.stringify(lit)}, model ${JSON.stringify(ml)}`,
        );
      }
      const tag = imapTag(line);
      const mt = TAG.exec(l);
      if ((tag ? text(tag.tag) : null) !== (mt ? mt[1] : null)) fail(`tag of ${JSON.stringify(l)}`);
    }
    // the client side, as the relay drives it: a refused command's
    // non-synchronizing literals (and continuation lines) are skipped
    const d = IMAP_PROTOCOL.dialogue(requireTls);
    const data = input.subarray(1);
    const sp = new LineSplitter(8192);
    sp.push(data);
    let skip = 0;
    for (;;) {
      if (skip > 0) {
        skip -= sp.skip(skip);
        if (skip > 0) break; // the input ends inside the literal
        const t = sp.take();
        if (!t || !("line" in t)) break;
        skip = d.continued(t.line);
        const ml = modelLiteral(text(t.line));
        if (skip !== (ml && !ml.sync ? ml.size : 0)) fail("continued() is not the model's literal");
        continue;
      }
      const t = sp.take();
      if (!t || !("line" in t)) break;
      const l = text(t.line);
      const got = d.command(t.line);
      const want = modelDecision(l, requireTls);
      if (got.to !== want) fail(`${JSON.stringify(l)}: ${got.to}, model ${want}`);
      if (got.to === "client") {
        const ml = modelLiteral(l);
        const lit = ml && !ml.sync ? ml.size : 0;
        if ((got.literal ?? 0) !== lit) {
          fail(`${JSON.stringify(l)}: literal ${got.literal}, model ${lit}`);
        }
        skip = lit;
      }
      if (got.to === "plain" || got.to === "tls") break; // the relay stops parsing
    }
    // the server side
    const s = IMAP_PROTOCOL.dialogue(requireTls);
    let greeted = false;
    let tag: string | null = null;
    let i = 0;
    for (const line of lines) {
      const l = text(line);
      if (greeted && tag === null && ((flags >> 7) + i++) % 2 === 0) {
        tag = `t${i}`;
        s.command(enc.encode(`${tag} CAPABILITY\r\n`));
      }
      const r = s.reply(line);
      let ended: boolean;
      if (modelLiteral(l)) {
        if (r !== null) fail(`a response with a literal is followed: ${JSON.stringify(l)}`);
        break;
      } else if (!greeted) {
        if (!/^\* OK(?=[ \r\n]|$)/i.test(l)) {
          if (r !== null) fail(`greeting ${JSON.stringify(l)} is followed`);
          break;
        }
        greeted = true;
        ended = true;
      } else if (l.startsWith("* ")) ended = false;
      else if (tag !== null && l.startsWith(`${tag} `)) {
        tag = null;
        ended = true;
      } else {
        if (r !== null) fail(`${JSON.stringify(l)} is followed, awaiting ${tag}`);
        break;
      }
      if (!r) fail(`IMAP line refused: ${JSON.stringify(l)}`);
      if (r.out.length !== 1 || !isInsertion(l, text(r.out[0]), words)) {
        fail(`${JSON.stringify(l)} became ${JSON.stringify(r.out.map(text))}`);
      }
      const o = text(r.out[0]);
      if (o !== l) {
        if (!/^\S+ (CAPABILITY(?=[ \r\n]|$)|OK \[CAPABILITY[ \]])/i.test(l)) {
          fail(`words added to a line that is no capability list: ${JSON.stringify(l)}`);
        }
        for (const w of words) {
          if (
            new RegExp(` ${w}(?=[ \\]\\r\\n]|$)`, "i").test(l) &&
            o.split(w).length > l.split(w).length
          ) {
            fail(`${w} added again to ${JSON.stringify(l)}`);
          }
        }
      }
      if (r.ended !== ended) fail(`${JSON.stringify(l)}: ended ${r.ended}, model ${ended}`);
    }
  },
};

fuzzTest(target);
