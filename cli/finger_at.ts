/** finger@ [host [user]]: asks host's finger service (port 79) about user, prints the answer. */
import { printService } from "../lib/client/clienttools.ts";

/** Runs finger@ with args (host, user); exits 0 whatever happens, as DJB's script. */
export function main(args: string[]): Promise<number> {
  return printService(args[0] ?? "0", "79", new TextEncoder().encode(`${args[1] ?? ""}\n`));
}
