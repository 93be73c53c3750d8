/**
 * The tools this binary provides, by the name it is called as. Each module
 * exports `main(args: string[]): Promise<number>` (args without argv[0]).
 * Imports are literal so `deno compile` bundles every tool.
 */

/** A tool's entry point: its arguments (without argv[0]) to its exit status. */
export type ToolMain = (args: string[]) => Promise<number>;

/** Each tool's module, loaded on first use, by the name it is called as. */
export const TOOLS: Record<string, () => Promise<{ main: ToolMain }>> = {
  addcr: () => import("./addcr.ts"),
  argv0: () => import("./argv0.ts"),
  delcr: () => import("./delcr.ts"),
  fixcrio: () => import("./fixcrio.ts"),
  rblsmtpd: () => import("./rblsmtpd.ts"),
  recordio: () => import("./recordio.ts"),
  tcpclient: () => import("./tcpclient.ts"),
  "date@": () => import("./date_at.ts"),
  "finger@": () => import("./finger_at.ts"),
  "http@": () => import("./http_at.ts"),
  "https@": () => import("./https_at.ts"),
  "mconnect-io": () => import("./mconnect_io.ts"),
  "who@": () => import("./who_at.ts"),
  mconnect: () => import("./mconnect.ts"),
  tcpcat: () => import("./tcpcat.ts"),
  tcprules: () => import("./tcprules.ts"),
  tcpserver: () => import("./tcpserver.ts"),
  sslserver: () => import("./sslserver.ts"),
  sslclient: () => import("./sslclient.ts"),
  sslprint: () => import("./sslprint.ts"),
  "smtpd-starttls-proxy": () => import("./smtpd_starttls_proxy.ts"),
  "pop3d-starttls-proxy": () => import("./pop3d_starttls_proxy.ts"),
  "imapd-starttls-proxy": () => import("./imapd_starttls_proxy.ts"),
  tcprulescheck: () => import("./tcprulescheck.ts"),
  ucspitlsd: () => import("./ucspitlsd.ts"),
};

/** The tool names in a stable order. */
export function toolNames(): string[] {
  return Object.keys(TOOLS).sort();
}
