/**
 * deno task fuzz [--seconds N] [--seed N] [--target NAME]: runs every fuzz
 * target in tests/fuzz/ (or one) with fresh seeds for N seconds each (default
 * 60), and prints the seed and input of any failure. With --seed, runs that
 * seed only (to reproduce a failure). Exits 1 when anything failed.
 */
import { describeFailure, fuzz, type FuzzTarget } from "../tests/support/fuzz.ts";

const args = Deno.args;
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const seconds = Number(opt("--seconds") ?? 60);
const fixedSeed = opt("--seed");
const only = opt("--target");

const dir = new URL("../tests/fuzz/", import.meta.url);
const targets: FuzzTarget[] = [];
for (const entry of [...Deno.readDirSync(dir)].sort((a, b) => a.name.localeCompare(b.name))) {
  if (!entry.name.endsWith("_test.ts")) continue;
  const mod = await import(new URL(entry.name, dir).href);
  if (mod.target && (!only || mod.target.name === only)) targets.push(mod.target);
}
if (targets.length === 0) {
  console.error(`fuzz: no target${only ? ` named ${only}` : ""} in tests/fuzz/`);
  Deno.exit(2);
}

let failed = 0;
for (const target of targets) {
  const end = Date.now() + seconds * 1000;
  let runs = 0;
  let broke = false;
  while (Date.now() < end) {
    const seed = fixedSeed !== undefined ? Number(fixedSeed) : (Math.random() * 2 ** 31) >>> 0;
    const failure = await fuzz(target, { seed, iterations: 5000, timeMs: end - Date.now() });
    runs++;
    if (failure) {
      console.log(describeFailure(failure));
      failed++;
      broke = true;
      break;
    }
    if (fixedSeed !== undefined) break;
  }
  console.log(`fuzz ${target.name}: ${runs} seed(s), ${broke ? "FAILED" : "ok"}`);
}
Deno.exit(failed ? 1 : 0);
