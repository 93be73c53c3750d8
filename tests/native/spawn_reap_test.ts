/**
 * Reaping on the native path (lib/native/spawn.ts): programs ending together,
 * while others still run and while a child of Deno's own (Deno.Command)
 * ends among them, each get their own wait status, and nobody else's.
 */
import assert from "node:assert/strict";
import { spawnProcess } from "../../lib/native/spawn.ts";
import { nativeAvailable } from "../../lib/native/libc.ts";

Deno.test({
  name: "native spawn: concurrent programs each reaped with their own status, Deno's child too",
  ignore: Deno.build.os !== "linux" || !nativeAvailable(),
  async fn() {
    // (the SIGCHLD listener alone does not keep the event loop alive)
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
