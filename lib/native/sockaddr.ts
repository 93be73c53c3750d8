/**
 * Socket addresses between our IP text and libc's sockaddr_in/sockaddr_in6,
 * and the two ends of a socket (getsockname, getpeername).
 */
import { formatIp4, formatIp6, parseIp4, parseIp6 } from "../net/ip.ts";
import { AF_INET, AF_INET6, errno, L, sysError } from "./libc.ts";

/** An address and port. */
export interface NativeEndpoint {
  /** The address as Deno would show it ("::ffff:a.b.c.d" for IPv4-mapped, "%N" for a scope). */
  ip: string;
  /** The port number. */
  port: number;
}

/** ip:port (a literal IPv4 or IPv6 address) as a sockaddr_in or sockaddr_in6; null when ip is neither. */
export function sockaddr(ip: string, port: number): Uint8Array | null {
  const v4 = parseIp4(ip);
  if (v4) {
    const b = new Uint8Array(16);
    new DataView(b.buffer).setUint16(0, AF_INET, true);
    new DataView(b.buffer).setUint16(2, port, false);
    b.set(v4, 4);
    return b;
  }
  const v6 = parseIp6(ip);
  if (!v6) return null;
  const b = new Uint8Array(28);
  new DataView(b.buffer).setUint16(0, AF_INET6, true);
  new DataView(b.buffer).setUint16(2, port, false);
  b.set(v6, 8);
  return b;
}

/** A sockaddr_in/sockaddr_in6 as Deno would show it ("::ffff:a.b.c.d" for mapped). */
export function endpointOf(b: Uint8Array): NativeEndpoint {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const family = dv.getUint16(0, true);
  const port = dv.getUint16(2, false);
  if (family === AF_INET) return { ip: formatIp4(b.subarray(4, 8)), port };
  const scope = dv.getUint32(24, true);
  const ip = formatIp6(b.subarray(8, 24));
  return { ip: scope ? `${ip}%${scope}` : ip, port };
}

// nameOf's buffers, reused: the calls are synchronous, on the main thread
const nameBuf = new Uint8Array(128);
const nameLen = new Uint32Array(1);

/** The local (getsockname) or, with peer, remote (getpeername) end of socket fd; throws on failure. */
export function nameOf(fd: number, peer: boolean): NativeEndpoint {
  const b = nameBuf;
  const len = nameLen;
  b.fill(0);
  len[0] = 128;
  const r = peer ? L().getpeername(fd, b, len) : L().getsockname(fd, b, len);
  if (r !== 0) throw sysError(peer ? "getpeername" : "getsockname", errno());
  return endpointOf(b);
}

/** The address family (AF_INET, AF_INET6, ...) of socket fd's local address, or null. */
export function familyOf(fd: number): number | null {
  const b = new Uint8Array(128);
  const len = new Uint32Array([128]);
  if (L().getsockname(fd, b, len) !== 0) return null;
  return new DataView(b.buffer).getUint16(0, true);
}
