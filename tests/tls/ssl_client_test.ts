/**
 * sslclient end to end: against openssl s_server (a real OpenSSL server) and
 * against our sslserver, over loopback.
 */
import assert from "node:assert/strict";
import { ours } from "../support/helpers.ts";
import { makePki, type Pki, startTool } from "../support/ssl_fixtures.ts";

let pkiPromise: Promise<Pki> | undefined;
function pki(): Promise<Pki> {
  return pkiPromise ??= makePki();
}

/** The program sslclient runs: report env, send a line on 7, close it, copy 6 to stdout. */
const PROG = [
  "sh",
  "-c",
  'echo "PROTO=$PROTO SSLREMOTEIP=$SSLREMOTEIP TCPREMOTEIP=${TCPREMOTEIP-unset} ' +
  'SSL_SERVER_S_DN=${SSL_SERVER_S_DN-unset}" >&2; echo "client line" >&7; exec 7>&-; cat <&6',
];

Deno.test("sslclient against our sslserver: verified, both ways, ucspi-ssl env", async () => {
  const p = await pki();
  const srv = await startTool(
    "sslserver",
    ["-1", "-RH", "-l0", "127.0.0.1", "0", "sh", "-c", 'echo "server saw: $(head -1)"'],
    { CERTFILE: p.serverCert, KEYFILE: p.serverKey },
  );
  try {
    const r = await ours("sslclient", [
      "-RHs",
      "-a",
      p.caCert,
      "127.0.0.1",
      String(srv.port),
      ...PROG,
    ]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, "server saw: client line\n");
    assert.match(
      r.err,
      /PROTO=SSL SSLREMOTEIP=127\.0\.0\.1 TCPREMOTEIP=unset SSL_SERVER_S_DN=\/CN=localhost/,
    );
    const e = await ours("sslclient", ["-RHe", "127.0.0.1", String(srv.port), ...PROG], {
      env: { CAFILE: p.caCert },
    });
    assert.equal(e.code, 0, e.err);
    assert.match(e.err, /TCPREMOTEIP=127\.0\.0\.1/);
  } finally {
    await srv.stop();
  }
});

async function sServer(p: Pki, host: string): Promise<{ port: number; stop: () => Promise<void> }> {
  // find a free port, then let s_server take it (it has no port-0 report)
  const l = Deno.listen({ hostname: host, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const child = new Deno.Command("openssl", {
    args: [
      "s_server",
      "-accept",
      `${host}:${port}`,
      "-cert",
      p.serverCert,
      "-key",
      p.serverKey,
      "-quiet",
      "-rev",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0; i < 400; i++) {
    try {
      (await Deno.connect({ hostname: host, port })).close();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 25)); // s_server still starting
    }
  }
  return {
    port,
    stop: async () => {
      child.kill();
      await child.status;
    },
  };
}

Deno.test("sslclient against openssl s_server: checks as ucspi-ssl", async () => {
  const p = await pki();
  const s1 = await sServer(p, "127.0.0.1");
  try {
    const port = String(s1.port);
    const ok = await ours("sslclient", [
      "-RH",
      "-a",
      p.caCert,
      "127.0.0.1",
      port,
      "sh",
      "-c",
      'echo hello >&7; read x <&6; echo "$x"',
    ]);
    assert.equal(ok.code, 0, ok.err);
    assert.equal(ok.out, "olleh\n"); // s_server -rev reverses lines
    // our test CA is not in the system store
    const untrusted = await ours("sslclient", ["-RH", "127.0.0.1", port, "true"]);
    assert.equal(untrusted.code, 111);
    assert.equal(
      untrusted.err,
      "sslclient: fatal: missing credentials (CA) or unable to validate server certificate\n",
    );
    const unchecked = await ours("sslclient", ["-RHX", "127.0.0.1", port, "true"]);
    assert.equal(unchecked.code, 0, unchecked.err);
  } finally {
    await s1.stop();
  }
  // The certificate names 127.0.0.1 and localhost, not 127.0.0.2.
  const s2 = await sServer(p, "127.0.0.2");
  try {
    const port = String(s2.port);
    const wrong = await ours("sslclient", ["-RH", "-a", p.caCert, "127.0.0.2", port, "true"]);
    assert.equal(wrong.code, 111);
    assert.equal(
      wrong.err,
      "sslclient: fatal: server hostname does not match certificate: 127.0.0.2\n",
    );
    const noName = await ours("sslclient", ["-RHN", "-a", p.caCert, "127.0.0.2", port, "true"]);
    assert.equal(noName.code, 0, noName.err);
  } finally {
    await s2.stop();
  }
});

Deno.test("sslclient: plaintext server, refused port, usage", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  const srv = (async () => {
    const c = await l.accept();
    await c.write(new TextEncoder().encode("220 plain SMTP, no TLS here\r\n"));
    await c.read(new Uint8Array(1024)).catch(() => null);
    c.close();
  })();
  const plain = await ours("sslclient", ["-RH", "127.0.0.1", String(port), "true"]);
  await srv;
  l.close();
  assert.equal(plain.code, 111);
  assert.match(plain.err, /^sslclient: fatal: unable to SSL connect: ./);
  const refused = await ours("sslclient", ["-RH", "127.0.0.1", String(port), "true"]);
  assert.equal(refused.code, 111);
  assert.equal(
    refused.err,
    `sslclient: unable to connect to 127.0.0.1 port ${port}: connection refused\n`,
  );
  const u = await ours("sslclient", ["127.0.0.1"]);
  assert.equal(u.code, 100);
  assert.match(u.err, /^sslclient: usage: sslclient \[ -463hHrRdDqQveEsSnNxX \]/);
});

Deno.test("sslclient: the program exits while the server still sends; the server gets all, then the end", async () => {
  // Closing a socket with unread input makes the kernel send a reset that
  // throws away our last data still on its way (and the close_notify);
  // sslclient closes lingering. (A Deno TLS server: node:tls's server loses
  // a close_notify while paused, see lib/tls keepEofDeliverable.)
  const p = await pki();
  const size = 256 << 10;
  const [cert, key] = await Promise.all([
    Deno.readTextFile(p.serverCert),
    Deno.readTextFile(p.serverKey),
  ]);
  for (let round = 1; round <= 2; round++) {
    const l = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key });
    const port = (l.addr as Deno.NetAddr).port;
    const serving = (async () => {
      const seen = { got: 0, sent: 0, end: false, error: "" };
      const c = await l.accept();
      let stop = false;
      const sending = (async () => {
        // keep sending until the client's end (or its reset)
        const chunk = new Uint8Array(16384).fill(120);
        try {
          while (!stop) {
            await c.write(chunk);
            seen.sent += chunk.length;
            await new Promise((r) => setTimeout(r, 0)); // let the reader run
          }
        } catch (e) {
          seen.error ||= `write: ${(e as Error).message}`;
        }
      })();
      // a slow reader: what the client sent last is still unread here
      // when the client is done
      const buf = new Uint8Array(16384);
      try {
        for (;;) {
          const n = await c.read(buf);
          if (n === null) break;
          seen.got += n;
          await new Promise((r) => setTimeout(r, 2));
        }
        seen.end = true;
      } catch (e) {
        seen.error ||= `read: ${(e as Error).message}`;
      }
      stop = true;
      await sending;
      try {
        await c.closeWrite();
      } catch { /* reset */ }
      c.close();
      return seen;
    })();
    try {
      const r = await ours("sslclient", [
        "-RH",
        "-a",
        p.caCert,
        "127.0.0.1",
        String(port),
        "sh",
        "-c",
        // once the server's data comes in, write and exit without reading it
        `head -c 1 <&6 >/dev/null; head -c ${size} /dev/zero >&7`,
      ]);
      const seen = await serving;
      assert.equal(r.code, 0, r.err);
      assert.deepEqual(seen, { ...seen, got: size, end: true, error: "" }, JSON.stringify(seen));
    } finally {
      l.close();
    }
  }
});

Deno.test("PKI cleanup (sslclient)", async () => {
  if (pkiPromise) await (await pkiPromise).cleanup();
});
