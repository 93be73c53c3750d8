/**
 * What tcpserver's command line decides for the server (cli/tcpserver.ts
 * parses it, sslserver adds its steps): one record, read by the listener,
 * the accept gate and the pipeline's steps.
 */
import type { PrepareHook } from "./steps/step.ts";

/** Everything tcpserver's options decide. */
export interface ServerOptions {
  /** The program name in log lines (default "tcpserver"). */
  prog?: string;
  /** Address to listen on ("::" = dual stack, "0.0.0.0", a literal address). */
  hostname: string;
  /** Port to listen on (0: any; -1 prints the one chosen). */
  port: number;
  /** SO_REUSEPORT on the listening socket (several servers on one port). */
  reusePort?: boolean;
  /** -b: the listen backlog (native path only; Deno.listen's is fixed at 511). */
  backlog?: number;
  /** -c: connections handled at once (default 40). */
  limit: number;
  /**
   * -L: at the -c limit, accept each excess connection, write this message
   * and CRLF, and close it. Null: stop accepting until a connection ends.
   */
  overLimitMessage?: string | null;
  /** -x: the rules cdb, or null. */
  rules?: string | null;
  /** -X: allow when the rules cdb does not exist. */
  allowNoRules?: boolean;
  /** -B: written to the client first ("" = none). */
  banner?: string;
  /** -D: TCP_NODELAY (true), -d: Nagle (false, the default). */
  noDelay?: boolean;
  /** -h (default) / -H: look up TCPREMOTEHOST. */
  remoteHost?: boolean;
  /** -p: keep TCPREMOTEHOST only when the name maps back to the address. */
  paranoid?: boolean;
  /** -l: TCPLOCALHOST without a DNS lookup; undefined = look it up. */
  localName?: string;
  /** -r (default) / -R: ask the client's ident server for TCPREMOTEINFO. */
  remoteInfo?: boolean;
  /** -t: ident timeout in seconds (default 26). */
  infoTimeout?: number;
  /** DNS lookups give up after this many ms (default 10000). */
  dnsTimeoutMs?: number;
  /** 0 (-q), 1 (-Q, default), 2 (-v). */
  verbosity?: number;
  /** -6: report IPv4 clients as IPv4-mapped IPv6 with PROTO=TCP6. */
  forceV6?: boolean;
  /** -C n[:message]: the default MAXCONNIP and its message. */
  maxConnIp?: number;
  /** -C's message (after the colon), shown to a client refused by MAXCONNIP. */
  maxConnIpMessage?: string;
  /** The program and its arguments. */
  argv: string[];
  /** tcpserver's own environment: every connection's starts from a copy. */
  baseEnv: Map<string, string>;
  /** Where log lines go (default: stderr, one write each). */
  log?: (line: string) => void;
  /** The steps before the banner, in order (lib/server/steps/step.ts): PROXY, TLS. */
  steps?: PrepareHook[];
  /**
   * Run once after listening, before the first accept (clients wait in the
   * backlog): sslserver's in-memory TLS session (lib/tls/warm_up.ts), so
   * the first client does not pay the process's first-use costs. Its
   * failure is ignored.
   */
  beforeAccept?: () => Promise<unknown>;
  /**
   * The native path (lib/native/native.ts: libc sockets, the program gets the
   * socket itself; -W's PROXY header is taken off with MSG_PEEK). Default:
   * used when available; false: never (sslserver: its TLS runs over Deno's
   * sockets).
   */
  native?: boolean;
}
