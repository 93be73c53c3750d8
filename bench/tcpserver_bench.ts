/**
 * tcpserver and its peers side by side (bench/support.ts SERVERS): ours on
 * the native and the pure path, DJB's C tcpserver (the reference), tcpsvd,
 * xinetd, socat and s6-tcpserver when present, each started with the same
 * settings. Rows: connections/s for /bin/echo at 1, 8 and 64 clients (64
 * with each server's default backlog and with 511), at 8 clients with a
 * 10,000-line rules database, the server's CPU per 1,000 connections (own,
 * and with its children), bulk MB/s (download, and through cat both ways),
 * the server's RSS and the server+children PSS holding 1,000 idle
 * connections. Interleaved, bounded, loopback only.
 *
 *   deno run -A bench/tcpserver_bench.ts [--quick] [--alternations N]
 */
import {
  alternate,
  connectOnce,
  cpuMs,
  emitRow,
  executable,
  holdIdle,
  load,
  openFilesLimit,
  oursArgv,
  pick,
  presentServers,
  processTree,
  rollupKb,
  S6_DIR,
  SERVERS,
  type ServerSpec,
  supporting,
  withServers,
} from "./support.ts";

const servers = presentServers();
/** Why each absent server has no value, in every row. */
const absent: Record<string, string> = Object.fromEntries(
  SERVERS.filter((p) => !servers.includes(p)).map((p) => [p.id, p.missing() ?? "absent"]),
);

const ECHO: ServerSpec = { program: ["/bin/echo", "ok"], limit: 200 };

/** Connection-rate measurement against a running server, with its CPU over the run. */
async function connRate(pid: number, host: string, port: number, clients: number) {
  const total = pick(clients === 1 ? 400 : 1500, 80);
  const before = cpuMs(pid);
  const r = await load(clients, total, pick(5, 1), async (_, signal) => {
    if ((await connectOnce(host, port, { signal })) !== 3) throw new Error("short answer");
  });
  const after = cpuMs(pid);
  if (r.failed) console.log(`    (${r.failed} failed connections)`);
  if (!r.done) throw new Error("no connection completed");
  return {
    rate: r.perSecond,
    own: ((after.own - before.own) / r.done) * 1000,
    all: ((after.own + after.children - before.own - before.children) / r.done) * 1000,
  };
}

async function connRows(
  spec: ServerSpec,
  rows: { id: string; label: string; clients: number; cpu?: boolean }[],
) {
  const skipped = { ...absent };
  await withServers(servers, spec, skipped, async (running, started) => {
    for (const row of rows) {
      const { samples, failed } = await alternate(row.id, started, (p) => {
        const s = running.get(p.id)!;
        return connRate(s.pid, s.host, s.port, row.clients);
      });
      const sk = { ...skipped, ...failed };
      emitRow(
        { id: row.id, label: row.label, unit: "conn/s", better: "higher" },
        "c",
        samples,
        "rate",
        sk,
      );
      if (row.cpu) {
        emitRow(
          {
            id: "cpu-own",
            label: "server CPU per 1,000 connections, own",
            unit: "ms",
            better: "lower",
            note: "from /proc/PID/stat utime+stime over the 8-client run (10 ms ticks)",
          },
          "c",
          samples,
          "own",
          sk,
        );
        emitRow(
          {
            id: "cpu-all",
            label: "server CPU per 1,000 connections, with children",
            unit: "ms",
            better: "lower",
            note: "adds cutime+cstime: the programs the server reaped",
          },
          "c",
          samples,
          "all",
          sk,
        );
      }
    }
  });
}

/** A 10,000-line rules file: a tcprules cdb and the same rules for ipsvd-cdb and s6. */
async function makeRules(
  dir: string,
): Promise<{ tcprules: string; ipsvd?: string; s6?: string }> {
  const lines: string[] = [];
  let seed = 7;
  const rnd = (k: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % k;
  };
  const inst = `${dir}/instruct`;
  await Deno.mkdir(inst);
  const ipsvdFiles: [string, string][] = [];
  for (let i = 0; lines.length < 9_999; i++) {
    const ip = `${10 + rnd(200)}.${rnd(256)}.${rnd(256)}.${rnd(256)}`;
    if (ipsvdFiles.some(([n]) => n === ip)) continue;
    lines.push(i % 3 ? `${ip}:allow,RELAYCLIENT="",N="${i}"` : `${ip}:deny`);
    ipsvdFiles.push([ip, i % 3 ? `+RELAYCLIENT=\n+N=${i}\n` : ""]);
  }
  lines.push(`127.0.0.1:allow,RELAYCLIENT="",N="local"`);
  ipsvdFiles.push(["127.0.0.1", "+RELAYCLIENT=\n+N=local\n"]);
  const text = `${dir}/rules.txt`;
  await Deno.writeTextFile(text, lines.join("\n") + "\n:allow\n");
  const cdb = `${dir}/rules.cdb`;
  const tcprules = (await Deno.stat("/usr/bin/tcprules").catch(() => null))
    ? ["/usr/bin/tcprules"]
    : oursArgv("tcprules");
  const r = await new Deno.Command("/bin/sh", {
    args: ["-c", '"$@" < "$0"', text, ...tcprules, cdb, `${cdb}.tmp`],
  }).output();
  if (!r.success) throw new Error("tcprules failed");
  const out: { tcprules: string; ipsvd?: string; s6?: string } = { tcprules: cdb };
  if (await Deno.stat("/usr/bin/ipsvd-cdb").catch(() => null)) {
    for (const [name, body] of ipsvdFiles) {
      // a deny is a file with neither read nor execute permission for the user
      await Deno.writeTextFile(`${inst}/${name}`, body, { mode: body ? 0o644 : 0o000 });
      if (!body) await Deno.chmod(`${inst}/${name}`, 0o000);
    }
    const ipsvd = `${dir}/ipsvd.cdb`;
    const q = await new Deno.Command("/usr/bin/ipsvd-cdb", {
      args: [ipsvd, `${ipsvd}.tmp`, inst],
    }).output();
    if (q.success) out.ipsvd = ipsvd;
  }
  // the same rules for s6-tcpserver-access, however ipsvd fared
  const s6 = await s6Rules(dir, ipsvdFiles);
  if (s6) out.s6 = s6;
  return out;
}

/**
 * The same rules as an s6-accessrules directory (ip4/A.B.C.D_32/allow with
 * env/, or deny; ip4/0.0.0.0_0/allow for the rest) compiled with s6's
 * s6-accessrules-cdb-from-fs, when it sits next to $S6_TCPSERVER.
 */
async function s6Rules(dir: string, rules: [string, string][]): Promise<string | null> {
  const compiler = executable(`${S6_DIR}/s6-accessrules-cdb-from-fs`);
  if (!S6_DIR || !compiler) return null;
  const root = `${dir}/s6rules`;
  for (const [ip, body] of [...rules, ["0.0.0.0_0", "+"] as [string, string]]) {
    const rule = `${root}/ip4/${ip.includes("_") ? ip : `${ip}_32`}`;
    await Deno.mkdir(`${rule}/env`, { recursive: true });
    if (!body) {
      await Deno.writeTextFile(`${rule}/deny`, "");
      continue;
    }
    await Deno.writeTextFile(`${rule}/allow`, "");
    for (const line of body.split("\n")) {
      // "+NAME=value": an envdir file whose first line is the value ("\n" alone: empty)
      const eq = line.indexOf("=");
      if (line.startsWith("+") && eq > 0) {
        await Deno.writeTextFile(`${rule}/env/${line.slice(1, eq)}`, `${line.slice(eq + 1)}\n`);
      }
    }
  }
  const cdb = `${dir}/s6rules.cdb`;
  const r = await new Deno.Command(compiler, { args: [cdb, root] }).output();
  return r.success ? cdb : null;
}

/** Bytes per second: one connection downloading (or sending through cat) `bytes`. */
async function bulkRows() {
  const down = pick(256, 16) << 20;
  const through = pick(128, 8) << 20;
  const data = new Uint8Array(through);
  const rows: [string, string, ServerSpec, (h: string, p: number) => Promise<number>, number][] = [
    [
      "mbs-download",
      `download ${down >> 20} MB (head -c from /dev/zero)`,
      { program: ["/usr/bin/head", "-c", String(down), "/dev/zero"], limit: 10 },
      (h, p) => connectOnce(h, p),
      down,
    ],
    [
      "mbs-cat",
      `through cat, ${through >> 20} MB both ways`,
      { program: ["/bin/cat"], limit: 10 },
      (h, p) => connectOnce(h, p, { send: data }),
      through,
    ],
  ];
  for (const [id, label, spec, one, bytes] of rows) {
    const skipped = { ...absent };
    await withServers(servers, spec, skipped, async (running, started) => {
      const { samples, failed } = await alternate(id, started, async (p) => {
        const s = running.get(p.id)!;
        const t0 = performance.now();
        const n = await one(s.host, s.port);
        if (n !== bytes) throw new Error(`got ${n} of ${bytes} bytes`);
        return { mbs: n / 1e6 / ((performance.now() - t0) / 1000) };
      });
      emitRow({ id, label, unit: "MB/s", better: "higher" }, "c", samples, "mbs", {
        ...skipped,
        ...failed,
      });
    });
  }
}

/** Memory holding n idle connections (program cat), a fresh server per measurement. */
async function idleRows() {
  const limitFiles = openFilesLimit();
  let n = pick(1000, 50);
  if (limitFiles < n * 2 + 100) {
    n = Math.max(10, Math.floor((limitFiles - 100) / 2));
    console.log(`open files limit ${limitFiles}: ${n} idle connections (raise it: ulimit -n 4096)`);
  }
  const spec: ServerSpec = { program: ["/bin/cat"], limit: n + 10 };
  const skipped = { ...absent };
  const peers = supporting(servers, spec, skipped);
  const { samples, failed } = await alternate("idle", peers, async (p) => {
    const s = await p.start(spec);
    try {
      const socks = await holdIdle(s.host, s.port, n);
      try {
        const rss = rollupKb(s.pid, "Rss") / 1024;
        const tree = processTree(s.root); // the front too, for ours on the native path
        const pss = tree.reduce((a, pid) => a + rollupKb(pid, "Pss"), 0) / 1024;
        return { rss, pss, procs: tree.length };
      } finally {
        for (const c of socks) c.destroy();
      }
    } finally {
      await s.stop();
    }
  });
  const sk = { ...skipped, ...failed };
  emitRow(
    {
      id: "rss-idle",
      label: `server RSS, ${n} idle connections`,
      unit: "MB",
      better: "lower",
      note: "Rss of the server process (/proc/PID/smaps_rollup), program cat",
    },
    "c",
    samples,
    "rss",
    sk,
  );
  emitRow(
    {
      id: "pss-idle",
      label: `server + children PSS, ${n} idle connections`,
      unit: "MB",
      better: "lower",
      note: "sum of Pss over the server and all its descendants",
    },
    "c",
    samples,
    "pss",
    sk,
  );
}

const t0 = performance.now();
await connRows(ECHO, [
  { id: "conn1", label: "conn/s, /bin/echo, 1 client", clients: 1 },
  { id: "conn8", label: "conn/s, /bin/echo, 8 clients", clients: 8, cpu: true },
  { id: "conn64", label: "conn/s, /bin/echo, 64 clients, default backlog", clients: 64 },
]);
await connRows({ ...ECHO, backlog: 511 }, [
  { id: "conn64-511", label: "conn/s, /bin/echo, 64 clients, backlog 511", clients: 64 },
]);
const dir = await Deno.makeTempDir({ prefix: "bench-rules-" });
try {
  const rules = await makeRules(dir);
  await connRows({ ...ECHO, rules }, [
    { id: "conn8-rules", label: "conn/s, 8 clients, 10,000-line rules cdb", clients: 8 },
  ]);
} finally {
  await Deno.remove(dir, { recursive: true });
}
await bulkRows();
await idleRows();
console.log(`tcpserver_bench: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
