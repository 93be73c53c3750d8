/**
 * tcprules compiling 1,000,000 rules lines (100,000 with --quick): ours (the
 * real command through the multi-call entry, Deno start-up included) against
 * DJB's C tcprules, interleaved; checks that both cdbs are byte-identical.
 *
 *   deno run -A bench/tcprules_bench.ts [--quick] [--alternations N]
 */
import { alternate, emitRow, executable, oursArgv, pick } from "./support.ts";

const LINES = pick(1_000_000, 100_000);
const C_TCPRULES = "/usr/bin/tcprules";

function rulesText(n: number): Uint8Array {
  let seed = 12345;
  const rnd = (k: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % k;
  };
  const parts: string[] = [];
  for (let i = 0; i < n; i++) {
    const ip = `${rnd(256)}.${rnd(256)}.${rnd(256)}.${rnd(256)}`;
    switch (i % 8) {
      case 0:
        parts.push(`${ip}:deny`);
        break;
      case 1:
        parts.push(`${ip}:allow,RELAYCLIENT=""`);
        break;
      case 2:
        parts.push(`${rnd(256)}.${rnd(256)}.:allow,MAXCONNIP=/5/`);
        break;
      case 3:
        parts.push(`=host${i}.example.com:deny`);
        break;
      case 4:
        parts.push(`joe@${ip}:allow,X="y",Y=/z/`);
        break;
      case 5:
        parts.push(`=.d${i}.example.net:allow`);
        break;
      case 6:
        parts.push(`# comment ${i}`);
        break;
      default:
        parts.push(`${ip}:allow,TCPLOCALHOST="mail.example.com"`);
    }
  }
  return new TextEncoder().encode(parts.join("\n") + "\n");
}

/** Milliseconds for argv with stdin from `input`. */
async function timeRun(argv: string[], input: string): Promise<number> {
  const t0 = performance.now();
  const r = await new Deno.Command("/bin/sh", {
    args: ["-c", '"$@" < "$0"', input, ...argv],
    stdout: "null",
    stderr: "piped",
  }).output();
  const t = performance.now() - t0;
  if (r.code !== 0) throw new Error(`${argv.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
  return t;
}

const row = {
  id: "tcprules",
  label: `tcprules, ${LINES.toLocaleString("en")} lines`,
  unit: "ms",
  better: "lower" as const,
  note: "ours: one code path, shown under native; Deno start-up included; the cdbs compared",
};
const dir = await Deno.makeTempDir({ prefix: "bench-tcprules-" });
try {
  const input = `${dir}/rules.txt`;
  await Deno.writeFile(input, rulesText(LINES));
  const impls = [
    { id: "native", label: "ours", argv: oursArgv("tcprules", [`${dir}/o.cdb`, `${dir}/o.tmp`]) },
    ...(executable(C_TCPRULES)
      ? [{ id: "c", label: "C tcprules", argv: [C_TCPRULES, `${dir}/c.cdb`, `${dir}/c.tmp`] }]
      : []),
  ];
  const skipped: Record<string, string> = impls.length > 1 ? {} : { c: "no /usr/bin/tcprules" };
  const { samples, failed } = await alternate(
    "tcprules",
    impls,
    async (p) => ({ ms: await timeRun(p.argv, input) }),
  );
  if (impls.length > 1 && !Object.keys(failed).length) {
    const a = await Deno.readFile(`${dir}/o.cdb`);
    const b = await Deno.readFile(`${dir}/c.cdb`);
    const same = a.length === b.length && a.every((x, i) => x === b[i]);
    console.log(`  cdb ${a.length} bytes, identical to C's: ${same}`);
    if (!same) {
      failed.native = "cdb differs from C tcprules'";
      samples.delete("native");
    }
  }
  emitRow(row, "c", samples, "ms", { ...skipped, ...failed });
} finally {
  await Deno.remove(dir, { recursive: true });
}
