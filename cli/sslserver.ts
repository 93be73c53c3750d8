/**
 * sslserver (ucspi-ssl): tcpserver with TLS terminated on each connection
 * before the program runs (implicit TLS: SMTPS, POP3S, IMAPS). It is
 * tcpserver's core (lib/server/server.ts) with a prepare hook: [PROXY header,
 * -W] -> TLS handshake (lib/tls/tls.ts) -> the usual peer info, rules, limits,
 * logs and program, which talks plaintext on stdin/stdout.
 *
 * Options and environment as fehcom's ucspi-ssl sslserver: certificate from
 * $CERTCHAINFILE or $CERTFILE, key from $KEYFILE, client CAs from $CAFILE,
 * $VERIFYDEPTH, $CIPHERS; PROTO=SSL and SSLLOCAL*, SSLREMOTE* (-e: the TCP*
 * variables instead, as ucspi-ssl), -s: mod_ssl's SSL_* variables. Beyond
 * ucspi-ssl: SIGHUP re-reads the certificate, key and CAs (new connections
 * get them), -W reads a PROXY header first, -C and -L as our tcpserver.
 */
import { errorText, fatal, ToolError } from "../lib/core/errors.ts";
import { scanUlong } from "../lib/core/getopt.ts";
import { type ProxyPolicy, proxyPolicyFromEnv, proxyStep } from "../lib/net/proxy.ts";
import type { Io } from "../lib/stages/stage.ts";
import { type Prepared, type PrepareHook, stderrLine } from "../lib/server/server.ts";
import {
  CREDENTIAL_MESSAGES,
  CredentialError,
  loadServerCredentials,
  type ServerCredentials,
  type ServerFiles,
  serverFilesFromEnv,
} from "../lib/tls/credentials.ts";
import { applySslEnvironment, sslVariables } from "../lib/tls/ssl_env.ts";
import { acceptTls, type ClientCertMode, HandshakeError, type TlsSession } from "../lib/tls/tls.ts";
import { parseServerArgs, runServer, type TcpserverArgs } from "./tcpserver.ts";

const PROG = "sslserver";
const USAGE = "sslserver [ -1346UXpPhHrRoOdDqQvVIeEsSnNmzZ ] [ -c limit ] [ -x rules.cdb ] " +
  "[ -B banner ] [ -g gid ] [ -u uid ] [ -b backlog ] [ -l localname ] [ -t timeout ] " +
  "[ -I interface ] [ -T ssltimeout ] [ -w progtimeout ] host port program";
const SPEC = "1346dDvVqQhHrRUXx:t:T:u:g:l:b:B:c:pPoOI:EeSsw:nNzZmC:LW";
const DROP_SSL = `${PROG}: warning: dropping SSL connection, `;
/**
 * What ucspi-ssl writes after "unable to accept SSL: " when OpenSSL refused
 * the handshake: its ssl_error_str gives SSL_get_error's code (SSL_ERROR_SSL,
 * 1) to ERR_error_string, which OpenSSL 3 renders so (`openssl errstr 1`).
 */
const UCSPI_SSL_ACCEPT_ERROR = "error:00000001:lib(0)::reason(1)";
/** Lingering close: how long a client may stay quiet before we close (see lib/tls StreamPair). */
const LINGER_MS = 2000;

/** sslserver's own settings, beside tcpserver's. */
export interface SslOptions {
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
  /** -3: read the key's password from descriptor 3. */
  passwordFd3: boolean;
  /** -W: a PROXY header starts each connection. */
  proxy: boolean;
  /** $CCAFILE when a client certificate is asked for (not "" or "-"). */
  ccaFile?: string;
}

/** Parses sslserver's command line into tcpserver's arguments and our own. */
export function parseArgs(
  args: string[],
  env: Map<string, string>,
): { tcp: TcpserverArgs; ssl: SslOptions } {
  const ssl: SslOptions = {
    verbosity: 1,
    tcpEnv: false,
    sslEnv: false,
    clientCert: "none",
    sslTimeout: 26,
    progTimeout: 3600,
    passwordFd3: false,
    proxy: false,
  };
  const sslOption = (letter: string, value: string): boolean => {
    switch (letter) {
      case "v":
        ssl.verbosity = 2;
        break;
      case "V":
        ssl.verbosity = 3;
        break;
      case "q":
        ssl.verbosity = 0;
        break;
      case "Q":
        ssl.verbosity = 1;
        break;
      case "N":
        break;
      case "n":
        throw new ToolError(
          `${PROG}: fatal: -n (delayed TLS over UCSPI-TLS) is not supported`,
          100,
        );
      case "T":
        ssl.sslTimeout = scanUlong(value);
        break;
      case "w":
        ssl.progTimeout = scanUlong(value);
        break;
      case "3":
        ssl.passwordFd3 = true;
        break;
      case "e":
        ssl.tcpEnv = true;
        break;
      case "E":
        ssl.tcpEnv = false;
        break;
      case "s":
        ssl.sslEnv = true;
        break;
      case "S":
        ssl.sslEnv = false;
        break;
      case "z":
        ssl.clientCert = "require-host";
        break;
      case "m":
        ssl.clientCert = "require";
        break;
      case "Z":
        ssl.clientCert = "none";
        break;
      case "W":
        ssl.proxy = true;
        break;
      default:
        return false;
    }
    return true;
  };
  const tcp = parseServerArgs(PROG, args, SPEC, USAGE, env, {
    prog: PROG,
    noDelay: true,
    remoteInfo: false,
  }, sslOption);
  tcp.server.verbosity = Math.min(ssl.verbosity, 2);
  // $CCAFILE="-" turns the client certificate request off, as ucspi-ssl.
  const cca = env.get("CCAFILE");
  if (cca === "-") ssl.clientCert = "none";
  if (cca && cca !== "-" && ssl.clientCert !== "none") ssl.ccaFile = cca;
  return { tcp, ssl };
}

/** The key's password: descriptor 3 up to a NUL or its end (-3). */
async function readPassword(): Promise<string> {
  let data: Uint8Array;
  try {
    data = await Deno.readFile("/dev/fd/3");
  } catch (e) {
    throw fatal(PROG, `unable to read password: ${errorText(e)}`);
  }
  const nul = data.indexOf(0);
  return new TextDecoder().decode(nul >= 0 ? data.subarray(0, nul) : data);
}

async function credentials(files: ServerFiles): Promise<ServerCredentials> {
  try {
    return await loadServerCredentials(files);
  } catch (e) {
    if (e instanceof CredentialError) throw fatal(PROG, CREDENTIAL_MESSAGES[e.failure]);
    throw e;
  }
}

/**
 * -w, as ucspi-ssl's ssl_io: when neither direction carried data for
 * `seconds`, the program's input ends (it sees EOF, as if the client had
 * closed: silently); when it stays idle `seconds` more (or the client had
 * already closed), both directions are closed and `onIdle` is called.
 */
function idleBounded(io: Io, seconds: number, onIdle: () => void): Io {
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

/** The per-connection hook: [PROXY header] then the TLS handshake. */
export function sslPrepareHook(
  ssl: SslOptions,
  current: () => ServerCredentials,
  proxy: ProxyPolicy | null,
): PrepareHook {
  const warn = (line: string) => {
    if (ssl.verbosity >= 1) stderrLine(line);
  };
  return async (conn, ctx) => {
    const connClose = conn.close.bind(conn);
    let { io, local, remote } = ctx;
    if (proxy) {
      const r = await proxyStep({ io, local, remote }, proxy);
      if (!r) return null;
      ({ io, local, remote } = r);
    }
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
            ? `${DROP_SSL}unable to accept SSL: ${UCSPI_SSL_ACCEPT_ERROR}`
            : `${DROP_SSL}${e.message}`,
        );
      } else warn(`${DROP_SSL}unable to accept SSL: ${(e as Error).message}`);
      return null;
    }
    (conn as { close: () => void }).close = deferredClose;
    if (ssl.verbosity >= 3) {
      stderrLine(
        `${PROG}: ssl ${ctx.id} accept ${session.info.protocol}:${session.info.cipher}`,
      );
    } else if (ssl.verbosity >= 2) stderrLine(`${PROG}: ssl ${ctx.id} accept `);
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
      warn(`${DROP_SSL}unable to speak SSL: timed out`);
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

/** Runs sslserver; resolves 0 after SIGTERM. */
export async function main(args: string[]): Promise<number> {
  const baseEnv = new Map(Object.entries(Deno.env.toObject()));
  const { tcp, ssl } = parseArgs(args, baseEnv);
  const quiet = ssl.verbosity === 0;
  try {
    const files = serverFilesFromEnv((n) => baseEnv.get(n));
    let proxy: ProxyPolicy | null = null;
    if (ssl.proxy) {
      try {
        proxy = proxyPolicyFromEnv(PROG, baseEnv, (l) => quiet || stderrLine(l));
      } catch (e) {
        throw fatal(PROG, `unable to parse $PROXY_TRUSTED: ${(e as Error).message}`);
      }
    }
    let creds: ServerCredentials | null = null;
    tcp.server.prepare = sslPrepareHook(ssl, () => creds!, proxy);
    // As ucspi-ssl: bind first (a port in use fails before any credential
    // is read or logged), then the password (-3) and the credentials, read
    // with the ids we started with; then the ids are dropped.
    const afterListen = async () => {
      if (ssl.passwordFd3) files.passphrase = await readPassword();
      creds = await credentials(files);
      if (ssl.verbosity >= 2) {
        const pid = Deno.pid;
        const line = (what: string, v: string | undefined) =>
          stderrLine(`${PROG}: ${what} ${pid} ${v ?? ""}`);
        line("cafile", files.caFile);
        // ucspi-ssl's ccafile is $CCAFILE, and none when no client
        // certificate is asked for
        line("ccafile", ssl.ccaFile);
        line("cadir", undefined);
        line("chainfile", files.certChainFile);
        line("cert", files.certFile);
        line("key", files.keyFile);
      }
    };
    // SIGHUP: read the credentials again, as the user the process now is
    // (-u, or $SSL_UID); running connections keep theirs, and when the files
    // cannot be read the old ones stay, with a warning.
    const reload = () => {
      loadServerCredentials(files).then((c) => {
        creds = c;
        if (ssl.verbosity >= 2) stderrLine(`${PROG}: reloaded certificate ${Deno.pid}`);
      }, (e) => {
        const why = e instanceof CredentialError ? CREDENTIAL_MESSAGES[e.failure] : errorText(e);
        if (!quiet) stderrLine(`${PROG}: warning: keeping the old certificate: ${why}`);
      });
    };
    Deno.addSignalListener("SIGHUP", reload);
    try {
      return await runServer(PROG, tcp, baseEnv, {
        dropProcessIds: true,
        processIds: sslIds(baseEnv),
        afterListen,
      });
    } finally {
      Deno.removeSignalListener("SIGHUP", reload);
    }
  } catch (e) {
    if (quiet && e instanceof ToolError) return e.exitCode;
    throw e;
  }
}

/**
 * ucspi-ssl's $SSL_UID and $SSL_GID: the ids of the process that does TLS
 * and reads the certificate and key (instead of -u/-g; unset or 0: those).
 */
export function sslIds(env: Map<string, string>): { uid?: number; gid?: number } {
  const num = (name: string) => {
    const v = env.get(name);
    return v === undefined || v === "" ? undefined : scanUlong(v) || undefined;
  };
  return { uid: num("SSL_UID"), gid: num("SSL_GID") };
}
