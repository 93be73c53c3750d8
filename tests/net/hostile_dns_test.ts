/**
 * Hostile DNS end to end (issue 9 findings 1-3, issue 11 items 4-5): our
 * tcpserver -h/-p (native and pure path), tcpclient, sslclient and rblsmtpd
 * fed attacker-chosen answers by tests/support/dns_server.ts, compared byte for byte
 * with Debian's C tools fed the same answers. The program's environment is
 * read from /proc/self/environ (exact bytes, NULs included).
 */
import assert from "node:assert/strict";
import net from "node:net";
import { cTool, ours, type Result, theirs } from "../support/helpers.ts";
import { startDnsServer, wireName, type Zones } from "../support/dns_server.ts";
import { evilEntry, hostilePtrZones, LONG_LABEL, v4OnlyZone } from "../support/dns_zones.ts";
import { startSrv, talk } from "../support/tcpserver_util.ts";

/** The test DNS server binds 127.53.x.y:53, where C's tools ask: root only. */
const NOT_ROOT = Deno.uid() !== 0;
const NO_C_TCPSERVER = cTool("tcpserver") === null;

const big = LONG_LABEL;
const EVIL = evilEntry();

/** Client addresses and the PTR answers they get. */
const HOSTILE: Zones = {
  "1.0.0.127.in-addr.arpa": { PTR: [wireName("Local", "EXAMPLE")] },
  ...hostilePtrZones(),
  "19.0.0.127.in-addr.arpa": { PTR: [wireName("127", "0", "0", "19")] },
  "20.0.0.127.in-addr.arpa": { PTR: [wireName("two"), wireName("x\0INJECTED=yes", "example")] },
  "21.0.0.127.in-addr.arpa": { PTR: [wireName("liar\0", "example")] },
  // forward answers for -p, keyed by the escaped names
  "x\\000injected\\075yes.example": { A: ["127.0.0.11", "127.0.0.20"] },
  "\\344\\366\\374\\200\\237\\377.test": { A: ["127.0.0.13"] },
  "liar\\000.example": { A: ["127.0.0.99"] },
  // forged replies ahead of the real one
  "31.0.0.127.in-addr.arpa": { PTR: ["real31.example"], forged: [{ kind: "source", entry: EVIL }] },
  "32.0.0.127.in-addr.arpa": {
    PTR: ["real32.example"],
    forged: [{ kind: "question", entry: EVIL, name: "32.0.0.127.in-addr.arpa.evil" }],
  },
  "33.0.0.127.in-addr.arpa": { PTR: ["real33.example"], forged: [{ kind: "id", entry: EVIL }] },
  "34.0.0.127.in-addr.arpa": {
    PTR: ["real34.example"],
    behaviour: "truncate",
    tcpQuestion: "34.0.0.127.in-addr.arpa.evil",
  },
  "35.0.0.127.in-addr.arpa": { PTR: ["real35.example"], behaviour: "truncate" },
  // -p: the real names and the forged one all confirm, so only the PTR decides
  "evil.example": { A: ["127.0.0.31", "127.0.0.32", "127.0.0.33", "127.0.0.34", "127.0.0.35"] },
  ...Object.fromEntries(
    [31, 32, 33, 34, 35].map((n) => [`real${n}.example`, { A: [`127.0.0.${n}`] }]),
  ),
};

/** What C's tcpserver (Debian 0.88) gives each client: [-h TCPREMOTEHOST, -p TCPREMOTEHOST]. */
const EXPECTED: Record<number, [string | null, string | null]> = {
  11: ["x\\000injected\\075yes.example", "x\\000injected\\075yes.example"],
  12: ["a\\012b\\033c\\015d\\040e\\072f\\045g\\134h.example", null],
  13: ["\\344\\366\\374\\200\\237\\377.test", "\\344\\366\\374\\200\\237\\377.test"],
  14: ["evil\\056com.x", null],
  15: [null, null], // 256 bytes: no name
  16: [[big, big, big, "a".repeat(61)].join("."), null],
  17: [".", null],
  18: [null, null], // compression loop
  19: ["127.0.0.19", "127.0.0.19"],
  20: ["two", null],
  21: ["liar\\000.example", null],
};

/** The same for forged replies: the real answer is used, the forged one never. */
const FORGED_EXPECTED: Record<number, [string | null, string | null]> = {
  31: ["real31.example", "real31.example"],
  32: ["real32.example", "real32.example"],
  33: ["real33.example", "real33.example"],
  34: [null, null],
  35: ["real35.example", "real35.example"],
};

/** Variables set by the test's own wrapper or only by one implementation (TCPCONNNUM). */
const IGNORED = new Set(["PATH", "DNSCACHEIP", "UCSPI_NATIVE", "PWD", "SHLVL", "_", "TCPCONNNUM"]);

/** The environment a program got, as sorted "NAME=value" byte strings, ports blanked. */
function environOf(data: Uint8Array): string[] {
  const text = String.fromCharCode(...data);
  return text.split("\0").filter((e) => e !== "" && !IGNORED.has(e.slice(0, e.indexOf("="))))
    .map((e) => e.replace(/^(TCP(?:LOCAL|REMOTE)PORT)=\d+$/, "$1=PORT")).sort();
}

interface Run {
  /** Per client: its environment. */
  env: Record<number, string[]>;
  /** The -v "ok" lines, PIDs and ports blanked, in client order. */
  ok: string[];
}

async function serve(
  which: "ours" | "c",
  flags: string[],
  dns: string,
  native: string,
  clients: number[],
): Promise<Run> {
  const srv = await startSrv(
    which,
    ["-v", "-1", "-R", ...flags, "127.0.0.1", "0", "/bin/cat", "/proc/self/environ"],
    { env: { DNSCACHEIP: dns, UCSPI_NATIVE: native }, clearEnv: true },
  );
  try {
    const env: Record<number, string[]> = {};
    for (const n of clients) {
      const t = await talk(srv.port, { localAddress: `127.0.0.${n}` });
      env[n] = environOf(t.data);
      await srv.waitLine(new RegExp(`^tcpserver: ok .*:127\\.0\\.0\\.${n}::`));
    }
    const ok = srv.lines.filter((l) => l.startsWith("tcpserver: ok "))
      .map((l) =>
        l.replace(/^tcpserver: ok \d+ /, "tcpserver: ok PID ").replace(/:\d+ /, ":P ").replace(
          /:\d+$/,
          ":P",
        )
      );
    return { env, ok };
  } finally {
    await srv.stop();
  }
}

function expectedEnv(n: number, host: string | null): string[] {
  return [
    "PROTO=TCP",
    "TCPLOCALHOST=local.example",
    "TCPLOCALIP=127.0.0.1",
    "TCPLOCALPORT=PORT",
    ...(host === null ? [] : [`TCPREMOTEHOST=${host}`]),
    `TCPREMOTEIP=127.0.0.${n}`,
    "TCPREMOTEPORT=PORT",
  ].sort();
}

const CASES = [
  ["escapes PTR names as djbdns (NUL, '=', controls, 8-bit, dots, 255 bytes, loops)", EXPECTED],
  ["ignores forged replies (other source, wrong id, other question, TCP)", FORGED_EXPECTED],
] as const;

for (const [flag, col] of [["-h", 0], ["-p", 1]] as const) {
  for (const [what, expected] of CASES) {
    Deno.test({
      name: `hostile DNS: tcpserver ${flag} ${what}; native and pure path; as C`,
      ignore: NOT_ROOT,
      fn: () => hostileRun(flag, col, expected),
    });
  }
}

async function hostileRun(
  flag: string,
  col: 0 | 1,
  expected: Record<number, [string | null, string | null]>,
) {
  {
    {
      const dns = await startDnsServer(structuredClone(HOSTILE));
      const clients = Object.keys(expected).map(Number);
      try {
        const runs: Record<string, Run> = {
          native: await serve("ours", [flag], dns.address, "1", clients),
          pure: await serve("ours", [flag], dns.address, "0", clients),
        };
        if (!NO_C_TCPSERVER) runs.c = await serve("c", [flag], dns.address, "-", clients);
        for (const [name, run] of Object.entries(runs)) {
          for (const [n, want] of Object.entries(expected)) {
            assert.deepEqual(
              run.env[Number(n)],
              expectedEnv(Number(n), want[col]),
              `${name} 127.0.0.${n}`,
            );
          }
          assert.deepEqual(run.ok, runs.native.ok, `${name}: -v lines`);
        }
        // the log lines: the same escaped names (safecats leaves them alone)
        const line11 = runs.native.ok.find((l) => l.includes("127.0.0.11:"));
        if (expected === EXPECTED) {
          assert.equal(
            line11,
            "tcpserver: ok PID local.example:127.0.0.1:P x\\000injected\\075yes.example:127.0.0.11::P",
          );
        }
      } finally {
        await dns.close();
      }
    }
  }
}

Deno.test({
  name: "hostile DNS: =host rules see the escaped name, as C",
  ignore: NOT_ROOT,
  async fn() {
    const dns = await startDnsServer(structuredClone(HOSTILE));
    const dir = await Deno.makeTempDir();
    try {
      // A dot inside a label must not make "=.com.x" match, nor a NUL end the name early.
      const rules = [
        '=.com.x:allow,R="dot-suffix"',
        '=evil\\056com.x:allow,R="escaped"',
        '=x:allow,R="cut-at-nul"',
        '=x\\000injected\\075yes.example:allow,R="nul-escaped"',
        ':allow,R="default"',
      ].join("\n") + "\n";
      const cdb = `${dir}/rules.cdb`;
      const made = await ours("tcprules", [cdb, `${dir}/tmp`], { stdin: rules });
      assert.equal(made.code, 0, made.err);
      const run = async (which: "ours" | "c", native: string) => {
        const srv = await startSrv(which, [
          "-1",
          "-R",
          "-h",
          "-l",
          "L",
          "-x",
          cdb,
          "127.0.0.1",
          "0",
          "sh",
          "-c",
          'printf "%s\\n" "$R"',
        ], { env: { DNSCACHEIP: dns.address, UCSPI_NATIVE: native }, clearEnv: true });
        try {
          const got: string[] = [];
          for (const n of [14, 11]) {
            got.push((await talk(srv.port, { localAddress: `127.0.0.${n}` })).text);
          }
          return got;
        } finally {
          await srv.stop();
        }
      };
      const want = ["escaped\n", "nul-escaped\n"];
      assert.deepEqual(await run("ours", "1"), want);
      assert.deepEqual(await run("ours", "0"), want);
      if (!NO_C_TCPSERVER) assert.deepEqual(await run("c", "-"), want);
    } finally {
      await dns.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const NO_C_RBLSMTPD = cTool("rblsmtpd") === null;

Deno.test({
  name: "hostile DNS: rblsmtpd given TXT bytes (NUL, CR LF, ESC, 8-bit) or forged TXT replies as C",
  ignore: NOT_ROOT || NO_C_RBLSMTPD,
  async fn() {
    const s = (t: string) => Array.from(t, (c) => c.charCodeAt(0));
    const txt = Uint8Array.from([
      ...[20, ...s("bad\0nul\r\n250 ok=\x1b[1m")],
      ...[9, 0xe4, 0xf6, 0xfc, 0x80, 0x9f, 0x81, 0x8d, 0xff, 0x7f],
      ...[3, ...s("two")],
    ]);
    const forger = { TXT: ["forged listing"], A: ["127.0.0.2"] };
    const dns = await startDnsServer({
      "2.0.0.127.rbl.test": { TXT: [txt, "second record"] },
      // not listed; forged replies say it is
      "3.0.0.127.rbl.test": {
        behaviour: "nxdomain",
        forged: [
          { kind: "source", entry: forger },
          { kind: "question", entry: forger, name: "3.0.0.127.rbl.test.evil" },
          { kind: "id", entry: forger },
        ],
      },
    });
    try {
      const stdin = "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nQUIT\r\n";
      const run = (f: typeof ours, ip = "127.0.0.2") =>
        f("rblsmtpd", ["-r", "rbl.test", "cat"], {
          stdin,
          env: { TCPREMOTEIP: ip, DNSCACHEIP: dns.address },
          clearEnv: true,
        });
      const norm = (r: Result) => ({
        code: r.code,
        out: String.fromCharCode(...r.stdout),
        err: String.fromCharCode(...r.stderr).replace(/ pid \d+:/, " pid N:"),
      });
      const c = norm(await run(theirs));
      assert.match(c.out, /^451 bad\?nul\?\?250 ok=\?\[1m\?{9}twosecond record\r$/m);
      assert.deepEqual(norm(await run(ours)), c);
      // forged listings are not believed: the client reaches the program (cat echoes it)
      const cleanC = norm(await run(theirs, "127.0.0.3"));
      assert.deepEqual(cleanC, { code: 0, out: stdin, err: "" });
      assert.deepEqual(norm(await run(ours, "127.0.0.3")), cleanC);
    } finally {
      await dns.close();
    }
  },
});

/** tcpserver's and tcpclient's fatal line for a host argument, ours and C's. */
async function hostFailure(
  tool: "tcpserver" | "tcpclient",
  host: string,
  dns: string,
  withC: boolean,
) {
  const args = tool === "tcpserver" ? [host, "0", "true"] : [host, "1", "true"];
  const env = { DNSCACHEIP: dns };
  const o = await ours(tool, args, { env });
  const c = withC && cTool(tool) ? await theirs(tool, args, { env }) : null;
  return { ours: { code: o.code, err: o.err }, c: c && { code: c.code, err: c.err } };
}

Deno.test({
  name: "hostile DNS: an over-long label or name in the host argument is C's protocol error",
  ignore: NOT_ROOT,
  async fn() {
    const dns = await startDnsServer({ "fail.test": { behaviour: "servfail" } });
    try {
      const M = "a".repeat(60);
      for (const tool of ["tcpserver", "tcpclient"] as const) {
        for (
          const [host, why] of [
            [`${"a".repeat(64)}.test`, "protocol error"],
            [[M, M, M, M, M].join("."), "protocol error"],
            ["fail.test", "temporary failure"],
          ]
        ) {
          // C retries a SERVFAIL for 11 s: its wording was checked once, not on every run
          const got = await hostFailure(tool, host, dns.address, why !== "temporary failure");
          const want = {
            code: 111,
            err:
              `${tool}: fatal: temporarily unable to figure out IP address for ${host}: ${why}\n`,
          };
          assert.deepEqual(got.ours, want);
          if (got.c) assert.deepEqual(got.c, want);
        }
      }
    } finally {
      await dns.close();
    }
  },
});

/** A listener on 127.0.0.1 counting the connections it accepted. */
async function counter(): Promise<
  { port: number; count: () => number; close: () => Promise<void> }
> {
  let n = 0;
  const socks = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    n++;
    socks.add(s);
    s.on("error", () => {});
    s.on("close", () => socks.delete(s));
    s.end();
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    count: () => n,
    close: () =>
      new Promise((r) => {
        // a peer that died mid-handshake may leave its socket half open: end it here
        for (const s of socks) s.destroy();
        srv.close(() => r());
      }),
  };
}

Deno.test({
  name: "hostile DNS: tcpclient and sslclient connect by A when the resolver refuses AAAA",
  ignore: NOT_ROOT,
  async fn() {
    const dns = await startDnsServer(v4OnlyZone());
    const listener = await counter();
    try {
      const env = { DNSCACHEIP: dns.address };
      const tc = await ours("tcpclient", ["v4only.test", String(listener.port), "true"], { env });
      assert.equal(tc.code, 0, tc.err);
      assert.equal(listener.count(), 1);
      // sslclient: the TLS handshake then fails (a plain listener), but the name resolved
      const sc = await ours("sslclient", ["v4only.test", String(listener.port), "true"], { env });
      assert.doesNotMatch(sc.err, /figure out IP address/);
      assert.equal(listener.count(), 2);
      if (cTool("tcpclient")) {
        const c = await theirs("tcpclient", ["v4only.test", String(listener.port), "true"], {
          env,
        });
        assert.equal(c.code, 0, c.err);
      }
    } finally {
      await listener.close();
      await dns.close();
    }
  },
});
