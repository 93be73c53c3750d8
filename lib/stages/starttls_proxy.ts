/**
 * smtpd-starttls-proxy as a stage (skarnet's name and idea; our own code):
 * gives an SMTP server that knows nothing of TLS (qmail-smtpd) STARTTLS.
 * pop3d-starttls-proxy and imapd-starttls-proxy do the same for POP3 (STLS)
 * and IMAP (STARTTLS): one relay, one row per protocol in the table
 * STARTTLS_PROTOCOLS (the protocol's knowledge in starttls/smtp.ts,
 * pop3.ts, imap.ts); what follows is said for SMTP, the rows say the rest.
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
 *
 * The parts, in lib/stages/starttls/: args.ts (the command line),
 * credentials.ts (the certificate), relay.ts (one connection's relay),
 * protocol.ts (what a row of the table is), smtp.ts, pop3.ts, imap.ts
 * (lines, commands and replies as bytes).
 */
import { SSL_SESSION_VARIABLES, sslSideVariables } from "../tls/ssl_env.ts";
import { parseStarttlsProxyArgs, requiresTls } from "./starttls/args.ts";
import { proxyCredentials, proxyServerFiles } from "./starttls/credentials.ts";
import { IMAP_PROTOCOL } from "./starttls/imap.ts";
import { POP3_PROTOCOL } from "./starttls/pop3.ts";
import type { StarttlsProtocol } from "./starttls/protocol.ts";
import { startTlsRelay } from "./starttls/relay.ts";
import { SMTP_PROTOCOL } from "./starttls/smtp.ts";
import type { Outcome, Stage } from "./stage.ts";

/** The protocol table: each STARTTLS proxy's row, by its tool name. */
export const STARTTLS_PROTOCOLS: Readonly<Record<string, StarttlsProtocol>> = {
  [SMTP_PROTOCOL.tool]: SMTP_PROTOCOL,
  [POP3_PROTOCOL.tool]: POP3_PROTOCOL,
  [IMAP_PROTOCOL.tool]: IMAP_PROTOCOL,
};

/** Per-connection facts (inside tcpserver: its connection number). */
export interface StarttlsProxyContext {
  /** The pid named in the log lines (default: ours). */
  pid?: number;
}

const SSL_NAMES = [
  ...SSL_SESSION_VARIABLES,
  "SSL_CLIENT_VERIFY",
  ...sslSideVariables("CLIENT"),
  ...sslSideVariables("SERVER"),
];

/**
 * Makes the stage of `protocol` (default SMTP): `smtpd-starttls-proxy [ -r ]
 * [ -t timeout ] smtpd ...` (argv without the tool's name), and the same
 * for pop3d- and imapd-starttls-proxy. Loads the certificate before the program
 * starts (a broken one is fatal, exit 111, as for sslserver), removes
 * inherited SSL_* variables (the program starts before any handshake, so
 * none could describe this connection) and returns the program with the
 * relaying io.
 */
export function makeStarttlsProxyStage(
  ctx: StarttlsProxyContext = {},
  protocol: StarttlsProtocol = SMTP_PROTOCOL,
): Stage {
  return async (argv, env, io): Promise<Outcome> => {
    const args = parseStarttlsProxyArgs(protocol, argv);
    const creds = await proxyCredentials(protocol.tool, proxyServerFiles(env));
    for (const k of SSL_NAMES) env.delete(k);
    const relayed = startTlsRelay(io, {
      protocol,
      creds,
      requireTls: requiresTls(args, env),
      timeoutMs: Math.max(args.timeout, 1) * 1000,
      pid: ctx.pid ?? Deno.pid,
    });
    return { next: args.prog, io: relayed };
  };
}

/** The SMTP stage with our own pid in its log lines (as a process). */
export const starttlsProxyStage: Stage = makeStarttlsProxyStage();

/** The stage of the proxy called `tool` (a key of STARTTLS_PROTOCOLS), our pid in its log lines. */
export function starttlsProxyStageFor(tool: string): Stage {
  return makeStarttlsProxyStage({}, STARTTLS_PROTOCOLS[tool]);
}
