/**
 * tcprules' compiler: rules lines to cdb records, byte for byte as DJB's
 * tcprules writes them (the cdb itself: lib/rules/cdb.ts; reading the
 * records back: lib/rules/lookup.ts).
 *
 * Record format (DJB's): key = the address; data = "D\0" for deny (nothing
 * for allow), then "+NAME=value\0" per variable. Our additions, all in lines
 * DJB's tcprules rejects (or, for CIDR, would store as a key no lookup tries):
 * "-NAME\0" unsets NAME; IPv6 addresses are stored canonical; a CIDR rule
 * 10.0.0.0/8 is stored under its canonical "network/bits" key, and the keys
 * "cidr:v4" / "cidr:v6" list the prefix lengths present (one byte each,
 * longest first) so a lookup tries only those lengths.
 *
 * Rules are bytes: keys, values and the line a RuleSyntaxError shows are
 * the input's own bytes (byte strings, lib/core/bytes.ts), never decoded.
 */
import { byteString, stringBytes } from "../core/bytes.ts";
import {
  canonicalIp,
  hasHostBits,
  type Ip,
  parseIp4,
  parseIp6,
  prefixKey,
  unmapped,
} from "../net/ip.ts";

/** Key listing the IPv4 CIDR prefix lengths present. */
export const CIDR_V4_KEY = "cidr:v4";
/** Key listing the IPv6 CIDR prefix lengths present. */
export const CIDR_V6_KEY = "cidr:v6";

/**
 * A rules line tcprules cannot parse. `line` is what DJB's message shows
 * (the line up to a NUL), a byte string; so is the message.
 */
export class RuleSyntaxError extends Error {
  /** `line`: the bad line's bytes, as a byte string. */
  constructor(readonly line: string) {
    super(`unable to parse this line: ${line}`);
    this.name = "RuleSyntaxError";
  }
}

const COLON = 58, COMMA = 44, EQ = 61, AT = 64, DASH = 45, DOT = 46, SLASH = 47;
const HASH = 35, NL = 10, SP = 32, TAB = 9;
const ALLOW = [97, 108, 108, 111, 119];
const DENY = [100, 101, 110, 121];
const encoder = new TextEncoder();

function startsWithAt(b: Uint8Array, at: number, end: number, word: number[]): boolean {
  if (end - at < word.length) return false;
  for (let i = 0; i < word.length; i++) if (b[at + i] !== word[i]) return false;
  return true;
}

function indexOf(b: Uint8Array, c: number, from: number, end: number): number {
  for (let i = from; i < end; i++) if (b[i] === c) return i;
  return -1;
}

/** scan_ulong over all of b[from, to): the number, or -1 when a byte is not a digit. */
function wholeNumber(b: Uint8Array, from: number, to: number): number {
  let n = 0;
  if (to - from > 15) {
    // DJB's unsigned long wraps; keep that for absurd lengths.
    let big = 0n;
    for (let i = from; i < to; i++) {
      if (b[i] < 48 || b[i] > 57) return -1;
      big = BigInt.asUintN(64, big * 10n + BigInt(b[i] - 48));
    }
    return big > 1000n ? 1000 : Number(big);
  }
  for (let i = from; i < to; i++) {
    if (b[i] < 48 || b[i] > 57) return -1;
    n = n * 10 + b[i] - 48;
  }
  return n;
}

/**
 * Where a RuleCompiler puts its records, as ranges of its own buffers: the
 * key is key[kstart, kend), the data data[dstart, dend). Both are reused
 * after the call returns, so the sink copies what it keeps (CdbWriter and
 * CdbFile are sinks: no views are made per record).
 */
export interface RecordSink {
  /** Takes one record; must copy the bytes before returning. */
  addRecord(
    key: Uint8Array,
    kstart: number,
    kend: number,
    data: Uint8Array,
    dstart: number,
    dend: number,
  ): void;
}

// Bytes that decide how the address part (before the first colon) is read.
const C_COLON = 1, C_EQ_AT = 2, C_SLASH = 3, C_DASH = 4, C_NL = 5;
const CLASS = new Uint8Array(256);
CLASS[NL] = C_NL;
CLASS[COLON] = C_COLON;
CLASS[EQ] = C_EQ_AT;
CLASS[AT] = C_EQ_AT;
CLASS[SLASH] = C_SLASH;
CLASS[DASH] = C_DASH;

/**
 * Compiles tcprules lines to cdb records, emitting each in the order DJB's
 * tcprules does, to a RecordSink or to a function `emit(key, data)`. `emit`
 * must copy what it keeps: key and data are views into reused buffers.
 */
export class RuleCompiler {
  #sink: RecordSink;
  #data = new Uint8Array(256);
  #dlen = 0;
  #key = new Uint8Array(256);
  #v4 = new Set<number>();
  #v6 = new Set<number>();
  #lines = 0;

  /** A compiler handing each record to `emit` or to a sink (which must copy what it keeps). */
  constructor(emit: ((key: Uint8Array, data: Uint8Array) => void) | RecordSink) {
    this.#sink = typeof emit === "function"
      ? {
        addRecord: (k, ks, ke, d, ds, de) => emit(k.subarray(ks, ke), d.subarray(ds, de)),
      }
      : emit;
  }

  /** Room for n more bytes of data. */
  #dataRoom(n: number): Uint8Array {
    if (this.#dlen + n > this.#data.length) {
      const d = new Uint8Array(Math.max(this.#data.length * 2, this.#dlen + n));
      d.set(this.#data.subarray(0, this.#dlen));
      this.#data = d;
    }
    return this.#data;
  }

  /** How many lines have been begun: after a RuleSyntaxError, the bad line's number. */
  get lineCount(): number {
    return this.#lines;
  }

  /**
   * Compiles one line (without its newline), b[start, end). Throws
   * RuleSyntaxError for a line DJB's tcprules rejects (and we do not extend).
   */
  line(b: Uint8Array, start = 0, end = b.length): void {
    this.#lines++;
    this.#line(b, start, end);
  }

  /**
   * Compiles every complete line of b[from, to) (each ending in a newline)
   * and returns where the unfinished rest begins (`to` when there is none);
   * the same records and errors as line() on each line, in one pass over
   * most lines' bytes instead of a search for the newline and then a parse.
   */
  lines(b: Uint8Array, from = 0, to = b.length): number {
    if (to <= from) return from;
    const last = b.subarray(from, to).lastIndexOf(NL);
    if (last < 0) return from;
    const stop = from + last; // a newline: no scan below reads past it
    let s = from;
    while (s <= stop) {
      this.#lines++;
      const e = this.#fastLine(b, s);
      if (e >= 0) {
        s = e + 1;
        continue;
      }
      const nl = b.indexOf(NL, s);
      this.#line(b, s, nl);
      s = nl + 1;
    }
    return s;
  }

  /**
   * The common line, b[s] up to the next newline (which is known to be
   * there, so every loop stops at it): the newline's position once compiled,
   * or -1 (nothing emitted) when line() must compile it instead: trailing
   * blanks (trimmed first), unsets, anything odd or an error.
   */
  #fastLine(b: Uint8Array, s: number): number {
    const first = b[s];
    if (first === NL) return s;
    if (first === HASH) return b.indexOf(NL, s);
    let colon = s, plain = false, slash = false, dash = -1;
    for (;; colon++) {
      const k = CLASS[b[colon]];
      if (k === 0) continue;
      if (k === C_COLON) break;
      if (k === C_NL) return colon; // no colon: not a rule, blanks or not
      if (k === C_EQ_AT) plain = true;
      else if (k === C_SLASH) slash = true;
      else if (dash < 0) dash = colon;
    }
    const d = this.#data;
    let n = 0;
    let x = colon + 1;
    // Each comparison that matches is not a newline, so the next read is inside the line.
    if (
      b[x] === 97 && b[x + 1] === 108 && b[x + 2] === 108 && b[x + 3] === 111 && b[x + 4] === 119
    ) {
      x += 5; // allow
    } else if (b[x] === 100 && b[x + 1] === 101 && b[x + 2] === 110 && b[x + 3] === 121) {
      x += 4; // deny
      d[n++] = 68; // D
      d[n++] = 0;
    } else return -1;
    for (;;) {
      let c = b[x];
      if (c === NL) break;
      if (c !== COMMA) return -1;
      d[n++] = 43; // +
      let i = x + 1;
      while ((c = b[i]) !== EQ) {
        if (c === NL) return -1;
        d[n++] = c;
        i++;
      }
      d[n++] = EQ;
      const quote = b[++i];
      if (quote === NL) return -1;
      while ((c = b[++i]) !== quote) {
        if (c === NL) return -1;
        d[n++] = c;
      }
      d[n++] = 0;
      x = i + 1;
    }
    const before = b[x - 1];
    // Writes past the end of d were dropped: line() makes room and starts over.
    if (before === SP || before === TAB || n > d.length) return -1;
    this.#dlen = n;
    if (plain || (!slash && dash < 0)) this.#sink.addRecord(b, s, colon, d, 0, n);
    else if (slash) this.#cidr4Line(b, s, colon, x);
    else this.#range(b, s, dash, colon, x);
    return x;
  }

  #line(b: Uint8Array, start: number, end: number): void {
    if (end === start) return;
    if (b[start] === HASH) return;
    while (end > start) {
      const c = b[end - 1];
      if (c !== NL && c !== SP && c !== TAB) break;
      end--;
    }
    // One pass over the address: where the colon is, and what DJB's
    // tcprules looks for before it ("=" or "@": a plain key; "/": our CIDR;
    // "-": a range).
    let colon = -1, plain = false, slash = false, dash = -1;
    for (let i = start; i < end; i++) {
      const k = CLASS[b[i]];
      if (k === 0) continue;
      if (k === C_COLON) {
        colon = i;
        break;
      }
      if (k === C_EQ_AT) plain = true;
      else if (k === C_SLASH) slash = true;
      else if (dash < 0) dash = i;
    }
    if (colon < 0) return;
    if (this.#instructions(b, colon + 1, end)) {
      if (plain || (!slash && dash < 0)) {
        this.#sink.addRecord(b, start, colon, this.#data, 0, this.#dlen);
      } else if (slash) this.#cidr4Line(b, start, colon, end);
      else this.#range(b, start, dash, colon, end);
      return;
    }
    // Our IPv6 syntax: the address ends at the first colon followed by allow or deny.
    for (let p = colon + 1; p < end; p++) {
      if (b[p] !== COLON) continue;
      if (!startsWithAt(b, p + 1, end, ALLOW) && !startsWithAt(b, p + 1, end, DENY)) continue;
      if (!this.#instructions(b, p + 1, end)) continue;
      let addr = byteString(b.subarray(start, p));
      const at = addr.lastIndexOf("@");
      const info = at >= 0 ? addr.slice(0, at + 1) : "";
      addr = addr.slice(at + 1);
      // "2001:db8::deny": the rule's colon is the second of "::".
      let key = this.#ip6Key(addr, info.length > 0);
      if (key === null && b[p - 1] === COLON) key = this.#ip6Key(addr + ":", info.length > 0);
      if (key === null) throw syntaxError(b, start, end);
      this.#emitKey(stringBytes(info + key));
      return;
    }
    throw syntaxError(b, start, end);
  }

  /** Canonical key for an IPv6 address or CIDR prefix, or null. */
  #ip6Key(addr: string, withInfo: boolean): string | null {
    const slash = addr.indexOf("/");
    if (slash < 0) {
      const c = parseIp6(addr) ? canonicalIp(addr) : null;
      return c;
    }
    if (withInfo) return null;
    const b = parseIp6(addr.slice(0, slash));
    const bits = bitsOf(addr.slice(slash + 1), 128);
    if (!b || bits < 0 || hasHostBits(b, bits)) return null;
    return this.#cidrKey(unmappedPrefix({ family: 6, bytes: b }, bits));
  }

  #cidrKey([ip, bits]: [Ip, number]): string {
    (ip.family === 4 ? this.#v4 : this.#v6).add(bits);
    return prefixKey(ip, bits);
  }

  /** Parses instructions b[from, end) into #data; false when DJB's tcprules rejects them. */
  #instructions(b: Uint8Array, from: number, end: number): boolean {
    // Never longer than 1.5 times the instructions ("deny" is "D\0", ",A" is "-A\0").
    this.#dlen = 0;
    const d = this.#dataRoom(2 * (end - from) + 4);
    let n = 0;
    let x = from;
    if (
      end - x >= 5 && b[x] === 97 && b[x + 1] === 108 && b[x + 2] === 108 &&
      b[x + 3] === 111 && b[x + 4] === 119
    ) x += 5; // allow
    else if (
      end - x >= 4 && b[x] === 100 && b[x + 1] === 101 && b[x + 2] === 110 && b[x + 3] === 121
    ) {
      x += 4; // deny
      d[n++] = 68; // D
      d[n++] = 0;
    } else return false;
    while (x < end) {
      if (b[x] !== COMMA) return false;
      const mark = n;
      d[n++] = 43; // +
      let i = x + 1;
      while (i < end && b[i] !== EQ) d[n++] = b[i++];
      if (i === end) {
        this.#dlen = mark;
        return this.#unsets(b, x, end);
      }
      d[n++] = EQ;
      if (++i >= end) return false;
      const quote = b[i++];
      while (i < end && b[i] !== quote) d[n++] = b[i++];
      if (i === end) return false;
      d[n++] = 0;
      x = i + 1;
    }
    this.#dlen = n;
    return true;
  }

  /** Our unset form ",NAME,NAME2" (no "=" left on the line): "-NAME\0" each. */
  #unsets(b: Uint8Array, x: number, end: number): boolean {
    const d = this.#data;
    let n = this.#dlen;
    while (x < end) {
      // b[x] is a comma
      let e = indexOf(b, COMMA, x + 1, end);
      if (e < 0) e = end;
      if (e === x + 1) return false;
      d[n++] = 45; // -
      for (let i = x + 1; i < e; i++) d[n++] = b[i];
      d[n++] = 0;
      x = e;
    }
    this.#dlen = n;
    return true;
  }

  #emitKey(key: Uint8Array): void {
    this.#sink.addRecord(key, 0, key.length, this.#data, 0, this.#dlen);
  }

  /** Our IPv4 CIDR rule, address b[start, end) (it holds a "/"). */
  #cidr4Line(b: Uint8Array, start: number, end: number, lineEnd: number): void {
    const key = this.#cidr4(byteString(b.subarray(start, end)));
    if (key === null) throw syntaxError(b, start, lineEnd);
    this.#emitKey(encoder.encode(key));
  }

  /** DJB's range "1.2.3.37-53", address b[start, end), the first dash at `dash`: one key per number. */
  #range(b: Uint8Array, start: number, dash: number, end: number, lineEnd: number): void {
    let left = start;
    for (let i = dash - 1; i >= start; i--) {
      if (b[i] === DOT) {
        left = i + 1;
        break;
      }
    }
    let right = indexOf(b, DOT, dash + 1, end);
    if (right < 0) right = end;
    let bot = wholeNumber(b, left, dash);
    let top = wholeNumber(b, dash + 1, right);
    if (bot < 0 || top < 0) throw syntaxError(b, start, lineEnd);
    if (top > 255) top = 255;
    for (; bot <= top; bot++) {
      const digits = String(bot);
      const len = (left - start) + digits.length + (end - right);
      if (len > this.#key.length) this.#key = new Uint8Array(len * 2);
      const key = this.#key;
      key.set(b.subarray(start, left), 0);
      let k = left - start;
      for (let i = 0; i < digits.length; i++) key[k++] = digits.charCodeAt(i);
      key.set(b.subarray(right, end), k);
      this.#sink.addRecord(key, 0, len, this.#data, 0, this.#dlen);
    }
  }

  /**
   * "10.0.0.0/8", "127.0/8" (missing parts are 0), "127./8" (a trailing dot,
   * as ucspi-tcp6's tcprules man page writes it, adds nothing): the
   * canonical key, or null.
   */
  #cidr4(addr: string): string | null {
    const slash = addr.indexOf("/");
    const parts = addr.slice(0, slash).split(".");
    if (parts.length > 1 && parts[parts.length - 1] === "") parts.pop();
    if (parts.length > 4) return null;
    while (parts.length < 4) parts.push("0");
    const b = parseIp4(parts.join("."));
    const bits = bitsOf(addr.slice(slash + 1), 32);
    if (!b || bits < 0 || hasHostBits(b, bits)) return null;
    return this.#cidrKey([{ family: 4, bytes: b }, bits]);
  }

  /** Emits the CIDR length lists (after all rules). */
  finish(): void {
    for (const [key, set] of [[CIDR_V4_KEY, this.#v4], [CIDR_V6_KEY, this.#v6]] as const) {
      if (set.size === 0) continue;
      const lens = Uint8Array.from([...set].sort((x, y) => y - x));
      const k = encoder.encode(key);
      this.#sink.addRecord(k, 0, k.length, lens, 0, lens.length);
    }
  }
}

/** The error for line b[start, end): DJB shows the line up to a NUL, its bytes as they are. */
function syntaxError(b: Uint8Array, start: number, end: number): RuleSyntaxError {
  const nul = indexOf(b, 0, start, end);
  return new RuleSyntaxError(byteString(b.subarray(start, nul < 0 ? end : nul)));
}

function bitsOf(s: string, max: number): number {
  if (!/^[0-9]{1,3}$/.test(s)) return -1;
  const n = Number(s);
  return n > max ? -1 : n;
}

/** An IPv6 prefix inside ::ffff:0:0/96 as the IPv4 prefix it covers. */
function unmappedPrefix(ip: Ip, bits: number): [Ip, number] {
  if (ip.family === 6 && bits >= 96) {
    const u = unmapped(ip);
    if (u.family === 4) return [u, bits - 96];
  }
  return [ip, bits];
}

/**
 * Compiles a whole rules text (lines separated by \n) to records, for tests
 * and tools. A string is text: compiled as its UTF-8 bytes, as a file
 * holding it would be.
 */
export function compileRules(text: Uint8Array | string): Array<[Uint8Array, Uint8Array]> {
  const b = typeof text === "string" ? encoder.encode(text) : text;
  const out: Array<[Uint8Array, Uint8Array]> = [];
  const c = new RuleCompiler((k, d) => out.push([k.slice(), d.slice()]));
  const rest = c.lines(b);
  if (rest < b.length) c.line(b, rest, b.length);
  c.finish();
  return out;
}
