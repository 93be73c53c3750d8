/**
 * http@ [host [page [port]]]: GET /page from host:port (default 80) over HTTP/1.0, print the body.
 */
import { httpAt } from "../lib/client/clienttools.ts";

/** Runs http@ with args (host, page, port); exits 0 whatever happens, as DJB's script. */
export function main(args: string[]): Promise<number> {
  return httpAt(args[0] ?? "0", args[1] ?? "", args[2] ?? "80");
}
