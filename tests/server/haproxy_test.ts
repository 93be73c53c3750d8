/**
 * tcpserver -W and sslserver -W behind Debian's real haproxy (mode tcp,
 * loopback only): haproxy sends PROXY v1 (send-proxy) to one tcpserver and
 * v2 (send-proxy-v2) to another; the programs see the original client
 * address (127.0.0.5), and a deny rule on 127.0.0.6 holds. TLS passes
 * through haproxy to sslserver -W.
 */
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { needs, ours, program, tempDir, waitListening } from "../support/helpers.ts";
import { makePki, type Running, startTool } from "../support/ssl_fixtures.ts";
import { quietArgs } from "../support/tcpserver_util.ts";

/** Debian's haproxy (often in /usr/sbin, off a non-root $PATH). */
const HAPROXY = needs("haproxy");

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Connects from localAddress, optionally through TLS, sends nothing, reads all. */
function fetchFrom(
  port: number,
  localAddress: string,
  secure?: { ca: string },
): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Uint8Array[] = [];
    const raw = net.connect({ host: "127.0.0.1", port, localAddress });
    const sock: net.Socket = secure
      ? tls.connect({ socket: raw, ca: secure.ca, servername: "localhost" })
      : raw;
    sock.on("data", (c: Uint8Array) => chunks.push(new Uint8Array(c)));
    // a denied connection may end in a reset: what arrived counts
    sock.on("error", () => {});
    sock.on("close", () => {
      resolve(new TextDecoder().decode(concat(chunks)));
    });
  });
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

Deno.test(
  "haproxy send-proxy / send-proxy-v2 in front of two tcpserver -W and sslserver -W" +
    HAPROXY.reasonSuffix,
  {
    ignore: HAPROXY.ignore,
  },
  async () => {
    const haproxyPath = program("haproxy")!;
    const dir = await tempDir();
    const pki = await makePki();
    const servers: Running[] = [];
    let haproxy: Deno.ChildProcess | undefined;
    try {
      const cdb = `${dir.path}/rules.cdb`;
      const made = await ours("tcprules", [cdb, `${dir.path}/rules.tmp`], {
        stdin: "127.0.0.6:deny\n:allow\n",
      });
      assert.equal(made.code, 0, made.err);
      const prog = (tag: string) => [
        "sh",
        "-c",
        `echo "${tag} $PROTO $TCPREMOTEIP $TCPLOCALIP"`,
      ];
      // only haproxy (127.0.0.1) may, and must, send a header
      const env = { PROXY_TRUSTED: "127.0.0.1", PROXY_TIMEOUT: "5" };
      const plain = (tag: string) =>
        startTool("tcpserver", quietArgs(["-v", "-W", "-x", cdb], prog(tag)), env);
      const s1 = await plain("one");
      servers.push(s1);
      const s2 = await plain("two");
      servers.push(s2);
      const s3 = await startTool(
        "sslserver",
        ["-1", "-v", "-e", "-W", "-RH", "-l0", "-x", cdb, "127.0.0.1", "0", ...prog("tls")],
        { ...env, CERTFILE: pki.serverCert, KEYFILE: pki.serverKey },
      );
      servers.push(s3);
      const fePlain = freePort(), feTls = freePort();
      const cfg = `${dir.path}/haproxy.cfg`;
      await Deno.writeTextFile(
        cfg,
        `global
  maxconn 64
defaults
  mode tcp
  timeout connect 5s
  timeout client 20s
  timeout server 20s
frontend plain
  bind 127.0.0.1:${fePlain}
  default_backend two
frontend secure
  bind 127.0.0.1:${feTls}
  default_backend tls
backend two
  balance roundrobin
  server one 127.0.0.1:${s1.port} send-proxy
  server two 127.0.0.1:${s2.port} send-proxy-v2
backend tls
  server tls 127.0.0.1:${s3.port} send-proxy-v2
`,
      );
      const check = await new Deno.Command(haproxyPath, {
        args: ["-c", "-f", cfg],
        stdout: "null",
        stderr: "piped",
      }).output();
      assert.equal(check.code, 0, new TextDecoder().decode(check.stderr));
      haproxy = new Deno.Command(haproxyPath, {
        args: ["-db", "-f", cfg],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      // wait until haproxy listens (it prints nothing when it is ready)
      await waitListening("127.0.0.1", feTls);

      const answers = [];
      for (let i = 0; i < 4; i++) answers.push(await fetchFrom(fePlain, "127.0.0.5"));
      const tags = new Set<string>();
      for (const a of answers) {
        const m = /^(one|two) TCP 127\.0\.0\.5 127\.0\.0\.1\n$/.exec(a);
        assert.ok(m, `unexpected answer ${JSON.stringify(a)}`);
        tags.add(m[1]);
      }
      assert.deepEqual([...tags].sort(), ["one", "two"]); // v1 and v2 both decoded
      // the deny rule on the original client holds, on both servers
      for (let i = 0; i < 2; i++) assert.equal(await fetchFrom(fePlain, "127.0.0.6"), "");
      await s1.waitLine(/^tcpserver: deny \d+ 0:127\.0\.0\.1:\d+ :127\.0\.0\.6::\d+$/);
      await s2.waitLine(/^tcpserver: deny \d+ 0:127\.0\.0\.1:\d+ :127\.0\.0\.6::\d+$/);
      await s1.waitLine(/^tcpserver: ok \d+ 0:127\.0\.0\.1:\d+ :127\.0\.0\.5::\d+$/);

      // TLS passes through haproxy; sslserver reads the v2 header, then TLS
      const ca = await Deno.readTextFile(pki.caCert);
      const t = await fetchFrom(feTls, "127.0.0.5", { ca });
      assert.equal(t, "tls TCP 127.0.0.5 127.0.0.1\n");
      assert.equal(await fetchFrom(feTls, "127.0.0.6", { ca }), "");
      await s3.waitLine(/^sslserver: deny \d+ 0:127\.0\.0\.1:\d+ :127\.0\.0\.6::\d+$/);

      // a direct client from an untrusted address is taken as itself
      const direct = await fetchFrom(s1.port, "127.0.0.7");
      assert.equal(direct, "one TCP 127.0.0.7 127.0.0.1\n");
    } finally {
      if (haproxy) {
        try {
          haproxy.kill("SIGTERM");
        } catch { /* gone */ }
        await haproxy.status;
      }
      for (const s of servers) await s.stop();
      await pki.cleanup();
      await dir.cleanup();
    }
  },
);

Deno.test("tcpserver -W refuses a client without a header, and a slow one after $PROXY_TIMEOUT", async () => {
  const s = await startTool(
    "tcpserver",
    quietArgs(["-v", "-W"], ["sh", "-c", 'echo "$TCPREMOTEIP:$TCPREMOTEPORT"']),
    { PROXY_TIMEOUT: "1" },
  );
  try {
    const bad = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
    await bad.write(new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
    assert.equal(await bad.read(new Uint8Array(8)), null);
    bad.close();
    await s.waitLine(
      /^tcpserver: warning: dropping connection, unable to read PROXY header from 127\.0\.0\.1: no PROXY header$/,
    );
    const slow = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
    await slow.write(new TextEncoder().encode("PROXY TCP4 10.9.8.7 "));
    await s.waitLine(
      /unable to read PROXY header from 127\.0\.0\.1: timed out reading PROXY header$/,
    );
    assert.equal(await slow.read(new Uint8Array(8)), null);
    slow.close();
    const good = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
    await good.write(new TextEncoder().encode("PROXY TCP6 2001:db8::7 ::1 4711 25\r\n"));
    const got = new TextDecoder().decode(
      new Uint8Array(await new Response(good.readable).arrayBuffer()),
    );
    assert.equal(got, "2001:db8::7:4711\n");
  } finally {
    await s.stop();
  }
});
