/**
 * smtpd-starttls-proxy as a stage (skarnet's name and idea; our own code):
 * gives an SMTP server that knows nothing of TLS (qmail-smtpd) STARTTLS.
 * It returns `{ next: smtpd, io }`, io being a relay between the client and
 * the program that
 * - adds STARTTLS to the program's successful EHLO answers (before TLS only);
 * - answers STARTTLS itself ("220 Ready to start TLS"), throws away whatever
 *   the client sent after that line (pipelined plaintext must never be taken
 *   for commands sent under TLS: CVE-2011-0411), runs the TLS handshake on
 *   the client's streams with the certificate of $CERTFILE/$KEYFILE (read as
 *   sslserver reads them, lib/tls), logs the outcome, and from then on
 *   relays plaintext to the program and TLS to the client, parsing nothing;
 * - stops parsing and relays plain bytes both ways after HELO, MAIL, QUIT,
 *   any command it does not know, an overlong line, or program output that
 *   is not SMTP: the client that never says STARTTLS talks to the program
 *   exactly as without the proxy, but for the added EHLO keyword;
 * - with -r, or $REQUIRETLS set (not "0"; "0" turns -r off, so a rule can
 *   relax or tighten it per client), answers every command but EHLO, HELO,
 *   NOOP, RSET, HELP, VRFY, EXPN, QUIT and STARTTLS with
 *   "530 Must issue a STARTTLS command first" until TLS is up.
 * Before TLS, commands are taken one at a time: the next client line is read
 * only once the program has answered the last one, so each answer is matched
 * to its command without guessing. Lines are bytes, bounded in length
 * (lib/stages/starttls/smtp.ts); nothing is decoded.
 */
import { byteStringText } from "../core/bytes.ts";
import { fatal, usage } from "../core/errors.ts";
import { getopt, scanUlong } from "../core/getopt.ts";
import {
  CREDENTIAL_MESSAGES,
  CredentialError,
  loadServerCredentials,
  type ServerCredentials,
  type ServerFiles,
  serverFilesFromEnv,
} from "../tls/credentials.ts";
import { SSL_SESSION_VARIABLES, sslSideVariables } from "../tls/ssl_env.ts";
import { acceptTls } from "../tls/tls.ts";
import { LineSplitter, parseCommand, ReplyTracker } from "./starttls/smtp.ts";
import type { Io, Outcome, Stage } from "./stage.ts";

const PROG = "smtpd-starttls-proxy";

/** The usage line's text after "smtpd-starttls-proxy: usage: ". */
export const STARTTLS_PROXY_USAGE = "smtpd-starttls-proxy [ -r ] [ -t timeout ] smtpd [ arg ... ]";

/** The longest client command line parsed before TLS (RFC 5321 allows 512). */
export const COMMAND_MAX = 1024;
/** The longest program reply line parsed before TLS (RFC 5321 allows 512). */
export const REPLY_MAX = 4096;

/** Seconds the TLS handshake may take (sslserver's default -t). */
export const DEFAULT_HANDSHAKE_SECONDS = 26;

const enc = new TextEncoder();
/** The answer to STARTTLS, as skarnet's proxy words it. */
export const READY = "220 Ready to start TLS";
/** The answer to a command refused before STARTTLS (RFC 3207). */
export const MUST_STARTTLS = "530 Must issue a STARTTLS command first";
const READY_BYTES = enc.encode(`${READY}\r\n`);
const MUST_BYTES = enc.encode(`${MUST_STARTTLS}\r\n`);
const NO_PARAMS = enc.encode("501 5.5.4 Syntax error (no parameters allowed)\r\n");
const TOO_LONG = enc.encode("500 5.5.2 Line too long\r\n");

/** The parsed command line. */
export interface StarttlsProxyArgs {
  /** -r: refuse mail before STARTTLS (unless $REQUIRETLS is "0"). */
  requireTls: boolean;
  /** -t: handshake timeout, seconds. */
  timeout: number;
  /** The SMTP server and its arguments. */
  prog: string[];
}

/** Parses `[ -r ] [ -t timeout ] smtpd [ arg ... ]`; throws the usage ToolError (exit 100). */
export function parseStarttlsProxyArgs(args: string[]): StarttlsProxyArgs {
  const { options, rest } = getopt(PROG, args, "rt:", STARTTLS_PROXY_USAGE);
  let requireTls = false;
  let timeout = DEFAULT_HANDSHAKE_SECONDS;
  for (const { letter, value } of options) {
    if (letter === "r") requireTls = true;
    else timeout = scanUlong(value);
  }
  if (rest.length === 0) throw usage(PROG, STARTTLS_PROXY_USAGE);
  return { requireTls, timeout, prog: rest };
}

/** Whether mail is refused before STARTTLS: $REQUIRETLS when set ("0": no), else -r. */
export function requiresTls(args: StarttlsProxyArgs, env: Map<string, string>): boolean {
  const v = env.get("REQUIRETLS");
  return v === undefined ? args.requireTls : v !== "0";
}

/** The certificate files of env ($CERTFILE, $KEYFILE, ... as sslserver reads them). */
export function proxyServerFiles(env: Map<string, string>): ServerFiles {
  return serverFilesFromEnv((n) => {
    const v = env.get(n);
    // environment values are byte strings; Deno's paths are text
    return v === undefined ? v : byteStringText(v) ?? v;
  });
}

/** Loaded credentials by files, kept while the files are unchanged (size, mtime, inode). */
const credentialCache = new Map<string, { stamp: string; creds: Promise<ServerCredentials> }>();
const MAX_CACHED = 16;

function stampOf(files: ServerFiles): string {
  const parts: string[] = [];
  for (const f of [files.certFile, files.certChainFile, files.keyFile, files.caFile]) {
    if (f === undefined) continue;
    try {
      const s = Deno.statSync(f);
      parts.push(`${s.ino}:${s.size}:${s.mtime?.getTime()}`);
    } catch {
      parts.push("-");
    }
  }
  return parts.join(",");
}

/**
 * The server credentials for files, loaded once per distinct set of files
 * and again when one of them changes (a renewed certificate is picked up by
 * the next connection). Throws the ToolError sslserver would print
 * (`smtpd-starttls-proxy: fatal: unable to load certificate`, exit 111).
 */
export async function proxyCredentials(files: ServerFiles): Promise<ServerCredentials> {
  const key = JSON.stringify(files);
  const stamp = stampOf(files);
  let hit = credentialCache.get(key);
  if (!hit || hit.stamp !== stamp) {
    if (credentialCache.size >= MAX_CACHED) credentialCache.clear();
    hit = { stamp, creds: loadServerCredentials(files) };
    credentialCache.set(key, hit);
  }
  try {
    return await hit.creds;
  } catch (e) {
    if (credentialCache.get(key) === hit) credentialCache.delete(key);
    if (e instanceof CredentialError) throw fatal(PROG, CREDENTIAL_MESSAGES[e.failure]);
    throw e;
  }
}

/** Per-connection facts (inside tcpserver: its connection number). */
export interface StarttlsProxyContext {
  /** The pid named in the log lines (default: ours). */
  pid?: number;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function join(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  n = 0;
  for (const p of parts) {
    out.set(p, n);
    n += p.length;
  }
  return out;
}

/** The relay of one connection; see the module comment. */
class Proxy {
  /**
   * "parse" before TLS; "plain" after giving up parsing; "tls" after the
   * handshake; "dead" after a failed one (nothing more reaches the client).
   */
  mode: "parse" | "plain" | "tls" | "dead" = "parse";
  /** Program output is relayed without looking at it. */
  outPlain = false;
  /** Replies the program owes (the greeting first). */
  outstanding = 1;
  idleWaiters: Array<() => void> = [];
  commands = new LineSplitter(COMMAND_MAX);
  replies = new LineSplitter(REPLY_MAX);
  tracker = new ReplyTracker();
  clientReader: ReadableStreamDefaultReader<Uint8Array>;
  clientWriter: WritableStreamDefaultWriter<Uint8Array>;
  /** Resolved while client output may be written (held during the handshake). */
  outReady: Promise<void> = Promise.resolve();
  lastSend: Promise<unknown> = Promise.resolve();

  constructor(
    readonly io: Io,
    readonly creds: ServerCredentials,
    readonly requireTls: boolean,
    readonly timeoutMs: number,
    readonly pid: number,
  ) {
    this.clientReader = io.input.getReader();
    this.clientWriter = io.output.getWriter();
  }

  /** Writes bytes to the client, in call order, after any handshake. */
  send(bytes: Uint8Array): Promise<void> {
    const p = this.lastSend.then(() => this.outReady).then(() => {
      if (this.mode === "dead" || bytes.length === 0) return;
      return this.clientWriter.write(bytes);
    });
    this.lastSend = p.catch(() => {});
    return p;
  }

  idle(): Promise<void> {
    if (this.outstanding === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  answered(): void {
    if (this.outstanding > 0) this.outstanding--;
    if (this.outstanding === 0) { for (const w of this.idleWaiters.splice(0)) w(); }
  }

  /** Stops looking at program output (and releases whoever waits for an answer). */
  outputPlain(): void {
    if (this.outPlain) return;
    this.outPlain = true;
    if (this.replies.pending) this.send(this.replies.rest()).catch(() => {});
    this.outstanding = 1;
    this.answered();
  }

  // ---- program output (its replies) -> client

  async fromProgram(chunk: Uint8Array): Promise<void> {
    if (this.outPlain) return this.send(concat(this.replies.rest(), chunk));
    this.replies.push(chunk);
    const out: Uint8Array[] = [];
    for (;;) {
      const t = this.replies.take();
      if (t === null) break;
      if ("overlong" in t) {
        out.push(t.overlong);
        this.outputPlain();
        break;
      }
      const r = this.tracker.line(t.line);
      if (!r) {
        // not SMTP: relay it and everything after as it comes
        out.push(t.line, this.replies.rest());
        this.outputPlain();
        break;
      }
      out.push(...r.out);
      if (r.ended) this.answered();
    }
    if (out.length) await this.send(join(out));
  }

  async programClosed(): Promise<void> {
    this.outputPlain();
    await this.lastSend;
    await this.outReady;
    if (this.mode === "dead") return;
    await this.clientWriter.close().catch(() => {});
  }

  programAborted(reason: unknown): void {
    this.clientWriter.abort(reason).catch(() => {});
  }

  // ---- client -> program input

  /** Relays plain bytes after parsing ended (the splitter's rest first). */
  async passOn(c: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    if (this.commands.pending) {
      c.enqueue(this.commands.rest());
      return;
    }
    if (this.mode === "dead") {
      c.close();
      return;
    }
    const { value, done } = await this.clientReader.read();
    if (done) c.close();
    else c.enqueue(value);
  }

  /** Gives up parsing: line (and what follows it) goes to the program as is. */
  goPlain(c: ReadableStreamDefaultController<Uint8Array>, line: Uint8Array): void {
    this.mode = "plain";
    this.outputPlain();
    c.enqueue(concat(line, this.commands.rest()));
  }

  /** The next client line, or the overlong start of one, or the end. */
  async nextLine(): Promise<{ line: Uint8Array } | { overlong: Uint8Array } | { end: Uint8Array }> {
    for (;;) {
      const t = this.commands.take();
      if (t) return t;
      const { value, done } = await this.clientReader.read();
      if (done) return { end: this.commands.rest() };
      this.commands.push(value);
    }
  }

  async pull(c: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    for (;;) {
      if (this.mode !== "parse") return this.passOn(c);
      await this.idle();
      if (this.outPlain) this.mode = "plain"; // the program speaks no SMTP
      if (this.mode !== "parse") continue;
      const t = await this.nextLine();
      if ("end" in t) {
        // the client is done sending; the program's answers still go out
        this.mode = "plain";
        this.outputPlain();
        if (t.end.length) c.enqueue(t.end);
        c.close();
        return;
      }
      if ("overlong" in t) {
        if (!this.requireTls) return this.goPlain(c, t.overlong);
        await this.send(TOO_LONG);
        this.mode = "plain";
        this.outputPlain();
        c.close();
        return;
      }
      const line = t.line;
      const { verb, hasArgs } = parseCommand(line);
      switch (verb) {
        case "STARTTLS":
          if (hasArgs) {
            await this.send(NO_PARAMS);
            continue;
          }
          if (!(await this.startTls())) {
            c.close();
            return;
          }
          continue;
        case "EHLO":
          this.tracker.expectEhlo();
          this.outstanding++;
          c.enqueue(line);
          return;
        case "NOOP":
        case "RSET":
        case "HELP":
        case "VRFY":
        case "EXPN":
          this.outstanding++;
          c.enqueue(line);
          return;
        case "HELO":
          if (this.requireTls) {
            this.outstanding++;
            c.enqueue(line);
            return;
          }
          return this.goPlain(c, line);
        case "QUIT":
          return this.goPlain(c, line);
        default:
          if (this.requireTls) {
            await this.send(MUST_BYTES);
            continue;
          }
          return this.goPlain(c, line);
      }
    }
  }

  /** STARTTLS: the 220, the handshake; true when TLS is up. */
  async startTls(): Promise<boolean> {
    const dropped = this.commands.rest().length;
    if (dropped) {
      this.io.log(`${PROG}: warning: ${this.pid} discarded ${dropped} bytes sent after STARTTLS`);
    }
    await this.send(READY_BYTES);
    let release!: () => void;
    this.outReady = new Promise((r) => (release = r));
    this.clientReader.releaseLock();
    this.clientWriter.releaseLock();
    try {
      const session = await acceptTls(
        { readable: this.io.input, writable: this.io.output },
        this.creds,
        { timeoutMs: this.timeoutMs, clientCert: "none" },
      );
      this.clientReader = session.readable.getReader();
      this.clientWriter = session.writable.getWriter();
      this.mode = "tls";
      this.outputPlain();
      this.io.log(`${PROG}: tls ${this.pid} ${session.info.protocol}:${session.info.cipher}`);
      return true;
    } catch (e) {
      this.mode = "dead";
      this.io.log(`${PROG}: tls ${this.pid} failed: ${(e as Error).message}`);
      return false;
    } finally {
      release();
    }
  }

  cancel(reason: unknown): Promise<void> {
    if (this.mode === "dead") return Promise.resolve();
    return this.clientReader.cancel(reason).catch(() => {});
  }

  /** The io the program talks over. */
  programIo(): Io {
    return {
      input: new ReadableStream<Uint8Array>({
        pull: (c) => this.pull(c),
        cancel: (r) => this.cancel(r),
      }, { highWaterMark: 0 }),
      output: new WritableStream<Uint8Array>({
        write: (chunk) => this.fromProgram(chunk),
        close: () => this.programClosed(),
        abort: (r) => this.programAborted(r),
      }),
      log: this.io.log,
      started: (pid) => this.io.started?.(pid),
    };
  }
}

const SSL_NAMES = [
  ...SSL_SESSION_VARIABLES,
  "SSL_CLIENT_VERIFY",
  ...sslSideVariables("CLIENT"),
  ...sslSideVariables("SERVER"),
];

/**
 * Makes the stage: `smtpd-starttls-proxy [ -r ] [ -t timeout ] smtpd ...`
 * (argv without the tool's name). Loads the certificate before the program
 * starts (a broken one is fatal, exit 111, as for sslserver), removes
 * inherited SSL_* variables (the program starts before any handshake, so
 * none could describe this connection) and returns the program with the
 * relaying io.
 */
export function makeStarttlsProxyStage(ctx: StarttlsProxyContext = {}): Stage {
  return async (argv, env, io): Promise<Outcome> => {
    const args = parseStarttlsProxyArgs(argv);
    const creds = await proxyCredentials(proxyServerFiles(env));
    for (const k of SSL_NAMES) env.delete(k);
    const proxy = new Proxy(
      io,
      creds,
      requiresTls(args, env),
      Math.max(args.timeout, 1) * 1000,
      ctx.pid ?? Deno.pid,
    );
    return { next: args.prog, io: proxy.programIo() };
  };
}

/** The stage with our own pid in its log lines (as a process). */
export const starttlsProxyStage: Stage = makeStarttlsProxyStage();
