/**
 * The SMTP pieces smtpd-starttls-proxy parses, as pure functions over bytes
 * (no I/O, so the fuzz target can drive them): a bounded line splitter (the
 * relay's for every protocol), the command verb of a client line, the reply
 * tracker that finds where a (multi-line, RFC 5321 4.2.1) reply ends and
 * adds STARTTLS to an EHLO answer, and SMTP's row of the protocol table
 * (protocol.ts). Nothing here decodes text: only ASCII letters, digits, SP,
 * '-', CR and LF are ever looked at.
 */
import {
  ascii,
  type Decision,
  type Dialogue,
  type Relayed,
  type StarttlsProtocol,
} from "./protocol.ts";

export type { Relayed };

const CR = 13;
const LF = 10;
const SP = 32;
const DASH = 45;
const EMPTY = new Uint8Array(0);

/** What LineSplitter.take found. */
export type Taken =
  | { line: Uint8Array }
  /** `max` bytes came without a LF: the bytes so far (the caller stops parsing). */
  | { overlong: Uint8Array }
  /** No complete line buffered yet. */
  | null;

/**
 * Splits a byte stream into LF-terminated lines, holding at most `max` bytes
 * of an unfinished line: a hostile peer cannot make it buffer more.
 */
export class LineSplitter {
  #buf: Uint8Array = EMPTY;
  #start = 0;
  #end = 0;

  /** `max`: the longest line (LF included) that take() returns as a line. */
  constructor(readonly max: number) {}

  /** Bytes buffered and not yet taken. */
  get pending(): number {
    return this.#end - this.#start;
  }

  /** Whether the buffer holds a partial line of `max` bytes or more: take() first. */
  get full(): boolean {
    return this.pending >= this.max;
  }

  /** Throws away up to n buffered bytes (an IMAP literal); returns how many. */
  skip(n: number): number {
    const k = Math.min(n, this.pending);
    this.#start += k;
    if (this.pending === 0) this.rest();
    return k;
  }

  /** Appends chunk (the caller calls take() until null before pushing more). */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    const have = this.pending;
    if (have === 0) {
      this.#buf = chunk;
      this.#start = 0;
      this.#end = chunk.length;
      return;
    }
    const next = new Uint8Array(have + chunk.length);
    next.set(this.#buf.subarray(this.#start, this.#end));
    next.set(chunk, have);
    this.#buf = next;
    this.#start = 0;
    this.#end = next.length;
  }

  /** The next complete line, or the overlong start of one, or null. */
  take(): Taken {
    const have = this.pending;
    if (have === 0) return null;
    const limit = Math.min(this.#end, this.#start + this.max);
    const at = this.#buf.subarray(this.#start, limit).indexOf(LF);
    if (at >= 0) {
      const line = this.#buf.subarray(this.#start, this.#start + at + 1);
      this.#start += at + 1;
      return { line };
    }
    if (have >= this.max) return { overlong: this.rest() };
    return null;
  }

  /** Everything buffered and not taken (the splitter is empty after). */
  rest(): Uint8Array {
    const out = this.#buf.subarray(this.#start, this.#end);
    this.#buf = EMPTY;
    this.#start = this.#end = 0;
    return out;
  }
}

/** The commands the proxy acts on; anything else is "other". */
export type Verb =
  | "EHLO"
  | "HELO"
  | "STARTTLS"
  | "MAIL"
  | "QUIT"
  | "NOOP"
  | "RSET"
  | "HELP"
  | "VRFY"
  | "EXPN"
  | "other";

const KNOWN = new Set<string>([
  "EHLO",
  "HELO",
  "STARTTLS",
  "MAIL",
  "QUIT",
  "NOOP",
  "RSET",
  "HELP",
  "VRFY",
  "EXPN",
]);

/** A client line's verb and whether anything but spaces follows it. */
export interface Command {
  /** The verb, upper case; "other" for any verb the proxy does not act on. */
  verb: Verb;
  /** True when the verb is followed by SP and more than spaces. */
  hasArgs: boolean;
}

/**
 * The verb of a command line (bytes up to the first SP, CR or LF, ASCII
 * letters compared without case). A verb glued to other bytes ("MAILX",
 * "EHLO\0") is "other", as is anything non-ASCII.
 */
export function parseCommand(line: Uint8Array): Command {
  let end = 0;
  while (end < line.length && end < 9) {
    const b = line[end];
    if (b === SP || b === CR || b === LF) break;
    end++;
  }
  const stop = end < line.length ? line[end] : LF;
  if (end === 0 || end > 8 || (stop !== SP && stop !== CR && stop !== LF)) {
    return { verb: "other", hasArgs: false };
  }
  let name = "";
  for (let i = 0; i < end; i++) {
    let b = line[i];
    if (b >= 97 && b <= 122) b -= 32;
    if (b < 65 || b > 90) return { verb: "other", hasArgs: false };
    name += String.fromCharCode(b);
  }
  let hasArgs = false;
  for (let i = end; i < line.length; i++) {
    const b = line[i];
    if (b !== SP && b !== CR && b !== LF) {
      hasArgs = true;
      break;
    }
  }
  return { verb: KNOWN.has(name) ? name as Verb : "other", hasArgs };
}

/** One reply line: its code, and whether it is the last line of its reply. */
export interface ReplyLine {
  /** The three digits, 200-599 (or 100-199) as a number. */
  code: number;
  /** True for "NNN SP text" or "NNN" alone (RFC 5321 4.2.1); false for "NNN-text". */
  last: boolean;
}

/**
 * Parses a server line (with its LF): null when it is not an SMTP reply line
 * (no three digits 1-5, 0-9, 0-9 followed by SP, '-' or the line end).
 */
export function parseReplyLine(line: Uint8Array): ReplyLine | null {
  if (line.length < 4) return null; // "NNN\n" is the shortest
  const [a, b, c, d] = line;
  if (a < 49 || a > 53 || b < 48 || b > 57 || c < 48 || c > 57) return null;
  const code = (a - 48) * 100 + (b - 48) * 10 + (c - 48);
  if (d === DASH) return { code, last: false };
  if (d === SP || d === CR || d === LF) return { code, last: true };
  return null;
}

/** Whether a reply line names the STARTTLS keyword ("250-STARTTLS", any case). */
export function namesStarttls(line: Uint8Array): boolean {
  const kw = "STARTTLS";
  if (line.length < 4 + kw.length) return false;
  for (let i = 0; i < kw.length; i++) {
    let b = line[4 + i];
    if (b >= 97 && b <= 122) b -= 32;
    if (b !== kw.charCodeAt(i)) return false;
  }
  const after = line.length > 12 ? line[12] : LF;
  return after === SP || after === CR || after === LF;
}

const STARTTLS_MORE = new TextEncoder().encode("250-STARTTLS\r\n");
const STARTTLS_LAST = new TextEncoder().encode("250 STARTTLS\r\n");

/**
 * Follows the server's replies line by line. For a reply marked as the
 * answer to EHLO (`expectEhlo`), a successful (2xx) one gets the STARTTLS
 * keyword: a line "250-STARTTLS" before its last line, or, when the reply is
 * a single line (which RFC 5321 makes the greeting line), that line turned
 * into "250-..." and "250 STARTTLS" after it. A reply that already names
 * STARTTLS is left alone.
 */
export class ReplyTracker {
  #first = true;
  #ehlo = false;
  #hasStarttls = false;
  #failed = false;

  /** Marks the next reply as the answer to EHLO. */
  expectEhlo(): void {
    this.#ehlo = true;
  }

  /** Whether a reply has begun and not ended. */
  get inReply(): boolean {
    return !this.#first;
  }

  /**
   * One line from the server (LF included): what to send on, and whether
   * the reply ended. Null when the line is no reply line (the caller stops
   * parsing); the line is then still the caller's to relay.
   */
  line(line: Uint8Array): Relayed | null {
    const r = parseReplyLine(line);
    if (!r) return null;
    const first = this.#first;
    if (first) {
      this.#hasStarttls = false;
      this.#failed = r.code < 200 || r.code > 299;
    }
    if (!first && namesStarttls(line)) this.#hasStarttls = true;
    if (!r.last) {
      this.#first = false;
      return { out: [line], ended: false };
    }
    this.#first = true;
    const ehlo = this.#ehlo;
    this.#ehlo = false;
    if (!ehlo || this.#failed || this.#hasStarttls || r.code < 200 || r.code > 299) {
      return { out: [line], ended: true };
    }
    if (!first) return { out: [STARTTLS_MORE, line], ended: true };
    // "250 host\r\n" -> "250-host\r\n" "250 STARTTLS\r\n"; a bare "250\r\n" too
    const more = new Uint8Array(line.length + (line[3] === SP ? 0 : 1));
    more.set(line.subarray(0, 3));
    more[3] = DASH;
    more.set(line.subarray(line[3] === SP ? 4 : 3), 4);
    return { out: [more, STARTTLS_LAST], ended: true };
  }
}

/** The answer to STARTTLS, as skarnet's proxy words it. */
export const SMTP_READY = "220 Ready to start TLS";
/** The answer to a command refused before STARTTLS (RFC 3207). */
export const SMTP_MUST_STARTTLS = "530 Must issue a STARTTLS command first";
const READY_BYTES = ascii(`${SMTP_READY}\r\n`);
const MUST_BYTES = ascii(`${SMTP_MUST_STARTTLS}\r\n`);
const NO_PARAMS = ascii("501 5.5.4 Syntax error (no parameters allowed)\r\n");

/**
 * One SMTP connection before TLS: EHLO answers get STARTTLS; EHLO, NOOP,
 * RSET, HELP, VRFY and EXPN are passed on one at a time; HELO, QUIT and
 * anything else end the parsing, unless TLS is required: then HELO is
 * passed on too and everything else but QUIT is answered with 530.
 */
class SmtpDialogue implements Dialogue {
  #tracker = new ReplyTracker();
  constructor(readonly requireTls: boolean) {}

  command(line: Uint8Array): Decision {
    const { verb, hasArgs } = parseCommand(line);
    switch (verb) {
      case "STARTTLS":
        return hasArgs ? { to: "client", answer: NO_PARAMS } : { to: "tls", answer: READY_BYTES };
      case "EHLO":
        this.#tracker.expectEhlo();
        return { to: "program" };
      case "NOOP":
      case "RSET":
      case "HELP":
      case "VRFY":
      case "EXPN":
        return { to: "program" };
      case "HELO":
        return this.requireTls ? { to: "program" } : { to: "plain" };
      case "QUIT":
        return { to: "plain" };
      default:
        return this.requireTls ? { to: "client", answer: MUST_BYTES } : { to: "plain" };
    }
  }

  continued(): number {
    return 0;
  }

  reply(line: Uint8Array): Relayed | null {
    return this.#tracker.line(line);
  }
}

/** SMTP's row of the protocol table: smtpd-starttls-proxy (RFC 3207). */
export const SMTP_PROTOCOL: StarttlsProtocol = {
  tool: "smtpd-starttls-proxy",
  verb: "STARTTLS",
  server: "smtpd",
  // RFC 5321 allows 512 for both
  commandMax: 1024,
  replyMax: 4096,
  tooLong: ascii("500 5.5.2 Line too long\r\n"),
  dialogue: (requireTls) => new SmtpDialogue(requireTls),
};
