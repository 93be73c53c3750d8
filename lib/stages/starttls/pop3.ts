/**
 * POP3's row of the STARTTLS proxy's protocol table (protocol.ts):
 * pop3d-starttls-proxy, STLS as RFC 2595 section 4 defines it. Pure
 * functions over bytes, for the relay and the fuzz target.
 *
 * POP3 answers are one status line ("+OK ..." or "-ERR ...", RFC 1939),
 * but for CAPA (RFC 2449), whose "+OK" is followed by one capability per
 * line up to a line holding only ".". Before TLS a client in the
 * AUTHORIZATION state sends CAPA, STLS, QUIT or the commands that
 * authenticate (USER, PASS, APOP, AUTH); only CAPA is passed on while
 * parsing, and the STLS capability added to its successful answer.
 */
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

/** The answer to STLS (RFC 2595 gives "+OK Begin TLS negotiation" as its example). */
export const POP3_READY = "+OK Begin TLS negotiation";
/** The answer to a command refused before STLS when TLS is required. */
export const POP3_MUST_STLS = "-ERR Must issue a STLS command first";
const READY_BYTES = ascii(`${POP3_READY}\r\n`);
const MUST_BYTES = ascii(`${POP3_MUST_STLS}\r\n`);
const NO_ARGS = ascii("-ERR STLS takes no argument\r\n");
const STLS_LINE = ascii("STLS\r\n");

/** What a server line is: a status line (+OK, -ERR) or not. */
export function pop3Status(line: Uint8Array): "+OK" | "-ERR" | null {
  if (line[0] === 43 && line[1] === 79 && line[2] === 75 && isWordEnd(line[3])) return "+OK";
  if (
    line[0] === 45 && line[1] === 69 && line[2] === 82 && line[3] === 82 && isWordEnd(line[4])
  ) return "-ERR";
  return null;
}

/** Whether a line of a multi-line answer is its end: "." alone (CRLF or LF). */
export function isPop3End(line: Uint8Array): boolean {
  if (line[0] !== 46) return false;
  return (line.length === 2 && line[1] === 10) ||
    (line.length === 3 && line[1] === 13 && line[2] === 10);
}

/**
 * Follows POP3 answers line by line: the greeting and every answer is one
 * status line, but the +OK answer to CAPA, which runs to its "." line; that
 * line gets "STLS" before it unless the list named STLS already.
 */
export class Pop3Tracker {
  #capa = false;
  #inList = false;
  #hasStls = false;

  /** Marks the next answer as the answer to CAPA. */
  expectCapa(): void {
    this.#capa = true;
  }

  /** One server line: what to send on and whether the answer ended; null when it is not POP3. */
  line(line: Uint8Array): Relayed | null {
    if (this.#inList) {
      if (isPop3End(line)) {
        this.#inList = false;
        return { out: this.#hasStls ? [line] : [STLS_LINE, line], ended: true };
      }
      if (wordAt(line, 0, "STLS")) this.#hasStls = true;
      return { out: [line], ended: false };
    }
    const status = pop3Status(line);
    if (status === null) return null;
    const capa = this.#capa;
    this.#capa = false;
    if (capa && status === "+OK") {
      this.#inList = true;
      this.#hasStls = false;
      return { out: [line], ended: false };
    }
    return { out: [line], ended: true };
  }
}

/**
 * One POP3 connection before TLS: CAPA is passed on (its answer gets
 * STLS), STLS answered here; QUIT and anything else end the parsing, unless
 * TLS is required: then everything but CAPA, STLS and QUIT is refused.
 */
class Pop3Dialogue implements Dialogue {
  #tracker = new Pop3Tracker();
  constructor(readonly requireTls: boolean) {}

  command(line: Uint8Array): Decision {
    const w = letterWord(line, 0, 8);
    const verb = w && isWordEnd(line[w.end]) ? w.word : "";
    const args = w ? hasMore(line, w.end) : false;
    switch (verb) {
      case "CAPA":
        this.#tracker.expectCapa();
        return { to: "program" };
      case "STLS":
        return args ? { to: "client", answer: NO_ARGS } : { to: "tls", answer: READY_BYTES };
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

/** POP3's row of the protocol table: pop3d-starttls-proxy (RFC 2595 STLS). */
export const POP3_PROTOCOL: StarttlsProtocol = {
  tool: "pop3d-starttls-proxy",
  verb: "STLS",
  server: "pop3d",
  // RFC 2449: commands up to 255 octets, answers up to 512
  commandMax: 1024,
  replyMax: 4096,
  tooLong: ascii("-ERR Line too long\r\n"),
  dialogue: (requireTls) => new Pop3Dialogue(requireTls),
};
