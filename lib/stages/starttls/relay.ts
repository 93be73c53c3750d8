/**
 * The relay of one STARTTLS proxy connection, between the client and the
 * program (lib/stages/starttls_proxy.ts says what it does), for any row of
 * the protocol table (protocol.ts): before TLS it takes one command at a
 * time and does what the protocol's dialogue decides (pass it on, answer
 * it, start TLS, stop parsing), passing the program's answers through the
 * dialogue (which adds the STARTTLS capability); after TLS, or once it
 * stops parsing, it relays bytes.
 */
import { concatBytes } from "../../core/bytes.ts";
import type { ServerCredentials } from "../../tls/credentials.ts";
import { acceptTls } from "../../tls/tls.ts";
import type { Io } from "../stage.ts";
import type { Dialogue, StarttlsProtocol } from "./protocol.ts";
import { LineSplitter } from "./smtp.ts";

/** The relay of one connection; see the module comment. */
class Relay {
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
  commands: LineSplitter;
  replies: LineSplitter;
  dialogue: Dialogue;
  clientReader: ReadableStreamDefaultReader<Uint8Array>;
  clientWriter: WritableStreamDefaultWriter<Uint8Array>;
  /** Resolved while client output may be written (held during the handshake). */
  outReady: Promise<void> = Promise.resolve();
  lastSend: Promise<unknown> = Promise.resolve();

  constructor(
    readonly io: Io,
    readonly protocol: StarttlsProtocol,
    readonly creds: ServerCredentials,
    readonly requireTls: boolean,
    readonly timeoutMs: number,
    readonly pid: number,
  ) {
    this.commands = new LineSplitter(protocol.commandMax);
    this.replies = new LineSplitter(protocol.replyMax);
    this.dialogue = protocol.dialogue(requireTls);
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
    if (this.outPlain) return this.send(concatBytes(this.replies.rest(), chunk));
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
      const r = this.dialogue.reply(t.line);
      if (!r) {
        // not the protocol (or nothing the proxy follows): relay it and everything after as it comes
        out.push(t.line, this.replies.rest());
        this.outputPlain();
        break;
      }
      out.push(...r.out);
      if (r.ended) this.answered();
    }
    if (out.length) await this.send(concatBytes(...out));
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
    c.enqueue(concatBytes(line, this.commands.rest()));
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
      if (this.outPlain) this.mode = "plain"; // the program speaks nothing the proxy follows
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
        await this.send(this.protocol.tooLong);
        this.endInput(c);
        return;
      }
      const d = this.dialogue.command(t.line);
      switch (d.to) {
        case "program":
          this.outstanding++;
          c.enqueue(t.line);
          return;
        case "plain":
          return this.goPlain(c, t.line);
        case "client":
          if (d.literal && !(await this.discardLiteral(d.literal))) {
            this.endInput(c);
            return;
          }
          await this.send(d.answer);
          continue;
        case "tls":
          if (!(await this.startTls(d.answer))) {
            c.close();
            return;
          }
          continue;
      }
    }
  }

  /**
   * Discards a refused command's non-synchronizing literal of n bytes and
   * the lines that continue the command (with their own literals); false
   * when the client ended or overran a line meanwhile.
   */
  async discardLiteral(n: number): Promise<boolean> {
    while (n > 0) {
      while (n > 0) {
        n -= this.commands.skip(n);
        if (n === 0) break;
        const { value, done } = await this.clientReader.read();
        if (done) return false;
        this.commands.push(value);
      }
      const t = await this.nextLine();
      if (!("line" in t)) return false;
      n = this.dialogue.continued(t.line);
    }
    return true;
  }

  /** The client is gone or hostile while TLS is required: the program's input ends. */
  endInput(c: ReadableStreamDefaultController<Uint8Array>): void {
    this.mode = "plain";
    this.outputPlain();
    c.close();
  }

  /** STARTTLS: the go-ahead answer, the handshake; true when TLS is up. */
  async startTls(answer: Uint8Array): Promise<boolean> {
    const tool = this.protocol.tool;
    const dropped = this.commands.rest().length;
    if (dropped) {
      this.io.log(
        `${tool}: warning: ${this.pid} discarded ${dropped} bytes sent after ${this.protocol.verb}`,
      );
    }
    await this.send(answer);
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
      this.io.log(`${tool}: tls ${this.pid} ${session.info.protocol}:${session.info.cipher}`);
      return true;
    } catch (e) {
      this.mode = "dead";
      this.io.log(`${tool}: tls ${this.pid} failed: ${(e as Error).message}`);
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

/** What the relay of one connection is told. */
export interface RelayOptions {
  /** The protocol's row of the table. */
  protocol: StarttlsProtocol;
  /** The certificate the handshake presents. */
  creds: ServerCredentials;
  /** Refuse mail and authentication before TLS (-r, $REQUIRETLS). */
  requireTls: boolean;
  /** The time the handshake may take, in milliseconds. */
  timeoutMs: number;
  /** The pid named in the log lines. */
  pid: number;
}

/**
 * Starts relaying the client's io: returns the io the SMTP program talks
 * over (its input is the client's commands, its output goes to the client).
 */
export function startTlsRelay(io: Io, o: RelayOptions): Io {
  return new Relay(io, o.protocol, o.creds, o.requireTls, o.timeoutMs, o.pid).programIo();
}
