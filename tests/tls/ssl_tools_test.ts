/**
 * ucspi-ssl's sslprint and https@, run from the multi-call binary.
 */
import assert from "node:assert/strict";
import { sslLibraryVersion } from "../../lib/tls/ssl_env.ts";
import { connectTls } from "../../lib/tls/tls.ts";
import { byteString } from "../../lib/core/bytes.ts";
import { ours, tempDir } from "../support/helpers.ts";
import { CertMaker } from "../support/ssl_certmaker.ts";
import { startTool } from "../support/ssl_fixtures.ts";
import { PRINTED } from "../../cli/sslprint.ts";
import { toolNames } from "../../cli/tools.ts";

const CA = ["basicConstraints=critical,CA:true", "keyUsage=critical,keyCertSign,cRLSign"];
const SERVER = ["extendedKeyUsage=serverAuth", "subjectAltName=DNS:localhost,IP:127.0.0.1"];

let pkiPromise: Promise<{ m: CertMaker; cleanup: () => Promise<void> }> | undefined;
function pki() {
  return pkiPromise ??= (async () => {
    const dir = await tempDir();
    const m = new CertMaker(dir.path);
    await m.make("root", "/O=tools test/CN=Root", "self", CA, 30);
    await m.make("server", "/C=DE/O=tools test/CN=localhost", "root", SERVER, 30);
    return { m, cleanup: dir.cleanup };
  })();
}

Deno.test("sslprint and https@ are tools of the multi-call binary", () => {
  assert.ok(toolNames().includes("sslprint"));
  assert.ok(toolNames().includes("https@"));
});

Deno.test("sslprint prints ucspi-ssl's variable list after the banner, byte for byte", async () => {
  const { m } = await pki();
  const srv = await startTool(
    "sslprint",
    ["-1", "-s", "-e", "-Bsslprint", "-RH", "-l", "Localserver", "127.0.0.1", "0", "echo", "wrong"],
    { CERTFILE: m.path("server"), KEYFILE: `${m.dir}/server.key` },
  );
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: srv.port });
    const myPort = (conn.localAddr as Deno.NetAddr).port;
    const k = await connectTls(conn, {
      host: "localhost",
      verifyServer: true,
      checkName: true,
      ca: await Deno.readTextFile(m.path("root")),
      timeoutMs: 10000,
    });
    await k.writable.close();
    const got = byteString(new Uint8Array(await new Response(k.readable).arrayBuffer()));
    const serial = (await new Deno.Command("openssl", {
      args: ["x509", "-in", m.path("server"), "-noout", "-serial", "-startdate", "-enddate"],
      stdout: "piped",
    }).output()).stdout;
    const f = new Map(
      new TextDecoder().decode(serial).trim().split("\n").map((l) =>
        l.split("=", 2) as [string, string]
      ),
    );
    const known: Record<string, string> = {
      PROTO: "TCP",
      SSLLOCALHOST: "Localserver",
      SSLLOCALIP: "127.0.0.1",
      SSLLOCALPORT: String(srv.port),
      SSLREMOTEIP: "127.0.0.1",
      SSLREMOTEPORT: String(myPort),
      TCPLOCALHOST: "Localserver",
      TCPLOCALIP: "127.0.0.1",
      TCPLOCALPORT: String(srv.port),
      TCPREMOTEIP: "127.0.0.1",
      TCPREMOTEPORT: String(myPort),
      SSL_PROTOCOL: k.info.protocol,
      SSL_CIPHER: k.info.cipher,
      SSL_CIPHER_EXPORT: "false",
      SSL_CIPHER_USEKEYSIZE: /128/.test(k.info.cipher) ? "128" : "256",
      SSL_CIPHER_ALGKEYSIZE: /128/.test(k.info.cipher) ? "128" : "256",
      SSL_VERSION_INTERFACE: "ucspi-ssl",
      SSL_VERSION_LIBRARY: sslLibraryVersion(),
      SSL_SERVER_M_VERSION: "3",
      SSL_SERVER_M_SERIAL: BigInt("0x" + f.get("serial")).toString(),
      SSL_SERVER_S_DN: "/C=DE/O=tools test/CN=localhost",
      SSL_SERVER_S_DN_C: "DE",
      SSL_SERVER_S_DN_O: "tools test",
      SSL_SERVER_S_DN_CN: "localhost",
      SSL_SERVER_I_DN: "/O=tools test/CN=Root",
      SSL_SERVER_I_DN_O: "tools test",
      SSL_SERVER_I_DN_CN: "Root",
      SSL_SERVER_V_START: f.get("notBefore")!,
      SSL_SERVER_V_END: f.get("notAfter")!,
      SSL_SERVER_A_SIG: "ecdsa-with-SHA256",
      SSL_SERVER_A_KEY: "id-ecPublicKey",
      SSL_SERVER_CERT: await Deno.readTextFile(m.path("server")),
    };
    const expected = "sslprint" + PRINTED.map((n) => `\n${n}=${known[n] ?? "unset"}`).join("") +
      "\n";
    assert.equal(got, expected);
    // the certificate's own newline, then the next variable after an empty line
    assert.match(got, /-----END CERTIFICATE-----\n\nSSL_CLIENT_M_VERSION=unset\n/);
  } finally {
    await srv.stop();
  }
  const u = await ours("sslprint", ["0"]);
  assert.equal(u.code, 100);
  assert.match(u.err, /^sslprint: usage: sslprint \[/);
});

Deno.test("https@ GETs the page over TLS and prints the body without CRs", async () => {
  const { m } = await pki();
  const srv = await startTool("sslserver", [
    "-1",
    "-RH",
    "-l0",
    "127.0.0.1",
    "0",
    "sh",
    "-c",
    // answer with the request's first two lines (CR removed) in the body
    'read a; read b; a=$(printf %s "$a" | tr -d "\\r"); b=$(printf %s "$b" | tr -d "\\r"); ' +
    'printf "HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n%s\\r\\n%s\\r\\nlast, no newline" "$a" "$b"',
  ], { CERTFILE: m.path("server"), KEYFILE: `${m.dir}/server.key` });
  try {
    const port = String(srv.port);
    const r = await ours("https@", ["127.0.0.1", "some/page", port]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, `GET /some/page HTTP/1.0\nHost: 127.0.0.1:${port}\nlast, no newline\n`);
    // extra arguments go to sslclient: -x verifies, here against the right CA
    const v = await ours("https@", ["-4", "127.0.0.1", "", port, "-x", "-a", m.path("root")]);
    assert.equal(v.code, 0, v.err);
    assert.equal(v.out, `GET / HTTP/1.0\nHost: 127.0.0.1:${port}\nlast, no newline\n`);
    // and refuses an untrusted server (sslclient's message), printing nothing
    const bad = await ours("https@", ["127.0.0.1", "", port, "-x", "-a", m.path("server")]);
    assert.equal(bad.code, 0);
    assert.equal(bad.out, "");
    assert.match(
      bad.err,
      /^sslclient: fatal: missing credentials \(CA\) or unable to validate server certificate\n$/,
    );
  } finally {
    await srv.stop();
  }
});

Deno.test("PKI cleanup (ssl tools)", async () => {
  if (pkiPromise) await (await pkiPromise).cleanup();
});
