/** who@ [host]: what host's systat service (port 11) says, CRs removed, made printable. */
import { printService } from "../lib/clienttools.ts";

export function main(args: string[]): Promise<number> {
  return printService(args[0] ?? "0", "11");
}
