/**
 * tcpserver -u/-g/-U: with FFI (the native path) the whole server process
 * drops its ids after binding, as DJB's tcpserver (setgroups to just gid,
 * setgid, setuid), in every thread; without FFI (UCSPI_NATIVE=0) only the
 * programs switch. Compared with Debian's C tcpserver where installed.
 */
import assert from "node:assert/strict";
import { haveC, MOD, tempDir } from "./helpers.ts";
import { quietArgs, spawnServer, type Srv, startSrv, talk } from "./tcpserver_util.ts";

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

Deno.test("tcpserver privs: root with -u/-g drops the whole server (all threads) to 65534, as C", async () => {
  if (!ROOT) return void console.log("skip: not root");
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

Deno.test("tcpserver privs: -U takes $UID/$GID; -u alone keeps the groups, as C", async () => {
  if (!ROOT) return void console.log("skip: not root");
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

Deno.test("tcpserver privs: without FFI (UCSPI_NATIVE=0) the server keeps its ids, programs switch", async () => {
  if (!ROOT) return void console.log("skip: not root");
  const pure = await withSrv(
    await startSrv("ours", quietArgs(["-u", "65534", "-g", "65534"], ID_PROG), {
      env: { UCSPI_NATIVE: "0" },
    }),
    async (srv) => ({ ids: idLines(srv.pid), text: (await talk(srv.port)).text }),
  );
  assert.equal(pure.text, "65534\n65534\n65534\n");
  assert.match(pure.ids.process, /^Uid: 0 0 0 0 \| Gid: 0 0 0 0 \|/);
});

Deno.test("tcpserver privs: as nobody, C's messages and exit 111; -u 0 and -u own uid start", async () => {
  if (!ROOT) return void console.log("skip: not root (needs setpriv to become nobody)");
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

Deno.test("tcpserver privs: a rules cdb only root can read drops connections after -u, as C", async () => {
  if (!ROOT) return void console.log("skip: not root");
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
