/**
 * The UCSPI-TCP environment of a client connection (PROTO, TCPLOCAL*,
 * TCPREMOTE*), with the DNS names and the ident answer looked up together.
 */
import { applyEnviron, tcpEnviron } from "../core/environ.ts";
import { DnsTemporaryError } from "../net/dns/errors.ts";
import { resolvePtr } from "../net/dns/resolver.ts";
import { remoteInfo } from "../net/ident.ts";
import type { Endpoints } from "./connect.ts";
import type { ClientOptions } from "./options.ts";

/** The first name DNS gives for ip ("" when none), or undefined when DNS fails for now. */
async function nameOf(ip: string): Promise<string | undefined> {
  try {
    const names = await resolvePtr(ip, { timeoutMs: 30000 });
    return names.length ? names[0].replace(/\.$/, "") : "";
  } catch (e) {
    if (e instanceof DnsTemporaryError || e instanceof TypeError) return undefined;
    throw e;
  }
}

/**
 * Sets (or removes) the UCSPI-TCP variables in env as tcpclient does, through
 * lib/environ (shared with tcpserver): PROTO (TCP, or TCP6 and the TCP6*
 * names for an IPv6 connection), TCPLOCALPORT, TCPLOCALIP, TCPLOCALHOST (-l,
 * else the local address's DNS name: "" when it has none, removed when DNS
 * fails), TCPREMOTEPORT, TCPREMOTEIP, TCPREMOTEHOST (-h as TCPLOCALHOST; -H
 * removes it), TCPREMOTEINFO (-r: the server's ident answer within -t
 * seconds, lib/ident; -R removes it).
 */
export async function setClientEnv(
  env: Map<string, string>,
  ends: Endpoints,
  opts: ClientOptions,
): Promise<void> {
  const [localHost, remoteHost, info] = await Promise.all([
    opts.localName !== undefined ? opts.localName : nameOf(ends.localIp),
    opts.remoteHost ? nameOf(ends.remoteIp) : undefined,
    opts.remoteInfo
      ? remoteInfo({
        remoteIp: ends.remoteIp,
        remotePort: ends.remotePort,
        localIp: ends.localIp,
        localPort: ends.localPort,
        timeoutMs: opts.infoTimeout * 1000,
      })
      : null,
  ]);
  applyEnviron(
    env,
    tcpEnviron({
      localIp: ends.localIp,
      localPort: ends.localPort,
      localHost,
      remoteIp: ends.remoteIp,
      remotePort: ends.remotePort,
      remoteHost,
      remoteInfo: info,
    }),
  );
}
