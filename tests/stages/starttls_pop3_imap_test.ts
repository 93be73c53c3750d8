/**
 * pop3d-starttls-proxy and imapd-starttls-proxy end to end: our tcpserver
 * runs the proxy in-process in front of a small POP3 or IMAP server written
 * here (it knows no TLS and records every command it gets), and clients
 * talk to it: openssl s_client -starttls pop3 / imap, and a line client of
 * our own that upgrades with Deno.startTls. Also Debian's GNU mailutils
 * pop3d and imap4d (--inetd, on their stdin), when installed.
 */
import assert from "node:assert/strict";
import { cTool, DENO, MOD, oursArgv, tempDir } from "../support/helpers.ts";
import { makePki, type Pki, sClient } from "../support/ssl_fixtures.ts";
import { spawnServer, type Srv } from "../support/tcpserver_util.ts";

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
/** GNU mailutils' servers (Debian's mailutils-pop3d, mailutils-imap4d): --inetd runs on stdin. */
const MU_POP3D = which("pop3d");
const MU_IMAP4D = which("imap4d");

/** The part both small servers share: buffered byte input, output, the record. */
const SERVER_COMMON = `
const rec = Deno.env.get("SINK_RECORD");
const enc = new TextEncoder();
const out = (s) => Deno.stdout.writeSync(enc.encode(s));
const note = (s) => Deno.writeTextFileSync(rec, s + "\\n", { append: true });
let buf = new Uint8Array(0);
const b = new Uint8Array(65536);
function fill() {
  const n = Deno.stdin.readSync(b);
  if (n === null) Deno.exit(0);
  const m = new Uint8Array(buf.length + n); m.set(buf); m.set(b.subarray(0, n), buf.length); buf = m;
}
function line() {
  let i;
  while ((i = buf.indexOf(10)) < 0) fill();
  const l = buf.subarray(0, i + 1); buf = buf.slice(i + 1);
  return new TextDecoder().decode(l).replace(/\\r?\\n$/, "");
}
function bytes(n) {
  while (buf.length < n) fill();
  const l = buf.subarray(0, n); buf = buf.slice(n);
  return l;
}
`;

/** A POP3 server in the AUTHORIZATION and TRANSACTION states, no TLS. */
const POP3 = SERVER_COMMON + `
out("+OK sink.test POP3 ready\\r\\n");
for (;;) {
  const text = line();
  note(text);
  const verb = text.split(" ")[0].toUpperCase();
  if (verb === "CAPA") out("+OK Capability list follows\\r\\nUSER\\r\\nUIDL\\r\\n.\\r\\n");
  else if (verb === "USER") out("+OK send PASS\\r\\n");
  else if (verb === "PASS") out("+OK logged in\\r\\n");
  else if (verb === "STAT") out("+OK 0 0\\r\\n");
  else if (verb === "QUIT") { out("+OK bye\\r\\n"); Deno.exit(0); }
  else out("-ERR unknown command\\r\\n");
}
`;

/** An IMAP server (literals, synchronizing and LITERAL+, included), no TLS. */
const IMAP = SERVER_COMMON + `
out("* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] sink.test ready\\r\\n");
for (;;) {
  let text = line();
  // a command's literals: "{n}" waits for our "+", "{n+}" does not
  for (let m; (m = /\\{(\\d+)(\\+?)\\}$/.exec(text));) {
    if (!m[2]) out("+ go ahead\\r\\n");
    bytes(Number(m[1]));
    text = text.slice(0, m.index) + "[literal " + m[1] + "]" + line();
  }
  note(text);
  const [tag, name] = text.split(" ");
  const verb = (name ?? "").toUpperCase();
  if (verb === "CAPABILITY") out("* CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN\\r\\n" + tag + " OK done\\r\\n");
  else if (verb === "NOOP") out(tag + " OK noop\\r\\n");
  else if (verb === "LOGIN") out(tag + " OK [CAPABILITY IMAP4rev1] logged in\\r\\n");
  else if (verb === "SELECT") out("* 0 EXISTS\\r\\n" + tag + " OK [READ-WRITE] selected\\r\\n");
  else if (verb === "LOGOUT") { out("* BYE sink.test\\r\\n" + tag + " OK bye\\r\\n"); Deno.exit(0); }
  else out(tag + " BAD unknown command\\r\\n");
}
`;

interface World {
  dir: string;
  pki: Pki;
  pop3: string[];
  imap: string[];
  record: string;
  cleanup(): Promise<void>;
}

async function world(): Promise<World> {
  const { path: dir, cleanup } = await tempDir();
  const pki = await makePki();
  await Deno.writeTextFile(`${dir}/pop3.js`, POP3);
  await Deno.writeTextFile(`${dir}/imap.js`, IMAP);
  return {
    dir,
    pki,
    pop3: [DENO, "run", "-A", `${dir}/pop3.js`],
    imap: [DENO, "run", "-A", `${dir}/imap.js`],
    record: `${dir}/record`,
    cleanup: async () => {
      await pki.cleanup();
      await cleanup();
    },
  };
}

/** Our tcpserver running `[proxy opts] prog` on 127.0.0.1. */
function server(
  w: World,
  native: string,
  prog: string[],
  opts: { proxy?: string[]; tcpserver?: string[]; env?: Record<string, string> } = {},
): Promise<Srv> {
  return spawnServer(
    oursArgv("tcpserver", [...(opts.tcpserver ?? []), "-v", "-1", "127.0.0.1", "0", ...prog]),
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

const pop3Proxy = (w: World, opts: string[] = []) => ["pop3d-starttls-proxy", ...opts, ...w.pop3];
const imapProxy = (w: World, opts: string[] = []) => ["imapd-starttls-proxy", ...opts, ...w.imap];

/** A line client over a Deno connection that can turn to TLS. */
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

  /** The next line (with its CRLF), or null at EOF. */
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

  /** Lines up to and including the first that `last` matches (or EOF), joined. */
  async until(last: RegExp): Promise<string> {
    let text = "";
    for (;;) {
      const line = await this.readLine();
      if (line === null) return text;
      text += line;
      if (last.test(line)) return text;
    }
  }

  /** A POP3 answer: one line, or up to "." after a +OK to CAPA. */
  async pop3(cmd: string, multi = false): Promise<string> {
    await this.send(cmd);
    const first = (await this.readLine()) ?? "";
    return multi && first.startsWith("+OK") ? first + (await this.until(/^\.\r\n$/)) : first;
  }

  /** An IMAP command's response: lines up to its tagged completion. */
  async imap(cmd: string): Promise<string> {
    await this.send(cmd);
    const tag = cmd.slice(0, cmd.indexOf(" "));
    return await this.until(new RegExp(`^${tag} `));
  }

  async startTls(ca: string): Promise<void> {
    assert.equal(this.buf.length, 0, "nothing unread before the handshake");
    this.conn = await Deno.startTls(this.conn as Deno.TcpConn, {
      hostname: "localhost",
      caCerts: [await Deno.readTextFile(ca)],
    });
  }

  /** Reads to the end; every byte received over the whole session, as text. */
  async drain(): Promise<string> {
    while ((await this.readLine()) !== null) { /* to the end */ }
    return dec.decode(new Uint8Array(this.received));
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

async function rules(w: World, text: string): Promise<string> {
  const cdb = `${w.dir}/rules.cdb`;
  const child = new Deno.Command(DENO, {
    args: ["run", "-A", MOD, "tcprules", cdb, `${cdb}.tmp`],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const wr = child.stdin.getWriter();
  await wr.write(enc.encode(text));
  await wr.close();
  const out = await child.output();
  assert.equal(out.code, 0, dec.decode(out.stderr));
  return cdb;
}

const PATHS = [{ name: "native", native: "1" }, { name: "pure", native: "0" }];

// ---- POP3

Deno.test("pop3d-starttls-proxy: openssl s_client -starttls pop3 reaches the server under TLS", async () => {
  const w = await world();
  const srv = await server(w, "1", pop3Proxy(w));
  try {
    const r = await sClient(srv.port, "CAPA\r\nUSER a\r\nPASS b\r\nQUIT\r\n", [
      "-starttls",
      "pop3",
      "-CAfile",
      w.pki.caCert,
      "-verify_return_error",
    ]);
    assert.equal(r.code, 0, r.err);
    // under TLS: the server's own CAPA answer, without STLS
    assert.match(r.out, /\+OK Capability list follows\r?\nUSER\r?\nUIDL\r?\n\.\r?\n/);
    assert.match(r.out, /\+OK send PASS\r?\n\+OK logged in\r?\n\+OK bye/);
    assert.doesNotMatch(r.out, /STLS/);
    assert.match(
      await srv.waitLine(/pop3d-starttls-proxy: tls/),
      /^pop3d-starttls-proxy: tls \d+ TLSv1\.[23]:\S+$/,
    );
    await srv.waitLine(/ end 1 status 0$/);
    assert.deepEqual(await record(w), ["CAPA", "USER a", "PASS b", "QUIT"]);
  } finally {
    await srv.stop();
    await w.cleanup();
  }
});

for (const path of PATHS) {
  Deno.test(`pop3d-starttls-proxy (${path.name}): commands pipelined after STLS are discarded, not run`, async () => {
    const w = await world();
    const srv = await server(w, path.native, pop3Proxy(w));
    const c = await Client.connect(srv.port);
    try {
      assert.equal(await c.readLine(), "+OK sink.test POP3 ready\r\n");
      assert.equal(
        await c.pop3("CAPA\r\n", true),
        "+OK Capability list follows\r\nUSER\r\nUIDL\r\nSTLS\r\n.\r\n",
      );
      assert.equal(
        await c.pop3("STLS\r\nUSER evil\r\nPASS x\r\n"),
        "+OK Begin TLS negotiation\r\n",
      );
      await c.startTls(w.pki.caCert);
      assert.equal(
        await c.pop3("CAPA\r\n", true),
        "+OK Capability list follows\r\nUSER\r\nUIDL\r\n.\r\n",
        "STLS is not offered under TLS",
      );
      assert.equal(await c.pop3("USER good\r\n"), "+OK send PASS\r\n");
      assert.equal(await c.pop3("QUIT\r\n"), "+OK bye\r\n");
      assert.equal(await c.readLine(), null);
      await srv.waitLine(/ end 1 status 0$/);
      assert.deepEqual(await record(w), ["CAPA", "CAPA", "USER good", "QUIT"]);
      assert.ok(
        srv.lines.includes("pop3d-starttls-proxy: warning: 1 discarded 19 bytes sent after STLS"),
        srv.lines.join("\n"),
      );
    } finally {
      c.close();
      await srv.stop();
      await w.cleanup();
    }
  });
}

/** The session's commands, sent one at a time, as a client that never starts TLS. */
async function plainSession(
  port: number,
  commands: string[],
  answer: (c: Client, cmd: string) => Promise<string>,
): Promise<string> {
  const c = await Client.connect(port);
  try {
    await c.readLine();
    for (const cmd of commands) await answer(c, cmd);
    return await c.drain();
  } finally {
    c.close();
  }
}

Deno.test("pop3d-starttls-proxy: a client that never says STLS gets the plain session byte for byte", async () => {
  const w = await world();
  const direct = await server(w, "0", w.pop3);
  const proxied = await server(w, "0", pop3Proxy(w));
  try {
    const cmds = [
      "CAPA\r\n",
      "NOOP\r\n",
      "USER a\r\n",
      "STLS\r\n",
      "PASS \xe9\r\n",
      "STAT\r\n",
      "QUIT\r\n",
    ];
    const answer = (c: Client, cmd: string) => c.pop3(cmd, cmd === "CAPA\r\n");
    const a = await plainSession(direct.port, cmds, answer);
    const b = await plainSession(proxied.port, cmds, answer);
    assert.match(a, /\+OK logged in\r\n\+OK 0 0\r\n\+OK bye\r\n$/);
    // the one difference: STLS in the CAPA answer
    assert.equal(b, a.replace("UIDL\r\n.\r\n", "UIDL\r\nSTLS\r\n.\r\n"));
    // once a command meant no TLS (NOOP here), STLS is the server's: it refuses it
    assert.match(b, /\+OK send PASS\r\n-ERR unknown command\r\n/);
  } finally {
    await direct.stop();
    await proxied.stop();
    await w.cleanup();
  }
});

Deno.test("pop3d-starttls-proxy: REQUIRETLS refuses USER, PASS, APOP and AUTH before STLS", async () => {
  const w = await world();
  const cdb = await rules(w, '127.0.0.1:allow,REQUIRETLS=""\n');
  const srv = await server(w, "1", pop3Proxy(w), { tcpserver: ["-x", cdb] });
  const c = await Client.connect(srv.port);
  try {
    await c.readLine();
    const must = "-ERR Must issue a STLS command first\r\n";
    for (const cmd of ["USER a\r\n", "PASS b\r\n", "APOP a 0123\r\n", "AUTH PLAIN AGEAYg==\r\n"]) {
      assert.equal(await c.pop3(cmd), must, cmd);
    }
    assert.match(
      await c.pop3("CAPA\r\n", true),
      /STLS\r\n\.\r\n$/,
      "CAPA still goes to the server",
    );
    assert.equal(await c.pop3("STLS x\r\n"), "-ERR STLS takes no argument\r\n");
    assert.equal(await c.pop3("STLS\r\n"), "+OK Begin TLS negotiation\r\n");
    await c.startTls(w.pki.caCert);
    assert.equal(await c.pop3("USER a\r\n"), "+OK send PASS\r\n", "under TLS USER is taken");
    assert.equal(await c.pop3("QUIT\r\n"), "+OK bye\r\n");
    await srv.waitLine(/ end 1 status 0$/);
    assert.deepEqual(await record(w), ["CAPA", "USER a", "QUIT"]);
  } finally {
    c.close();
    await srv.stop();
    await w.cleanup();
  }
});

// ---- IMAP

Deno.test("imapd-starttls-proxy: openssl s_client -starttls imap reaches the server under TLS", async () => {
  const w = await world();
  const srv = await server(w, "1", imapProxy(w));
  try {
    const r = await sClient(srv.port, "a CAPABILITY\r\nb LOGIN u p\r\nc LOGOUT\r\n", [
      "-starttls",
      "imap",
      "-CAfile",
      w.pki.caCert,
      "-verify_return_error",
    ]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /\* CAPABILITY IMAP4rev1 LITERAL\+ AUTH=PLAIN\r?\na OK done/);
    assert.match(
      r.out,
      /b OK \[CAPABILITY IMAP4rev1\] logged in\r?\n\* BYE sink\.test\r?\nc OK bye/,
    );
    assert.doesNotMatch(r.out, /STARTTLS/);
    assert.match(
      await srv.waitLine(/imapd-starttls-proxy: tls/),
      /^imapd-starttls-proxy: tls \d+ TLSv1\.[23]:\S+$/,
    );
    await srv.waitLine(/ end 1 status 0$/);
    // s_client's own CAPABILITY before STARTTLS, then ours
    assert.deepEqual(await record(w), [". CAPABILITY", "a CAPABILITY", "b LOGIN u p", "c LOGOUT"]);
  } finally {
    await srv.stop();
    await w.cleanup();
  }
});

for (const path of PATHS) {
  Deno.test(`imapd-starttls-proxy (${path.name}): commands pipelined after STARTTLS are discarded, not run`, async () => {
    const w = await world();
    const srv = await server(w, path.native, imapProxy(w));
    const c = await Client.connect(srv.port);
    try {
      assert.equal(
        await c.readLine(),
        "* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN STARTTLS] sink.test ready\r\n",
      );
      assert.equal(
        await c.imap("a1 CAPABILITY\r\n"),
        "* CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN STARTTLS\r\na1 OK done\r\n",
      );
      assert.equal(await c.imap("a2 NOOP\r\n"), "a2 OK noop\r\n");
      assert.equal(
        await c.imap("a3 STARTTLS\r\na4 LOGIN evil x\r\na5 SELECT INBOX\r\n"),
        "a3 OK Begin TLS negotiation now\r\n",
      );
      await c.startTls(w.pki.caCert);
      assert.equal(
        await c.imap("b1 CAPABILITY\r\n"),
        "* CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN\r\nb1 OK done\r\n",
        "STARTTLS is not offered under TLS",
      );
      assert.equal(
        await c.imap("b2 LOGIN good x\r\n"),
        "b2 OK [CAPABILITY IMAP4rev1] logged in\r\n",
      );
      assert.equal(await c.imap("b3 LOGOUT\r\n"), "* BYE sink.test\r\nb3 OK bye\r\n");
      assert.equal(await c.readLine(), null);
      await srv.waitLine(/ end 1 status 0$/);
      assert.deepEqual(await record(w), [
        "a1 CAPABILITY",
        "a2 NOOP",
        "b1 CAPABILITY",
        "b2 LOGIN good x",
        "b3 LOGOUT",
      ]);
      assert.ok(
        srv.lines.includes(
          "imapd-starttls-proxy: warning: 1 discarded 34 bytes sent after STARTTLS",
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

Deno.test("imapd-starttls-proxy: a client that never says STARTTLS gets the plain session byte for byte", async () => {
  const w = await world();
  const direct = await server(w, "0", w.imap);
  const proxied = await server(w, "0", imapProxy(w));
  try {
    // LOGIN's synchronizing literal: the client waits for the server's "+"
    const run = async (port: number) => {
      const c = await Client.connect(port);
      try {
        await c.readLine();
        await c.imap("a CAPABILITY\r\n");
        await c.send("b LOGIN {10}\r\n");
        assert.equal(await c.readLine(), "+ go ahead\r\n");
        // the literal would be a command if it were parsed
        await c.send("c LOGOUT\r\n pass\r\n");
        await c.until(/^b /);
        await c.imap("d STARTTLS\r\n");
        await c.send(new Uint8Array([...enc.encode("e SELECT "), 0xe9, 13, 10]));
        await c.until(/^e /);
        await c.imap("f LOGOUT\r\n");
        return await c.drain();
      } finally {
        c.close();
      }
    };
    const a = await run(direct.port);
    const b = await run(proxied.port);
    assert.match(
      a,
      /\* 0 EXISTS\r\ne OK \[READ-WRITE\] selected\r\n\* BYE sink\.test\r\nf OK bye\r\n$/,
    );
    assert.match(a, /d BAD unknown command/, "STARTTLS after LOGIN is the server's");
    // the differences: STARTTLS in the greeting's and CAPABILITY's lists
    assert.equal(
      b,
      a.replace("AUTH=PLAIN]", "AUTH=PLAIN STARTTLS]").replace(
        "AUTH=PLAIN\r\n",
        "AUTH=PLAIN STARTTLS\r\n",
      ),
    );
    assert.deepEqual((await record(w)).slice(-5), [
      "a CAPABILITY",
      "b LOGIN [literal 10] pass",
      "d STARTTLS",
      "e SELECT \ufffd",
      "f LOGOUT",
    ]);
  } finally {
    await direct.stop();
    await proxied.stop();
    await w.cleanup();
  }
});

Deno.test("imapd-starttls-proxy: REQUIRETLS announces LOGINDISABLED, refuses LOGIN, skips literals unread", async () => {
  const w = await world();
  const srv = await server(w, "1", imapProxy(w, ["-r"]));
  const c = await Client.connect(srv.port);
  try {
    assert.equal(
      await c.readLine(),
      "* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN STARTTLS LOGINDISABLED] sink.test ready\r\n",
    );
    assert.equal(
      await c.imap("a CAPABILITY\r\n"),
      "* CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN STARTTLS LOGINDISABLED\r\na OK done\r\n",
    );
    const no = (tag: string) =>
      `${tag} NO [PRIVACYREQUIRED] Must issue a STARTTLS command first\r\n`;
    assert.equal(await c.imap("b LOGIN u p\r\n"), no("b"));
    assert.equal(await c.imap("c AUTHENTICATE PLAIN\r\n"), no("c"));
    // LITERAL+: the 10 bytes follow at once and are no command; nor the second literal's
    assert.equal(
      await c.imap("d LOGIN {10+}\r\nx LOGOUT\r\n {10+}\r\ny LOGOUT\r\n\r\n"),
      no("d"),
    );
    // a synchronizing literal is refused before the client sends it
    assert.equal(await c.imap("e LOGIN {5}\r\n"), no("e"));
    assert.equal(await c.imap("f STARTTLS now\r\n"), "f BAD STARTTLS takes no argument\r\n");
    assert.equal(await c.imap("g STARTTLS\r\n"), "g OK Begin TLS negotiation now\r\n");
    await c.startTls(w.pki.caCert);
    assert.equal(
      await c.imap("h CAPABILITY\r\n"),
      "* CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN\r\nh OK done\r\n",
    );
    assert.equal(await c.imap("i LOGIN u p\r\n"), "i OK [CAPABILITY IMAP4rev1] logged in\r\n");
    assert.equal(await c.imap("j LOGOUT\r\n"), "* BYE sink.test\r\nj OK bye\r\n");
    await srv.waitLine(/ end 1 status 0$/);
    assert.deepEqual(await record(w), ["a CAPABILITY", "h CAPABILITY", "i LOGIN u p", "j LOGOUT"]);
  } finally {
    c.close();
    await srv.stop();
    await w.cleanup();
  }
});

Deno.test("imapd-starttls-proxy: a PREAUTH greeting is relayed as is (no STARTTLS once authenticated)", async () => {
  const w = await world();
  const preauth = `${w.dir}/preauth.js`;
  await Deno.writeTextFile(
    preauth,
    (await Deno.readTextFile(`${w.dir}/imap.js`)).replace(
      '"* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] sink.test ready',
      '"* PREAUTH [CAPABILITY IMAP4rev1] welcome',
    ),
  );
  const srv = await server(w, "0", ["imapd-starttls-proxy", DENO, "run", "-A", preauth]);
  const c = await Client.connect(srv.port);
  try {
    assert.equal(await c.readLine(), "* PREAUTH [CAPABILITY IMAP4rev1] welcome\r\n");
    assert.equal(
      await c.imap("a CAPABILITY\r\n"),
      "* CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN\r\na OK done\r\n",
    );
    assert.equal(
      await c.imap("b STARTTLS\r\n"),
      "b BAD unknown command\r\n",
      "the server's answer",
    );
    assert.equal(await c.imap("c LOGOUT\r\n"), "* BYE sink.test\r\nc OK bye\r\n");
  } finally {
    c.close();
    await srv.stop();
    await w.cleanup();
  }
});

// ---- real servers from Debian, without TLS of their own

Deno.test({
  name: "pop3d-starttls-proxy: openssl s_client -starttls pop3 to GNU mailutils pop3d --inetd",
  ignore: MU_POP3D === null,
}, async () => {
  const w = await world();
  const srv = await server(w, "1", ["pop3d-starttls-proxy", MU_POP3D!, "--inetd"]);
  try {
    const r = await sClient(srv.port, "CAPA\r\nQUIT\r\n", [
      "-starttls",
      "pop3",
      "-CAfile",
      w.pki.caCert,
      "-verify_return_error",
    ]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /\+OK Capability list follows\r?\n(.*\r?\n)*USER\r?\n\.\r?\n\+OK/);
    assert.doesNotMatch(r.out, /STLS/, "not offered under TLS");
    assert.match(await srv.waitLine(/pop3d-starttls-proxy: tls/), /: tls \d+ TLSv1\.[23]:/);
    // a plain client sees STLS in the CAPA answer, before USER's line and the end
    const c = await Client.connect(srv.port);
    try {
      assert.match((await c.readLine())!, /^\+OK POP3 Ready/);
      assert.match(await c.pop3("CAPA\r\n", true), /\r\nUSER\r\nSTLS\r\n\.\r\n$/);
      assert.equal(await c.pop3("QUIT\r\n"), "+OK\r\n");
    } finally {
      c.close();
    }
  } finally {
    await srv.stop();
    await w.cleanup();
  }
});

Deno.test({
  name: "imapd-starttls-proxy: openssl s_client -starttls imap to GNU mailutils imap4d --inetd",
  ignore: MU_IMAP4D === null,
}, async () => {
  const w = await world();
  const srv = await server(w, "1", ["imapd-starttls-proxy", MU_IMAP4D!, "--inetd"]);
  try {
    const r = await sClient(srv.port, "a CAPABILITY\r\nb LOGOUT\r\n", [
      "-starttls",
      "imap",
      "-CAfile",
      w.pki.caCert,
      "-verify_return_error",
    ]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /\* CAPABILITY IMAP4rev1 [^\r\n]*\r?\na OK CAPABILITY Completed/);
    assert.match(r.out, /b OK LOGOUT Completed/);
    assert.doesNotMatch(r.out, /STARTTLS/, "not offered under TLS");
    assert.doesNotMatch(r.err, /didn't find STARTTLS/, "offered before TLS");
    assert.match(await srv.waitLine(/imapd-starttls-proxy: tls/), /: tls \d+ TLSv1\.[23]:/);
  } finally {
    await srv.stop();
    await w.cleanup();
  }
});

Deno.test({
  name: "imapd-starttls-proxy: imap4d's plain session byte for byte, but STARTTLS in CAPABILITY",
  ignore: MU_IMAP4D === null,
}, async () => {
  const w = await world();
  const direct = await server(w, "0", [MU_IMAP4D!, "--inetd"]);
  const proxied = await server(w, "0", ["imapd-starttls-proxy", MU_IMAP4D!, "--inetd"]);
  try {
    const run = async (port: number) => {
      const c = await Client.connect(port);
      try {
        await c.readLine();
        await c.imap("a CAPABILITY\r\n");
        await c.imap("b NOOP\r\n");
        await c.imap("c SELECT INBOX\r\n"); // not authenticated: the proxy stops parsing
        await c.imap("d STARTTLS\r\n");
        await c.imap("e LOGOUT\r\n");
        return await c.drain();
      } finally {
        c.close();
      }
    };
    const a = await run(direct.port);
    const b = await run(proxied.port);
    assert.match(a, /e OK LOGOUT Completed\r\n$/);
    const caps = /\* CAPABILITY [^\r]*/.exec(a)![0];
    assert.equal(b, a.replace(caps, `${caps} STARTTLS`));
  } finally {
    await direct.stop();
    await proxied.stop();
    await w.cleanup();
  }
});

Deno.test({
  name: "imapd-starttls-proxy: as its own process under DJB's C tcpserver",
  ignore: cTool("tcpserver") === null,
}, async () => {
  const w = await world();
  const srv = await spawnServer(
    [cTool("tcpserver")!, "-v", "-1", "127.0.0.1", "0", DENO, "run", "-A", MOD, ...imapProxy(w)],
    {
      name: "tcpserver",
      env: { CERTFILE: w.pki.serverCert, KEYFILE: w.pki.serverKey, SINK_RECORD: w.record },
    },
  );
  const c = await Client.connect(srv.port);
  try {
    assert.match((await c.readLine())!, /STARTTLS\] sink\.test ready\r\n$/);
    assert.equal(await c.imap("a STARTTLS\r\n"), "a OK Begin TLS negotiation now\r\n");
    await c.startTls(w.pki.caCert);
    assert.equal(await c.imap("b LOGOUT\r\n"), "* BYE sink.test\r\nb OK bye\r\n");
    const pid = /pid (\d+) from/.exec(await srv.waitLine(/ pid \d+ from /))![1];
    assert.equal(
      (await srv.waitLine(/imapd-starttls-proxy: tls/)).replace(/:\S+$/, ""),
      `imapd-starttls-proxy: tls ${pid} TLSv1.3`,
    );
  } finally {
    c.close();
    await srv.stop();
    await w.cleanup();
  }
});

Deno.test("pop3d- and imapd-starttls-proxy: the usage line names the server", async () => {
  for (
    const [tool, server] of [["pop3d-starttls-proxy", "pop3d"], ["imapd-starttls-proxy", "imapd"]]
  ) {
    const r = await new Deno.Command(DENO, {
      args: ["run", "-A", MOD, tool],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(r.code, 100);
    assert.equal(
      dec.decode(r.stderr),
      `${tool}: usage: ${tool} [ -r ] [ -t timeout ] ${server} [ arg ... ]\n`,
    );
  }
});
