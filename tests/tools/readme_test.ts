/**
 * The README's "Narrowing permissions" commands, taken from the README
 * itself and run as printed: only the /etc and /var/qmail paths are moved
 * into a temporary directory, `deno`/`mod.ts` point at this checkout, and the
 * port is 0 with -1 added to learn it.
 */
import assert from "node:assert/strict";
import { DENO, MOD, ROOT, tempDir } from "../support/helpers.ts";
import { spawnServer, talk } from "../support/tcpserver_util.ts";

function readmeCommands(): { tcprules: string; tcpserver: string } {
  const text = Deno.readTextFileSync(`${ROOT}README.md`);
  const section = text.slice(text.indexOf("### Narrowing permissions"));
  const start = section.indexOf("```sh\n") + 6;
  const block = section.slice(start, section.indexOf("\n```", start));
  const lines = block.replaceAll("\\\n", " ").split("\n").filter((l) => !l.startsWith("#"));
  const tcprules = lines.find((l) => l.includes(" tcprules "));
  const tcpserver = lines.find((l) => l.startsWith("exec -a tcpserver"));
  assert.ok(tcprules && tcpserver, "the README's section has both commands");
  return { tcprules, tcpserver };
}

function localize(cmd: string, dir: string): string {
  return cmd
    .replaceAll("/var/qmail/bin/qmail-smtpd", `${dir}/qmail-smtpd`)
    .replaceAll("/etc/tcp.smtp", `${dir}/tcp.smtp`)
    .replaceAll("--allow-read=/etc", `--allow-read=${dir}`)
    .replaceAll("--allow-write=/etc", `--allow-write=${dir}`)
    .replace(/^(exec -a tcpserver )?deno /, `$1${DENO} `)
    .replace(" mod.ts ", ` ${MOD} `);
}

Deno.test("README: the narrowed tcprules and tcpserver commands work as printed", async () => {
  const dir = await tempDir();
  const { tcprules, tcpserver } = readmeCommands();
  try {
    await Deno.writeTextFile(`${dir.path}/tcp.smtp`, '127.0.0.1:allow,RELAYCLIENT=""\n:deny\n');
    await Deno.writeTextFile(
      `${dir.path}/qmail-smtpd`,
      '#!/bin/sh\necho "220 $TCPLOCALHOST relay=${RELAYCLIENT-no}"\n',
      { mode: 0o755 },
    );
    const rules = await new Deno.Command("bash", { args: ["-c", localize(tcprules, dir.path)] })
      .output();
    assert.equal(rules.code, 0, new TextDecoder().decode(rules.stderr));
    const server = localize(tcpserver, dir.path).replace(" 127.0.0.1 25 ", " -1 127.0.0.1 0 ");
    assert.notEqual(server, localize(tcpserver, dir.path), "the port was found");
    const srv = await spawnServer(["bash", "-c", server], { name: "tcpserver" });
    try {
      assert.equal((await talk(srv.port)).text, "220 mail.example.com relay=\n");
      assert.equal((await talk(srv.port)).text, "220 mail.example.com relay=\n");
      await srv.waitUntil(() => srv.lines.filter((l) => / end \d+ status 0$/.test(l)).length === 2);
      assert.deepEqual(srv.lines.filter((l) => /warning|fatal/.test(l)), []);
    } finally {
      await srv.stop();
    }
  } finally {
    await dir.cleanup();
  }
});
