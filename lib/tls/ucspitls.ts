/**
 * UCSPI-TLS (Scott Gifford's protocol, as ucspi-ssl's sslserver -n and
 * s6-networking's s6-ucspitlsd implement it): the program starts on the
 * plaintext connection, with three more descriptors named in its
 * environment: $SSLCTLFD, a control socket, and $SSLREADFD/$SSLWRITEFD,
 * where the TLS tunnel's plaintext will be read and written. When the
 * program writes `y` or `Y` on the control socket (after its STARTTLS
 * reply), the handshake runs on the connection and the program goes on over
 * the tunnel; after `Y` it can read the session's SSL_* variables from the
 * control socket ("NAME=value\0" each, then one more "\0"). The program
 * closing the control socket without a command, or never writing one,
 * leaves the connection plaintext to the end, byte for byte.
 *
 * We cannot exec, so the program is spawned (node:child_process, which can
 * give a child extra descriptors) and its plaintext descriptors are pumped
 * to and from the connection. Which bytes the program may still see is
 * decided by when they were read off the connection: what was read before
 * the command (a client pipelining plaintext after STARTTLS, the
 * CVE-2011-0411 injection) went to the program's plaintext input or is
 * dropped, never into the tunnel; what is read after it is the handshake.
 * One exception keeps a quick client working: data that begins like a TLS
 * handshake record (the ClientHello of a client that answered the program's
 * "220" before the program's command reached us) waits up to
 * HANDSHAKE_WAIT_MS for the command, and is plaintext only if none comes.
 * The program's plaintext output is forwarded until the handshake first
 * writes, and dropped after.
 *
 * The same machinery serves a server (plaintext on 0 and 1) and a client
 * (on 6 and 7, as sslclient's program has the network): a UcspiTlsPlan says
 * which, and how to run the handshake.
 */
import { spawn as nodeSpawn } from "node:child_process";
import type { Socket } from "node:net";
import { Readable, Writable } from "node:stream";
import process from "node:process";
import { stringBytes } from "../core/bytes.ts";
import { ownEnviron } from "../core/environ.ts";
import { getRunAs, type ProgramStarter } from "../process/spawn.ts";
import type { Ended } from "../process/status.ts";
import { textCommand } from "../process/text_command.ts";
import type { Io } from "../stages/stage.ts";
import type { StreamPair } from "./streams.ts";
import type { TlsInfo, TlsSession } from "./tls.ts";

/** The program's control socket ($SSLCTLFD). */
export const CTL_FD = 3;
/** Where the program reads the tunnel's plaintext ($SSLREADFD). */
export const READ_FD = 4;
/** Where the program writes the tunnel's plaintext ($SSLWRITEFD). */
export const WRITE_FD = 5;

/** The two start commands: `Y` also sends the SSL_* variables back, `y` does not. */
export type StartCommand = "Y" | "y";

/** How one side of a UCSPI-TLS connection secures itself. */
export interface UcspiTlsPlan {
  /**
   * The program's descriptors of the plaintext connection, [read, write]:
   * [0, 1] on a server, [6, 7] on a client (as sslclient gives the network).
   */
  plainFds: [number, number];
  /**
   * Runs the handshake over the rest of the connection; rejects when it
   * fails (failed() is told, to log it).
   */
  handshake(pair: StreamPair): Promise<TlsSession>;
  /** The variables sent to the program after `Y` (byte strings). */
  variables(info: TlsInfo): Record<string, string>;
  /** The handshake failed: log why. The program's tunnel descriptors are closed. */
  failed?(error: unknown): void;
  /**
   * The session is up (the program started it with `command`): may log, and
   * may give the plaintext streams the program is pumped over instead of
   * the session's own (sslserver's -w bound wraps them). `pid`: the
   * program's.
   */
  secured?(session: TlsSession, command: StartCommand, pid: number | undefined): StreamPair | void;
}

/**
 * The control socket's reply to `Y`: each variable as NAME=value and a NUL,
 * then one more NUL (so no variables is two NULs).
 */
export function encodeVariables(vars: Record<string, string>): Uint8Array {
  let s = "";
  for (const [k, v] of Object.entries(vars)) s += `${k}=${v}\0`;
  return stringBytes(s + "\0");
}

/**
 * The UCSPI-TLS variables for the program's environment: the three
 * descriptors, and $UCSPITLS (empty: TLS may be started) unless env has it
 * already (the rules may set "-", TLS off, or "!", TLS required, for the
 * program to read, as qmail's and mailfront's UCSPI-TLS support does).
 */
export function ucspiTlsEnviron(env: Map<string, string>): Map<string, string> {
  const out = new Map(env);
  out.set("SSLCTLFD", String(CTL_FD));
  out.set("SSLREADFD", String(READ_FD));
  out.set("SSLWRITEFD", String(WRITE_FD));
  if (!out.has("UCSPITLS")) out.set("UCSPITLS", "");
  return out;
}

/**
 * An Io over the plaintext connection `net` whose program (runPumped,
 * lib/process/spawn.ts) is started with the UCSPI-TLS descriptors by
 * runUcspiTls. Stages may run over it first (rblsmtpd); one that wraps it
 * (fixcrio) hides UCSPI-TLS from the program, which is then pumped as
 * usual without the descriptors or their variables.
 */
export function ucspiTlsIo(net: Io, plan: UcspiTlsPlan, pair: Partial<StreamPair> = {}): Io {
  const starter: ProgramStarter = {
    runProgram(argv, env, io, argv0, onExit) {
      if (io.input !== net.input || io.output !== net.output) return null;
      return runUcspiTls(
        argv,
        env ?? ownEnviron(),
        {
          ...pair,
          readable: net.input,
          writable: net.output,
        },
        plan,
        { argv0, onExit, started: io.started },
      );
    },
  };
  return { ...net, ...starter };
}

/** Options of runUcspiTls. */
export interface RunOptions {
  /** The argv[0] the program sees (default argv[0]). */
  argv0?: string;
  /** Called at the program's exit (before its output is drained). */
  onExit?: (ended: Ended) => void;
  /** Called with the program's pid once it runs. */
  started?: (pid: number) => void;
}

/**
 * How long what looks like the start of a TLS handshake waits for the
 * program's command before it is taken for plaintext after all.
 */
export const HANDSHAKE_WAIT_MS = 1000;

/**
 * Whether data begins like a TLS handshake record (type 22, version 3.x),
 * as a ClientHello does: a line-based plaintext protocol never sends that.
 */
export function looksLikeHandshake(data: Uint8Array): boolean {
  return data.length > 0 && data[0] === 0x16 && (data.length < 2 || data[1] === 0x03) &&
    (data.length < 3 || data[2] <= 0x04);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => {
    const t = setTimeout(r, ms);
    // never what keeps the process alive
    Deno.unrefTimer(t);
  });
}

type Deferred = { promise: Promise<void>; resolve: () => void };
function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Waits until `w` can take more (drain) or is gone (close, error). */
function writable(w: Writable): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      w.off("drain", done);
      w.off("close", done);
      w.off("error", done);
      resolve();
    };
    w.once("drain", done);
    w.once("close", done);
    w.once("error", done);
  });
}

/** Copies a Web stream into a node Writable; ends it at the stream's end. */
async function pumpInto(
  from: ReadableStream<Uint8Array>,
  to: Writable,
  stop: Promise<void>,
): Promise<void> {
  const reader = from.getReader();
  let stopped = false;
  stop.then(() => {
    stopped = true;
    reader.cancel().catch(() => {});
  });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done || stopped || to.destroyed) break;
      if (!to.write(value)) await writable(to);
    }
  } catch { /* the peer went away: the program sees EOF */ }
  to.end();
}

/** Copies a node Readable into a Web stream, closing it at the end. */
async function pumpFrom(from: Readable, to: WritableStream<Uint8Array>): Promise<void> {
  const writer = to.getWriter();
  try {
    for await (const chunk of from) await writer.write(chunk as Uint8Array);
    await writer.close();
  } catch {
    from.destroy();
    await writer.abort().catch(() => {});
  }
}

/**
 * Runs argv over the plaintext connection `net` with the UCSPI-TLS
 * descriptors (see the module comment); resolves when the program has exited
 * and its output reached the connection. Rejects when it cannot be started.
 * net.writable is closed (a half-close, or the TLS session's end) when the
 * program's output ends; closing the connection itself is the caller's.
 */
export async function runUcspiTls(
  argv: string[],
  env: Map<string, string>,
  net: StreamPair,
  plan: UcspiTlsPlan,
  opts: RunOptions = {},
): Promise<Ended> {
  const t = textCommand(argv[0], argv.slice(1), ucspiTlsEnviron(env), opts.argv0);
  const [plainRead, plainWrite] = plan.plainFds;
  const count = Math.max(plainRead, plainWrite, WRITE_FD) + 1;
  const stdio: Array<"pipe" | "inherit" | "ignore"> = [];
  for (let fd = 0; fd < count; fd++) stdio.push(fd <= 2 ? "inherit" : "ignore");
  for (const fd of [plainRead, plainWrite, CTL_FD, READ_FD, WRITE_FD]) stdio[fd] = "pipe";
  const child = nodeSpawn(t.command, t.args, {
    stdio,
    env: t.env ?? process.env,
    argv0: t.argv0 ?? t.command,
    ...getRunAs(),
  });
  await new Promise<void>((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", reject);
  });
  const exited = new Promise<Ended>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  if (child.pid !== undefined) opts.started?.(child.pid);
  const fds = child.stdio as unknown as Array<Readable & Writable>;
  const plainIn = fds[plainRead]; // we write what the client sent
  const plainOut = fds[plainWrite]; // we read what the program says
  const ctl = fds[CTL_FD];
  const tlsIn = fds[READ_FD];
  const tlsOut = fds[WRITE_FD];
  for (const s of [plainIn, plainOut, ctl, tlsIn, tlsOut]) s.on("error", () => {});

  // One writer to the connection, in order: the program's plaintext, then
  // the handshake and the tunnel.
  const writer = net.writable.getWriter();
  let queue: Promise<void> = Promise.resolve();
  const send = (
    chunk: Uint8Array,
  ): Promise<void> => (queue = queue.then(() => writer.write(chunk)));
  let forwardPlain = true;

  let command: StartCommand | null = null;
  const commanded = deferred();

  // What the client sends, to the program's plaintext input until the
  // command; the first read that resolves after it belongs to the handshake.
  const reader = net.readable.getReader();
  const carried: Uint8Array[] = [];
  let netEnded = false;
  const inputPump = (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        // A client may send its ClientHello as soon as it has the program's
        // "220", before the program's command (written just after) is here.
        if (!command && !done && looksLikeHandshake(value)) {
          await Promise.race([commanded.promise, sleep(HANDSHAKE_WAIT_MS)]);
        }
        if (command) {
          if (done) netEnded = true;
          else carried.push(value);
          return;
        }
        if (done) {
          netEnded = true;
          plainIn.end();
          return;
        }
        if (!plainIn.write(value)) await writable(plainIn);
        if (command) return; // what the program did not take is dropped
      }
    } catch {
      netEnded = true;
      plainIn.end();
    }
  })();

  // The program's plaintext output, to the client until the handshake writes.
  const plainDone = (async () => {
    try {
      for await (const chunk of plainOut) {
        if (forwardPlain) await send(chunk as Uint8Array).catch(() => {});
      }
    } catch { /* closed */ }
  })();

  const ctlDone = deferred();
  ctl.on("data", (d: Uint8Array) => {
    if (command) return;
    // the first Y or y is the command; other bytes mean nothing
    const at = d.findIndex((b) => b === 0x59 || b === 0x79);
    if (at < 0) return;
    command = d[at] === 0x59 ? "Y" : "y";
    commanded.resolve();
  });
  ctl.once("end", () => ctlDone.resolve());
  ctl.once("close", () => ctlDone.resolve());

  // The tunnel's rest of the connection: what the input pump carried over, then on.
  const tlsReadable = new ReadableStream<Uint8Array>({
    async pull(c) {
      await inputPump;
      const next = carried.shift();
      if (next) return c.enqueue(next);
      if (netEnded) return c.close();
      try {
        const { value, done } = await reader.read();
        if (done) c.close();
        else c.enqueue(value);
      } catch (e) {
        c.error(e);
      }
    },
    cancel() {
      return reader.cancel().catch(() => {});
    },
  }, { highWaterMark: 0 });
  const tlsWritable = new WritableStream<Uint8Array>({
    write(chunk) {
      forwardPlain = false;
      return send(chunk);
    },
    close() {
      forwardPlain = false;
      return (queue = queue.then(() => writer.close()));
    },
    abort() {
      forwardPlain = false;
      return (queue = queue.then(() => writer.abort().catch(() => {})));
    },
  });

  let tunnelOut: Promise<void> = Promise.resolve();
  const stopInput = deferred();
  const tunnel = commanded.promise.then(async () => {
    // The program's plaintext input ends here (what it did not read yet stays
    // in the pipe, for it alone).
    plainIn.destroy();
    let session: TlsSession;
    try {
      session = await plan.handshake({
        readable: tlsReadable,
        writable: tlsWritable,
        close: net.close,
        lingerMs: net.lingerMs,
      });
    } catch (e) {
      plan.failed?.(e);
      for (const s of [ctl, tlsIn, tlsOut]) s.destroy();
      return;
    }
    const via = plan.secured?.(session, command!, child.pid) ?? session;
    if (command === "Y") ctl.end(encodeVariables(plan.variables(session.info)));
    else ctl.end();
    tunnelOut = pumpFrom(tlsOut, via.writable);
    void pumpInto(via.readable, tlsIn, stopInput.promise);
  });

  const ended = await exited;
  opts.onExit?.(ended);
  // Its plaintext output and control socket both ended (a command written
  // just before the exit is read first); then a program that never gave a
  // command has the connection end with its plaintext, and with a command
  // the tunnel ends it.
  await plainDone;
  await ctlDone.promise;
  if (command) {
    await tunnel;
    await tunnelOut;
  } else {
    ctl.destroy();
    tlsIn.destroy();
    tlsOut.destroy();
    await queue.catch(() => {});
    await writer.close().catch(() => {});
  }
  stopInput.resolve();
  // The program is gone: stop reading for it, even if the client never sends EOF.
  if (!command) reader.cancel().catch(() => {});
  return ended;
}

/**
 * A connected node socket as a StreamPair for runUcspiTls (sslclient -y):
 * closing the writable half-closes it; `closed` resolves once it is closed.
 */
export function socketPair(
  sock: Socket,
  lingerMs?: number,
): StreamPair & { closed: Promise<void> } {
  const closed = new Promise<void>((r) => {
    if (sock.destroyed) r();
    else sock.once("close", () => r());
  });
  return {
    readable: Readable.toWeb(sock) as ReadableStream<Uint8Array>,
    writable: Writable.toWeb(sock) as WritableStream<Uint8Array>,
    close: () => sock.destroy(),
    lingerMs,
    closed,
  };
}
