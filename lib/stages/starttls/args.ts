/**
 * smtpd-starttls-proxy's command line (`[ -r ] [ -t timeout ] smtpd ...`)
 * and whether a connection must start TLS before mail ($REQUIRETLS over -r).
 */
import { getopt, scanUlong } from "../../core/getopt.ts";
import { usage } from "../../core/errors.ts";

/** The tool's name in its messages. */
export const PROG = "smtpd-starttls-proxy";

/** The usage line's text after "smtpd-starttls-proxy: usage: ". */
export const STARTTLS_PROXY_USAGE = "smtpd-starttls-proxy [ -r ] [ -t timeout ] smtpd [ arg ... ]";

/** Seconds the TLS handshake may take (sslserver's default -t). */
export const DEFAULT_HANDSHAKE_SECONDS = 26;

/** The parsed command line. */
export interface StarttlsProxyArgs {
  /** -r: refuse mail before STARTTLS (unless $REQUIRETLS is "0"). */
  requireTls: boolean;
  /** -t: handshake timeout, seconds. */
  timeout: number;
  /** The SMTP server and its arguments. */
  prog: string[];
}

/** Parses `[ -r ] [ -t timeout ] smtpd [ arg ... ]`; throws the usage ToolError (exit 100). */
export function parseStarttlsProxyArgs(args: string[]): StarttlsProxyArgs {
  const { options, rest } = getopt(PROG, args, "rt:", STARTTLS_PROXY_USAGE);
  let requireTls = false;
  let timeout = DEFAULT_HANDSHAKE_SECONDS;
  for (const { letter, value } of options) {
    if (letter === "r") requireTls = true;
    else timeout = scanUlong(value);
  }
  if (rest.length === 0) throw usage(PROG, STARTTLS_PROXY_USAGE);
  return { requireTls, timeout, prog: rest };
}

/** Whether mail is refused before STARTTLS: $REQUIRETLS when set ("0": no), else -r. */
export function requiresTls(args: StarttlsProxyArgs, env: Map<string, string>): boolean {
  const v = env.get("REQUIRETLS");
  return v === undefined ? args.requireTls : v !== "0";
}
