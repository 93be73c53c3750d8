/**
 * Client certificate verification (lib/tls/verify.ts) against OpenSSL's own
 * verdict: for a corpus of good and bad chains made by openssl here, our
 * result equals `openssl verify -purpose sslclient -CAfile trusted
 * -untrusted sent [-verify_depth N] [-attime T] leaf`, reason included;
 * and sslserver -m applies it to the chain a real client sends.
 */
import assert from "node:assert/strict";
import { VerifiableCert, verifyClientChain } from "../../lib/tls/verify.ts";
import { tempDir } from "../support/helpers.ts";
import { CertMaker } from "../support/ssl_certmaker.ts";
import { sClient, startTool } from "../support/ssl_fixtures.ts";

const CA = ["basicConstraints=critical,CA:true", "keyUsage=critical,keyCertSign,cRLSign"];
const CLIENT = ["extendedKeyUsage=clientAuth"];
const DAY = 86400;

interface Case {
  name: string;
  leaf: string;
  sent?: string[];
  trusted: string[];
  depth?: number;
  /** seconds from now */
  at?: number;
}

async function corpus(m: CertMaker): Promise<Case[]> {
  await Promise.all([
    m.make("root", "/O=test/CN=Root", "self", CA, 30),
    m.make("shortroot", "/CN=Short Root", "self", CA, 3),
    m.make("stranger", "/CN=Stranger Root", "self", CA, 30),
    m.make("fakeroot", "/O=test/CN=Root", "self", CA, 30),
    m.make("selfleaf", "/CN=self leaf", "self", CLIENT, 30),
  ]);
  await Promise.all([
    m.make("inter", "/O=test/CN=Inter", "root", CA, 30),
    m.make("good", "/CN=good", "root", CLIENT, 30),
    m.make("noeku", "/CN=no eku", "root", [], 30),
    m.make("server", "/CN=server only", "root", ["extendedKeyUsage=serverAuth"], 30),
    m.make("anyeku", "/CN=any eku", "root", ["extendedKeyUsage=anyExtendedKeyUsage"], 30),
    m.make("both", "/CN=both", "root", ["extendedKeyUsage=serverAuth,clientAuth"], 30),
    m.make("kuenc", "/CN=ku enc", "root", ["keyUsage=keyEncipherment"], 30),
    m.make("kuagree", "/CN=ku agree", "root", ["keyUsage=keyAgreement"], 30),
    m.make("nsserver", "/CN=ns server", "root", ["nsCertType=server"], 30),
    m.make("nsclient", "/CN=ns client", "root", ["nsCertType=client"], 30),
    m.make("noca", "/CN=not a CA", "root", ["basicConstraints=CA:false"], 30),
    m.make("nobc", "/CN=no BC", "root", ["keyUsage=keyCertSign"], 30),
    m.make("nosign", "/CN=CA no certSign", "root", [
      "basicConstraints=critical,CA:true",
      "keyUsage=digitalSignature",
    ], 30),
    m.make("srvca", "/CN=serverAuth CA", "root", [...CA, "extendedKeyUsage=serverAuth"], 30),
    m.make("p0", "/CN=pathlen 0", "root", [
      "basicConstraints=critical,CA:true,pathlen:0",
      "keyUsage=keyCertSign",
    ], 30),
    m.make("shortleaf", "/CN=short leaf", "root", CLIENT, 3),
    m.make("longleaf", "/CN=long leaf", "shortroot", CLIENT, 30),
    m.make("bystranger", "/CN=by stranger", "stranger", CLIENT, 30),
    m.make("byfake", "/CN=by fake root", "fakeroot", CLIENT, 30),
    m.make("critical", "/CN=critical", "root", [...CLIENT, "1.2.3.4=critical,ASN1:NULL"], 30),
    m.make("noncritical", "/CN=noncritical", "root", [...CLIENT, "1.2.3.4=ASN1:NULL"], 30),
  ]);
  await Promise.all([
    m.make("inter2", "/O=test/CN=Inter 2", "inter", CA, 30),
    m.make("viainter", "/CN=via inter", "inter", CLIENT, 30),
    m.make("bynoca", "/CN=by non-CA", "noca", CLIENT, 30),
    m.make("bynobc", "/CN=by no BC", "nobc", CLIENT, 30),
    m.make("bynosign", "/CN=by no certSign", "nosign", CLIENT, 30),
    m.make("bysrvca", "/CN=by serverAuth CA", "srvca", CLIENT, 30),
    m.make("byp0", "/CN=by pathlen 0", "p0", CLIENT, 30),
    m.make("underp0", "/CN=under pathlen 0", "p0", CA, 30),
  ]);
  await Promise.all([
    m.make("deep", "/CN=deep leaf", "inter2", CLIENT, 30),
    m.make("belowp0", "/CN=below pathlen 0", "underp0", CLIENT, 30),
  ]);
  const all: Case[] = [
    { name: "good", leaf: "good", trusted: ["root"] },
    { name: "no extended key usage", leaf: "noeku", trusted: ["root"] },
    { name: "via intermediate", leaf: "viainter", sent: ["inter"], trusted: ["root"] },
    { name: "intermediate not sent", leaf: "viainter", trusted: ["root"] },
    { name: "intermediate trusted", leaf: "viainter", trusted: ["root", "inter"] },
    { name: "only the intermediate trusted", leaf: "viainter", trusted: ["inter"] },
    { name: "serverAuth only", leaf: "server", trusted: ["root"] },
    { name: "anyExtendedKeyUsage", leaf: "anyeku", trusted: ["root"] },
    { name: "serverAuth and clientAuth", leaf: "both", trusted: ["root"] },
    { name: "keyUsage keyEncipherment only", leaf: "kuenc", trusted: ["root"] },
    { name: "keyUsage keyAgreement", leaf: "kuagree", trusted: ["root"] },
    { name: "nsCertType server", leaf: "nsserver", trusted: ["root"] },
    { name: "nsCertType client", leaf: "nsclient", trusted: ["root"] },
    { name: "issuer not a CA", leaf: "bynoca", sent: ["noca"], trusted: ["root"] },
    { name: "issuer not a CA, trusted", leaf: "bynoca", trusted: ["root", "noca"] },
    { name: "issuer without basicConstraints", leaf: "bynobc", sent: ["nobc"], trusted: ["root"] },
    { name: "issuer without keyCertSign", leaf: "bynosign", sent: ["nosign"], trusted: ["root"] },
    { name: "issuer serverAuth only", leaf: "bysrvca", sent: ["srvca"], trusted: ["root"] },
    { name: "pathlen 0 kept", leaf: "byp0", sent: ["p0"], trusted: ["root"] },
    {
      name: "pathlen 0 violated",
      leaf: "belowp0",
      sent: ["p0", "underp0"],
      trusted: ["root"],
      depth: 5,
    },
    { name: "expired", leaf: "shortleaf", trusted: ["root"], at: 10 * DAY },
    { name: "not yet valid", leaf: "good", trusted: ["root"], at: -DAY },
    { name: "CA expired", leaf: "longleaf", trusted: ["shortroot"], at: 10 * DAY },
    { name: "wrong issuer", leaf: "bystranger", trusted: ["root"] },
    { name: "stranger root sent along", leaf: "bystranger", sent: ["stranger"], trusted: ["root"] },
    { name: "forged issuer name", leaf: "byfake", trusted: ["root"] },
    { name: "forged issuer sent along", leaf: "byfake", sent: ["fakeroot"], trusted: ["root"] },
    { name: "self-signed leaf", leaf: "selfleaf", trusted: ["root"] },
    { name: "self-signed leaf, trusted", leaf: "selfleaf", trusted: ["root", "selfleaf"] },
    { name: "unknown critical extension", leaf: "critical", trusted: ["root"] },
    { name: "unknown extension", leaf: "noncritical", trusted: ["root"] },
    { name: "leaf itself trusted", leaf: "good", trusted: ["good"] },
  ];
  for (const depth of [0, 1, 2, 3]) {
    all.push({
      name: `two intermediates, depth ${depth}`,
      leaf: "deep",
      sent: ["inter", "inter2"],
      trusted: ["root"],
      depth,
    });
    all.push({ name: `direct, depth ${depth}`, leaf: "good", trusted: ["root"], depth });
    all.push({
      name: `one intermediate, depth ${depth}`,
      leaf: "viainter",
      sent: ["inter"],
      trusted: ["root"],
      depth,
    });
  }
  return all;
}

async function opensslVerdict(m: CertMaker, c: Case, now: number): Promise<string> {
  const cat = async (names: string[], file: string) => {
    let t = "";
    for (const n of names) t += await Deno.readTextFile(m.path(n));
    await Deno.writeTextFile(`${m.dir}/${file}`, t);
    return `${m.dir}/${file}`;
  };
  const args = ["verify", "-purpose", "sslclient", "-CAfile", await cat(c.trusted, "t.pem")];
  if (c.sent?.length) args.push("-untrusted", await cat(c.sent, "u.pem"));
  args.push("-verify_depth", String(c.depth ?? 1));
  args.push("-attime", String(now + (c.at ?? 0)));
  args.push(m.path(c.leaf));
  const r = await new Deno.Command("openssl", { args, stdout: "piped", stderr: "piped" }).output();
  const out = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
  if (r.success && /: OK$/m.test(out)) return "SUCCESS";
  const e = /^error \d+ at \d+ depth lookup: (.*)$/m.exec(out);
  return `FAILED:${e ? e[1] : out}`;
}

Deno.test("client certificate verdicts equal openssl verify -purpose sslclient", async () => {
  const dir = await tempDir();
  try {
    const m = new CertMaker(dir.path);
    const cases = await corpus(m);
    const now = Math.floor(Date.now() / 1000);
    const load = async (n: string) => VerifiableCert.fromDer(await m.der(n));
    const diffs: string[] = [];
    let failures = 0;
    for (const c of cases) {
      const expected = await opensslVerdict(m, c, now);
      if (expected !== "SUCCESS") failures++;
      const got = verifyClientChain(
        await load(c.leaf),
        await Promise.all((c.sent ?? []).map(load)),
        await Promise.all(c.trusted.map(load)),
        c.depth ?? 1,
        new Date((now + (c.at ?? 0)) * 1000),
      );
      if (got !== expected) diffs.push(`${c.name}: openssl ${expected}, ours ${got}`);
    }
    assert.deepEqual(diffs, []);
    // the corpus has both kinds
    assert.ok(failures > 10 && failures < cases.length - 10, `${failures} of ${cases.length}`);
  } finally {
    await dir.cleanup();
  }
});

Deno.test("sslserver -m: the client's chain is verified as OpenSSL does (sent intermediates, purpose, CA, depth)", async () => {
  const dir = await tempDir();
  try {
    const m = new CertMaker(dir.path);
    await m.make("root", "/O=test/CN=Root", "self", CA, 30);
    await Promise.all([
      m.make("server", "/CN=localhost", "root", [
        "extendedKeyUsage=serverAuth",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
      ]),
      m.make("inter", "/O=test/CN=Inter", "root", CA, 30),
      m.make("noca", "/CN=not a CA", "root", ["basicConstraints=CA:false"], 30),
      m.make("serveronly", "/CN=server only", "root", ["extendedKeyUsage=serverAuth"], 30),
    ]);
    await Promise.all([
      m.make("viainter", "/CN=via inter", "inter", CLIENT, 30),
      m.make("bynoca", "/CN=by non-CA", "noca", CLIENT, 30),
    ]);
    const prog = ["sh", "-c", 'echo "$SSL_CLIENT_VERIFY $SSL_CLIENT_S_DN"'];
    const start = (depth: string) =>
      startTool("sslserver", ["-1", "-m", "-s", "-RH", "-l0", "127.0.0.1", "0", ...prog], {
        CERTFILE: m.path("server"),
        KEYFILE: `${m.dir}/server.key`,
        CAFILE: m.path("root"),
        VERIFYDEPTH: depth,
      });
    const as = (port: number, leaf: string, chain?: string) =>
      sClient(port, "", [
        "-CAfile",
        m.path("root"),
        "-cert",
        m.path(leaf),
        "-key",
        `${m.dir}/${leaf}.key`,
        ...(chain ? ["-cert_chain", m.path(chain)] : []),
      ]);
    const one = await start("1");
    try {
      assert.equal((await as(one.port, "viainter", "inter")).out, "SUCCESS /CN=via inter\n");
      for (const [leaf, chain] of [["viainter"], ["serveronly"], ["bynoca", "noca"]]) {
        assert.equal((await as(one.port, leaf, chain)).out, "", leaf);
      }
      await one.waitLine(/unable to validate client certificate$/);
    } finally {
      await one.stop();
    }
    const zero = await start("0");
    try {
      assert.equal((await as(zero.port, "viainter", "inter")).out, "");
      await zero.waitLine(/unable to validate client certificate$/);
    } finally {
      await zero.stop();
    }
  } finally {
    await dir.cleanup();
  }
});
