/**
 * The peer-info step: what tcpserver learns about both ends before the
 * rules (TCPLOCALHOST, TCPREMOTEHOST, TCPREMOTEINFO): -l or a PTR lookup of
 * the local address (remembered a minute), -h's PTR lookup of the client
 * (-p: kept only when the name maps back), -r's ident query (-t timeout),
 * all at once. Lookups run in their own fault scope and are shared by
 * concurrent connections asking the same; a missing Deno permission drops
 * the connection naming it, any other failure is "no answer", as in C.
 * Names are as lib/net/dns/ gives them: lowercased and escaped as djbdns.
 */
import { DnsCache } from "../../net/dns/cache.ts";
import { resolveAddrs, resolvePtr } from "../../net/dns/resolver.ts";
import { showAddress } from "../../core/environ.ts";
import { type IdentQuery, remoteInfo } from "../../net/ident.ts";
import { BoundedMap } from "../../core/bounded.ts";
import { CONN_SCOPE, ConnScope, permissionFault } from "../scope.ts";
import type { Endpoint } from "../connection.ts";

/** Which lookups one connection asks for (tcpserver's -l, -h/-H, -p, -r/-R, -t). */
export interface PeerInfoOptions {
  /** -l: TCPLOCALHOST as given; undefined: look it up. */
  localName?: string;
  /** -h: look up TCPREMOTEHOST. */
  remoteHost: boolean;
  /** -p: keep TCPREMOTEHOST only when the name maps back to the address. */
  paranoid: boolean;
  /** -r: ask the client's ident server. */
  remoteInfo: boolean;
  /** -t, in ms. */
  infoTimeoutMs: number;
}

/** What the step found (null: none). */
export interface PeerFacts {
  /** TCPLOCALHOST: -l's name, else the local address's name. */
  localHost: string | null;
  /** TCPREMOTEHOST: the remote address's name (-h). */
  remoteHost: string | null;
  /** TCPREMOTEINFO: the ident answer (-r). */
  info: string | null;
}

/**
 * The ident lookup (lib/net/ident.ts), first checking the net permission for
 * the client's port 113: without it the connection attempt would fail
 * quietly as "no answer"; it is a missing permission (NotCapable).
 */
function identInfo(q: IdentQuery): Promise<string | null> {
  const host = q.remoteIp.includes(":") ? `[${q.remoteIp}]:113` : `${q.remoteIp}:113`;
  let state: string;
  try {
    state = Deno.permissions.querySync({ name: "net", host }).state;
  } catch {
    state = "granted"; // no permission API: let the lookup try
  }
  if (state !== "granted") {
    return Promise.reject(
      new Deno.errors.NotCapable(
        `Requires net access to "${host}", run again with the --allow-net flag`,
      ),
    );
  }
  return remoteInfo(q);
}

/** The peer-info step's lookups and what they remember, one per server. */
export class PeerInfo {
  readonly #dnsTimeoutMs: number;
  readonly #dnsCache = new DnsCache(10000);
  readonly #localNames = new BoundedMap<string, { at: number; name: Promise<string | null> }>(1000);
  readonly #inflight = new Map<string, Promise<unknown>>();

  /** DNS lookups give up after dnsTimeoutMs. */
  constructor(dnsTimeoutMs: number) {
    this.#dnsTimeoutMs = dnsTimeoutMs;
  }

  /**
   * The facts about a connection from local to remote, looked up together;
   * rejects (NotCapable) when a lookup was not permitted.
   */
  async lookup(local: Endpoint, remote: Endpoint, o: PeerInfoOptions): Promise<PeerFacts> {
    const plainRemote = showAddress(remote.ip).ip;
    const plainLocal = showAddress(local.ip).ip;
    const [localHost, remoteHost, info] = await Promise.all([
      o.localName !== undefined ? Promise.resolve(o.localName) : this.#localName(plainLocal),
      o.remoteHost ? this.#remoteHost(plainRemote, o.paranoid) : Promise.resolve(null),
      o.remoteInfo
        ? identInfo({
          remoteIp: plainRemote,
          remotePort: remote.port,
          localIp: plainLocal,
          localPort: local.port,
          timeoutMs: o.infoTimeoutMs,
        })
        : Promise.resolve(null),
    ]);
    return { localHost, remoteHost, info };
  }

  #localName(ip: string): Promise<string | null> {
    const now = Date.now();
    const hit = this.#localNames.get(ip);
    if (hit && now - hit.at < 60_000) return hit.name;
    const name = this.#ptr(ip);
    this.#localNames.set(ip, { at: now, name });
    return name;
  }

  /**
   * Runs a lookup in its own fault scope, shared by concurrent callers with
   * the same key: an error thrown where nothing catches it inside the lookup
   * (node:dgram's bind without net permission) rejects it for every caller,
   * each of which drops its connection, instead of leaving them to wait for
   * the DNS timeout.
   */
  #lookup<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const hit = this.#inflight.get(key);
    if (hit) return hit as Promise<T>;
    const scope = new ConnScope();
    const p = CONN_SCOPE.run(scope, () => Promise.race([fn(), scope.faulted]));
    this.#inflight.set(key, p);
    const forget = () => {
      if (this.#inflight.get(key) === p) this.#inflight.delete(key);
    };
    p.then(forget, forget);
    return p;
  }

  async #ptr(ip: string): Promise<string | null> {
    try {
      const names = await this.#lookup("ptr " + ip, () =>
        resolvePtr(ip, {
          timeoutMs: this.#dnsTimeoutMs,
          cache: this.#dnsCache,
        }));
      // Already as C prints it (lib/net/dns/name.ts toDot): lowercase, escaped, the root as ".".
      return names.length ? names[0] : null;
    } catch (e) {
      const denied = permissionFault(e);
      if (denied) throw denied;
      return null;
    }
  }

  async #remoteHost(ip: string, paranoid: boolean): Promise<string | null> {
    const name = await this.#ptr(ip);
    if (name === null || !paranoid) return name;
    try {
      const family = ip.includes(":") ? 6 : 4;
      const addrs = await this.#lookup(`addr${family} ${name}`, () =>
        resolveAddrs(name, {
          family,
          timeoutMs: this.#dnsTimeoutMs,
          cache: this.#dnsCache,
        }));
      for (const a of addrs) if (showAddress(a).ip === ip) return name;
    } catch (e) {
      const denied = permissionFault(e);
      if (denied) throw denied;
      // not confirmed
    }
    return null;
  }
}
