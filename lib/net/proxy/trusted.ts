/**
 * $PROXY_TRUSTED's list of senders allowed (and required) to send a header:
 * addresses and CIDR prefixes, IPv4 ones matching IPv4-mapped clients too.
 */

import { maskBits, parseIp4 } from "../ip.ts";
import { ipBytes16 } from "./header.ts";

/** One entry of a trusted-sender list: an address and a prefix length. */
export interface Cidr {
  /** The network, 16 bytes (IPv4 as IPv4-mapped). */
  bytes: Uint8Array;
  /** The prefix length over those 16 bytes (an IPv4 /8 is 104). */
  bits: number;
}

/**
 * Parses a list of addresses or CIDR prefixes separated by commas or white
 * space ("127.0.0.1,10.0.0.0/8 ::1 fd00::/8"). IPv4 prefixes are matched
 * against IPv4 clients also when they arrive IPv4-mapped. Throws Error naming
 * the first bad entry.
 */
export function parseTrusted(spec: string): Cidr[] {
  const out: Cidr[] = [];
  for (const word of spec.split(/[\s,]+/)) {
    if (word === "") continue;
    const slash = word.indexOf("/");
    const ip = slash < 0 ? word : word.slice(0, slash);
    const bytes = ipBytes16(ip);
    const isV4 = parseIp4(ip, "inet_pton") !== null;
    let bits = isV4 ? 32 : 128;
    if (slash >= 0) {
      const b = word.slice(slash + 1);
      if (!/^[0-9]{1,3}$/.test(b) || Number(b) > bits) throw new Error(`bad prefix: ${word}`);
      bits = Number(b);
    }
    if (!bytes) throw new Error(`bad address: ${word}`);
    out.push({ bytes, bits: isV4 ? bits + 96 : bits });
  }
  return out;
}

/** Whether the text address ip lies in one of the prefixes. */
export function isTrusted(ip: string, list: Cidr[]): boolean {
  const b = ipBytes16(ip);
  if (!b) return false;
  for (const { bytes, bits } of list) {
    const net = maskBits(bytes, bits);
    const m = maskBits(b, bits);
    if (m.every((x, i) => x === net[i])) return true;
  }
  return false;
}
