/**
 * Fuzz: the DNS message decoder (lib/net/dns/wire.ts) on random and mutated replies
 * never throws but DnsProtocolError, never loops (compression pointers are
 * bounded), keeps every name within 255 bytes and its printed form within
 * 4 x 255 ASCII bytes, and what it accepts as an answer it reads again the
 * same way.
 */
import { DnsProtocolError } from "../../lib/net/dns/errors.ts";
import {
  answersQuery,
  decodeResponse,
  encodeQuery,
  recordValue,
  relevantRecords,
  TYPE,
} from "../../lib/net/dns/wire.ts";
import { fromDot, readName, toDot } from "../../lib/net/dns/name.ts";
import { below, type FuzzTarget, fuzzTest, type Rand, randomBytes } from "../support/fuzz.ts";

const QNAME = fromDot("2.0.0.127.rbl.test");

function u16(n: number): number[] {
  return [(n >> 8) & 0xff, n & 0xff];
}

/** A well-formed reply to (QNAME, type) with the given records (owner: pointer to the question). */
function reply(id: number, records: [number, number[]][], flags = 0x8180): Uint8Array {
  const q = Array.from(encodeQuery(id, QNAME, TYPE.TXT).subarray(12));
  const out = [...u16(id), ...u16(flags), 0, 1, ...u16(records.length), 0, 0, 0, 0, ...q];
  for (const [type, data] of records) {
    out.push(0xc0, 12, ...u16(type), 0, 1, 0, 0, 1, 0, ...u16(data.length), ...data);
  }
  return Uint8Array.from(out);
}

const PTR_LOOP = reply(7, [[TYPE.PTR, [0xc0, 12 + 24 + 12 + 10]]]);
const LONG = Array.from(fromDot(`${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}`));

export const target: FuzzTarget = {
  name: "dns",
  seeds: [
    reply(1, [[TYPE.TXT, [5, ..."hello".split("").map((c) => c.charCodeAt(0)), 0]]]),
    reply(2, [[TYPE.A, [127, 0, 0, 2]], [TYPE.AAAA, new Array(16).fill(1)]]),
    reply(3, [[TYPE.CNAME, Array.from(fromDot("x.test"))], [TYPE.PTR, [1, 0, 1, 61, 0]]]),
    reply(4, [[TYPE.PTR, [...LONG.slice(0, -1), 0xc0, 12]]]),
    PTR_LOOP,
    reply(5, [], 0x8183),
  ],
  generate: (rand: Rand) => {
    const records: [number, number[]][] = [];
    const types = [TYPE.A, TYPE.AAAA, TYPE.PTR, TYPE.TXT, TYPE.CNAME, 6];
    for (let i = below(rand, 6); i > 0; i--) {
      records.push([
        types[below(rand, types.length)],
        Array.from(randomBytes(rand, below(rand, 40))),
      ]);
    }
    return reply(below(rand, 0x10000), records, below(rand, 0x10000));
  },
  maxLength: 2048,
  run: (input) => {
    const query = encodeQuery((input[0] << 8) | input[1], QNAME, TYPE.TXT);
    answersQuery(input, query);
    const resp = decodeResponse(input);
    if (resp.question && resp.question.name.length > 255) throw new Error("question over 255");
    for (const r of resp.answers) {
      if (r.owner && r.owner.length > 255) throw new Error("owner over 255");
    }
    for (const type of [TYPE.A, TYPE.AAAA, TYPE.PTR, TYPE.TXT, TYPE.CNAME]) {
      for (const r of relevantRecords(resp, QNAME, type)) {
        let v: string | null;
        try {
          v = recordValue(resp.message, r);
        } catch (e) {
          if (e instanceof DnsProtocolError) continue;
          throw e;
        }
        if (v === null) continue;
        if (v.length > 65535) throw new Error("value larger than the message allows");
        if (type === TYPE.PTR || type === TYPE.CNAME) {
          if (!/^[a-z0-9_\-.\\]*$/.test(v) || v.length > 4 * 255) throw new Error(`bad name ${v}`);
          // the printed name reads back as the same wire name
          const wire = readName(resp.message, r.offset)[0];
          if (v !== "." && toDot(fromDot(v)) !== toDot(wire)) throw new Error(`round trip ${v}`);
        }
        for (let i = 0; i < v.length; i++) {
          if (v.charCodeAt(i) > 255) throw new Error("not a byte string");
        }
      }
    }
  },
  expected: (e) => e instanceof DnsProtocolError,
};

fuzzTest(target);
