/**
 * Using all cores: connections per second through 1 tcpserver process
 * against 2 (or --procs N) processes sharing one port with SO_REUSEPORT
 * ($REUSEPORT), for a trivial program. Bounded: a fixed number of
 * connections per run, at a fixed concurrency, loopback only.
 *
 *   deno run -A bench/reuseport_bench.ts [--quick] [--procs N]
 */
import net from "node:net";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const MOD = `${ROOT}mod.ts`;
const quick = Deno.args.includes("--quick");
const procsAt = Deno.args.indexOf("--procs");
const PROCS = procsAt >= 0 ? Math.max(2, Number(Deno.args[procsAt + 1]) || 2) : 2;
const CONNECTIONS = quick ? 300 : 1500;
const CONCURRENCY = 16;

interface Server {
  port: number;
  stop(): Promise<void>;
}

async function start(port: number, program: string[]): Promise<Server> {
  const child = new Deno.Command("bash", {
    args: [
      "-c",
      `exec -a tcpserver "${Deno.execPath()}" run -A "${MOD}" "$@"`,
      "tcpserver",
      "-1",
      "-RHq",
      "-l0",
      "-c",
      "200",
      "127.0.0.1",
      String(port),
      ...program,
    ],
    env: { REUSEPORT: "1" },
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("tcpserver did not start");
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return {
    port: Number(out.trim()),
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
    },
  };
}

/** One connection: read until the server closes; resolves the bytes read. */
function one(port: number): Promise<number> {
  return new Promise((resolve) => {
    let n = 0;
    const s = net.connect({ host: "127.0.0.1", port });
    s.on("data", (c: Uint8Array) => (n += c.length));
    s.on("error", () => resolve(-1));
    s.on("close", () => resolve(n));
  });
}

/** CONNECTIONS connections, CONCURRENCY at a time: connections per second. */
async function rate(port: number): Promise<{ perSecond: number; failed: number }> {
  let next = 0, failed = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < CONNECTIONS) {
      next++;
      if ((await one(port)) <= 0) failed++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { perSecond: CONNECTIONS / ((performance.now() - t0) / 1000), failed };
}

const PROGRAM = ["echo", "hello"];
const rows: string[] = [];
const single = await start(0, PROGRAM);
await rate(single.port); // warm up
const r1 = await rate(single.port);
await single.stop();

const first = await start(0, PROGRAM);
const group = [first];
for (let i = 1; i < PROCS; i++) group.push(await start(first.port, PROGRAM));
await rate(first.port);
const rN = await rate(first.port);
for (const s of group) await s.stop();

rows.push(
  `cores: ${navigator.hardwareConcurrency}, connections per run: ${CONNECTIONS}, ` +
    `concurrency: ${CONCURRENCY}, program: ${PROGRAM.join(" ")}`,
);
rows.push(`1 process:   ${r1.perSecond.toFixed(0)} connections/s (failed ${r1.failed})`);
rows.push(
  `${PROCS} processes: ${rN.perSecond.toFixed(0)} connections/s (failed ${rN.failed})`,
);
rows.push(`ratio ${PROCS}/1: ${(rN.perSecond / r1.perSecond).toFixed(2)}`);
console.log(rows.join("\n"));
