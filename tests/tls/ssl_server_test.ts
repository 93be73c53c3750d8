/**
 * sslserver end to end: real OpenSSL clients (openssl s_client, swaks) over
 * loopback against `sslserver` run as a process.
 */
import assert from "node:assert/strict";
import tls from "node:tls";
import { connectTls } from "../../lib/tls/tls.ts";
import { ours, tempDir } from "../support/helpers.ts";
import { makePki, type Pki, sClient, startTool } from "../support/ssl_fixtures.ts";

let pkiPromise: Promise<Pki> | undefined;
function pki(): Promise<Pki> {
  return pkiPromise ??= makePki();
}

const ENV_PROG = [
  "sh",
  "-c",
  'echo "PROTO=$PROTO SSLREMOTEIP=$SSLREMOTEIP SSLLOCALPORT=$SSLLOCALPORT ' +
  "TCPREMOTEIP=${TCPREMOTEIP-unset} SSL_PROTOCOL=${SSL_PROTOCOL-unset} " +
  'SSL_CLIENT_S_DN=${SSL_CLIENT_S_DN-unset} SSL_CLIENT_VERIFY=${SSL_CLIENT_VERIFY-unset}"; ' +
  'head -1; echo "bye"',
];

function field(out: string, name: string): string | undefined {
  return new RegExp(`(?:^| )${name}=([^ \\n]*)`).exec(out)?.[1];
}

Deno.test("sslserver: ucspi-ssl environment, -e and -s, data both ways", async () => {
  const p = await pki();
  const env = { CERTFILE: p.serverCert, KEYFILE: p.serverKey };
  const plain = await startTool(
    "sslserver",
    ["-1", "-RH", "-l0", "127.0.0.1", "0", ...ENV_PROG],
    env,
  );
  try {
    const r = await sClient(plain.port, "hello over tls\n", [
      "-CAfile",
      p.caCert,
      "-verify_return_error",
      "-verify_hostname",
      "localhost",
    ]);
    assert.equal(field(r.out, "PROTO"), "SSL");
    assert.equal(field(r.out, "SSLREMOTEIP"), "127.0.0.1");
    assert.equal(field(r.out, "SSLLOCALPORT"), String(plain.port));
    assert.equal(field(r.out, "TCPREMOTEIP"), "unset");
    assert.equal(field(r.out, "SSL_PROTOCOL"), "unset");
    assert.match(r.out, /\nhello over tls\nbye\n$/);
  } finally {
    await plain.stop();
  }
  const full = await startTool(
    "sslserver",
    ["-1", "-e", "-s", "-RH", "-l0", "127.0.0.1", "0", ...ENV_PROG],
    env,
  );
  try {
    const r = await sClient(full.port, "x\n", ["-CAfile", p.caCert]);
    assert.equal(field(r.out, "PROTO"), "TCP");
    assert.equal(field(r.out, "TCPREMOTEIP"), "127.0.0.1");
    assert.equal(field(r.out, "SSLREMOTEIP"), "127.0.0.1");
    assert.match(field(r.out, "SSL_PROTOCOL") ?? "", /^TLSv1\.[23]$/);
    assert.equal(field(r.out, "SSL_CLIENT_VERIFY"), "NONE");
  } finally {
    await full.stop();
  }
});

Deno.test("sslserver: a failed handshake is logged and disturbs nobody; -T bounds it", async () => {
  const p = await pki();
  const srv = await startTool(
    "sslserver",
    ["-1", "-v", "-T", "1", "-RH", "-l0", "127.0.0.1", "0", "sh", "-c", "head -1"],
    { CERTFILE: p.serverCert, KEYFILE: p.serverKey },
  );
  try {
    // a silent client holds its connection; a plaintext one talks SMTP
    const silent = await Deno.connect({ hostname: "127.0.0.1", port: srv.port });
    const plain = await Deno.connect({ hostname: "127.0.0.1", port: srv.port });
    await plain.write(new TextEncoder().encode("EHLO plain.example\r\n"));
    const bad = await srv.waitLine(/dropping SSL connection, unable to accept SSL: (?!timed out)/);
    assert.match(bad, /^sslserver: warning: dropping SSL connection, unable to accept SSL: ./);
    const good = await sClient(srv.port, "still served\n", ["-CAfile", p.caCert]);
    assert.equal(good.out, "still served\n");
    await srv.waitLine(/unable to accept SSL: timed out$/);
    assert.equal(await silent.read(new Uint8Array(10)), null); // closed by the server
    silent.close();
    plain.close();
    assert.ok(srv.lines.some((l) => /^sslserver: end \d+ status 28416$/.test(l)));
    assert.ok(srv.lines.some((l) => /^sslserver: ssl \d+ accept $/.test(l)));
  } finally {
    await srv.stop();
  }
});

Deno.test("sslserver -m: client certificates required and verified against $CAFILE", async () => {
  const p = await pki();
  const srv = await startTool(
    "sslserver",
    ["-1", "-m", "-s", "-RH", "-l0", "127.0.0.1", "0", ...ENV_PROG],
    { CERTFILE: p.serverCert, KEYFILE: p.serverKey, CAFILE: p.caCert },
  );
  try {
    const ok = await sClient(srv.port, "x\n", [
      "-CAfile",
      p.caCert,
      "-cert",
      p.clientCert,
      "-key",
      p.clientKey,
    ]);
    assert.match(
      ok.out,
      /SSL_CLIENT_S_DN=\/C=DE\/O=Example Mail\/CN=client one SSL_CLIENT_VERIFY=SUCCESS/,
    );
    const stranger = await sClient(srv.port, "x\n", [
      "-CAfile",
      p.caCert,
      "-cert",
      p.strangerCert,
      "-key",
      p.strangerKey,
    ]);
    assert.equal(stranger.out, "");
    await srv.waitLine(
      /^sslserver: warning: dropping SSL connection, missing credentials \(CA\) or unable to validate client certificate$/,
    );
    const none = await sClient(srv.port, "x\n", ["-CAfile", p.caCert]);
    assert.equal(none.out, "");
  } finally {
    await srv.stop();
  }
});

Deno.test("sslserver: SIGHUP re-reads the certificate for new connections", async () => {
  const p = await pki();
  const dir = await tempDir();
  try {
    const cert = `${dir.path}/cert.pem`, key = `${dir.path}/key.pem`;
    await Deno.copyFile(p.serverCert, cert);
    await Deno.copyFile(p.serverKey, key);
    const srv = await startTool(
      "sslserver",
      ["-1", "-v", "-RH", "-l0", "127.0.0.1", "0", "sh", "-c", "head -1"],
      { CERTFILE: cert, KEYFILE: key },
    );
    try {
      const subject = async () => {
        const r = await sClient(srv.port, "x\n", ["-CAfile", p.caCert]);
        return /depth=0 ([^\n]*)/.exec(r.err)?.[1] ?? r.err;
      };
      assert.match(await subject(), /CN\s*=\s*localhost/);
      // a broken pair is refused: the old certificate stays
      await Deno.copyFile(p.otherCert, cert);
      Deno.kill(srv.pid, "SIGHUP");
      await srv.waitLine(/keeping the old certificate: key does not match certificate/);
      assert.match(await subject(), /CN\s*=\s*localhost/);
      await Deno.copyFile(p.otherKey, key);
      Deno.kill(srv.pid, "SIGHUP");
      await srv.waitLine(/^sslserver: reloaded certificate/);
      assert.match(await subject(), /CN\s*=\s*second\.test/);
    } finally {
      await srv.stop();
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test("sslserver: rules deny after the handshake, and -B is encrypted", async () => {
  const p = await pki();
  const dir = await tempDir();
  try {
    const cdb = `${dir.path}/rules.cdb`;
    const made = await ours("tcprules", [cdb, `${dir.path}/rules.tmp`], {
      stdin: "127.0.0.1:deny\n",
    });
    assert.equal(made.code, 0, made.err);
    const srv = await startTool(
      "sslserver",
      ["-1", "-v", "-x", cdb, "-RH", "-l0", "127.0.0.1", "0", "echo", "never"],
      { CERTFILE: p.serverCert, KEYFILE: p.serverKey },
    );
    try {
      const r = await sClient(srv.port, "", ["-CAfile", p.caCert]);
      assert.equal(r.out, "");
      await srv.waitLine(/^sslserver: deny \d+ 0:127\.0\.0\.1:\d+ :127\.0\.0\.1::\d+$/);
    } finally {
      await srv.stop();
    }
    const banner = await startTool(
      "sslserver",
      ["-1", "-B", "220 hello\r\n", "-RH", "-l0", "127.0.0.1", "0", "echo", "221 bye"],
      { CERTFILE: p.serverCert, KEYFILE: p.serverKey },
    );
    try {
      const r = await sClient(banner.port, "", ["-CAfile", p.caCert]);
      assert.equal(r.out, "220 hello\r\n221 bye\n");
    } finally {
      await banner.stop();
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test("sslserver: credential and usage errors as ucspi-ssl", async () => {
  const p = await pki();
  const run = (env: Record<string, string>, args = ["127.0.0.1", "0", "true"]) =>
    ours("sslserver", args, { env });
  const missing = await run({ CERTFILE: `${p.dir}/none.pem`, KEYFILE: p.serverKey });
  assert.equal(missing.code, 111);
  assert.equal(missing.err, "sslserver: fatal: unable to load certificate\n");
  const key = await run({ CERTFILE: p.serverCert, KEYFILE: `${p.dir}/none.key` });
  assert.equal(key.err, "sslserver: fatal: unable to load key\n");
  const mismatch = await run({ CERTFILE: p.serverCert, KEYFILE: p.clientKey });
  assert.equal(mismatch.err, "sslserver: fatal: key does not match certificate\n");
  const chain = await run({ CERTCHAINFILE: `${p.dir}/none.pem`, KEYFILE: p.serverKey });
  assert.equal(chain.err, "sslserver: fatal: unable to load certificate chain file\n");
  const ca = await run({ CERTFILE: p.serverCert, KEYFILE: p.serverKey, CAFILE: `${p.dir}/x` });
  assert.equal(ca.err, "sslserver: fatal: unable to load CA list\n");
  const quiet = await run({ CERTFILE: `${p.dir}/none.pem` }, ["-q", "127.0.0.1", "0", "true"]);
  assert.equal(quiet.code, 111);
  assert.equal(quiet.err, "");
  const u = await run({}, ["127.0.0.1", "0"]);
  assert.equal(u.code, 100);
  assert.match(u.err, /^sslserver: usage: sslserver \[ -1346UXpPhHrRoOdDqQvVIeEsSnNmzZ \]/);
  const bad = await run({}, ["-k", "127.0.0.1", "0", "true"]);
  assert.equal(bad.code, 100);
  assert.match(bad.err, /^sslserver: illegal option -- k\nsslserver: usage: /);
});

Deno.test("sslserver: a 50 MB message by swaks --tls-on-connect arrives whole", async () => {
  const p = await pki();
  const dir = await tempDir();
  try {
    // The message: CRLF lines, no leading dots, no swaks %TOKENS%.
    const line = "The quick brown fox jumps over the lazy dog 0123456789 ABCDEFGHIJ\r\n";
    const lines = Math.ceil((50 << 20) / line.length);
    const msgFile = `${dir.path}/msg.eml`;
    const body = new TextEncoder().encode(
      "Subject: big\r\nFrom: a@example.org\r\nTo: b@example.org\r\n\r\n" + line.repeat(lines),
    );
    await Deno.writeFile(msgFile, body);
    const want = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
    const sink = `${dir.path}/sink.ts`;
    await Deno.writeTextFile(sink, SMTP_SINK);
    const got = `${dir.path}/got.eml`;
    const srv = await startTool(
      "sslserver",
      ["-1", "-RH", "-l0", "127.0.0.1", "0", Deno.execPath(), "run", "-A", sink, got],
      { CERTFILE: p.serverCert, KEYFILE: p.serverKey },
    );
    try {
      const r = await new Deno.Command("swaks", {
        args: [
          "--server",
          `127.0.0.1:${srv.port}`,
          "--tls-on-connect",
          "--to",
          "b@example.org",
          "--from",
          "a@example.org",
          "--data",
          `@${msgFile}`,
          "--timeout",
          "60",
          "--suppress-data",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const out = new TextDecoder().decode(r.stdout);
      assert.equal(r.code, 0, out + new TextDecoder().decode(r.stderr));
      assert.match(out, /<~\s+250 accepted \d+/);
      const received = await Deno.readFile(got);
      // swaks ends DATA with CRLF . CRLF after the message's own final CRLF
      assert.equal(received.length, body.length + 2);
      assert.deepEqual(received.subarray(body.length), new Uint8Array([13, 10]));
      const have = new Uint8Array(
        await crypto.subtle.digest("SHA-256", received.subarray(0, body.length)),
      );
      assert.deepEqual(have, want);
    } finally {
      await srv.stop();
    }
  } finally {
    await dir.cleanup();
  }
});

/** A minimal SMTP server on stdin/stdout that stores the DATA part in Deno.args[0]. */
const SMTP_SINK = `
const out = Deno.stdout;
const enc = new TextEncoder();
const say = (s) => out.write(enc.encode(s + "\\r\\n"));
const file = await Deno.open(Deno.args[0], { write: true, create: true, truncate: true });
await say("220 sink ESMTP");
let buf = new Uint8Array(0);
let inData = false;
let size = 0;
const END = enc.encode("\\r\\n.\\r\\n");
function indexOf(hay, needle, from) {
  outer: for (let i = from; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
for await (const chunk of Deno.stdin.readable) {
  const next = new Uint8Array(buf.length + chunk.length);
  next.set(buf); next.set(chunk, buf.length); buf = next;
  for (;;) {
    if (inData) {
      const at = indexOf(buf, END, 0);
      if (at < 0) {
        const keep = Math.min(buf.length, END.length - 1);
        const part = buf.subarray(0, buf.length - keep);
        await file.write(part); size += part.length;
        buf = buf.slice(buf.length - keep);
        break;
      }
      const part = buf.subarray(0, at + 2);
      await file.write(part); size += part.length;
      buf = buf.slice(at + END.length);
      inData = false;
      await say("250 accepted " + size);
      continue;
    }
    const nl = buf.indexOf(10);
    if (nl < 0) break;
    const cmd = new TextDecoder().decode(buf.subarray(0, nl)).trim().toUpperCase();
    buf = buf.slice(nl + 1);
    if (cmd.startsWith("EHLO") || cmd.startsWith("HELO")) await say("250 sink");
    else if (cmd === "DATA") { inData = true; await say("354 go ahead"); }
    else if (cmd === "QUIT") { await say("221 bye"); file.close(); Deno.exit(0); }
    else await say("250 ok");
  }
}
file.close();
`;

Deno.test("sslserver -w: when idle, the program's input ends silently (ucspi-ssl's ssl_io)", async () => {
  const p = await pki();
  const srv = await startTool(
    "sslserver",
    ["-1", "-w", "1", "-RH", "-l0", "127.0.0.1", "0", "sh", "-c", "echo start; read x; echo late"],
    { CERTFILE: p.serverCert, KEYFILE: p.serverKey },
  );
  try {
    const got = await new Promise<string>((resolve) => {
      let text = "";
      const s = tls.connect({
        host: "127.0.0.1",
        port: srv.port,
        ca: Deno.readTextFileSync(p.caCert),
        servername: "localhost",
      });
      s.on("data", (d: Uint8Array) => (text += new TextDecoder().decode(d)));
      s.on("error", () => {});
      s.on("close", () => resolve(text));
    });
    // only -w can end this: the client sends nothing, the program waits for
    // a line and gets EOF instead; no log line (as ucspi-ssl)
    assert.equal(got, "start\nlate\n");
    assert.equal(srv.lines.filter((l) => /unable to speak SSL/.test(l)).length, 0);
  } finally {
    await srv.stop();
  }
});

Deno.test("sslserver: the program exits while the client still sends; the client gets all, then the end", async () => {
  // Closing a socket with unread input makes the kernel send a reset that
  // throws away our last data still on its way; sslserver closes lingering.
  const p = await pki();
  const size = 256 << 10;
  const srv = await startTool(
    "sslserver",
    ["-1", "-v", "-RH", "-l0", "127.0.0.1", "0", "sh", "-c", `head -c ${size} /dev/zero`],
    { CERTFILE: p.serverCert, KEYFILE: p.serverKey },
  );
  const ca = await Deno.readTextFile(p.caCert);
  try {
    for (let round = 1; round <= 2; round++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: srv.port });
      const k = await connectTls(conn, {
        host: "localhost",
        verifyServer: true,
        checkName: true,
        ca,
        timeoutMs: 10000,
      });
      const st = { got: 0, sent: 0, end: false };
      let stop = false;
      const sending = (async () => {
        const w = k.writable.getWriter();
        try {
          while (!stop) {
            await w.write(new Uint8Array(16384));
            st.sent += 16384;
            await new Promise((r) => setTimeout(r, 0)); // let the reader run
          }
        } catch { /* the server closed */ }
      })();
      const r = k.readable.getReader();
      // read a little, then wait until the program is over, then the rest
      st.got += (await r.read()).value?.length ?? 0;
      await srv.waitLine(new RegExp(`^sslserver: end ${round} status 0$`));
      for (;;) {
        const { value, done } = await r.read();
        if (done) break;
        st.got += value.length;
      }
      st.end = true;
      stop = true;
      await sending;
      try {
        conn.close();
      } catch { /* closed with its streams */ }
      assert.deepEqual(st.got, size, JSON.stringify(st));
    }
  } finally {
    await srv.stop();
  }
});

for (const proxy of [false, true]) {
  // Without -W node:tls runs on the accepted socket's native handle; with
  // -W (the header read through the connection's streams) over the adapter.
  const how = proxy ? "-W, over the stream adapter" : "on the native handle";
  Deno.test(`sslserver: 16 MB both ways through cat, byte for byte, half-closed (${how})`, async () => {
    const p = await pki();
    const size = 16 << 20;
    const srv = await startTool(
      "sslserver",
      ["-1", "-v", "-RH", "-l0", ...(proxy ? ["-W"] : []), "127.0.0.1", "0", "cat"],
      { CERTFILE: p.serverCert, KEYFILE: p.serverKey },
    );
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: srv.port });
    try {
      if (proxy) {
        await conn.write(new TextEncoder().encode("PROXY TCP4 192.0.2.1 127.0.0.1 4321 443\r\n"));
      }
      const k = await connectTls(conn, {
        host: "localhost",
        verifyServer: true,
        checkName: true,
        ca: await Deno.readTextFile(p.caCert),
        timeoutMs: 10000,
      });
      const block = new Uint8Array(65536 + 17); // never aligned with TLS records
      for (let i = 0; i < block.length; i++) block[i] = (i * 31 + 7) & 0xff;
      const st = { sent: 0, got: 0, bad: 0 };
      const sending = (async () => {
        const w = k.writable.getWriter();
        while (st.sent < size) {
          const part = block.subarray(0, Math.min(block.length, size - st.sent));
          await w.write(part);
          st.sent += part.length;
        }
        await w.close();
      })();
      const reading = (async () => {
        for await (const chunk of k.readable) {
          for (let i = 0; i < chunk.length; i++) {
            if (chunk[i] !== block[(st.got + i) % block.length]) st.bad++;
          }
          st.got += chunk.length;
        }
      })();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const hang = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          try {
            conn.close();
          } catch { /* closed */ }
          reject(new Error(`hung: ${JSON.stringify(st)}`));
        }, 120_000);
      });
      try {
        await Promise.race([Promise.all([sending, reading]), hang]);
      } finally {
        clearTimeout(timer);
      }
      assert.equal(st.bad, 0, "corrupted bytes");
      assert.equal(st.got, size);
      await srv.waitLine(/^sslserver: end 1 status 0$/);
    } finally {
      try {
        conn.close();
      } catch { /* closed with its streams */ }
      await srv.stop();
    }
  });
}

Deno.test("PKI cleanup (sslserver)", async () => {
  if (pkiPromise) await (await pkiPromise).cleanup();
});
