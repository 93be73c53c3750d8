/**
 * tcpserver end to end over loopback: options, environment, log lines (ours
 * against DJB's C tcpserver where it is installed), rules, limits gate,
 * half-close and bulk data, IPv6, uid switching, start-up failures.
 */
import assert from "node:assert/strict";
import { haveC, needs, ours, tempDir, theirs } from "../support/helpers.ts";
import {
  normalise,
  quietArgs,
  serverOf,
  startSrv,
  talk,
  waitGone,
} from "../support/tcpserver_util.ts";
import { USAGE } from "../../cli/tcpserver.ts";

const ENV_DUMP = [
  "sh",
  "-c",
  'env | grep -E "^(PROTO|TCP)" | grep -v "^TCPCONNNUM=" | sort',
];

async function compileRules(dir: string, text: string): Promise<string> {
  const cdb = `${dir}/rules.cdb`;
  const r = await ours("tcprules", [cdb, `${dir}/rules.tmp`], { stdin: text });
  assert.equal(r.code, 0, r.err);
  return cdb;
}

/** DJB's C tcpserver, for the tests that compare with it as a whole. */
const C_TCPSERVER = needs("tcpserver");

/** The implementations a test runs on: ours always, C's when installed (else ignored). */
const BOTH = [
  { which: "ours" as const, n: needs() },
  { which: "c" as const, n: C_TCPSERVER },
];

Deno.test("tcpserver: usage and bad options as C (exit 100), our options in the usage line", async () => {
  for (const args of [[], ["-Z"], ["127.0.0.1"], ["127.0.0.1", "0"], ["-c"]]) {
    const r = await ours("tcpserver", args);
    assert.equal(r.code, 100, args.join(" "));
    assert.match(r.err, /^(tcpserver: (illegal option|option requires).*\n)?tcpserver: usage: /);
    for (const letter of "46jLWIC") assert.ok(USAGE.includes(letter), letter);
    if (haveC("tcpserver")) {
      const c = await theirs("tcpserver", args);
      // the same text, with our additions in the usage line (a deliberate difference)
      assert.equal(r.err, c.err.replace(/tcpserver: usage: .*\n/, `tcpserver: usage: ${USAGE}\n`));
      assert.equal(r.code, c.code);
    }
  }
});

Deno.test("tcpserver: start-up failures: port name, bind in use, -q silences them", async () => {
  const r = await ours("tcpserver", ["127.0.0.1", "no-such-service", "true"]);
  assert.equal(r.code, 111);
  assert.equal(r.err, "tcpserver: fatal: unable to figure out port number for no-such-service\n");
  const q = await ours("tcpserver", ["-q", "127.0.0.1", "no-such-service", "true"]);
  assert.equal(q.code, 111);
  assert.equal(q.err, "");
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = String((busy.addr as Deno.NetAddr).port);
    const b = await ours("tcpserver", ["127.0.0.1", port, "true"]);
    assert.equal(b.code, 111);
    assert.equal(b.err, "tcpserver: fatal: unable to bind: address already used\n");
    if (haveC("tcpserver")) {
      const c = await theirs("tcpserver", ["127.0.0.1", port, "true"]);
      assert.equal(b.err, c.err);
    }
  } finally {
    busy.close();
  }
});

Deno.test("tcpserver: port from /etc/services name", async () => {
  // "echo" is 7/tcp in every services file; as root the bind may succeed, so
  // only check that the name was understood (no "unable to figure out").
  const r = await ours("tcpserver", ["-1", "203.0.113.1", "echo", "true"]);
  assert.equal(r.code, 111);
  assert.match(r.err, /unable to bind: address not available/);
});

const ENV_ARGS = ["-v", "-1", "-R", "-H", "-l", "0", "127.0.0.1", "0", ...ENV_DUMP];

/** One connection from 127.0.0.3: its environment and the log lines, ports replaced. */
async function envAndLog(which: "ours" | "c") {
  const srv = await startSrv(which, ENV_ARGS, {
    env: { TCPREMOTEHOST: "inherited", TCPREMOTEINFO: "inherited", TCPLOCALHOST: "x" },
  });
  try {
    const t = await talk(srv.port, { localAddress: "127.0.0.3" });
    await srv.waitLine(/^tcpserver: status: 0\/40$/);
    await srv.waitLine(/^tcpserver: end /);
    const ports = { [String(srv.port)]: "SPORT", [String(t.localPort)]: "CPORT" };
    const text = t.text.replaceAll(String(t.localPort), "CPORT").replaceAll(
      String(srv.port),
      "SPORT",
    );
    // the last status line is printed after the end line
    while (srv.lines.filter((l) => l === "tcpserver: status: 0/40").length < 2) {
      await new Promise((r) => setTimeout(r, 10));
    }
    return { text, lines: normalise(srv.lines, ports) };
  } finally {
    await srv.stop();
  }
}

Deno.test("tcpserver: environment and -v log lines", async () => {
  const o = await envAndLog("ours");
  assert.equal(
    o.text,
    [
      "PROTO=TCP",
      "TCPLOCALHOST=0",
      "TCPLOCALIP=127.0.0.1",
      "TCPLOCALPORT=SPORT",
      "TCPREMOTEIP=127.0.0.3",
      "TCPREMOTEPORT=CPORT",
      "",
    ].join("\n"),
  );
  assert.deepEqual(o.lines, [
    "tcpserver: status: 0/40",
    "tcpserver: status: 1/40",
    "tcpserver: pid PID from 127.0.0.3",
    "tcpserver: ok PID 0:127.0.0.1:SPORT :127.0.0.3::CPORT",
    "tcpserver: end PID status 0",
    "tcpserver: status: 0/40",
  ]);
});

Deno.test(
  "tcpserver: environment and -v log lines match C byte for byte" + C_TCPSERVER.reasonSuffix,
  {
    ignore: C_TCPSERVER.ignore,
  },
  async () => {
    const o = await envAndLog("ours");
    const c = await envAndLog("c");
    assert.equal(o.text, c.text);
    assert.deepEqual(o.lines, c.lines);
  },
);

for (const { which, n } of BOTH) {
  Deno.test(
    `tcpserver (${which}): exit status and signals in the end line, as C${n.reasonSuffix}`,
    {
      ignore: n.ignore,
    },
    async () => {
      const srv = await startSrv(
        which,
        quietArgs(["-v"], ["sh", "-c", 'read x; [ "$x" = kill ] && kill -9 $$; exit $x']),
      );
      try {
        await talk(srv.port, { send: "7\n" });
        assert.match(await srv.waitLine(/^tcpserver: end /), / status 1792$/, which);
        await talk(srv.port, { send: "kill\n" });
        assert.match(await srv.waitLine(/^tcpserver: end .* status 9$/), / status 9$/, which);
      } finally {
        await srv.stop();
      }
    },
  );
}

for (const { which, n } of BOTH) {
  Deno.test(`tcpserver (${which}): -B banner, -x rules (deny, env, unset)${n.reasonSuffix}`, {
    ignore: n.ignore,
  }, async () => {
    const dir = await tempDir();
    try {
      const cdb = await compileRules(
        dir.path,
        [
          "127.0.0.4:deny",
          '127.0.0.5:allow,GREETING="hello there",TCPLOCALHOST="ruled"',
          ":allow",
          "",
        ].join("\n"),
      );
      const prog = ["sh", "-c", 'echo "$GREETING|${TCPLOCALHOST-unset}"'];
      const srv = await startSrv(which, quietArgs(["-v", "-B", "220 hi\r\n", "-x", cdb], prog));
      try {
        const denied = await talk(srv.port, { localAddress: "127.0.0.4" });
        assert.equal(denied.text, "220 hi\r\n", which);
        assert.match(
          await srv.waitLine(/^tcpserver: deny /),
          /^tcpserver: deny \d+ 0:127\.0\.0\.1:\d+ :127\.0\.0\.4::\d+$/,
        );
        assert.match(await srv.waitLine(/^tcpserver: end /), / status 25600$/);
        const set = await talk(srv.port, { localAddress: "127.0.0.5" });
        assert.equal(set.text, "220 hi\r\nhello there|ruled\n", which);
        const plain = await talk(srv.port, { localAddress: "127.0.0.6" });
        assert.equal(plain.text, "220 hi\r\n|0\n", which);
      } finally {
        await srv.stop();
      }
    } finally {
      await dir.cleanup();
    }
  });
}

Deno.test("tcpserver: a missing -x rules file drops every connection, unless -X", async () => {
  const dir = await tempDir();
  try {
    const missing = `${dir.path}/nonexistent.cdb`;
    const srv = await startSrv("ours", quietArgs(["-x", missing], ["echo", "ran"]));
    try {
      assert.equal((await talk(srv.port)).text, "");
      assert.equal(
        await srv.waitLine(/dropping/),
        `tcpserver: warning: dropping connection, unable to read ${missing}: file does not exist`,
      );
    } finally {
      await srv.stop();
    }
    const srvX = await startSrv("ours", quietArgs(["-X", "-x", missing], ["echo", "ran"]));
    try {
      assert.equal((await talk(srvX.port)).text, "ran\n");
    } finally {
      await srvX.stop();
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test("tcpserver: rules file replaced while running takes effect", async () => {
  const dir = await tempDir();
  try {
    const cdb = await compileRules(dir.path, "127.0.0.7:deny\n");
    const srv = await startSrv("ours", quietArgs(["-x", cdb], ["echo", "ok"]));
    try {
      assert.equal((await talk(srv.port, { localAddress: "127.0.0.7" })).text, "");
      await compileRules(dir.path, "127.0.0.7:allow\n");
      // RulesFile looks at the file at most once a second: poll until it sees the change
      let text = "";
      for (let i = 0; i < 50 && text === ""; i++) {
        text = (await talk(srv.port, { localAddress: "127.0.0.7" })).text;
        if (text === "") await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(text, "ok\n");
    } finally {
      await srv.stop();
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test("tcpserver: program that cannot be run is logged, the server keeps serving", async () => {
  const srv = await startSrv("ours", quietArgs(["-v"], ["/nonexistent/prog"]));
  try {
    assert.equal((await talk(srv.port)).text, "");
    assert.equal(
      await srv.waitLine(/dropping/),
      "tcpserver: warning: dropping connection, unable to run /nonexistent/prog: file does not exist",
    );
    assert.match(await srv.waitLine(/^tcpserver: end /), / status 28416$/);
    assert.equal((await talk(srv.port)).text, "");
    assert.equal(srv.lines.filter((l) => /dropping/.test(l)).length >= 1, true);
  } finally {
    await srv.stop();
  }
});

Deno.test("tcpserver: half-close and 4 MB both ways through cat, nothing lost", async () => {
  const srv = await startSrv("ours", quietArgs([], ["cat"]));
  try {
    const data = new Uint8Array(4 * 1024 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 11)) & 0xff;
    const t = await talk(srv.port, { send: data });
    assert.equal(t.data.length, data.length);
    assert.deepEqual(t.data, data);
  } finally {
    await srv.stop();
  }
});

Deno.test("tcpserver: program output arrives in full before FIN when it exits first", async () => {
  const srv = await startSrv("ours", quietArgs([], ["sh", "-c", "head -c 3000000 /dev/zero"]));
  try {
    const t = await talk(srv.port, { keepOpen: true });
    assert.equal(t.data.length, 3000000);
  } finally {
    await srv.stop();
  }
});

Deno.test("tcpserver: -c 1 defers the second connection until the first ends", async () => {
  const srv = await startSrv("ours", quietArgs(["-v", "-c", "1"], ["sh", "-c", "echo start; cat"]));
  try {
    const { default: net } = await import("node:net");
    const first = net.connect({ host: "127.0.0.1", port: srv.port });
    const firstGot = new Promise<string>((r) =>
      first.once("data", (d: Uint8Array) => r(String(d)))
    );
    assert.equal(await firstGot, "start\n");
    // the second is connected by the kernel but not accepted: no status 2/1, no data
    const second = net.connect({ host: "127.0.0.1", port: srv.port });
    let secondData = "";
    second.on("data", (d: Uint8Array) => (secondData += String(d)));
    await new Promise((r) => second.once("connect", r));
    assert.equal(srv.lines.includes("tcpserver: status: 2/1"), false);
    assert.equal(secondData, "");
    first.end();
    await srv.waitLine(/^tcpserver: end 1 /);
    await srv.waitLine(/^tcpserver: pid 2 /);
    await new Promise<void>((r) => {
      if (secondData) r();
      else second.once("data", () => r());
    });
    assert.equal(secondData.startsWith("start\n"), true);
    second.end();
    await srv.waitLine(/^tcpserver: end 2 /);
    assert.equal(srv.lines.includes("tcpserver: status: 2/1"), false);
  } finally {
    await srv.stop();
  }
});

Deno.test("tcpserver: -L answers excess connections at the limit, keeps the others", async () => {
  const srv = await startSrv("ours", quietArgs(["-L", "-c", "1"], ["sh", "-c", "echo in; cat"]), {
    env: { DIEMSG: "" },
  });
  try {
    const { default: net } = await import("node:net");
    const first = net.connect({ host: "127.0.0.1", port: srv.port });
    assert.equal(
      await new Promise<string>((r) => first.once("data", (d: Uint8Array) => r(String(d)))),
      "in\n",
    );
    const busy = await talk(srv.port);
    assert.equal(busy.text, "421 service busy, try again later\r\n");
    first.end();
    await new Promise((r) => first.once("close", r));
  } finally {
    await srv.stop();
  }
});

Deno.test("tcpserver: IPv6 on ::1 and dual-stack 0 (IPv4 clients as plain IPv4)", async () => {
  const v6 = await startSrv("ours", quietArgs([], ENV_DUMP, "::1"));
  try {
    const t = await talk(v6.port, { host: "::1" });
    assert.match(t.text, /^PROTO=TCP6\n/m);
    assert.match(t.text, /^TCPREMOTEIP=::1$/m);
    assert.match(t.text, /^TCPLOCALIP=::1$/m);
    assert.match(t.text, /^TCP6REMOTEIP=::1$/m);
  } finally {
    await v6.stop();
  }
  const dual = await startSrv("ours", quietArgs([], ENV_DUMP, "0"));
  try {
    const t4 = await talk(dual.port, { host: "127.0.0.1", localAddress: "127.0.0.8" });
    assert.match(t4.text, /^PROTO=TCP$/m);
    assert.match(t4.text, /^TCPREMOTEIP=127\.0\.0\.8$/m);
    assert.match(t4.text, /^TCPLOCALIP=127\.0\.0\.1$/m);
    assert.doesNotMatch(t4.text, /TCP6/);
    const t6 = await talk(dual.port, { host: "::1" });
    assert.match(t6.text, /^TCPREMOTEIP=::1$/m);
  } finally {
    await dual.stop();
  }
  const forced = await startSrv("ours", quietArgs(["-6"], ENV_DUMP, "0"));
  try {
    const t = await talk(forced.port, { host: "127.0.0.1" });
    assert.match(t.text, /^PROTO=TCP6$/m);
    assert.match(t.text, /^TCPREMOTEIP=::ffff:127\.0\.0\.1$/m);
  } finally {
    await forced.stop();
  }
});

/** Root, to switch ids, and setpriv (util-linux), to run as nobody. */
const ROOT_SETPRIV = needs("root", "setpriv");

Deno.test(
  // (without root, C's fatal messages: tests/server/tcpserver_privs_test.ts)
  "tcpserver: -u/-g as root run the program as that user; -U reads $UID/$GID" +
    ROOT_SETPRIV.reasonSuffix,
  {
    ignore: ROOT_SETPRIV.ignore,
  },
  async () => {
    const srv = await startSrv(
      "ours",
      quietArgs(["-u", "65534", "-g", "65534"], ["sh", "-c", "id -u; id -g; id -G"]),
    );
    try {
      assert.equal((await talk(srv.port)).text, "65534\n65534\n65534\n");
    } finally {
      await srv.stop();
    }
    const env = { UID: "65534", GID: "65534" };
    const u = await startSrv("ours", quietArgs(["-U"], ["id", "-u"]), {
      env,
    });
    try {
      assert.equal((await talk(u.port)).text, "65534\n");
    } finally {
      await u.stop();
    }
  },
);

Deno.test("tcpserver: SIGTERM stops accepting, lets a running connection finish, exits 0", async () => {
  const srv = await startSrv(
    "ours",
    quietArgs(["-v"], ["sh", "-c", "echo go; read x; echo got $x"]),
  );
  const { default: net } = await import("node:net");
  const c = net.connect({ host: "127.0.0.1", port: srv.port });
  let got = "";
  c.on("data", (d: Uint8Array) => (got += String(d)));
  const closed = new Promise((r) => c.on("close", r));
  await new Promise<void>((r) => c.once("data", () => r()));
  srv.child.kill("SIGTERM");
  // new connections are refused once the listener is closed
  let refused = false;
  for (let i = 0; i < 100 && !refused; i++) {
    try {
      const probe = await Deno.connect({ hostname: "127.0.0.1", port: srv.port });
      probe.close();
      await new Promise((r) => setTimeout(r, 20));
    } catch {
      refused = true;
    }
  }
  assert.equal(refused, true);
  c.end("bye\n");
  await closed;
  assert.equal(got, "go\ngot bye\n");
  assert.equal(await srv.exited, 0);
});

Deno.test("tcpserver: a second SIGTERM exits at once", async () => {
  const srv = await startSrv("ours", quietArgs([], ["sh", "-c", "echo go; exec sleep 30"]), {
    env: { TCPSERVER_DRAIN: "60" },
  });
  const { default: net } = await import("node:net");
  const c = net.connect({ host: "127.0.0.1", port: srv.port });
  c.on("error", () => {});
  await new Promise<void>((r) => c.once("data", () => r()));
  // The server itself (on the native path the child of the front the test started).
  const server = serverOf(srv.pid);
  const gone = waitGone(server);
  Deno.kill(server, "SIGTERM");
  await new Promise((r) => setTimeout(r, 50));
  Deno.kill(server, "SIGTERM");
  // (the program still holds the stderr pipe: wait for the process, not for EOF)
  await gone;
  if (server === srv.pid) assert.equal((await srv.child.status).code, 0);
  c.destroy();
});
