/**
 * A STARTTLS proxy's command line (`[ -r ] [ -t timeout ] server ...`) and
 * whether a connection must start TLS before mail or authentication
 * ($REQUIRETLS over -r).
 */
import { getopt, scanUlong } from "../../core/getopt.ts";
import { usage } from "../../core/errors.ts";
import type { StarttlsProtocol } from "./protocol.ts";

/** Seconds the TLS handshake may take (sslserver's default -t). */
export const DEFAULT_HANDSHAKE_SECONDS = 26;

/** The parsed command line. */
export interface StarttlsProxyArgs {
  /** -r: refuse mail and authentication before STARTTLS (unless $REQUIRETLS is "0"). */
  requireTls: boolean;
  /** -t: handshake timeout, seconds. */
  timeout: number;
  /** The server program and its arguments. */
  prog: string[];
}

/** The usage line's text after "tool: usage: " ("smtpd-starttls-proxy [ -r ] ..."). */
export function starttlsProxyUsage(protocol: StarttlsProtocol): string {
  return `${protocol.tool} [ -r ] [ -t timeout ] ${protocol.server} [ arg ... ]`;
}

/** Parses `[ -r ] [ -t timeout ] server [ arg ... ]`; throws the usage ToolError (exit 100). */
export function parseStarttlsProxyArgs(
  protocol: StarttlsProtocol,
  args: string[],
): StarttlsProxyArgs {
  const text = starttlsProxyUsage(protocol);
  const { options, rest } = getopt(protocol.tool, args, "rt:", text);
  let requireTls = false;
  let timeout = DEFAULT_HANDSHAKE_SECONDS;
  for (const { letter, value } of options) {
    if (letter === "r") requireTls = true;
    else timeout = scanUlong(value);
  }
  if (rest.length === 0) throw usage(protocol.tool, text);
  return { requireTls, timeout, prog: rest };
}

/** Whether TLS must come first: $REQUIRETLS when set ("0": no), else -r. */
export function requiresTls(args: StarttlsProxyArgs, env: Map<string, string>): boolean {
  const v = env.get("REQUIRETLS");
  return v === undefined ? args.requireTls : v !== "0";
}
