/**
 * The rblsmtpd flood: connections per second through `tcpserver ...
 * rblsmtpd -r rbl.test program` when 90% of the clients are listed. DJB's C
 * tcpserver with C rblsmtpd (the reference), ours (rblsmtpd in-process: a
 * blocked client costs no process) on both paths, and the peers that set
 * $TCPREMOTEIP (tcpsvd, s6-tcpserver) with C rblsmtpd; the same DNS server
 * (tests/support/dns_server.ts, needs root for port 53) and clients for all.
 *
 *   deno run -A bench/rblsmtpd_bench.ts [--quick] [--alternations N]
 */
import net from "node:net";
import { startDnsServer } from "../tests/support/dns_server.ts";
import {
  alternate,
  emitRow,
  executable,
  load,
  pick,
  presentServers,
  SERVERS,
  type ServerSpec,
  withServers,
} from "./support.ts";

const LISTED = "127.0.0.2";
const CLEAN = "127.0.0.3";
const PROGRAM = ["/bin/sh", "-c", "printf '220 sink\\r\\n'; read l; printf '221 sink\\r\\n'"];
const C_RBLSMTPD = "/usr/bin/rblsmtpd";

/** One SMTP client: greeting, QUIT, the 221, EOF. Resolves to the greeting's first line. */
function smtpClient(
  host: string,
  port: number,
  from: string,
  signal: AbortSignal,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port, localAddress: from });
    const abort = () => {
      sock.destroy();
      reject(new DOMException("aborted", "AbortError"));
    };
    if (signal.aborted) return abort();
    signal.addEventListener("abort", abort, { once: true });
    sock.on("close", () => signal.removeEventListener("abort", abort));
    let data = "";
    let quitSent = false;
    sock.setEncoding("latin1");
    sock.on("data", (d: string) => {
      data += d;
      if (!quitSent && data.includes("\r\n")) {
        quitSent = true;
        sock.write("QUIT\r\n");
      }
    });
    sock.on("end", () => {
      sock.destroy();
      resolve(data.slice(0, data.indexOf("\r\n")));
    });
    sock.on("error", reject);
  });
}

const row = {
  id: "rblsmtpd",
  label: "rblsmtpd flood, 90% listed, 20 clients",
  unit: "conn/s",
  better: "higher" as const,
  note: "C column: C tcpserver + C rblsmtpd; ours: rblsmtpd in-process; peers run C rblsmtpd",
};

const servers = presentServers(SERVERS);
const skipped: Record<string, string> = Object.fromEntries(
  SERVERS.filter((p) => !servers.includes(p)).map((p) => [p.id, p.missing() ?? "absent"]),
);
if (!executable(C_RBLSMTPD)) {
  console.log("skip: no /usr/bin/rblsmtpd (apt-get install ucspi-tcp): no reference");
  emitRow(row, "c", new Map(), "rate", { ...skipped, c: "no C rblsmtpd" });
  Deno.exit(0);
}
if (Deno.uid() !== 0) {
  console.log("skip: the DNS server needs root (port 53)");
  emitRow(row, "c", new Map(), "rate", { ...skipped, c: "not root (DNS server on port 53)" });
  Deno.exit(0);
}

const dns = await startDnsServer({ "2.0.0.127.rbl.test": { TXT: ["listed by rbl.test"] } });
try {
  const b = crypto.getRandomValues(new Uint8Array(2));
  const host = `127.26.${b[0]}.${(b[1] % 250) + 2}`;
  const total = pick(1000, 100), concurrency = 20;
  const spec: ServerSpec = {
    host,
    program: [C_RBLSMTPD, "-r", "rbl.test", ...PROGRAM],
    // ours: the in-process stage, whatever PATH finds
    ourProgram: ["rblsmtpd", "-r", "rbl.test", ...PROGRAM],
    ourEnv: { UCSPI_CHAIN: "force" },
    env: { PATH: "/usr/bin:/bin", DNSCACHEIP: dns.address },
    limit: concurrency * 2,
    needsUcspiEnv: true,
  };
  await withServers(servers, spec, skipped, async (running, started) => {
    const { samples, failed } = await alternate(row.id, started, async (p) => {
      const s = running.get(p.id)!;
      let blocked = 0;
      const r = await load(concurrency, total, pick(10, 3), async (i, signal) => {
        const from = i % 10 === 0 ? CLEAN : LISTED;
        const greeting = await smtpClient(s.host, s.port, from, signal);
        if (greeting.startsWith("220 rblsmtpd")) blocked++;
        else if (!greeting.startsWith("220 sink")) throw new Error(`greeting ${greeting}`);
      });
      // every listed client must have been blocked, or the row measures nothing
      if (r.failed || blocked < r.done * 0.85) {
        throw new Error(`${r.failed} failed, ${blocked} of ${r.done} blocked`);
      }
      return { rate: r.perSecond };
    });
    emitRow(row, "c", samples, "rate", { ...skipped, ...failed });
  });
} finally {
  await dns.close();
}
