/** who@ [host]: what host's systat service (port 11) says, CRs removed, made printable. */
import { printService } from "../lib/client/clienttools.ts";

/** Runs who@ with args (host); exits 0 whatever happens, as DJB's script. */
export function main(args: string[]): Promise<number> {
  return printService(args[0] ?? "0", "11");
}
