/** tcpcat [host [port]]: prints everything host:port (default 17) sends, unchanged. */
import { tcpcat } from "../lib/client/clienttools.ts";

/**
 * Runs tcpcat with args (host, port); resolves 0, or tcpclient's exit status when it cannot
 * connect.
 */
export function main(args: string[]): Promise<number> {
  return tcpcat(args[0] ?? "0", args[1] ?? "17");
}
