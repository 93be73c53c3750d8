/**
 * Throughput of our addcr, delcr, fixcrio and recordio against DJB's C tools
 * on the same generated input (text lines and random binary), as wall-clock
 * ratios (ours / C; below 1 means we are faster). Deno's start-up is counted.
 *
 *   deno run -A bench/streamtools_bench.ts [MB]
 */
import { cTool, oursArgv } from "../tests/helpers.ts";

const MB = Number(Deno.args[0] ?? 100);

function textInput(size: number): Uint8Array {
  const lines = [
    "MAIL FROM:<someone@example.org>\r\n",
    "a plain unix line of moderate length\n",
    "Subject: hello there\r\n",
    "\n",
    "x".repeat(70) + "\r\n",
  ];
  const block = new TextEncoder().encode(lines.join("").repeat(1000));
  const out = new Uint8Array(size);
  for (let at = 0; at < size; at += block.length) out.set(block.subarray(0, size - at), at);
  return out;
}

function binaryInput(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) crypto.getRandomValues(out.subarray(at, at + 65536));
  return out;
}

/** Seconds to run argv with stdin from `file`, stdout and stderr to /dev/null. */
async function time(argv: string[], file: string): Promise<number> {
  const t0 = performance.now();
  const r = await new Deno.Command("bash", {
    args: ["-c", '"$@" < "$0" > /dev/null 2>&1', file, ...argv],
  }).output();
  if (!r.success) throw new Error(`${argv.join(" ")} failed: ${r.code}`);
  return (performance.now() - t0) / 1000;
}

async function best(argv: string[], file: string, runs = 3): Promise<number> {
  let min = Infinity;
  for (let i = 0; i < runs; i++) min = Math.min(min, await time(argv, file));
  return min;
}

const dir = await Deno.makeTempDir({ prefix: "streambench-" });
try {
  const inputs: [string, Uint8Array][] = [
    ["text", textInput(MB << 20)],
    ["binary", binaryInput(MB << 20)],
  ];
  console.log(`input ${MB} MB; best of 3; ratio = ours / C`);
  for (const [kind, data] of inputs) {
    const file = `${dir}/${kind}`;
    await Deno.writeFile(file, data);
    for (
      const [tool, args] of [
        ["addcr", []],
        ["delcr", []],
        ["fixcrio", ["cat"]],
        ["recordio", ["cat"]],
      ] as [string, string[]][]
    ) {
      const c = cTool(tool);
      const ours = await best(oursArgv(tool, args), file);
      if (!c) {
        console.log(`${tool.padEnd(8)} ${kind.padEnd(6)} ours ${ours.toFixed(2)}s (no C ${tool})`);
        continue;
      }
      const theirs = await best([c, ...args], file);
      console.log(
        `${tool.padEnd(8)} ${kind.padEnd(6)} ours ${ours.toFixed(2)}s  C ${theirs.toFixed(2)}s  ` +
          `ratio ${(ours / theirs).toFixed(2)}  (${(MB / ours).toFixed(0)} vs ${
            (MB / theirs).toFixed(0)
          } MB/s)`,
      );
    }
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
