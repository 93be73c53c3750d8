/** lib/core's shared mechanisms: the bounded map, write-all, the errno table, the log writers. */
import assert from "node:assert/strict";
import { BoundedMap, memoized } from "../../lib/core/bounded.ts";
import { writeAll, writeAllSync } from "../../lib/core/write_all.ts";
import { errnoName, errorText } from "../../lib/core/errors.ts";
import { LINUX_ERRNO } from "../../lib/native/errno.ts";
import { listenFds } from "../../lib/native/activation.ts";
import { DENO } from "../support/helpers.ts";

Deno.test("BoundedMap: clears when full, replacing a held key never evicts", () => {
  const m = new BoundedMap<string, number>(3);
  m.set("a", 1).set("b", 2).set("c", 3);
  m.set("a", 10);
  assert.equal(m.size, 3);
  assert.equal(m.get("a"), 10);
  m.set("d", 4);
  assert.deepEqual([...m], [["d", 4]]);
  assert.equal(new BoundedMap<string, number>(0).set("x", 1).size, 0);
});

Deno.test("BoundedMap: evict-oldest drops the first stored key only", () => {
  const m = new BoundedMap<string, number>(2, "evict-oldest");
  m.set("a", 1).set("b", 2).set("c", 3);
  assert.deepEqual([...m.keys()], ["b", "c"]);
  for (let i = 0; i < 1000; i++) m.set(`k${i}`, i);
  assert.equal(m.size, 2);
});

Deno.test("memoized: computes once per key, within the bound", () => {
  const m = new BoundedMap<number, string>(2);
  let calls = 0;
  const f = (k: number) => (calls++, `v${k}`);
  assert.equal(memoized(m, 1, f), "v1");
  assert.equal(memoized(m, 1, f), "v1");
  assert.equal(calls, 1);
  for (let i = 0; i < 10; i++) memoized(m, i, f);
  assert.ok(m.size <= 2);
});

Deno.test("writeAll/writeAllSync: loop over short writes until all is out", async () => {
  const got: number[] = [];
  const short = { writeSync: (p: Uint8Array) => (got.push(p[0]), 1) };
  writeAllSync(short, Uint8Array.of(1, 2, 3));
  assert.deepEqual(got, [1, 2, 3]);
  const parts: number[][] = [];
  const asyncShort = {
    write: (
      p: Uint8Array,
    ) => (parts.push([...p.subarray(0, 2)]), Promise.resolve(Math.min(2, p.length))),
  };
  await writeAll(asyncShort, Uint8Array.of(1, 2, 3, 4, 5));
  assert.deepEqual(parts, [[1, 2], [3, 4], [5]]);
  const failing = {
    writeSync: (): number => {
      throw new Error("EPIPE");
    },
  };
  assert.throws(() => writeAllSync(failing, Uint8Array.of(1)), /EPIPE/);
});

Deno.test("errno: one table names every Linux errno the tools meet; DJB's texts for them", () => {
  // ENFILE and ENOBUFS were only in the native path's table before.
  assert.equal(errnoName(new Error("accept: os error 23")), "ENFILE");
  assert.equal(errorText(new Error("accept: os error 105")), "out of buffer space");
  assert.equal(errorText(new Error("bind: os error 22")), "invalid argument");
  assert.equal(LINUX_ERRNO[98], "EADDRINUSE");
  assert.equal(errnoName(new Error("os error 9999")), undefined);
});

Deno.test("listenFds: only for our pid, decimal, else 0", () => {
  const env = (pid: string, fds: string) => new Map([["LISTEN_PID", pid], ["LISTEN_FDS", fds]]);
  assert.equal(listenFds(env("42", "1"), 42), 1);
  assert.equal(listenFds(env("42", "2"), 42), 2);
  assert.equal(listenFds(env("43", "1"), 42), 0);
  assert.equal(listenFds(env("42", "x"), 42), 0);
  assert.equal(listenFds(env("42", "-1"), 42), 0);
  assert.equal(listenFds(env(" 42", "1"), 42), 0);
  assert.equal(listenFds(new Map([["LISTEN_FDS", "1"]]), 42), 0);
});

Deno.test("stderrLine: never throws when stderr is closed; bytes as given", async () => {
  const mod = new URL("../../lib/core/log.ts", import.meta.url).href;
  const code = `
    import { stderrLine, stderrLog, flushLog } from "${mod}";
    stderrLine("a\\xff");
    Deno.stderr.close();
    stderrLine("after close");
    stderrLog("after close");
    flushLog();
    console.log("alive");
  `;
  const r = await new Deno.Command(DENO, {
    args: ["eval", "--ext=ts", code],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(r.code, 0);
  assert.deepEqual(r.stderr, Uint8Array.of(0x61, 0xff, 10));
  assert.equal(new TextDecoder().decode(r.stdout), "alive\n");
});
