/** The benchmark table (bench/table.ts): medians, ratios, Markdown, the README block. */
import assert from "node:assert/strict";
import {
  BEGIN,
  type BenchRow,
  cellOf,
  cellText,
  type Column,
  END,
  median,
  parseRows,
  readmeBlock,
  renderTable,
  replaceBlock,
  skipNotes,
} from "../../bench/table.ts";

const COLUMNS: Column[] = [
  { id: "native", label: "ours native" },
  { id: "pure", label: "ours pure" },
  { id: "c", label: "C tcpserver" },
  { id: "s6", label: "s6-tcpserver" },
];

function row(over: Partial<BenchRow> = {}): BenchRow {
  return {
    id: "conn8",
    label: "conn/s, 8 clients",
    unit: "conn/s",
    better: "higher",
    ref: "c",
    samples: { native: [80, 90, 100], c: [100, 100, 100] },
    skipped: { s6: "$S6_TCPSERVER not set" },
    ...over,
  };
}

Deno.test("median: odd, even (mean of the middle two), unsorted, empty", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
  assert.ok(Number.isNaN(median([])));
});

Deno.test("cellOf pairs each alternation with the reference's and takes the median ratio", () => {
  const c = cellOf(row({ samples: { native: [50, 90, 300], c: [100, 100, 200] } }), "native")!;
  // ratios 0.5, 0.9, 1.5: median 0.9, range 0.5-1.5, absolute median 90
  assert.equal(c.ratio, 0.9);
  assert.equal(c.lo, 0.5);
  assert.equal(c.hi, 1.5);
  assert.equal(c.value, 90);
  assert.equal(c.n, 3);
  assert.equal(c.isRef, false);
});

Deno.test("cellOf: the reference column is 1; a column without samples is null", () => {
  const r = row();
  const ref = cellOf(r, "c")!;
  assert.equal(ref.isRef, true);
  assert.equal(ref.ratio, 1);
  assert.equal(ref.value, 100);
  assert.equal(cellOf(r, "s6"), null);
  assert.equal(cellOf(r, "pure"), null);
});

Deno.test("cellOf: per-column reference samples (N processes / 1) override the row's reference", () => {
  const r = row({
    ref: "native",
    samples: { native: [300, 400], pure: [100, 120] },
    refSamples: { native: [200, 200], pure: [100, 100] },
  });
  const n = cellOf(r, "native")!;
  assert.equal(n.isRef, false);
  assert.equal(n.ratio, 1.75);
  assert.equal(n.lo, 1.5);
  assert.equal(n.hi, 2);
  assert.equal(cellOf(r, "pure")!.ratio, 1.1);
});

Deno.test("cellOf: no reference samples gives an unknown ratio, not a made-up one", () => {
  const c = cellOf(row({ samples: { native: [10] } }), "native")!;
  assert.ok(Number.isNaN(c.ratio));
  assert.equal(cellText(c), "? [10.0]");
});

Deno.test("cellText: ratio, range only over more than one alternation, absolute in brackets", () => {
  assert.equal(cellText(cellOf(row(), "native")), "0.90 (0.80–1.00) [90.0]");
  assert.equal(cellText(cellOf(row(), "c")), "1 [100]");
  assert.equal(
    cellText(cellOf(row({ samples: { native: [1234.5], c: [1000] } }), "native")),
    "1.23 [1235]",
  );
  assert.equal(cellText(null), "—");
});

Deno.test("renderTable: one line per row, only columns with a value somewhere", () => {
  const rows = [
    row(),
    row({
      id: "rss",
      label: "server RSS",
      unit: "MB",
      better: "lower",
      samples: { native: [50], pure: [70], c: [1.25] },
    }),
  ];
  const lines = renderTable(rows, COLUMNS).split("\n");
  assert.equal(lines.length, 4);
  assert.equal(lines[0], "| measure | unit | better | ours native | ours pure | C tcpserver |");
  assert.equal(lines[1], "|---|---|---|---:|---:|---:|");
  assert.equal(
    lines[2],
    "| conn/s, 8 clients | conn/s | higher | 0.90 (0.80–1.00) [90.0] | — | 1 [100] |",
  );
  assert.equal(lines[3], "| server RSS | MB | lower | 40.00 [50.0] | 56.00 [70.0] | 1 [1.25] |");
});

Deno.test("skipNotes: a column absent from the run gets one line; others name their rows", () => {
  const rows = [
    row({ samples: { native: [90], pure: [40], c: [100] } }),
    row({ id: "rules", skipped: { s6: "$S6_TCPSERVER not set", pure: "no rules" } }),
  ];
  assert.deepEqual(skipNotes(rows, COLUMNS), [
    "- ours pure: no rules (rules)",
    "- s6-tcpserver: $S6_TCPSERVER not set (all rows)",
  ]);
});

Deno.test("parseRows takes the BENCH lines and ignores the human ones", () => {
  const r = row();
  const text = `conn8 #1 ours native rate 90\nBENCH ${JSON.stringify(r)}\nsome table line\n`;
  assert.deepEqual(parseRows(text), [r]);
  assert.deepEqual(parseRows("no rows here\n"), []);
  assert.throws(() => parseRows('BENCH {"x":1}'), /not a bench row/);
});

Deno.test("replaceBlock replaces only what lies between the markers, and is idempotent", () => {
  const readme = `# Title\n\nabove\n\n${BEGIN}\n\nold figures\n\n${END}\n\nbelow\n`;
  const once = replaceBlock(readme, "| new | table |");
  assert.equal(once, `# Title\n\nabove\n\n${BEGIN}\n\n| new | table |\n\n${END}\n\nbelow\n`);
  assert.equal(replaceBlock(once, "| new | table |"), once);
});

Deno.test("replaceBlock refuses a README without one well-formed block", () => {
  assert.throws(() => replaceBlock("no markers", "x"), /no .* block/);
  assert.throws(() => replaceBlock(`${END}\n${BEGIN}\n`, "x"), /no .* block/);
  assert.throws(
    () => replaceBlock(`${BEGIN}\n${END}\n${BEGIN}\n${END}\n`, "x"),
    /more than one/,
  );
});

Deno.test("readmeBlock: circumstances, the table, the skip reasons", () => {
  const block = readmeBlock([row()], COLUMNS, {
    date: "2026-12-02 18:00 UTC",
    cores: 2,
    kernel: "6.1.0",
    deno: "2.9.6",
    alternations: 3,
  });
  const lines = block.split("\n");
  assert.match(lines[0], /^2026-12-02 18:00 UTC, 2 cores, Linux 6\.1\.0, Deno 2\.9\.6: /);
  assert.match(lines[0], /median of 3 interleaved alternations/);
  assert.ok(lines.includes(renderTable([row()], COLUMNS).split("\n")[2]));
  assert.equal(lines.at(-1), "- s6-tcpserver: $S6_TCPSERVER not set (all rows)");
  assert.ok(!block.includes(BEGIN) && !block.includes(END));
});
