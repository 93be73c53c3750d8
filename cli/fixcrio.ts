/** fixcrio as a process: the stage from lib/fixcrio.ts over our stdio. */
import { fixcrioStage } from "../lib/fixcrio.ts";
import { runStageAsProcess } from "../lib/process_stage.ts";

/** Runs fixcrio with args (without argv[0]); resolves to the program's status. */
export function main(args: string[]): Promise<number> {
  return runStageAsProcess("fixcrio", fixcrioStage, args);
}
