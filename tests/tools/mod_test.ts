import assert from "node:assert/strict";
import { ours, tempDir } from "../support/helpers.ts";
import { RUNTIME_DIR } from "../../lib/install/install.ts";
import { toolNames } from "../../cli/tools.ts";

Deno.test("ucspi-tcp --list prints the tool names", async () => {
  const r = await ours("ucspi-tcp", ["--list"]);
  assert.equal(r.code, 0);
  assert.deepEqual(r.out.trim().split("\n").filter((s) => s), toolNames());
});

Deno.test("unknown tool name: usage, exit 100", async () => {
  const r = await ours("ucspi-tcp", ["nosuchtool"]);
  assert.equal(r.code, 100);
  assert.match(r.err, /unknown tool: nosuchtool/);
});

Deno.test("install DIR writes one entry per tool and a world-readable runtime", async () => {
  const dir = await tempDir();
  try {
    const r = await ours("ucspi-tcp", ["install", dir.path]);
    assert.equal(r.code, 0, r.err);
    const names = [];
    for await (const e of Deno.readDir(dir.path)) if (e.name !== RUNTIME_DIR) names.push(e.name);
    assert.deepEqual(names.sort(), toolNames());
    const again = await ours("ucspi-tcp", ["install", dir.path]);
    assert.equal(again.code, 0, "an install of ours replaces its own entries: " + again.err);
    const add = await new Deno.Command(`${dir.path}/addcr`, { stdin: "piped", stdout: "piped" })
      .spawn();
    const w = add.stdin.getWriter();
    await w.write(new TextEncoder().encode("a\nb\n"));
    await w.close();
    const out = await add.output();
    assert.equal(new TextDecoder().decode(out.stdout), "a\r\nb\r\n");
  } finally {
    await dir.cleanup();
  }
});

Deno.test("install refuses to replace a file that is not ours unless -f", async () => {
  const dir = await tempDir();
  try {
    const foreign = `${dir.path}/tcpserver`;
    await Deno.writeTextFile(foreign, "#!/bin/sh\necho C tcpserver\n", { mode: 0o755 });
    const r = await ours("ucspi-tcp", ["install", dir.path]);
    assert.equal(r.code, 111);
    assert.equal(
      r.err,
      `ucspi-tcp: fatal: unable to create ${foreign}: file already exists and is not ours (use -f to replace it)\n`,
    );
    assert.equal(await Deno.readTextFile(foreign), "#!/bin/sh\necho C tcpserver\n");
    const f = await ours("ucspi-tcp", ["install", "-f", dir.path]);
    assert.equal(f.code, 0, f.err);
    assert.match(await Deno.readTextFile(foreign), /ucspi-tcp wrapper/);
  } finally {
    await dir.cleanup();
  }
});

Deno.test("install into a missing directory names it", async () => {
  const r = await ours("ucspi-tcp", ["install", "/nonexistent/bin"]);
  assert.equal(r.code, 111);
  assert.equal(
    r.err,
    "ucspi-tcp: fatal: unable to install into /nonexistent/bin: file does not exist\n",
  );
});

const root = Deno.uid() === 0;
const setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});

Deno.test({
  name: "installed tools run as another user (nobody), whoever installed them",
  ignore: !root || !setpriv,
  fn: async () => {
    const base = await Deno.makeTempDir({ dir: "/tmp" });
    try {
      await Deno.chmod(base, 0o755);
      const r = await ours("ucspi-tcp", ["install", base]);
      assert.equal(r.code, 0, r.err);
      const out = await new Deno.Command(setpriv!, {
        args: ["--reuid=65534", "--regid=65534", "--clear-groups", `${base}/tcprulescheck`],
        env: { PATH: "/usr/bin:/bin", HOME: "/nonexistent", TCPREMOTEIP: "1.2.3.4" },
        clearEnv: true,
        stdin: "null",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.doesNotMatch(text, /Permission denied/i);
      assert.notEqual(out.code, 126, text);
    } finally {
      await Deno.remove(base, { recursive: true });
    }
  },
});

Deno.test("--version and --help", async () => {
  const v = await ours("ucspi-tcp", ["--version"]);
  assert.equal(v.code, 0);
  assert.match(v.out, /^ucspi-tcp 0\.88-deno\.\d+ \(Deno \d+\.\d+\.\d+\)\n$/);
  const h = await ours("ucspi-tcp", ["--help"]);
  assert.equal(h.code, 0);
  for (const name of toolNames()) assert.ok(h.out.includes(` ${name}`), name);
});
