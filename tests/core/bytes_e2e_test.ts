/**
 * Issue 9 finding 4 ("bytes become text") and the envp part of finding 1:
 * rule values, $RBLSMTPD and our own environment are byte strings from the
 * rules cdb to the program, on the native and the pure path, byte for byte
 * as Debian's C tcpserver, tcprulescheck and rblsmtpd pass them.
 */
import assert from "node:assert/strict";
import { byteString, stringBytes } from "../../lib/core/bytes.ts";
import { execEnvironment } from "../../lib/core/environ.ts";
import { nativeAvailable, NativeListener, spawnOnSocket } from "../../lib/native/native.ts";
import { runPumped } from "../../lib/process/spawn.ts";
import { octalEscaped, textCommand } from "../../lib/process/text_command.ts";
import { cTool, DENO, haveC, MOD, oursArgv, tempDir } from "../support/helpers.ts";
import { concat, spawnServer, startSrv, talk } from "../support/tcpserver_util.ts";

/** Every byte but NUL, newline and the quote: a rule value can hold all of them. */
const ALL = byteString(
  Uint8Array.from({ length: 255 }, (_, i) => i + 1).filter((b) => b !== 10 && b !== 34),
);
const U = "\xe4\xf6\xfc";
const W = "\x85\x9f\xff";
const BLOCK = "\xe4\x85\x9f blocked \xff";
const RULES = `127.0.0.1:allow,U="${U}",V="${ALL}",W="${W}",RBLSMTPD=""\n` +
  `127.0.0.2:allow,U="${U}",RBLSMTPD="-${BLOCK}"\n` +
  `\xe4@127.0.0.3:deny\n=h\xe4.x:allow,X="\xff"\n:allow,=/x/,\x80\x81=/1/\n`;
const C_READY = haveC("tcpserver") && haveC("tcprules") && haveC("tcprulescheck") &&
  haveC("rblsmtpd");

/** argv, run with each NAME=byte string of env set through sh's printf (Deno passes only text). */
function withBytes(env: Record<string, string>, argv: string[]): string[] {
  let script = "";
  for (const [k, v] of Object.entries(env)) {
    script += `${k}=$(printf '${octalEscaped(v)}'); export ${k}; `;
  }
  return ["sh", "-c", script + 'exec "$@"', "sh", ...argv];
}

async function run(
  argv: string[],
  stdin = "",
): Promise<{ out: string; err: string; code: number }> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(stringBytes(stdin)).catch(() => {});
  await w.close().catch(() => {});
  const r = await child.output();
  return { out: byteString(r.stdout), err: byteString(r.stderr), code: r.code };
}

/** A rules cdb compiled by ours and by C's tcprules (asserted byte-identical). */
async function rulesCdb(dir: string): Promise<string> {
  await Deno.writeFile(`${dir}/rules`, stringBytes(RULES));
  const sh = (tool: string[]) => run(["sh", "-c", 'exec "$@" < "$0"', `${dir}/rules`, ...tool]);
  const c = await sh([cTool("tcprules")!, `${dir}/c.cdb`, `${dir}/c.tmp`]);
  assert.equal(c.code, 0, c.err);
  const o = await sh(oursArgv("tcprules", [`${dir}/o.cdb`, `${dir}/o.tmp`]));
  assert.equal(o.code, 0, o.err);
  assert.deepEqual(await Deno.readFile(`${dir}/o.cdb`), await Deno.readFile(`${dir}/c.cdb`));
  return `${dir}/o.cdb`;
}

function envOf(dump: Uint8Array): Map<string, string> {
  const env = new Map<string, string>();
  for (const e of byteString(dump).split("\0")) {
    const eq = e.indexOf("=");
    if (eq > 0) env.set(e.slice(0, eq), e.slice(eq + 1));
  }
  return env;
}

const MODES = [
  { name: "native", env: { UCSPI_NATIVE: "1" } },
  { name: "pure", env: { UCSPI_NATIVE: "0" } },
] as const;

Deno.test({
  name: "bytes: rule values that are not UTF-8 reach the program unchanged, native and pure, as C",
  ignore: !C_READY || !nativeAvailable(),
  async fn() {
    const dir = await tempDir();
    try {
      const cdb = await rulesCdb(dir.path);
      const dumps = new Map<string, Map<string, string>>();
      const replies = new Map<string, Uint8Array>();
      for (const which of ["c", ...MODES.map((m) => m.name)]) {
        const mode = MODES.find((m) => m.name === which);
        // ours runs rblsmtpd in-process (UCSPI_CHAIN=force), C's is Debian's
        const srv = await startSrv(which === "c" ? "c" : "ours", [
          "-1",
          "-RH",
          "-l0",
          "-x",
          cdb,
          "127.0.0.1",
          "0",
          which === "c" ? cTool("rblsmtpd")! : "rblsmtpd",
          "env",
          "-0",
        ], { clearEnv: true, env: { ...mode?.env, UCSPI_CHAIN: "force" } });
        try {
          dumps.set(which, envOf((await talk(srv.port)).data));
          const blocked = await talk(srv.port, {
            localAddress: "127.0.0.2",
            send: "RCPT TO:<a@b>\r\nQUIT\r\n",
          });
          replies.set(which, blocked.data);
        } finally {
          await srv.stop();
        }
      }
      for (const [which, env] of dumps) {
        assert.equal(env.get("U"), U, which);
        assert.equal(env.get("V"), ALL, which);
        assert.equal(env.get("W"), W, which);
        assert.equal(env.get("RBLSMTPD"), "", which);
        assert.deepEqual(replies.get(which), replies.get("c"), which);
      }
      // the pure path's /bin/sh start adds and drops nothing
      assert.deepEqual(
        [...dumps.get("pure")!.keys()].sort(),
        [...dumps.get("native")!.keys()].sort(),
      );
      assert.equal(
        byteString(replies.get("c")!),
        `220 rblsmtpd.local\r\n553 ${BLOCK.replace(/[^ -~]/g, "?")}\r\n221 rblsmtpd.local\r\n`,
      );
    } finally {
      await dir.cleanup();
    }
  },
});

Deno.test({
  name: "bytes: a program run as a process from C tcpserver gets the rule's bytes (our rblsmtpd)",
  ignore: !C_READY,
  async fn() {
    const dir = await tempDir();
    try {
      const cdb = await rulesCdb(dir.path);
      const got: Map<string, string>[] = [];
      for (const rbl of [[cTool("rblsmtpd")!], oursArgv("rblsmtpd")]) {
        const srv = await startSrv("c", [
          "-1",
          "-RH",
          "-l0",
          "-x",
          cdb,
          "127.0.0.1",
          "0",
          ...rbl,
          "env",
          "-0",
        ], {
          clearEnv: true,
        });
        try {
          got.push(envOf((await talk(srv.port)).data));
        } finally {
          await srv.stop();
        }
      }
      for (const env of got) {
        assert.equal(env.get("U"), U);
        assert.equal(env.get("V"), ALL);
        assert.equal(env.get("W"), W);
      }
    } finally {
      await dir.cleanup();
    }
  },
});

Deno.test({
  name: "bytes: pure path without run access to /bin/sh drops the connection, naming the variable",
  ignore: !haveC("tcprules"),
  async fn() {
    const dir = await tempDir();
    try {
      const cdb = await rulesCdb(dir.path);
      const srv = await spawnServer([
        DENO,
        "run",
        "--allow-net=127.0.0.1",
        "--allow-env",
        "--allow-read",
        "--allow-run=/usr/bin/env",
        MOD,
        "tcpserver",
        "-1",
        "-v",
        "-RH",
        "-l0",
        "-x",
        cdb,
        "127.0.0.1",
        "0",
        "/usr/bin/env",
        "-0",
      ], { name: "tcpserver" });
      try {
        const t = await talk(srv.port);
        assert.equal(t.data.length, 0);
        const line = await srv.waitLine(/dropping connection/);
        assert.match(
          line,
          /^tcpserver: warning: dropping connection, unable to run \/usr\/bin\/env: /,
        );
        assert.match(line, /missing Deno permission .*"\/bin\/sh".*\$U/);
      } finally {
        await srv.stop();
      }
    } finally {
      await dir.cleanup();
    }
  },
});

Deno.test({
  name: "bytes: tcprulescheck prints the rule's bytes exactly as C tcprulescheck",
  ignore: !C_READY,
  async fn() {
    const dir = await tempDir();
    try {
      const cdb = await rulesCdb(dir.path);
      const cases: Record<string, string>[] = [
        { TCPREMOTEIP: "127.0.0.1" },
        { TCPREMOTEIP: "127.0.0.3", TCPREMOTEINFO: "\xe4" },
        { TCPREMOTEIP: "9.9.9.9", TCPREMOTEHOST: "h\xe4.x" },
        { TCPREMOTEIP: "9.9.9.9" },
      ];
      for (const env of cases) {
        const c = await run(withBytes(env, [cTool("tcprulescheck")!, cdb]));
        const o = await run(withBytes(env, oursArgv("tcprulescheck", [cdb])));
        assert.equal(o.code, c.code, JSON.stringify(env));
        assert.equal(o.out, c.out, JSON.stringify(env));
        assert.ok(c.out.startsWith("rule "), c.out);
      }
    } finally {
      await dir.cleanup();
    }
  },
});

Deno.test({
  name: "bytes: rblsmtpd with an 8-bit $RBLSMTPD answers and logs the bytes C's does",
  ignore: !haveC("rblsmtpd"),
  async fn() {
    const session = "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nQUIT\r\n";
    for (const value of [`-${BLOCK}`, BLOCK, "\x80\x9f\xc3\xa9\x01\x7f" + "\xff".repeat(300)]) {
      const env = { RBLSMTPD: value, TCPREMOTEIP: "1.2.3.4" };
      const c = await run(withBytes(env, [cTool("rblsmtpd")!, "true"]), session);
      const o = await run(withBytes(env, oursArgv("rblsmtpd", ["true"])), session);
      assert.equal(o.out, c.out);
      assert.equal(o.err.replace(/pid \d+/, "pid N"), c.err.replace(/pid \d+/, "pid N"));
      assert.equal(o.code, c.code);
    }
  },
});

/** What `env -0` prints when started by spawnOnSocket (native) with env. */
async function nativeDump(env: Map<string, string>): Promise<Map<string, string>> {
  const l = NativeListener.open("127.0.0.1", 0)!;
  // the native poller and SIGCHLD watch do not hold the event loop open (in
  // tcpserver the listener does): an idle interval does, until we are done
  const keepAlive = setInterval(() => {}, 1000);
  try {
    const client = await Deno.connect({ hostname: "127.0.0.1", port: l.local.port });
    const done = new Response(client.readable).bytes();
    const conn = (await l.accept())!;
    const child = await spawnOnSocket("/usr/bin/env", ["env", "-0"], env, conn.fd);
    await conn.close();
    await child.status;
    return envOf(await done);
  } finally {
    clearInterval(keepAlive);
    l.close();
  }
}

/** What `env -0` prints when started by runPumped (pure) with env. */
async function pureDump(env: Map<string, string>): Promise<Map<string, string>> {
  const chunks: Uint8Array[] = [];
  await runPumped(["/usr/bin/env", "-0"], env, {
    input: new ReadableStream({ start: (c) => c.close() }),
    output: new WritableStream({ write: (c) => void chunks.push(c.slice()) }),
    log: () => {},
  });
  return envOf(concat(chunks));
}

Deno.test({
  name: "bytes: a NUL or '=' in the environment never splits it or adds a variable (native, pure)",
  ignore: !nativeAvailable(),
  async fn() {
    const env = new Map([
      ["A", "x\0INJECTED=yes"],
      ["B=C", "d"],
      ["N\0M", "e"],
      ["", "empty"],
      ["H", W + U],
      ["Z", "last"],
    ]);
    assert.deepEqual(execEnvironment(env), [["A", "x"], ["H", W + U], ["Z", "last"]]);
    for (const dump of [await nativeDump(env), await pureDump(env)]) {
      assert.deepEqual([...dump].sort(), [["A", "x"], ["H", W + U], ["Z", "last"]]);
    }
  },
});

Deno.test("bytes: textCommand passes UTF-8 as text, anything else through /bin/sh or not at all", () => {
  const text = textCommand("/usr/bin/env", ["-0"], new Map([["A", "\xc3\xa9"]]));
  assert.deepEqual(text, {
    command: "/usr/bin/env",
    args: ["-0"],
    env: { A: "é" },
    argv0: undefined,
  });
  const odd = textCommand("/usr/bin/env", ["-0"], new Map([["A", "\xe9"]]), "env");
  assert.equal(odd.command, "/bin/sh");
  assert.ok(odd.args[1].includes("printf 'A\\075\\351x'"), odd.args[1]);
  // a name that does not find the file by PATH cannot be kept as argv[0]: refused
  assert.throws(
    () => textCommand("/usr/bin/env", [], new Map([["A", "\xe9"]]), "no-such-name"),
    /\$A/,
  );
});
