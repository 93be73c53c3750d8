/**
 * smtpd-starttls-proxy end to end: our tcpserver (both socket paths) runs
 * the proxy in-process in front of an SMTP server that knows no TLS —
 * Debian's exim4 (`exim4 -bs`, TLS off) or, where the test must see exactly
 * which commands arrived, a small recording SMTP sink written here — and
 * real clients talk to it: swaks --tls, openssl s_client -starttls smtp, and
 * a client of our own that upgrades with Deno.startTls. Also the proxy as its
 * own process under DJB's C tcpserver.
 */
import assert from "node:assert/strict";
import { cTool, DENO, MOD, oursArgv, tempDir } from "../support/helpers.ts";
import { makePki, type Pki, sClient } from "../support/ssl_fixtures.ts";
import { spawnServer, type Srv } from "../support/tcpserver_util.ts";
import { ReplyTracker } from "../../lib/stages/starttls/smtp.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function which(cmd: string): string | null {
  for (const dir of ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]) {
    try {
      if (Deno.statSync(`${dir}/${cmd}`).isFile) return `${dir}/${cmd}`;
    } catch { /* not here */ }
  }
  return null;
}
const EXIM = which("exim4");
const SWAKS = which("swaks");
const IS_ROOT = Deno.uid() === 0;
/** exim4 -C with a private config needs root here (its spool is chowned to Debian-exim). */
const NO_EXIM = EXIM === null || !IS_ROOT;
const PATHS = [{ name: "native", native: "1" }, { name: "pure", native: "0" }];

/** A recording SMTP sink: every line it reads is appended to $SINK_RECORD. */
const SINK = `
const rec = Deno.env.get("SINK_RECORD");
const enc = new TextEncoder();
const out = (s) => Deno.stdout.writeSync(enc.encode(s));
out("220 sink.test ESMTP\\r\\n");
let buf = new Uint8Array(0);
let inData = false, dataBytes = 0;
const b = new Uint8Array(65536);
for (;;) {
  let i;
  while ((i = buf.indexOf(10)) < 0) {
    const n = Deno.stdin.readSync(b);
    if (n === null) Deno.exit(0);
    const m = new Uint8Array(buf.length + n); m.set(buf); m.set(b.subarray(0, n), buf.length); buf = m;
  }
  const line = buf.subarray(0, i + 1); buf = buf.slice(i + 1);
  const text = new TextDecoder().decode(line);
  if (inData) {
    if (text === ".\\r\\n") { inData = false; Deno.writeTextFileSync(rec, "[data " + dataBytes + "]\\n", { append: true }); out("250 ok " + dataBytes + "\\r\\n"); }
    else dataBytes += line.length;
    continue;
  }
  Deno.writeTextFileSync(rec, text.trimEnd() + "\\n", { append: true });
  const verb = text.slice(0, 4).toUpperCase();
  if (verb === "EHLO") out("250-sink.test\\r\\n250-PIPELINING\\r\\n250 8BITMIME\\r\\n");
  else if (verb === "DATA") { inData = true; dataBytes = 0; out("354 go\\r\\n"); }
  else if (verb === "QUIT") { out("221 bye\\r\\n"); Deno.exit(0); }
  else if (["HELO", "MAIL", "RCPT", "RSET", "NOOP"].includes(verb)) out("250 ok\\r\\n");
  else out("502 unimplemented\\r\\n");
}
`;

const EXIM_CONF = (dir: string) => `
spool_directory = ${dir}/spool
log_file_path = ${dir}/%slog
primary_hostname = sink.test
smtp_banner = sink.test ESMTP
acl_smtp_rcpt = acl_rcpt
acl_smtp_data = acl_data
message_size_limit = 100M
tls_advertise_hosts =
queue_only = true
begin acl
acl_rcpt:
  accept
acl_data:
  accept
begin routers
begin transports
`;

interface World {
  dir: string;
  pki: Pki;
  sink: string[];
  exim: string[];
  record: string;
  cleanup(): Promise<void>;
}

async function world(): Promise<World> {
  const { path: dir, cleanup } = await tempDir();
  const pki = await makePki();
  await Deno.writeTextFile(`${dir}/sink.js`, SINK);
  await Deno.writeTextFile(`${dir}/exim.conf`, EXIM_CONF(dir));
  // exim writes its spool and log as Debian-exim
  await Deno.chmod(dir, 0o777);
  return {
    dir,
    pki,
    sink: [DENO, "run", "-A", `${dir}/sink.js`],
    exim: [EXIM ?? "exim4", "-C", `${dir}/exim.conf`, "-bs", "-odq"],
    record: `${dir}/record`,
    cleanup: async () => {
      await pki.cleanup();
      await cleanup();
    },
  };
}

/** Our tcpserver running `[smtpd-starttls-proxy opts] prog` on 127.0.0.1. */
function server(
  w: World,
  native: string,
  prog: string[],
  opts: { proxy?: string[]; tcpserver?: string[]; env?: Record<string, string> } = {},
): Promise<Srv> {
  const chain = opts.proxy ? ["smtpd-starttls-proxy", ...opts.proxy, ...prog] : prog;
  return spawnServer(
    oursArgv("tcpserver", [...(opts.tcpserver ?? []), "-v", "-1", "127.0.0.1", "0", ...chain]),
    {
      name: "tcpserver",
      env: {
        UCSPI_NATIVE: native,
        UCSPI_CHAIN: "force",
        CERTFILE: w.pki.serverCert,
        KEYFILE: w.pki.serverKey,
        SINK_RECORD: w.record,
        ...opts.env,
      },
    },
  );
}

/** A line-wise SMTP client over a Deno connection that can turn to TLS. */
class Client {
  buf = new Uint8Array(0);
  /** Every byte received, in order (before and after TLS). */
  received: number[] = [];
  private constructor(public conn: Deno.Conn | Deno.TlsConn) {}

  static async connect(port: number): Promise<Client> {
    return new Client(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  async send(s: string | Uint8Array): Promise<void> {
    const data = typeof s === "string" ? enc.encode(s) : s;
    for (let off = 0; off < data.length;) off += await this.conn.write(data.subarray(off));
  }

  async readLine(): Promise<string | null> {
    for (;;) {
      const i = this.buf.indexOf(10);
      if (i >= 0) {
        const line = this.buf.subarray(0, i + 1);
        this.buf = this.buf.slice(i + 1);
        return dec.decode(line);
      }
      const b = new Uint8Array(65536);
      const n = await this.conn.read(b).catch(() => null);
      if (n === null) return null;
      this.received.push(...b.subarray(0, n));
      const m = new Uint8Array(this.buf.length + n);
      m.set(this.buf);
      m.set(b.subarray(0, n), this.buf.length);
      this.buf = m;
    }
  }

  /** One whole reply (its lines joined), or "" at EOF. */
  async reply(): Promise<string> {
    const tr = new ReplyTracker();
    let text = "";
    for (;;) {
      const line = await this.readLine();
      if (line === null) return text;
      text += line;
      const r = tr.line(enc.encode(line));
      if (!r || r.ended) return text;
    }
  }

  async cmd(s: string): Promise<string> {
    await this.send(s);
    return await this.reply();
  }

  async startTls(ca: string): Promise<void> {
    assert.equal(this.buf.length, 0, "nothing unread before the handshake");
    this.conn = await Deno.startTls(this.conn as Deno.TcpConn, {
      hostname: "localhost",
      caCerts: [await Deno.readTextFile(ca)],
    });
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

async function record(w: World): Promise<string[]> {
  try {
    return (await Deno.readTextFile(w.record)).trimEnd().split("\n");
  } catch {
    return [];
  }
}

const TLS_LINE = /^smtpd-starttls-proxy: tls \d+ TLSv1\.[23]:\S+$/;

for (const path of PATHS) {
  Deno.test({
    name: `starttls-proxy (${path.name}): swaks --tls through the proxy to exim4 -bs`,
    ignore: NO_EXIM || SWAKS === null,
  }, async () => {
    const w = await world();
    const srv = await server(w, path.native, w.exim, { proxy: [] });
    try {
      const r = await new Deno.Command(SWAKS!, {
        args: [
          "--server",
          `127.0.0.1:${srv.port}`,
          "--tls",
          "--tls-verify",
          "--tls-ca-path",
          w.pki.caCert,
          "--tls-sni",
          "localhost",
          "--from",
          "a@b.test",
          "--to",
          "c@d.test",
          "--ehlo",
          "client.test",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const out = dec.decode(r.stdout) + dec.decode(r.stderr);
      assert.equal(r.code, 0, out);
      assert.match(out, /<- {2}250-STARTTLS/, "offered before TLS");
      assert.match(out, /<- {2}220 Ready to start TLS/);
      assert.match(out, /=== TLS started with cipher TLSv1\.[23]/);
      assert.match(out, /<~ {2}250 HELP/, "exim answered the EHLO under TLS");
      assert.doesNotMatch(out, /<~ {2}250-STARTTLS/, "not offered again under TLS");
      assert.match(out, /<~ {2}250 OK id=/, "the message was taken");
      const line = await srv.waitLine(/smtpd-starttls-proxy: tls/);
      assert.match(line, TLS_LINE);
      await srv.waitLine(/ end 1 status 0$/);
    } finally {
      await srv.stop();
      await w.cleanup();
    }
  });
}

Deno.test({
  name: "starttls-proxy: openssl s_client -starttls smtp through the proxy to exim4 -bs",
  ignore: NO_EXIM,
}, async () => {
  const w = await world();
  const srv = await server(w, "1", w.exim, { proxy: [] });
  try {
    const r = await sClient(srv.port, "EHLO client.test\r\nNOOP\r\nQUIT\r\n", [
      "-starttls",
      "smtp",
      "-CAfile",
      w.pki.caCert,
      "-verify_return_error",
    ]);
    assert.equal(r.code, 0, r.err);
    // under TLS: exim's own EHLO answer, without STARTTLS, then NOOP and QUIT
    assert.match(r.out, /250-sink\.test Hello/);
    assert.match(r.out, /250 HELP\r?\n250 OK\r?\n221 sink\.test closing connection/);
    assert.doesNotMatch(r.out, /STARTTLS/);
    assert.match(await srv.waitLine(/smtpd-starttls-proxy: tls/), TLS_LINE);
  } finally {
    await srv.stop();
    await w.cleanup();
  }
});

/** n bytes of message body: CRLF lines of printable ASCII, none starting with a dot. */
function body(n: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = 12345;
  for (let i = 0; i < n; i++) {
    const col = i % 78;
    if (col === 76) out[i] = 13;
    else if (col === 77) out[i] = 10;
    else {
      x = (x * 1103515245 + 12345) >>> 0;
      out[i] = 65 + ((x >>> 16) % 26);
    }
  }
  out[n - 2] = 13;
  out[n - 1] = 10;
  return out;
}

async function sha(data: Uint8Array<ArrayBuffer>): Promise<string> {
  return Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", data)))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

for (const path of PATHS) {
  Deno.test({
    name: `starttls-proxy (${path.name}): a 50 MB message under STARTTLS reaches exim whole`,
    ignore: NO_EXIM,
  }, async () => {
    const w = await world();
    const srv = await server(w, path.native, w.exim, { proxy: [] });
    const c = await Client.connect(srv.port);
    try {
      assert.match(await c.reply(), /^220 sink\.test ESMTP/);
      assert.match(await c.cmd("EHLO client.test\r\n"), /250-STARTTLS\r\n250 HELP\r\n$/);
      assert.equal(await c.cmd("STARTTLS\r\n"), "220 Ready to start TLS\r\n");
      await c.startTls(w.pki.caCert);
      assert.doesNotMatch(await c.cmd("EHLO client.test\r\n"), /STARTTLS/);
      assert.match(await c.cmd("MAIL FROM:<a@b.test>\r\n"), /^250 /);
      assert.match(await c.cmd("RCPT TO:<c@d.test>\r\n"), /^250 /);
      assert.match(await c.cmd("DATA\r\n"), /^354 /);
      const msg = body(50 * 1024 * 1024);
      await c.send(msg);
      const done = await c.cmd(".\r\n");
      const id = /^250 OK id=(\S+)\r\n$/.exec(done);
      assert.ok(id, done);
      assert.equal(await c.cmd("QUIT\r\n"), "221 sink.test closing connection\r\n");
      // exim's spool keeps the body with LF line ends, after an "ID-D" line
      const spooled: Uint8Array<ArrayBuffer> = await Deno.readFile(
        `${w.dir}/spool/input/${id[1]}-D`,
      );
      const start = spooled.indexOf(10) + 1;
      let lf = 0;
      const expect = new Uint8Array(msg.length);
      for (const b of msg) if (b !== 13) expect[lf++] = b;
      assert.equal(spooled.length - start, lf, "body size");
      assert.equal(await sha(spooled.subarray(start)), await sha(expect.subarray(0, lf)));
    } finally {
      c.close();
      await srv.stop();
      await w.cleanup();
    }
  });
}

for (const path of PATHS) {
  Deno.test({
    name: `starttls-proxy (${path.name}): commands pipelined after STARTTLS are discarded, not run`,
  }, async () => {
    const w = await world();
    const srv = await server(w, path.native, w.sink, { proxy: [] });
    const c = await Client.connect(srv.port);
    try {
      assert.equal(await c.reply(), "220 sink.test ESMTP\r\n");
      assert.equal(
        await c.cmd("EHLO a.test\r\n"),
        "250-sink.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
      );
      // the injection of CVE-2011-0411: plaintext riding behind STARTTLS
      assert.equal(
        await c.cmd("STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\n"),
        "220 Ready to start TLS\r\n",
      );
      await c.startTls(w.pki.caCert);
      assert.equal(
        await c.cmd("EHLO b.test\r\n"),
        "250-sink.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
      );
      assert.equal(await c.cmd("MAIL FROM:<good@x.test>\r\n"), "250 ok\r\n");
      assert.equal(await c.cmd("QUIT\r\n"), "221 bye\r\n");
      assert.equal(await c.reply(), "", "closed after QUIT");
      await srv.waitLine(/ end 1 status 0$/);
      assert.deepEqual(await record(w), [
        "EHLO a.test",
        "EHLO b.test",
        "MAIL FROM:<good@x.test>",
        "QUIT",
      ]);
      assert.ok(
        srv.lines.includes(
          "smtpd-starttls-proxy: warning: 1 discarded 50 bytes sent after STARTTLS",
        ),
        srv.lines.join("\n"),
      );
    } finally {
      c.close();
      await srv.stop();
      await w.cleanup();
    }
  });
}

/** A plain session, sent one command at a time; every byte the client got. */
async function plainSession(port: number, commands: string[]): Promise<string> {
  const c = await Client.connect(port);
  try {
    await c.reply();
    for (const cmd of commands) await c.cmd(cmd);
    while ((await c.readLine()) !== null) { /* to the end */ }
    return dec.decode(new Uint8Array(c.received));
  } finally {
    c.close();
  }
}

const PLAIN_HELO = [
  "HELO client.test\r\n",
  "NOOP\r\n",
  "MAIL FROM:<a@b.test>\r\n",
  "RCPT TO:<c@d.test>\r\n",
  "RSET\r\n",
  "STARTTLS\r\n",
  "VRFY postmaster\r\n",
  "BOGUS \xe9t\xe9\r\n",
  "QUIT\r\n",
];
const PLAIN_EHLO = [
  "EHLO client.test\r\n",
  "HELP\r\n",
  "MAIL FROM:<a@b.test> BODY=8BITMIME\r\n",
  "RCPT TO:<c@d.test>\r\n",
  "STARTTLS\r\n",
  "QUIT\r\n",
];

Deno.test({
  name: "starttls-proxy: a client that never says STARTTLS gets exim's plain SMTP byte for byte",
  ignore: NO_EXIM,
}, async () => {
  const w = await world();
  // the pure path both times: exim -bs on a socket (the native path's
  // direct spawn) takes the peer for a remote host, on pipes for a local one
  const direct = await server(w, "0", w.exim);
  const proxied = await server(w, "0", w.exim, { proxy: [] });
  try {
    const a = await plainSession(direct.port, PLAIN_HELO);
    const b = await plainSession(proxied.port, PLAIN_HELO);
    assert.match(a, /221 sink\.test closing connection/);
    assert.equal(b, a, "HELO session");
    const c = await plainSession(direct.port, PLAIN_EHLO);
    const d = await plainSession(proxied.port, PLAIN_EHLO);
    assert.match(c, /250 HELP\r\n/);
    // only the EHLO answer differs: STARTTLS offered before its last line
    assert.equal(d, c.replace("250 HELP\r\n", "250-STARTTLS\r\n250 HELP\r\n"), "EHLO session");
    assert.deepEqual(proxied.lines.filter((l) => /smtpd-starttls-proxy/.test(l)), []);
  } finally {
    await direct.stop();
    await proxied.stop();
    await w.cleanup();
  }
});

Deno.test("starttls-proxy: a pipelined plain session reaches the program unchanged", async () => {
  const w = await world();
  const srv = await server(w, "0", w.sink, { proxy: [] });
  const c = await Client.connect(srv.port);
  try {
    await c.reply();
    await c.cmd("EHLO a.test\r\n");
    // all at once, as a PIPELINING client sends them; bytes past the verb are not text
    await c.send(
      enc.encode("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSTARTTLS\r\nx\r\n.\r\nQUIT\r\n"),
    );
    while ((await c.readLine()) !== null) { /* to the end */ }
    assert.equal(
      dec.decode(new Uint8Array(c.received)).split("\r\n").slice(-6).join("|"),
      "250 ok|250 ok|354 go|250 ok 13|221 bye|",
      "STARTTLS inside the message is data",
    );
    assert.deepEqual(await record(w), [
      "EHLO a.test",
      "MAIL FROM:<a@b>",
      "RCPT TO:<c@d>",
      "DATA",
      "[data 13]",
      "QUIT",
    ]);
  } finally {
    c.close();
    await srv.stop();
    await w.cleanup();
  }
});

async function rules(w: World, text: string): Promise<string> {
  const cdb = `${w.dir}/rules.cdb`;
  const r = await new Deno.Command(DENO, {
    args: ["run", "-A", MOD, "tcprules", cdb, `${cdb}.tmp`],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const wr = r.stdin.getWriter();
  await wr.write(enc.encode(text));
  await wr.close();
  const out = await r.output();
  assert.equal(out.code, 0, dec.decode(out.stderr));
  return cdb;
}

for (const path of PATHS) {
  Deno.test(`starttls-proxy (${path.name}): REQUIRETLS from a rule refuses MAIL before STARTTLS`, async () => {
    const w = await world();
    const cdb = await rules(w, '127.0.0.1:allow,REQUIRETLS=""\n');
    const srv = await server(w, path.native, w.sink, { proxy: [], tcpserver: ["-x", cdb] });
    const c = await Client.connect(srv.port);
    try {
      await c.reply();
      assert.match(await c.cmd("HELO a.test\r\n"), /^250 /, "HELO still goes to the program");
      assert.equal(
        await c.cmd("MAIL FROM:<a@b>\r\n"),
        "530 Must issue a STARTTLS command first\r\n",
      );
      assert.equal(
        await c.cmd("AUTH PLAIN AGFAYg==\r\n"),
        "530 Must issue a STARTTLS command first\r\n",
      );
      assert.equal(await c.cmd("RCPT TO:<c@d>\r\n"), "530 Must issue a STARTTLS command first\r\n");
      assert.equal(await c.cmd("NOOP\r\n"), "250 ok\r\n");
      assert.equal(
        await c.cmd("STARTTLS x\r\n"),
        "501 5.5.4 Syntax error (no parameters allowed)\r\n",
      );
      assert.equal(await c.cmd("STARTTLS\r\n"), "220 Ready to start TLS\r\n");
      await c.startTls(w.pki.caCert);
      await c.cmd("EHLO b.test\r\n");
      assert.equal(await c.cmd("MAIL FROM:<a@b>\r\n"), "250 ok\r\n", "under TLS mail is taken");
      await c.cmd("QUIT\r\n");
      await srv.waitLine(/ end 1 status 0$/);
      assert.deepEqual(await record(w), [
        "HELO a.test",
        "NOOP",
        "EHLO b.test",
        "MAIL FROM:<a@b>",
        "QUIT",
      ]);
    } finally {
      c.close();
      await srv.stop();
      await w.cleanup();
    }
  });
}

Deno.test("starttls-proxy: -r requires TLS; a rule's REQUIRETLS=0 lifts it for that client", async () => {
  const w = await world();
  const strict = await server(w, "1", w.sink, { proxy: ["-r"] });
  const cdb = await rules(w, '127.0.0.1:allow,REQUIRETLS="0"\n');
  const relaxed = await server(w, "1", w.sink, { proxy: ["-r"], tcpserver: ["-x", cdb] });
  try {
    for (const [srv, want] of [[strict, /^530 /], [relaxed, /^250 ok/]] as const) {
      const c = await Client.connect(srv.port);
      try {
        await c.reply();
        await c.cmd("EHLO a.test\r\n");
        assert.match(await c.cmd("MAIL FROM:<a@b>\r\n"), want);
        await c.cmd("QUIT\r\n");
      } finally {
        c.close();
      }
    }
  } finally {
    await strict.stop();
    await relaxed.stop();
    await w.cleanup();
  }
});

Deno.test("starttls-proxy: a single-line EHLO answer gets STARTTLS as RFC 5321 lays it out", () => {
  const tr = new ReplyTracker();
  tr.expectEhlo();
  const r = tr.line(enc.encode("250 host.test\r\n"));
  assert.deepEqual(r?.out.map((b) => dec.decode(b)), ["250-host.test\r\n", "250 STARTTLS\r\n"]);
  tr.expectEhlo();
  assert.equal(tr.line(enc.encode("250-host\r\n"))?.out.length, 1);
  const native = tr.line(enc.encode("250 starttls\r\n"));
  assert.deepEqual(native?.out.map((b) => dec.decode(b)), ["250 starttls\r\n"], "named already");
  tr.expectEhlo();
  assert.deepEqual(tr.line(enc.encode("550 no\r\n"))?.out.length, 1, "a refusal is left alone");
});

Deno.test("starttls-proxy: a hostile client's endless line is bounded (plain relay after 1 KiB)", async () => {
  const w = await world();
  const srv = await server(w, "0", w.sink, { proxy: [] });
  const c = await Client.connect(srv.port);
  try {
    await c.reply();
    // 1 MiB without a line end: the proxy gives up parsing and the sink gets it all
    await c.send(new Uint8Array(1 << 20).fill(65));
    await c.send("\r\nQUIT\r\n");
    assert.equal(await c.reply(), "502 unimplemented\r\n");
    assert.equal(await c.reply(), "221 bye\r\n");
  } finally {
    c.close();
    await srv.stop();
    await w.cleanup();
  }
});

Deno.test({
  name: "starttls-proxy: a failed handshake is logged, the program sees EOF",
}, async () => {
  const w = await world();
  const srv = await server(w, "1", w.sink, { proxy: [] });
  const c = await Client.connect(srv.port);
  try {
    await c.reply();
    assert.equal(await c.cmd("STARTTLS\r\n"), "220 Ready to start TLS\r\n");
    await c.send("this is no TLS ClientHello\r\n");
    assert.equal(await c.reply(), "", "closed");
    assert.match(
      await srv.waitLine(/smtpd-starttls-proxy: tls/),
      /^smtpd-starttls-proxy: tls 1 failed: /,
    );
    await srv.waitLine(/ end 1 status 0$/);
    assert.deepEqual(await record(w), []);
  } finally {
    c.close();
    await srv.stop();
    await w.cleanup();
  }
});

Deno.test({
  name: "starttls-proxy: as its own process under DJB's C tcpserver",
  ignore: cTool("tcpserver") === null,
}, async () => {
  const w = await world();
  const srv = await spawnServer(
    [
      cTool("tcpserver")!,
      "-v",
      "-1",
      "127.0.0.1",
      "0",
      DENO,
      "run",
      "-A",
      MOD,
      "smtpd-starttls-proxy",
      ...w.sink,
    ],
    {
      name: "tcpserver",
      env: { CERTFILE: w.pki.serverCert, KEYFILE: w.pki.serverKey, SINK_RECORD: w.record },
    },
  );
  const c = await Client.connect(srv.port);
  try {
    assert.equal(await c.reply(), "220 sink.test ESMTP\r\n");
    assert.match(await c.cmd("EHLO a.test\r\n"), /250-STARTTLS\r\n250 8BITMIME\r\n$/);
    assert.equal(await c.cmd("STARTTLS\r\n"), "220 Ready to start TLS\r\n");
    await c.startTls(w.pki.caCert);
    assert.equal(await c.cmd("QUIT\r\n"), "221 bye\r\n");
    const pid = /pid (\d+) from/.exec(await srv.waitLine(/ pid \d+ from /))![1];
    assert.equal(
      (await srv.waitLine(/smtpd-starttls-proxy: tls/)).replace(/:\S+$/, ""),
      `smtpd-starttls-proxy: tls ${pid} TLSv1.3`,
    );
  } finally {
    c.close();
    await srv.stop();
    await w.cleanup();
  }
});
