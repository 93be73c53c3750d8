/** The server's process name is the tool's (pgrep -x tcpserver, /proc/PID/comm) where FFI is granted. */
import assert from "node:assert/strict";
import { DENO, MOD } from "../support/helpers.ts";

async function commOf(permissions: string[]): Promise<string> {
  const child = new Deno.Command("bash", {
    args: [
      "-c",
      `exec -a tcpserver "${DENO}" run ${permissions.join(" ")} "${MOD}" -1 -RHl0 127.0.0.1 0 true`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const reader = child.stdout.getReader();
    const { value } = await reader.read(); // -1: the port, once listening
    assert.ok(value && value.length > 0, "tcpserver printed its port");
    reader.releaseLock();
    return (await Deno.readTextFile(`/proc/${child.pid}/comm`)).trim();
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await child.stdout.cancel().catch(() => {});
  }
}

Deno.test({
  name: "tcpserver's /proc/PID/comm is tcpserver with --allow-ffi, deno without",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    assert.equal(await commOf(["-A"]), "tcpserver");
    assert.equal(
      await commOf(["--allow-net", "--allow-read", "--allow-env", "--allow-run", "--allow-sys"]),
      "deno",
    );
  },
});
