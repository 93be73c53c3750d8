/** Runs every bench/*_bench.ts in turn; each prints its own table. */
import { fileURLToPath } from "node:url";

const dir = fileURLToPath(new URL(".", import.meta.url));
const benches = [...Deno.readDirSync(dir)]
  .map((e) => e.name)
  .filter((n) => n.endsWith("_bench.ts"))
  .sort();
let failed = 0;
for (const name of benches) {
  console.log(`== ${name}`);
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${dir}${name}`],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (r.code !== 0) {
    console.log(`${name}: exit ${r.code}`);
    failed++;
  }
}
Deno.exit(failed ? 1 : 0);
