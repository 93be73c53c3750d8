/**
 * tcpserver -u/-g/-U: with FFI (the native path) the whole server process
 * drops its ids after binding, as DJB's tcpserver (setgroups to just gid,
 * setgid, setuid), in every thread; without FFI (UCSPI_NATIVE=0) only the
 * programs switch. Compared with Debian's C tcpserver where installed.
 */
import assert from "node:assert/strict";
import tls from "node:tls";
import { haveC, MOD, ours, tempDir } from "../support/helpers.ts";
import { makePki, startTool } from "../support/ssl_fixtures.ts";
import { quietArgs, spawnServer, type Srv, startSrv, talk } from "../support/tcpserver_util.ts";

const ROOT = Deno.uid() === 0;

/** The distinct Uid/Gid/Groups lines of a process and of each of its threads. */
function idLines(pid: number): { process: string; threads: Set<string>; count: number } {
  const pick = (text: string) =>
    text.split("\n").filter((l) => /^(Uid|Gid|Groups):/.test(l)).map((l) =>
      l.replace(/\s+/g, " ").trim()
    ).join(" | ");
  const process = pick(Deno.readTextFileSync(`/proc/${pid}/status`));
  const threads = new Set<string>();
  let count = 0;
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      threads.add(pick(Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/status`)));
      count++;
    } catch { /* thread ended */ }
  }
  return { process, threads, count };
}

const NOBODY = "Uid: 65534 65534 65534 65534 | Gid: 65534 65534 65534 65534 | Groups: 65534";
const ID_PROG = ["sh", "-c", "id -u; id -g; id -G"];

async function withSrv<T>(srv: Srv, f: (srv: Srv) => Promise<T>): Promise<T> {
  try {
    return await f(srv);
  } finally {
    await srv.stop();
  }
}

Deno.test({
  name: "tcpserver privs: root with -u/-g drops the whole server (all threads) to 65534, as C",
  ignore: !ROOT,
}, async () => {
  const dir = await tempDir();
  try {
    // The rules cdb is opened per connection: after the drop it must be
    // readable by the uid (as for C).
    await Deno.chmod(dir.path, 0o755);
    const rules = `${dir.path}/rules.cdb`;
    const make = await new Deno.Command("tcprules", {
      args: [rules, `${dir.path}/rules.tmp`],
      stdin: "piped",
    }).spawn();
    const w = make.stdin.getWriter();
    await w.write(new TextEncoder().encode('127.0.0.1:allow,WHO="rules"\n:deny\n'));
    await w.close();
    assert.equal((await make.status).code, 0);
    await Deno.chmod(rules, 0o644);
    const prog = ["sh", "-c", 'id -u; id -g; id -G; echo "$WHO"'];
    const args = quietArgs(["-u", "65534", "-g", "65534", "-x", rules], prog);
    const ours = await withSrv(
      await startSrv("ours", args, { env: { UCSPI_NATIVE: "1" } }),
      async (srv) => {
        const before = idLines(srv.pid);
        const text = (await talk(srv.port)).text;
        // threads started after the drop (FFI workers) are dropped too
        const after = idLines(srv.pid);
        return { before, text, after };
      },
    );
    assert.equal(ours.text, "65534\n65534\n65534\nrules\n");
    for (const s of [ours.before, ours.after]) {
      assert.equal(s.process, NOBODY);
      assert.deepEqual([...s.threads], [NOBODY], `${s.count} threads`);
      assert.ok(s.count > 1, "Deno runs several threads");
    }
    if (haveC("tcpserver")) {
      const c = await withSrv(await startSrv("c", args), async (srv) => ({
        ids: idLines(srv.pid).process,
        text: (await talk(srv.port)).text,
      }));
      assert.equal(ours.before.process, c.ids);
      assert.equal(ours.text, c.text);
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test({
  name: "tcpserver privs: -U takes $UID/$GID; -u alone keeps the groups, as C",
  ignore: !ROOT,
}, async () => {
  const u = await withSrv(
    await startSrv("ours", quietArgs(["-U"], ID_PROG), {
      env: { UID: "65534", GID: "65534", UCSPI_NATIVE: "1" },
    }),
    async (srv) => ({ ids: idLines(srv.pid), text: (await talk(srv.port)).text }),
  );
  assert.equal(u.text, "65534\n65534\n65534\n");
  assert.deepEqual([...u.ids.threads], [NOBODY]);
  // Only -u: C calls setuid alone, so gid 0 and the supplementary groups stay.
  const wrap = ["setpriv", "--regid=0", "--groups=0,4"];
  const args = quietArgs(["-u", "65534"], ID_PROG);
  const ours = await withSrv(
    await startSrv("ours", args, { wrap, env: { UCSPI_NATIVE: "1" } }),
    async (srv) => ({ ids: idLines(srv.pid), text: (await talk(srv.port)).text }),
  );
  assert.equal(ours.ids.process, "Uid: 65534 65534 65534 65534 | Gid: 0 0 0 0 | Groups: 0 4");
  assert.deepEqual([...ours.ids.threads], [ours.ids.process]);
  assert.equal(ours.text, "65534\n0\n0 4\n");
  if (haveC("tcpserver")) {
    const c = await withSrv(
      await startSrv("c", args, { wrap }),
      async (srv) => ({ ids: idLines(srv.pid).process, text: (await talk(srv.port)).text }),
    );
    assert.equal(ours.ids.process, c.ids);
    assert.equal(ours.text, c.text);
  }
});

Deno.test({
  name: "tcpserver privs: without FFI (UCSPI_NATIVE=0) the server keeps its ids, programs switch",
  ignore: !ROOT,
}, async () => {
  const pure = await withSrv(
    await startSrv("ours", quietArgs(["-u", "65534", "-g", "65534"], ID_PROG), {
      env: { UCSPI_NATIVE: "0" },
    }),
    async (srv) => ({ ids: idLines(srv.pid), text: (await talk(srv.port)).text }),
  );
  assert.equal(pure.text, "65534\n65534\n65534\n");
  assert.match(pure.ids.process, /^Uid: 0 0 0 0 \| Gid: 0 0 0 0 \|/);
});

Deno.test({
  name: "tcpserver privs: as nobody, C's messages and exit 111; -u 0 and -u own uid start",
  ignore: !ROOT,
}, async () => {
  // Deno's binary may live under /root (mode 700): run a link to it from a
  // directory nobody can reach.
  const dir = await tempDir();
  try {
    await Deno.chmod(dir.path, 0o755);
    const deno = `${dir.path}/deno`;
    try {
      await Deno.link(Deno.execPath(), deno);
    } catch {
      await Deno.copyFile(Deno.execPath(), deno);
    }
    await Deno.chmod(deno, 0o755);
    const asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    const env = { DENO_DIR: `${dir.path}/cache`, HOME: dir.path, UCSPI_NATIVE: "1" };
    for (const [opts, text] of [[["-u1"], "uid"], [["-g65534"], "gid"], [["-g1", "-u1"], "gid"]]) {
      const r = await new Deno.Command(asNobody[0], {
        args: [
          ...asNobody.slice(1),
          "bash",
          "-c",
          `exec -a tcpserver "$0" run -A "$@"`,
          deno,
          MOD,
          ...opts,
          "127.0.0.1",
          "0",
          "true",
        ],
        env,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const err = new TextDecoder().decode(r.stderr);
      assert.equal(err, `tcpserver: fatal: unable to set ${text}: permission denied\n`);
      assert.equal(r.code, 111);
      if (haveC("tcpserver")) {
        const c = await new Deno.Command(asNobody[0], {
          args: [...asNobody.slice(1), "/usr/bin/tcpserver", ...opts, "127.0.0.1", "0", "true"],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.equal(err, new TextDecoder().decode(c.stderr));
        assert.equal(r.code, c.code);
      }
    }
    // -u 0 means "leave the uid" (C skips it); -u of our own uid succeeds.
    for (const opt of ["-u0", "-u65534"]) {
      const srv = await spawnServer([
        ...asNobody,
        "bash",
        "-c",
        `exec -a tcpserver "$0" run -A "$@"`,
        deno,
        MOD,
        ...quietArgs([opt], ["id", "-u"]),
      ], { env });
      await withSrv(srv, async (s) => {
        assert.equal((await talk(s.port)).text, "65534\n");
        assert.deepEqual([...idLines(s.pid).threads], [NOBODY.replace(/ 65534$/, "")]);
      });
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test({
  name: "tcpserver privs: a rules cdb only root can read drops connections after -u, as C",
  ignore: !ROOT,
}, async () => {
  const dir = await tempDir();
  try {
    await Deno.chmod(dir.path, 0o755);
    const rules = `${dir.path}/r.cdb`;
    const make = new Deno.Command("tcprules", {
      args: [rules, `${dir.path}/r.tmp`],
      stdin: "piped",
    })
      .spawn();
    const w = make.stdin.getWriter();
    await w.write(new TextEncoder().encode(":allow\n"));
    await w.close();
    assert.equal((await make.status).code, 0);
    await Deno.chmod(rules, 0o600);
    const args = ["-1", "-v", "-RHl0", "-u", "65534", "-g", "65534", "-x", rules, "127.0.0.1", "0"];
    const want = `tcpserver: warning: dropping connection, unable to read ${rules}: access denied`;
    for (const which of haveC("tcpserver") ? ["ours", "c"] as const : ["ours"] as const) {
      await withSrv(
        await startSrv(which, [...args, "echo", "hi"], { env: { UCSPI_NATIVE: "1" } }),
        async (srv) => {
          assert.equal((await talk(srv.port)).text, "", which);
          assert.equal(await srv.waitLine(/dropping connection/), want, which);
        },
      );
    }
  } finally {
    await dir.cleanup();
  }
});

/** A TLS client: sends nothing, returns what it got and the server certificate's CN. */
function tlsTalk(port: number): Promise<{ text: string; cn: string }> {
  return new Promise((resolve, reject) => {
    let text = "";
    let cn = "";
    const s = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false });
    s.on("secureConnect", () => {
      const subject = s.getPeerCertificate().subject as unknown as Record<string, string>;
      cn = String(subject?.CN ?? "");
      s.end();
    });
    s.on("data", (d: Uint8Array) => (text += new TextDecoder().decode(d)));
    s.on("error", reject);
    s.on("close", () => resolve({ text, cn }));
  });
}

Deno.test({
  name:
    "sslserver privs: with FFI, -u/-g drop the whole process after loading the credentials; SIGHUP re-reads them as that user",
  ignore: !ROOT,
}, async () => {
  const p = await makePki();
  try {
    // credentials only root can read: loaded at start, before the drop
    for (const f of [p.serverCert, p.serverKey]) await Deno.chmod(f, 0o600);
    const srv = await startTool(
      "sslserver",
      ["-1", "-v", "-u", "65534", "-g", "65534", "-RHl0", "127.0.0.1", "0", "id", "-u"],
      { CERTFILE: p.serverCert, KEYFILE: p.serverKey, UCSPI_NATIVE: "1" },
    );
    try {
      const ids = idLines(srv.pid);
      assert.equal(ids.process, NOBODY);
      assert.deepEqual([...ids.threads], [NOBODY], `${ids.count} threads`);
      assert.deepEqual(await tlsTalk(srv.port), { text: "65534\n", cn: "localhost" });
      // SIGHUP as nobody: the files cannot be read, the old certificate stays
      Deno.kill(srv.pid, "SIGHUP");
      assert.match(
        await srv.waitLine(/keeping the old certificate/),
        /^sslserver: warning: keeping the old certificate: unable to load (certificate|key)$/,
      );
      assert.deepEqual(await tlsTalk(srv.port), { text: "65534\n", cn: "localhost" });
      // readable by nobody now, and a new certificate: SIGHUP takes it
      await Deno.chmod(p.dir, 0o755);
      await Deno.copyFile(p.otherCert, p.serverCert);
      await Deno.copyFile(p.otherKey, p.serverKey);
      for (const f of [p.serverCert, p.serverKey]) await Deno.chmod(f, 0o644);
      Deno.kill(srv.pid, "SIGHUP");
      await srv.waitLine(/^sslserver: reloaded certificate /);
      assert.deepEqual(await tlsTalk(srv.port), { text: "65534\n", cn: "second.test" });
      assert.equal(idLines(srv.pid).process, NOBODY);
    } finally {
      await srv.stop();
    }
  } finally {
    await p.cleanup();
  }
});

Deno.test({
  name: "sslserver privs: $SSL_UID/$SSL_GID name the process's ids; they must be the programs' ids",
  ignore: !ROOT,
}, async () => {
  const p = await makePki();
  try {
    const env = { CERTFILE: p.serverCert, KEYFILE: p.serverKey, UCSPI_NATIVE: "1" };
    const srv = await startTool(
      "sslserver",
      ["-1", "-u", "65534", "-g", "65534", "-RHl0", "127.0.0.1", "0", "id", "-u"],
      { ...env, SSL_UID: "65534", SSL_GID: "65534" },
    );
    try {
      assert.equal(idLines(srv.pid).process, NOBODY);
      assert.equal((await tlsTalk(srv.port)).text, "65534\n");
    } finally {
      await srv.stop();
    }
    // TLS as 65534 while the programs keep root: not possible in one process
    const r = await ours("sslserver", ["-RHl0", "127.0.0.1", "0", "true"], {
      env: { ...env, SSL_UID: "65534" },
    });
    assert.equal(
      r.err,
      "sslserver: fatal: unable to set uid: $SSL_UID 65534 is not the programs' uid 0\n",
    );
    assert.equal(r.code, 111);
  } finally {
    await p.cleanup();
  }
});

Deno.test({
  name:
    "tcpserver, sslserver privs: without FFI, -u/-g print one warning that the server keeps its ids",
  ignore: !ROOT,
}, async () => {
  const p = await makePki();
  try {
    for (const prog of ["tcpserver", "sslserver"]) {
      const srv = await startTool(
        prog,
        ["-1", "-u", "65534", "-g", "65534", "-RHl0", "127.0.0.1", "0", "id", "-u"],
        { CERTFILE: p.serverCert, KEYFILE: p.serverKey, UCSPI_NATIVE: "0" },
      );
      try {
        assert.match(idLines(srv.pid).process, /^Uid: 0 0 0 0 \| Gid: 0 0 0 0 \|/);
        const text = prog === "tcpserver"
          ? (await talk(srv.port)).text
          : (await tlsTalk(srv.port)).text;
        assert.equal(text, "65534\n");
        assert.deepEqual(srv.lines.filter((l) => /warning/.test(l)), [
          `${prog}: warning: without FFI (--allow-ffi) the server process keeps uid 0 gid 0; only the programs run as -u/-g`,
        ]);
      } finally {
        await srv.stop();
      }
    }
  } finally {
    await p.cleanup();
  }
});

Deno.test("tcpserver -u/-g: a name that is neither a number nor a known user/group is fatal", async () => {
  for (const [opt, kind, file] of [["-u", "user", "passwd"], ["-g", "group", "group"]]) {
    const r = await ours("tcpserver", [opt, "no-such-name", "127.0.0.1", "0", "true"]);
    assert.equal(r.code, 111);
    assert.equal(
      r.err,
      `tcpserver: fatal: unknown ${kind} no-such-name: neither a number nor a name in /etc/${file}\n`,
    );
  }
});

Deno.test({
  name: "tcpserver privs: -u nobody -g nogroup mean their ids (C would read the names as 0)",
  ignore: !ROOT || !/^nogroup:/m.test(Deno.readTextFileSync("/etc/group")),
}, async () => {
  for (const native of ["1", "0"]) {
    const args = quietArgs(["-u", "nobody", "-g", "nogroup"], ID_PROG);
    const text = await withSrv(
      await startSrv("ours", args, { env: { UCSPI_NATIVE: native } }),
      async (srv) => (await talk(srv.port)).text,
    );
    assert.equal(text, "65534\n65534\n65534\n", `UCSPI_NATIVE=${native}`);
  }
});
