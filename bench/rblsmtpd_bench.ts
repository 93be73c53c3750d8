/**
 * Connections per second through `tcpserver -x rules.cdb ... rblsmtpd -r
 * rbl.test program` when 90% of the clients are listed: DJB's C tcpserver and
 * rblsmtpd against ours (rblsmtpd in-process: a blocked client costs no
 * process), in the same run, with the same DNS server, rules and clients.
 * Prints both rates and their ratio (ours / C; above 1 means we are faster).
 *
 *   deno run -A bench/rblsmtpd_bench.ts [CONNECTIONS] [CONCURRENCY]
 */
import net from "node:net";
import { TOOLS } from "../cli/tools.ts";
import { startDnsServer } from "../tests/dns_server.ts";
import { cTool, DENO, MOD, startDaemon } from "../tests/helpers.ts";

const TOTAL = Number(Deno.args[0] ?? 1000);
const CONCURRENCY = Number(Deno.args[1] ?? 20);
const LISTED = "127.0.0.2";
const CLEAN = "127.0.0.3";
const PROGRAM = ["/bin/sh", "-c", "printf '220 sink\\r\\n'; read l; printf '221 sink\\r\\n'"];

function ownAddress(): string {
  const b = crypto.getRandomValues(new Uint8Array(2));
  return `127.26.${b[0]}.${(b[1] % 250) + 2}`;
}

/** One SMTP client: greeting, QUIT, the 221, EOF. Resolves to the greeting's first line. */
function client(host: string, port: number, from: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port, localAddress: from });
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

async function measure(
  label: string,
  tcpserver: string[],
  rblsmtpd: string,
  env: Record<string, string>,
) {
  const address = ownAddress();
  const port = 2526;
  const server = await startDaemon(
    [
      ...tcpserver,
      "-v",
      "-R",
      "-H",
      "-c",
      String(CONCURRENCY * 2),
      "-x",
      env.RULES,
      address,
      String(port),
      rblsmtpd,
      "-r",
      "rbl.test",
      ...PROGRAM,
    ],
    env,
    /status: 0\//,
  );
  try {
    // warm up (Deno compiles, caches fill)
    await Promise.all([client(address, port, LISTED), client(address, port, CLEAN)]);
    let next = 0;
    let blocked = 0;
    const t0 = performance.now();
    const worker = async () => {
      while (next < TOTAL) {
        const i = next++;
        const greeting = await client(address, port, i % 10 === 0 ? CLEAN : LISTED);
        if (greeting.startsWith("220 rblsmtpd")) blocked++;
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const secs = (performance.now() - t0) / 1000;
    const rate = TOTAL / secs;
    console.log(
      `${label.padEnd(34)} ${TOTAL} connections (${blocked} blocked) in ${secs.toFixed(2)} s: ` +
        `${rate.toFixed(0)} conn/s`,
    );
    return rate;
  } finally {
    await server.stop();
  }
}

const dns = await startDnsServer({ "2.0.0.127.rbl.test": { TXT: ["listed by rbl.test"] } });
const tmp = await Deno.makeTempDir({ prefix: "rblbench-" });
try {
  const rules = `${tmp}/rules.cdb`;
  const mk = await new Deno.Command(DENO, {
    args: ["run", "-A", MOD, "tcprules", rules, `${tmp}/rules.tmp`],
    stdin: "piped",
  }).spawn();
  const w = mk.stdin.getWriter();
  await w.write(new TextEncoder().encode('127.0.0.3:allow,CLEAN="1"\n:allow\n'));
  await w.close();
  if (!(await mk.status).success) throw new Error("tcprules failed");
  const env = { PATH: "/usr/bin:/bin", DNSCACHEIP: dns.address, RULES: rules };

  let cRate: number | null = null;
  const cServer = cTool("tcpserver"), cRbl = cTool("rblsmtpd");
  if (cServer && cRbl) cRate = await measure("C tcpserver + C rblsmtpd", [cServer], cRbl, env);
  else console.log("skip C: ucspi-tcp not installed");

  let ourRate: number | null = null;
  if ("tcpserver" in TOOLS) {
    ourRate = await measure(
      "ours (rblsmtpd in-process)",
      ["/bin/bash", "-c", `exec -a tcpserver "${DENO}" run -A "${MOD}" "$@"`, "tcpserver"],
      "rblsmtpd",
      // rblsmtpd is not on this PATH (/bin is often /usr/bin, holding the C one): ours
      { ...env, PATH: "/nonexistent" },
    );
  } else console.log("skip ours: tcpserver not built yet");

  if (cRate && ourRate) {
    console.log(`ratio ours/C: ${(ourRate / cRate).toFixed(2)}x (target >= 2x)`);
  }
} finally {
  await dns.close();
  await Deno.remove(tmp, { recursive: true });
}
