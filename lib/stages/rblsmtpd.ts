/**
 * rblsmtpd as a stage: decides from $RBLSMTPD or RBL lookups of $TCPREMOTEIP
 * whether to block the client; a blocked client gets DJB's limited SMTP
 * conversation (220 greeting, 250 to HELO/EHLO/MAIL/RSET/NOOP, the error to
 * everything else, 221 to QUIT) and one log line; anyone else gets `{ next }`.
 *
 * Beyond DJB's 0.88 (from the patches mail sites run):
 * - `-r base:message` looks up an A record instead of TXT (RBLs publishing
 *   only A records) and blocks with `message` (`-r base:` uses
 *   "%IP% is listed in base").
 * - `%IP%` in the message (TXT, $RBLSMTPD, -r base:message) is replaced by
 *   $TCPREMOTEIP; `$RBLMESSAGE`, when set, is prefixed to the reply text.
 * - IPv6 clients are looked up by reversed nibbles; IPv4-mapped IPv6 by
 *   their IPv4 address.
 * - Lookups are asynchronous, bounded by $RBLSMTPD_DNSTIMEOUT seconds
 *   (default 10), and answers are cached for their TTL (bounded cache).
 */
import { DnsTemporaryError } from "../net/dns/errors.ts";
import { reverseName } from "../net/dns/name.ts";
import { TYPE } from "../net/dns/wire.ts";
import { defaultServers } from "../net/dns/transport.ts";
import { DnsCache } from "../net/dns/cache.ts";
import { lookup } from "../net/dns/resolver.ts";
import { isIPv4, isIPv6 } from "../net/ip.ts";
import { BoundedMap } from "../core/bounded.ts";
import { stringBytes, utf8ByteString } from "../core/bytes.ts";
import { usage } from "../core/errors.ts";
import { getopt, scanUlong } from "../core/getopt.ts";
import type { Io, Outcome, Stage } from "./stage.ts";

/** The usage line's text after "rblsmtpd: usage: " (as DJB's prints it). */
export const RBLSMTPD_USAGE =
  "rblsmtpd [ -b ] [ -R ] [ -t timeout ] [ -r base ] [ -a base ] smtpd [ arg ... ]";

/** DJB's default RBL, used when no -r is given. */
export const DEFAULT_RBL = "rbl.maps.vix.com";

/** One -r or -a source, with the -b/-c flags in force where it appeared. */
export interface RblSource {
  /** -r: a listing blocks the client; -a: a listing lets it through (anti-RBL). */
  kind: "rbl" | "anti";
  /** The DNS zone looked up (the client's reversed address under it). */
  base: string;
  /** -r base:message: an A-record RBL blocking with this message. */
  aMessage?: string;
  /** -b: a block is a permanent 553 (-B, the default: a temporary 451). */
  bounce: boolean;
  /** -c: a temporary DNS failure blocks (451) instead of letting the client through (-C). */
  failClosed: boolean;
}

/** rblsmtpd's parsed command line. */
export interface RblsmtpdArgs {
  /** The -r and -a sources in command-line order (the default RBL when none). */
  sources: RblSource[];
  /** Seconds before the limited conversation is dropped; 0: answer at once. */
  timeout: number;
  /** The program (smtpd) and its arguments, run when the client is not blocked. */
  prog: string[];
}

/**
 * Parses `[ -bBcC ] [ -t timeout ] [ -r base ... ] [ -a base ... ] prog`.
 * DJB's rblsmtpd looks each source up as it parses it, so each source keeps
 * the -b/-c flags given before it; DJB's default RBL (no -r) gets the final
 * ones. Throws the usage ToolError (exit 100).
 */
export function parseRblsmtpdArgs(args: string[]): RblsmtpdArgs {
  const { options, rest } = getopt("rblsmtpd", args, "bBcCt:r:a:", RBLSMTPD_USAGE);
  let bounce = false;
  let failClosed = false;
  let timeout = 60;
  let wantDefault = true;
  const sources: RblSource[] = [];
  for (const { letter, value } of options) {
    switch (letter) {
      case "b":
        bounce = true;
        break;
      case "B":
        bounce = false;
        break;
      case "c":
        failClosed = true;
        break;
      case "C":
        failClosed = false;
        break;
      case "t":
        timeout = scanUlong(value);
        break;
      case "r": {
        wantDefault = false;
        const colon = value.indexOf(":");
        if (colon >= 0) {
          const base = value.slice(0, colon);
          const msg = value.slice(colon + 1);
          sources.push({
            kind: "rbl",
            base,
            // argv is text: the message's UTF-8 bytes, as C reads its argv
            aMessage: utf8ByteString(msg === "" ? `%IP% is listed in ${base}` : msg),
            bounce,
            failClosed,
          });
        } else {
          sources.push({ kind: "rbl", base: value, bounce, failClosed });
        }
        break;
      }
      case "a":
        sources.push({ kind: "anti", base: value, bounce, failClosed });
        break;
    }
  }
  if (rest.length === 0) throw usage("rblsmtpd", RBLSMTPD_USAGE);
  if (wantDefault) sources.push({ kind: "rbl", base: DEFAULT_RBL, bounce, failClosed });
  return { sources, timeout, prog: rest };
}

/** The verdict: let the client through, or block with a text and SMTP code. */
export type Verdict =
  | { block: false }
  | { block: true; code: 451 | 553; text: string };

/** How rblsmtpd asks DNS; replaceable for tests and benchmarks. */
export interface RblLookups {
  /**
   * The TXT records of name joined (DJB's dns_txt) as a byte string, "" if
   * none; throws DnsTemporaryError.
   */
  txt(name: string, env: Map<string, string>): Promise<string>;
  /** Whether name has an A record; throws DnsTemporaryError. */
  a(name: string, env: Map<string, string>): Promise<boolean>;
}

let sharedCache: DnsCache | undefined;

/** The cache every in-process rblsmtpd shares (created on first use). */
export function rblCache(): DnsCache {
  sharedCache ??= new DnsCache(10000);
  return sharedCache;
}

function dnsTimeoutMs(env: Map<string, string>): number {
  const v = env.get("RBLSMTPD_DNSTIMEOUT");
  const n = v === undefined ? NaN : Number(v);
  return Number.isFinite(n) && n > 0 ? n * 1000 : 10000;
}

/** Lookups through lib/net/dns/: $DNSCACHEIP or resolv.conf, cached for the TTL. */
export const dnsLookups: RblLookups = {
  async txt(name, env) {
    const a = await lookup(name, TYPE.TXT, {
      servers: defaultServers(env),
      timeoutMs: dnsTimeoutMs(env),
      cache: rblCache(),
    });
    return a.values.join("");
  },
  async a(name, env) {
    const a = await lookup(name, TYPE.A, {
      servers: defaultServers(env),
      timeoutMs: dnsTimeoutMs(env),
      cache: rblCache(),
    });
    return a.values.length > 0;
  },
};

/**
 * The name looked up under base for ip: reversed octets (or nibbles for
 * IPv6); anything else reversed at its dots, as DJB's rblsmtpd does
 * (an empty $TCPREMOTEIP looks up base itself).
 */
export function rblName(ip: string, base: string): string {
  let labels: string;
  if (isIPv4(ip) || isIPv6(ip)) labels = reverseName(ip);
  else labels = ip === "" ? "" : ip.split(".").reverse().join(".");
  return labels === "" ? base : `${labels}.${base}`;
}

/**
 * DJB's decision: $RBLSMTPD when set (empty: no block; leading "-": 553),
 * else each source in order until one lists (TXT) or anti-lists (A) the
 * client, with -c/-C deciding what a temporary DNS failure means (and any
 * temporary failure forcing 451 instead of 553).
 */
export async function decide(
  parsed: RblsmtpdArgs,
  env: Map<string, string>,
  lookups: RblLookups = dnsLookups,
): Promise<Verdict> {
  const forced = env.get("RBLSMTPD");
  if (forced !== undefined) {
    if (forced === "") return { block: false };
    if (forced.startsWith("-")) return { block: true, code: 553, text: forced.slice(1) };
    return { block: true, code: 451, text: forced };
  }
  const ip = env.get("TCPREMOTEIP") ?? "";
  let mustNotBounce = false;
  for (const src of parsed.sources) {
    const name = rblName(ip, src.base);
    if (src.kind === "rbl") {
      let text: string;
      try {
        if (src.aMessage !== undefined) text = (await lookups.a(name, env)) ? src.aMessage : "";
        else text = await lookups.txt(name, env);
      } catch (e) {
        if (!(e instanceof DnsTemporaryError)) throw e;
        mustNotBounce = true;
        if (src.failClosed) return { block: true, code: 451, text: "temporary RBL lookup error" };
        continue;
      }
      if (text.length > 0) {
        const code = src.bounce && !mustNotBounce ? 553 : 451;
        return { block: true, code, text };
      }
    } else {
      let listed: boolean;
      try {
        listed = await lookups.a(name, env);
      } catch (e) {
        if (!(e instanceof DnsTemporaryError)) throw e;
        mustNotBounce = true;
        if (!src.failClosed) return { block: false };
        continue;
      }
      if (listed) return { block: false };
    }
  }
  return { block: false };
}

/** DJB's rblsmtpd keeps at most this many bytes of the text. */
export const MAX_TEXT = 200;

/**
 * The reply line (without CRLF) for a block: "451 text" or "553 text", with
 * %IP% replaced and $RBLMESSAGE prefixed, cut to 200 bytes, and every byte
 * outside 32..126 turned into "?" (no SMTP line injection). The text and the
 * environment are byte strings (lib/core/bytes.ts: $RBLSMTPD, TXT answers), so
 * each 8-bit byte is one "?" as in C.
 */
export function replyLine(verdict: Verdict & { block: true }, env: Map<string, string>): string {
  const ip = env.get("TCPREMOTEIP") ?? "";
  let text = verdict.text.replaceAll("%IP%", ip);
  const prefix = env.get("RBLMESSAGE");
  if (prefix !== undefined) text = prefix + text;
  if (text.length > MAX_TEXT) text = text.slice(0, MAX_TEXT);
  const line = `${verdict.code} ${text}`;
  let out = "";
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    out += c < 32 || c > 126 ? "?" : line[i];
  }
  return out;
}

const GREETING = stringBytes("220 rblsmtpd.local\r\n");
const OK = stringBytes("250 rblsmtpd.local\r\n");
const BYE = stringBytes("221 rblsmtpd.local\r\n");
const ACCEPTED = new Set(["helo", "ehlo", "mail", "rset", "noop"]);
const MAX_KEPT = 1024; // only the verb matters; longer lines are kept in part

/** The verb of a command line (bytes): up to the first space or NUL, lowercased. */
function verbOf(line: Uint8Array): string {
  let end = line.length;
  if (end > 0 && line[end - 1] === 13) end--;
  let v = "";
  for (let i = 0; i < end; i++) {
    const c = line[i];
    if (c === 32 || c === 0) break;
    v += String.fromCharCode(c >= 65 && c <= 90 ? c + 32 : c);
    if (v.length > 8) break; // longer than any verb we answer
  }
  return v;
}

/**
 * The limited SMTP conversation with a blocked client, ended by QUIT, EOF,
 * or the timeout (seconds, counted from the start; DJB's alarm). With
 * timeout 0: only the reply line, at once.
 */
export async function converse(io: Io, reply: string, timeout: number): Promise<void> {
  const replyBytes = stringBytes(reply + "\r\n");
  const writer = io.output.getWriter();
  if (timeout === 0) {
    try {
      await writer.write(replyBytes);
    } catch { /* client gone */ }
    writer.releaseLock();
    return;
  }
  const reader = io.input.getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<"expired">((resolve) => {
    timer = setTimeout(() => resolve("expired"), timeout * 1000);
  });
  let timedOut = false;
  const send = async (b: Uint8Array): Promise<boolean> => {
    const r = await Promise.race([writer.write(b).then(() => true, () => false), expired]);
    if (r === "expired") timedOut = true;
    return r === true;
  };
  try {
    if (!(await send(GREETING))) return;
    let line = new Uint8Array(MAX_KEPT);
    let len = 0;
    for (;;) {
      const r = await Promise.race([reader.read().catch(() => ({ done: true as const })), expired]);
      if (r === "expired") {
        timedOut = true;
        return;
      }
      if (r.done) return;
      const chunk = r.value!;
      let from = 0;
      while (from < chunk.length) {
        const nl = chunk.indexOf(10, from);
        const end = nl < 0 ? chunk.length : nl;
        const take = Math.min(end - from, MAX_KEPT - len);
        if (take > 0) {
          line.set(chunk.subarray(from, from + take), len);
          len += take;
        }
        if (nl < 0) break;
        from = nl + 1;
        const verb = verbOf(line.subarray(0, len));
        len = 0;
        if (verb === "quit") {
          await send(BYE);
          return;
        }
        if (!(await send(ACCEPTED.has(verb) ? OK : replyBytes))) return;
      }
      if (line.length !== MAX_KEPT) line = new Uint8Array(MAX_KEPT);
    }
  } finally {
    clearTimeout(timer);
    reader.cancel().catch(() => {});
    if (timedOut) {
      writer.abort().catch(() => {});
    } else {
      writer.releaseLock();
    }
  }
}

/** What an rblsmtpd stage needs besides argv, env and io. */
export interface RblsmtpdContext {
  /** The pid in the log line (default: ours). */
  pid?: number;
  /** DNS lookups (default: lib/net/dns/ with the shared cache). */
  lookups?: RblLookups;
}

const parsedCache = new BoundedMap<string, RblsmtpdArgs>(256);

/** parseRblsmtpdArgs, remembered per distinct argv (the hot path inside tcpserver). */
export function parseCached(args: string[]): RblsmtpdArgs {
  const key = args.join("\0");
  let p = parsedCache.get(key);
  if (!p) {
    p = parseRblsmtpdArgs(args);
    parsedCache.set(key, p);
  }
  return p;
}

/** An rblsmtpd stage logging `pid` and asking `lookups`. */
export function makeRblsmtpdStage(ctx: RblsmtpdContext = {}): Stage {
  return async (argv, env, io): Promise<Outcome> => {
    const parsed = parseCached(argv);
    const verdict = await decide(parsed, env, ctx.lookups ?? dnsLookups);
    if (!verdict.block) return { next: parsed.prog };
    const reply = replyLine(verdict, env);
    io.log(
      `rblsmtpd: ${env.get("TCPREMOTEIP") ?? ""} pid ${ctx.pid ?? Deno.pid}: ${reply}`,
    );
    // DJB's rblsmtpd writes this line before the greeting, and scripts that
    // read stdout and stderr from one pipe depend on it. A process's log
    // writer (stderrLog) batches the lines of one turn and writes them from
    // a queued microtask, while the greeting's write starts at once: let the
    // queued flush run first. (Inside tcpserver the log is written at once.)
    await Promise.resolve();
    await converse(io, reply, parsed.timeout);
    return { exit: 0 };
  };
}

/**
 * `rblsmtpd [ -bBcC ] [ -t timeout ] [ -r base ] [ -a base ] prog` (argv
 * without "rblsmtpd"): `{ next: prog }` when the client is not blocked, else
 * the limited conversation and `{ exit: 0 }`.
 */
export const rblsmtpdStage: Stage = makeRblsmtpdStage();
