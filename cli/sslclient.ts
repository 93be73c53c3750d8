/**
 * sslclient (ucspi-ssl): tcpclient over TLS. Connects as tcpclient does
 * (lib/client/tcpclient.ts), runs the TLS handshake through its `secure` hook
 * (lib/tls/tls.ts), checks the server's certificate against -a cafile (or
 * $CAFILE, else the system store) and its name against host (-N skips the
 * name, -X the whole check), and runs the program with the plaintext on
 * descriptors 6 (read) and 7 (write). -y (UCSPI-TLS, as Scott Gifford's
 * ucspi-tls sslclient): the program gets the connection in plaintext on 6
 * and 7 and starts TLS itself through $SSLCTLFD.
 */
import { ownEnviron } from "../lib/core/environ.ts";
import { fatal, fatalSys, ToolError, usage } from "../lib/core/errors.ts";
import { getopt, scanUlong } from "../lib/core/getopt.ts";
import { readFd3Password } from "../lib/core/password.ts";
import type { Duplex } from "node:stream";
import type tls from "node:tls";
import { stderrLine } from "../lib/core/log.ts";
import { connectClient } from "../lib/client/connect.ts";
import { applyClientOption, defaultClientOptions, remotePort } from "../lib/client/options.ts";
import { setClientEnv } from "../lib/client/client_env.ts";
import { tcpclient } from "../lib/client/tcpclient.ts";
import { type Ended, statusOf } from "../lib/process/status.ts";
import { forwardSignals } from "../lib/process/signals.ts";
import { applySslEnvironment, sslEnvironment, sslVariables } from "../lib/tls/ssl_env.ts";
import { lingeringClose } from "../lib/tls/streams.ts";
import {
  type ConnectOptions,
  connectTls,
  connectTlsSocket,
  HandshakeError,
  type TlsSession,
} from "../lib/tls/tls.ts";
import { runUcspiTls, socketPair, type UcspiTlsPlan } from "../lib/tls/ucspitls.ts";

const PROG = "sslclient";
// ucspi-ssl's usage line, unchanged (it does not list -y/-Y either)
const USAGE = "sslclient [ -463hHrRdDqQveEsSnNxX ] [ -i localip ] [ -p localport ] " +
  "[ -T timeoutconn ] [ -l localname ] [ -t timeoutinfo ] [ -I interface ] [ -a cafile ] " +
  "[ -A cadir ] [ -c certfile ] [ -z ciphers ] [ -k keyfile ] [ -V verifydepth ] " +
  "[ -w progtimeout ] host port program";
const SPEC = "46dDvqQhHrRi:p:t:T:l:I:a:A:c:z:k:V:3eEsSnNxXyYw:";
/** Lingering close: how long a server may stay quiet before we close (as sslserver). */
const LINGER_MS = 2000;

async function readFile(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    throw fatal(PROG, what);
  }
}

/** Every certificate file in dir, concatenated (ucspi-ssl's -A cadir). */
async function caDir(dir: string): Promise<string> {
  let text = "";
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile && !e.isSymlink) continue;
      try {
        const t = await Deno.readTextFile(`${dir}/${e.name}`);
        if (t.includes("-----BEGIN CERTIFICATE-----")) text += t + "\n";
      } catch { /* unreadable: skip */ }
    }
  } catch {
    throw fatal(PROG, "unable to load CA list");
  }
  return text;
}

/** A parsed sslclient command line, ready to connect. */
interface Parsed {
  opts: ReturnType<typeof defaultClientOptions>;
  host: string;
  portNumber: number;
  argv: string[];
  tls: Omit<ConnectOptions, "timeoutMs" | "host">;
  tcpEnv: boolean;
  sslEnv: boolean;
  /** -y: UCSPI-TLS, the program starts TLS when it asks (-Y, the default: at once). */
  delayed: boolean;
  timeoutMs: number;
}

/** Parses args and reads the files they name; `needProgram`: a program must follow host port. */
async function parse(
  parsed: ReturnType<typeof getopt>,
  opts: ReturnType<typeof defaultClientOptions>,
  needProgram: boolean,
): Promise<Parsed> {
  let cafile: string | undefined = Deno.env.get("CAFILE") || undefined;
  let cadir: string | undefined;
  let certfile: string | undefined, keyfile: string | undefined, ciphers: string | undefined;
  let password = false, tcpEnv = false, sslEnv = false, checkName = true, verifyServer = true;
  let delayed = false;
  for (const o of parsed.options) {
    switch (o.letter) {
      case "a":
        cafile = o.value || undefined;
        break;
      case "A":
        cadir = o.value || undefined;
        break;
      case "c":
        certfile = o.value || undefined;
        break;
      case "k":
        keyfile = o.value || undefined;
        break;
      case "z":
        ciphers = o.value || undefined;
        break;
      case "3":
        password = true;
        break;
      case "e":
        tcpEnv = true;
        break;
      case "E":
        tcpEnv = false;
        break;
      case "s":
        sslEnv = true;
        break;
      case "S":
        sslEnv = false;
        break;
      case "n":
        checkName = true;
        break;
      case "N":
        checkName = false;
        break;
      case "y":
        delayed = true;
        break;
      case "Y":
        delayed = false;
        break;
      case "x":
        verifyServer = true;
        break;
      case "X":
        verifyServer = false;
        break;
      case "V":
      case "I":
      case "w":
        scanUlong(o.value);
        break;
      default:
        applyClientOption(opts, o, PROG, USAGE);
    }
  }
  let [host, port, ...argv] = parsed.rest;
  if (host === undefined || port === undefined) throw usage(PROG, USAGE);
  if (host === "" || host === "0") host = opts.family === 4 ? "127.0.0.1" : "::1";
  const portNumber = remotePort(PROG, port);
  if (needProgram && argv.length === 0) throw usage(PROG, USAGE);
  const passphrase = password ? await readFd3Password(PROG) : undefined;
  let ca: string | undefined;
  if (cafile) ca = await readFile(cafile, "unable to load CA list");
  if (cadir) ca = (ca ?? "") + await caDir(cadir);
  const cert = certfile ? await readFile(certfile, "unable to load certificate") : undefined;
  const key = keyfile
    ? await readFile(keyfile, "unable to load key pair")
    : certfile
    ? cert
    : undefined;
  const [t0, t1] = opts.connTimeout;
  return {
    opts,
    host,
    portNumber,
    argv,
    tls: { verifyServer, checkName, ca, cert, key, passphrase, ciphers },
    tcpEnv,
    sslEnv,
    delayed,
    timeoutMs: Math.max(t0 + t1, 1) * 1000,
  };
}

/** The handshake over a connected socket, with sslclient's messages on failure. */
async function secureSocket(p: Parsed, sock: Duplex) {
  let r;
  try {
    r = await connectTlsSocket(sock, { ...p.tls, host: p.host, timeoutMs: p.timeoutMs });
  } catch (e) {
    if (e instanceof HandshakeError && e.verification) throw fatal(PROG, e.message);
    throw fatal(PROG, `unable to SSL connect: ${(e as Error).message}`);
  }
  if (p.opts.verbosity >= 2) stderrLine(`${PROG}: ssl connect`);
  return r;
}

/**
 * Runs sslclient with args (without argv[0]); resolves to the program's exit status, or ucspi-ssl's
 * 100/111 on a failure.
 */
export async function main(args: string[]): Promise<number> {
  const opts = defaultClientOptions();
  const parsed = getopt(PROG, args, SPEC, USAGE);
  try {
    const p = await parse(parsed, opts, true);
    if (p.delayed) return await delayedClient(p);
    return await tcpclient(PROG, opts, p.host, p.portNumber, p.argv, {
      async secure(sock, env) {
        const r = await secureSocket(p, sock);
        sslVariables(env, p.tcpEnv, true);
        if (p.sslEnv) applySslEnvironment(env, r.info, "SERVER");
        const socket = r.socket;
        return {
          stream: socket,
          // lingering close: the server may still be sending (see SecuredNetwork)
          close: () => lingeringClose(socket, LINGER_MS),
        };
      },
    });
  } catch (e) {
    if (e instanceof ToolError && (opts.verbosity === 0 || e.message === "")) return e.exitCode;
    throw e;
  }
}

/**
 * sslclient -y: connected, the program starts with the network in
 * plaintext on 6 and 7 and the UCSPI-TLS descriptors (lib/tls/ucspitls.ts);
 * its start command runs the handshake as sslclient's (the same checks and
 * messages). Resolves the program's status, or 111 when the handshake
 * failed (the program's tunnel descriptors were closed).
 */
async function delayedClient(p: Parsed): Promise<number> {
  const opts = p.opts;
  const warn = (line: string) => {
    if (opts.verbosity > 0) stderrLine(line);
  };
  const { sock, ends } = await connectClient(PROG, p.host, p.portNumber, opts, warn);
  try {
    if (opts.verbosity >= 2) {
      warn(`${PROG}: connected to ${ends.remoteIp} port ${ends.remotePort}`);
    }
    // byte strings, as runUcspiTls passes them on (lib/process/spawn.ts)
    const env = ownEnviron();
    await setClientEnv(env, ends, opts);
    sslVariables(env, p.tcpEnv, true);
    let failed = false;
    let session: TlsSession | undefined;
    const plan: UcspiTlsPlan = {
      plainFds: [6, 7],
      handshake: (pair) => connectTls(pair, { ...p.tls, host: p.host, timeoutMs: p.timeoutMs }),
      variables: (info) => sslEnvironment(info, "SERVER"),
      failed: (e) => {
        failed = true;
        const verification = e instanceof HandshakeError && e.verification;
        warn(
          `${PROG}: fatal: ${
            verification ? (e as Error).message : `unable to SSL connect: ${(e as Error).message}`
          }`,
        );
      },
      secured: (s) => {
        session = s;
        if (opts.verbosity >= 2) stderrLine(`${PROG}: ssl connect`);
      },
    };
    const pair = socketPair(sock, LINGER_MS);
    const signals = forwardSignals();
    let ended: Ended;
    try {
      ended = await runUcspiTls(p.argv, env, pair, plan, { started: signals.attach });
    } catch (e) {
      throw fatalSys(PROG, `unable to run ${p.argv[0]}`, e);
    } finally {
      signals.detach();
    }
    if (session) {
      // the lingering close, through the session (see SecuredNetwork)
      session.shutdown();
      await pair.closed;
    }
    return failed ? 111 : statusOf(ended);
  } finally {
    sock.destroy();
  }
}

/**
 * sslclient's connection and handshake from an sslclient command line
 * without a program (host port last), handing the secured socket to
 * `conversation` instead (https@). Resolves once the conversation is done
 * and the socket closed; sslclient's failures are ToolErrors as in main.
 */
export async function sslConversation(
  args: string[],
  conversation: (sock: tls.TLSSocket) => Promise<void>,
): Promise<void> {
  const opts = defaultClientOptions();
  const parsed = getopt(PROG, args, SPEC, USAGE);
  try {
    const p = await parse(parsed, opts, false);
    const warn = (line: string) => {
      if (opts.verbosity > 0) stderrLine(line);
    };
    const { sock } = await connectClient(PROG, p.host, p.portNumber, opts, warn);
    try {
      const r = await secureSocket(p, sock);
      try {
        await conversation(r.socket);
      } finally {
        await lingeringClose(r.socket, LINGER_MS);
      }
    } finally {
      sock.destroy();
    }
  } catch (e) {
    if (e instanceof ToolError && (opts.verbosity === 0 || e.message === "")) {
      throw new ToolError("", e.exitCode);
    }
    throw e;
  }
}
