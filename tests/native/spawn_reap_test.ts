/**
 * Reaping on the native path (lib/native/reaper.ts): programs ending together,
 * while others still run and while a child of Deno's own (Deno.Command)
 * ends among them, each get their own wait status, and nobody else's; a
 * program whose end goes to a callback is reaped lazily, without SIGCHLD,
 * yet within its timer's second; prompt reaping notices an end at once.
 */
import assert from "node:assert/strict";
import { spawnProcess } from "../../lib/native/spawn.ts";
import { nativeAvailable } from "../../lib/native/libc.ts";
import { promptReaping } from "../../lib/native/reaper.ts";

Deno.test({
  name: "native spawn: concurrent programs each reaped with their own status, Deno's child too",
  ignore: Deno.build.os !== "linux" || !nativeAvailable(),
  async fn() {
    // (the blocked waitid alone keeps the event loop alive; the test's own timer too)
    const alive = setInterval(() => {}, 1000);
    try {
      const env = new Map([["PATH", "/usr/bin:/bin"]]);
      const long = await spawnProcess("/bin/sh", ["sh", "-c", "sleep 1; exit 7"], env, []);
      const quick = await Promise.all(
        Array.from(
          { length: 20 },
          (_, i) => spawnProcess("/bin/sh", ["sh", "-c", `exit ${i}`], env, []),
        ),
      );
      const denos = new Deno.Command("/bin/sh", { args: ["-c", "exit 3"] }).output();
      const statuses = await Promise.all(quick.map((c) => c.status));
      assert.deepEqual(statuses, Array.from({ length: 20 }, (_, i) => i << 8));
      assert.equal((await denos).code, 3);
      assert.equal(await long.status, 7 << 8);
    } finally {
      clearInterval(alive);
    }
  },
});

Deno.test({
  name: "native reaping: an end going to a callback is noticed with no SIGCHLD and no accept",
  ignore: Deno.build.os !== "linux" || !nativeAvailable(),
  async fn() {
    const alive = setInterval(() => {}, 1000);
    try {
      const env = new Map([["PATH", "/usr/bin:/bin"]]);
      const t0 = performance.now();
      const ends: Array<Promise<number>> = [];
      for (const code of [0, 5]) {
        ends.push(
          new Promise<number>((resolve) =>
            spawnProcess("/bin/sh", ["sh", "-c", `exit ${code}`], env, [], resolve)
          ),
        );
      }
      assert.deepEqual(await Promise.all(ends), [0, 5 << 8]);
      // the lazy timer: 10 ms after the start, doubling while none ends
      assert.ok(performance.now() - t0 < 2000, "noticed within the timer's bound");
    } finally {
      clearInterval(alive);
    }
  },
});

Deno.test({
  name: "native reaping: while prompt reaping is asked for, a callback's end is noticed at once",
  ignore: Deno.build.os !== "linux" || !nativeAvailable(),
  async fn() {
    const alive = setInterval(() => {}, 1000);
    const given = promptReaping();
    try {
      const env = new Map([["PATH", "/usr/bin:/bin"]]);
      // a program that ends 350 ms after its start: the lazy timer looks at
      // 10, 30, 70, 150, 310 and 630 ms, so it would notice it at 630
      const t0 = performance.now();
      const wstat = await new Promise<number>((resolve) =>
        spawnProcess("/bin/sh", ["sh", "-c", "sleep 0.35; exit 2"], env, [], resolve)
      );
      assert.equal(wstat, 2 << 8);
      const took = performance.now() - t0;
      assert.ok(took < 550, `noticed at its end (${took.toFixed(0)} ms), not at the lazy timer`);
    } finally {
      given();
      clearInterval(alive);
    }
  },
});
