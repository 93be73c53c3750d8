/**
 * Fuzz: rblsmtpd's handling of TXT answers and $RBLSMTPD/$RBLMESSAGE bytes
 * (decide, then replyLine, which cleans the text): whatever the bytes, the
 * reply is one line of bytes 32..126, "451 " or "553 " and at most 200 bytes
 * of text, and nothing but a verdict comes back.
 */
import { byteString, stringBytes } from "../../lib/core/bytes.ts";
import {
  decide,
  MAX_TEXT,
  parseRblsmtpdArgs,
  type RblLookups,
  replyLine,
} from "../../lib/stages/rblsmtpd.ts";
import { below, type FuzzTarget, fuzzTest, randomBytes } from "../support/fuzz.ts";

const SEP = 0x1e; // between the fields of one input
const ARGS = [
  parseRblsmtpdArgs(["-r", "rbl.test", "prog"]),
  parseRblsmtpdArgs(["-b", "-r", "rbl.test", "-r", "a.test:%IP% listed", "prog"]),
  parseRblsmtpdArgs(["-c", "-r", "rbl.test", "-a", "anti.test", "prog"]),
];

/** Input: flags byte, then TXT text, $RBLSMTPD, $RBLMESSAGE, $TCPREMOTEIP separated by 0x1e. */
function fields(input: Uint8Array): { flags: number; parts: string[] } {
  const flags = input[0] ?? 0;
  const parts = byteString(input.subarray(1)).split(String.fromCharCode(SEP));
  return { flags, parts };
}

export const target: FuzzTarget = {
  name: "rblsmtpd_txt",
  seeds: [
    stringBytes("\x01listed: see http://rbl.test/%IP%\x1e\x1e\x1e1.2.3.4"),
    stringBytes("\x03\x1e-\xe4\x85\x9f blocked\x1eBlocked: \x1e127.0.0.1"),
    stringBytes("\x05" + "\r\n250 ok\r\n".repeat(40) + "\x1e\x1e%IP%%IP%\x1e%IP%"),
    stringBytes("\x00\x00\x00\xff\x1e\x1e\x1e"),
  ],
  generate: (rand) => {
    const parts: Uint8Array[] = [Uint8Array.of(below(rand, 256))];
    for (let i = 0; i < 4; i++) {
      parts.push(randomBytes(rand, below(rand, i === 0 ? 600 : 80)), Uint8Array.of(SEP));
    }
    return Uint8Array.from(parts.flatMap((p) => [...p]));
  },
  run: async (input) => {
    const { flags, parts } = fields(input);
    const [txt = "", forced, message, ip] = parts;
    const env = new Map<string, string>();
    if (flags & 1 && forced !== undefined) env.set("RBLSMTPD", forced);
    if (flags & 2 && message !== undefined) env.set("RBLMESSAGE", message);
    if (ip !== undefined) env.set("TCPREMOTEIP", ip);
    const lookups: RblLookups = {
      txt: () => Promise.resolve(txt),
      a: () => Promise.resolve((flags & 4) !== 0),
    };
    const verdict = await decide(ARGS[flags % ARGS.length], env, lookups);
    if (!verdict.block) return;
    const line = replyLine(verdict, env);
    if (!/^(451|553) [ -~]*$/.test(line)) {
      throw new Error(`not one clean line: ${JSON.stringify(line)}`);
    }
    if (line.length > 4 + MAX_TEXT) throw new Error(`reply of ${line.length} chars`);
  },
};

fuzzTest(target, 3000);
