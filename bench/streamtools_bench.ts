/**
 * The stream tools against DJB's C ones: start-up (`addcr < /dev/null`, 20
 * times in a row, ours through the multi-call entry) and throughput of addcr,
 * delcr, fixcrio and recordio on the same generated text (Deno start-up
 * counted), interleaved.
 *
 *   deno run -A bench/streamtools_bench.ts [--quick] [--alternations N]
 */
import { alternate, emitRow, executable, oursArgv, pick } from "./support.ts";

/** MB of input: the tools that pipe through a program (and recordio's log) get less. */
const MB = pick(64, 4), MB_PIPED = pick(16, 2);
const STARTS = 20;

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

/** Milliseconds for `times` runs of argv in a row, stdin from `file`, output discarded. */
async function time(argv: string[], file: string, times = 1): Promise<number> {
  const t0 = performance.now();
  const r = await new Deno.Command("/bin/bash", {
    args: [
      "-c",
      'n=$1 f=$2; shift 2; for ((i = 0; i < n; i++)); do "$@" < "$f" > /dev/null 2>&1 || exit 1; done',
      "bench",
      String(times),
      file,
      ...argv,
    ],
    stderr: "piped",
  }).output();
  if (!r.success) throw new Error(`${argv.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
  return performance.now() - t0;
}

/** Ours and C's for one tool, or only ours with the reason C's is missing. */
function impls(tool: string, args: string[]) {
  const c = executable(`/usr/bin/${tool}`);
  return {
    list: [
      { id: "native", label: `ours ${tool}`, argv: oursArgv(tool, args) },
      ...(c ? [{ id: "c", label: `C ${tool}`, argv: [c, ...args] }] : []),
    ],
    skipped: c ? {} : { c: `no /usr/bin/${tool} (apt-get install ucspi-tcp)` } as Record<
      string,
      string
    >,
  };
}

{
  const { list, skipped } = impls("addcr", []);
  const { samples, failed } = await alternate(
    "start-up",
    list,
    async (p) => ({ ms: (await time(p.argv, "/dev/null", STARTS)) / STARTS }),
  );
  emitRow(
    {
      id: "startup",
      label: `start-up, addcr < /dev/null (mean of ${STARTS})`,
      unit: "ms",
      better: "lower",
      note: "ours through the multi-call entry (deno run mod.ts, argv[0] addcr)",
    },
    "c",
    samples,
    "ms",
    { ...skipped, ...failed },
  );
}

const dir = await Deno.makeTempDir({ prefix: "bench-stream-" });
try {
  const files: Record<number, string> = {};
  for (const mb of new Set([MB, MB_PIPED])) {
    files[mb] = `${dir}/text${mb}`;
    await Deno.writeFile(files[mb], textInput(mb << 20));
  }
  for (
    const [tool, args] of [
      ["addcr", []],
      ["delcr", []],
      ["fixcrio", ["/bin/cat"]],
      ["recordio", ["/bin/cat"]],
    ] as [string, string[]][]
  ) {
    const { list, skipped } = impls(tool, args);
    const mb = args.length ? MB_PIPED : MB, file = files[mb];
    const { samples, failed } = await alternate(
      tool,
      list,
      async (p) => ({ mbs: mb / ((await time(p.argv, file)) / 1000) }),
    );
    emitRow(
      {
        id: `stream-${tool}`,
        label: `${
          [tool, ...args.map((a) => a.slice(a.lastIndexOf("/") + 1))].join(" ")
        }, ${mb} MB text`,
        unit: "MB/s",
        better: "higher",
      },
      "c",
      samples,
      "mbs",
      { ...skipped, ...failed },
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
