/**
 * The names of the tools that run in-process inside tcpserver (see
 * chain.ts), in a module of their own: the server's listener looks at them
 * at start-up without loading the stages.
 */

/** The tools that run in-process, by name. */
export const CHAINABLE = [
  "argv0",
  "fixcrio",
  "imapd-starttls-proxy",
  "pop3d-starttls-proxy",
  "rblsmtpd",
  "recordio",
  "smtpd-starttls-proxy",
  "ucspitlsd",
] as const;

/** True when the basename of `name` is one of CHAINABLE (whatever PATH finds for it). */
export function mayChain(name: string): boolean {
  return (CHAINABLE as readonly string[]).includes(name.slice(name.lastIndexOf("/") + 1));
}
