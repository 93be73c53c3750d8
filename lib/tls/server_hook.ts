/**
 * sslserver's per-connection step (lib/server/server.ts's prepare hook):
 * [a PROXY header, -W] then the TLS handshake (lib/tls/tls.ts), or with -n
 * the UCSPI-TLS channels for a handshake the program starts later
 * (lib/tls/ucspitls.ts), with
 * ucspi-ssl's warnings when it fails, the -v/-V "ssl" log line, the -w idle
 * bound of ucspi-ssl's ssl_io, and the environment edit (SSL* instead of
 * TCP*, -s's SSL_* variables) the server applies before the rules. The
 * cli (cli/sslserver.ts) parses the options and loads the credentials this
 * reads through `current`.
 */
import { stderrLine } from "../core/log.ts";
import type { Prepared, PrepareHook } from "../server/server.ts";
import type { Connection } from "../server/connection.ts";
import type { Io } from "../stages/stage.ts";
import type { ServerCredentials } from "./credentials.ts";
import { applySslEnvironment, sslEnvironment, sslVariables } from "./ssl_env.ts";
import { acceptTls, type ClientCertMode, HandshakeError, type TlsSession } from "./tls.ts";
import { ucspiTlsIo, type UcspiTlsPlan } from "./ucspitls.ts";

/**
 * What ucspi-ssl writes after "unable to accept SSL: " when OpenSSL refused
 * the handshake: its ssl_error_str gives SSL_get_error's code (SSL_ERROR_SSL,
 * 1) to ERR_error_string, which OpenSSL 3 renders so (`openssl errstr 1`).
 */
const UCSPI_SSL_ACCEPT_ERROR = "error:00000001:lib(0)::reason(1)";
/** Lingering close: how long a client may stay quiet before we close (see lib/tls StreamPair). */
const LINGER_MS = 2000;

/** The settings of sslserver's per-connection step (from its command line). */
export interface SslSessionOptions {
  /** 0 -q, 1 -Q, 2 -v, 3 -V */
  verbosity: number;
  /** -e: the TCP* variables (and PROTO=TCP/TCP6) instead of only SSL*. */
  tcpEnv: boolean;
  /** -s: mod_ssl's SSL_* variables. */
  sslEnv: boolean;
  /** -Z (none), -m (required), -z (required, and naming the client's address). */
  clientCert: ClientCertMode;
  /** -T: handshake timeout, seconds (default 26). */
  sslTimeout: number;
  /** -w: give up on a connection idle this many seconds (default 3600). */
  progTimeout: number;
  /** $CCAFILE when a client certificate is asked for (not "" or "-"). */
  ccaFile?: string;
}

/**
 * -w, as ucspi-ssl's ssl_io: when neither direction carried data for
 * `seconds`, the program's input ends (it sees EOF, as if the client had
 * closed: silently); when it stays idle `seconds` more (or the client had
 * already closed), both directions are closed and `onIdle` is called.
 */
export function idleBounded(io: Io, seconds: number, onIdle: () => void): Io {
  if (seconds <= 0) return io;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let done = false;
  let inputEnded = false;
  const reader = io.input.getReader();
  const writer = io.output.getWriter();
  const finish = () => {
    done = true;
    clearTimeout(timer);
  };
  let endInput: (() => void) | null = null;
  const arm = () => {
    clearTimeout(timer);
    if (done) return;
    timer = setTimeout(() => {
      if (!inputEnded && endInput) {
        endInput();
        arm();
        return;
      }
      done = true;
      onIdle();
      reader.cancel().catch(() => {});
      writer.abort().catch(() => {});
    }, seconds * 1000);
  };
  arm();
  const input = new ReadableStream<Uint8Array>({
    start(c) {
      endInput = () => {
        inputEnded = true;
        // only the program's side: the client's data is no longer read
        // (the TLS session itself stays, for the program's last output)
        try {
          c.close();
        } catch { /* closed */ }
      };
    },
    async pull(c) {
      if (inputEnded) return;
      try {
        const { value, done: end } = await reader.read();
        if (inputEnded) return;
        if (end) {
          inputEnded = true;
          c.close();
        } else {
          arm();
          c.enqueue(value);
        }
      } catch (e) {
        c.error(e);
      }
    },
    cancel(r) {
      return reader.cancel(r);
    },
  }, { highWaterMark: 0 });
  const output = new WritableStream<Uint8Array>({
    async write(chunk) {
      arm();
      await writer.write(chunk);
      arm();
    },
    async close() {
      finish();
      await writer.close();
    },
    async abort(r) {
      finish();
      await writer.abort(r);
    },
  });
  return { ...io, input, output };
}

/** What the TLS step does with its handshake's failure: ucspi-ssl's warning. */
function handshakeFailure(
  prog: string,
  ssl: SslSessionOptions,
): (e: unknown) => void {
  const dropSsl = `${prog}: warning: dropping SSL connection, `;
  return (e) => {
    if (ssl.verbosity < 1) return;
    if (e instanceof HandshakeError && e.verification) {
      // With $CCAFILE, ucspi-ssl has OpenSSL demand and verify the
      // client's certificate in the handshake itself, so a missing or
      // untrusted one fails the accept (only the name check comes after).
      const inHandshake = ssl.ccaFile !== undefined && !e.message.startsWith("client hostname");
      stderrLine(
        inHandshake
          ? `${dropSsl}unable to accept SSL: ${UCSPI_SSL_ACCEPT_ERROR}`
          : `${dropSsl}${e.message}`,
      );
    } else stderrLine(`${dropSsl}unable to accept SSL: ${(e as Error).message}`);
  };
}

/** The -v/-V line once a handshake is done. */
function acceptLine(prog: string, ssl: SslSessionOptions, id: number, session: TlsSession): void {
  if (ssl.verbosity >= 3) {
    stderrLine(`${prog}: ssl ${id} accept ${session.info.protocol}:${session.info.cipher}`);
  } else if (ssl.verbosity >= 2) stderrLine(`${prog}: ssl ${id} accept `);
}

/**
 * The plaintext streams bounded by -w: as ucspi-ssl's ssl process giving
 * up, the line, SIGTERM to the program, the connection closed.
 */
function bounded(
  prog: string,
  ssl: SslSessionOptions,
  session: TlsSession,
  io: Io,
  program: () => number | undefined,
): Io {
  return idleBounded(io, ssl.progTimeout, () => {
    if (ssl.verbosity >= 1) {
      stderrLine(`${prog}: warning: dropping SSL connection, unable to speak SSL: timed out`);
    }
    const pid = program();
    if (pid !== undefined) {
      try {
        Deno.kill(pid, "SIGTERM");
      } catch { /* gone */ }
    }
    session.shutdown();
  });
}

/**
 * The connection's close as the TLS step leaves it: tcpserver closes the
 * connection when the program is done; once a session runs, that goes
 * through it instead, so a client still sending gets our last data and the
 * end (lingering close) instead of a reset. Returns the real close (for
 * the session underneath) and how to name the session once it exists.
 */
function closeThroughSession(
  conn: Connection,
): { realClose: () => void; secured: (s: TlsSession) => void; close: () => void } {
  const realClose = () => {
    try {
      conn.close();
    } catch { /* closed */ }
  };
  let session: TlsSession | undefined;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    if (session) session.shutdown();
    else realClose();
  };
  return { realClose, secured: (s) => (session = s), close };
}

/**
 * The TLS step: the handshake with the credentials `current()` gives at
 * that moment (SIGHUP may replace them), after the PROXY step when -W.
 * `prog` names the tool in its log lines.
 */
export function sslPrepareHook(
  prog: string,
  ssl: SslSessionOptions,
  current: () => ServerCredentials,
): PrepareHook {
  const failed = handshakeFailure(prog, ssl);
  return async (conn, ctx) => {
    // (with ctx.tcp the streams are made but never read: their pull reads)
    const { io, local, remote } = ctx;
    const { realClose, secured, close } = closeThroughSession(conn);
    let session: TlsSession;
    try {
      session = await acceptTls(
        {
          readable: io.input,
          writable: io.output,
          close: realClose,
          lingerMs: LINGER_MS,
          tcp: ctx.tcp,
        },
        current(),
        {
          timeoutMs: Math.max(ssl.sslTimeout, 1) * 1000,
          clientCert: ssl.clientCert,
          clientHost: remote.ip,
        },
      );
    } catch (e) {
      failed(e);
      return null;
    }
    secured(session);
    acceptLine(prog, ssl, ctx.id, session);
    let program: number | undefined;
    const plain = bounded(prog, ssl, session, {
      input: session.readable,
      output: session.writable,
      log: io.log,
      started: (pid) => (program = pid),
    }, () => program);
    const info = session.info;
    const prepared: Prepared = {
      io: plain,
      local,
      remote,
      close,
      environ: (env) => {
        sslVariables(env, ssl.tcpEnv);
        if (ssl.sslEnv) applySslEnvironment(env, info, "CLIENT");
      },
    };
    return prepared;
  };
}

/**
 * sslserver -n's step: no handshake yet. The program starts on the
 * plaintext connection with the UCSPI-TLS descriptors (lib/tls/ucspitls.ts)
 * and the SSL* variables (without -s's: there is no session yet); when it
 * writes the start command, the handshake runs as sslPrepareHook's (same
 * credentials, -T, -z/-m, log lines, -w on the tunnel), and after `Y` the
 * program reads the session's SSL_* variables from its control socket.
 */
export function ucspiTlsPrepareHook(
  prog: string,
  ssl: SslSessionOptions,
  current: () => ServerCredentials,
): PrepareHook {
  const failed = handshakeFailure(prog, ssl);
  return (conn, ctx) => {
    const { io, remote } = ctx;
    const { realClose, secured, close } = closeThroughSession(conn);
    const plan: UcspiTlsPlan = {
      plainFds: [0, 1],
      handshake: (pair) =>
        acceptTls(pair, current(), {
          timeoutMs: Math.max(ssl.sslTimeout, 1) * 1000,
          clientCert: ssl.clientCert,
          clientHost: remote.ip,
        }),
      variables: (info) => sslEnvironment(info, "CLIENT"),
      failed,
      secured: (session, _command, pid) => {
        secured(session);
        acceptLine(prog, ssl, ctx.id, session);
        const plain = bounded(prog, ssl, session, {
          input: session.readable,
          output: session.writable,
          log: io.log,
        }, () => pid);
        return { readable: plain.input, writable: plain.output };
      },
    };
    const prepared: Prepared = {
      io: ucspiTlsIo(io, plan, { close: realClose, lingerMs: LINGER_MS }),
      close,
      environ: (env) => sslVariables(env, ssl.tcpEnv),
    };
    return Promise.resolve(prepared);
  };
}
