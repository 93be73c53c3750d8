/**
 * ucspitlsd as a stage (s6-networking's s6-ucspitlsd): `tcpserver ...
 * ucspitlsd prog` runs prog on the plaintext connection with the UCSPI-TLS
 * descriptors (lib/tls/ucspitls.ts); when prog writes the start command,
 * the server side of the handshake runs on the connection with the
 * certificate sslserver would use ($CERTFILE or $CERTCHAINFILE, $KEYFILE;
 * $CAFILE and $CADIR for client certificates, $CIPHERS, $VERIFYDEPTH).
 *
 * Options, as s6-ucspitlsd's: -v verbosity (0 quiet, 1 warnings, the
 * default, 2 also a line per handshake), -K kimeout (give up on the
 * handshake after kimeout milliseconds; 0, the default, never), -Y (ask for
 * a client certificate, optional; verified against $CAFILE and $CADIR), -y
 * (ask for one and require it), neither (the default: ask for none, no CA
 * is read), -z (the default: prog runs without $CERTFILE, $CERTCHAINFILE,
 * $KEYFILE, $CAFILE, $CADIR, $TLS_UID, $TLS_GID and the -k variables) and
 * -Z (keep them); -k snilevel (certificates by the name the client asks
 * for: $CERTFILE:name and $KEYFILE:name, from level 2 on only those); -S
 * (when prog ends the tunnel's output: close_notify, then the connection is
 * broken) and -s (the end is a TCP half-close without close_notify); with
 * neither, close_notify and a half-close, the tunnel's input staying open;
 * -j (the peer's EOF without close_notify is a normal end: always so here).
 * $TLS_UID/$TLS_GID: as a process started as root, the TLS side switches to
 * them before the handshake (prog keeps its ids). Runs in-process inside
 * tcpserver (lib/stages/chain.ts) or as a process over its stdin and stdout
 * (cli/ucspitlsd.ts).
 */
import { byteStringText } from "../core/bytes.ts";
import { fatal, usage } from "../core/errors.ts";
import { getopt, scanUlong } from "../core/getopt.ts";
import type { Outcome, Stage } from "../stages/stage.ts";
import { loadCaDir } from "./ca_dir.ts";
import { sniCandidates } from "./client_hello.ts";
import {
  CREDENTIAL_MESSAGES,
  CredentialError,
  loadServerCredentials,
  type ServerCredentials,
  type ServerFiles,
  serverFilesFromEnv,
} from "./credentials.ts";
import { sslEnvironment } from "./ssl_env.ts";
import type { StreamPair } from "./streams.ts";
import { acceptTls, type ClientCertMode, HandshakeError } from "./tls.ts";
import { ucspiTlsIo } from "./ucspitls.ts";
import { peekServerName, type QuietEnd, tunnelEnd, withoutCloseNotify } from "./ucspitlsd_io.ts";

const PROG = "ucspitlsd";
/** The usage line's text after "ucspitlsd: usage: ". */
export const UCSPITLSD_USAGE: string = "ucspitlsd [ -S | -s ] [ -j ] [ -Y | -y ] [ -Z | -z ] " +
  "[ -v verbosity ] [ -K kimeout ] [ -k snilevel ] prog...";
const SPEC = "SsjYyZzv:K:k:";

/** The variables only the TLS side reads, kept from prog unless -Z. */
export const TLS_ONLY_VARIABLES = [
  "CERTFILE",
  "CERTCHAINFILE",
  "KEYFILE",
  "CAFILE",
  "CADIR",
  "TLS_UID",
  "TLS_GID",
];

/** The prefixes of -k's variables ($CERTFILE:name, $KEYFILE:name), kept from prog unless -Z. */
export const SNI_PREFIXES = ["CERTFILE:", "KEYFILE:"];

/** The longest timer setTimeout keeps (about 24.8 days): -K 0's "never". */
const FOREVER_MS = 2 ** 31 - 1;

/** The parsed command line. */
export interface UcspitlsdArgs {
  /** -Y: "optional", -y: "required", neither: "none". */
  request: "none" | "optional" | "required";
  /** -z (true, the default) or -Z. */
  clean: boolean;
  /** -v */
  verbosity: number;
  /** -K, milliseconds; 0: no limit. */
  kimeout: number;
  /** -k: 0 none; 1 $CERTFILE:name too; 2 or more only those. */
  snilevel: number;
  /** -S "break", -s "eof", neither "notify" (close_notify, then a half-close). */
  end: "notify" | "break" | "eof";
  /** prog and its arguments. */
  prog: string[];
}

/** Parses ucspitlsd's arguments; throws the usage ToolError (exit 100). */
export function parseUcspitlsdArgs(argv: string[]): UcspitlsdArgs {
  const parsed = getopt(PROG, argv, SPEC, UCSPITLSD_USAGE);
  const a: UcspitlsdArgs = {
    request: "none",
    clean: true,
    verbosity: 1,
    kimeout: 0,
    snilevel: 0,
    end: "notify",
    prog: parsed.rest,
  };
  for (const o of parsed.options) {
    switch (o.letter) {
      case "S":
        a.end = "break";
        break;
      case "s":
        a.end = "eof";
        break;
      case "Y":
        a.request = "optional";
        break;
      case "y":
        a.request = "required";
        break;
      case "Z":
        a.clean = false;
        break;
      case "z":
        a.clean = true;
        break;
      case "v":
        a.verbosity = scanUlong(o.value);
        break;
      case "K":
        a.kimeout = scanUlong(o.value);
        break;
      case "k":
        a.snilevel = scanUlong(o.value);
        break;
      case "j":
        // the peer's EOF without close_notify ends the tunnel normally: always so here
        break;
    }
  }
  if (a.prog.length === 0) throw usage(PROG, UCSPITLSD_USAGE);
  return a;
}

/** The certificates to choose from: the default one and those by server name (-k). */
export interface Certificates {
  /** $CERTFILE's (absent with -k 2 or more). */
  fallback?: ServerCredentials;
  /** $CERTFILE:name's, by lower-case name ("*.example.org" for a wildcard). */
  byName: Map<string, ServerCredentials>;
}

function textOf(env: Map<string, string>, name: string): string | undefined {
  const v = env.get(name);
  // environment values are byte strings; Deno's paths are text
  return v === undefined || v === "" ? undefined : byteStringText(v) ?? v;
}

async function loaded(files: ServerFiles): Promise<ServerCredentials> {
  try {
    return await loadServerCredentials(files);
  } catch (e) {
    if (e instanceof CredentialError) throw fatal(PROG, CREDENTIAL_MESSAGES[e.failure]);
    throw e;
  }
}

/**
 * Loads what the handshake may present: $CERTFILE's certificate (unless -k
 * 2 or more) and, with -k, each $CERTFILE:name with its $KEYFILE:name (the
 * file may hold the chain); all trust $CAFILE and $CADIR when a client
 * certificate is asked for. Throws ucspi-ssl's credential ToolErrors (111).
 */
export async function loadCertificates(
  env: Map<string, string>,
  args: Pick<UcspitlsdArgs, "request" | "snilevel">,
): Promise<Certificates> {
  const base = serverFilesFromEnv((n) => textOf(env, n));
  if (args.request === "none") base.caFile = undefined;
  const caDirName = args.request === "none" ? undefined : textOf(env, "CADIR");
  let caDir;
  try {
    caDir = caDirName === undefined ? undefined : await loadCaDir(caDirName);
  } catch (e) {
    if (e instanceof CredentialError) throw fatal(PROG, CREDENTIAL_MESSAGES[e.failure]);
    throw e;
  }
  const withCaDir = (c: ServerCredentials): ServerCredentials =>
    caDir ? { ...c, cas: [...c.cas, ...caDir.cas], trusted: [...c.trusted, ...caDir.trusted] } : c;
  const out: Certificates = { byName: new Map() };
  if (args.snilevel < 2) out.fallback = withCaDir(await loaded(base));
  if (args.snilevel > 0) {
    for (const key of [...env.keys()].sort()) {
      if (!key.startsWith("CERTFILE:") || key.length === 9) continue;
      const name = (byteStringText(key.slice(9)) ?? key.slice(9)).toLowerCase();
      const chain = textOf(env, key);
      if (chain === undefined) continue;
      const files: ServerFiles = {
        ...base,
        certFile: undefined,
        certChainFile: chain,
        keyFile: textOf(env, `KEYFILE:${key.slice(9)}`),
      };
      out.byName.set(name, withCaDir(await loaded(files)));
    }
    if (!out.fallback && out.byName.size === 0) {
      throw fatal(PROG, CREDENTIAL_MESSAGES.certificate);
    }
  }
  return out;
}

/** The certificate for the name a client asked for (null: none asked), else the fallback. */
export function certificateFor(
  certs: Certificates,
  name: string | null,
): ServerCredentials | undefined {
  if (name !== null) {
    for (const n of sniCandidates(name)) {
      const c = certs.byName.get(n);
      if (c) return c;
    }
  }
  return certs.fallback;
}

/** $TLS_GID and $TLS_UID as numbers (0 when unset or not a number). */
export function tlsIds(env: Map<string, string>): { gid: number; uid: number } {
  const num = (n: string) => {
    const v = env.get(n);
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : 0;
  };
  return { gid: num("TLS_GID"), uid: num("TLS_UID") };
}

/** How the stage runs. */
export interface UcspitlsdContext {
  /**
   * True when ucspitlsd is its own process (cli/ucspitlsd.ts): then, started
   * as root, it takes $TLS_GID/$TLS_UID before the handshake. Inside
   * tcpserver the one process serves every connection: tcpserver's -u and
   * -g say whose ids it has.
   */
  ownProcess?: boolean;
}

/** Switches this process to gid/uid (glibc's setgroups, setgid, setuid, for every thread). */
async function dropToTlsIds(ids: { gid: number; uid: number }): Promise<void> {
  if (Deno.uid() !== 0 || (ids.gid === 0 && ids.uid === 0)) return;
  const { dropIds } = await import("../native/ids.ts");
  dropIds(ids.gid, ids.uid);
}

/**
 * Makes the stage `ucspitlsd [opts] prog...` (argv without "ucspitlsd"):
 * loads the credentials from env, then names prog to run over the
 * UCSPI-TLS io. Throws the usage ToolError (exit 100) without prog, and
 * ucspi-ssl's credential messages (exit 111) when the files cannot be used.
 */
export function makeUcspitlsdStage(ctx: UcspitlsdContext = {}): Stage {
  return async (argv, env, io): Promise<Outcome> => {
    const args = parseUcspitlsdArgs(argv);
    const certs = await loadCertificates(env, args);
    const ids = tlsIds(env);
    if (args.clean) {
      for (const k of TLS_ONLY_VARIABLES) env.delete(k);
      for (const k of [...env.keys()]) {
        if (SNI_PREFIXES.some((p) => k.startsWith(p))) env.delete(k);
      }
    }
    const clientCert: ClientCertMode = args.request === "required" ? "require" : "none";
    const warn = (line: string) => {
      if (args.verbosity >= 1) io.log(line);
    };
    let quiet: QuietEnd | undefined;
    const handshake = async (net: StreamPair) => {
      if (ctx.ownProcess) await dropToTlsIds(ids);
      const started = Date.now();
      const limit = args.kimeout === 0 ? FOREVER_MS : args.kimeout;
      let pair = net;
      let creds = certs.fallback;
      if (args.snilevel > 0) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const deadline = new Promise<void>((r) => (timer = setTimeout(r, limit)));
        try {
          const peeked = await peekServerName(pair, deadline);
          pair = peeked.pair;
          creds = certificateFor(certs, peeked.name);
          if (!creds) {
            throw new HandshakeError(`no certificate for ${peeked.name ?? "a client without SNI"}`);
          }
        } finally {
          clearTimeout(timer);
        }
      }
      if (args.end === "eof") {
        quiet = withoutCloseNotify(pair);
        pair = quiet.pair;
      }
      return await acceptTls(pair, creds!, {
        timeoutMs: Math.max(1, limit - (Date.now() - started)),
        clientCert,
      });
    };
    return {
      next: args.prog,
      io: ucspiTlsIo(io, {
        plainFds: [0, 1],
        handshake,
        variables: (info) => sslEnvironment(info, "CLIENT"),
        failed: (e) => {
          const why = (e as Error).message;
          warn(
            e instanceof HandshakeError && e.verification
              ? `${PROG}: warning: ${why}`
              : `${PROG}: warning: unable to accept TLS: ${why}`,
          );
        },
        secured: (session) => {
          if (args.verbosity >= 2) {
            io.log(`${PROG}: tls accept ${session.info.protocol}:${session.info.cipher}`);
          }
          if (args.end !== "notify") return tunnelEnd(session, args.end, quiet);
        },
      }),
    };
  };
}

/** The stage as it runs inside tcpserver (no switch to $TLS_UID/$TLS_GID). */
export const ucspitlsdStage: Stage = makeUcspitlsdStage();
