/**
 * The hostile DNS data both DNS test files feed tests/support/dns_server.ts:
 * our resolver alone (tests/net/dns_test.ts) and our tools next to DJB's C
 * tools (tests/net/hostile_dns_test.ts) must see the same attacks, so they
 * are defined once here. Each function returns fresh objects (tests edit
 * their zones).
 */
import { wireName, type ZoneEntry, type Zones } from "./dns_server.ts";

/** The longest label DNS allows (63 bytes): four of them make a name over 255 bytes. */
export const LONG_LABEL: string = "a".repeat(63);

/**
 * What a forged reply claims: a PTR name, an address on loopback (so a C tool
 * fooled by it would connect somewhere a test sees) and a TXT listing.
 */
export function evilEntry(): ZoneEntry {
  return { PTR: ["evil.example"], A: ["127.0.0.66"], TXT: ["evil"] };
}

/**
 * PTR answers for clients 127.0.0.11-18 whose names attack whoever prints
 * them: a NUL and '=' (environment injection), controls and spaces, 8-bit
 * bytes, a dot inside a label, a name of 256 bytes (too long), one of 255
 * bytes (the longest), the root, and a compression pointer to itself.
 */
export function hostilePtrZones(): Zones {
  const big = LONG_LABEL;
  return {
    "11.0.0.127.in-addr.arpa": { PTR: [wireName("x\0INJECTED=yes", "example")] },
    "12.0.0.127.in-addr.arpa": { PTR: [wireName("a\nb\x1bc\rd e:f%g\\h", "Example")] },
    "13.0.0.127.in-addr.arpa": { PTR: [wireName("\xe4\xf6\xfc\x80\x9f\xff", "test")] },
    "14.0.0.127.in-addr.arpa": { PTR: [wireName("evil.com", "x")] },
    "15.0.0.127.in-addr.arpa": { PTR: [wireName(big, big, big, big)] },
    "16.0.0.127.in-addr.arpa": { PTR: [wireName(big, big, big, "a".repeat(61))] },
    "17.0.0.127.in-addr.arpa": { PTR: [new Uint8Array([0])] },
    // a compression pointer to itself (at: header, question, the record's owner pointer and fields)
    "18.0.0.127.in-addr.arpa": { PTR: [new Uint8Array([0xc0, 12 + 25 + 4 + 12])] },
  };
}

/** A name with an A record whose resolver refuses AAAA (a dual-family lookup must still work). */
export function v4OnlyZone(): Zones {
  return { "v4only.test": { A: ["127.0.0.1"], typeBehaviour: { AAAA: "refused" } } };
}
