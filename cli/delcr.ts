/** delcr: removes the CR before each LF, stdin to stdout. No arguments are looked at. */
import { delcrConverter } from "../lib/stages/crlf.ts";
import { filterStdio } from "../lib/process/process_stage.ts";

/** Runs delcr; exits 0, or 111 (silently, as DJB's) on a read or write error. */
export function main(_args: string[]): Promise<number> {
  return filterStdio(delcrConverter());
}
