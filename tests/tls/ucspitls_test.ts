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
 * was left on descriptor 0 after STARTTLS, up to its end), QUIT; anything
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
