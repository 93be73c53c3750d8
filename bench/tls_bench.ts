/**
 * TLS: our sslserver against Debian's stunnel4 (the reference: what an admin
 * puts in front of a plain server), each running a program per connection
 * with the same certificate: handshakes per second at 1 and 8 clients
 * (RSA-2048 and ECDSA P-256, program /bin/true) and bulk MB/s both ways
 * (a 32 MB file sent by `cat`, and received by `cat > /dev/null`): on a
 * fresh server's first connection, and on its second (a running server's
 * case). The first connects once the bench's readiness probe got through
 * (support.ts waitAccepting), so it may also wait for what the server
 * still does before its first accept (for ours loading the connection's modules and its TLS
 * warm-up, lib/tls/warm_up.ts) and pays the process's first uses (the first
 * program spawned, code compiled on the path). The client is node:tls in
 * this process, the same for both.
 *
 * The bulk rows also give the server's own CPU time for the second
 * transfer (utime+stime from /proc, the TLS work; the programs are not
 * counted): steadier than MB/s on a busy machine.
 *
 *   deno run -A bench/tls_bench.ts [--quick] [--alternations N] [--bulk] [--mb N]
 *
 * --bulk: only the bulk rows; --mb N: transfers of N MB (default 32).
 */
import tls from "node:tls";
import {
  alternate,
  cpuMs,
  emitRow,
  executable,
  freePort,
  HOST,
  NATIVE,
  oursArgv,
  pick,
  type Server,
  spawnServer,
} from "./support.ts";

const STUNNEL = executable("/usr/bin/stunnel4");
const OPENSSL = executable("/usr/bin/openssl");
const HANDSHAKES = pick(400, 60);
const mbAt = Deno.args.indexOf("--mb");
const BULK_MB = mbAt >= 0 ? Math.max(1, Number(Deno.args[mbAt + 1]) || 32) : pick(32, 8);
/** --bulk: only the bulk rows (what a TLS record path change moves). */
const BULK_ONLY = Deno.args.includes("--bulk");

/** The reference column's id (bench/run.ts adds the column). */
export const STUNNEL_ID = "stunnel";

const dir = await Deno.makeTempDir({ prefix: "ucspi-tls-bench-" });

async function run(argv: string[]): Promise<void> {
  const r = await new Deno.Command(argv[0], { args: argv.slice(1), stderr: "piped" }).output();
  if (!r.success) throw new Error(`${argv.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
}

/** A self-signed certificate and key of kind rsa or ec, in dir. */
async function makeCert(kind: "rsa" | "ec"): Promise<{ cert: string; key: string }> {
  const cert = `${dir}/${kind}.crt`;
  const key = `${dir}/${kind}.key`;
  const alg = kind === "rsa"
    ? ["-newkey", "rsa:2048"]
    : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
  await run([
    OPENSSL!,
    "req",
    "-x509",
    ...alg,
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "2",
    "-subj",
    "/CN=localhost",
  ]);
  return { cert, key };
}

/** A program file (for stunnel's exec=, which takes no shell words). */
async function script(name: string, body: string): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return path;
}

interface Contender {
  id: string;
  label: string;
  start(cert: { cert: string; key: string }, program: string): Promise<Server>;
}

const OURS: Contender = {
  id: NATIVE.id,
  label: "ours sslserver",
  start: (c, program) => {
    const port = freePort(HOST);
    return spawnServer(
      oursArgv("sslserver", ["-RHl0", "-c", "100", HOST, String(port), program]),
      HOST,
      port,
      { CERTFILE: c.cert, KEYFILE: c.key },
    );
  },
};

const STUNNEL_PEER: Contender = {
  id: STUNNEL_ID,
  label: "stunnel4",
  start: async (c, program) => {
    const port = freePort(HOST);
    const conf = `${dir}/stunnel-${port}.conf`;
    await Deno.writeTextFile(
      conf,
      `foreground = yes\npid =\n[b]\naccept = ${HOST}:${port}\ncert = ${c.cert}\nkey = ${c.key}\nexec = ${program}\n`,
    );
    return spawnServer([STUNNEL!, conf], HOST, port);
  },
};

/** One TLS connection: handshake, then send `upload`, read to the end; bytes received. */
function session(port: number, upload?: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    const s = tls.connect({ host: HOST, port, rejectUnauthorized: false }, () => {
      if (upload) s.end(upload);
      else s.end();
    });
    s.on("data", (d: Uint8Array) => (bytes += d.length));
    s.on("close", () => resolve(bytes));
    s.on("error", reject);
  });
}

async function handshakesPerSecond(port: number, clients: number): Promise<number> {
  let started = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    while (started < HANDSHAKES) {
      started++;
      await session(port);
    }
  }));
  return HANDSHAKES / ((performance.now() - t0) / 1000);
}

const skipped: Record<string, string> = {};
const contenders: Contender[] = [];
if (!OPENSSL) skipped[NATIVE.id] = "no /usr/bin/openssl (for the certificates)";
else contenders.push(OURS);
if (!STUNNEL || !OPENSSL) skipped[STUNNEL_ID] = "no /usr/bin/stunnel4 (apt-get install stunnel4)";
else contenders.push(STUNNEL_PEER);

try {
  const certs = OPENSSL ? { rsa: await makeCert("rsa"), ec: await makeCert("ec") } : null;
  const bulk = new Uint8Array(BULK_MB << 20);
  for (let i = 0; i < bulk.length; i += 4096) bulk[i] = i & 0xff;
  const bulkFile = `${dir}/bulk`;
  await Deno.writeFile(bulkFile, bulk);
  const send = await script("send", `exec cat ${bulkFile}`);
  const sink = await script("sink", "exec cat > /dev/null");

  const handshakeRows = BULK_ONLY ? [] : [["rsa", [1, 8]], ["ec", [8]]] as const;
  for (const [kind, clientsList] of handshakeRows) {
    for (const clients of clientsList) {
      const { samples, failed } = await alternate(
        `tls ${kind} ${clients}`,
        contenders,
        async (c) => {
          const s = await c.start(certs![kind], "/bin/true");
          try {
            return { hs: await handshakesPerSecond(s.port, clients) };
          } finally {
            await s.stop();
          }
        },
      );
      emitRow(
        {
          id: `tls-hs${clients}-${kind}`,
          label: `TLS handshakes/s, ${clients} client${clients > 1 ? "s" : ""}, ${
            kind === "rsa" ? "RSA-2048" : "ECDSA P-256"
          }`,
          unit: "hs/s",
          better: "higher",
          note: "tls: ours is sslserver (node:tls); stunnel4 is the reference; program /bin/true",
        },
        STUNNEL_ID,
        samples,
        "hs",
        { ...skipped, ...failed },
      );
    }
  }

  /** MB/s of one transfer through server s, and the server's own CPU ms for it. */
  const transfer = async (s: Server, upload?: Uint8Array) => {
    const cpu0 = cpuMs(s.pid).own;
    const t0 = performance.now();
    const got = await session(s.port, upload);
    const mbs = BULK_MB / ((performance.now() - t0) / 1000);
    const cpu = cpuMs(s.pid).own - cpu0;
    if (!upload && got !== bulk.length) {
      throw new Error(`downloaded ${got} of ${bulk.length} bytes`);
    }
    return { mbs, cpu };
  };
  /** The first and the second transfer through a fresh server running program. */
  const twice = async (c: Contender, program: string, upload?: Uint8Array) => {
    const s = await c.start(certs!.rsa, program);
    try {
      const first = await transfer(s, upload);
      return { first, second: await transfer(s, upload) };
    } finally {
      await s.stop();
    }
  };
  const { samples, failed } = await alternate("tls bulk", contenders, async (c) => {
    const d = await twice(c, send);
    const u = await twice(c, sink, bulk);
    return {
      down: d.second.mbs,
      up: u.second.mbs,
      downFirst: d.first.mbs,
      upFirst: u.first.mbs,
      downCpu: d.second.cpu,
      upCpu: u.second.cpu,
    };
  });
  const running = "tls bulk: the second transfer through a fresh server (a running server's case)";
  const first = "tls bulk first: the first transfer, begun once a readiness probe got through " +
    "(it may wait in the backlog while the server finishes starting): a restart's cost";
  const rows = [
    ["down", "tls-down", `TLS download ${BULK_MB} MB, RSA-2048`, running],
    ["up", "tls-up", `TLS upload ${BULK_MB} MB, RSA-2048`, running],
    [
      "downFirst",
      "tls-down-first",
      `TLS download ${BULK_MB} MB, first connection after start`,
      first,
    ],
    ["upFirst", "tls-up-first", `TLS upload ${BULK_MB} MB, first connection after start`, first],
  ] as const;
  for (const [key, id, label, note] of rows) {
    emitRow(
      {
        id,
        label,
        unit: "MB/s",
        better: "higher",
        note,
      },
      STUNNEL_ID,
      samples,
      key,
      { ...skipped, ...failed },
    );
  }
  for (const [key, what] of [["downCpu", "download"], ["upCpu", "upload"]] as const) {
    emitRow(
      {
        id: `tls-${key.toLowerCase()}`,
        label: `TLS ${what} ${BULK_MB} MB, server CPU`,
        unit: "ms",
        better: "lower",
        note: "tls CPU: the server process's own utime+stime over the transfer (not its programs')",
      },
      STUNNEL_ID,
      samples,
      key,
      { ...skipped, ...failed },
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
