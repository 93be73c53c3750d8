/**
 * tcprules' bad-line message shows the line's bytes as DJB's C tcprules
 * does (up to a NUL), never decoded as UTF-8: compared byte for byte with
 * Debian's /usr/bin/tcprules on lines that are not UTF-8. The one
 * deliberate difference stays: we say "unable to parse line N" and exit
 * 111 where C says "unable to parse this line" and exits 100.
 */
import assert from "node:assert/strict";
import { compileRules, RuleSyntaxError } from "../../lib/rules/compile.ts";
import { byteString } from "../../lib/core/bytes.ts";
import { cTool, ours, tempDir, theirs } from "../support/helpers.ts";

/** Bad lines whose bytes are not UTF-8 (8-bit bytes, a lone continuation byte, a NUL). */
const BAD_LINES: Uint8Array[] = [
  Uint8Array.from([0xff, 0xfe, 0x62, 0x61, 0x64, 0x80, 0x3a, 0x66, 0x6f, 0x6f]), // "\xff\xfebad\x80:foo"
  // "1.2:allow,X=\xe9v": \xe9 opens a quote that is never closed
  Uint8Array.from([
    0x31,
    0x2e,
    0x32,
    0x3a,
    0x61,
    0x6c,
    0x6c,
    0x6f,
    0x77,
    0x2c,
    0x58,
    0x3d,
    0xe9,
    0x76,
  ]),
  Uint8Array.from([0xc3, 0x3a, 0x64, 0x65, 0x6e, 0x79, 0x78]), // "\xc3:denyx"
  Uint8Array.from([0xa0, 0x78, 0x3a, 0x64, 0x00, 0xff]), // "\xa0x:d\0\xff": shown up to the NUL
];

function withLines(...lines: Uint8Array[]): Uint8Array {
  const parts: number[] = [];
  for (const l of lines) parts.push(...l, 10);
  return Uint8Array.from(parts);
}

const ascii = new TextEncoder();

Deno.test("RuleSyntaxError keeps the bad line's bytes (a byte string)", () => {
  for (const line of BAD_LINES) {
    assert.throws(() => compileRules(withLines(line)), (e) => {
      assert.ok(e instanceof RuleSyntaxError);
      const nul = line.indexOf(0);
      assert.equal(e.line, byteString(nul < 0 ? line : line.subarray(0, nul)));
      assert.equal(e.message, "unable to parse this line: " + e.line);
      return true;
    });
  }
});

Deno.test({
  name: "tcprules: a non-UTF-8 bad line is shown as C tcprules shows it, byte for byte",
  ignore: cTool("tcprules") === null,
  fn: async () => {
    for (const line of BAD_LINES) {
      // a good line first, so the bad one is line 2
      const input = withLines(ascii.encode("1.2.3.4:allow"), line);
      const a = await tempDir();
      const b = await tempDir();
      try {
        const [o, t] = await Promise.all([
          ours("tcprules", ["r.cdb", "r.tmp"], { stdin: input, cwd: a.path }),
          theirs("tcprules", ["r.cdb", "r.tmp"], { stdin: input, cwd: b.path }),
        ]);
        assert.equal(t.code, 100);
        const cPrefix = ascii.encode("tcprules: fatal: unable to parse this line: ");
        assert.deepEqual(t.stderr.subarray(0, cPrefix.length), cPrefix, "C's message");
        const shown = t.stderr.subarray(cPrefix.length);
        const nul = line.indexOf(0);
        assert.deepEqual(shown, withLines(nul < 0 ? line : line.subarray(0, nul)));
        assert.equal(o.code, 111);
        const ourPrefix = ascii.encode("tcprules: fatal: unable to parse line 2: ");
        assert.deepEqual(o.stderr, Uint8Array.from([...ourPrefix, ...shown]));
        assert.equal(o.out, "");
        // rules.cdb is left alone (none made); C leaves r.tmp behind, we remove it
        for (const dir of [a.path, b.path]) {
          assert.ok(![...Deno.readDirSync(dir)].some((e) => e.name === "r.cdb"));
        }
      } finally {
        await a.cleanup();
        await b.cleanup();
      }
    }
  },
});
