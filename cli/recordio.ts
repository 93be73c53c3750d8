/** recordio as a process: the stage from lib/stages/recordio.ts over our stdio. */
import { recordioStage } from "../lib/stages/recordio.ts";
import { runStageAsProcess } from "../lib/process/process_stage.ts";

/** Runs recordio with args (without argv[0]); resolves to the program's status. */
export function main(args: string[]): Promise<number> {
  return runStageAsProcess("recordio", recordioStage, args);
}
