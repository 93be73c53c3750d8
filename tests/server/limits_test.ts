/** Unit tests of lib/server/limits.ts and lib/server/loadavg.ts (no network). */
import assert from "node:assert/strict";
import { type Admitted, clientKeys, Limits, type Refused } from "../../lib/server/limits.ts";
import { loadavgPath, loadSampler, parseLoadavg } from "../../lib/server/loadavg.ts";
import { tempDir } from "../support/helpers.ts";

const env = (o: Record<string, string> = {}) => new Map(Object.entries(o));

function admitted(r: Admitted | Refused): Admitted {
  assert.equal(r.admitted, true, `expected admission, got ${JSON.stringify(r)}`);
  return r as Admitted;
}

function refused(r: Admitted | Refused): Refused {
  assert.equal(r.admitted, false, "expected a refusal");
  return r as Refused;
}

Deno.test("limits: no variables, everything admitted, TCPCONNNUM counts per IP", () => {
  const l = new Limits({ baseEnv: env() });
  const a = [1, 2, 3].map(() => admitted(l.admit("10.0.0.1", env())));
  assert.deepEqual(a.map((x) => x.connNum), [1, 2, 3]);
  assert.equal(admitted(l.admit("10.0.0.2", env())).connNum, 1);
  assert.equal(l.total, 4);
  a[1].release();
  assert.equal(admitted(l.admit("10.0.0.1", env())).connNum, 3);
});

Deno.test("limits: MAXCONNIP from tcpserver's env; refused connections never count", () => {
  const l = new Limits({ baseEnv: env({ MAXCONNIP: "2" }) });
  const a1 = admitted(l.admit("10.0.0.1", env()));
  admitted(l.admit("10.0.0.1", env()));
  for (let i = 0; i < 5; i++) {
    assert.deepEqual(refused(l.admit("10.0.0.1", env())), {
      admitted: false,
      label: "MAXCONNIP",
      figure: 2,
      message: null,
    });
  }
  assert.equal(l.countIp("10.0.0.1"), 2);
  assert.equal(admitted(l.admit("10.0.0.2", env())).connNum, 1);
  a1.release();
  assert.equal(admitted(l.admit("10.0.0.1", env())).connNum, 2);
});

Deno.test("limits: release is idempotent and counters go back to zero", () => {
  const l = new Limits({ baseEnv: env({ MAXCONNIP: "1", MAXCONNC: "1" }) });
  const a = admitted(l.admit("10.1.1.1", env()));
  a.release();
  a.release();
  a.release();
  assert.equal(l.total, 0);
  assert.equal(l.countIp("10.1.1.1"), 0);
  assert.equal(l.countNet("10.1.1.9"), 0);
  const b = admitted(l.admit("10.1.1.1", env()));
  assert.equal(b.connNum, 1);
  // A second release of the old handle must not free b's slot.
  a.release();
  refused(l.admit("10.1.1.1", env()));
});

Deno.test("limits: 0 means always refuse", () => {
  const l = new Limits({ baseEnv: env() });
  assert.equal(refused(l.admit("10.0.0.1", env({ MAXCONNIP: "0" }))).label, "MAXCONNIP");
  assert.equal(refused(l.admit("10.0.0.1", env({ MAXCONNC: "0" }))).label, "MAXCONNC");
  assert.equal(refused(l.admit("10.0.0.1", env({ MAXLOAD: "0" }))).label, "MAXLOAD");
  assert.equal(l.total, 0);
});

Deno.test("limits: MAXCONNC counts the IPv4 /24", () => {
  const l = new Limits({ baseEnv: env({ MAXCONNC: "3" }) });
  admitted(l.admit("192.0.2.1", env()));
  admitted(l.admit("192.0.2.2", env()));
  const third = admitted(l.admit("192.0.2.200", env()));
  assert.equal(third.connNum, 1, "TCPCONNNUM is per IP, not per network");
  const r = refused(l.admit("192.0.2.9", env()));
  assert.equal(r.label, "MAXCONNC");
  assert.equal(r.figure, 3);
  admitted(l.admit("192.0.3.1", env()));
  third.release();
  admitted(l.admit("192.0.2.9", env()));
});

Deno.test("limits: IPv6 counts per address and per /64", () => {
  const l = new Limits({ baseEnv: env({ MAXCONNIP: "1", MAXCONNC: "2" }) });
  admitted(l.admit("2001:db8:0:1::1", env()));
  // same address, written differently
  assert.equal(refused(l.admit("2001:DB8:0:1:0:0:0:1", env())).label, "MAXCONNIP");
  assert.equal(refused(l.admit("[2001:db8:0:1::1]", env())).label, "MAXCONNIP");
  admitted(l.admit("2001:db8:0:1:ffff::2", env()));
  assert.equal(refused(l.admit("2001:db8:0:1::3", env())).label, "MAXCONNC");
  admitted(l.admit("2001:db8:0:2::3", env()));
  assert.equal(clientKeys("::1").net, "::/64");
  assert.deepEqual(clientKeys("fe80::1%eth0"), { ip: "fe80::1", net: "fe80::/64" });
  assert.deepEqual(clientKeys("bogus"), { ip: "bogus", net: "bogus" });
});

Deno.test("limits: IPv4-mapped IPv6 counts as the IPv4 address and its /24", () => {
  const l = new Limits({ baseEnv: env({ MAXCONNIP: "1", MAXCONNC: "2" }) });
  admitted(l.admit("::ffff:127.0.0.2", env()));
  assert.equal(refused(l.admit("127.0.0.2", env())).label, "MAXCONNIP");
  assert.equal(refused(l.admit("::FFFF:7f00:2", env())).label, "MAXCONNIP");
  admitted(l.admit("127.0.0.3", env()));
  assert.equal(refused(l.admit("::ffff:127.0.0.4", env())).label, "MAXCONNC");
  assert.deepEqual(clientKeys("::ffff:10.9.8.7"), { ip: "10.9.8.7", net: "10.9.8.0/24" });
});

Deno.test("limits: MAXLOAD compares the load x100, refusing at or above the limit", () => {
  let load = 349;
  const l = new Limits({ baseEnv: env({ MAXLOAD: "350" }), loadavg: () => load });
  admitted(l.admit("10.0.0.1", env()));
  load = 350;
  assert.deepEqual(refused(l.admit("10.0.0.1", env())), {
    admitted: false,
    label: "MAXLOAD",
    figure: 350,
    message: null,
  });
  load = 412;
  assert.equal(refused(l.admit("10.0.0.1", env())).figure, 412);
  // per-rule override
  admitted(l.admit("10.0.0.1", env({ MAXLOAD: "500" })));
  // unknown load: not enforced
  load = NaN;
  admitted(l.admit("10.0.0.1", env()));
});

Deno.test("limits: the load is not sampled when no MAXLOAD is in force", () => {
  let calls = 0;
  const l = new Limits({ baseEnv: env({ MAXCONNIP: "5" }), loadavg: () => (calls++, 100) });
  for (let i = 0; i < 3; i++) admitted(l.admit("10.0.0.1", env()));
  assert.equal(calls, 0);
  admitted(l.admit("10.0.0.2", env({ MAXLOAD: "200" })));
  assert.equal(calls, 1);
});

Deno.test("limits: check order MAXLOAD, MAXCONNIP, MAXCONNC", () => {
  const l = new Limits({
    baseEnv: env({ MAXLOAD: "100", MAXCONNIP: "0", MAXCONNC: "0" }),
    loadavg: () => 150,
  });
  assert.equal(refused(l.admit("10.0.0.1", env())).label, "MAXLOAD");
  assert.equal(refused(l.admit("10.0.0.1", env({ MAXLOAD: "" }))).label, "MAXCONNIP");
  assert.equal(refused(l.admit("10.0.0.1", env({ MAXLOAD: "", MAXCONNIP: "" }))).label, "MAXCONNC");
  admitted(l.admit("10.0.0.1", env({ MAXLOAD: "", MAXCONNIP: "", MAXCONNC: "" })));
});

Deno.test("limits: messages, DIEMSG_<label> over DIEMSG, each falling back", () => {
  const base = env({ MAXLOAD: "0", MAXCONNIP: "0", MAXCONNC: "0", DIEMSG: "421 busy" });
  const l = new Limits({ baseEnv: base, loadavg: () => 50 });
  const msg = (e: Record<string, string>) => refused(l.admit("10.0.0.1", env(e)));
  assert.equal(msg({}).message, "421 busy");
  assert.deepEqual(
    [msg({ DIEMSG_MAXLOAD: "421 load" }).message, msg({ DIEMSG_MAXLOAD: "421 load" }).label],
    ["421 load", "MAXLOAD"],
  );
  const ipOnly = { MAXLOAD: "", DIEMSG_MAXLOAD: "421 load", DIEMSG_MAXCONNIP: "421 ip" };
  assert.equal(msg(ipOnly).message, "421 ip");
  const cOnly = { MAXLOAD: "", MAXCONNIP: "", DIEMSG_MAXCONNIP: "421 ip" };
  assert.equal(msg(cOnly).message, "421 busy", "MAXCONNC falls back to DIEMSG");
  assert.equal(msg({ ...cOnly, DIEMSG_MAXCONNC: "421 net" }).message, "421 net");
  // a rule overrides tcpserver's DIEMSG; an empty one means no message
  assert.equal(msg({ DIEMSG: "421 rule" }).message, "421 rule");
  assert.equal(msg({ DIEMSG: "" }).message, null);
  // no message at all
  const bare = new Limits({ baseEnv: env({ MAXCONNC: "0" }) });
  assert.equal(refused(bare.admit("10.0.0.1", env())).message, null);
});

Deno.test("limits: -C n[:message] is the default MAXCONNIP; rule > env > -C", () => {
  const onlyC = new Limits({ baseEnv: env(), maxConnIp: 1, maxConnIpMessage: "421 per ip" });
  admitted(onlyC.admit("10.0.0.1", env()));
  assert.deepEqual(refused(onlyC.admit("10.0.0.1", env())), {
    admitted: false,
    label: "MAXCONNIP",
    figure: 1,
    message: "421 per ip",
  });
  // tcpserver's env beats -C, a rule beats both
  const both = new Limits({
    baseEnv: env({ MAXCONNIP: "2" }),
    maxConnIp: 1,
    maxConnIpMessage: "421 per ip",
  });
  admitted(both.admit("10.0.0.1", env({ MAXCONNIP: "2" })));
  admitted(both.admit("10.0.0.1", env({ MAXCONNIP: "2" })));
  assert.equal(refused(both.admit("10.0.0.1", env({ MAXCONNIP: "2" }))).figure, 2);
  admitted(both.admit("10.0.0.1", env({ MAXCONNIP: "3" })));
  // -C's message ranks as DIEMSG_MAXCONNIP: over DIEMSG, under DIEMSG_MAXCONNIP
  const msgs = new Limits({
    baseEnv: env({ DIEMSG: "421 generic" }),
    maxConnIp: 0,
    maxConnIpMessage: "421 c",
  });
  assert.equal(refused(msgs.admit("10.0.0.1", env())).message, "421 c");
  assert.equal(
    refused(msgs.admit("10.0.0.1", env({ DIEMSG_MAXCONNIP: "421 rule" }))).message,
    "421 rule",
  );
  // -C without a message: DIEMSG applies
  const noMsg = new Limits({ baseEnv: env({ DIEMSG: "421 generic" }), maxConnIp: 0 });
  assert.equal(refused(noMsg.admit("10.0.0.1", env())).message, "421 generic");
  // a rule can lift -C for trusted clients
  admitted(onlyC.admit("10.0.0.1", env({ MAXCONNIP: "" })));
});

Deno.test("limits: invalid values are ignored with one log line, falling back", () => {
  const lines: string[] = [];
  const l = new Limits({
    baseEnv: env({ MAXCONNIP: "1" }),
    maxConnIp: 0,
    log: (s) => lines.push(s),
  });
  admitted(l.admit("10.0.0.1", env({ MAXCONNIP: "abc" })));
  // the rule's bad value fell back to tcpserver's MAXCONNIP=1
  assert.equal(refused(l.admit("10.0.0.1", env({ MAXCONNIP: "abc" }))).figure, 1);
  assert.deepEqual(lines, ["tcpserver: warning: ignoring invalid MAXCONNIP=abc"]);
  // bad global value falls back to -C
  const g = new Limits({ baseEnv: env({ MAXCONNC: "-3", MAXCONNIP: "5x" }), maxConnIp: 0 });
  assert.equal(refused(g.admit("10.0.0.1", env())).label, "MAXCONNIP");
  // a bad MAXCONNC with nothing to fall back on is no limit
  admitted(g.admit("10.0.0.1", env({ MAXCONNIP: "" })));
});

Deno.test("limits: many interleaved admissions and releases leave nothing behind", () => {
  const l = new Limits({ baseEnv: env({ MAXCONNIP: "3", MAXCONNC: "7" }) });
  const live: Admitted[] = [];
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
  const ips = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "::ffff:10.0.0.1", "2001:db8::1", "10.0.1.1"];
  for (let i = 0; i < 2000; i++) {
    if (live.length && rnd() < 0.45) {
      const [a] = live.splice(Math.floor(rnd() * live.length), 1);
      a.release();
      if (rnd() < 0.3) a.release();
    } else {
      const ip = ips[Math.floor(rnd() * ips.length)];
      const r = l.admit(ip, env());
      if (r.admitted) live.push(r);
    }
    for (const ip of ips) assert.ok(l.countIp(ip) <= 3);
    assert.ok(l.countNet("10.0.0.9") <= 7);
    assert.equal(l.total, live.length);
  }
  for (const a of live) a.release();
  assert.equal(l.total, 0);
  for (const ip of ips) assert.equal(l.countIp(ip), 0);
  assert.equal(admitted(l.admit("10.0.0.1", env())).connNum, 1);
});

Deno.test("loadavg: parse /proc/loadavg text", () => {
  assert.equal(parseLoadavg("0.52 0.58 0.59 1/234 5678\n"), 52);
  assert.equal(parseLoadavg("4.12 1.00 1.00 1/1 1"), 412);
  assert.equal(parseLoadavg("12.5"), 1250);
  assert.equal(parseLoadavg("3.505 x"), 351);
  assert.equal(parseLoadavg("7\n"), 700);
  assert.ok(Number.isNaN(parseLoadavg("")));
  assert.ok(Number.isNaN(parseLoadavg("abc 1 2")));
  assert.ok(Number.isNaN(parseLoadavg("-1.00 1 2")));
});

Deno.test("loadavg: path from $TCPSERVER_LOADAVG_FILE, else /proc/loadavg", () => {
  assert.equal(loadavgPath(env({ TCPSERVER_LOADAVG_FILE: "/tmp/x" })), "/tmp/x");
  assert.equal(loadavgPath({ TCPSERVER_LOADAVG_FILE: "" }), "/proc/loadavg");
  assert.equal(loadavgPath({}), "/proc/loadavg");
});

Deno.test("loadavg: cached, re-read at most once per interval, in the background", async () => {
  const dir = await tempDir();
  try {
    const file = `${dir.path}/loadavg`;
    await Deno.writeTextFile(file, "1.00 1.00 1.00 1/1 1\n");
    let clock = 0;
    const s = loadSampler({ path: file, now: () => clock });
    assert.equal(s(), 100);
    await Deno.writeTextFile(file, "4.12 1.00 1.00 1/1 1\n");
    clock = 999;
    assert.equal(s(), 100, "within the interval: cached");
    await s.settled();
    assert.equal(s(), 100);
    clock = 1000;
    assert.equal(s(), 100, "stale value returned while re-reading");
    await s.settled();
    assert.equal(s(), 412);
    await Deno.remove(file);
    clock = 2500;
    s();
    await s.settled();
    assert.ok(Number.isNaN(s()), "unreadable file: unknown load");
  } finally {
    await dir.cleanup();
  }
});

Deno.test("loadavg: the real /proc/loadavg parses", () => {
  const s = loadSampler({ path: "/proc/loadavg" });
  const v = s();
  assert.ok(Number.isInteger(v) && v >= 0, `load ${v}`);
});
