/** The argv the front starts its server with (lib/server/front.ts serverArgv). */
import assert from "node:assert/strict";
import { SERVER_V8_FLAGS, serverArgv } from "../../lib/server/front.ts";

Deno.test("front: under deno run the server gets SERVER_V8_FLAGS unless V8 flags were given", () => {
  const run = ["deno", "run", "-A", "mod.ts", "tcpserver", "0", "0", "cat"];
  assert.deepEqual(serverArgv(run, false), [
    "deno",
    "run",
    SERVER_V8_FLAGS,
    "-A",
    "mod.ts",
    "tcpserver",
    "0",
    "0",
    "cat",
  ]);
  const given = ["deno", "run", "--v8-flags=--max-old-space-size=64", "-A", "mod.ts", "tcpserver"];
  assert.deepEqual(serverArgv(given, false), given);
  // a compiled binary has its flags built in; its argv is the tool's own
  const compiled = ["tcpserver", "run", "0", "cat"];
  assert.deepEqual(serverArgv(compiled, true), compiled);
});
