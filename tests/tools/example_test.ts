/**
 * The README's first command (`deno task example`) and the hints it prints:
 * each printed command line is run as printed and must get the greeting and
 * the upper-cased line back.
 */
import assert from "node:assert/strict";
import { DENO, ROOT } from "../support/helpers.ts";

const nc = ["/usr/bin/nc", "/bin/nc"].find((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});

async function runShell(line: string): Promise<string> {
  const out = await new Deno.Command("bash", {
    args: ["-c", `timeout 20 ${line}`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    cwd: ROOT,
  }).output();
  return new TextDecoder().decode(out.stdout);
}

Deno.test("deno task example: the hints it prints work as printed", async () => {
  const child = new Deno.Command(DENO, {
    args: ["task", "example"],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  let text = "";
  try {
    while (!text.includes("Ctrl-C stops it.")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`example ended early:\n${text}`);
      text += new TextDecoder().decode(value);
    }
    assert.match(text, /\nIT WORKS\n/);
    const hints = text.split("\n").filter((l) => l.startsWith("  ")).map((l) => l.trim());
    const tcpclient = hints.find((l) => l.includes(" tcpclient "));
    assert.ok(tcpclient, text);
    const viaClient = await runShell(tcpclient!);
    assert.match(viaClient, /^hello 127\.0\.0\.1:\d+ .*\ntype lines.*\nHELLO\n$/);
    if (nc) {
      const pipe = hints.find((l) => l.includes("| nc "));
      assert.ok(pipe, text);
      assert.match(await runShell(pipe!), /\nHELLO\n$/);
    } else console.log("nc not installed: the nc hint is not run");
  } finally {
    reader.releaseLock();
    child.kill("SIGTERM");
    await child.status;
    await child.stdout.cancel().catch(() => {});
  }
});
