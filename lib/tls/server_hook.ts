/**
 * sslserver's per-connection step (lib/server/server.ts's prepare hook):
 * [a PROXY header, -W] then the TLS handshake (lib/tls/tls.ts) with
 * ucspi-ssl's warnings when it fails, the -v/-V "ssl" log line, the -w idle
 * bound of ucspi-ssl's ssl_io, and the environment edit (SSL* instead of
 * TCP*, -s's SSL_* variables) the server applies before the rules. The
 * cli (cli/sslserver.ts) parses the options and loads the credentials this
 * reads through `current`.
 */
import { stderrLine } from "../core/log.ts";
import type { Prepared, PrepareHook } from "../server/server.ts";
import type { Io } from "../stages/stage.ts";
import type { ServerCredentials } from "./credentials.ts";
import { applySslEnvironment, sslVariables } from "./ssl_env.ts";
import { acceptTls, type ClientCertMode, HandshakeError, type TlsSession } from "./tls.ts";

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
  const dropSsl = `${prog}: warning: dropping SSL connection, `;
  const warn = (line: string) => {
    if (ssl.verbosity >= 1) stderrLine(line);
  };
  return async (conn, ctx) => {
    const connClose = conn.close.bind(conn);
    const { io, local, remote } = ctx;
    // tcpserver closes the connection when the program is done; do it
    // through the TLS session instead, so a client still sending gets our
    // last data and the end (lingering close) instead of a reset.
    const realClose = () => {
      try {
        connClose();
      } catch { /* closed */ }
    };
    let session: TlsSession | undefined;
    let closed = false;
    const deferredClose = () => {
      if (closed) return;
      closed = true;
      if (session) session.shutdown();
      else realClose();
    };
    try {
      session = await acceptTls(
        {
          readable: io.input,
          writable: io.output,
          close: realClose,
          lingerMs: LINGER_MS,
        },
        current(),
        {
          timeoutMs: Math.max(ssl.sslTimeout, 1) * 1000,
          clientCert: ssl.clientCert,
          clientHost: remote.ip,
        },
      );
    } catch (e) {
      if (e instanceof HandshakeError && e.verification) {
        // With $CCAFILE, ucspi-ssl has OpenSSL demand and verify the
        // client's certificate in the handshake itself, so a missing or
        // untrusted one fails the accept (only the name check comes after).
        const inHandshake = ssl.ccaFile !== undefined && !e.message.startsWith("client hostname");
        warn(
          inHandshake
            ? `${dropSsl}unable to accept SSL: ${UCSPI_SSL_ACCEPT_ERROR}`
            : `${dropSsl}${e.message}`,
        );
      } else warn(`${dropSsl}unable to accept SSL: ${(e as Error).message}`);
      return null;
    }
    (conn as { close: () => void }).close = deferredClose;
    if (ssl.verbosity >= 3) {
      stderrLine(
        `${prog}: ssl ${ctx.id} accept ${session.info.protocol}:${session.info.cipher}`,
      );
    } else if (ssl.verbosity >= 2) stderrLine(`${prog}: ssl ${ctx.id} accept `);
    let program: number | undefined;
    let plain: Io = {
      input: session.readable,
      output: session.writable,
      log: io.log,
      started: (pid) => (program = pid),
    };
    const tls = session;
    plain = idleBounded(plain, ssl.progTimeout, () => {
      // as ucspi-ssl's ssl process giving up: the line, SIGTERM to the
      // program, the connection closed
      warn(`${dropSsl}unable to speak SSL: timed out`);
      if (program !== undefined) {
        try {
          Deno.kill(program, "SIGTERM");
        } catch { /* gone */ }
      }
      tls.shutdown();
    });
    const info = session.info;
    const prepared: Prepared = {
      io: plain,
      local,
      remote,
      environ: (env) => {
        sslVariables(env, ssl.tcpEnv);
        if (ssl.sslEnv) applySslEnvironment(env, info, "CLIENT");
      },
    };
    return prepared;
  };
}
