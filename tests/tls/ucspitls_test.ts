/**
 * UCSPI-TLS end to end: sslserver -n, ucspitlsd under tcpserver and
 * sslclient -y, with a UCSPI-TLS-aware program written for the test (Python,
 * SMTP-ish: on STARTTLS it answers "220 go", writes its start command on
 * $SSLCTLFD and goes on over $SSLREADFD/$SSLWRITEFD), driven by openssl
 * s_client -starttls smtp and by node:tls over a raw socket.
 */
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { X509Certificate } from "node:crypto";
import { ours, oursArgv, program } from "../support/helpers.ts";
import { makePki, type Pki, sClient, startTool } from "../support/ssl_fixtures.ts";
import { concat } from "../support/tcpserver_util.ts";

const PYTHON = program("python3");
const OPENSSL = program("openssl");

/**
 * The server program. argv[1]: the start command (Y or y). Lines are read a
 * byte at a time, so nothing past STARTTLS is read ahead. Commands: EHLO,
 * STARTTLS, VARS (the UCSPI-TLS variables), ENV NAME (what the control
 * socket sent for NAME), OSENV NAME (NAME in its environment), STDIN (what
 * was left on descriptor 0 after STARTTLS, up to its end), HALF (answers,
 * closes its output and logs the next line it reads as "got LINE" on
 * stderr), IDS (its euid, its parent's euid:egid), QUIT; anything
 * else is echoed as "500 got LINE". "ECHO" as argv[1]: copy 0 to 1 only.
 */
const SERVER_PY = String.raw`
import os, sys
mode = sys.argv[1]
if mode == "ECHO":
    while True:
        b = os.read(0, 65536)
        if not b: sys.exit(0)
        os.write(1, b)
def line(fd):
    b = b""
    while not b.endswith(b"\n"):
        c = os.read(fd, 1)
        if not c: break
        b += c
    return b
rd, wr, ctlenv, left = 0, 1, None, b""
os.write(wr, b"220 ready\r\n")
while True:
    l = line(rd)
    if not l: break
    w = l.rstrip(b"\r\n").split(b" ")
    c = w[0].upper()
    if c == b"EHLO": os.write(wr, b"250-hi\r\n250 STARTTLS\r\n")
    elif c == b"STARTTLS" and rd == 0:
        os.write(wr, b"220 go\r\n")
        ctl = int(os.environ["SSLCTLFD"])
        os.write(ctl, mode.encode())
        got = b""
        while not got.endswith(b"\0\0"):
            c = os.read(ctl, 4096)
            if not c: break
            got += c
        ctlenv = dict(v.split(b"=", 1) for v in got.split(b"\0") if b"=" in v)
        while True:
            c = os.read(0, 4096)
            if not c: break
            left += c
        rd, wr = int(os.environ["SSLREADFD"]), int(os.environ["SSLWRITEFD"])
    elif c == b"VARS":
        v = [k + "=" + os.environ.get(k, "unset") for k in ["SSLCTLFD", "SSLREADFD", "SSLWRITEFD", "UCSPITLS"]]
        os.write(wr, b"250 " + " ".join(v).encode() + b"\r\n")
    elif c == b"ENV":
        v = (ctlenv or {}).get(w[1], b"none")
        os.write(wr, b"250 " + w[1] + b"=" + v + b"\r\n")
    elif c == b"OSENV":
        os.write(wr, b"250 " + w[1] + b"=" + os.environ.get(w[1].decode(), "unset").encode() + b"\r\n")
    elif c == b"STDIN": os.write(wr, b"250 stdin=" + repr(left).encode() + b"\r\n")
    elif c == b"HALF":
        os.write(wr, b"250 half\r\n")
        os.close(wr)
        os.write(2, b"got " + line(rd).rstrip(b"\r\n") + b"\n")
        break
    elif c == b"IDS":
        st = open("/proc/%d/status" % os.getppid()).read().split("\n")
        uid = [l.split()[2] for l in st if l.startswith("Uid:")][0]
        gid = [l.split()[2] for l in st if l.startswith("Gid:")][0]
        os.write(wr, ("250 me=%d parent=%s:%s\r\n" % (os.geteuid(), uid, gid)).encode())
    elif c == b"QUIT":
        os.write(wr, b"221 bye\r\n")
        break
    else: os.write(wr, b"500 got " + l.rstrip(b"\r\n") + b"\r\n")
`;

/**
 * The client program for sslclient -y: the network on 6 and 7; EHLO,
 * STARTTLS, its command (argv[1]), then over the tunnel "ENV SSL_PROTOCOL"
 * and QUIT; prints what it read, and the control socket's SSL_SERVER_S_DN.
 */
const CLIENT_PY = String.raw`
import os, sys
def line(fd):
    b = b""
    while not b.endswith(b"\n"):
        c = os.read(fd, 1)
        if not c: break
        b += c
    return b
out = []
rd, wr = 6, 7
out.append(line(rd))
os.write(wr, b"EHLO me\r\nSTARTTLS\r\n")
out += [line(rd), line(rd), line(rd)]
ctl = int(os.environ["SSLCTLFD"])
os.write(ctl, sys.argv[1].encode())
got = b""
while not got.endswith(b"\0\0"):
    c = os.read(ctl, 4096)
    if not c: break
    got += c
env = dict(v.split(b"=", 1) for v in got.split(b"\0") if b"=" in v)
rd, wr = int(os.environ["SSLREADFD"]), int(os.environ["SSLWRITEFD"])
os.write(wr, b"ENV SSL_PROTOCOL\r\nQUIT\r\n")
out += [line(rd), line(rd)]
sys.stdout.write(b"".join(out).decode())
sys.stdout.write("dn=" + env.get(b"SSL_SERVER_S_DN", b"none").decode() + "\n")
`;

let fixture: Promise<{ pki: Pki; server: string; client: string }> | undefined;
function setup() {
  return fixture ??= (async () => {
    const pki = await makePki();
    const server = `${pki.dir}/smtpish.py`;
    const client = `${pki.dir}/client.py`;
    await Deno.writeTextFile(server, SERVER_PY);
    await Deno.writeTextFile(client, CLIENT_PY);
    return { pki, server, client };
  })();
}

const NEEDS = !PYTHON || !OPENSSL;
const why = (what: string) => `${what} (needs python3 and openssl)`;

/** A raw socket that reads lines; then node:tls over it. */
class Conversation {
  #buf = "";
  #waiters: Array<() => void> = [];
  sock: net.Socket;
  constructor(port: number) {
    this.sock = net.connect(port, "127.0.0.1");
    this.sock.on("data", this.#onData);
  }
  #onData = (d: Uint8Array) => {
    this.#buf += new TextDecoder("latin1").decode(d);
    for (const w of this.#waiters.splice(0)) w();
  };
  /** Waits until the text so far ends with `end`; returns and forgets it. */
  async until(end: string): Promise<string> {
    while (!this.#buf.endsWith(end)) await new Promise<void>((r) => this.#waiters.push(r));
    const t = this.#buf;
    this.#buf = "";
    return t;
  }
  /** Stops reading the raw socket (the TLS layer takes over). */
  release(): net.Socket {
    this.sock.off("data", this.#onData);
    return this.sock;
  }
}

/** STARTTLS by hand, `extra` pipelined after it; then a TLS session over the same socket. */
async function starttls(
  port: number,
  ca: string,
  extra = "",
): Promise<{ tlsSock: tls.TLSSocket; lines: () => Promise<string>; send: (s: string) => void }> {
  const c = new Conversation(port);
  assert.equal(await c.until("\r\n"), "220 ready\r\n");
  c.sock.write("EHLO test\r\n");
  assert.equal(await c.until("250 STARTTLS\r\n"), "250-hi\r\n250 STARTTLS\r\n");
  c.sock.write("STARTTLS\r\n" + extra);
  assert.equal(await c.until("\r\n"), "220 go\r\n");
  const tlsSock = tls.connect({ socket: c.release(), ca, servername: "localhost" });
  await new Promise<void>((resolve, reject) => {
    tlsSock.once("secureConnect", resolve);
    tlsSock.once("error", reject);
  });
  let buf = "";
  const chunks: Array<() => void> = [];
  tlsSock.on("data", (d: Uint8Array) => {
    buf += new TextDecoder().decode(d);
    for (const w of chunks.splice(0)) w();
  });
  return {
    tlsSock,
    send: (s) => tlsSock.write(s),
    lines: async () => {
      while (!buf.endsWith("221 bye\r\n")) await new Promise<void>((r) => chunks.push(r));
      return buf;
    },
  };
}

async function sslserverN(mode: string, extra: string[] = []) {
  const { pki, server } = await setup();
  return await startTool(
    "sslserver",
    ["-1", "-n", ...extra, "-RH", "-l0", "127.0.0.1", "0", PYTHON!, server, mode],
    { CERTFILE: pki.serverCert, KEYFILE: pki.serverKey },
  );
}

Deno.test({
  name: why("sslserver -n: openssl s_client -starttls smtp; the variables come after Y"),
  ignore: NEEDS,
}, async () => {
  const { pki } = await setup();
  const srv = await sslserverN("Y", ["-v"]);
  try {
    const r = await sClient(
      srv.port,
      "VARS\r\nENV SSL_PROTOCOL\r\nENV SSL_CLIENT_VERIFY\r\nOSENV SSL_PROTOCOL\r\nQUIT\r\n",
      ["-starttls", "smtp", "-CAfile", pki.caCert, "-verify_return_error"],
    );
    assert.match(r.out, /250 SSLCTLFD=3 SSLREADFD=4 SSLWRITEFD=5 UCSPITLS=\r\n/);
    assert.match(r.out, /250 SSL_PROTOCOL=TLSv1\.[23]\r\n/);
    assert.match(r.out, /250 SSL_CLIENT_VERIFY=NONE\r\n/);
    // no session when the program started: no SSL_* in its environment
    assert.match(r.out, /250 SSL_PROTOCOL=unset\r\n/);
    assert.match(r.out, /221 bye\r\n$/);
    await srv.waitLine(/^sslserver: end 1 status 0$/);
    assert.ok(srv.lines.some((l) => /^sslserver: ssl 1 accept $/.test(l)), srv.lines.join("\n"));
  } finally {
    await srv.stop();
  }
});

Deno.test({
  name: why("sslserver -n: after y the control socket only closes"),
  ignore: NEEDS,
}, async () => {
  const { pki } = await setup();
  const srv = await sslserverN("y");
  try {
    const s = await starttls(srv.port, await Deno.readTextFile(pki.caCert));
    s.send("ENV SSL_PROTOCOL\r\nOSENV SSL_PROTOCOL\r\nQUIT\r\n");
    assert.equal(
      await s.lines(),
      "250 SSL_PROTOCOL=none\r\n250 SSL_PROTOCOL=unset\r\n221 bye\r\n",
    );
    s.tlsSock.destroy();
  } finally {
    await srv.stop();
  }
});

Deno.test({
  name: why("sslserver -n: plaintext pipelined after STARTTLS never reaches the tunnel"),
  ignore: NEEDS,
}, async () => {
  const { pki } = await setup();
  const srv = await sslserverN("Y");
  try {
    const s = await starttls(
      srv.port,
      await Deno.readTextFile(pki.caCert),
      "MAIL FROM:<injected@example>\r\n",
    );
    s.send("STDIN\r\nhello\r\nQUIT\r\n");
    // the injected line stayed on descriptor 0 (which ended at the command),
    // the first line over the tunnel is the client's first TLS line
    assert.equal(
      await s.lines(),
      "250 stdin=b'MAIL FROM:<injected@example>\\r\\n'\r\n500 got hello\r\n221 bye\r\n",
    );
    s.tlsSock.destroy();
  } finally {
    await srv.stop();
  }
});

Deno.test({
  name: why(
    "sslserver -n: without the start command the connection stays plaintext, byte for byte",
  ),
  ignore: NEEDS,
}, async () => {
  const srv = await sslserverN("ECHO");
  try {
    // it even begins like a TLS record: held a moment for a command, then the program's
    const all = new Uint8Array(256 * 64);
    for (let i = 0; i < all.length; i++) all[i] = (i * 7 + (i >> 8)) & 0xff;
    all.set([0x16, 0x03, 0x01]);
    const got = await new Promise<Uint8Array>((resolve, reject) => {
      const chunks: Uint8Array[] = [];
      const sock = net.connect(srv.port, "127.0.0.1", () => sock.end(all));
      sock.on("data", (d: Uint8Array) => chunks.push(new Uint8Array(d)));
      sock.on("error", reject);
      sock.on("close", () => resolve(concat(chunks)));
    });
    assert.deepEqual(got, all);
  } finally {
    await srv.stop();
  }
});

Deno.test({
  name: why("sslserver -n: a failed handshake is logged; the program reads the tunnel's end"),
  ignore: NEEDS,
}, async () => {
  const srv = await sslserverN("Y", ["-v"]);
  try {
    const c = new Conversation(srv.port);
    const closed = new Promise<void>((r) => c.sock.once("close", () => r()));
    await c.until("\r\n");
    c.sock.write("STARTTLS\r\n");
    assert.equal(await c.until("\r\n"), "220 go\r\n");
    // a TLS record header (so it is the handshake's, even if it comes before
    // the command) around an empty ClientHello
    c.sock.write(new Uint8Array([0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00]));
    await srv.waitLine(/^sslserver: warning: dropping SSL connection, unable to accept SSL: /);
    await closed;
    await srv.waitLine(/^sslserver: end 1 status 0$/);
  } finally {
    await srv.stop();
  }
});

Deno.test({
  name: why("ucspitlsd under tcpserver, in-process and as a process; -z hides $CERTFILE, -Z not"),
  ignore: NEEDS,
}, async () => {
  const { pki, server } = await setup();
  const env = { CERTFILE: pki.serverCert, KEYFILE: pki.serverKey, UCSPI_CHAIN: "force" };
  const ca = await Deno.readTextFile(pki.caCert);
  const runs: Array<[string, string[], string]> = [
    ["in-process", ["ucspitlsd", "-v", "2"], "unset"],
    ["a process", oursArgv("ucspitlsd", ["-Z"]), pki.serverCert],
  ];
  for (const [how, stage, certfile] of runs) {
    const srv = await startTool(
      "tcpserver",
      ["-1", "-RH", "-l0", "127.0.0.1", "0", ...stage, PYTHON!, server, "Y"],
      env,
    );
    try {
      const s = await starttls(srv.port, ca);
      s.send("ENV SSL_CIPHER\r\nOSENV CERTFILE\r\nQUIT\r\n");
      const out = await s.lines();
      assert.match(out, /^250 SSL_CIPHER=TLS_\w+\r\n/, how);
      assert.ok(out.endsWith(`250 CERTFILE=${certfile}\r\n221 bye\r\n`), `${how}: ${out}`);
      s.tlsSock.destroy();
      if (how === "in-process") await srv.waitLine(/^ucspitlsd: tls accept TLSv1\.[23]:/);
    } finally {
      await srv.stop();
    }
  }
});

Deno.test({
  name: "ucspitlsd: usage and credential errors",
}, async () => {
  const u = await ours("ucspitlsd", []);
  assert.equal(u.code, 100);
  assert.match(u.err, /^ucspitlsd: usage: ucspitlsd /);
  const c = await ours("ucspitlsd", ["true"], { env: { CERTFILE: "/nonexistent" } });
  assert.equal(c.code, 111);
  assert.equal(c.err, "ucspitlsd: fatal: unable to load certificate\n");
});

/** STARTTLS by hand with a Deno client (rustls): it tells a close_notify from a bare EOF. */
async function denoStarttls(
  port: number,
  ca: string,
): Promise<Deno.TlsConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let text = "";
  const until = async (end: string) => {
    const b = new Uint8Array(4096);
    while (!text.endsWith(end)) {
      const n = await conn.read(b);
      if (n === null) throw new Error(`EOF waiting for ${JSON.stringify(end)}`);
      text += new TextDecoder().decode(b.subarray(0, n));
    }
    text = "";
  };
  await until("220 ready\r\n");
  await conn.write(new TextEncoder().encode("EHLO test\r\n"));
  await until("250 STARTTLS\r\n");
  await conn.write(new TextEncoder().encode("STARTTLS\r\n"));
  await until("220 go\r\n");
  return await Deno.startTls(conn, { hostname: "localhost", caCerts: [ca] });
}

/** Reads tls to its end: the text, and how it ended ("eof" with close_notify, else the error). */
async function readToEnd(tls: Deno.TlsConn): Promise<{ text: string; end: string }> {
  let text = "";
  const b = new Uint8Array(4096);
  for (;;) {
    let n: number | null;
    try {
      n = await tls.read(b);
    } catch (e) {
      return { text, end: (e as Error).name };
    }
    if (n === null) return { text, end: "eof" };
    text += new TextDecoder().decode(b.subarray(0, n));
  }
}

Deno.test({
  name: why("ucspitlsd -S, -s and neither: how the end of the program's output reaches the client"),
  ignore: NEEDS,
}, async () => {
  const { pki, server } = await setup();
  const ca = await Deno.readTextFile(pki.caCert);
  const env = { CERTFILE: pki.serverCert, KEYFILE: pki.serverKey, UCSPI_CHAIN: "force" };
  // [option, how the client's read ends, what the program then reads]
  const cases: Array<[string[], string, string]> = [
    [[], "eof", "got after"], // close_notify, then a half-close: the tunnel's input stays open
    [["-S"], "eof", "got "], // close_notify, then the connection is broken
    [["-s"], "UnexpectedEof", "got after"], // a half-close without close_notify
  ];
  for (const [opt, end, got] of cases) {
    const srv = await startTool(
      "tcpserver",
      ["-1", "-RH", "-l0", "127.0.0.1", "0", "ucspitlsd", ...opt, PYTHON!, server, "y"],
      env,
    );
    try {
      const tls = await denoStarttls(srv.port, ca);
      await tls.write(new TextEncoder().encode("HALF\r\n"));
      const r = await readToEnd(tls);
      assert.equal(r.text, "250 half\r\n", `${opt}`);
      assert.equal(r.end, end, `${opt}: the end`);
      await tls.write(new TextEncoder().encode("after\r\n")).catch(() => {});
      assert.equal(await srv.waitLine(/^got /), got, `${opt}`);
      try {
        tls.close();
      } catch { /* closed */ }
    } finally {
      await srv.stop();
    }
  }
});

Deno.test({
  name: why("ucspitlsd -k: the certificate by the name the client asks for (SNI)"),
  ignore: NEEDS,
}, async () => {
  const { pki, server } = await setup();
  const ca = await Deno.readTextFile(pki.caCert);
  const sni = {
    "CERTFILE:second.test": pki.otherCert,
    "KEYFILE:second.test": pki.otherKey,
    "CERTFILE:*.wild.test": pki.otherCert,
    "KEYFILE:*.wild.test": pki.otherKey,
    UCSPI_CHAIN: "force",
  };
  const subject = async (port: number, servername: string) => {
    const c = new Conversation(port);
    await c.until("220 ready\r\n");
    c.sock.write("EHLO test\r\n");
    await c.until("250 STARTTLS\r\n");
    c.sock.write("STARTTLS\r\n");
    await c.until("220 go\r\n");
    const t = tls.connect({ socket: c.release(), ca, servername, rejectUnauthorized: false });
    try {
      await new Promise<void>((resolve, reject) => {
        t.once("secureConnect", resolve);
        t.once("error", reject);
        t.once("close", () => reject(new Error("closed")));
      });
      return t.getPeerCertificate().subject.CN;
    } catch (e) {
      return `failed: ${(e as Error).message}`;
    } finally {
      t.destroy();
    }
  };
  const one = await startTool(
    "tcpserver",
    ["-1", "-RH", "-l0", "127.0.0.1", "0", "ucspitlsd", "-k", "1", PYTHON!, server, "y"],
    { CERTFILE: pki.serverCert, KEYFILE: pki.serverKey, ...sni },
  );
  try {
    assert.equal(await subject(one.port, "second.test"), "second.test");
    assert.equal(await subject(one.port, "SECOND.test"), "second.test", "names have no case");
    assert.equal(await subject(one.port, "x.wild.test"), "second.test", "a wildcard name");
    assert.equal(await subject(one.port, "x.y.wild.test"), "localhost", "one level only");
    assert.equal(await subject(one.port, "localhost"), "localhost", "the default certificate");
    const s = await starttls(one.port, ca);
    s.send("OSENV CERTFILE:second.test\r\nQUIT\r\n");
    assert.equal(await s.lines(), "250 CERTFILE:second.test=unset\r\n221 bye\r\n", "-z");
    s.tlsSock.destroy();
  } finally {
    await one.stop();
  }
  // -k 2: only the named certificates; $CERTFILE is not even read
  const two = await startTool(
    "tcpserver",
    ["-1", "-RH", "-l0", "127.0.0.1", "0", "ucspitlsd", "-k", "2", PYTHON!, server, "y"],
    { CERTFILE: "/nonexistent", ...sni },
  );
  try {
    assert.equal(await subject(two.port, "second.test"), "second.test");
    assert.match(await subject(two.port, "localhost"), /^failed: /);
    await two.waitLine(/^ucspitlsd: warning: unable to accept TLS: no certificate for localhost$/);
  } finally {
    await two.stop();
  }
  // -K bounds the wait for the ClientHello too
  const slow = await startTool(
    "tcpserver",
    ["-1", "-RH", "-l0", "127.0.0.1", "0", "ucspitlsd", "-k1", "-K300", PYTHON!, server, "y"],
    { CERTFILE: pki.serverCert, KEYFILE: pki.serverKey, ...sni },
  );
  try {
    const c = new Conversation(slow.port);
    await c.until("220 ready\r\n");
    c.sock.write("STARTTLS\r\n");
    await c.until("220 go\r\n");
    c.sock.write(new Uint8Array([22, 3, 1, 0, 200, 1])); // a ClientHello's start, no more
    await slow.waitLine(/^ucspitlsd: warning: unable to accept TLS: timed out$/);
    c.sock.destroy();
  } finally {
    await slow.stop();
  }
  // without -k the named ones are not looked at
  const none = await startTool(
    "tcpserver",
    ["-1", "-RH", "-l0", "127.0.0.1", "0", "ucspitlsd", PYTHON!, server, "y"],
    { CERTFILE: pki.serverCert, KEYFILE: pki.serverKey, ...sni },
  );
  try {
    assert.equal(await subject(none.port, "second.test"), "localhost");
  } finally {
    await none.stop();
  }
});

Deno.test({
  name: why("ucspitlsd -y with $CADIR: client certificates verified against a CA directory"),
  ignore: NEEDS,
}, async () => {
  const { pki, server } = await setup();
  const ca = await Deno.readTextFile(pki.caCert);
  const dir = await Deno.makeTempDir();
  try {
    // one anchor as DER, a file that is no certificate beside it
    const der = new X509Certificate(ca).raw;
    await Deno.writeFile(`${dir}/root.der`, new Uint8Array(der));
    await Deno.writeTextFile(`${dir}/README`, "not a certificate\n");
    const srv = await startTool(
      "tcpserver",
      ["-1", "-RH", "-l0", "127.0.0.1", "0", "ucspitlsd", "-y", PYTHON!, server, "Y"],
      { CERTFILE: pki.serverCert, KEYFILE: pki.serverKey, CADIR: dir, UCSPI_CHAIN: "force" },
    );
    try {
      const talk = async (cert: string, key: string) => {
        const c = new Conversation(srv.port);
        await c.until("220 ready\r\n");
        c.sock.write("EHLO test\r\n");
        await c.until("250 STARTTLS\r\n");
        c.sock.write("STARTTLS\r\n");
        await c.until("220 go\r\n");
        const t = tls.connect({
          socket: c.release(),
          ca,
          servername: "localhost",
          cert: await Deno.readTextFile(cert),
          key: await Deno.readTextFile(key),
        });
        let text = "";
        t.on("data", (d: Uint8Array) => (text += new TextDecoder().decode(d)));
        t.on("error", () => {});
        t.once("secureConnect", () => t.write("ENV SSL_CLIENT_VERIFY\r\nQUIT\r\n"));
        await new Promise((r) => t.once("close", r));
        return text;
      };
      assert.equal(
        await talk(pki.clientCert, pki.clientKey),
        "250 SSL_CLIENT_VERIFY=SUCCESS\r\n221 bye\r\n",
        srv.lines.join("\n"),
      );
      assert.equal(await talk(pki.strangerCert, pki.strangerKey), "", "not from a CA of $CADIR");
      await srv.waitLine(/^ucspitlsd: warning: missing credentials \(CA\) or unable to validate/);
    } finally {
      await srv.stop();
    }
    const empty = await Deno.makeTempDir();
    const r = await ours("ucspitlsd", ["-Y", "true"], {
      env: { CERTFILE: pki.serverCert, KEYFILE: pki.serverKey, CADIR: empty },
    });
    await Deno.remove(empty);
    assert.equal(r.code, 111);
    assert.equal(r.err, "ucspitlsd: fatal: unable to load CA list\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: why("ucspitlsd as a process started as root: the TLS side takes $TLS_UID/$TLS_GID"),
  ignore: NEEDS || Deno.uid() !== 0,
}, async () => {
  const { pki, server } = await setup();
  const ca = await Deno.readTextFile(pki.caCert);
  // the key is read before the switch: it may be root's alone
  await Deno.chmod(pki.serverKey, 0o600);
  const srv = await startTool(
    "tcpserver",
    ["-1", "-RH", "-l0", "127.0.0.1", "0", ...oursArgv("ucspitlsd", []), PYTHON!, server, "y"],
    { CERTFILE: pki.serverCert, KEYFILE: pki.serverKey, TLS_UID: "65534", TLS_GID: "65534" },
  );
  try {
    const t = await denoStarttls(srv.port, ca);
    await t.write(new TextEncoder().encode("IDS\r\nOSENV TLS_UID\r\nQUIT\r\n"));
    assert.equal(
      (await readToEnd(t)).text,
      "250 me=0 parent=65534:65534\r\n250 TLS_UID=unset\r\n221 bye\r\n",
    );
    t.close();
  } finally {
    await srv.stop();
  }
});

/** A STARTTLS server written with node:tls: 220, EHLO, STARTTLS, then a TLS echo of "250 " lines. */
async function nodeStarttlsServer(pki: Pki) {
  const key = await Deno.readTextFile(pki.serverKey);
  const cert = await Deno.readTextFile(pki.serverCert);
  const srv = net.createServer((sock) => {
    let buf = "";
    sock.write("220 node\r\n");
    const onData = (d: Uint8Array) => {
      buf += new TextDecoder().decode(d);
      while (buf.includes("\r\n")) {
        const i = buf.indexOf("\r\n");
        const l = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (l.startsWith("EHLO")) sock.write("250-node\r\n250 STARTTLS\r\n");
        else if (l === "STARTTLS") {
          sock.off("data", onData);
          sock.write("220 go\r\n");
          const t = new tls.TLSSocket(sock, { isServer: true, key, cert });
          let tb = "";
          t.on("data", (d: Uint8Array) => {
            tb += new TextDecoder().decode(d);
            while (tb.includes("\r\n")) {
              const j = tb.indexOf("\r\n");
              const tl = tb.slice(0, j);
              tb = tb.slice(j + 2);
              t.write(tl === "QUIT" ? "221 bye\r\n" : `250 ${tl} ${t.getProtocol()}\r\n`);
              if (tl === "QUIT") t.end();
            }
          });
          t.on("error", () => {});
          return;
        }
      }
    };
    sock.on("data", onData);
    sock.on("error", () => {});
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return { port: (srv.address() as net.AddressInfo).port, close: () => srv.close() };
}

Deno.test({
  name: why("sslclient -y: the program starts TLS after STARTTLS; the variables after Y"),
  ignore: NEEDS,
}, async () => {
  const { pki, client } = await setup();
  const srv = await nodeStarttlsServer(pki);
  try {
    const r = await ours("sslclient", [
      "-y",
      "-a",
      pki.caCert,
      "-RH",
      "127.0.0.1",
      String(srv.port),
      PYTHON!,
      client,
      "Y",
    ]);
    assert.equal(r.err, "");
    assert.equal(r.code, 0);
    assert.match(
      r.out,
      /^220 node\r\n250-node\r\n250 STARTTLS\r\n220 go\r\n250 ENV SSL_PROTOCOL TLSv1\.[23]\r\n221 bye\r\ndn=\/CN=localhost\n$/,
    );
    // a server certificate that does not verify: sslclient's fatal line, 111
    const bad = await ours("sslclient", [
      "-y",
      "-a",
      pki.strangerCert,
      "-RH",
      "127.0.0.1",
      String(srv.port),
      PYTHON!,
      client,
      "Y",
    ]);
    assert.equal(bad.code, 111);
    assert.match(
      bad.err,
      /^sslclient: fatal: missing credentials \(CA\) or unable to validate server certificate\n/,
    );
  } finally {
    srv.close();
  }
});

Deno.test({ name: "UCSPI-TLS tests: PKI cleanup", ignore: NEEDS }, async () => {
  if (fixture) await (await fixture).pki.cleanup();
});
