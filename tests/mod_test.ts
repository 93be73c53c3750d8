import assert from "node:assert/strict";
import { DENO, MOD, ours, tempDir } from "./helpers.ts";
import { toolNames } from "../cli/tools.ts";

Deno.test("ucspi-tcp --list prints the tool names", async () => {
  const r = await ours("ucspi-tcp", ["--list"]);
  assert.equal(r.code, 0);
  assert.deepEqual(r.out.trim().split("\n").filter((s) => s), toolNames());
});

Deno.test("unknown tool name: usage, exit 100", async () => {
  const r = await ours("ucspi-tcp", ["nosuchtool"]);
  assert.equal(r.code, 100);
  assert.match(r.err, /unknown tool: nosuchtool/);
});

Deno.test("install DIR writes one runnable entry per tool", async () => {
  const dir = await tempDir();
  try {
    const r = await ours("ucspi-tcp", ["install", dir.path]);
    assert.equal(r.code, 0, r.err);
    const names = [];
    for await (const e of Deno.readDir(dir.path)) names.push(e.name);
    assert.deepEqual(names.sort(), toolNames());
    assert.ok(DENO && MOD);
  } finally {
    await dir.cleanup();
  }
});
