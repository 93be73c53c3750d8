/**
 * The native spawn's environment block (lib/native/spawn.ts): each entry's
 * bytes are remembered by name and reused while the value is the same, so a
 * value that changes from one program to the next, a name or value that is
 * left out or cut (execEntry), and bytes above 0x7f must all reach each
 * program exactly as execEnvironment says, program after program.
 */
import assert from "node:assert/strict";
import { spawnProcess } from "../../lib/native/spawn.ts";
import { L, nativeAvailable, O_CLOEXEC } from "../../lib/native/libc.ts";
import { execEnvironment } from "../../lib/core/environ.ts";
import { byteString } from "../../lib/core/bytes.ts";

const O_WRONLY_CLOEXEC = 1 | O_CLOEXEC;

/** The environment `env -0` printed, as [name, value] byte strings, in its order. */
async function environmentSeen(env: Map<string, string>): Promise<Array<[string, string]>> {
  const out = await Deno.makeTempFile();
  const fd = L().open(new TextEncoder().encode(out + "\0"), O_WRONLY_CLOEXEC, 0);
  assert.ok(fd >= 0, "open the output file");
  try {
    const child = await spawnProcess("/usr/bin/env", ["env", "-0"], env, [[fd, 1]]);
    // (the SIGCHLD listener alone does not keep the event loop alive)
    const alive = setInterval(() => {}, 1000);
    try {
      assert.equal(await child.status, 0);
    } finally {
      clearInterval(alive);
    }
    const text = byteString(await Deno.readFile(out));
    return text.split("\0").filter((e) => e !== "")
      .map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]);
  } finally {
    L().close(fd);
    await Deno.remove(out);
  }
}

Deno.test({
  name: "native spawn: every program gets its own environment exactly, entries reused or not",
  ignore: Deno.build.os !== "linux" || !nativeAvailable(),
  async fn() {
    const base: Array<[string, string]> = [
      ["PATH", "/usr/bin:/bin"],
      ["LATIN", "\xe4\xff\x80"], // bytes above 0x7f, one char each
      ["CUT", "before\0after"], // cut at the NUL
      ["A=B", "left out"], // "=" in a name
      ["", "left out"],
      ["WIDE", "\u20ac"], // text never made bytes: its UTF-8
      ["EMPTY", ""],
    ];
    for (let i = 0; i < 4; i++) {
      const env = new Map(base);
      env.set("TCPREMOTEPORT", String(40000 + i)); // changes each time
      if (i % 2 === 0) env.set("SOMETIMES", "x".repeat(200 + i));
      if (i === 3) env.set("LATIN", "changed"); // a remembered name, a new value
      const seen = await environmentSeen(env);
      assert.deepEqual(seen, execEnvironment(env), `program ${i}`);
    }
  },
});
