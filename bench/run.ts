/**
 * `deno task bench`: runs every bench in turn (each in its own process group,
 * with the open-files limit raised for the 1,000 idle connections, bounded in
 * time), collects their `BENCH {json}` rows and renders one table
 * (bench/table.ts). A full run writes bench/RESULTS.md (the table, the
 * machine, the versions, every sample) and the README's generated block.
 *
 *   deno task bench [--quick] [--no-readme] [--only NAME[,NAME]] [--alternations N]
 *
 * --quick: small counts, one alternation, prints the table, writes nothing.
 * --no-readme: a full run that leaves README.md alone (RESULTS.md written).
 * --only: just those benches (tcpserver, rblsmtpd, tcprules, streamtools,
 * reuseport, restart, tls); prints the table, writes nothing.
 */
import { fileURLToPath } from "node:url";
import { ALTERNATIONS, debVersion, DENO, QUICK, ROOT, SERVERS } from "./support.ts";
import {
  type BenchRow,
  type Column,
  parseRows,
  readmeBlock,
  renderTable,
  replaceBlock,
  rowNotes,
  type RunInfo,
  skipNotes,
} from "./table.ts";

const dir = fileURLToPath(new URL(".", import.meta.url));
const BENCHES = ["tcpserver", "rblsmtpd", "tcprules", "streamtools", "reuseport", "restart", "tls"];
const args = Deno.args;
const onlyAt = args.indexOf("--only");
const only = onlyAt >= 0 ? (args[onlyAt + 1] ?? "").split(",").filter(Boolean) : null;
for (const name of only ?? []) {
  if (!BENCHES.includes(name)) {
    console.error(`bench: no bench ${name} (${BENCHES.join(", ")})`);
    Deno.exit(2);
  }
}
const passAt = args.indexOf("--alternations");
const pass = [
  ...(QUICK ? ["--quick"] : []),
  ...(passAt >= 0 ? ["--alternations", args[passAt + 1]] : []),
];
/** Per bench, at most this long (then its process group is killed and its rows are missing). */
const LIMIT_S = QUICK ? 240 : 600;

/** Runs one bench, echoing its output; resolves its rows. */
async function runBench(name: string): Promise<{ rows: BenchRow[]; ok: boolean }> {
  console.log(`== ${name}`);
  // setsid: the bench leads its own process group, so a timeout can end the
  // servers it started with it; ulimit: room for 1,000 idle connections
  const child = new Deno.Command("/usr/bin/setsid", {
    args: [
      "/bin/bash",
      "-c",
      'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" run -A "$@"',
      DENO,
      `${dir}${name}_bench.ts`,
      ...pass,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    console.log(`${name}: over ${LIMIT_S} s, stopped`);
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch { /* gone */ }
  }, LIMIT_S * 1000);
  let text = "";
  const enc = new TextEncoder();
  for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
    text += chunk;
    // the rows are for run.ts; the human lines for whoever watches
    const human = chunk.split("\n").filter((l) => !l.startsWith("BENCH ")).join("\n");
    await Deno.stdout.write(enc.encode(human));
  }
  const status = await child.status;
  clearTimeout(timer);
  if (!status.success) console.log(`${name}: exit ${status.code}`);
  return { rows: parseRows(text), ok: status.success && !timedOut };
}

async function out(argv: string[]): Promise<string> {
  try {
    const r = await new Deno.Command(argv[0], { args: argv.slice(1), stdout: "piped" }).output();
    return new TextDecoder().decode(r.stdout).trim();
  } catch {
    return "";
  }
}

// stunnel4 is a column only for the TLS rows (bench/tls_bench.ts), as their reference.
const columns: Column[] = [
  ...SERVERS.map((p) => ({ id: p.id, label: p.label })),
  { id: "stunnel", label: "stunnel4" },
];
const started = new Date();
const load0 = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
const t0 = performance.now();
const rows: BenchRow[] = [];
let failed = 0;
for (const name of only ?? BENCHES) {
  const r = await runBench(name);
  rows.push(...r.rows);
  if (!r.ok) failed++;
}
const seconds = (performance.now() - t0) / 1000;
const load1 = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");

const info: RunInfo = {
  date: started.toISOString().slice(0, 16).replace("T", " ") + " UTC",
  cores: navigator.hardwareConcurrency,
  kernel: (await out(["uname", "-r"])) || Deno.osRelease(),
  deno: Deno.version.deno,
  alternations: ALTERNATIONS,
};
console.log(`\n== table (${seconds.toFixed(0)} s)\n`);
console.log(renderTable(rows, columns));
for (const line of [...skipNotes(rows, columns), ...rowNotes(rows)]) console.log(line);

const full = !QUICK && !only;
if (full && !failed) {
  const cpu = /^model name\s*:\s*(.*)$/m.exec(await Deno.readTextFile("/proc/cpuinfo"))?.[1] ?? "";
  const versions: string[] = [];
  for (const p of SERVERS) {
    versions.push(`- ${p.label}: ${p.missing() ? `absent (${p.missing()})` : await p.version()}`);
  }
  versions.push(`- stunnel4: ${(await debVersion("stunnel4")) || "absent"}`);
  const results = [
    "# Benchmark results",
    "",
    "Written by `deno task bench` (bench/run.ts); bench/README.md says what each row measures.",
    "",
    `- date: ${info.date}, run time ${seconds.toFixed(0)} s`,
    `- machine: ${info.cores} cores (nproc), ${cpu}, Linux ${info.kernel}`,
    `- load average before / after: ${load0} / ${load1}`,
    `- Deno ${info.deno}, alternations per row: ${info.alternations}`,
    "",
    "## Implementations",
    "",
    ...versions,
    "",
    "## Table",
    "",
    "Ratio to the C tool (median over the interleaved alternations, range in parentheses), " +
    "absolute median in brackets.",
    "",
    renderTable(rows, columns),
    "",
    ...skipNotes(rows, columns),
    ...rowNotes(rows),
    "",
    "## Samples",
    "",
    "One value per alternation, in the order measured.",
    "",
    ...rows.map((r) =>
      `- ${r.id} (${r.unit}): ` +
      Object.entries(r.samples).map(([id, xs]) =>
        `${id} ${xs.map((x) => +x.toPrecision(4)).join(" ")}` +
        (r.refSamples?.[id]
          ? ` (ref ${r.refSamples[id].map((x) => +x.toPrecision(4)).join(" ")})`
          : "")
      ).join("; ")
    ),
    "",
  ].join("\n");
  await Deno.writeTextFile(`${dir}RESULTS.md`, results);
  console.log(`\nwrote ${dir}RESULTS.md`);
  if (!args.includes("--no-readme")) {
    const readme = `${ROOT}README.md`;
    const text = await Deno.readTextFile(readme);
    await Deno.writeTextFile(readme, replaceBlock(text, readmeBlock(rows, columns, info)));
    console.log(`wrote the bench block of ${readme}`);
  }
} else if (full) {
  console.log(`\n${failed} bench(es) failed: README.md and bench/RESULTS.md left alone`);
}
Deno.exit(failed ? 1 : 0);
