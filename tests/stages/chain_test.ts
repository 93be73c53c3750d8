/**
 * In-process chaining (lib/stages/chain.ts): a chain of our stage tools run inside
 * the caller must give the client the same bytes, the final program the same
 * argv and environment, and the log the same lines as the same chain run as
 * processes: ours (through the `install` wrappers, UCSPI_CHAIN=0) and DJB's
 * C tools.
 */
import assert from "node:assert/strict";
import { forgetRecognised, isOurs, runConnectionProgram } from "../../lib/stages/chain.ts";
import { statusOf } from "../../lib/process/status.ts";
import type { Io } from "../../lib/stages/stage.ts";
import { cTool, DENO, MOD, needs, tempDir } from "../support/helpers.ts";
import { startDnsServer } from "../support/dns_server.ts";

const ZONES = {
  "4.3.2.1.rbl.test": { TXT: ["listed; see http://rbl.test/"] },
};

const FINAL = [
  "sh",
  "-c",
  'echo "args=$0 $*"; env | grep -E "^(TCPREMOTEIP|RBLSMTPD|X)=" | sort; cat; exit 3',
  "final",
  "a b",
];

interface Seen {
  code: number;
  out: string;
  log: string[];
}

function memoryIo(input: Uint8Array): { io: Io; out: () => string; log: string[] } {
  const chunks: Uint8Array[] = [];
  const log: string[] = [];
  let sent = false;
  const io: Io = {
    input: new ReadableStream<Uint8Array>({
      pull(c) {
        if (!sent && input.length) c.enqueue(input);
        else c.close();
        sent = true;
      },
    }, { highWaterMark: 0 }),
    output: new WritableStream<Uint8Array>({ write: (b) => void chunks.push(b.slice()) }),
    log: (line) => log.push(line),
  };
  const out = () => new TextDecoder("latin1").decode(new Uint8Array(chunks.flatMap((c) => [...c])));
  return { io, out, log };
}

async function inProcess(
  argv: string[],
  env: Record<string, string>,
  input: string,
): Promise<Seen> {
  const m = memoryIo(new TextEncoder().encode(input));
  const ended = await runConnectionProgram(argv, new Map(Object.entries(env)), m.io);
  return { code: statusOf(ended), out: m.out(), log: m.log };
}

async function asProcesses(
  argv: string[],
  env: Record<string, string>,
  input: string,
): Promise<Seen> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env,
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(input)).catch(() => {});
  await w.close().catch(() => {});
  const r = await child.output();
  const err = new TextDecoder("latin1").decode(r.stderr);
  return {
    code: r.code,
    out: new TextDecoder("latin1").decode(r.stdout),
    log: err === "" ? [] : err.replace(/\n$/, "").split("\n"),
  };
}

/**
 * Pids differ between runs; recordio's lines from two directions may
 * interleave differently. Whether DJB's recordio logs `< [EOF]` after its
 * program ended is a race in the C tool (it stops at the program's output
 * EOF; the client's EOF is logged only if it was read first), so that line
 * is left out when comparing a chain that ends before its input does.
 */
function normalise(s: Seen, sortLog = false): Seen {
  const log = s.log.filter((l) => !(sortLog && /^\d+ < \[EOF\]$/.test(l))).map((l) =>
    l.replace(/ pid \d+:/, " pid PID:").replace(/^\d+ ([<>])/, "PID $1").replace(
      /^(\w+): /,
      (_, t) => `${t.replace(/^.*\//, "")}: `,
    )
  );
  return { code: s.code, out: s.out, log: sortLog ? log.sort() : log };
}

async function withSetup(
  fn: (wrappers: string, env: Record<string, string>) => Promise<void>,
): Promise<void> {
  const dir = await tempDir();
  const dns = await startDnsServer(structuredClone(ZONES));
  try {
    const inst = await new Deno.Command(DENO, {
      args: ["run", "-A", MOD, "install", dir.path],
      stdout: "null",
    }).output();
    assert.equal(inst.code, 0);
    forgetRecognised();
    await fn(dir.path, {
      PATH: `${dir.path}:/usr/bin:/bin`,
      DNSCACHEIP: dns.address,
      TCPREMOTEIP: "1.2.3.4",
      X: "y",
    });
  } finally {
    await dns.close();
    await dir.cleanup();
  }
}

const CHAINS: { argv: string[]; env?: Record<string, string>; input: string; sortLog?: boolean }[] =
  [
    // blocked: rblsmtpd answers, nothing is spawned
    {
      argv: ["rblsmtpd", "-r", "rbl.test", "fixcrio", ...FINAL],
      input: "helo x\r\nrcpt\r\nquit\r\n",
    },
    { argv: ["rblsmtpd", "-b", "-t0", "-r", "rbl.test", ...FINAL], input: "" },
    // fixcrio before rblsmtpd: bare LFs from the client are fixed before rblsmtpd reads them
    { argv: ["fixcrio", "rblsmtpd", "-r", "rbl.test", ...FINAL], input: "helo x\nmail\nrcpt\n" },
    // not blocked: the final program runs with the env and the transformed streams
    {
      argv: ["rblsmtpd", "-r", "rbl.test", "fixcrio", ...FINAL],
      env: { TCPREMOTEIP: "9.9.9.9" },
      input: "line one\nline two\r\n",
    },
    {
      argv: ["rblsmtpd", "-r", "rbl.test", "argv0", "sh", "renamed", "-c", 'echo "$0"; cat'],
      env: { RBLSMTPD: "" },
      input: "x\n",
    },
    {
      argv: ["argv0", "rblsmtpd", "whatever", "-r", "rbl.test", ...FINAL],
      env: { RBLSMTPD: "-go away" },
      input: "rcpt\r\nquit\r\n",
    },
    // recordio logs both directions (pid normalised; the directions may interleave)
    {
      argv: ["recordio", "rblsmtpd", "-r", "rbl.test", ...FINAL],
      input: "helo x\r\nquit\r\n",
      sortLog: true,
    },
    // failures: the tool's own messages and exit codes
    {
      argv: ["rblsmtpd", "-r", "rbl.test", "/nonexistent/prog"],
      env: { TCPREMOTEIP: "9.9.9.9" },
      input: "",
    },
    { argv: ["rblsmtpd", "-r", "rbl.test"], input: "" },
    { argv: ["fixcrio"], input: "" },
  ];

Deno.test("chain: our tools in-process give what our tools as processes give", async () => {
  await withSetup(async (wrappers, baseEnv) => {
    for (const c of CHAINS) {
      const env = { ...baseEnv, ...c.env };
      const a = await inProcess(c.argv, env, c.input);
      const procArgv = [`${wrappers}/${c.argv[0]}`, ...c.argv.slice(1)];
      const b = await asProcesses(procArgv, { ...env, UCSPI_CHAIN: "0" }, c.input);
      assert.deepEqual(normalise(a, c.sortLog), normalise(b, c.sortLog), JSON.stringify(c.argv));
    }
  });
});

/** The DJB tools the chains use. */
const C_CHAIN = needs("rblsmtpd", "fixcrio", "argv0", "recordio");

Deno.test("chain: in-process chains give what DJB's C tools give" + C_CHAIN.reasonSuffix, {
  ignore: C_CHAIN.ignore,
}, async () => {
  await withSetup(async (_wrappers, baseEnv) => {
    for (const c of CHAINS) {
      // DJB's tools: the chain's tool names resolve to /usr/bin
      const env = { ...baseEnv, ...c.env, PATH: "/usr/bin:/bin" };
      const b = await asProcesses([cTool(c.argv[0])!, ...c.argv.slice(1)], env, c.input);
      const a = await inProcess(c.argv, { ...env, UCSPI_CHAIN: "force" }, c.input);
      assert.deepEqual(normalise(a, c.sortLog), normalise(b, c.sortLog), JSON.stringify(c.argv));
    }
  });
});

Deno.test("chain: a blocked client costs no process; UCSPI_CHAIN=0 spawns every tool", async () => {
  await withSetup(async (wrappers, env) => {
    // A final program that would leave a mark if it ever ran.
    const dir = await tempDir();
    try {
      const mark = `${dir.path}/ran`;
      const argv = ["rblsmtpd", "-t0", "-r", "rbl.test", "sh", "-c", `touch ${mark}`];
      const a = await inProcess(argv, env, "");
      assert.equal(a.out, "451 listed; see http://rbl.test/\r\n");
      assert.match(a.log[0], new RegExp(`^rblsmtpd: 1\\.2\\.3\\.4 pid ${Deno.pid}: 451 `));
      // ...and with a pid given by the caller (tcpserver's connection pid)
      const m = memoryIo(new Uint8Array());
      await runConnectionProgram(argv, new Map(Object.entries(env)), m.io, { pid: 4242 });
      assert.match(m.log[0], /^rblsmtpd: 1\.2\.3\.4 pid 4242: 451 /);
      // chaining off: rblsmtpd runs as a process (its log goes to its own stderr)
      const b = await inProcess(argv, { ...env, UCSPI_CHAIN: "0" }, "");
      assert.equal(b.out, a.out);
      assert.deepEqual(b.log, []);
      await assert.rejects(Deno.stat(mark));
      // not listed: the final program runs
      await inProcess(argv, { ...env, TCPREMOTEIP: "9.9.9.9" }, "");
      await Deno.stat(mark);
      assert.equal(wrappers.length > 0, true);
    } finally {
      await dir.cleanup();
    }
  });
});

Deno.test("chain: recognising our tools by PATH", async () => {
  await withSetup(async (wrappers, env) => {
    const e = new Map(Object.entries(env));
    assert.equal(isOurs("rblsmtpd", e), true); // our wrapper first on PATH
    assert.equal(isOurs(`${wrappers}/fixcrio`, e), true);
    assert.equal(isOurs("sh", e), false); // not a stage tool
    assert.equal(isOurs("tcprules", e), false); // ours, but not a stage
    const cOnly = new Map([["PATH", "/usr/bin:/bin"]]);
    await Promise.resolve();
    if (cTool("rblsmtpd") === "/usr/bin/rblsmtpd") assert.equal(isOurs("rblsmtpd", cOnly), false);
    assert.equal(isOurs("rblsmtpd", new Map([["PATH", "/nonexistent"]])), true); // not on PATH
    assert.equal(isOurs("/usr/bin/rblsmtpd", new Map([...cOnly, ["UCSPI_CHAIN", "force"]])), true);
    assert.equal(isOurs("rblsmtpd", new Map([...e, ["UCSPI_CHAIN", "0"]])), false);
  });
});

Deno.test("chain: in-process rblsmtpd -t ends a conversation the client never ends", async () => {
  await withSetup(async (_wrappers, env) => {
    const chunks: Uint8Array[] = [];
    const log: string[] = [];
    let cancelled = false;
    const io: Io = {
      // sends HELO, then stays open for ever
      input: new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new TextEncoder().encode("helo x\r\n"));
        },
        cancel() {
          cancelled = true;
        },
      }),
      output: new WritableStream<Uint8Array>({ write: (b) => void chunks.push(b.slice()) }),
      log: (line) => log.push(line),
    };
    const argv = ["rblsmtpd", "-t1", "-r", "rbl.test", ...FINAL];
    const ended = await runConnectionProgram(argv, new Map(Object.entries(env)), io);
    assert.equal(statusOf(ended), 0);
    assert.equal(
      new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c]))),
      "220 rblsmtpd.local\r\n250 rblsmtpd.local\r\n",
    );
    assert.equal(cancelled, true);
    assert.equal(log.length, 1);
  });
});
