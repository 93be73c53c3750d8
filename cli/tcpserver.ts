/**
 * tcpserver: accepts TCP connections and runs a program for each, with the
 * connection on its stdin/stdout and the UCSPI-TCP environment. Options as
 * DJB's tcpserver 0.88, plus -4/-6/-I/-j (ucspi-tcp IPv6 patch), -C n[:msg]
 * (per-IP limit, as ipsvd's tcpsvd), -L (over-limit message mode) and -W
 * (a PROXY protocol header starts each connection: lib/net/proxy/step.ts).
 */
import { fatal, usage } from "../lib/core/errors.ts";
import { getopt, scanUlong } from "../lib/core/getopt.ts";
import { idOf } from "../lib/process/ids.ts";
import { stderrLine } from "../lib/core/log.ts";
import { runServer, type TcpserverArgs } from "../lib/server/run.ts";
import { proxyPolicyFromEnv, proxyPrepareHook } from "../lib/net/proxy/step.ts";

export { DEFAULT_DRAIN_SECONDS, runServer, type TcpserverArgs } from "../lib/server/run.ts";

const PROG = "tcpserver";
/** DJB's usage line with our additions (-46jLW, -I, -C) where DJB's has its options. */
export const USAGE =
  "tcpserver [ -1UXpPhHrRoOdDqQv46jLW ] [ -c limit ] [ -x rules.cdb ] [ -B banner ] [ -g gid ] [ -u uid ] [ -b backlog ] [ -l localname ] [ -t timeout ] [ -I interface ] [ -C n[:message] ] host port program";
const SPEC = "dDvqQhHrR1UXx:t:u:g:l:b:B:c:pPoO46jI:C:LW";

/** The -L message when neither $DIEMSG nor anything else says otherwise. */
export const BUSY_MESSAGE = "421 service busy, try again later";

/**
 * The id a -u/-g value names: a number, or a user/group name looked up now.
 * C reads a name as 0 (root, silently); we refuse it instead.
 */
function idArg(prog: string, value: string, kind: "user" | "group"): number {
  const id = idOf(value, kind);
  if (id === null) {
    const file = kind === "user" ? "/etc/passwd" : "/etc/group";
    throw fatal(prog, `unknown ${kind} ${value}: neither a number nor a name in ${file}`);
  }
  return id;
}

/**
 * Parses the options tcpserver and sslserver share, with `defaults` for the
 * server settings. `own(letter, value)` sees every option first and returns
 * true for the ones it handled itself (sslserver's additions). Throws the
 * usage ToolError.
 */
export function parseServerArgs(
  prog: string,
  args: string[],
  spec: string,
  usageText: string,
  env: Map<string, string>,
  defaults: Partial<TcpserverArgs["server"]>,
  own: (letter: string, value: string) => boolean = () => false,
): TcpserverArgs {
  const { options, rest } = getopt(prog, args, spec, usageText);
  const s: TcpserverArgs["server"] = {
    limit: 40,
    argv: [],
    verbosity: 1,
    noDelay: false,
    remoteHost: true,
    paranoid: false,
    remoteInfo: true,
    infoTimeout: 26,
    banner: "",
    rules: null,
    allowNoRules: false,
    overLimitMessage: null,
    ...defaults,
  };
  let flag1 = false;
  let uid = 0;
  let gid = 0;
  let family: 0 | 4 | 6 = 0;
  let iface: string | undefined;
  let backlog: number | undefined;
  let overLimit = false;
  for (const { letter, value } of options) {
    if (own(letter, value)) continue;
    switch (letter) {
      case "b":
        backlog = scanUlong(value);
        break;
      case "c":
        s.limit = scanUlong(value);
        break;
      case "X":
        s.allowNoRules = true;
        break;
      case "x":
        s.rules = value;
        break;
      case "B":
        s.banner = value;
        break;
      case "d":
        s.noDelay = false;
        break;
      case "D":
        s.noDelay = true;
        break;
      case "v":
        s.verbosity = 2;
        break;
      case "q":
        s.verbosity = 0;
        break;
      case "Q":
        s.verbosity = 1;
        break;
      case "P":
        s.paranoid = false;
        break;
      case "p":
        s.paranoid = true;
        break;
      case "H":
        s.remoteHost = false;
        break;
      case "h":
        s.remoteHost = true;
        break;
      case "R":
        s.remoteInfo = false;
        break;
      case "r":
        s.remoteInfo = true;
        break;
      case "t":
        s.infoTimeout = scanUlong(value);
        break;
      case "U": {
        const u = env.get("UID");
        if (u !== undefined) uid = scanUlong(u);
        const g = env.get("GID");
        if (g !== undefined) gid = scanUlong(g);
        break;
      }
      case "u":
        uid = idArg(prog, value, "user");
        break;
      case "g":
        gid = idArg(prog, value, "group");
        break;
      case "1":
        flag1 = true;
        break;
      case "l":
        s.localName = value;
        break;
      case "4":
        family = 4;
        s.forceV6 = false;
        break;
      case "6":
        family = 6;
        s.forceV6 = true;
        break;
      case "I":
        iface = value;
        break;
      case "C": {
        const colon = value.indexOf(":");
        s.maxConnIp = scanUlong(colon >= 0 ? value.slice(0, colon) : value);
        if (colon >= 0) s.maxConnIpMessage = value.slice(colon + 1);
        break;
      }
      case "L":
        overLimit = true;
        break;
        // accepted without effect: -o, -O (IP options), -j, anything `own` ignores
    }
  }
  if (overLimit) s.overLimitMessage = env.get("DIEMSG") || BUSY_MESSAGE;
  const [host, port, ...argv] = rest;
  if (host === undefined || port === undefined || argv.length === 0) {
    throw usage(prog, usageText);
  }
  s.argv = argv;
  return { server: s, host, port, flag1, uid, gid, family, iface, backlog };
}

/** Parses tcpserver's arguments (throws the usage ToolError). */
export function parseArgs(args: string[], env: Map<string, string>): TcpserverArgs {
  let proxy = false;
  const a = parseServerArgs(PROG, args, SPEC, USAGE, env, {}, (letter) => {
    if (letter !== "W") return false;
    proxy = true;
    return true;
  });
  if (proxy) {
    const quiet = a.server.verbosity === 0;
    try {
      a.server.steps = [
        proxyPrepareHook(proxyPolicyFromEnv(PROG, env, (line) => quiet || stderrLine(line))),
      ];
    } catch (e) {
      throw fatal(PROG, `unable to parse $PROXY_TRUSTED: ${(e as Error).message}`);
    }
  }
  return a;
}

/** Runs tcpserver; resolves 0 after SIGTERM. */
export async function main(args: string[]): Promise<number> {
  const baseEnv = new Map(Object.entries(Deno.env.toObject()));
  const a = parseArgs(args, baseEnv);
  return await runServer(PROG, a, baseEnv, { dropProcessIds: true });
}
