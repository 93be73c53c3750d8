/** rblsmtpd as a process: the stage from lib/stages/rblsmtpd.ts over our stdio. */
import { rblsmtpdStage } from "../lib/stages/rblsmtpd.ts";
import { runStageAsProcess } from "../lib/process/process_stage.ts";

/** Runs rblsmtpd with args (without argv[0]); resolves to the program's status. */
export function main(args: string[]): Promise<number> {
  return runStageAsProcess("rblsmtpd", rblsmtpdStage, args);
}
