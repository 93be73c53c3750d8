/**
 * rblsmtpd end to end with a real SMTP client: swaks talks to
 * `tcpserver ... rblsmtpd -r rbl.test sink.sh` from a listed address
 * (127.0.0.2: 451 at RCPT) and an unlisted one (127.0.0.3: delivered).
 * Run under DJB's C tcpserver with our rblsmtpd as a process, and under our
 * tcpserver, where rblsmtpd runs in-process (lib/stages/chain.ts).
 */
import assert from "node:assert/strict";
import { cTool, DENO, MOD, needs, startDaemon, tempDir } from "../support/helpers.ts";
import { startDnsServer } from "../support/dns_server.ts";

const SINK = `#!/bin/sh
PATH=/usr/bin:/bin
printf '220 sink.test ESMTP\\r\\n'
while IFS= read -r line; do
  line=$(printf '%s' "$line" | tr -d '\\r')
  case "$line" in
    [Hh][Ee][Ll][Oo]*|[Ee][Hh][Ll][Oo]*) printf '250 sink.test\\r\\n' ;;
    [Dd][Aa][Tt][Aa])
      printf '354 go ahead\\r\\n'
      while IFS= read -r l; do
        [ "$(printf '%s' "$l" | tr -d '\\r')" = "." ] && break
      done
      printf '250 ok queued by sink for %s\\r\\n' "$TCPREMOTEIP" ;;
    [Qq][Uu][Ii][Tt]*) printf '221 sink.test\\r\\n'; exit 0 ;;
    *) printf '250 ok\\r\\n' ;;
  esac
done
`;

/** A loopback address of this test's own, so a fixed port cannot collide. */
function ownAddress(): string {
  const b = crypto.getRandomValues(new Uint8Array(2));
  return `127.25.${b[0]}.${(b[1] % 250) + 2}`;
}

interface Served {
  address: string;
  port: number;
  log: () => string;
  stop: () => Promise<void>;
}

/** Starts a tcpserver command line and waits for its "status: 0/N" line. */
async function serve(cmd: string[], env: Record<string, string>): Promise<Served> {
  const address = ownAddress();
  const port = 2525;
  const argv = cmd.map((a) => a === "ADDRESS" ? address : a === "PORT" ? String(port) : a);
  const daemon = await startDaemon(argv, env, /status: 0\//);
  return { address, port, ...daemon };
}

async function swaks(s: Served, from: string) {
  const o = await new Deno.Command("swaks", {
    args: [
      "--server",
      s.address,
      "--port",
      String(s.port),
      "--local-interface",
      from,
      "--from",
      "a@x.test",
      "--to",
      "b@y.test",
      "--hide-informational",
      "--timeout",
      "20",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: o.code, out: new TextDecoder().decode(o.stdout) };
}

async function scenario(cmd: (sink: string) => string[], env: Record<string, string>) {
  const dir = await tempDir();
  const dns = await startDnsServer({ "2.0.0.127.rbl.test": { TXT: ["listed by rbl.test"] } });
  try {
    const sink = `${dir.path}/sink.sh`;
    await Deno.writeTextFile(sink, SINK, { mode: 0o755 });
    const s = await serve(cmd(sink), { ...env, DNSCACHEIP: dns.address });
    try {
      const listed = await swaks(s, "127.0.0.2");
      assert.notEqual(listed.code, 0);
      assert.match(listed.out, /<\*\* 451 listed by rbl\.test\r?\n/);
      assert.match(listed.out, /<- {2}221 rblsmtpd\.local/);
      assert.doesNotMatch(listed.out, /sink\.test/);
      const clean = await swaks(s, "127.0.0.3");
      assert.equal(clean.code, 0, clean.out);
      assert.match(clean.out, /<- {2}250 ok queued by sink for 127\.0\.0\.3/);
    } finally {
      await s.stop();
    }
    assert.match(s.log(), /rblsmtpd: 127\.0\.0\.2 pid \d+: 451 listed by rbl\.test\n/);
    assert.doesNotMatch(s.log(), /rblsmtpd: 127\.0\.0\.3/);
    return s.log();
  } finally {
    await dns.close();
    await dir.cleanup();
  }
}

/** DJB's C tcpserver and swaks, for the first scenario. */
const C_AND_SWAKS = needs("tcpserver", "swaks");

Deno.test(
  "rblsmtpd e2e: swaks through DJB's tcpserver and our rblsmtpd process" + C_AND_SWAKS.reasonSuffix,
  {
    ignore: C_AND_SWAKS.ignore,
  },
  async () => {
    const c = cTool("tcpserver")!;
    const bin = await tempDir();
    try {
      const inst = await new Deno.Command(DENO, {
        args: ["run", "-A", MOD, "install", bin.path],
        stdout: "null",
      }).output();
      assert.equal(inst.code, 0);
      await scenario(
        (
          sink,
        ) => [
          c,
          "-v",
          "-R",
          "-H",
          "ADDRESS",
          "PORT",
          `${bin.path}/rblsmtpd`,
          "-r",
          "rbl.test",
          sink,
        ],
        { PATH: "/usr/bin:/bin" },
      );
    } finally {
      await bin.cleanup();
    }
  },
);

/** swaks, for the scenario under our tcpserver. */
const SWAKS = needs("swaks");

Deno.test("rblsmtpd e2e: swaks through our tcpserver, rblsmtpd in-process" + SWAKS.reasonSuffix, {
  ignore: SWAKS.ignore,
}, async () => {
  const log = await scenario(
    (sink) => [
      "/bin/bash",
      "-c",
      `exec -a tcpserver "${DENO}" run -A "${MOD}" "$@"`,
      "tcpserver",
      "-v",
      "-R",
      "-H",
      "ADDRESS",
      "PORT",
      "rblsmtpd",
      "-r",
      "rbl.test",
      sink,
    ],
    // rblsmtpd is not on this PATH (/bin is often /usr/bin, where the C one is): ours
    { PATH: "/nonexistent" },
  );
  // in-process: rblsmtpd's "pid" is tcpserver's connection number, not a process
  const conn = /tcpserver: pid (\d+) from 127\.0\.0\.2\n/.exec(log);
  assert.ok(conn, log);
  assert.match(log, new RegExp(`rblsmtpd: 127\\.0\\.0\\.2 pid ${conn[1]}: 451 `));
  // DJB's tcpserver logs: the blocked client's connection ends with status 0
  assert.match(log, /tcpserver: end \d+ status 0\n/);
});
