/** Fuzz: the cdb reader on corrupt and truncated files never throws but CdbError, never hangs. */
import { Cdb, CdbError, makeCdb } from "../../lib/rules/cdb.ts";
import { below, type FuzzTarget, fuzzTest, randomBytes } from "../support/fuzz.ts";

const keys = ["1.2.3.4", "=host.example", "127.", "", "x".repeat(300)];

export const target: FuzzTarget = {
  name: "cdb",
  seeds: [
    makeCdb(keys.map((k, i) => [k, `+E${i}=v`])),
    makeCdb([["a", "1"], ["a", "2"], ["b", ""]]),
    makeCdb([]),
  ],
  generate: (rand) => {
    const n = below(rand, 8);
    const records: [Uint8Array, Uint8Array][] = [];
    for (let i = 0; i < n; i++) {
      records.push([randomBytes(rand, below(rand, 12)), randomBytes(rand, below(rand, 40))]);
    }
    return makeCdb(records);
  },
  maxLength: 8192,
  run: (input) => {
    const cdb = new Cdb(input);
    let total = 0;
    for (const k of keys) {
      cdb.get(k);
      for (const d of cdb.getAll(k)) total += d.length;
    }
    for (const [k, d] of cdb.entries()) total += k.length + d.length;
    if (total > input.length * keys.length * 2 + 4096) throw new Error(`read ${total} bytes`);
  },
  expected: (e) => e instanceof CdbError,
};

fuzzTest(target);
