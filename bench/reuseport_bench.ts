/**
 * Using both cores: connections per second through 2 (or --procs N) of our
 * tcpserver processes sharing one port with SO_REUSEPORT ($REUSEPORT)
 * against 1 process, for /bin/echo at 16 clients, on the native and the pure
 * path. The ratio is N processes / 1 (C tcpserver has no SO_REUSEPORT).
 *
 *   deno run -A bench/reuseport_bench.ts [--quick] [--alternations N] [--procs N]
 */
import {
  alternate,
  connectOnce,
  emitRow,
  freePort,
  HOST,
  listeningInodes,
  load,
  NATIVE,
  type Peer,
  pick,
  PURE,
  type Server,
  type ServerSpec,
} from "./support.ts";

const procsAt = Deno.args.indexOf("--procs");
const PROCS = procsAt >= 0 ? Math.max(2, Number(Deno.args[procsAt + 1]) || 2) : 2;
const CLIENTS = 16;

/** n processes of peer on one port with $REUSEPORT, all of them listening. */
async function group(peer: Peer, n: number): Promise<Server[]> {
  const port = freePort(HOST);
  const spec: ServerSpec = {
    program: ["/bin/echo", "ok"],
    limit: 200,
    port,
    env: { REUSEPORT: "1" },
  };
  const out: Server[] = [];
  for (let i = 0; i < n; i++) out.push(await peer.start(spec));
  for (let i = 0; listeningInodes(port).length < n; i++) {
    if (i > 500) throw new Error(`${n} processes but ${listeningInodes(port).length} listeners`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return out;
}

const sets: { id: string; label: string; peer: Peer; procs: number; servers: Server[] }[] = [];
try {
  for (const peer of [NATIVE, PURE]) {
    for (const procs of [1, PROCS]) {
      sets.push({
        id: `${peer.id}${procs}`,
        label: `${peer.label} x${procs}`,
        peer,
        procs,
        servers: await group(peer, procs),
      });
    }
  }
  const { samples, failed } = await alternate("reuseport", sets, async (s) => {
    const port = s.servers[0].port;
    const r = await load(CLIENTS, pick(1500, 150), pick(5, 1.5), async (_, signal) => {
      if ((await connectOnce(HOST, port, { signal })) !== 3) throw new Error("short answer");
    });
    if (r.failed) console.log(`    (${r.failed} failed connections)`);
    return { rate: r.perSecond };
  });
  const rows = new Map<string, Record<string, number>[]>();
  const refs: Record<string, number[]> = {};
  const skipped: Record<string, string> = { ...failed };
  for (const peer of [NATIVE, PURE]) {
    const one = samples.get(`${peer.id}1`), many = samples.get(`${peer.id}${PROCS}`);
    if (one && many) {
      rows.set(peer.id, many);
      refs[peer.id] = one.map((x) => x.rate);
    } else skipped[peer.id] = failed[`${peer.id}1`] ?? failed[`${peer.id}${PROCS}`] ?? "failed";
  }
  emitRow(
    {
      id: "reuseport",
      label: `$REUSEPORT, ${PROCS} processes / 1, /bin/echo, ${CLIENTS} clients`,
      unit: "conn/s",
      better: "higher",
      note: `ratio: ${PROCS} processes sharing the port / 1 process of the same path; ` +
        `absolute: ${PROCS} processes`,
    },
    "native",
    rows,
    "rate",
    skipped,
    refs,
  );
} finally {
  for (const s of sets) for (const srv of s.servers) await srv.stop();
}
