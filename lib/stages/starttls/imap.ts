/**
 * IMAP's row of the STARTTLS proxy's protocol table (protocol.ts):
 * imapd-starttls-proxy, STARTTLS as RFC 3501 (6.2.1) and RFC 9051 define
 * it. Pure functions over bytes, for the relay and the fuzz target.
 *
 * A client command is "tag SP name [SP arguments] CRLF"; its arguments may
 * hold literals, "{n}" (synchronizing: the client waits for the server's
 * "+" before sending n bytes) or "{n+}" (LITERAL+, RFC 7888: the n bytes
 * follow at once), after which the command goes on. Those n bytes are
 * never taken for commands: a command line ending in a literal is not
 * parsed further (the proxy stops parsing, or, when TLS is required, skips
 * the literal and answers NO).
 * Server responses are untagged ("* ..."), continuation requests ("+ ...")
 * or the tagged completion of a command ("tag OK|NO|BAD ...").
 * STARTTLS is added to the capability lists the client sees before TLS:
 * "* CAPABILITY ..." and the greeting's "* OK [CAPABILITY ...]" response
 * code, with LOGINDISABLED when TLS is required (RFC 3501 6.2.3).
 */
import { concatBytes } from "../../core/bytes.ts";
import {
  ascii,
  type Decision,
  type Dialogue,
  hasMore,
  isWordEnd,
  letterWord,
  type Relayed,
  type StarttlsProtocol,
  wordAt,
} from "./protocol.ts";

const SP = 32;
const CR = 13;
const LF = 10;
const STAR = 42;
const PLUS = 43;
const OPEN_BRACE = 123;
const CLOSE_BRACE = 125;
const OPEN_BRACKET = 91;
const CLOSE_BRACKET = 93;

/** The longest tag the proxy answers (RFC 3501 sets none; clients use a few bytes). */
export const TAG_MAX = 64;

/** Where a line's content ends: before its CRLF or LF. */
function contentEnd(line: Uint8Array): number {
  let end = line.length;
  if (end > 0 && line[end - 1] === LF) end--;
  if (end > 0 && line[end - 1] === CR) end--;
  return end;
}

/** A literal announced at the end of a line. */
export interface Literal {
  /** Its size in bytes (Infinity when the number is too long to count). */
  size: number;
  /** True for "{n}" (the client waits for "+"); false for LITERAL+'s "{n+}". */
  sync: boolean;
}

/** The literal a line ends with ("... {12}\r\n", "... {12+}\r\n"), or null. */
export function literalAtEnd(line: Uint8Array): Literal | null {
  const end = contentEnd(line);
  if (end < 3 || line[end - 1] !== CLOSE_BRACE) return null;
  let i = end - 2;
  const sync = line[i] !== PLUS;
  if (!sync) i--;
  const last = i;
  while (i >= 0 && line[i] >= 48 && line[i] <= 57) i--;
  if (i === last || i < 0 || line[i] !== OPEN_BRACE) return null;
  let size = 0;
  for (let k = i + 1; k <= last; k++) size = size * 10 + (line[k] - 48);
  // more than 2^53 cannot be counted exactly: it is "to the end" in effect
  if (last - i > 15) size = Infinity;
  return { size, sync };
}

/**
 * The tag of a command line, and where it ends (at the SP before the
 * command name); null when the line does not begin with a valid tag
 * (RFC 3501: ASTRING-CHARs but "+") followed by SP.
 */
export function imapTag(line: Uint8Array): { tag: Uint8Array; end: number } | null {
  let i = 0;
  for (; i < line.length && i <= TAG_MAX; i++) {
    const b = line[i];
    if (b === SP) break;
    // CTL, non-ASCII, and ( ) { % * " \ +
    if (
      b <= 0x20 || b >= 0x7f || b === 0x28 || b === 0x29 || b === OPEN_BRACE || b === 0x25 ||
      b === STAR || b === 0x22 || b === 0x5c || b === PLUS
    ) return null;
  }
  if (i === 0 || i > TAG_MAX || line[i] !== SP) return null;
  return { tag: line.subarray(0, i), end: i };
}

/** The answer to STARTTLS (RFC 3501's example words it so). */
export const IMAP_READY = "OK Begin TLS negotiation now";
/** The refusal of a command before STARTTLS when TLS is required (RFC 5530's code). */
export const IMAP_MUST_STARTTLS = "NO [PRIVACYREQUIRED] Must issue a STARTTLS command first";

function tagged(tag: Uint8Array, text: string): Uint8Array {
  return concatBytes(tag, ascii(` ${text}\r\n`));
}

/** Whether the capability words in line[from, to) include `upper` (any case). */
function listHas(line: Uint8Array, from: number, to: number, upper: string): boolean {
  let i = from;
  while (i < to) {
    while (i < to && line[i] === SP) i++;
    if (i >= to) break;
    if (i + upper.length <= to && wordAt(line.subarray(0, to), i, upper)) return true;
    while (i < to && line[i] !== SP) i++;
  }
  return false;
}

/** line with " WORD" for each of `add` not yet in the list line[from, to) inserted at `to`. */
function withWords(line: Uint8Array, from: number, to: number, add: string[]): Uint8Array {
  const missing = add.filter((w) => !listHas(line, from, to, w));
  if (missing.length === 0) return line;
  return concatBytes(
    line.subarray(0, to),
    ascii(missing.map((w) => ` ${w}`).join("")),
    line.subarray(to),
  );
}

/**
 * line (a "* ..." or "tag ..." response, `at` the index after the tag's SP)
 * with the words of `add` in its capability list: "CAPABILITY ..." data, or
 * an "OK [CAPABILITY ...]" response code. Other lines come back as they are.
 */
export function addCapabilities(line: Uint8Array, at: number, add: string[]): Uint8Array {
  const end = contentEnd(line);
  if (wordAt(line, at, "CAPABILITY")) return withWords(line, at + 10, end, add);
  if (!wordAt(line, at, "OK") || line[at + 2] !== SP || line[at + 3] !== OPEN_BRACKET) return line;
  const code = at + 4;
  const name = "CAPABILITY";
  if (code + name.length > end) return line;
  for (let i = 0; i < name.length; i++) {
    let b = line[code + i];
    if (b >= 97 && b <= 122) b -= 32;
    if (b !== name.charCodeAt(i)) return line;
  }
  const after = line[code + name.length];
  if (after !== SP && after !== CLOSE_BRACKET) return line;
  const close = line.subarray(0, end).indexOf(CLOSE_BRACKET, code);
  if (close < 0) return line;
  return withWords(line, code + name.length, close, add);
}

/**
 * Follows IMAP responses line by line: the greeting, then, for each command
 * passed on, untagged lines up to the completion carrying its tag. Adds the
 * capabilities to capability lists. Null (the proxy stops parsing) for a
 * PREAUTH or BYE greeting, a continuation request, a response announcing a
 * literal, a tagged line that is not the awaited one, or anything not IMAP.
 */
export class ImapTracker {
  #greeted = false;
  #tag: Uint8Array | null = null;

  /** `add`: the capabilities added ("STARTTLS", and "LOGINDISABLED" when TLS is required). */
  constructor(readonly add: string[]) {}

  /** Marks the next tagged completion awaited: the one with `tag`. */
  expect(tag: Uint8Array): void {
    this.#tag = tag.slice();
  }

  /** One server line: what to send on and whether the awaited response ended. */
  line(line: Uint8Array): Relayed | null {
    if (literalAtEnd(line)) return null;
    if (!this.#greeted) {
      if (line[0] !== STAR || line[1] !== SP || !wordAt(line, 2, "OK")) return null;
      this.#greeted = true;
      return { out: [addCapabilities(line, 2, this.add)], ended: true };
    }
    if (line[0] === STAR && line[1] === SP) {
      return { out: [addCapabilities(line, 2, this.add)], ended: false };
    }
    const tag = this.#tag;
    if (tag === null || line.length <= tag.length || line[tag.length] !== SP) return null;
    for (let i = 0; i < tag.length; i++) if (line[i] !== tag[i]) return null;
    this.#tag = null;
    return { out: [addCapabilities(line, tag.length + 1, this.add)], ended: true };
  }
}

/**
 * One IMAP connection before TLS: CAPABILITY, NOOP and ID are passed on
 * (capability lists get STARTTLS), STARTTLS answered here; LOGOUT,
 * anything else and any command carrying a literal end the parsing, unless
 * TLS is required: then all but CAPABILITY, NOOP, ID, STARTTLS and LOGOUT
 * are refused with a tagged NO (LOGIN and AUTHENTICATE included, as
 * LOGINDISABLED announces), literals skipped unread.
 */
class ImapDialogue implements Dialogue {
  #tracker: ImapTracker;
  constructor(readonly requireTls: boolean) {
    this.#tracker = new ImapTracker(requireTls ? ["STARTTLS", "LOGINDISABLED"] : ["STARTTLS"]);
  }

  /** Refuses a command when TLS is required, else stops parsing. */
  #refuse(answer: Uint8Array, line: Uint8Array): Decision {
    if (!this.requireTls) return { to: "plain" };
    const lit = literalAtEnd(line);
    return { to: "client", answer, literal: lit && !lit.sync ? lit.size : 0 };
  }

  command(line: Uint8Array): Decision {
    const t = imapTag(line);
    if (!t) return this.#refuse(ascii("* BAD Invalid tag\r\n"), line);
    const must = tagged(t.tag, IMAP_MUST_STARTTLS);
    if (literalAtEnd(line)) return this.#refuse(must, line);
    const w = letterWord(line, t.end + 1, 16);
    const verb = w && isWordEnd(line[w.end]) ? w.word : "";
    switch (verb) {
      case "CAPABILITY":
      case "NOOP":
      case "ID":
        this.#tracker.expect(t.tag);
        return { to: "program" };
      case "STARTTLS":
        if (hasMore(line, w!.end)) {
          return { to: "client", answer: tagged(t.tag, "BAD STARTTLS takes no argument") };
        }
        return { to: "tls", answer: tagged(t.tag, IMAP_READY) };
      case "LOGOUT":
        return { to: "plain" };
      default:
        return this.#refuse(must, line);
    }
  }

  continued(line: Uint8Array): number {
    const lit = literalAtEnd(line);
    return lit && !lit.sync ? lit.size : 0;
  }

  reply(line: Uint8Array): Relayed | null {
    return this.#tracker.line(line);
  }
}

/** IMAP's row of the protocol table: imapd-starttls-proxy (RFC 3501 STARTTLS). */
export const IMAP_PROTOCOL: StarttlsProtocol = {
  tool: "imapd-starttls-proxy",
  verb: "STARTTLS",
  server: "imapd",
  // RFC 7162 suggests clients keep command lines under 8192 octets
  commandMax: 8192,
  replyMax: 8192,
  tooLong: ascii("* BAD Line too long\r\n"),
  dialogue: (requireTls) => new ImapDialogue(requireTls),
};
