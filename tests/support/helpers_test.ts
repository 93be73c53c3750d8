/** needs(): the declaration-time check that makes a test that cannot run show as ignored. */
import assert from "node:assert/strict";
import { nativeAvailable } from "../../lib/native/libc.ts";
import { cTool, DENO, needs, program, tempDir } from "./helpers.ts";

/** Runs fn with $UCSPI_TEST_WITHOUT set to value (unset for undefined), restoring it after. */
function withWithout<T>(value: string | undefined, fn: () => T): T {
  const old = Deno.env.get("UCSPI_TEST_WITHOUT");
  if (value === undefined) Deno.env.delete("UCSPI_TEST_WITHOUT");
  else Deno.env.set("UCSPI_TEST_WITHOUT", value);
  try {
    return fn();
  } finally {
    if (old === undefined) Deno.env.delete("UCSPI_TEST_WITHOUT");
    else Deno.env.set("UCSPI_TEST_WITHOUT", old);
  }
}

Deno.test("needs: nothing needed runs, with no suffix", () => {
  assert.deepEqual(needs(), { ignore: false, reason: "", reasonSuffix: "" });
});

Deno.test("needs: a present program runs; a missing one is ignored, with the reason", () => {
  withWithout(undefined, () => {
    assert.deepEqual(needs("sh"), { ignore: false, reason: "", reasonSuffix: " (needs sh)" });
    assert.match(program("sh") ?? "", /\/sh$/);
    const n = needs("sh", "no-such-program-ucspi");
    assert.equal(n.ignore, true);
    assert.equal(n.reason, "no-such-program-ucspi: not installed");
    assert.equal(n.reasonSuffix, " (needs sh, no-such-program-ucspi)");
    assert.equal(program("no-such-program-ucspi"), null);
  });
});

Deno.test("needs: a directory or a non-executable file of that name is not the program", async () => {
  const dir = await tempDir();
  const oldPath = Deno.env.get("PATH") ?? "";
  try {
    await Deno.mkdir(`${dir.path}/ucspi-dir-prog`);
    await Deno.writeTextFile(`${dir.path}/ucspi-plain-prog`, "#!/bin/sh\n", { mode: 0o644 });
    await Deno.writeTextFile(`${dir.path}/ucspi-exec-prog`, "#!/bin/sh\n", { mode: 0o755 });
    Deno.env.set("PATH", `${dir.path}:${oldPath}`);
    assert.equal(needs("ucspi-dir-prog").ignore, true);
    assert.equal(needs("ucspi-plain-prog").ignore, true);
    assert.equal(needs("ucspi-exec-prog").ignore, false);
    assert.equal(program("ucspi-exec-prog"), `${dir.path}/ucspi-exec-prog`);
  } finally {
    Deno.env.set("PATH", oldPath);
    await dir.cleanup();
  }
});

Deno.test("needs: UCSPI_TEST_WITHOUT withholds the programs and things it names", () => {
  withWithout(" sh,true ,root,,ffi", () => {
    const n = needs("sh");
    assert.equal(n.ignore, true);
    assert.equal(n.reason, "sh: withheld by UCSPI_TEST_WITHOUT");
    assert.equal(program("sh"), null);
    assert.equal(cTool("true"), null, "the differential halves see it missing too");
    assert.equal(needs("root").reason, "root: withheld by UCSPI_TEST_WITHOUT");
    assert.equal(needs("ffi").ignore, true);
    assert.equal(needs("cat").ignore, false, "a name not listed is untouched");
    assert.equal(
      needs("sh", "cat", "true").reason,
      "sh: withheld by UCSPI_TEST_WITHOUT; true: withheld by UCSPI_TEST_WITHOUT",
    );
  });
  withWithout("", () => assert.equal(needs("sh").ignore, false));
});

Deno.test("needs: root, ffi, ipv6 and ipv4-mapped say what this host has", () => {
  withWithout(undefined, () => {
    const root = needs("root");
    assert.equal(root.ignore, Deno.uid() !== 0);
    assert.equal(root.reason, root.ignore ? `root: uid is ${Deno.uid()}, not 0` : "");
    assert.equal(needs("ffi").ignore, !nativeAvailable(new Map()));
    for (const [thing, host] of [["ipv6", "::1"], ["ipv4-mapped", "::ffff:127.0.0.1"]]) {
      const n = needs(thing);
      if (n.ignore) {
        assert.match(n.reason, new RegExp(`^${thing}: cannot listen on `));
        assert.throws(() => Deno.listen({ hostname: host, port: 0 }));
      } else {
        Deno.listen({ hostname: host, port: 0 }).close();
      }
    }
  });
});

/** Runs `deno test` on a file holding one test that needs THING and always fails. */
async function runNeedy(thing: string, env: Record<string, string>): Promise<string> {
  const dir = await tempDir();
  try {
    const helpers = new URL("./helpers.ts", import.meta.url).href;
    const file = `${dir.path}/needy_test.ts`;
    await Deno.writeTextFile(
      file,
      `import { needs } from "${helpers}";\n` +
        `const n = needs(${JSON.stringify(thing)});\n` +
        `Deno.test({ name: "needy" + n.reasonSuffix, ignore: n.ignore, fn() {\n` +
        `  throw new Error("ran");\n} });\n`,
    );
    const out = await new Deno.Command(DENO, {
      args: ["test", "--allow-all", "--no-check", file],
      env: { NO_COLOR: "1", ...env },
      stdout: "piped",
      stderr: "piped",
    }).output();
    return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  } finally {
    await dir.cleanup();
  }
}

Deno.test("needs: a test whose program is withheld shows as ignored in deno test; else it runs", async () => {
  const withheld = await runNeedy("sh", { UCSPI_TEST_WITHOUT: "sh" });
  assert.match(withheld, /needy \(needs sh\) \.\.\. ignored/);
  assert.match(withheld, /ok \| 0 passed \| 0 failed \| 1 ignored/);
  const ran = await runNeedy("sh", { UCSPI_TEST_WITHOUT: "" });
  assert.match(ran, /needy \(needs sh\) \.\.\. FAILED/);
  assert.match(ran, /Error: ran/);
});
