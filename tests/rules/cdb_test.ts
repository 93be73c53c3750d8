import assert from "node:assert/strict";
import { Cdb, CdbError, CdbFile, cdbHash, CdbWriter, makeCdb } from "../../lib/rules/cdb.ts";
import { byteString, stringBytes } from "../../lib/core/bytes.ts";
import { cTool, needs, prng, tempDir } from "../support/helpers.ts";

// String keys and data are byte strings (lib/core/bytes.ts); "\u00e9" below is the byte 0xe9.
const enc = { encode: stringBytes };
const dec = { decode: byteString };

function records(n: number, seed: number): Array<[string, string]> {
  const r = prng(seed);
  const out: Array<[string, string]> = [];
  for (let i = 0; i < n; i++) {
    // Some duplicate keys, some empty keys/data, some binary-ish bytes.
    const k = r() < 0.05 ? "" : `k${Math.floor(r() * n * 0.8)}\u00e9`;
    const d = r() < 0.1 ? "" : `d${i}:${"x".repeat(Math.floor(r() * 20))}`;
    out.push([k, d]);
  }
  return out;
}

Deno.test("cdb: DJB's hash", () => {
  assert.equal(cdbHash(new Uint8Array()), 5381);
  // h = ((5381 << 5) + 5381) ^ 'a' = 177573 ^ 97
  assert.equal(cdbHash(enc.encode("a")), 177604);
  // Stays unsigned 32-bit for long keys.
  const h = cdbHash(enc.encode("x".repeat(1000)));
  assert.ok(h >= 0 && h <= 0xffffffff && Number.isInteger(h));
});

Deno.test("cdb: round trip, first record wins, getAll in order, entries in file order", () => {
  const recs = records(3000, 1);
  const cdb = new Cdb(makeCdb(recs));
  const first = new Map<string, string>();
  const all = new Map<string, string[]>();
  for (const [k, d] of recs) {
    if (!first.has(k)) first.set(k, d);
    all.set(k, [...(all.get(k) ?? []), d]);
  }
  for (const [k, d] of first) assert.equal(dec.decode(cdb.get(k)!), d);
  for (const [k, ds] of all) assert.deepEqual(cdb.getAll(k).map((x) => dec.decode(x)), ds);
  assert.equal(cdb.get("absent"), null);
  assert.deepEqual(
    [...cdb.entries()].map(([k, d]) => [dec.decode(k), dec.decode(d)]),
    recs,
  );
});

Deno.test("cdb: empty cdb is 2048 bytes of tables at 2048, every lookup a miss", () => {
  const bytes = makeCdb([]);
  assert.equal(bytes.length, 2048);
  const cdb = new Cdb(bytes);
  assert.equal(cdb.get(""), null);
  assert.deepEqual([...cdb.entries()], []);
});

/** tinycdb's cdb, to compare bytes with. */
const TINYCDB = needs("cdb");

Deno.test("cdb: byte-identical to tinycdb's cdb -c, and reads its files" + TINYCDB.reasonSuffix, {
  ignore: TINYCDB.ignore,
}, async () => {
  const cdbTool = cTool("cdb")!;
  const dir = await tempDir();
  try {
    const recs = records(5000, 2);
    const input = recs.map(([k, d]) => {
      const kb = enc.encode(k), db = enc.encode(d);
      return `+${kb.length},${db.length}:${k}->${d}\n`;
    }).join("") + "\n";
    const path = `${dir.path}/t.cdb`;
    const p = new Deno.Command(cdbTool, { args: ["-c", path], stdin: "piped" }).spawn();
    const w = p.stdin.getWriter();
    await w.write(enc.encode(input));
    await w.close();
    assert.equal((await p.status).code, 0);
    const theirs = await Deno.readFile(path);
    assert.deepEqual(makeCdb(recs), theirs);
    const cdb = new Cdb(theirs);
    for (const [k] of recs.slice(0, 200)) assert.notEqual(cdb.get(k), null);
  } finally {
    await dir.cleanup();
  }
});

Deno.test("cdb: CdbFile streams to disk and equals makeCdb", async () => {
  const dir = await tempDir();
  try {
    const recs = records(20000, 3);
    const f = new CdbFile(`${dir.path}/x.cdb`);
    for (const [k, d] of recs) f.add(enc.encode(k), enc.encode(d));
    f.finish();
    assert.deepEqual(await Deno.readFile(`${dir.path}/x.cdb`), makeCdb(recs));
  } finally {
    await dir.cleanup();
  }
});

Deno.test("cdb: refuses to grow past the size limit (4 GiB by default), never a corrupt file", () => {
  const sink: number[] = [];
  const w = new CdbWriter((c) => sink.push(c.length), 2048 + 100);
  w.add(enc.encode("k"), enc.encode("d")); // 10 bytes + 16 table bytes
  assert.throws(() => w.add(enc.encode("k"), new Uint8Array(100)), CdbError);
  // What was accepted still finishes into a valid cdb within the limit.
  const w2 = new CdbWriter(() => {}, 2048 + 26);
  w2.add(enc.encode("k"), enc.encode("d"));
  w2.finish();
  assert.equal(w2.size, 2048 + 26);
  const w3 = new CdbWriter(() => {}, 2048 + 25);
  assert.throws(() => w3.add(enc.encode("k"), enc.encode("d")), /exceed/);
  // The default limit is the format's: 2^32 - 1.
  const big = new CdbWriter(() => {});
  const huge = { length: 0x100000000 - 2048 } as unknown as Uint8Array; // checked before any use
  assert.throws(() => big.add(new Uint8Array(0), huge), CdbError);
});

Deno.test("cdb: truncated and corrupted files give a miss or a CdbError, never a hang", () => {
  const recs = records(300, 4);
  const good = makeCdb(recs);
  const keys = [...new Set(recs.map(([k]) => k))].slice(0, 40).map((k) => enc.encode(k));
  const probe = (bytes: Uint8Array) => {
    const cdb = new Cdb(bytes);
    for (const k of keys) {
      try {
        cdb.get(k);
        cdb.getAll(k);
      } catch (e) {
        assert.ok(e instanceof CdbError, String(e));
        assert.equal(e.code, "EPROTO");
      }
    }
    try {
      for (const _ of cdb.entries()) { /* walk */ }
    } catch (e) {
      assert.ok(e instanceof CdbError, String(e));
    }
  };
  // Every truncation.
  for (let n = 0; n < good.length; n += 7) probe(good.subarray(0, n));
  // Random byte corruption, including tables whose every slot is taken.
  const r = prng(5);
  for (let round = 0; round < 400; round++) {
    const bad = good.slice();
    const flips = 1 + Math.floor(r() * 20);
    for (let i = 0; i < flips; i++) bad[Math.floor(r() * bad.length)] = Math.floor(r() * 256);
    probe(bad);
  }
  // A table claiming a huge slot count, and slots all pointing back at themselves.
  const hostile = good.slice();
  const v = new DataView(hostile.buffer);
  for (let t = 0; t < 256; t++) v.setUint32(t * 8 + 4, 0xffffffff, true);
  probe(hostile);
  const loop = new Uint8Array(2048 + 16 * 4);
  const lv = new DataView(loop.buffer);
  for (let t = 0; t < 256; t++) {
    lv.setUint32(t * 8, 2048, true);
    lv.setUint32(t * 8 + 4, 8, true);
  }
  for (let s = 0; s < 8; s++) {
    lv.setUint32(2048 + s * 8, cdbHash(keys[0]), true);
    lv.setUint32(2048 + s * 8 + 4, 2048, true);
  }
  probe(loop);
});
