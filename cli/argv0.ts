/** argv0 as a process: the stage from lib/stages/argv0.ts over our stdio. */
import { argv0Stage } from "../lib/stages/argv0.ts";
import { runStageAsProcess } from "../lib/process/process_stage.ts";

/** Runs argv0 with args (without argv[0]); resolves to the program's status. */
export function main(args: string[]): Promise<number> {
  return runStageAsProcess("argv0", argv0Stage, args);
}
