/**
 * The pure path's hand-over ($UCSPI_HANDOFF=1, UCSPI_NATIVE=0;
 * lib/server/node_listener.ts and lib/process/socket_spawn.ts): the program
 * gets the socket itself as fd 0 and 1 without FFI, half-close works both
 * ways through the kernel, the server holds no socket or pipe per running
 * program, and anything that must talk over the socket first (-B) keeps the
 * pumped path.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { ours, tempDir } from "../support/helpers.ts";
import { fdCount, startSrv, talk } from "../support/tcpserver_util.ts";

const HANDOFF = { UCSPI_NATIVE: "0", UCSPI_HANDOFF: "1" };

Deno.test("tcpserver handoff: the program's fd 0 and 1 are the socket itself, environment and end status as usual", async () => {
  const srv = await startSrv("ours", [
    "-1",
    "-v",
    "-RH",
    "-l0",
    "127.0.0.1",
    "0",
    "sh",
    "-c",
    'readlink /proc/self/fd/0; readlink /proc/self/fd/1; echo "$PROTO $TCPREMOTEIP $TCPLOCALPORT"; exit 3',
  ], { env: HANDOFF });
  try {
    const lines = (await talk(srv.port)).text.split("\n");
    assert.match(lines[0], /^socket:/);
    assert.equal(lines[1], lines[0], "fd 0 and fd 1 are the same socket");
    assert.equal(lines[2], `TCP 127.0.0.1 ${srv.port}`);
    await srv.waitLine(/^tcpserver: end 1 status 768$/);
  } finally {
    await srv.stop();
  }
});

Deno.test("tcpserver handoff: half-close both ways (client FIN: the program's EOF; its exit: our FIN after all output)", async () => {
  const srv = await startSrv("ours", [
    "-1",
    "-RHq",
    "-l0",
    "127.0.0.1",
    "0",
    "sh",
    "-c",
    "cat; echo done",
  ], { env: HANDOFF });
  try {
    const big = "x".repeat(300_000) + "\n";
    const t = await talk(srv.port, { send: big });
    assert.equal(t.text, big + "done\n");
  } finally {
    await srv.stop();
  }
});

/** Connects and waits for the first byte (the program runs), keeping the connection open. */
function held(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.once("data", () => resolve(s));
    s.once("error", reject);
  });
}

Deno.test("tcpserver handoff: no socket or pipe held per running program (only Deno's pidfd)", async () => {
  const srv = await startSrv("ours", [
    "-1",
    "-RHq",
    "-l0",
    "127.0.0.1",
    "0",
    "sh",
    "-c",
    "echo ok; exec cat",
  ], { env: HANDOFF });
  const socks: net.Socket[] = [];
  try {
    // one connection first: everything loaded once is open before counting
    const first = await held(srv.port);
    first.end();
    await new Promise((r) => first.once("close", r));
    const before = fdCount(srv.pid);
    const N = 20;
    for (let i = 0; i < N; i++) socks.push(await held(srv.port));
    const during = fdCount(srv.pid);
    // one per program (Deno's pidfd) and a few Deno opens on its own; the
    // pumped path held four per program (socket, two pipes, pidfd)
    assert.ok(during - before < 2 * N, `${during - before} descriptors for ${N} programs`);
  } finally {
    for (const s of socks) s.destroy();
    await srv.stop();
  }
});

Deno.test("tcpserver handoff: -B (we write first) keeps the pumped path", async () => {
  const srv = await startSrv("ours", [
    "-1",
    "-RHq",
    "-l0",
    "-B",
    "hello\n",
    "127.0.0.1",
    "0",
    "readlink",
    "/proc/self/fd/0",
  ], { env: HANDOFF });
  try {
    const lines = (await talk(srv.port)).text.split("\n");
    assert.equal(lines[0], "hello");
    assert.match(lines[1], /^pipe:/);
  } finally {
    await srv.stop();
  }
});

Deno.test("tcpserver handoff: a rule value that is not UTF-8 reaches the program byte for byte", async () => {
  const dir = await tempDir();
  try {
    const cdb = `${dir.path}/rules.cdb`;
    const r = await ours("tcprules", [cdb, `${dir.path}/rules.tmp`], {
      stdin: new Uint8Array([...new TextEncoder().encode(':allow,U="'), 0xe4, 0x78, 0x22, 0x0a]),
    });
    assert.equal(r.code, 0, r.err);
    const srv = await startSrv("ours", [
      "-1",
      "-RHq",
      "-l0",
      "-x",
      cdb,
      "127.0.0.1",
      "0",
      "sh",
      "-c",
      'printf %s "$U"; readlink /proc/self/fd/0',
    ], { env: HANDOFF });
    try {
      const t = await talk(srv.port);
      assert.deepEqual([...t.data.subarray(0, 2)], [0xe4, 0x78]);
      assert.match(t.text.slice(2), /^socket:/);
    } finally {
      await srv.stop();
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test("tcpserver handoff: past -c, at most the backlog's count wait accepted; more are closed at once", async () => {
  const srv = await startSrv("ours", [
    "-1",
    "-RHq",
    "-l0",
    "-c1",
    "-b2",
    "127.0.0.1",
    "0",
    "sh",
    "-c",
    "echo ok; exec cat",
  ], { env: HANDOFF });
  const first = await held(srv.port);
  const waiting: net.Socket[] = [];
  try {
    // -c 1 is taken: of 5 more, 2 wait (the backlog), 3 are closed unanswered
    const closed: number[] = [];
    const allClosed = new Promise<void>((resolve) => {
      for (let i = 0; i < 5; i++) {
        const s = net.connect({ host: "127.0.0.1", port: srv.port });
        s.on("error", () => {});
        s.once("close", () => {
          closed.push(i);
          if (closed.length === 3) resolve();
        });
        waiting.push(s);
      }
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      allClosed,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`only ${closed.length} closed`)), 10_000);
      }),
    ]).finally(() => clearTimeout(timer));
    const open = waiting.filter((s) => !s.destroyed && s.readyState === "open");
    assert.equal(open.length, 2, "two wait their turn");
    // the first program's end lets the next one run on a waiting socket
    first.destroy();
    const answered = await Promise.race(
      open.map((s) => new Promise<string>((r) => s.once("data", (d) => r(String(d))))),
    );
    assert.equal(answered, "ok\n");
  } finally {
    first.destroy();
    for (const s of waiting) s.destroy();
    await srv.stop();
  }
});
