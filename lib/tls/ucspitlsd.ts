/**
 * ucspitlsd as a stage (s6-networking's s6-ucspitlsd): `tcpserver ...
 * ucspitlsd prog` runs prog on the plaintext connection with the UCSPI-TLS
 * descriptors (lib/tls/ucspitls.ts); when prog writes the start command,
 * the server side of the handshake runs on the connection with the
 * certificate sslserver would use ($CERTFILE or $CERTCHAINFILE, $KEYFILE;
 * $CAFILE for client certificates, $CIPHERS, $VERIFYDEPTH).
 *
 * Options, as s6-ucspitlsd's: -v verbosity (0 quiet, 1 warnings, the
 * default, 2 also a line per handshake), -K kimeout (give up on the
 * handshake after kimeout milliseconds; 0, the default, never), -Y (ask for
 * a client certificate, optional; verified against $CAFILE), -y (ask for
 * one and require it), neither (the default: ask for none, $CAFILE is not
 * read), -z (the default: prog runs without $CERTFILE, $CERTCHAINFILE,
 * $KEYFILE, $CAFILE, $CADIR, $TLS_UID, $TLS_GID) and -Z (keep them). Runs
 * in-process inside tcpserver (lib/stages/chain.ts) or as a process over
 * its stdin and stdout (cli/ucspitlsd.ts).
 */
import { byteStringText } from "../core/bytes.ts";
import { fatal, usage } from "../core/errors.ts";
import { getopt, scanUlong } from "../core/getopt.ts";
import type { Outcome, Stage } from "../stages/stage.ts";
import {
  CREDENTIAL_MESSAGES,
  CredentialError,
  loadServerCredentials,
  serverFilesFromEnv,
} from "./credentials.ts";
import { sslEnvironment } from "./ssl_env.ts";
import { acceptTls, type ClientCertMode, HandshakeError } from "./tls.ts";
import { ucspiTlsIo } from "./ucspitls.ts";

const PROG = "ucspitlsd";
/** The usage line's text after "ucspitlsd: usage: ". */
export const UCSPITLSD_USAGE: string = "ucspitlsd [ -Y | -y ] [ -Z | -z ] [ -v verbosity ] " +
  "[ -K kimeout ] prog...";
const SPEC = "YyZzv:K:";

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

/** The longest timer setTimeout keeps (about 24.8 days): -K 0's "never". */
const FOREVER_MS = 2 ** 31 - 1;

/**
 * `ucspitlsd [opts] prog...` (argv without "ucspitlsd"): loads the
 * credentials from env, then names prog to run over the UCSPI-TLS io.
 * Throws the usage ToolError (exit 100) without prog, and ucspi-ssl's
 * credential messages (exit 111) when the files cannot be used.
 */
export const ucspitlsdStage: Stage = async (argv, env, io): Promise<Outcome> => {
  const parsed = getopt(PROG, argv, SPEC, UCSPITLSD_USAGE);
  let verbosity = 1;
  let kimeout = 0;
  let request: "none" | "optional" | "required" = "none";
  let clean = true;
  for (const o of parsed.options) {
    switch (o.letter) {
      case "Y":
        request = "optional";
        break;
      case "y":
        request = "required";
        break;
      case "Z":
        clean = false;
        break;
      case "z":
        clean = true;
        break;
      case "v":
        verbosity = scanUlong(o.value);
        break;
      case "K":
        kimeout = scanUlong(o.value);
        break;
    }
  }
  if (parsed.rest.length === 0) throw usage(PROG, UCSPITLSD_USAGE);
  const files = serverFilesFromEnv((n) => {
    const v = env.get(n);
    return v === undefined ? undefined : byteStringText(v) ?? v;
  });
  if (request === "none") files.caFile = undefined;
  let creds;
  try {
    creds = await loadServerCredentials(files);
  } catch (e) {
    if (e instanceof CredentialError) throw fatal(PROG, CREDENTIAL_MESSAGES[e.failure]);
    throw e;
  }
  if (clean) { for (const k of TLS_ONLY_VARIABLES) env.delete(k); }
  const clientCert: ClientCertMode = request === "required" ? "require" : "none";
  const warn = (line: string) => {
    if (verbosity >= 1) io.log(line);
  };
  return {
    next: parsed.rest,
    io: ucspiTlsIo(io, {
      plainFds: [0, 1],
      handshake: (pair) =>
        acceptTls(pair, creds, {
          timeoutMs: kimeout === 0 ? FOREVER_MS : kimeout,
          clientCert,
        }),
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
        if (verbosity >= 2) {
          io.log(`${PROG}: tls accept ${session.info.protocol}:${session.info.cipher}`);
        }
      },
    }),
  };
};
