/** fixcrio as a process: the stage from lib/stages/fixcrio.ts over our stdio. */
import { fixcrioStage } from "../lib/stages/fixcrio.ts";
import { runStageAsProcess } from "../lib/process/process_stage.ts";

/** Runs fixcrio with args (without argv[0]); resolves to the program's status. */
export function main(args: string[]): Promise<number> {
  return runStageAsProcess("fixcrio", fixcrioStage, args);
}
