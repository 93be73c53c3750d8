/** ucspitlsd as a process: the stage from lib/tls/ucspitlsd.ts over our stdio. */
import { makeUcspitlsdStage } from "../lib/tls/ucspitlsd.ts";
import { runStageAsProcess } from "../lib/process/process_stage.ts";

/** Runs ucspitlsd with args (without argv[0]); resolves to the program's status. */
export function main(args: string[]): Promise<number> {
  return runStageAsProcess("ucspitlsd", makeUcspitlsdStage({ ownProcess: true }), args);
}
