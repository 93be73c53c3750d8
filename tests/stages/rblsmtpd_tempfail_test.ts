/**
 * rblsmtpd's temporary-failure rules (-c/-C, and 451 instead of 553 after a
 * failed lookup) against DJB's C rblsmtpd, with a resolver answering SERVFAIL.
 * DJB's DNS client keeps retrying a failing server for about 11 seconds, so
 * the cases run concurrently, in a file of their own.
 */
import assert from "node:assert/strict";
import { needs, ours, type Result, theirs } from "../support/helpers.ts";
import { startDnsServer } from "../support/dns_server.ts";

const CASES: string[][] = [
  ["-r", "fail.test"],
  ["-c", "-r", "fail.test"],
  ["-c", "-b", "-r", "fail.test", "-r", "rbl.test"],
  ["-b", "-r", "fail.test", "-r", "rbl.test"],
  ["-c", "-a", "fail.test", "-r", "rbl.test"],
  ["-a", "fail.test", "-r", "rbl.test"],
  ["-c", "-b", "-a", "fail.test", "-r", "rbl.test"],
  ["-C", "-b", "-a", "fail.test", "-r", "rbl.test"],
];

function normalise(r: Result) {
  return { code: r.code, out: r.out, err: r.err.replace(/ pid \d+:/g, " pid PID:") };
}

/** DJB's C rblsmtpd, the reference. */
const C_RBLSMTPD = needs("rblsmtpd");

Deno.test(
  "rblsmtpd: temporary DNS failures handled as DJB's C rblsmtpd does" + C_RBLSMTPD.reasonSuffix,
  {
    ignore: C_RBLSMTPD.ignore,
  },
  async () => {
    const dns = await startDnsServer({
      "4.3.2.1.rbl.test": { TXT: ["listed"] },
      "4.3.2.1.fail.test": { behaviour: "servfail" },
    });
    try {
      const opts = {
        stdin: "helo x\r\nrcpt to:<a@b>\r\nquit\r\n",
        env: { DNSCACHEIP: dns.address, TCPREMOTEIP: "1.2.3.4" },
      };
      await Promise.all(CASES.map(async (args) => {
        const argv = [...args, "sh", "-c", "echo ran; cat"];
        const [a, b] = await Promise.all([
          ours("rblsmtpd", argv, opts),
          theirs("rblsmtpd", argv, opts),
        ]);
        assert.deepEqual(normalise(a), normalise(b), JSON.stringify(args));
      }));
    } finally {
      await dns.close();
    }
  },
);
