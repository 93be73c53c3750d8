/**
 * Compatibility with the IPv6 descendants of DJB's ucspi-tcp (issue 11):
 * fehcom's ucspi-tcp6 and Debian's IPv6-patched ucspi-tcp (package
 * ucspi-tcp-ipv6).
 *
 * - tcpserver's host `:0` (ucspi-tcp6: every address, IPv4 and IPv6 on one
 *   dual-stack socket) and `::` are accepted; an IPv4 client of such a
 *   server is reported as IPv4 (ucspi-tcp6 sets PROTO=TCP and formats a
 *   v4-mapped peer as a dotted quad), an IPv6 one as IPv6.
 * - tcprules: a CIDR rule with a trailing dot (`127./8`, ucspi-tcp6's man
 *   page) compiles to the same cdb as `127.0.0.0/8`, which answers the same.
 * - tcpserver -v log lines show IPv6 addresses as Debian's IPv6 tcpserver
 *   prints them (`Local:::1:PORT :::1::PORT`), compared byte for byte with
 *   that binary, extracted (not installed: it conflicts with ucspi-tcp) from
 *   the package apt-get downloads into .tmp/.
 *
 * Both of tcpserver's paths (native FFI sockets and pure Deno) are run.
 */
import assert from "node:assert/strict";
import { ours, ROOT } from "../support/helpers.ts";
import { spawnServer, startSrv, talk } from "../support/tcpserver_util.ts";
import { oursArgv } from "../support/helpers.ts";
import { decisionLine } from "../../lib/server/log.ts";

const PATHS = [
  { name: "native", env: { UCSPI_NATIVE: "1" } },
  { name: "pure", env: { UCSPI_NATIVE: "0" } },
];

const PRINT = [
  "sh",
  "-c",
  'echo "PROTO=$PROTO TCPLOCALIP=$TCPLOCALIP TCPREMOTEIP=$TCPREMOTEIP TCP6REMOTEIP=${TCP6REMOTEIP-unset}"',
];

/** Whether this host has an IPv6 loopback to bind. */
function haveIpv6(): boolean {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
}
const NO_V6 = !haveIpv6();

for (const host of [":0", "::"]) {
  for (const p of PATHS) {
    Deno.test({
      name: `compat6: tcpserver host ${host} listens on IPv4 and IPv6 (${p.name})`,
      ignore: NO_V6,
      fn: async () => {
        const srv = await startSrv("ours", ["-1", "-v", "-RH", "-l0", host, "0", ...PRINT], {
          env: p.env,
        });
        try {
          const v4 = await talk(srv.port, { host: "127.0.0.1" });
          assert.equal(
            v4.text,
            "PROTO=TCP TCPLOCALIP=127.0.0.1 TCPREMOTEIP=127.0.0.1 TCP6REMOTEIP=unset\n",
          );
          const v6 = await talk(srv.port, { host: "::1" });
          assert.equal(v6.text, "PROTO=TCP6 TCPLOCALIP=::1 TCPREMOTEIP=::1 TCP6REMOTEIP=::1\n");
          await srv.waitUntil(() =>
            srv.lines.filter((l) => l.startsWith("tcpserver: end ")).length === 2
          );
          const oks = srv.lines.filter((l) => / ok /.test(l)).map((l) => l.replace(/\d+/g, "N"));
          assert.deepEqual(oks, [
            "tcpserver: ok N N:N.N.N.N:N :N.N.N.N::N",
            "tcpserver: ok N N:::N:N :::N::N",
          ]);
        } finally {
          await srv.stop();
        }
      },
    });
  }
}

/** Compiles rules text with our tcprules; returns the cdb bytes. */
async function compile(dir: string, text: string): Promise<Uint8Array> {
  const r = await ours("tcprules", [`${dir}/r.cdb`, `${dir}/r.tmp`], { stdin: text });
  assert.equal(r.code, 0, r.err);
  return await Deno.readFile(`${dir}/r.cdb`);
}

Deno.test("compat6: tcprules CIDR with a trailing dot (127./8) means 127.0.0.0/8", async () => {
  const dir = await Deno.makeTempDir({ prefix: "compat6-" });
  try {
    const dotted = '127./8:allow,WHICH="a"\n10.1./16:deny\n192.168.7./24:allow,WHICH="c"\n';
    const plain = '127.0.0.0/8:allow,WHICH="a"\n10.1.0.0/16:deny\n192.168.7.0/24:allow,WHICH="c"\n';
    const a = await compile(dir, dotted);
    const b = await compile(dir, plain);
    assert.deepEqual(a, b);
    // and the cdb answers as it should
    for (
      const [ip, want] of [
        ["127.1.2.3", "set environment variable WHICH=a\nallow connection\n"],
        ["10.1.200.1", "deny connection\n"],
        ["10.2.0.1", "default:\nallow connection\n"],
        ["192.168.7.9", "set environment variable WHICH=c\nallow connection\n"],
        ["192.168.8.9", "default:\nallow connection\n"],
      ]
    ) {
      const r = await ours("tcprulescheck", [`${dir}/r.cdb`], { env: { TCPREMOTEIP: ip } });
      assert.ok(r.out.endsWith(want), `${ip}: ${r.out}`);
    }
    // a dot alone is still no address, and a second trailing dot is an error
    for (const bad of ["./8:allow\n", "127../8:allow\n", "1.2.3.4./33:allow\n"]) {
      const r = await ours("tcprules", [`${dir}/r.cdb`, `${dir}/r.tmp`], { stdin: bad });
      assert.equal(r.code, 111, bad);
      assert.match(r.err, /unable to parse line 1/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Debian's IPv6 tcpserver, extracted from the package into .tmp/ (never
 * installed: ucspi-tcp-ipv6 conflicts with ucspi-tcp). Null, with the reason
 * printed, when apt-get download cannot fetch it.
 */
async function debianIpv6Tcpserver(): Promise<string | null> {
  const dir = `${ROOT}.tmp/ucspi-tcp-ipv6`;
  const bin = `${dir}/root/usr/bin/tcpserver`;
  try {
    Deno.statSync(bin);
    return bin;
  } catch { /* not extracted yet */ }
  await Deno.mkdir(dir, { recursive: true });
  const run = (cmd: string, args: string[]) =>
    new Deno.Command(cmd, { args, cwd: dir, stdout: "null", stderr: "piped" }).output()
      .catch((e) => ({ success: false, stderr: new TextEncoder().encode(String(e)) }));
  const dl = await run("apt-get", ["download", "ucspi-tcp-ipv6"]);
  if (!dl.success) {
    console.log(
      `skip: apt-get download ucspi-tcp-ipv6 failed: ${new TextDecoder().decode(dl.stderr).trim()}`,
    );
    return null;
  }
  const deb = [...Deno.readDirSync(dir)].find((e) => e.name.endsWith(".deb"));
  if (!deb) return null;
  const x = await run("dpkg-deb", ["-x", deb.name, "root"]);
  if (!x.success) {
    console.log(`skip: dpkg-deb -x failed: ${new TextDecoder().decode(x.stderr).trim()}`);
    return null;
  }
  return bin;
}

const DEBIAN6 = NO_V6 ? null : await debianIpv6Tcpserver();

/** The ok/deny lines of one connection to a server, pid and client port replaced. */
async function decisionLines(argv: string[], env: Record<string, string>): Promise<string[]> {
  const srv = await spawnServer(argv, { env });
  try {
    const t = await talk(srv.port, { host: "::1" });
    await srv.waitLine(/^tcpserver: end /);
    return srv.lines
      .filter((l) => / (ok|deny) /.test(l))
      .map((l) =>
        l.replace(/ (ok|deny) \d+ /, " $1 PID ")
          .replaceAll(`:${srv.port}`, ":PORT")
          .replace(new RegExp(`:${t.localPort}$`), ":CLIENTPORT")
      );
  } finally {
    await srv.stop();
  }
}

for (const p of PATHS) {
  for (const deny of [false, true]) {
    Deno.test({
      name: `compat6: -v ${
        deny ? "deny" : "ok"
      } line on ::1 as Debian's IPv6 tcpserver (${p.name})`,
      ignore: DEBIAN6 === null,
      fn: async () => {
        const dir = await Deno.makeTempDir({ prefix: "compat6-" });
        try {
          const rules: string[] = [];
          if (deny) {
            // Debian's IPv6 tcpserver looks ::1 up as "::1" in the cdb: the
            // key both write for this rule.
            const r = await ours("tcprules", [`${dir}/r.cdb`, `${dir}/r.tmp`], {
              stdin: "::1:deny\n",
            });
            assert.equal(r.code, 0, r.err);
            rules.push("-x", `${dir}/r.cdb`);
          }
          const args = ["-1", "-v", "-RH", "-l", "Local", ...rules, "::1", "0", "echo", "hi"];
          const theirs = await decisionLines([DEBIAN6!, ...args], {});
          const mine = await decisionLines(oursArgv("tcpserver", args), p.env);
          assert.deepEqual(mine, theirs);
          assert.deepEqual(theirs, [
            `tcpserver: ${deny ? "deny" : "ok"} PID Local:::1:PORT :::1::CLIENTPORT`,
          ]);
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      },
    });
  }
}

Deno.test("compat6: log lines keep DJB's safecats for host names and ident answers", () => {
  const line = decisionLine("tcpserver", "ok", 7, {
    localHost: "lo:cal",
    localIp: "2001:db8::1",
    localPort: 25,
    remoteHost: "h%st",
    remoteIp: "::ffff:1.2.3.4",
    remoteInfo: "jo:e\n",
    remotePort: 54321,
  });
  assert.equal(line, "tcpserver: ok 7 lo?cal:2001:db8::1:25 h?st:::ffff:1.2.3.4:jo?e?:54321");
  // a field that is not an address is still made safe
  assert.equal(
    decisionLine("tcpserver", "deny", 1, {
      localIp: "fe80::1%eth0",
      localPort: 1,
      remoteIp: "not:an address",
      remotePort: 2,
    }),
    "tcpserver: deny 1 :fe80??1?eth0:1 :not?an?address::2",
  );
});
