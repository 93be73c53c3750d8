/**
 * tcpclient [ -46hHrRdDqQv ] [ -i localip ] [ -p localport ] [ -T timeoutconn ]
 *   [ -l localname ] [ -t timeoutinfo ] host port program [arg ...]
 *
 * Connects to host:port and runs program with the network on descriptors 6
 * (read) and 7 (write), as DJB's tcpclient does.
 */
import { ToolError, usage } from "../lib/core/errors.ts";
import { getopt } from "../lib/core/getopt.ts";
import {
  applyClientOption,
  CLIENT_OPTSPEC,
  CLIENT_USAGE,
  defaultClientOptions,
  remotePort,
} from "../lib/client/options.ts";
import { tcpclient } from "../lib/client/tcpclient.ts";

const PROG = "tcpclient";

/**
 * Runs tcpclient with args (without argv[0]); resolves to the program's exit status, or DJB's
 * 100/111 on a failure.
 */
export async function main(args: string[]): Promise<number> {
  const opts = defaultClientOptions();
  const parsed = getopt(PROG, args, CLIENT_OPTSPEC, CLIENT_USAGE);
  for (const o of parsed.options) applyClientOption(opts, o, PROG, CLIENT_USAGE);
  try {
    const [host, port, ...argv] = parsed.rest;
    if (host === undefined || port === undefined) throw usage(PROG, CLIENT_USAGE);
    const portNumber = remotePort(PROG, port);
    if (argv.length === 0) throw usage(PROG, CLIENT_USAGE);
    return await tcpclient(PROG, opts, host, portNumber, argv);
  } catch (e) {
    // -q: no messages at all, only the exit code. An empty message: already said.
    if (e instanceof ToolError && (opts.verbosity === 0 || e.message === "")) return e.exitCode;
    throw e;
  }
}
