/**
 * lib/tls/server_hook.ts's idleBounded (sslserver -w) on in-memory streams:
 * the program's input ends after one idle period, everything is closed and
 * onIdle called after a second, and traffic either way restarts the clock.
 */
import assert from "node:assert/strict";
import { idleBounded } from "../../lib/tls/server_hook.ts";
import type { Io } from "../../lib/stages/stage.ts";

/** An Io whose input we feed and whose output we collect. */
function memoryIo() {
  let feed!: ReadableStreamDefaultController<Uint8Array>;
  const input = new ReadableStream<Uint8Array>({ start: (c) => void (feed = c) });
  const written: string[] = [];
  let outputAborted = false;
  const output = new WritableStream<Uint8Array>({
    write: (chunk) => void written.push(new TextDecoder().decode(chunk)),
    abort: () => void (outputAborted = true),
  });
  const io: Io = { input, output, log: () => {} };
  return { io, feed, written, aborted: () => outputAborted };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("idleBounded: 0 seconds leaves the streams as they are", () => {
  const m = memoryIo();
  assert.equal(idleBounded(m.io, 0, () => {}), m.io);
});

Deno.test("idleBounded: idle input ends, then a second idle period closes both and calls onIdle", async () => {
  const m = memoryIo();
  let idle = 0;
  const t0 = Date.now();
  const io = idleBounded(m.io, 0.5, () => idle++);
  const reader = io.input.getReader();
  m.feed.enqueue(new TextEncoder().encode("hi"));
  assert.equal(new TextDecoder().decode((await reader.read()).value), "hi");
  // nothing more comes: the program sees its input end after one period
  assert.equal((await reader.read()).done, true);
  const ended = Date.now() - t0;
  assert.ok(ended >= 450, `input ended after ${ended} ms`);
  assert.equal(idle, 0);
  // its output still goes out, and restarts the clock
  await sleep(300);
  const writer = io.output.getWriter();
  await writer.write(new TextEncoder().encode("bye"));
  assert.deepEqual(m.written, ["bye"]);
  await sleep(300);
  assert.equal(idle, 0, "the output restarted the idle clock");
  await sleep(500);
  assert.equal(idle, 1);
  assert.ok(m.aborted(), "the output underneath was closed");
});

Deno.test("idleBounded: input that keeps coming is never cut", async () => {
  const m = memoryIo();
  let idle = 0;
  const io = idleBounded(m.io, 0.2, () => idle++);
  const reader = io.input.getReader();
  for (let i = 0; i < 6; i++) {
    await sleep(100);
    m.feed.enqueue(new Uint8Array([65 + i]));
    const r = await reader.read();
    assert.equal(r.done, false);
    assert.deepEqual([...r.value!], [65 + i]);
  }
  assert.equal(idle, 0);
  m.feed.close();
  assert.equal((await reader.read()).done, true);
  // the client closed: one more idle period ends everything
  await sleep(300);
  assert.equal(idle, 1);
});
