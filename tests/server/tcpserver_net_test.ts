/**
 * tcpserver against network services: -h/-p DNS names from a test DNS server,
 * -r ident from a test ident server (both compared with DJB's C tcpserver),
 * a real service (git daemon --inetd), and no leaked descriptors or zombies
 * after 10,000 connections.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { haveC, needs, ours, tempDir } from "../support/helpers.ts";
import { startDnsServer } from "../support/dns_server.ts";
import {
  fdCount,
  normalise,
  quietArgs,
  startSrv,
  talk,
  zombiesOf,
} from "../support/tcpserver_util.ts";

const DUMP = ["sh", "-c", 'env | grep -E "^TCP(REMOTE|LOCAL)(HOST|INFO)=" | sort'];

Deno.test("tcpserver: -h names, -p paranoid confirmation, from DNS, as C", async () => {
  const dns = await startDnsServer({
    "9.0.0.127.in-addr.arpa": { PTR: ["Good.Example"] },
    "good.example": { A: ["127.0.0.9"] },
    "10.0.0.127.in-addr.arpa": { PTR: ["liar.example"] },
    "liar.example": { A: ["192.0.2.1"] },
    "1.0.0.127.in-addr.arpa": { PTR: ["server.example"] },
  });
  try {
    const run = async (which: "ours" | "c", flags: string[]) => {
      const srv = await startSrv(which, ["-v", "-1", "-R", ...flags, "127.0.0.1", "0", ...DUMP], {
        env: { DNSCACHEIP: dns.address },
      });
      try {
        const a = await talk(srv.port, { localAddress: "127.0.0.9" });
        const b = await talk(srv.port, { localAddress: "127.0.0.10" });
        await srv.waitLine(/^tcpserver: ok .*127\.0\.0\.10/);
        const ok = srv.lines.filter((l) => l.startsWith("tcpserver: ok "));
        return {
          a: a.text,
          b: b.text,
          ok: normalise(ok).map((l) => l.replace(/:\d+ /, ":SPORT ").replace(/:\d+$/, ":CPORT")),
        };
      } finally {
        await srv.stop();
      }
    };
    const plain = await run("ours", ["-h"]);
    assert.equal(plain.a, "TCPLOCALHOST=server.example\nTCPREMOTEHOST=good.example\n");
    assert.equal(plain.b, "TCPLOCALHOST=server.example\nTCPREMOTEHOST=liar.example\n");
    const paranoid = await run("ours", ["-p"]);
    assert.equal(paranoid.a, "TCPLOCALHOST=server.example\nTCPREMOTEHOST=good.example\n");
    assert.equal(paranoid.b, "TCPLOCALHOST=server.example\n");
    assert.deepEqual(paranoid.ok, [
      "tcpserver: ok PID server.example:127.0.0.1:SPORT good.example:127.0.0.9::CPORT",
      "tcpserver: ok PID server.example:127.0.0.1:SPORT :127.0.0.10::CPORT",
    ]);
    const off = await run("ours", ["-H", "-l", "me"]);
    assert.equal(off.a, "TCPLOCALHOST=me\n");
    if (haveC("tcpserver")) {
      assert.deepEqual(plain, await run("c", ["-h"]));
      assert.deepEqual(paranoid, await run("c", ["-p"]));
      assert.deepEqual(off, await run("c", ["-H", "-l", "me"]));
    }
  } finally {
    await dns.close();
  }
});

/** A one-shot-per-connection ident server on ip:113 answering with reply(question). */
function identServer(ip: string, reply: (q: string) => string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer((s) => {
      let buf = "";
      s.on("error", () => {});
      s.on("data", (d: Uint8Array) => {
        buf += String(d);
        if (buf.includes("\n")) s.end(reply(buf.trim()));
      });
    });
    srv.once("error", reject);
    srv.listen(113, ip, () => resolve(srv));
  });
}

/** Root, to bind the ident port (113). */
const ROOT = needs("root");

Deno.test(
  "tcpserver: -r TCPREMOTEINFO from the client's ident server, -t, -R; as C" + ROOT.reasonSuffix,
  {
    ignore: ROOT.ignore,
  },
  async () => {
    const client = "127.0.113.9";
    let answer = "USERID : UNIX : al ice";
    const questions: string[] = [];
    const ident = await identServer(client, (q) => {
      questions.push(q);
      return `${q} : ${answer}\r\n`;
    });
    try {
      const run = async (which: "ours" | "c", flags: string[]) => {
        const srv = await startSrv(which, [
          "-v",
          "-1",
          "-H",
          "-l0",
          ...flags,
          "127.0.0.1",
          "0",
          ...DUMP,
        ]);
        try {
          const t = await talk(srv.port, { localAddress: client });
          const ok = await srv.waitLine(/^tcpserver: ok /);
          return {
            text: t.text,
            ok: ok.replace(/^tcpserver: ok \d+ 0:127\.0\.0\.1:\d+ /, "").replace(/:\d+$/, ""),
            question: questions.at(-1)?.replace(/\d+/g, "N"),
            exact: questions.at(-1) === `${t.localPort} , ${srv.port}`,
          };
        } finally {
          await srv.stop();
        }
      };
      const got = await run("ours", ["-r", "-t", "5"]);
      assert.deepEqual(got, {
        text: "TCPLOCALHOST=0\nTCPREMOTEINFO=alice\n",
        ok: ":127.0.113.9:alice",
        question: "N , N",
        exact: true,
      });
      answer = "ERROR : NO-USER";
      const none = await run("ours", ["-t5"]);
      assert.equal(none.text, "TCPLOCALHOST=0\nTCPREMOTEINFO=\n");
      const asked = questions.length;
      const off = await run("ours", ["-R"]);
      assert.equal(off.text, "TCPLOCALHOST=0\n");
      assert.equal(questions.length, asked);
      if (haveC("tcpserver")) {
        answer = "USERID : UNIX : al ice";
        assert.deepEqual(got, await run("c", ["-r", "-t", "5"]));
        answer = "ERROR : NO-USER";
        assert.deepEqual(none, await run("c", ["-t5"]));
        assert.deepEqual(off, await run("c", ["-R"]));
      }
    } finally {
      await new Promise((r) => ident.close(r));
    }
  },
);

/** git, for its daemon and its client. */
const GIT = needs("git");

Deno.test("tcpserver: git daemon --inetd serves git ls-remote" + GIT.reasonSuffix, {
  ignore: GIT.ignore,
}, async () => {
  const dir = await tempDir();
  try {
    const repo = `${dir.path}/repo`;
    const g = (args: string[], cwd = repo) =>
      new Deno.Command("git", {
        args,
        cwd,
        env: {
          GIT_AUTHOR_NAME: "t",
          GIT_AUTHOR_EMAIL: "t@example",
          GIT_COMMITTER_NAME: "t",
          GIT_COMMITTER_EMAIL: "t@example",
        },
      }).output();
    await Deno.mkdir(repo);
    assert.ok((await g(["init", "-q", "-b", "main"])).success);
    await Deno.writeTextFile(`${repo}/README`, "hello\n");
    assert.ok((await g(["add", "README"])).success);
    assert.ok((await g(["commit", "-q", "-m", "one"])).success);
    const head = new TextDecoder().decode((await g(["rev-parse", "HEAD"])).stdout).trim();
    const srv = await startSrv(
      "ours",
      quietArgs([], ["git", "daemon", "--inetd", "--export-all", `--base-path=${dir.path}`]),
    );
    try {
      const r = await g(["ls-remote", `git://127.0.0.1:${srv.port}/repo`], dir.path);
      const out = new TextDecoder().decode(r.stdout);
      assert.ok(r.success, new TextDecoder().decode(r.stderr));
      assert.match(out, new RegExp(`^${head}\\tHEAD$`, "m"));
      assert.match(out, new RegExp(`^${head}\\trefs/heads/main$`, "m"));
      const clone = await g(["clone", "-q", `git://127.0.0.1:${srv.port}/repo`, "copy"], dir.path);
      assert.ok(clone.success, new TextDecoder().decode(clone.stderr));
      assert.equal(await Deno.readTextFile(`${dir.path}/copy/README`), "hello\n");
    } finally {
      await srv.stop();
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test("tcpserver: 10,000 connections leak no descriptors and leave no zombies", async () => {
  const dir = await tempDir();
  try {
    // 127.0.0.20 is denied by the rules (no process), everyone else runs `echo`.
    const cdb = `${dir.path}/rules.cdb`;
    const r = await ours("tcprules", [cdb, `${dir.path}/tmp`], {
      stdin: "127.0.0.20:deny\n:allow\n",
    });
    assert.equal(r.code, 0, r.err);
    const srv = await startSrv("ours", quietArgs(["-c", "100", "-x", cdb], ["echo", "x"]));
    try {
      assert.equal((await talk(srv.port)).text, "x\n");
      const before = fdCount(srv.pid);
      const total = 10000;
      const spawned = 300;
      let next = 0;
      const worker = async () => {
        while (next < total) {
          const i = next++;
          const t = await talk(srv.port, {
            localAddress: i < spawned ? "127.0.0.21" : "127.0.0.20",
          });
          if (i < spawned) assert.equal(t.text, "x\n");
          else assert.equal(t.text, "");
        }
      };
      await Promise.all(Array.from({ length: 16 }, worker));
      // the last connections may still be finishing: wait until the count settles
      let after = fdCount(srv.pid);
      for (let i = 0; i < 100 && after > before; i++) {
        await new Promise((r) => setTimeout(r, 20));
        after = fdCount(srv.pid);
      }
      assert.ok(after <= before, `fds before ${before}, after ${after}`);
      assert.equal(zombiesOf(srv.pid), 0);
    } finally {
      await srv.stop();
    }
  } finally {
    await dir.cleanup();
  }
});
