/**
 * The PROXY step of tcpserver -W and sslserver -W: who must send a header
 * ($PROXY_TRUSTED, $PROXY_TIMEOUT), reading it, and what the connection goes
 * on with (the announced endpoints, the bytes after the header first), or
 * the warning line and a dropped connection. The bytes are decoded in
 * header.ts, read in read.ts.
 */

import { formatUnmapped } from "../ip.ts";
import type { Io } from "../../stages/stage.ts";
import type { Endpoint } from "../../server/connection.ts";
import type { PrepareContext, PrepareHook } from "../../server/steps/step.ts";
import { PrefixError } from "../../core/prefix.ts";
import { INCOMPLETE, ipBytes16, parseProxyHeader, type ProxyHeader, V2_FIXED } from "./header.ts";
import { prependBytes, type ProxyRead, readProxyHeader } from "./read.ts";
import { type Cidr, isTrusted, parseTrusted } from "./trusted.ts";

/** How a server treats PROXY headers (tcpserver -W, sslserver -W). */
export interface ProxyPolicy {
  /** The program name for log lines. */
  prog: string;
  /**
   * Senders that must send a header ($PROXY_TRUSTED); other clients are
   * taken as direct clients, with their own addresses. null: every
   * connection must start with a header.
   */
  trusted: Cidr[] | null;
  /** Time to wait for a complete header, in milliseconds ($PROXY_TIMEOUT). */
  timeoutMs: number;
  /** Writes a warning line (the caller drops it under -q). */
  warn: (line: string) => void;
}

/** A connection's streams and endpoints, before and after the header. */
export interface ProxyStepInput {
  /** The connection's streams. */
  io: Io;
  /** Our end of the socket (or, after the header, the announced destination). */
  local: Endpoint;
  /** The peer's end (or, after the header, the announced source). */
  remote: Endpoint;
  /** Takes the header off the socket itself (the native path; see PrepareContext). */
  takePrefix?: PrepareContext["takePrefix"];
}

/** What the connection goes on with after the PROXY step. */
export interface ProxyStepResult {
  /** New streams (the bytes after the header first); absent: unchanged (the socket itself). */
  io?: Io;
  /** The announced destination, or the socket's own end. */
  local: Endpoint;
  /** The announced source, or the peer's own end. */
  remote: Endpoint;
}

/**
 * Reads the PROXY header of a connection as the policy says. Resolves the
 * streams to go on with (the bytes after the header first; none when the
 * header came off the socket itself or none was due) and the original
 * endpoints, or null after logging why the connection must be dropped.
 * `c.io` is read only when the header is read from the stream.
 */
export async function proxyStep(
  c: ProxyStepInput,
  policy: ProxyPolicy,
): Promise<ProxyStepResult | null> {
  if (policy.trusted && !isTrusted(c.remote.ip, policy.trusted)) {
    return { local: c.local, remote: c.remote };
  }
  if (c.takePrefix) return await proxyFromSocket(c, c.takePrefix, policy);
  const reader = c.io.input.getReader();
  let got: ProxyRead;
  try {
    got = await readProxyHeader(reader, { timeoutMs: policy.timeoutMs });
  } catch (e) {
    policy.warn(
      `${policy.prog}: warning: dropping connection, unable to read PROXY header from ${
        plainIp(c.remote.ip)
      }: ${(e as Error).message}`,
    );
    // The connection is dropped: a cancel that fails has nothing left to clean up.
    reader.cancel().catch(() => {});
    return null;
  }
  const io: Io = { ...c.io, input: prependBytes(got.rest, reader) };
  const e = got.header.endpoints;
  if (!e) return { io, local: c.local, remote: c.remote };
  return {
    io,
    local: { ip: e.destIp, port: e.destPort },
    remote: { ip: e.sourceIp, port: e.sourcePort },
  };
}

/**
 * The native path's PROXY step: the header taken off the socket itself
 * (MSG_PEEK, then exactly its bytes), so the socket stays pristine and the
 * program still gets it as fd 0 and 1. Logs as the stream reader does.
 */
async function proxyFromSocket(
  c: ProxyStepInput,
  takePrefix: NonNullable<ProxyStepInput["takePrefix"]>,
  policy: ProxyPolicy,
): Promise<ProxyStepResult | null> {
  let header: ProxyHeader;
  try {
    const bytes = await takePrefix(
      (buf) => {
        const h = parseProxyHeader(buf);
        return h === INCOMPLETE ? null : h.length;
      },
      V2_FIXED + 0xffff,
      policy.timeoutMs,
    );
    header = parseProxyHeader(bytes) as ProxyHeader;
  } catch (e) {
    const why = !(e instanceof PrefixError)
      ? (e as Error).message
      : e.kind === "timeout"
      ? "timed out reading PROXY header"
      : e.seen > 0
      ? "connection closed inside PROXY header"
      : "no PROXY header";
    policy.warn(
      `${policy.prog}: warning: dropping connection, unable to read PROXY header from ${
        plainIp(c.remote.ip)
      }: ${why}`,
    );
    return null;
  }
  const e = header.endpoints;
  if (!e) return { local: c.local, remote: c.remote };
  return {
    local: { ip: e.destIp, port: e.destPort },
    remote: { ip: e.sourceIp, port: e.sourcePort },
  };
}

function plainIp(ip: string): string {
  const b = ipBytes16(ip);
  if (!b) return ip;
  return formatUnmapped(b);
}

/**
 * The PROXY step (tcpserver -W, and sslserver's before TLS): off the socket
 * itself on the native path, else from the connection's stream.
 */
export function proxyPrepareHook(policy: ProxyPolicy): PrepareHook {
  return async (_conn, ctx) => {
    const r = await proxyStep(ctx, policy);
    if (!r) return null;
    return { io: r.io, local: r.local, remote: r.remote };
  };
}

/**
 * The policy from the environment: $PROXY_TRUSTED (addresses and CIDR
 * prefixes allowed, and required, to send a header; unset: every client
 * must) and $PROXY_TIMEOUT (seconds, default 10). Throws Error on a bad list.
 */
export function proxyPolicyFromEnv(
  prog: string,
  env: Map<string, string>,
  warn: (line: string) => void,
): ProxyPolicy {
  const list = env.get("PROXY_TRUSTED");
  const t = env.get("PROXY_TIMEOUT");
  const seconds = t !== undefined && /^[0-9]+$/.test(t) && Number(t) > 0 ? Number(t) : 10;
  return {
    prog,
    trusted: list === undefined ? null : parseTrusted(list),
    timeoutMs: seconds * 1000,
    warn,
  };
}
