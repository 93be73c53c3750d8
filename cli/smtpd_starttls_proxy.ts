/** smtpd-starttls-proxy as a process: the stage from lib/stages/starttls_proxy.ts over our stdio. */
import { starttlsProxyStage } from "../lib/stages/starttls_proxy.ts";
import { runStageAsProcess } from "../lib/process/process_stage.ts";

/** Runs smtpd-starttls-proxy with args (without argv[0]); resolves to the program's status. */
export function main(args: string[]): Promise<number> {
  return runStageAsProcess("smtpd-starttls-proxy", starttlsProxyStage, args);
}
