/**
 * The DNS stub client's API in one import, for its many callers; the code is
 * in lib/net/dns/ by concern: errors.ts (the failures), wire.ts (names and
 * packets, no I/O), transport.ts (which servers, UDP/TCP to the server
 * asked), cache.ts (answers for their TTL, bounded), resolver.ts (lookups).
 *
 * A small asynchronous DNS stub client: queries a recursive resolver over UDP
 * (TCP when the answer is truncated) and reports TTLs, so callers can cache,
 * and tells a permanent "no such record" (NXDOMAIN, no data: an empty result)
 * from a temporary failure (SERVFAIL, REFUSED, timeout, network error:
 * DnsTemporaryError).
 *
 * The resolver is `$DNSCACHEIP` (djbdns's convention: one or more IP
 * addresses, port 53), else the `nameserver` lines of /etc/resolv.conf (read
 * once), else 127.0.0.1.
 *
 * Every answer is written by whoever can send a datagram, so it is checked
 * as djbdns's dns_transmit checks it, and then some: a reply counts only
 * from the server's address and port (a connected socket on a fresh random
 * port), with the query's id (from the CSPRNG), exactly one question equal
 * to ours (name compared case-insensitively, type, class IN) and the QR
 * bit; anything else is ignored and the wait for the real reply goes on.
 * Over TCP, a reply to another question fails that server. Of an accepted
 * reply, only class-IN records owned by the question's name (or a name its
 * CNAME chain leads to) are used. Names are handled as wire bytes and
 * returned as djbdns's dns_domain_todot_cat prints them (toDot): lowercase
 * ASCII with every byte outside a-z 0-9 - _ as `\ooo`; a name over 255
 * bytes, a compression loop or a malformed message is DnsProtocolError.
 * TXT data is returned as byte strings, unchanged.
 */
export { DnsProtocolError, DnsTemporaryError } from "./dns/errors.ts";
export {
  answersQuery,
  CLASS_IN,
  decodeName,
  decodeResponse,
  encodeName,
  encodeQuery,
  fromDot,
  nameEqual,
  ptrName,
  RCODE_NXDOMAIN,
  readName,
  recordValue,
  relevantRecords,
  type ResourceRecord,
  type Response,
  reverseName,
  toDot,
  TYPE,
} from "./dns/wire.ts";
export { defaultServers, type DnsServer, query, type QueryOptions } from "./dns/transport.ts";
export { type Answer, DnsCache } from "./dns/cache.ts";
export {
  lookup,
  type LookupOptions,
  resolveA,
  resolveAddrs,
  resolvePtr,
  resolveTxt,
} from "./dns/resolver.ts";
/** Address predicates under their older names (lib/net/ip.ts defines them). */
export { isIPv4, isIPv6 } from "./ip.ts";
