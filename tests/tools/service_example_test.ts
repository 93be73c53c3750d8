/**
 * examples/service/smtpd as an admin runs it: copied, env/ edited, `make` for
 * the rules, then real daemontools (supervise for the service and for its
 * log, joined by a pipe as svscan joins them), a client greeted through
 * tcpserver, rblsmtpd and fixcrio, tcpserver's -v lines in multilog's file.
 */
import assert from "node:assert/strict";
import { DENO, MOD, ROOT } from "../support/helpers.ts";

function which(name: string): string | null {
  for (const dir of ["/usr/bin", "/bin", "/usr/local/bin"]) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch { /* not here */ }
  }
  return null;
}

const missing = ["supervise", "svc", "multilog", "envdir", "make"].filter((n) => !which(n));

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function waitFor<T>(what: string, probe: () => Promise<T | null>): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const v = await probe().catch(() => null);
    if (v !== null) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function converse(port: number): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode("QUIT\r\n"));
    let text = "";
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return text;
  } finally {
    conn.close();
  }
}

Deno.test({
  name: "examples/service/smtpd runs under supervise with multilog, as written" +
    (missing.length ? ` (not installed: ${missing.join(", ")})` : ""),
  ignore: missing.length > 0,
  fn: async () => {
    const top = await Deno.makeTempDir();
    const svc = `${top}/smtpd`;
    let supervisors: Deno.ChildProcess | null = null;
    try {
      const bin = `${top}/bin`;
      await Deno.mkdir(bin);
      const inst = await new Deno.Command(DENO, { args: ["run", "-A", MOD, "install", bin] })
        .output();
      assert.equal(inst.code, 0, new TextDecoder().decode(inst.stderr));
      const cp = await new Deno.Command("cp", {
        args: ["-R", `${ROOT}examples/service/smtpd`, svc],
      }).output();
      assert.equal(cp.code, 0);
      const port = freePort();
      const smtpd = `${top}/fake-smtpd`;
      await Deno.writeTextFile(
        smtpd,
        '#!/bin/sh\necho "220 fake ESMTP"\nread line\necho "221 $(printf %s "$line" | tr -d "\\r") relay=${RELAYCLIENT-no}"\n',
        { mode: 0o755 },
      );
      await Deno.writeTextFile(`${svc}/env/IP`, "127.0.0.1\n");
      await Deno.writeTextFile(`${svc}/env/PORT`, `${port}\n`);
      await Deno.writeTextFile(`${svc}/env/SMTPD`, `${smtpd}\n`);
      const env = { PATH: `${bin}:/usr/bin:/bin`, HOME: top };
      const make = await new Deno.Command("make", { cwd: svc, env, clearEnv: true }).output();
      assert.equal(make.code, 0, new TextDecoder().decode(make.stderr));
      supervisors = new Deno.Command("sh", {
        args: ["-c", `supervise '${svc}' | supervise '${svc}/log'`],
        env,
        clearEnv: true,
        stdin: "null",
      }).spawn();
      const reply = await waitFor("the greeting", async () => {
        const r = await converse(port);
        return r === "" ? null : r;
      });
      // fixcrio adds the CRs qmail-style servers leave out
      assert.equal(reply, "220 fake ESMTP\r\n221 QUIT relay=\r\n");
      const log = await waitFor("tcpserver's end line in multilog's current", async () => {
        const t = await Deno.readTextFile(`${svc}/log/main/current`);
        return /tcpserver: end 1 status 0/.test(t) ? t : null;
      });
      assert.match(log, /^@[0-9a-f]{24} tcpserver: status: 0\/20$/m);
      assert.match(log, /tcpserver: ok 1 mail\.example\.com:127\.0\.0\.1:\d+ :127\.0\.0\.1::\d+/);
    } finally {
      await new Deno.Command("svc", { args: ["-dx", svc, `${svc}/log`] }).output();
      if (supervisors) await supervisors.status;
      await Deno.remove(top, { recursive: true });
    }
  },
});
