/**
 * lib/tls (tls.ts, credentials.ts, streams.ts, ssl_env.ts) over real
 * loopback sockets: handshakes both ways, against openssl s_client /
 * s_server too, client certificates, chains, failures, timeouts,
 * half-close and a large transfer.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import {
  CredentialError,
  loadServerCredentials,
  type ServerCredentials,
  serverFilesFromEnv,
} from "../../lib/tls/credentials.ts";
import { sslEnvironment } from "../../lib/tls/ssl_env.ts";
import { acceptTls, connectTls, HandshakeError, verifyCertificate } from "../../lib/tls/tls.ts";
import type { StreamPair } from "../../lib/tls/streams.ts";
import { nodeSocketOn } from "../../lib/tls/tcp_handle.ts";
import { makePki, type Pki } from "../support/ssl_fixtures.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

let pkiPromise: Promise<Pki> | undefined;
function pki(): Promise<Pki> {
  return pkiPromise ??= makePki();
}

async function pair(): Promise<{ server: Deno.TcpConn; client: Deno.TcpConn }> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: (l.addr as Deno.NetAddr).port }),
    l.accept(),
  ]);
  l.close();
  return { server, client };
}

async function readAll(s: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(s).arrayBuffer());
}

async function creds(p: Pki, extra: Record<string, string> = {}): Promise<ServerCredentials> {
  const env: Record<string, string> = { CERTFILE: p.serverCert, KEYFILE: p.serverKey, ...extra };
  return await loadServerCredentials(serverFilesFromEnv((n) => env[n]));
}

Deno.test("ours to ours: echo with half-close, protocol and cipher reported", async () => {
  const p = await pki();
  const c = await creds(p);
  const { server, client } = await pair();
  const ca = await Deno.readTextFile(p.caCert);
  const [s, k] = await Promise.all([
    acceptTls(server, c, { timeoutMs: 5000, clientCert: "none" }),
    connectTls(client, {
      host: "localhost",
      verifyServer: true,
      checkName: true,
      ca,
      timeoutMs: 5000,
    }),
  ]);
  assert.match(s.info.protocol, /^TLSv1\.[23]$/);
  assert.ok(s.info.cipher.length > 0);
  assert.equal(s.info.verify, "NONE");
  assert.equal(k.info.verify, "SUCCESS");
  // client writes and closes its half; server reads to EOF, then answers
  const w = k.writable.getWriter();
  await w.write(enc.encode("hello "));
  await w.write(enc.encode("world"));
  await w.close();
  assert.equal(dec.decode(await readAll(s.readable)), "hello world");
  const sw = s.writable.getWriter();
  await sw.write(enc.encode("after your EOF"));
  await sw.close();
  assert.equal(dec.decode(await readAll(k.readable)), "after your EOF");
  const env = sslEnvironment(s.info, "CLIENT");
  assert.equal(env.SSL_PROTOCOL, s.info.protocol);
  assert.equal(env.SSL_SERVER_S_DN, "/CN=localhost");
  assert.equal(env.SSL_SERVER_I_DN_CN, "Test Root CA");
  assert.equal(env.SSL_CLIENT_VERIFY, "NONE");
  assert.equal(env.SSL_CLIENT_S_DN, undefined);
});

Deno.test("client certificate: trusted, stranger, missing", async () => {
  const p = await pki();
  const c = await creds(p, { CAFILE: p.caCert });
  const ca = await Deno.readTextFile(p.caCert);
  const run = async (cert?: string, key?: string, mode: "none" | "require" = "require") => {
    const { server, client } = await pair();
    const clientSide = connectTls(client, {
      host: "localhost",
      verifyServer: true,
      checkName: true,
      ca,
      cert: cert && await Deno.readTextFile(cert),
      key: key && await Deno.readTextFile(key),
      timeoutMs: 5000,
    }).then((k) => {
      // keep reading so the server's close is noticed
      k.readable.pipeTo(new WritableStream()).catch(() => {});
      return k;
    }, () => undefined);
    try {
      return await acceptTls(server, c, { timeoutMs: 5000, clientCert: mode });
    } finally {
      await clientSide;
    }
  };
  const ok = await run(p.clientCert, p.clientKey);
  assert.equal(ok.info.verify, "SUCCESS");
  const env = sslEnvironment(ok.info, "CLIENT");
  assert.equal(env.SSL_CLIENT_S_DN, "/C=DE/O=Example Mail/CN=client one");
  assert.equal(env.SSL_CLIENT_S_DN_CN, "client one");
  assert.equal(env.SSL_CLIENT_I_DN, "/O=ucspi test/CN=Test Root CA");
  assert.equal(env.SSL_CLIENT_VERIFY, "SUCCESS");
  assert.match(env.SSL_CLIENT_CERT, /^-----BEGIN CERTIFICATE-----/);
  await ok.writable.close();

  await assert.rejects(
    run(p.strangerCert, p.strangerKey),
    (e: unknown) =>
      e instanceof HandshakeError && /unable to validate client certificate/.test(e.message),
  );
  // not required: the stranger gets in, marked FAILED
  const lax = await run(p.strangerCert, p.strangerKey, "none");
  assert.match(lax.info.verify, /^FAILED:/);
  await lax.writable.close();
  await assert.rejects(run(), (e: unknown) => e instanceof HandshakeError);
});

Deno.test("verifyCertificate: depth and chains, counted as OpenSSL", async () => {
  const p = await pki();
  const x = async (f: string) => new X509Certificate(await Deno.readTextFile(f));
  const [ca, inter, leaf, client, stranger] = await Promise.all(
    [p.caCert, p.interCert, p.leafCert, p.clientCert, p.strangerCert].map(x),
  );
  assert.equal(verifyCertificate(client, [ca], 0), "SUCCESS");
  assert.equal(verifyCertificate(client, [ca], 1), "SUCCESS");
  // the chained server certificate says serverAuth only: no client certificate
  assert.equal(verifyCertificate(leaf, [ca, inter], 1), "FAILED:unsuitable certificate purpose");
  assert.equal(verifyCertificate(leaf, [ca, inter], 0), "FAILED:certificate chain too long");
  assert.equal(verifyCertificate(leaf, [ca], 2), "FAILED:unable to get local issuer certificate");
  // the intermediate sent along by the peer
  assert.equal(
    verifyCertificate(leaf, [ca], 1, new Date(), [inter]),
    "FAILED:unsuitable certificate purpose",
  );
  assert.equal(verifyCertificate(stranger, [ca], 1), "FAILED:self-signed certificate");
  assert.equal(
    verifyCertificate(client, [ca], 1, new Date(Date.now() + 10 * 86400e3)),
    "FAILED:certificate has expired",
  );
});

Deno.test("certificate chain file (root first) is served leaf first and verifies", async () => {
  const p = await pki();
  const c = await loadServerCredentials(
    serverFilesFromEnv((n) =>
      ({ CERTCHAINFILE: p.chainFile, KEYFILE: p.leafKey, CERTFILE: p.serverCert } as Record<
        string,
        string
      >)[n]
    ),
  );
  assert.match(c.cert.subject, /O=chained/);
  const { server, client } = await pair();
  const [, k] = await Promise.all([
    acceptTls(server, c, { timeoutMs: 5000, clientCert: "none" }),
    connectTls(client, {
      host: "127.0.0.1",
      verifyServer: true,
      checkName: true,
      ca: await Deno.readTextFile(p.caCert), // only the root: the intermediate must come from the server
      timeoutMs: 5000,
    }),
  ]);
  assert.equal(k.info.verify, "SUCCESS");
  assert.match(k.info.peer!.subject, /O=chained/);
  await k.writable.close();
});

Deno.test("credential errors carry ucspi-ssl's failure kinds", async () => {
  const p = await pki();
  const load = (env: Record<string, string>) =>
    loadServerCredentials(serverFilesFromEnv((n) => env[n]));
  const kind = (f: string) => (e: unknown) => e instanceof CredentialError && e.failure === f;
  await assert.rejects(load({ CERTFILE: `${p.dir}/nope.pem` }), kind("certificate"));
  await assert.rejects(load({ CERTFILE: p.serverKey, KEYFILE: p.serverKey }), kind("certificate"));
  await assert.rejects(load({ CERTCHAINFILE: `${p.dir}/nope` }), kind("chain"));
  await assert.rejects(load({ CERTFILE: p.serverCert }), kind("key")); // key defaults to the cert file
  await assert.rejects(load({ CERTFILE: p.serverCert, KEYFILE: p.clientKey }), kind("mismatch"));
  await assert.rejects(
    load({ CERTFILE: p.serverCert, KEYFILE: p.serverKey, CAFILE: p.serverKey }),
    kind("ca"),
  );
  // cert and key in one file, as ucspi-ssl allows
  const both = `${p.dir}/both.pem`;
  await Deno.writeTextFile(
    both,
    (await Deno.readTextFile(p.serverKey)) + (await Deno.readTextFile(p.serverCert)),
  );
  const c = await load({ CERTFILE: both });
  assert.match(c.cert.subject, /CN=localhost/);
});

Deno.test("sslclient side: bad name, untrusted server, and skipping checks", async () => {
  const p = await pki();
  const c = await loadServerCredentials(
    serverFilesFromEnv((n) =>
      ({ CERTFILE: p.otherCert, KEYFILE: p.otherKey } as Record<
        string,
        string
      >)[n]
    ),
  );
  const ca = await Deno.readTextFile(p.caCert);
  const attempt = async (o: { host: string; checkName: boolean; verify: boolean; ca?: string }) => {
    const { server, client } = await pair();
    const srv = acceptTls(server, c, { timeoutMs: 5000, clientCert: "none" }).then(
      (s) => s.readable.pipeTo(new WritableStream()).catch(() => {}),
      () => {},
    );
    try {
      const k = await connectTls(client, {
        host: o.host,
        verifyServer: o.verify,
        checkName: o.checkName,
        ca: o.ca,
        timeoutMs: 5000,
      });
      await k.writable.close();
      return k.info;
    } finally {
      await srv;
    }
  };
  await assert.rejects(
    attempt({ host: "localhost", checkName: true, verify: true, ca }),
    /server hostname does not match certificate: localhost/,
  );
  assert.equal(
    (await attempt({ host: "second.test", checkName: true, verify: true, ca })).verify,
    "SUCCESS",
  );
  assert.equal(
    (await attempt({ host: "127.0.0.1", checkName: true, verify: true, ca })).verify,
    "SUCCESS",
  );
  assert.ok(await attempt({ host: "localhost", checkName: false, verify: true, ca }));
  // system store: our test CA is not in it
  await assert.rejects(
    attempt({ host: "second.test", checkName: true, verify: true }),
    /unable to validate server certificate/,
  );
  assert.ok(await attempt({ host: "localhost", checkName: true, verify: false }));
});

Deno.test("handshake: plaintext client fails, silent client times out, others unaffected", async () => {
  const p = await pki();
  const c = await creds(p);
  const { server, client } = await pair();
  const w = client.writable.getWriter();
  await w.write(enc.encode("EHLO plaintext.example\r\n\r\n"));
  await assert.rejects(
    acceptTls(server, c, { timeoutMs: 5000, clientCert: "none" }),
    (e: unknown) => e instanceof HandshakeError,
  );
  await w.close().catch(() => {});
  const silent = await pair();
  await assert.rejects(
    acceptTls(silent.server, c, { timeoutMs: 100, clientCert: "none" }),
    (e: unknown) => e instanceof HandshakeError && e.message === "timed out",
  );
  // the server side closed the silent connection
  assert.equal((await silent.client.readable.getReader().read()).done, true);
  try {
    silent.client.close();
  } catch { /* closed with its stream */ }
});

Deno.test("against openssl s_client: data both ways, our close ends it", async () => {
  const p = await pki();
  const c = await creds(p);
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  const child = new Deno.Command("openssl", {
    args: [
      "s_client",
      "-connect",
      `127.0.0.1:${port}`,
      "-CAfile",
      p.caCert,
      "-quiet",
      "-verify_return_error",
      "-verify_hostname",
      "localhost",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const conn = await l.accept();
  l.close();
  const s = await acceptTls(conn, c, { timeoutMs: 5000, clientCert: "none" });
  const sw = s.writable.getWriter();
  await sw.write(enc.encode("220 ready\r\n"));
  const cw = child.stdin.getWriter();
  await cw.write(enc.encode("QUIT\r\n"));
  const r = s.readable.getReader();
  let got = "";
  while (!got.includes("\n")) {
    const { value, done } = await r.read();
    if (done) break;
    got += dec.decode(value);
  }
  assert.equal(got, "QUIT\r\n");
  await sw.write(enc.encode("221 bye\r\n"));
  await sw.close(); // close_notify: s_client ends
  const out = dec.decode(await readAll(child.stdout));
  await cw.close().catch(() => {});
  await child.status;
  r.releaseLock();
  await s.readable.cancel();
  assert.equal(out, "220 ready\r\n221 bye\r\n");
});

Deno.test("against openssl s_server: sslclient side verifies and talks", async () => {
  const p = await pki();
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const srv = new Deno.Command("openssl", {
    args: [
      "s_server",
      "-accept",
      `127.0.0.1:${port}`,
      "-cert",
      p.serverCert,
      "-key",
      p.serverKey,
      "-naccept",
      "1",
      "-quiet",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let client: Deno.TcpConn | undefined;
  for (let i = 0; i < 200 && !client; i++) {
    try {
      client = await Deno.connect({ hostname: "127.0.0.1", port });
    } catch {
      await new Promise((r) => setTimeout(r, 25)); // s_server is still starting
    }
  }
  assert.ok(client, "s_server did not start");
  const k = await connectTls(client, {
    host: "localhost",
    verifyServer: true,
    checkName: true,
    ca: await Deno.readTextFile(p.caCert),
    timeoutMs: 5000,
  });
  const w = k.writable.getWriter();
  await w.write(enc.encode("ping\n"));
  const reader = srv.stdout.getReader();
  let seen = "";
  while (!seen.includes("ping\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += dec.decode(value);
  }
  assert.match(seen, /ping\n/);
  const sin = srv.stdin.getWriter();
  await sin.write(enc.encode("pong\n"));
  const r = k.readable.getReader();
  const { value } = await r.read();
  assert.equal(dec.decode(value), "pong\n");
  await w.close();
  await sin.close();
  r.releaseLock();
  await k.readable.cancel();
  reader.releaseLock();
  await srv.stdout.cancel();
  srv.kill();
  await srv.status;
});

/**
 * The server's side of a raw connection as acceptTls gets it in sslserver:
 * with `native`, the untouched socket too (node:tls then runs on Deno's
 * TCP handle, lib/tls/tcp_handle.ts); its streams are made only if used.
 */
function serverPair(server: Deno.TcpConn, native: boolean): StreamPair {
  if (!native) return server;
  return {
    get readable() {
      return server.readable;
    },
    get writable() {
      return server.writable;
    },
    close: () => server.close(),
    tcp: server,
  };
}

/** Whether this Deno lets node:tls run on an accepted socket's own handle. */
async function nativeAvailable(): Promise<boolean> {
  const raw = await pair();
  const sock = nodeSocketOn(raw.server);
  sock?.destroy();
  raw.server.close();
  raw.client.close();
  return sock !== null;
}
const NATIVE = await nativeAvailable();

/** A connected pair of sessions, ours on both ends. */
async function sessions(native = false): Promise<{
  s: Awaited<ReturnType<typeof acceptTls>>;
  k: Awaited<ReturnType<typeof connectTls>>;
  raw: { server: Deno.TcpConn; client: Deno.TcpConn };
}> {
  const p = await pki();
  const c = await creds(p);
  const raw = await pair();
  const [s, k] = await Promise.all([
    acceptTls(serverPair(raw.server, native), c, { timeoutMs: 5000, clientCert: "none" }),
    connectTls(raw.client, {
      host: "localhost",
      verifyServer: true,
      checkName: true,
      ca: await Deno.readTextFile(p.caCert),
      timeoutMs: 5000,
    }),
  ]);
  return { s, k, raw };
}

/**
 * Waits for work; if it has not finished after `seconds` (a bound against a
 * hang, far above the normal time even on a loaded machine, never a
 * measurement), closes the connections and fails with the progress so far.
 */
async function bounded<T>(
  work: Promise<T>,
  seconds: number,
  progress: () => unknown,
  raw: { server: Deno.TcpConn; client: Deno.TcpConn },
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      for (const c of [raw.server, raw.client]) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      reject(new Error(`hung: no end after ${seconds} s: ${JSON.stringify(progress())}`));
    }, seconds * 1000);
  });
  try {
    return await Promise.race([work, hang]);
  } finally {
    clearTimeout(timer);
  }
}

for (const native of [false, true]) {
  const on = native ? " (server on the native handle)" : "";
  Deno.test({
    name: `16 MB each way through one session, half-closed in the middle, arrives whole${on}`,
    ignore: native && !NATIVE,
  }, async () => {
    const { s, k, raw } = await sessions(native);
    const size = 16 << 20;
    const block = new Uint8Array(65536);
    for (let i = 0; i < block.length; i++) block[i] = (i * 7 + 3) & 0xff;
    const st = { sent: 0, clientClosed: false, echoed: 0, serverSawEnd: false, got: 0, bad: 0 };
    // The server echoes until the client's end, then ends its side too.
    const echo = (async () => {
      const r = s.readable.getReader();
      const w = s.writable.getWriter();
      for (;;) {
        const { value, done } = await r.read();
        if (done) break;
        await w.write(value);
        st.echoed += value.length;
      }
      st.serverSawEnd = true;
      await w.close();
    })();
    // The client half-closes as soon as it has sent everything, while the
    // echo of most of it is still on its way back.
    const sending = (async () => {
      const w = k.writable.getWriter();
      for (let n = 0; n < size; n += block.length) {
        await w.write(block);
        st.sent += block.length;
      }
      await w.close();
      st.clientClosed = true;
    })();
    const counting = (async () => {
      for await (const chunk of k.readable) {
        for (let i = 0; i < chunk.length; i++) {
          if (chunk[i] !== block[(st.got + i) & 0xffff]) st.bad++;
        }
        st.got += chunk.length;
      }
    })();
    await bounded(Promise.all([echo, sending, counting]), 120, () => st, raw);
    assert.equal(st.bad, 0, "corrupted bytes");
    assert.equal(st.echoed, size);
    assert.equal(st.got, size);
  });

  Deno.test({
    name: `a half-close that arrives while the reader is stalled still ends the stream${on}`,
    ignore: native && !NATIVE,
  }, async () => {
    // The situation where Deno 2.9's node:tls could forget a close_notify
    // (one that arrived while reading was stopped; see keepEofDeliverable in
    // lib/tls/streams.ts): the server reads one chunk, then stalls while the client
    // sends 1 MB and half-closes, then reads on and must see the end.
    const { s, k, raw } = await sessions(native);
    const size = 1 << 20;
    const st = { sent: 0, clientClosed: false, got: 0, serverSawEnd: false };
    const r = s.readable.getReader();
    const w = k.writable.getWriter();
    await w.write(new Uint8Array(1000));
    st.sent = 1000;
    const first = await r.read();
    st.got += first.value?.length ?? 0;
    const sending = (async () => {
      for (let n = 0; n < size; n += 65536) {
        await w.write(new Uint8Array(65536));
        st.sent += 65536;
      }
      await w.close();
      st.clientClosed = true;
    })();
    // Stall until the client's end is out (its data fits the socket buffers,
    // or, where it does not, a while: either way the reader then resumes).
    let stall: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([sending, new Promise((go) => stall = setTimeout(go, 2000))]);
    clearTimeout(stall);
    const reading = (async () => {
      for (;;) {
        const { value, done } = await r.read();
        if (done) break;
        st.got += value.length;
      }
      st.serverSawEnd = true;
    })();
    await bounded(Promise.all([sending, reading]), 60, () => st, raw);
    assert.equal(st.got, size + 1000);
    // and the server's answer after the client's end still arrives
    const sw = s.writable.getWriter();
    await sw.write(enc.encode("after your end"));
    await sw.close();
    assert.equal(
      dec.decode(await bounded(readAll(k.readable), 60, () => "client reading", raw)),
      "after your end",
    );
  });
}

Deno.test({
  name: "native handle: the server ends its output first; the client's upload still arrives whole",
  ignore: !NATIVE,
}, async () => {
  // A program that closes its output at once (`cat > /dev/null`): on the
  // native handle the TLS end goes out only after the client's end, since
  // Deno sends a FIN with it and a node:tls client then stops sending.
  const { s, k, raw } = await sessions(true);
  const size = 8 << 20;
  const st = { sent: 0, got: 0, clientSawEnd: false };
  await s.writable.getWriter().close();
  const sending = (async () => {
    const w = k.writable.getWriter();
    for (let n = 0; n < size; n += 65536) {
      await w.write(new Uint8Array(65536));
      st.sent += 65536;
    }
    await w.close();
  })();
  const reading = (async () => {
    for await (const chunk of s.readable) st.got += chunk.length;
  })();
  const clientEnd = (async () => {
    await readAll(k.readable);
    st.clientSawEnd = true;
  })();
  await bounded(Promise.all([sending, reading, clientEnd]), 60, () => st, raw);
  assert.equal(st.got, size);
  s.shutdown();
});

Deno.test({
  name: "native handle: a server that does not read holds the client back in TCP",
  ignore: !NATIVE,
}, async () => {
  // Deno's TLS layer reads its socket whatever node:tls says; the gate
  // stops the handle itself. Without it all 64 MB would be taken in (and
  // buffered) while nobody reads; with it the client's writes block once
  // the socket buffers (a few MB on loopback) and the first chunks are full.
  const { s, k, raw } = await sessions(true);
  const size = 64 << 20;
  const st = { sent: 0, got: 0 };
  const w = k.writable.getWriter();
  const sending = (async () => {
    for (let n = 0; n < size; n += 65536) {
      await w.write(new Uint8Array(65536));
      st.sent += 65536;
    }
    await w.close();
  })();
  const r = s.readable.getReader();
  st.got += (await r.read()).value?.length ?? 0;
  // the reader stalls; the client may send what the buffers take
  await new Promise((go) => setTimeout(go, 1500));
  assert.ok(st.sent < size, `the client sent all ${st.sent} bytes to a server that did not read`);
  const reading = (async () => {
    for (;;) {
      const { value, done } = await r.read();
      if (done) break;
      st.got += value.length;
    }
  })();
  await bounded(Promise.all([sending, reading]), 120, () => st, raw);
  assert.equal(st.got, size);
  s.shutdown();
  await k.readable.cancel().catch(() => {});
});

Deno.test("PKI cleanup", async () => {
  if (pkiPromise) await (await pkiPromise).cleanup();
});
