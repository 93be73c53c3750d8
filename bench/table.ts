/**
 * The benchmark table, pure (no timing, no I/O): the `BENCH {json}` rows the
 * benches print, their medians and ratios, the Markdown table bench/run.ts
 * writes to README.md and bench/RESULTS.md, and the replacement of the
 * README's generated block. Tested by tests/tools/bench_table_test.ts.
 */

/** One measured row, as a bench prints it after `BENCH `. */
export interface BenchRow {
  /** Stable id (conn8, rss-idle, ...). */
  id: string;
  /** What the row measures, for the first column. */
  label: string;
  /** Unit of the absolute values. */
  unit: string;
  /** Whether a higher or a lower value is better. */
  better: "higher" | "lower";
  /** The column whose samples every ratio divides by (DJB's C tool). */
  ref: string;
  /** Per column, one value per alternation, in the order measured. */
  samples: Record<string, number[]>;
  /** Per column, its own reference samples (a ratio not against `ref`, e.g. 2 processes / 1). */
  refSamples?: Record<string, number[]>;
  /** Per column, why it has no value in this row. */
  skipped: Record<string, string>;
  /** A short remark printed under the table. */
  note?: string;
}

/** A table column: id as in BenchRow.samples, heading. */
export interface Column {
  id: string;
  label: string;
}

/** The median (mean of the middle two for an even count); NaN for none. */
export function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** One cell: the median ratio, its range over the alternations, the median absolute value. */
export interface Cell {
  ratio: number;
  lo: number;
  hi: number;
  /** Number of alternations the ratio is taken over. */
  n: number;
  value: number;
  /** True for the reference column itself. */
  isRef: boolean;
}

/**
 * The cell of `col` in `row`, or null when the column has no samples there.
 * Ratios pair alternation i of the column with alternation i of its
 * reference (they ran next to each other), so the range shows the spread.
 */
export function cellOf(row: BenchRow, col: string): Cell | null {
  const xs = row.samples[col];
  if (!xs?.length) return null;
  const own = row.refSamples?.[col];
  const isRef = !own && col === row.ref;
  const refs = own ?? row.samples[row.ref];
  const value = median(xs);
  if (isRef) return { ratio: 1, lo: 1, hi: 1, n: xs.length, value, isRef };
  if (!refs?.length) return { ratio: NaN, lo: NaN, hi: NaN, n: 0, value, isRef };
  const n = Math.min(xs.length, refs.length);
  const ratios = Array.from({ length: n }, (_, i) => xs[i] / refs[i]);
  return {
    ratio: median(ratios),
    lo: Math.min(...ratios),
    hi: Math.max(...ratios),
    n,
    value,
    isRef,
  };
}

/** A number with about three significant digits. */
export function formatValue(x: number): string {
  if (!Number.isFinite(x)) return "?";
  const a = Math.abs(x);
  if (a >= 100) return Math.round(x).toString();
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toPrecision(2);
}

function ratioText(x: number): string {
  return Number.isFinite(x) ? x.toFixed(2) : "?";
}

/** The Markdown text of one cell: `0.77 (0.70–0.80) [1234]`, the reference `1 [1234]`, or `—`. */
export function cellText(c: Cell | null): string {
  if (!c) return "—";
  const abs = `[${formatValue(c.value)}]`;
  if (c.isRef) return `1 ${abs}`;
  const range = c.n > 1 ? ` (${ratioText(c.lo)}–${ratioText(c.hi)})` : "";
  return `${ratioText(c.ratio)}${range} ${abs}`;
}

/** The columns that have a value in at least one row, in the given order. */
export function usedColumns(rows: BenchRow[], columns: Column[]): Column[] {
  return columns.filter((c) => rows.some((r) => r.samples[c.id]?.length));
}

/** The Markdown table: one line per row, one column per implementation with any value. */
export function renderTable(rows: BenchRow[], columns: Column[]): string {
  const cols = usedColumns(rows, columns);
  const head = ["measure", "unit", "better", ...cols.map((c) => c.label)];
  const lines = [
    `| ${head.join(" | ")} |`,
    `|${head.map((_, i) => (i < 3 ? "---" : "---:")).join("|")}|`,
  ];
  for (const r of rows) {
    const cells = cols.map((c) => cellText(cellOf(r, c.id)));
    lines.push(`| ${[r.label, r.unit, r.better, ...cells].join(" | ")} |`);
  }
  return lines.join("\n");
}

/**
 * Why cells are empty: one line per (column, reason) naming the rows, for the
 * columns shown plus those absent from the whole run.
 */
export function skipNotes(rows: BenchRow[], columns: Column[]): string[] {
  const out: string[] = [];
  for (const c of columns) {
    if (!rows.some((r) => r.samples[c.id]?.length)) {
      // absent from the whole run: one line, the first reason given
      const why = rows.map((r) => r.skipped[c.id]).find((w) => w);
      if (why) out.push(`- ${c.label}: ${why} (all rows)`);
      continue;
    }
    const byReason = new Map<string, string[]>();
    for (const r of rows) {
      const why = r.skipped[c.id];
      if (!why || r.samples[c.id]?.length) continue;
      const list = byReason.get(why) ?? [];
      list.push(r.id);
      byReason.set(why, list);
    }
    for (const [why, ids] of byReason) {
      const where = ids.length === rows.length ? "all rows" : ids.join(", ");
      out.push(`- ${c.label}: ${why} (${where})`);
    }
  }
  return out;
}

/** Row notes, one line each. */
export function rowNotes(rows: BenchRow[]): string[] {
  return rows.filter((r) => r.note).map((r) => `- ${r.id}: ${r.note}`);
}

/** The `BENCH {json}` rows found in a bench's output (other lines ignored). */
export function parseRows(text: string): BenchRow[] {
  const rows: BenchRow[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("BENCH ")) continue;
    const r = JSON.parse(line.slice(6)) as BenchRow;
    if (typeof r.id !== "string" || typeof r.samples !== "object") {
      throw new Error(`not a bench row: ${line.slice(0, 80)}`);
    }
    r.skipped ??= {};
    rows.push(r);
  }
  return rows;
}

/** The marker lines of the README's generated block. */
export const BEGIN = "<!-- bench:begin -->";
export const END = "<!-- bench:end -->";

/**
 * README text with everything between the BEGIN and END lines replaced by
 * `block` (the markers kept, nothing outside touched). Throws when the
 * markers are missing, doubled or out of order.
 */
export function replaceBlock(readme: string, block: string): string {
  const b = readme.indexOf(BEGIN), e = readme.indexOf(END);
  if (b < 0 || e < 0 || e < b) throw new Error(`README has no ${BEGIN} ... ${END} block`);
  if (readme.indexOf(BEGIN, b + 1) >= 0 || readme.indexOf(END, e + 1) >= 0) {
    throw new Error("README has more than one bench block");
  }
  return `${readme.slice(0, b + BEGIN.length)}\n\n${block.trim()}\n\n${readme.slice(e)}`;
}

/** The run's circumstances, printed above the table. */
export interface RunInfo {
  date: string;
  cores: number;
  kernel: string;
  deno: string;
  alternations: number;
}

/** The README block: one line of circumstances, the table, how to read it, why cells are empty. */
export function readmeBlock(rows: BenchRow[], columns: Column[], info: RunInfo): string {
  return [
    `${info.date}, ${info.cores} cores, Linux ${info.kernel}, Deno ${info.deno}: ` +
    `ratio to the C tool (median of ${info.alternations} interleaved alternations, ` +
    `range in parentheses), absolute median in brackets. Details: bench/RESULTS.md.`,
    "",
    renderTable(rows, columns),
    "",
    ...skipNotes(rows, columns),
    ...rowNotes(rows),
  ].join("\n").trim();
}
