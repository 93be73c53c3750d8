/**
 * The client side of UCSPI-TCP, as DJB's tcpclient does it: find the server's
 * addresses, connect (each address in turn, within -T x+y), build the
 * environment (PROTO, TCPLOCAL*, TCPREMOTE*), and run a program with the
 * network on descriptors 6 (read) and 7 (write).
 *
 * The steps are separate modules so other clients reuse them: options.ts
 * (the command line), lib/net/dns/host.ts (the host's addresses),
 * connect.ts (connecting), client_env.ts (the environment), run.ts (the
 * program on 6 and 7). The client tools (who@, mconnect, ...) connect and
 * then talk over the socket in-process; sslclient inserts a TLS step
 * through `ClientHooks.secure`, which turns the connected socket into the
 * stream the program talks over.
 */
import type net from "node:net";
import process from "node:process";
import { Duplex } from "node:stream";
import { fatalSys } from "../core/errors.ts";
import { stderrLine } from "../core/log.ts";
import { type Ended, statusOf } from "../process/status.ts";
import { setClientEnv } from "./client_env.ts";
import { connectClient } from "./connect.ts";
import type { ClientOptions } from "./options.ts";
import { runWithNetwork, type SecuredNetwork } from "./run.ts";

/** What sslclient (or another client) adds between connecting and running the program. */
export interface ClientHooks {
  /**
   * Turns the connected socket into the stream the program talks over (a TLS
   * handshake, say), or a SecuredNetwork (the stream and how to close it),
   * and may add to env. Throw a ToolError to give up.
   */
  secure?: (
    sock: net.Socket,
    env: Map<string, string>,
  ) => Promise<Duplex | SecuredNetwork>;
}

/**
 * tcpclient from parsed operands: connect, set the environment, run argv
 * with the network on 6 and 7; resolves the program's exit status. Errors
 * are ToolErrors with DJB's texts (an empty message: say nothing more).
 */
export async function tcpclient(
  prog: string,
  opts: ClientOptions,
  host: string,
  port: number,
  argv: string[],
  hooks: ClientHooks = {},
): Promise<number> {
  const warn = (line: string) => {
    if (opts.verbosity > 0) stderrLine(line);
  };
  const { sock, ends } = await connectClient(prog, host, port, opts, warn);
  const env = new Map(Object.entries(process.env) as [string, string][]);
  try {
    if (opts.verbosity >= 2) {
      warn(`${prog}: connected to ${ends.remoteIp} port ${ends.remotePort}`);
    }
    await setClientEnv(env, ends, opts);
    const secured = hooks.secure ? await hooks.secure(sock, env) : sock;
    const { stream: network, close } = secured instanceof Duplex
      ? { stream: secured, close: undefined }
      : secured;
    let ended: Ended;
    try {
      ended = await runWithNetwork(argv, env, network, close);
    } catch (e) {
      throw fatalSys(prog, `unable to run ${argv[0]}`, e);
    }
    return statusOf(ended);
  } finally {
    sock.destroy();
  }
}
