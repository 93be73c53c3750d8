/**
 * rblsmtpd: unit tests of the decision and the reply, our tool against the
 * test DNS server, and differential runs against DJB's C rblsmtpd pointed at
 * the same server ($DNSCACHEIP, port 53).
 */
import assert from "node:assert/strict";
import {
  decide,
  parseRblsmtpdArgs,
  type RblLookups,
  rblName,
  replyLine,
} from "../../lib/stages/rblsmtpd.ts";
import { DnsTemporaryError } from "../../lib/net/dns/errors.ts";
import { DENO, MOD, needs, ours, type Result, theirs } from "../support/helpers.ts";
import { startDnsServer, type Zones } from "../support/dns_server.ts";

const ZONES: Zones = {
  "4.3.2.1.rbl.test": { TXT: ["first", "second"], A: ["127.0.0.2"] },
  "4.3.2.1.multi.test": { TXT: [["ab", "cd"]] },
  "4.3.2.1.aonly.test": { A: ["127.0.0.2"] },
  "4.3.2.1.anti.test": { A: ["127.0.0.2"] },
  "4.3.2.1.evil.test": { TXT: ["bad\r\n250 ok\x01\x7f" + "y".repeat(300)] },
  "4.3.2.1.ip.test": { TXT: ["%IP% is listed"] },
  "4.3.2.1.fail.test": { behaviour: "servfail" },
  "4.3.2.1.slow.test": { behaviour: "timeout" },
  "rbl.test": { TXT: ["bare"] },
  "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.rbl.test": { TXT: ["six"] },
};

const SCRIPT =
  "helo x\r\nmail from:<a@b>\r\nrcpt to:<c@d>\r\nnoop\nDATA\r\nhelp me\r\n\r\nQUIT now\r\n";
const PROG = ["sh", "-c", "echo ran; cat"];

function normalise(r: Result) {
  return {
    code: r.code,
    out: r.out,
    err: r.err.replace(/ pid \d+:/g, " pid PID:").replaceAll("/usr/bin/rblsmtpd", "rblsmtpd"),
  };
}

// ---------------------------------------------------------------- unit

Deno.test("rblsmtpd: options keep the -b/-c flags in force where each source appears", () => {
  const p = parseRblsmtpdArgs([
    "-r",
    "a",
    "-bc",
    "-a",
    "b",
    "-B",
    "-r",
    "c:msg",
    "-t5",
    "prog",
    "-x",
  ]);
  assert.deepEqual(p.prog, ["prog", "-x"]);
  assert.equal(p.timeout, 5);
  assert.deepEqual(p.sources.map((s) => [s.kind, s.base, s.bounce, s.failClosed, s.aMessage]), [
    ["rbl", "a", false, false, undefined],
    ["anti", "b", true, true, undefined],
    ["rbl", "c", false, true, "msg"],
  ]);
  // no -r: DJB's default RBL, with the final flags
  const d = parseRblsmtpdArgs(["-b", "-a", "x", "prog"]);
  assert.deepEqual(d.sources.map((s) => [s.kind, s.base, s.bounce]), [
    ["anti", "x", true],
    ["rbl", "rbl.maps.vix.com", true],
  ]);
  assert.equal(parseRblsmtpdArgs(["-tx", "p"]).timeout, 0);
  assert.throws(() => parseRblsmtpdArgs(["-r", "x"]), { exitCode: 100 });
  assert.throws(() => parseRblsmtpdArgs(["-q", "p"]), /illegal option -- q/);
});

Deno.test("rblsmtpd: rblName reverses IPv4, IPv6 nibbles, and odd values DJB's way", () => {
  assert.equal(rblName("1.2.3.4", "rbl.test"), "4.3.2.1.rbl.test");
  assert.equal(rblName("::ffff:1.2.3.4", "rbl.test"), "4.3.2.1.rbl.test");
  assert.equal(rblName("2001:db8::1", "z").split(".").length, 33);
  assert.equal(rblName("", "rbl.test"), "rbl.test");
  assert.equal(rblName("x.y", "b"), "y.x.b");
});

function fakeLookups(
  table: Record<string, string | boolean | "temp">,
): RblLookups & { asked: string[] } {
  const asked: string[] = [];
  const get = (name: string) => {
    asked.push(name);
    const v = table[name];
    if (v === "temp") throw new DnsTemporaryError("servfail");
    return v;
  };
  return {
    asked,
    txt: (name) => Promise.resolve().then(() => (get(name) as string | undefined) ?? ""),
    a: (name) => Promise.resolve().then(() => Boolean(get(name))),
  };
}

Deno.test("rblsmtpd: decision follows DJB's rules for -b/-B/-c/-C and temporary failures", async () => {
  const env = new Map([["TCPREMOTEIP", "1.2.3.4"]]);
  const L = {
    "4.3.2.1.rbl": "listed",
    "4.3.2.1.anti": true,
    "4.3.2.1.fail": "temp" as const,
  };
  const run = (args: string[], e = env) =>
    decide(parseRblsmtpdArgs([...args, "p"]), e, fakeLookups(L));
  assert.deepEqual(await run(["-r", "rbl"]), { block: true, code: 451, text: "listed" });
  assert.deepEqual(await run(["-b", "-r", "rbl"]), { block: true, code: 553, text: "listed" });
  assert.deepEqual(await run(["-r", "rbl", "-b"]), { block: true, code: 451, text: "listed" });
  assert.deepEqual(await run(["-a", "anti", "-r", "rbl"]), { block: false });
  assert.deepEqual(await run(["-r", "fail"]), { block: false });
  assert.deepEqual(await run(["-c", "-r", "fail", "-r", "rbl"]), {
    block: true,
    code: 451,
    text: "temporary RBL lookup error",
  });
  // a temporary failure before a hit forbids 553
  assert.deepEqual(await run(["-b", "-r", "fail", "-r", "rbl"]), {
    block: true,
    code: 451,
    text: "listed",
  });
  assert.deepEqual(await run(["-a", "fail", "-r", "rbl"]), { block: false });
  assert.deepEqual(await run(["-c", "-b", "-a", "fail", "-r", "rbl"]), {
    block: true,
    code: 451,
    text: "listed",
  });
  // $RBLSMTPD: no lookups at all
  const lk = fakeLookups(L);
  const forced = new Map([...env, ["RBLSMTPD", "-go away"]]);
  assert.deepEqual(await decide(parseRblsmtpdArgs(["-r", "rbl", "p"]), forced, lk), {
    block: true,
    code: 553,
    text: "go away",
  });
  assert.deepEqual(lk.asked, []);
  const empty = new Map([...env, ["RBLSMTPD", ""]]);
  assert.deepEqual(await run(["-r", "rbl"], empty), { block: false });
  // A-record RBL with a message
  assert.deepEqual(await run(["-r", "anti:blocked %IP%"]), {
    block: true,
    code: 451,
    text: "blocked %IP%",
  });
});

Deno.test("rblsmtpd: reply line substitutes %IP%, prefixes $RBLMESSAGE, cuts and sanitises", () => {
  const env = new Map([["TCPREMOTEIP", "1.2.3.4"]]);
  assert.equal(
    replyLine({ block: true, code: 451, text: "%IP% listed" }, env),
    "451 1.2.3.4 listed",
  );
  assert.equal(
    replyLine(
      { block: true, code: 553, text: "x" },
      new Map([...env, ["RBLMESSAGE", "Blocked: "]]),
    ),
    "553 Blocked: x",
  );
  assert.equal(replyLine({ block: true, code: 451, text: "a\r\nb\x00c\xff" }, env), "451 a??b?c?");
  assert.equal(replyLine({ block: true, code: 451, text: "z".repeat(500) }, env).length, 204);
  // env values are bytes to the C tool: a two-byte UTF-8 char is two "?"
  const fromEnv = new Map([...env, ["RBLSMTPD", "\xc3\xa9"]]); // byte strings: UTF-8 é
  assert.equal(replyLine({ block: true, code: 451, text: "\xc3\xa9" }, fromEnv), "451 ??");
});

// ---------------------------------------------------------------- processes

async function withDns(fn: (dnscache: string) => Promise<void>, extra: Zones = {}) {
  const dns = await startDnsServer({ ...structuredClone(ZONES), ...extra });
  try {
    await fn(dns.address);
  } finally {
    await dns.close();
  }
}

interface Case {
  args: string[];
  env?: Record<string, string>;
  stdin?: string;
}

const DIFF_CASES: Case[] = [
  { args: ["-r", "rbl.test", ...PROG] },
  { args: ["-r", "multi.test", ...PROG] },
  { args: ["-r", "aonly.test", ...PROG] },
  { args: ["-r", "nowhere.test", ...PROG] },
  { args: ["-a", "anti.test", "-r", "rbl.test", ...PROG] },
  { args: ["-r", "rbl.test", "-a", "anti.test", ...PROG] },
  { args: ["-b", "-r", "rbl.test", ...PROG] },
  { args: ["-r", "rbl.test", "-b", ...PROG] },
  { args: ["-B", "-r", "multi.test", "-r", "rbl.test", ...PROG] },
  { args: ["-r", "evil.test", ...PROG] },
  { args: ["-t0", "-r", "rbl.test", ...PROG] },
  { args: ["-t", "0", "-b", "-r", "rbl.test", ...PROG] },
  { args: ["-r", "rbl.test", ...PROG], env: { TCPREMOTEIP: "" } },
  { args: ["-r", "rbl.test", ...PROG], env: { TCPREMOTEIP: "9.9.9.9" } },
  { args: ["-r", "rbl.test", ...PROG], env: { RBLSMTPD: "" } },
  { args: ["-r", "rbl.test", ...PROG], env: { RBLSMTPD: "go away" } },
  { args: ["-r", "rbl.test", ...PROG], env: { RBLSMTPD: "-go away" } },
  { args: ["-r", "rbl.test", ...PROG], env: { RBLSMTPD: "-" } },
  { args: ["-r", "nowhere.test", ...PROG], env: { RBLSMTPD: "x\x01y" } },
  { args: ["-r", "rbl.test", ...PROG], stdin: "rcpt to:<x>" }, // no final newline
  { args: ["-r", "rbl.test", ...PROG], stdin: "HELO\r\nquit\r\nrcpt\r\n" },
  { args: ["-r", "rbl.test", ...PROG], stdin: "Quit\n" },
  { args: ["-r", "rbl.test", ...PROG], stdin: "helo\tx\r\nrset\r\nvrfy\r\nquitx\r\n" },
  { args: ["-r", "nowhere.test", "/nonexistent/prog"] },
  { args: ["-r", "rbl.test", "/nonexistent/prog"] },
  { args: ["-r", "rbl.test"] },
  { args: ["-x", "-r", "rbl.test", "p"] },
  { args: ["-r", "rbl.test", "-t"] },
];

/** DJB's C rblsmtpd, the reference. */
const C_RBLSMTPD = needs("rblsmtpd");

Deno.test(
  "rblsmtpd: same stdout, exit code and log line as DJB's C rblsmtpd" + C_RBLSMTPD.reasonSuffix,
  {
    ignore: C_RBLSMTPD.ignore,
  },
  async () => {
    await withDns(async (dnscache) => {
      await Promise.all(DIFF_CASES.map(async (c) => {
        const opts = {
          stdin: c.stdin ?? SCRIPT,
          env: { DNSCACHEIP: dnscache, TCPREMOTEIP: "1.2.3.4", ...c.env },
        };
        const [a, b] = await Promise.all([
          ours("rblsmtpd", c.args, opts),
          theirs("rblsmtpd", c.args, opts),
        ]);
        assert.deepEqual(normalise(a), normalise(b), JSON.stringify(c));
      }));
    });
  },
);

Deno.test("rblsmtpd: the blocked conversation, byte for byte", async () => {
  await withDns(async (dnscache) => {
    const r = await ours("rblsmtpd", ["-r", "rbl.test", ...PROG], {
      stdin: SCRIPT,
      env: { DNSCACHEIP: dnscache, TCPREMOTEIP: "1.2.3.4" },
    });
    assert.equal(r.code, 0);
    assert.equal(
      r.out,
      "220 rblsmtpd.local\r\n250 rblsmtpd.local\r\n250 rblsmtpd.local\r\n451 firstsecond\r\n" +
        "250 rblsmtpd.local\r\n451 firstsecond\r\n451 firstsecond\r\n451 firstsecond\r\n" +
        "221 rblsmtpd.local\r\n",
    );
    assert.match(r.err, /^rblsmtpd: 1\.2\.3\.4 pid \d+: 451 firstsecond\n$/);
  });
});

Deno.test("rblsmtpd: not blocked: the program gets stdin untouched, the env, and its status", async () => {
  await withDns(async (dnscache) => {
    const r = await ours(
      "rblsmtpd",
      ["-r", "nowhere.test", "sh", "-c", 'echo "ip=$TCPREMOTEIP x=$X"; cat; exit 7'],
      { stdin: SCRIPT, env: { DNSCACHEIP: dnscache, TCPREMOTEIP: "1.2.3.4", X: "y" } },
    );
    assert.equal(r.code, 7);
    assert.equal(r.out, "ip=1.2.3.4 x=y\n" + SCRIPT);
    assert.equal(r.err, "");
  });
});

Deno.test("rblsmtpd: beyond DJB: A-only RBLs, %IP%, $RBLMESSAGE, IPv6, DNS timeout", async () => {
  await withDns(async (dnscache) => {
    const env = { DNSCACHEIP: dnscache, TCPREMOTEIP: "1.2.3.4" };
    const run = (args: string[], extra: Record<string, string> = {}) =>
      ours("rblsmtpd", ["-t0", ...args, ...PROG], { stdin: "", env: { ...env, ...extra } });
    assert.equal((await run(["-r", "aonly.test:Listed %IP%"])).out, "451 Listed 1.2.3.4\r\n");
    assert.equal(
      (await run(["-b", "-r", "aonly.test:"])).out,
      "553 1.2.3.4 is listed in aonly.test\r\n",
    );
    assert.equal((await run(["-r", "multi.test:x"])).out, "ran\n"); // TXT only: no A record
    assert.equal((await run(["-r", "ip.test"])).out, "451 1.2.3.4 is listed\r\n");
    const pre = await run(["-r", "rbl.test"], { RBLMESSAGE: "Blocked: " });
    assert.equal(pre.out, "451 Blocked: firstsecond\r\n");
    assert.match(pre.err, /: 451 Blocked: firstsecond\n$/);
    assert.equal(
      (await run(["-r", "rbl.test"], { TCPREMOTEIP: "2001:db8::1" })).out,
      "451 six\r\n",
    );
    assert.equal(
      (await run(["-r", "rbl.test"], { TCPREMOTEIP: "::ffff:1.2.3.4" })).out,
      "451 firstsecond\r\n",
    );
    // a resolver that never answers: temporary failure after $RBLSMTPD_DNSTIMEOUT
    const slowOpen = await run(["-r", "slow.test"], { RBLSMTPD_DNSTIMEOUT: "0.3" });
    assert.equal(slowOpen.out, "ran\n");
    const slowClosed = await run(["-c", "-r", "slow.test"], { RBLSMTPD_DNSTIMEOUT: "0.3" });
    assert.equal(slowClosed.out, "451 temporary RBL lookup error\r\n");
    const failClosed = await run(["-c", "-b", "-r", "fail.test"]);
    assert.equal(failClosed.out, "451 temporary RBL lookup error\r\n");
  });
});

Deno.test("rblsmtpd: -t drops the conversation even when the client keeps it open", async () => {
  await withDns(async (dnscache) => {
    // stdin stays open (never EOF): only the timeout can end the conversation.
    const child = new Deno.Command("bash", {
      args: [
        "-c",
        `exec -a rblsmtpd "${Deno.execPath()}" run -A "${MOD}" "$@"`,
        "rblsmtpd",
        "-t1",
        "-r",
        "rbl.test",
        ...PROG,
      ],
      env: { DNSCACHEIP: dnscache, TCPREMOTEIP: "1.2.3.4" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode("helo x\r\n"));
    const out = await child.output();
    await w.close().catch(() => {});
    assert.equal(out.code, 0);
    assert.equal(
      new TextDecoder().decode(out.stdout),
      "220 rblsmtpd.local\r\n250 rblsmtpd.local\r\n",
    );
  });
});

// ------------------------------------------------- log order (issue 11)

const ORDER_RUNS = 20;

Deno.test("rblsmtpd: the log line comes before the greeting on one pipe, 20 runs in a row", async () => {
  await withDns(async (dnscache) => {
    // stdout and stderr on one pipe, as DJB's regression script reads them;
    // DJB's rblsmtpd writes its log line first. Five runs at a time.
    const one = async () => {
      const r = await new Deno.Command("bash", {
        args: ["-c", `exec 2>&1; exec -a rblsmtpd "${DENO}" run -A "${MOD}" "$@"`, "rblsmtpd"]
          .concat(["-r", "rbl.test", ...PROG]),
        env: { DNSCACHEIP: dnscache, TCPREMOTEIP: "1.2.3.4" },
        stdin: "null",
        stdout: "piped",
        stderr: "inherit",
      }).output();
      return new TextDecoder().decode(r.stdout).replace(/ pid \d+:/, " pid PID:");
    };
    const outs: string[] = [];
    for (let i = 0; i < ORDER_RUNS; i += 5) {
      outs.push(...await Promise.all([1, 2, 3, 4, 5].map(one)));
    }
    for (const [i, out] of outs.entries()) {
      assert.equal(
        out,
        "rblsmtpd: 1.2.3.4 pid PID: 451 firstsecond\n220 rblsmtpd.local\r\n",
        `run ${i + 1}`,
      );
    }
  });
});

Deno.test("rblsmtpd: inside tcpserver (in-process) the log line is written before the greeting is sent", async () => {
  await withDns(async (dnscache) => {
    const dir = await Deno.makeTempDir({ prefix: "rbl-order-" });
    // tcpserver's stderr into a file: when the client has the greeting, the
    // log line must already be in the file (written before the socket write).
    const srv = new Deno.Command("/bin/bash", {
      args: [
        "-c",
        `exec 2>"${dir}/log"; exec -a tcpserver "${DENO}" run -A "${MOD}" "$@"`,
        "tcpserver",
        "-1",
        "-RH",
        "-l0",
        "127.0.0.1",
        "0",
        "rblsmtpd",
        "-r",
        "rbl.test",
        ...PROG,
      ],
      // rblsmtpd not on PATH: our tcpserver runs its own, in-process
      env: { DNSCACHEIP: dnscache, PATH: "/nonexistent" },
      stdin: "null",
      stdout: "piped",
    }).spawn();
    try {
      let first = "";
      for await (const chunk of srv.stdout) {
        first += new TextDecoder().decode(chunk);
        if (first.includes("\n")) break;
      }
      const port = Number(first.trim());
      for (let i = 0; i < ORDER_RUNS; i++) {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port, transport: "tcp" });
        // (127.0.0.1 is listed: the zone given to withDns below)
        const buf = new Uint8Array(64);
        const n = await conn.read(buf);
        const got = new TextDecoder().decode(buf.subarray(0, n ?? 0));
        assert.match(got, /^220 rblsmtpd\.local\r\n/);
        const log = await Deno.readTextFile(`${dir}/log`);
        const lines = log.split("\n").filter((l) => l.startsWith("rblsmtpd: "));
        assert.equal(lines.length, i + 1, `connection ${i + 1}: ${log}`);
        conn.close();
      }
    } finally {
      srv.kill();
      await srv.status;
      await Deno.remove(dir, { recursive: true });
    }
  }, { "1.0.0.127.rbl.test": { TXT: ["local"], A: ["127.0.0.2"] } });
});
