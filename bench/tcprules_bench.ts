/**
 * Compile time of 1,000,000 rules lines: our tcprules (the real command, Deno
 * start-up included) against DJB's C tcprules in the same run, best of 3.
 * Prints the times and the ratio (our time / C time: how many times slower we
 * are) and checks that both cdbs are byte-identical.
 */
import { fileURLToPath } from "node:url";

const MOD = fileURLToPath(new URL("../mod.ts", import.meta.url));
const LINES = Number(Deno.env.get("BENCH_RULES") ?? 1_000_000);

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

async function timeRun(argv: string[], input: string): Promise<number> {
  const t0 = performance.now();
  const r = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const file = await Deno.open(input);
  await file.readable.pipeTo(r.stdin);
  const out = await r.output();
  const t = performance.now() - t0;
  if (out.code !== 0) throw new Error(`${argv.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return t;
}

const dir = await Deno.makeTempDir({ prefix: "tcprules-bench-" });
try {
  const input = `${dir}/rules.txt`;
  await Deno.writeFile(input, rulesText(LINES));
  const c = ["/usr/bin/tcprules", `${dir}/c.cdb`, `${dir}/c.tmp`];
  const ours = [Deno.execPath(), "run", "-A", MOD, "tcprules", `${dir}/o.cdb`, `${dir}/o.tmp`];
  const haveC = (() => {
    try {
      return Deno.statSync(c[0]).isFile;
    } catch {
      return false;
    }
  })();
  let best = Infinity, bestC = Infinity;
  for (let i = 0; i < 3; i++) {
    best = Math.min(best, await timeRun(ours, input));
    if (haveC) bestC = Math.min(bestC, await timeRun(c, input));
  }
  const size = (await Deno.stat(`${dir}/o.cdb`)).size;
  console.log(`tcprules, ${LINES} lines -> ${size} byte cdb (best of 3)`);
  console.log(`  ours : ${best.toFixed(0)} ms`);
  if (haveC) {
    const a = await Deno.readFile(`${dir}/o.cdb`);
    const b = await Deno.readFile(`${dir}/c.cdb`);
    const same = a.length === b.length && a.every((x, i) => x === b[i]);
    console.log(`  C    : ${bestC.toFixed(0)} ms`);
    console.log(`  ratio: ours/C = ${(best / bestC).toFixed(2)} (times slower than C)`);
    console.log(`  cdb bytes identical: ${same}`);
  } else console.log("  C tcprules not installed: no ratio");
} finally {
  await Deno.remove(dir, { recursive: true });
}
