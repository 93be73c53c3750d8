/**
 * What the STARTTLS proxy needs to know of one protocol, as a table entry
 * (SMTP in smtp.ts, POP3 in pop3.ts, IMAP in imap.ts): the relay
 * (relay.ts) is the same for all three and asks a per-connection Dialogue
 * what each client command line means and what to make of each server
 * line. Everything here is bytes: a dialogue looks at ASCII letters, digits
 * and punctuation, and never decodes text.
 */

/** What the relay does with one client command line, before TLS. */
export type Decision =
  /** Pass it to the program, which owes one response; keep parsing. */
  | { to: "program" }
  /**
   * Stop parsing: this line and everything after it go to the program as
   * they come, and its output to the client (the client will not start TLS).
   */
  | { to: "plain" }
  /**
   * It is the protocol's STARTTLS: send `answer` (the "go ahead"), discard
   * what the client pipelined after the line, run the handshake.
   */
  | { to: "tls"; answer: Uint8Array }
  /**
   * Answered here (a refused or malformed command); keep parsing. `literal`:
   * first discard that many bytes of a non-synchronizing IMAP literal and
   * the command's continuation lines (Dialogue.continued), then answer.
   */
  | { to: "client"; answer: Uint8Array; literal?: number };

/** What a Dialogue made of one server line. */
export interface Relayed {
  /** The bytes to send the client for this line (the line, maybe with the capability added). */
  out: Uint8Array[];
  /** True when this line ended the response the relay was waiting for. */
  ended: boolean;
}

/** One connection's protocol state, driven by the relay. */
export interface Dialogue {
  /** One client line (LF included), before TLS: what to do with it. */
  command(line: Uint8Array): Decision;
  /**
   * The next line of a refused command after a discarded literal: the size
   * of the next non-synchronizing literal it announces, or 0 when the
   * command ends with this line.
   */
  continued(line: Uint8Array): number;
  /**
   * One server line (LF included): what to send the client and whether the
   * awaited response ended; null when the line is not this protocol (or
   * something the proxy does not follow): the relay then stops parsing and
   * relays it, and everything after, as is.
   */
  reply(line: Uint8Array): Relayed | null;
}

/** One row of the protocol table. */
export interface StarttlsProtocol {
  /** The tool's name (argv[0]), also the prefix of its log lines and messages. */
  tool: string;
  /** The command that starts TLS ("STARTTLS", POP3's "STLS"), for the log. */
  verb: string;
  /** The program its usage line names ("smtpd", "pop3d", "imapd"). */
  server: string;
  /** The longest client line parsed before TLS (LF included). */
  commandMax: number;
  /** The longest server line parsed before TLS (LF included). */
  replyMax: number;
  /** The answer to an overlong client line when TLS is required (the connection then ends). */
  tooLong: Uint8Array;
  /** A fresh dialogue for one connection; requireTls: refuse authentication before TLS. */
  dialogue(requireTls: boolean): Dialogue;
}

const enc = new TextEncoder();

/** text (ASCII) as bytes. */
export function ascii(text: string): Uint8Array {
  return enc.encode(text);
}

/** Whether b is SP, CR or LF (where a word ends on a command or reply line). */
export function isWordEnd(b: number | undefined): boolean {
  return b === undefined || b === 32 || b === 13 || b === 10;
}

/**
 * Whether line[at...] is the ASCII word `upper` (letters compared without
 * case) ending at SP, CR, LF or the line's end.
 */
export function wordAt(line: Uint8Array, at: number, upper: string): boolean {
  if (at + upper.length > line.length) return false;
  for (let i = 0; i < upper.length; i++) {
    let b = line[at + i];
    if (b >= 97 && b <= 122) b -= 32;
    if (b !== upper.charCodeAt(i)) return false;
  }
  return isWordEnd(line[at + upper.length]);
}

/**
 * The ASCII letters of line from `at` up to SP, CR or LF, upper-cased, and
 * where they end; null when that word is empty, longer than `max`, or holds
 * anything but letters.
 */
export function letterWord(
  line: Uint8Array,
  at: number,
  max: number,
): { word: string; end: number } | null {
  let word = "";
  let i = at;
  for (; i < line.length && !isWordEnd(line[i]); i++) {
    let b = line[i];
    if (b >= 97 && b <= 122) b -= 32;
    if (b < 65 || b > 90 || word.length >= max) return null;
    word += String.fromCharCode(b);
  }
  return word === "" ? null : { word, end: i };
}

/** Whether anything but SP, CR and LF follows line[at]. */
export function hasMore(line: Uint8Array, at: number): boolean {
  for (let i = at; i < line.length; i++) if (!isWordEnd(line[i])) return true;
  return false;
}
