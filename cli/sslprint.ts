/**
 * sslprint (ucspi-ssl): an sslserver whose program prints the connection's
 * environment to the client, for checking a setup and for ucspi-ssl's
 * tests. Same options and operands as sslserver but no program: each
 * client gets, after the banner (-B), one "\nNAME=value" per variable of
 * ucspi-ssl's list in its order ("unset" for an unset one) and a final
 * newline. Values are the bytes the program would get; SSL_*_CERT ends
 * with a newline of its own, so an empty line follows it, as in ucspi-ssl.
 */
import { usage } from "../lib/core/errors.ts";
import { getopt } from "../lib/core/getopt.ts";
import { SSL_SESSION_VARIABLES, sslSideVariables } from "../lib/tls/ssl_env.ts";
import { main as sslserver } from "./sslserver.ts";

const PROG = "sslprint";
const SPEC = "1346dDvVqQhHrRUXx:t:T:u:g:l:b:B:c:pPoOI:EeSsw:nNzZmC:LW";
const USAGE = "sslprint [ -1346UXpPhHrRoOdDqQvVIeEsSnNmzZ ] [ -c limit ] [ -x rules.cdb ] " +
  "[ -B banner ] [ -g gid ] [ -u uid ] [ -b backlog ] [ -l localname ] [ -t timeout ] " +
  "[ -I interface ] [ -T ssltimeout ] [ -w progtimeout ] host port";

/** The variables sslprint prints, in ucspi-ssl's order. */
export const PRINTED = [
  "PROTO",
  "SSLLOCALHOST",
  "SSLLOCALIP",
  "SSLLOCALPORT",
  "SSLREMOTEHOST",
  "SSLREMOTEIP",
  "SSLREMOTEPORT",
  "SSLREMOTEINFO",
  "TCPLOCALHOST",
  "TCPLOCALIP",
  "TCPLOCALPORT",
  "TCPREMOTEHOST",
  "TCPREMOTEIP",
  "TCPREMOTEPORT",
  "TCPREMOTEINFO",
  "TCP6REMOTEHOST",
  "TCP6REMOTEIP",
  "TCP6REMOTEPORT",
  ...SSL_SESSION_VARIABLES,
  ...sslSideVariables("SERVER"),
  ...sslSideVariables("CLIENT"),
  "SSL_CLIENT_CERT_CHAIN_0",
  "SSL_CLIENT_CERT_CHAIN_1",
];

/**
 * The program each connection runs: /bin/sh printing PRINTED. A program,
 * not in-process code, so it sees exactly the environment any program
 * would (after the rules), through sslserver's own pipeline.
 */
export function printerArgv(): string[] {
  const lines = PRINTED.map((n) => `printf '\\n${n}=%s' "\${${n}-unset}"`);
  return ["/bin/sh", "-c", lines.join("\n") + "\nprintf '\\n'\n"];
}

/**
 * Runs sslprint with args (sslserver's options, host, port); resolves 0 after SIGTERM, as
 * sslserver.
 */
export function main(args: string[]): Promise<number> {
  const { rest } = getopt(PROG, args, SPEC, USAGE);
  if (rest.length < 2) throw usage(PROG, USAGE);
  // Everything after host and port is ignored, as ucspi-ssl's sslprint does.
  const options = args.slice(0, args.length - rest.length);
  if (options[options.length - 1] === "--") options.pop();
  return sslserver([...options, "--", rest[0], rest[1], ...printerArgv()]);
}
