/**
 * mconnect [host [port]]: connects to host:port (default 25), sends stdin with
 * a CR added to each line, prints what the server sends until it closes.
 */
import { mconnect } from "../lib/client/clienttools.ts";

/**
 * Runs mconnect with args (host, port); resolves 0, or tcpclient's exit status when it cannot
 * connect.
 */
export function main(args: string[]): Promise<number> {
  return mconnect(args[0] ?? "0", args[1] ?? "25");
}
