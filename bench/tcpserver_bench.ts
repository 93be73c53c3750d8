/**
 * tcpserver benchmark, ours against DJB's C tcpserver in the same run:
 * connections per second for a trivial program at 1, 8 and 64 concurrent
 * clients, MB/s of a bulk transfer to the client (and through `cat` both
 * ways), and the server's RSS holding 1,000 idle connections. Prints a table
 * with the ratio ours/C, for our native path (lib/native.ts, the default
 * with -A) and for the pure-Deno path (UCSPI_NATIVE=0). Bounded in count
 * and time; loopback only.
 *
 *   deno run -A bench/tcpserver_bench.ts [--quick] [--native-only]
 */
import net from "node:net";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const MOD = `${ROOT}mod.ts`;
const C = "/usr/bin/tcpserver";
const quick = Deno.args.includes("--quick");
const nativeOnly = Deno.args.includes("--native-only");

/** ours: the native path; pure: ours with UCSPI_NATIVE=0; c: DJB's. */
type Which = "ours" | "pure" | "c";

interface Server {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

async function start(which: Which, args: string[]): Promise<Server> {
  const argv = which !== "c"
    ? ["bash", "-c", `exec -a tcpserver "${Deno.execPath()}" run -A "${MOD}" "$@"`, "tcpserver"]
    : [C];
  const child = new Deno.Command(argv[0], {
    args: [...argv.slice(1), "-1", "-RHq", "-l0", ...args],
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
    env: { UCSPI_NATIVE: which === "pure" ? "0" : "1" },
  }).spawn();
  const reader = child.stdout.getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${which} tcpserver did not start`);
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return {
    port: Number(out.trim()),
    pid: child.pid,
    async stop() {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    },
  };
}

/** One connection: read to EOF; resolves with the byte count. */
function fetchAll(port: number, send?: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    const s = net.connect({ host: "127.0.0.1", port });
    s.on("connect", () => {
      if (send) s.end(send);
      else s.end();
    });
    s.on("data", (d: Uint8Array) => (n += d.length));
    s.on("error", reject);
    s.on("close", () => resolve(n));
  });
}

async function connRate(which: Which, concurrency: number): Promise<number> {
  const srv = await start(which, ["-c", "200", "127.0.0.1", "0", "true"]);
  try {
    await fetchAll(srv.port);
    const total = quick ? 200 : concurrency === 1 ? 500 : 2000;
    const deadline = performance.now() + (quick ? 3000 : 10000);
    let done = 0;
    let next = 0;
    const t0 = performance.now();
    const worker = async () => {
      while (next < total && performance.now() < deadline) {
        next++;
        await fetchAll(srv.port);
        done++;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return done / ((performance.now() - t0) / 1000);
  } finally {
    await srv.stop();
  }
}

/** Bytes per second of `program` output read by one client. */
async function download(which: Which, bytes: number): Promise<number> {
  const srv = await start(which, ["127.0.0.1", "0", "head", "-c", String(bytes), "/dev/zero"]);
  try {
    const t0 = performance.now();
    const n = await fetchAll(srv.port);
    if (n !== bytes) throw new Error(`${which}: got ${n} of ${bytes}`);
    return n / ((performance.now() - t0) / 1000);
  } finally {
    await srv.stop();
  }
}

/** Bytes per second sent through `cat` and back. */
async function echo(which: Which, bytes: number): Promise<number> {
  const srv = await start(which, ["127.0.0.1", "0", "cat"]);
  try {
    const data = new Uint8Array(bytes);
    const t0 = performance.now();
    const n = await fetchAll(srv.port, data);
    if (n !== bytes) throw new Error(`${which}: got ${n} of ${bytes}`);
    return n / ((performance.now() - t0) / 1000);
  } finally {
    await srv.stop();
  }
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return m ? Number(m[1]) : NaN;
}

/** The server process's RSS in kB while it holds n idle connections (program: cat). */
async function idleRss(which: Which, n: number): Promise<number> {
  const srv = await start(which, ["-c", String(n + 10), "127.0.0.1", "0", "cat"]);
  const socks: net.Socket[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.connect({ host: "127.0.0.1", port: srv.port });
      s.on("error", () => {});
      await new Promise((r) => s.once("connect", r));
      socks.push(s);
    }
    // every connection answers once its program runs: then all are set up
    await Promise.all(socks.map((s) =>
      new Promise<void>((r) => {
        s.once("data", () => r());
        s.write("x");
      })
    ));
    return rssKb(srv.pid);
  } finally {
    for (const s of socks) s.destroy();
    await srv.stop();
  }
}

const rows: Array<[string, number, number, number, string]> = [];
const haveC = (() => {
  try {
    return Deno.statSync(C).isFile;
  } catch {
    return false;
  }
})();
async function row(name: string, unit: string, f: (w: Which) => Promise<number>) {
  const o = await f("ours");
  const p = nativeOnly ? NaN : await f("pure");
  const c = haveC ? await f("c") : NaN;
  rows.push([name, o, p, c, unit]);
  const n = (x: number) => x.toFixed(1).padStart(9);
  console.log(
    `${name.padEnd(34)} native ${n(o)} pure ${n(p)} C ${n(c)} ${unit.padEnd(7)} ratio native ${
      (o / c).toFixed(2)
    } pure ${(p / c).toFixed(2)}`,
  );
}

if (!haveC) console.log("C tcpserver not installed: ratios are NaN");
for (const c of [1, 8, 64]) {
  await row(`conn/s, program true, ${c} clients`, "conn/s", (w) => connRate(w, c));
}
const big = quick ? 64 << 20 : 1 << 30;
await row(
  `download ${big >> 20} MB (head /dev/zero)`,
  "MB/s",
  async (w) => (await download(w, big)) / 1e6,
);
const mid = quick ? 32 << 20 : 256 << 20;
await row(`through cat ${mid >> 20} MB both ways`, "MB/s", async (w) => (await echo(w, mid)) / 1e6);
const idle = quick ? 200 : 1000;
await row(`server RSS, ${idle} idle connections`, "kB", (w) => idleRss(w, idle));
