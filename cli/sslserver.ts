/**
 * sslserver (ucspi-ssl): tcpserver with TLS terminated on each connection
 * before the program runs (implicit TLS: SMTPS, POP3S, IMAPS). It is
 * tcpserver's core (lib/server/server.ts) with its steps (PROXY, TLS)
 * (lib/tls/server_hook.ts): [PROXY header, -W] -> TLS handshake -> the usual
 * peer info, rules, limits, logs and program, which talks plaintext on
 * stdin/stdout.
 *
 * Options and environment as fehcom's ucspi-ssl sslserver: certificate from
 * $CERTCHAINFILE or $CERTFILE, key from $KEYFILE, client CAs from $CAFILE,
 * $VERIFYDEPTH, $CIPHERS; PROTO=SSL and SSLLOCAL*, SSLREMOTE* (-e: the TCP*
 * variables instead, as ucspi-ssl), -s: mod_ssl's SSL_* variables. Beyond
 * ucspi-ssl: SIGHUP re-reads the certificate, key and CAs (new connections
 * get them), -W reads a PROXY header first, -C and -L as our tcpserver.
 * -n: no handshake at first; the program gets the UCSPI-TLS descriptors
 * (lib/tls/ucspitls.ts) and starts TLS itself (STARTTLS, STLS).
 */
import { errorText, fatal, ToolError } from "../lib/core/errors.ts";
import { scanUlong } from "../lib/core/getopt.ts";
import { readFd3Password } from "../lib/core/password.ts";
import { stderrLine } from "../lib/core/log.ts";
import { type ProxyPolicy, proxyPolicyFromEnv, proxyPrepareHook } from "../lib/net/proxy/step.ts";
import {
  CREDENTIAL_MESSAGES,
  CredentialError,
  loadServerCredentials,
  type ServerCredentials,
  type ServerFiles,
  serverFilesFromEnv,
} from "../lib/tls/credentials.ts";
import {
  sslPrepareHook,
  type SslSessionOptions,
  ucspiTlsPrepareHook,
} from "../lib/tls/server_hook.ts";
import { warmUpTls } from "../lib/tls/warm_up.ts";
import { parseServerArgs, runServer, type TcpserverArgs } from "./tcpserver.ts";

const PROG = "sslserver";
const USAGE = "sslserver [ -1346UXpPhHrRoOdDqQvVIeEsSnNmzZ ] [ -c limit ] [ -x rules.cdb ] " +
  "[ -B banner ] [ -g gid ] [ -u uid ] [ -b backlog ] [ -l localname ] [ -t timeout ] " +
  "[ -I interface ] [ -T ssltimeout ] [ -w progtimeout ] host port program";
const SPEC = "1346dDvVqQhHrRUXx:t:T:u:g:l:b:B:c:pPoOI:EeSsw:nNzZmC:LW";

/** sslserver's own settings, beside tcpserver's. */
export interface SslOptions extends SslSessionOptions {
  /** -3: read the key's password from descriptor 3. */
  passwordFd3: boolean;
  /** -W: a PROXY header starts each connection. */
  proxy: boolean;
  /** -n: UCSPI-TLS, the program starts TLS when it asks (-N, the default: at once). */
  delayed: boolean;
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
    delayed: false,
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
        ssl.delayed = false;
        break;
      case "n":
        ssl.delayed = true;
        break;
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

async function credentials(files: ServerFiles): Promise<ServerCredentials> {
  try {
    return await loadServerCredentials(files);
  } catch (e) {
    if (e instanceof CredentialError) throw fatal(PROG, CREDENTIAL_MESSAGES[e.failure]);
    throw e;
  }
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
    // TLS runs over Deno's sockets (the pure listener): what sslserver's
    // tests and the TLS bench measure.
    tcp.server.native = false;
    tcp.server.steps = [
      ...(proxy ? [proxyPrepareHook(proxy)] : []),
      (ssl.delayed ? ucspiTlsPrepareHook : sslPrepareHook)(PROG, ssl, () => creds!),
    ];
    // After -1's line, before the first accept: one TLS session with
    // ourselves in memory takes the process's first-use costs off the
    // first client (lib/tls/warm_up.ts).
    tcp.server.beforeAccept = () => warmUpTls(creds!);
    // As ucspi-ssl: bind first (a port in use fails before any credential
    // is read or logged), then the password (-3) and the credentials, read
    // with the ids we started with; then the ids are dropped.
    const afterListen = async () => {
      if (ssl.passwordFd3) files.passphrase = await readFd3Password(PROG);
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
