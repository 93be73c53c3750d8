/**
 * Socket activation (sd_listen_fds: $LISTEN_PID, $LISTEN_FDS, descriptor 3)
 * end to end: a small supervisor (socket_activate.py) makes the listening
 * socket and runs our tcpserver with it; clients are served through it,
 * across a restart of the server too.
 */
import nodeAssert from "node:assert/strict";
import { fileURLToPath as fromFileUrl } from "node:url";
import { nativeAvailable } from "../../lib/native/native.ts";
import { DENO, MOD } from "../support/helpers.ts";
import { serverOf } from "../support/tcpserver_util.ts";

const assert: (cond: unknown, msg?: string) => asserts cond = nodeAssert.ok;
const assertEquals = <T>(actual: T, expected: T, msg?: string) =>
  nodeAssert.deepEqual(actual, expected, msg);

const SPAWNER = fromFileUrl(new URL("./socket_activate.py", import.meta.url));
const NATIVE = nativeAvailable();

function have(cmd: string): boolean {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`], stdout: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}
const PYTHON = have("python3");
const SOCKET_ACTIVATE = have("systemd-socket-activate");

/** The program each connection runs: a greeting, then what it inherited that it should not. */
const PROGRAM = [
  "sh",
  "-c",
  'echo "hi $PPID"; env | grep "^LISTEN_"; test -e /proc/self/fd/3 && echo "fd 3 open"; exit 0',
];

/** Lines of a byte stream, one at a time. */
class Lines {
  #reader: ReadableStreamDefaultReader<string>;
  #buf = "";
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }
  async next(): Promise<string | null> {
    for (;;) {
      const nl = this.#buf.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buf.slice(0, nl);
        this.#buf = this.#buf.slice(nl + 1);
        return line;
      }
      const { value, done } = await this.#reader.read();
      if (done) return null;
      this.#buf += value;
    }
  }
  /** The rest, to the end. */
  async rest(): Promise<string> {
    let s = this.#buf;
    for (;;) {
      const { value, done } = await this.#reader.read();
      if (done) return s;
      s += value;
    }
  }
}

/** Connects to 127.0.0.1:port and reads to EOF; null when the connection was refused. */
async function fetchAll(port: number): Promise<string | null> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch (e) {
    if (e instanceof Deno.errors.ConnectionRefused) return null;
    throw e;
  }
  // Nobody accepting (the passed socket ignored) would leave us waiting:
  // a generous bound turns that into a failure.
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    conn.close();
  }, 10_000);
  try {
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf).catch((e) => {
        if (timedOut) throw new Error(`no answer within 10 s on port ${port}`);
        throw e;
      });
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
  } finally {
    clearTimeout(timer);
    if (!timedOut) conn.close();
  }
}

interface Supervised {
  port: number;
  out: Lines;
  child: Deno.ChildProcess;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
  stderr: Promise<string>;
}

/** Starts the spawner running tcpserver with tcpserverArgs; env added to ours. */
async function supervise(
  tcpserverArgs: string[],
  env: Record<string, string> = {},
  spawnerArgs: string[] = [],
): Promise<Supervised> {
  const child = new Deno.Command("python3", {
    args: [SPAWNER, ...spawnerArgs, DENO, "run", "-A", MOD, "tcpserver", ...tcpserverArgs],
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = new Lines(child.stdout);
  const port = Number(await out.next());
  assert(port > 0, "the spawner printed its port");
  const stderr = new Response(child.stderr).text();
  return { port, out, child, stdin: child.stdin.getWriter(), stderr };
}

/** Ends the supervised server (EOF on the spawner's stdin: SIGTERM); its status and stderr. */
async function finish(s: Supervised): Promise<{ code: number; stderr: string; out: string }> {
  await s.stdin.close();
  const [status, stderr, out] = await Promise.all([s.child.status, s.stderr, s.out.rest()]);
  return { code: status.code, stderr, out };
}

/** A line "started PID" from the spawner. */
async function started(s: Supervised): Promise<number> {
  for (;;) {
    const line = await s.out.next();
    assert(line !== null, "the spawner ended before starting the server");
    const m = /^started (\d+)$/.exec(line);
    if (m) return Number(m[1]);
  }
}

/** Waits until stderr-free readiness: a connection is served (the server took the socket). */
async function served(port: number): Promise<string> {
  const r = await fetchAll(port);
  assert(r !== null, "refused: the supervisor holds the socket, nothing may refuse");
  return r;
}

Deno.test({
  name:
    "socket activation (native): served on descriptor 3, not host:port; LISTEN_* and fd 3 not inherited",
  ignore: !PYTHON || !NATIVE,
}, async () => {
  // 192.0.2.1 (TEST-NET) is no address of ours: binding it would fail.
  const s = await supervise(["-v", "-1", "192.0.2.1", "25", ...PROGRAM]);
  const pid = await started(s);
  const reply = await served(s.port);
  assertEquals(reply, `hi ${pid}\n`);
  // -1 prints the port listened on: the passed socket's.
  assertEquals(await s.out.next(), String(s.port));
  const r = await finish(s);
  assertEquals(r.code, 0);
  const lines = r.stderr.split("\n");
  assertEquals(lines[0], "tcpserver: status: 0/40");
  assert(
    lines.some((l) => /^tcpserver: ok \d+ :127\.0\.0\.1:\d+ :127\.0\.0\.1::\d+$/.test(l)),
    r.stderr,
  );
});

Deno.test({
  name: "socket activation without the native path: start-up error naming what is needed, exit 111",
  ignore: !PYTHON,
}, async () => {
  const s = await supervise(["127.0.0.1", "0", "true"], { UCSPI_NATIVE: "0" }, ["--once"]);
  const r = await finish(s);
  assertEquals(r.code, 111);
  assertEquals(
    r.stderr,
    "tcpserver: fatal: unable to bind: socket activation ($LISTEN_FDS): needs the native path: " +
      "Linux, the ffi permission (--allow-ffi) and $UCSPI_NATIVE not 0\n",
  );
});

Deno.test({
  name: "socket activation for another pid ($LISTEN_PID not ours): tcpserver binds host:port",
  ignore: !PYTHON || !NATIVE,
}, async () => {
  const s = await supervise(["-1", "127.0.0.1", "0", ...PROGRAM], {}, ["--other-pid"]);
  const pid = await started(s);
  const own = Number(await s.out.next());
  assert(own > 0 && own !== s.port, `bound a port of its own (${own}, passed ${s.port})`);
  const reply = await served(own);
  // not activated: the native path's front (lib/server/front.ts) runs the server as its child
  assertEquals(reply.split("\n")[0], `hi ${serverOf(pid)}`);
  assert(serverOf(pid) !== pid, "a front and its server");
  const r = await finish(s);
  assertEquals(r.code, 0, r.stderr);
});

Deno.test({
  name: "socket activation under systemd-socket-activate: served on its socket",
  ignore: !SOCKET_ACTIVATE || !NATIVE,
}, async () => {
  // a free port: bound and released (systemd-socket-activate binds it again)
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const child = new Deno.Command("systemd-socket-activate", {
    args: [
      "-l",
      `127.0.0.1:${port}`,
      DENO,
      "run",
      "-A",
      MOD,
      "tcpserver",
      "-v",
      "192.0.2.1",
      "25",
      ...PROGRAM,
    ],
    env: { TCPSERVER_DRAIN: "0" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const err = new Lines(child.stderr);
  // it says "Listening on ..." once the socket is bound
  for (;;) {
    const line = await err.next();
    assert(line !== null, "systemd-socket-activate ended early");
    if (line.startsWith("Listening on")) break;
  }
  try {
    const reply = await served(port);
    assert(/^hi \d+\n$/.test(reply), JSON.stringify(reply));
  } finally {
    child.kill("SIGTERM");
    await child.status;
    const rest = await err.rest();
    assert(rest.includes("tcpserver: status: 0/40"), rest);
  }
});

Deno.test({
  name: "socket activation: restarting the server refuses no connection (40 clients, at most 20 s)",
  ignore: !PYTHON || !NATIVE,
}, async () => {
  const s = await supervise(["127.0.0.1", "0", ...PROGRAM]);
  const first = await started(s);
  const servers = new Set<string>();
  let refused = 0;
  let restarted: Promise<number> | null = null;
  const deadline = Date.now() + 20_000;
  for (let i = 0; i < 40 && Date.now() < deadline; i++) {
    if (i === 10) {
      // SIGTERM to the server, then a new one: meanwhile connections queue
      await s.stdin.write(new TextEncoder().encode("restart\n"));
      restarted = started(s);
    }
    const reply = await fetchAll(s.port);
    if (reply === null) refused++;
    else servers.add(reply.split("\n")[0]);
  }
  const second = await restarted!;
  const r = await finish(s);
  assertEquals(refused, 0, "no connection refused across the restart");
  assert(second !== first);
  assertEquals([...servers].sort(), [`hi ${first}`, `hi ${second}`].sort(), r.stderr);
});

const ANALYZE = have("systemd-analyze");
const UNITS = fromFileUrl(new URL("../../examples/systemd/", import.meta.url));

Deno.test({
  name: "examples/systemd: smtpd.socket and smtpd-activated.service pass systemd-analyze verify",
  ignore: !ANALYZE,
}, async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const unit of ["smtpd.socket", "smtpd-activated.service"]) {
      // the installed tool's path, which this machine need not have
      const text = (await Deno.readTextFile(UNITS + unit)).replaceAll(
        "/usr/local/bin/tcpserver",
        "/bin/true",
      );
      await Deno.writeTextFile(`${dir}/${unit}`, text);
    }
    const r = await new Deno.Command("systemd-analyze", {
      args: ["verify", "--man=no", `${dir}/smtpd.socket`, `${dir}/smtpd-activated.service`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const said = new TextDecoder().decode(r.stderr) + new TextDecoder().decode(r.stdout);
    assertEquals(r.code, 0, said);
    assertEquals(said.trim(), "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "spawnOnSocket refuses other ids instead of running the program with the wrong ones",
  ignore: !NATIVE,
}, async () => {
  const { spawnOnSocket } = await import("../../lib/native/native.ts");
  await nodeAssert.rejects(
    spawnOnSocket("/bin/true", ["true"], new Map(), 0, { uid: 65534 }),
    /server's ids/,
  );
});
