/**
 * End-to-end tests of tcpserver's abuse limits: our tcpserver runs as a
 * process on loopback; clients connect from distinct loopback addresses
 * (127.0.0.x, 127.0.y.z) through node:net's localAddress.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { needs, ours, oursArgv, program, tempDir } from "../support/helpers.ts";
import { spawnServer } from "../support/tcpserver_util.ts";

/** Holds each connection open until the client closes; prints $TCPCONNNUM first. */
const PROG = ["sh", "-c", 'echo "n=$TCPCONNNUM"; exec cat'];

/** Bounds a wait: rejects after ms (a hung server fails the test instead of hanging it). */
function within<T>(p: Promise<T>, what: string, ms = 15000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

interface Server {
  port: number;
  pid: number;
  /** stderr lines so far */
  lines: string[];
  /** Resolves with the first stderr line (past or future) matching re. */
  waitLine(re: RegExp): Promise<string>;
  /** Resolves once pred() holds, checked again at each new stderr line. */
  waitUntil(pred: () => boolean, what: string): Promise<void>;
  stop(): Promise<void>;
}

async function startServer(
  opts: string[],
  env: Record<string, string> = {},
  host = "127.0.0.1",
): Promise<Server> {
  const argv = oursArgv("tcpserver", ["-1", ...opts, host, "0", ...PROG]);
  const srv = await spawnServer(argv, { env, name: "tcpserver" });
  assert.ok(srv.port > 0, `port ${srv.port}`);
  return {
    port: srv.port,
    pid: srv.pid,
    lines: srv.lines,
    waitLine(re) {
      return within(srv.waitLine(re), `log line ${re} in:\n${srv.lines.join("\n")}`);
    },
    waitUntil(pred, what) {
      return within(srv.waitUntil(pred), `${what} in:\n${srv.lines.join("\n")}`);
    },
    async stop() {
      await srv.stop("SIGKILL");
    },
  };
}

interface Client {
  /** Everything received so far. */
  data(): string;
  /** Resolves once the received text matches re. */
  waitData(re: RegExp): Promise<string>;
  /** Resolves when the server closed (with all data received). */
  closed: Promise<string>;
  isClosed(): boolean;
  end(): void;
}

function connect(port: number, localAddress: string, host = "127.0.0.1"): Promise<Client> {
  return new Promise((resolve, reject) => {
    let text = "";
    let isClosed = false;
    const waiters: { re: RegExp; resolve: (s: string) => void }[] = [];
    let closeResolve!: (s: string) => void;
    const closed = new Promise<string>((r) => closeResolve = r);
    const s = net.connect({ host, port, localAddress }, () => {
      resolve({
        data: () => text,
        waitData(re) {
          if (re.test(text)) return Promise.resolve(text);
          return new Promise((r) => waiters.push({ re, resolve: r }));
        },
        get closed() {
          return within(closed, `close by the server (client ${localAddress})`);
        },
        isClosed: () => isClosed,
        end: () => s.end(),
      });
    });
    s.setEncoding("latin1");
    s.on("data", (d: string) => {
      text += d;
      for (const w of [...waiters]) {
        if (w.re.test(text)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(text);
        }
      }
    });
    s.on("error", (e) => {
      if (!isClosed) reject(e);
    });
    s.on("close", () => {
      isClosed = true;
      closeResolve(text);
      // a refusal may close before anything matched
      for (const w of waiters.splice(0)) w.resolve(text);
    });
  });
}

/** Connects and waits until the program greeted (admitted) or the server closed (refused). */
async function attempt(port: number, from: string, host = "127.0.0.1") {
  const c = await within(connect(port, from, host), `connect from ${from}`);
  // tcpsvd sets no TCPCONNNUM: "n=" alone still means the program ran
  const text = await within(c.waitData(/n=\d*\n/), `greeting or close for ${from}`);
  const m = /n=(\d*)\n/.exec(text);
  return { c, admitted: m !== null, connNum: m ? Number(m[1]) : 0, text };
}

async function compileRules(dir: string, rules: string): Promise<string> {
  const cdb = `${dir}/rules.cdb`;
  const r = await ours("tcprules", [cdb, `${dir}/rules.tmp`], { stdin: rules });
  assert.equal(r.code, 0, r.err);
  return cdb;
}

function fdCount(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

Deno.test("limits e2e: MAXCONNIP from tcpserver's env, TCPCONNNUM, DIEMSG_MAXCONNIP, -v deny line", async () => {
  const srv = await startServer(["-v"], { MAXCONNIP: "2", DIEMSG_MAXCONNIP: "421 per ip" });
  const open: Client[] = [];
  try {
    const a = await attempt(srv.port, "127.0.0.2");
    const b = await attempt(srv.port, "127.0.0.2");
    open.push(a.c, b.c);
    assert.deepEqual([a.connNum, b.connNum], [1, 2]);
    const r = await attempt(srv.port, "127.0.0.2");
    assert.equal(r.admitted, false);
    assert.equal(await r.c.closed, "421 per ip\r\n");
    const deny = await srv.waitLine(/^tcpserver: deny /);
    assert.match(deny, /^tcpserver: deny \d+ .*:127\.0\.0\.2:.* MAXCONNIP: 2$/);
    const other = await attempt(srv.port, "127.0.0.3");
    open.push(other.c);
    assert.equal(other.connNum, 1);
    // a slot frees when a connection ends
    a.c.end();
    await a.c.closed;
    // end lines (the refusal's and a's) are logged after the slot was released
    await srv.waitUntil(
      () => srv.lines.filter((l) => l.startsWith("tcpserver: end ")).length === 2,
      "two end lines",
    );
    const again = await attempt(srv.port, "127.0.0.2");
    open.push(again.c);
    assert.equal(again.connNum, 2);
  } finally {
    for (const c of open) c.end();
    await srv.stop();
  }
});

Deno.test("limits e2e: per-rule MAXCONNIP and MAXCONNC, messages falling back to DIEMSG", async () => {
  const dir = await tempDir();
  const rules = [
    '127.0.0.4:allow,MAXCONNIP="1",DIEMSG="421 rule says no"',
    '127.0.5.:allow,MAXCONNC="2",DIEMSG_MAXCONNC="421 network full"',
    '127.0.7.:allow,MAXCONNC="1"',
    ":allow",
    "",
  ].join("\n");
  const cdb = await compileRules(dir.path, rules);
  const srv = await startServer(["-v", "-x", cdb], { DIEMSG: "421 global" });
  const open: Client[] = [];
  try {
    const a = await attempt(srv.port, "127.0.0.4");
    open.push(a.c);
    assert.equal(a.admitted, true);
    const r = await attempt(srv.port, "127.0.0.4");
    assert.equal(await r.c.closed, "421 rule says no\r\n");
    // the catch-all rule sets no limit: many from one address pass
    for (let i = 1; i <= 4; i++) {
      const x = await attempt(srv.port, "127.0.0.5");
      open.push(x.c);
      assert.equal(x.connNum, i);
    }
    // MAXCONNC: the /24 127.0.5.0/24 holds 2
    for (const ip of ["127.0.5.1", "127.0.5.2"]) {
      const x = await attempt(srv.port, ip);
      open.push(x.c);
      assert.equal(x.connNum, 1);
    }
    const net3 = await attempt(srv.port, "127.0.5.3");
    assert.equal(await net3.c.closed, "421 network full\r\n");
    assert.match(await srv.waitLine(/MAXCONNC: 2$/), /^tcpserver: deny \d+ .*:127\.0\.5\.3:/);
    // without DIEMSG_MAXCONNC the rule's network falls back to tcpserver's DIEMSG
    const y = await attempt(srv.port, "127.0.7.1");
    open.push(y.c);
    const z = await attempt(srv.port, "127.0.7.2");
    assert.equal(await z.c.closed, "421 global\r\n");
    assert.match(await srv.waitLine(/MAXCONNC: 1$/), /:127\.0\.7\.2:/);
  } finally {
    for (const c of open) c.end();
    await srv.stop();
    await dir.cleanup();
  }
});

Deno.test("limits e2e: no message: closed after ~1 s while other clients are served", async () => {
  const srv = await startServer(["-v"], { MAXCONNC: "1" });
  const open: Client[] = [];
  try {
    const a = await attempt(srv.port, "127.0.8.1");
    open.push(a.c);
    const t0 = performance.now();
    const refused = await connect(srv.port, "127.0.8.2");
    await srv.waitLine(/MAXCONNC: 1$/);
    // while the refused client waits out its delay, another network is served
    const other = await attempt(srv.port, "127.0.9.1");
    open.push(other.c);
    assert.equal(other.connNum, 1);
    assert.equal(refused.isClosed(), false, "refused client closed before the other was served");
    const got = await refused.closed;
    const waited = performance.now() - t0;
    assert.equal(got, "", "no message without DIEMSG");
    assert.ok(waited >= 900, `closed after ${waited.toFixed(0)} ms, want about 1 s`);
  } finally {
    for (const c of open) c.end();
    await srv.stop();
  }
});

Deno.test("limits e2e: MAXLOAD from $TCPSERVER_LOADAVG_FILE, per rule, DIEMSG_MAXLOAD", async () => {
  const dir = await tempDir();
  const loadFile = `${dir.path}/loadavg`;
  await Deno.writeTextFile(loadFile, "4.12 2.00 1.00 3/345 6789\n");
  const cdb = await compileRules(
    dir.path,
    '127.0.0.12:allow,MAXLOAD="500"\n:allow\n',
  );
  const srv = await startServer(["-v", "-x", cdb], {
    TCPSERVER_LOADAVG_FILE: loadFile,
    MAXLOAD: "350",
    DIEMSG: "421 generic",
    DIEMSG_MAXLOAD: "421 load too high",
  });
  const open: Client[] = [];
  try {
    const r = await attempt(srv.port, "127.0.0.11");
    assert.equal(await r.c.closed, "421 load too high\r\n");
    assert.match(await srv.waitLine(/MAXLOAD: /), /^tcpserver: deny \d+ .* MAXLOAD: 412$/);
    // the rule raises the limit for 127.0.0.12
    const ok = await attempt(srv.port, "127.0.0.12");
    open.push(ok.c);
    assert.equal(ok.admitted, true);
    // the load falls; within a few seconds (cache refresh) 127.0.0.11 gets in
    await Deno.writeTextFile(loadFile, "0.10 2.00 1.00 3/345 6789\n");
    let again = await attempt(srv.port, "127.0.0.11");
    for (let i = 0; !again.admitted && i < 40; i++) {
      await again.c.closed;
      await new Promise((r) => setTimeout(r, 150));
      again = await attempt(srv.port, "127.0.0.11");
    }
    open.push(again.c);
    assert.equal(again.admitted, true, "still refused after the load fell");
  } finally {
    for (const c of open) c.end();
    await srv.stop();
    await dir.cleanup();
  }
});

Deno.test("limits e2e: -C n:message; tcpserver's MAXCONNIP beats -C, a rule beats both", async () => {
  const dir = await tempDir();
  const cdb = await compileRules(dir.path, '127.0.0.22:allow,MAXCONNIP="3"\n:allow\n');
  const onlyC = await startServer(["-C", "1:421 only one per address"]);
  const both = await startServer(["-x", cdb, "-C", "1:421 c"], { MAXCONNIP: "2" });
  const open: Client[] = [];
  try {
    const a = await attempt(onlyC.port, "127.0.0.20");
    open.push(a.c);
    const r = await attempt(onlyC.port, "127.0.0.20");
    assert.equal(await r.c.closed, "421 only one per address\r\n");

    const counts: Record<string, number> = {};
    for (const ip of ["127.0.0.21", "127.0.0.22"]) {
      for (let i = 0; i < 4; i++) {
        const x = await attempt(both.port, ip);
        if (x.admitted) {
          open.push(x.c);
          counts[ip] = (counts[ip] ?? 0) + 1;
        } else {
          assert.equal(await x.c.closed, "421 c\r\n");
        }
      }
    }
    assert.deepEqual(counts, { "127.0.0.21": 2, "127.0.0.22": 3 });
  } finally {
    for (const c of open) c.end();
    await onlyC.stop();
    await both.stop();
    await dir.cleanup();
  }
});

/** An IPv6 loopback this host can listen on. */
const IPV6 = needs("ipv6");

Deno.test(
  "limits e2e: IPv6 client on ::1 (MAXCONNIP, then MAXCONNC on its /64)" + IPV6.reasonSuffix,
  {
    ignore: IPV6.ignore,
  },
  async () => {
    const srv = await startServer(["-v"], { MAXCONNIP: "2", DIEMSG: "421 v6" }, "::1");
    const open: Client[] = [];
    try {
      const a = await attempt(srv.port, "::1", "::1");
      const b = await attempt(srv.port, "::1", "::1");
      open.push(a.c, b.c);
      assert.deepEqual([a.connNum, b.connNum], [1, 2]);
      const r = await attempt(srv.port, "::1", "::1");
      assert.equal(await r.c.closed, "421 v6\r\n");
      // IPv6 addresses in log lines as Debian's IPv6 tcpserver and ucspi-tcp6 print them
      assert.match(await srv.waitLine(/MAXCONNIP: 2$/), /^tcpserver: deny \d+ \S+ :::1::\d+ /);
    } finally {
      for (const c of open) c.end();
      await srv.stop();
    }
    const srv2 = await startServer(["-v"], { MAXCONNC: "1", DIEMSG_MAXCONNC: "421 net6" }, "::1");
    try {
      const a = await attempt(srv2.port, "::1", "::1");
      open.push(a.c);
      const r = await attempt(srv2.port, "::1", "::1");
      assert.equal(await r.c.closed, "421 net6\r\n");
      assert.ok(await srv2.waitLine(/MAXCONNC: 1$/));
    } finally {
      for (const c of open) c.end();
      await srv2.stop();
    }
  },
);

/**
 * 50 connections at once from one address and then 5 from others, -c 20 -C 5.
 * With -L a flooder's connection may also meet the -c gate while the flood's
 * refusals are still being handled: then it gets -L's busy line instead.
 */
async function flood(extra: string[]) {
  const srv = await startServer(["-v", "-c", "20", "-C", "5:421 flood", ...extra]);
  const open: Client[] = [];
  const count = (re: RegExp) => srv.lines.filter((l) => re.test(l)).length;
  const allEnded = () => count(/^tcpserver: end /) === count(/^tcpserver: pid /);
  try {
    // warm up once so that lazily opened descriptors exist before the baseline
    const w = await attempt(srv.port, "127.0.10.1");
    w.c.end();
    await w.c.closed;
    await srv.waitUntil(allEnded, "the warm-up connection's end");
    const baseline = fdCount(srv.pid);

    const flooder = await Promise.all(
      Array.from({ length: 50 }, () => attempt(srv.port, "127.0.10.9")),
    );
    const others = await Promise.all(
      ["127.0.10.10", "127.0.10.11", "127.0.11.12", "127.0.12.13", "127.0.13.14"].map((ip) =>
        attempt(srv.port, ip)
      ),
    );
    const admitted = flooder.filter((x) => x.admitted);
    open.push(...admitted.map((x) => x.c), ...others.map((x) => x.c));
    assert.equal(admitted.length, 5, "the flooder gets exactly 5 slots");
    assert.deepEqual(admitted.map((x) => x.connNum).sort(), [1, 2, 3, 4, 5]);
    const refusals = extra.includes("-L")
      ? ["421 flood\r\n", "421 service busy, try again later\r\n"]
      : ["421 flood\r\n"];
    for (const x of flooder.filter((x) => !x.admitted)) {
      const got = await x.c.closed;
      assert.ok(refusals.includes(got), `refused flooder got ${JSON.stringify(got)}`);
    }
    assert.deepEqual(others.map((x) => [x.admitted, x.connNum]), others.map(() => [true, 1]));

    const ending = open.splice(0);
    for (const c of ending) c.end();
    for (const c of ending) await c.closed;
    await srv.waitUntil(allEnded, "every connection's end line");
    // everything released: the flooder's next connection is number 1 again
    const next = await attempt(srv.port, "127.0.10.9");
    assert.equal(next.connNum, 1, "counters leaked");
    next.c.end();
    await next.c.closed;
    await srv.waitUntil(allEnded, "every connection's end line");
    // the end line is written once the socket is closed and the program reaped
    const after = fdCount(srv.pid);
    assert.ok(after <= baseline, `descriptors: ${baseline} before, ${after} after`);
  } finally {
    for (const c of open) c.end();
    await srv.stop();
  }
}

Deno.test("limits e2e: flood of 50 from one address with -c 20 -C 5", async () => {
  await flood([]);
});

Deno.test("limits e2e: the same flood with -L on", async () => {
  await flood(["-L"]);
});

Deno.test("limits e2e: -L answers over the -c limit with 421 or $DIEMSG", async () => {
  for (
    const [env, want] of [
      [{}, "421 service busy, try again later\r\n"],
      [{ DIEMSG: "421 full up" }, "421 full up\r\n"],
    ] as const
  ) {
    const srv = await startServer(["-L", "-c", "2"], env);
    const open: Client[] = [];
    try {
      for (const ip of ["127.0.20.1", "127.0.20.2"]) {
        const x = await attempt(srv.port, ip);
        open.push(x.c);
        assert.equal(x.admitted, true);
      }
      const r = await attempt(srv.port, "127.0.20.3");
      assert.equal(await r.c.closed, want);
    } finally {
      for (const c of open) c.end();
      await srv.stop();
    }
  }
});

/** The TCP port process `pid` listens on (via /proc), once it listens. */
async function listeningPort(pid: number): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const inodes = new Set<string>();
    try {
      for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
        try {
          const m = /^socket:\[(\d+)\]$/.exec(Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`));
          if (m) inodes.add(m[1]);
        } catch { /* closed meanwhile */ }
      }
    } catch { /* not started */ }
    for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      for (const line of Deno.readTextFileSync(table).split("\n").slice(1)) {
        const f = line.trim().split(/\s+/);
        if (f.length > 9 && f[3] === "0A" && inodes.has(f[9])) {
          return parseInt(f[1].split(":")[1], 16);
        }
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`pid ${pid} does not listen`);
}

/** ipsvd's tcpsvd, the reference for -C. */
const TCPSVD = needs("tcpsvd");

Deno.test(
  "limits e2e: differential with ipsvd's tcpsvd -C 3:msg (same admissions per address)" +
    TCPSVD.reasonSuffix,
  {
    ignore: TCPSVD.ignore,
  },
  async () => {
    const tcpsvd = new Deno.Command(program("tcpsvd")!, {
      args: ["-C", "3:421 flood", "127.0.0.1", "0", ...PROG],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const srv = await startServer(["-C", "3:421 flood"]);
    const open: Client[] = [];
    try {
      const theirPort = await listeningPort(tcpsvd.pid);
      const run = async (port: number) => {
        const res = [];
        for (const ip of ["127.0.30.1", "127.0.30.1", "127.0.30.2", "127.0.30.1", "127.0.30.1"]) {
          const x = await attempt(port, ip);
          if (x.admitted) open.push(x.c);
          res.push(x.admitted ? `${ip} ok` : `${ip} refused ${await x.c.closed}`);
        }
        return res;
      };
      const theirs = await run(theirPort);
      const mine = await run(srv.port);
      // tcpsvd writes the message as given; we add CRLF (DIEMSG semantics)
      assert.deepEqual(mine, theirs.map((s) => s.endsWith("421 flood") ? `${s}\r\n` : s));
      assert.deepEqual(theirs.filter((s) => s.includes("refused")).length, 1);
    } finally {
      for (const c of open) c.end();
      tcpsvd.kill("SIGTERM");
      await tcpsvd.status;
      await srv.stop();
    }
  },
);

/** IPv4-mapped IPv6 addresses this host can listen on. */
const MAPPED = needs("ipv4-mapped");

Deno.test(
  "limits e2e: IPv4-mapped peers (listening on ::ffff:127.0.0.1) count as IPv4 and their /24" +
    MAPPED.reasonSuffix,
  {
    ignore: MAPPED.ignore,
  },
  async () => {
    const srv = await startServer(["-v"], { MAXCONNIP: "1", MAXCONNC: "2" }, "::ffff:127.0.0.1");
    const open: Client[] = [];
    try {
      const a = await attempt(srv.port, "127.0.40.2");
      open.push(a.c);
      assert.equal(a.connNum, 1);
      const r = await attempt(srv.port, "127.0.40.2");
      assert.equal(r.admitted, false);
      assert.match(await srv.waitLine(/MAXCONNIP: 1$/), /:127\.0\.40\.2::\d+ MAXCONNIP: 1$/);
      const b = await attempt(srv.port, "127.0.40.3");
      open.push(b.c);
      assert.equal(b.connNum, 1);
      const c = await attempt(srv.port, "127.0.40.4");
      assert.equal(c.admitted, false);
      assert.match(await srv.waitLine(/MAXCONNC: 2$/), /:127\.0\.40\.4::\d+ MAXCONNC: 2$/);
      const d = await attempt(srv.port, "127.0.41.4");
      open.push(d.c);
      assert.equal(d.admitted, true, "another /24 is not affected");
    } finally {
      for (const c of open) c.end();
      await srv.stop();
    }
  },
);

Deno.test("limits e2e: an invalid value is logged once and falls back (-C here)", async () => {
  const srv = await startServer(["-C", "2:421 c"], { MAXCONNIP: "abc" });
  const open: Client[] = [];
  try {
    const got = [];
    for (let i = 0; i < 4; i++) {
      const x = await attempt(srv.port, "127.0.50.1");
      if (x.admitted) open.push(x.c);
      got.push(x.admitted ? `n=${x.connNum}` : await x.c.closed);
    }
    assert.deepEqual(got, ["n=1", "n=2", "421 c\r\n", "421 c\r\n"]);
    await srv.waitLine(/invalid/);
    assert.deepEqual(srv.lines.filter((l) => /invalid/.test(l)), [
      "tcpserver: warning: ignoring invalid MAXCONNIP=abc",
    ]);
  } finally {
    for (const c of open) c.end();
    await srv.stop();
  }
});

Deno.test("limits e2e: a rule's DIEMSG reaches the client byte for byte (not UTF-8 encoded)", async () => {
  const dir = await tempDir();
  try {
    // the rule's message holds the byte 0xe4 (latin-1 "ä"), as a rules file may
    const text = new Uint8Array([
      ...new TextEncoder().encode('127.0.0.9:allow,MAXCONNIP="1",DIEMSG="421 '),
      0xe4,
      ...new TextEncoder().encode('"\n:allow\n'),
    ]);
    await Deno.writeFile(`${dir.path}/rules`, text);
    const cdb = `${dir.path}/rules.cdb`;
    const make = await new Deno.Command("sh", {
      args: [
        "-c",
        'exec "$@" < "$0"',
        `${dir.path}/rules`,
        ...oursArgv("tcprules", [
          cdb,
          `${dir.path}/rules.tmp`,
        ]),
      ],
    }).output();
    assert.equal(make.code, 0, new TextDecoder().decode(make.stderr));
    const srv = await startServer(["-x", cdb], {});
    try {
      const a = await attempt(srv.port, "127.0.0.9");
      const got = await new Promise<number[]>((resolve) => {
        const bytes: number[] = [];
        const s = net.connect({ host: "127.0.0.1", port: srv.port, localAddress: "127.0.0.9" });
        s.on("data", (d) => bytes.push(...d));
        s.on("close", () => resolve(bytes));
        s.on("error", () => {});
      });
      a.c.end();
      assert.deepEqual(got, [...new TextEncoder().encode("421 "), 0xe4, 13, 10]);
    } finally {
      await srv.stop();
    }
  } finally {
    await dir.cleanup();
  }
});
