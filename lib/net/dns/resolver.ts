/**
 * The DNS lookups callers use: the records of one type for a name (cached
 * for their TTL when given a DnsCache, concurrent askers sharing one query),
 * and on top of it PTR names, A addresses, TXT strings and the addresses of a
 * host. A permanent "no such record" (NXDOMAIN, no data) is an empty result;
 * a temporary failure throws DnsTemporaryError. Only records that passed
 * answersQuery and relevantRecords (wire.ts) are returned or cached.
 *
 * The stub client's other parts, each imported from where it is: errors.ts
 * (the failures), name.ts (names, no I/O), wire.ts (packets, no I/O), transport.ts (which
 * servers, UDP/TCP to the server asked), cache.ts (answers for their TTL,
 * bounded).
 */
import { parseIp4, parseIp6Loose } from "../ip.ts";
import type { Answer, DnsCache } from "./cache.ts";
import { query, type QueryOptions } from "./transport.ts";
import { fromDot, ptrName, toDot } from "./name.ts";
import { recordValue, relevantRecords, TYPE } from "./wire.ts";

/** Options every lookup takes. */
export interface LookupOptions extends QueryOptions {
  /** A cache to answer from and fill (answers kept for their TTL). */
  cache?: DnsCache;
}

const NEGATIVE_TTL_CAP = 300;

/**
 * The records of one type for name: [] for NXDOMAIN or no data. Throws
 * DnsTemporaryError on a temporary failure (DnsProtocolError when name
 * cannot be sent or the answer is malformed). Only answers that passed
 * answersQuery and relevantRecords are used or cached.
 */
export function lookup(name: string, type: number, opts: LookupOptions = {}): Promise<Answer> {
  let qname: Uint8Array;
  try {
    qname = fromDot(name);
  } catch (e) {
    return Promise.reject(e);
  }
  const cache = opts.cache;
  if (!cache) return ask(qname, type, opts);
  const via = opts.servers?.map((v) => `${v.address}#${v.port}`).join(",") ?? "";
  const key = `${type}/${toDot(qname)}/${via}`;
  const hit = cache.get(key);
  if (hit) return Promise.resolve(hit);
  const pending = cache.inflight.get(key);
  if (pending) return pending;
  const p = ask(qname, type, opts).then((answer) => {
    cache.set(key, answer);
    return answer;
  }).finally(() => cache.inflight.delete(key));
  cache.inflight.set(key, p);
  return p;
}

async function ask(qname: Uint8Array, type: number, opts: LookupOptions): Promise<Answer> {
  const resp = await query(qname, type, opts);
  const values: string[] = [];
  let ttl = Infinity;
  for (const r of relevantRecords(resp, qname, type)) {
    const value = recordValue(resp.message, r);
    if (value === null) continue;
    values.push(value);
    ttl = Math.min(ttl, r.ttl);
    // djbdns's dns_name reads the first PTR only (a later, broken one must not fail the lookup).
    if (type === TYPE.PTR) break;
  }
  return {
    values,
    ttl: values.length ? ttl : Math.min(resp.negativeTtl ?? 0, NEGATIVE_TTL_CAP),
  };
}

// ---------------------------------------------------------------- lookups

/**
 * The name of ip (PTR under in-addr.arpa or ip6.arpa): [] when there is
 * none, else the first PTR record's target as toDot text (djbdns-escaped,
 * lowercased ASCII: it cannot carry a NUL, '=', a newline or an 8-bit byte).
 * A name over 255 bytes or a malformed answer throws DnsProtocolError.
 */
export async function resolvePtr(ip: string, opts: LookupOptions = {}): Promise<string[]> {
  return (await lookup(ptrName(ip), TYPE.PTR, opts)).values;
}

/** The IPv4 addresses of name (dotted text, escapes as fromDot) and their TTL; ips [] when there are none. */
export async function resolveA(
  name: string,
  opts: LookupOptions = {},
): Promise<{ ips: string[]; ttl: number }> {
  const a = await lookup(name, TYPE.A, opts);
  return { ips: a.values, ttl: a.ttl };
}

/**
 * The TXT records of name, each record's strings concatenated as a byte
 * string (the bytes as sent: cleaning them is the caller's job), and their
 * TTL.
 */
export async function resolveTxt(
  name: string,
  opts: LookupOptions = {},
): Promise<{ texts: string[]; ttl: number }> {
  const a = await lookup(name, TYPE.TXT, opts);
  return { texts: a.values, ttl: a.ttl };
}

/**
 * The addresses of name: family 4 (A), 6 (AAAA) or 0 (both, asked at once;
 * IPv4 first). A literal address resolves to itself. With both families a
 * failing query does not hide the other's addresses: it throws only when no
 * family gave an address and at least one failed (a resolver that refuses
 * AAAA still lets an IPv4 name resolve, as DJB's and fehcom's tools do).
 */
export async function resolveAddrs(
  name: string,
  opts: LookupOptions & { family?: 4 | 6 | 0 } = {},
): Promise<string[]> {
  const family = opts.family ?? 0;
  if (parseIp4(name)) return family === 6 ? [] : [name];
  if (parseIp6Loose(name)) return family === 4 ? [] : [name];
  const types = family === 4 ? [TYPE.A] : family === 6 ? [TYPE.AAAA] : [TYPE.A, TYPE.AAAA];
  const results = await Promise.allSettled(types.map((t) => lookup(name, t, opts)));
  const out: string[] = [];
  let failure: unknown = undefined;
  for (const r of results) {
    if (r.status === "fulfilled") out.push(...r.value.values);
    else failure ??= r.reason;
  }
  if (out.length === 0 && failure !== undefined) throw failure;
  return out;
}
