/** imapd-starttls-proxy as a process: the IMAP row of lib/stages/starttls_proxy.ts over our stdio. */
import { starttlsProxyStageFor } from "../lib/stages/starttls_proxy.ts";
import { runStageAsProcess } from "../lib/process/process_stage.ts";

const TOOL = "imapd-starttls-proxy";

/** Runs imapd-starttls-proxy with args (without argv[0]); resolves to the program's status. */
export function main(args: string[]): Promise<number> {
  return runStageAsProcess(TOOL, starttlsProxyStageFor(TOOL), args);
}
