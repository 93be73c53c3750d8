/** date@ [host]: what host's daytime service (port 13) says, CRs removed, made printable. */
import { printService } from "../lib/client/clienttools.ts";

/** Runs date@ with args (host); exits 0 whatever happens, as DJB's script (its status is cat's). */
export function main(args: string[]): Promise<number> {
  return printService(args[0] ?? "0", "13");
}
