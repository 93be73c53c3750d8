/**
 * Fuzz: imapd-starttls-proxy's relay (lib/stages/starttls/relay.ts with
 * the IMAP row) end to end in memory, on hostile client bytes cut anywhere
 * into chunks, against a model that reads the whole input at once. A small
 * IMAP program answers the lines it gets ("* CAPABILITY X" and a tagged OK
 * for CAPABILITY, a tagged OK for NOOP and ID). The program must receive
 * exactly what the model forwards (commands the proxy passes on, then,
 * once it stops parsing, every byte as sent; never the bytes of a refused
 * command's literal), and the client exactly the model's answers in order.
 * Inputs whose model reaches STARTTLS are left out (the handshake is tested
 * end to end in tests/stages/starttls_pop3_imap_test.ts).
 */
import { IMAP_PROTOCOL } from "../../lib/stages/starttls/imap.ts";
import { startTlsRelay } from "../../lib/stages/starttls/relay.ts";
import type { ServerCredentials } from "../../lib/tls/credentials.ts";
import { below, type FuzzTarget, fuzzTest, randomBytes } from "../support/fuzz.ts";

const enc = new TextEncoder();
const text = (b: Uint8Array) => String.fromCharCode(...b);
const bytes = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

function fail(why: string): never {
  throw new Error(why);
}

const PIECES = [
  "a CAPABILITY\r\n",
  "a1 noop\r\n",
  "i ID NIL\r\n",
  "c LOGIN u p\r\n",
  "c LOGIN {5}\r\n",
  "d LOGIN {3+}\r\n",
  "x LOGOUT\r\n",
  "{2+}\r\n",
  " {4+}\r\n",
  "AUTHENTICATE PLAIN\r\n",
  "b CAPABILITY\r\n",
  "\r\n",
  "abc",
  "\xff\x00",
];

// the model names the excluded control bytes as RFC 3501 does
// deno-lint-ignore no-control-regex
const TAG = /^([^\x00-\x20\x7f-\xff(){%*"\\+]{1,64}) /;

function literal(l: string): { size: number; sync: boolean } | null {
  const m = /\{(\d+)(\+?)\}$/.exec(l.replace(/\n$/, "").replace(/\r$/, ""));
  if (!m) return null;
  return { size: m[1].length > 15 ? Infinity : Number(m[1]), sync: m[2] === "" };
}

function decision(l: string, requireTls: boolean): string {
  const refuse = requireTls ? "client" : "plain";
  const t = TAG.exec(l);
  if (!t || literal(l)) return refuse;
  const m = /^([A-Za-z]{1,16})(?=[ \r\n]|$)/.exec(l.slice(t[0].length));
  const verb = m ? m[1].toUpperCase() : "";
  if (["CAPABILITY", "NOOP", "ID"].includes(verb)) return "program";
  if (verb === "STARTTLS") {
    return /[^ \r\n]/.test(l.slice(t[0].length + verb.length)) ? "client" : "tls";
  }
  if (verb === "LOGOUT") return "plain";
  return refuse;
}

/** The program's answer to one line it reads (the same function drives the program). */
function answer(l: string): string {
  const sp = l.indexOf(" ");
  if (sp <= 0) return "";
  const tag = l.slice(0, sp);
  const verb = (/^[A-Za-z]+/.exec(l.slice(sp + 1))?.[0] ?? "").toUpperCase();
  if (verb === "CAPABILITY") return `* CAPABILITY X\r\n${tag} OK\r\n`;
  if (verb === "NOOP" || verb === "ID") return `${tag} OK\r\n`;
  return "";
}

function completeLines(s: string): string[] {
  const out: string[] = [];
  let at = 0;
  for (let i = s.indexOf("\n"); i >= 0; i = s.indexOf("\n", at)) {
    out.push(s.slice(at, i + 1));
    at = i + 1;
  }
  return out;
}

const GREETING = "* OK hi\r\n";

/** What the program should read and the client should get; null when STARTTLS comes. */
function model(s: string, requireTls: boolean): { program: string; client: string } | null {
  const added = requireTls ? " STARTTLS LOGINDISABLED" : " STARTTLS";
  let program = "";
  let client = GREETING;
  let pos = 0;
  for (;;) {
    const i = s.indexOf("\n", pos);
    if (i < 0) {
      program += s.slice(pos); // the end: a partial line is passed on
      return { program, client };
    }
    const line = s.slice(pos, i + 1);
    pos = i + 1;
    const d = decision(line, requireTls);
    if (d === "tls") return null;
    if (d === "program") {
      program += line;
      client += answer(line).replace("* CAPABILITY X\r\n", `* CAPABILITY X${added}\r\n`);
    } else if (d === "plain") {
      const rest = line + s.slice(pos);
      program += rest;
      for (const l of completeLines(rest)) client += answer(l);
      return { program, client };
    } else {
      let lit = literal(line);
      let skip = lit && !lit.sync ? lit.size : 0;
      while (skip > 0) {
        if (pos + skip > s.length) return { program, client }; // ended inside the literal
        pos += skip;
        const j = s.indexOf("\n", pos);
        if (j < 0) return { program, client };
        const cont = s.slice(pos, j + 1);
        pos = j + 1;
        lit = literal(cont);
        skip = lit && !lit.sync ? lit.size : 0;
      }
      const t = TAG.exec(line);
      client += t
        ? `${t[1]} NO [PRIVACYREQUIRED] Must issue a STARTTLS command first\r\n`
        : "* BAD Invalid tag\r\n";
    }
  }
}

/** Runs the relay over `chunks` with the small program; what each side got. */
async function relay(
  chunks: Uint8Array[],
  requireTls: boolean,
): Promise<{ program: string; client: string }> {
  let client = "";
  const io = startTlsRelay({
    input: new ReadableStream<Uint8Array>({
      pull(c) {
        const next = chunks.shift();
        if (next) c.enqueue(next);
        else c.close();
      },
    }, { highWaterMark: 0 }),
    output: new WritableStream<Uint8Array>({
      write(chunk) {
        client += text(chunk);
      },
    }),
    log: () => {},
  }, {
    protocol: IMAP_PROTOCOL,
    // never used: inputs that reach STARTTLS are not run
    creds: undefined as unknown as ServerCredentials,
    requireTls,
    timeoutMs: 1000,
    pid: 1,
  });
  const writer = io.output.getWriter();
  await writer.write(bytes(GREETING));
  let program = "";
  let buf = "";
  const reader = io.input.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const got = text(value);
    program += got;
    buf += got;
    for (const l of completeLines(buf)) {
      buf = buf.slice(l.length);
      const a = answer(l);
      if (a) await writer.write(bytes(a));
    }
  }
  await writer.close();
  return { program, client };
}

export const target: FuzzTarget = {
  name: "starttls_relay",
  seeds: [
    enc.encode("\x40a CAPABILITY\r\nd LOGIN {3+}\r\nabc {2+}\r\nxy\r\nb NOOP\r\n"),
    enc.encode("\x00a CAPABILITY\r\nc LOGIN {5}\r\nhello\r\nb NOOP\r\n"),
  ],
  generate: (rand) => {
    const parts: number[] = [below(rand, 256)];
    const n = below(rand, 16);
    for (let i = 0; i < n; i++) {
      if (below(rand, 6) === 0) parts.push(...randomBytes(rand, below(rand, 20)));
      else parts.push(...Array.from(PIECES[below(rand, PIECES.length)], (c) => c.charCodeAt(0)));
    }
    return new Uint8Array(parts);
  },
  maxLength: 1024,
  run: async (input) => {
    if (input.length === 0) return;
    const requireTls = (input[0] & 64) !== 0;
    const data = input.subarray(1);
    const want = model(text(data), requireTls);
    if (!want) return;
    // cut where the input's own bytes say
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < data.length;) {
      const n = Math.min(data.length - at, 1 + ((data[at] + input[0]) % 11));
      chunks.push(data.slice(at, at + n));
      at += n;
    }
    const got = await relay(chunks, requireTls);
    if (got.program !== want.program) {
      fail(`program got ${JSON.stringify(got.program)}, model ${JSON.stringify(want.program)}`);
    }
    if (got.client !== want.client) {
      fail(`client got ${JSON.stringify(got.client)}, model ${JSON.stringify(want.client)}`);
    }
  },
};

fuzzTest(target);
