/**
 * The -s environment end to end, as the program gets it (read from
 * /proc/PID/environ, NUL-separated, so a value's newline is no separator):
 * hostile client certificate names cannot add or change variables, the DN
 * strings are OpenSSL's one-line form, and the variables ucspi-ssl sets are
 * there in its format (sslserver and sslclient).
 */
import assert from "node:assert/strict";
import { byteString } from "../../lib/core/bytes.ts";
import { ours, tempDir } from "../support/helpers.ts";
import { CertMaker } from "../support/ssl_certmaker.ts";
import { startTool } from "../support/ssl_fixtures.ts";

/** A byte the environment, a log line or a shell could trip over (control, DEL, 8-bit). */
// deno-lint-ignore no-control-regex
const UNSAFE = /[\x00-\x1f\x7f-\xff]/;

const CA = ["basicConstraints=critical,CA:true", "keyUsage=critical,keyCertSign,cRLSign"];
const CLIENT = ["extendedKeyUsage=clientAuth"];
const SERVER = ["extendedKeyUsage=serverAuth", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"];

/** Prints the program's whole environment as it was exec'd: NUL-separated. */
const ENVIRON = ["sh", "-c", "cat /proc/$$/environ"];

function environOf(bytes: Uint8Array): Array<[string, string]> {
  return byteString(bytes).split("\0").filter((e) => e !== "").map((e) => {
    const i = e.indexOf("=");
    return [e.slice(0, i), e.slice(i + 1)];
  });
}

/** What openssl says about a certificate, as name=value lines. */
async function fields(m: CertMaker, name: string): Promise<Map<string, string>> {
  const r = await new Deno.Command("openssl", {
    args: [
      "x509",
      "-in",
      m.path(name),
      "-noout",
      "-subject",
      "-issuer",
      "-serial",
      "-nameopt",
      "compat",
    ],
    stdout: "piped",
  }).output();
  return new Map(
    byteString(r.stdout).trim().split("\n").map((
      l,
    ) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

/** openssl s_client with a client certificate; resolves everything the server sent. */
async function sClientBytes(port: number, extra: string[]): Promise<Uint8Array> {
  const child = new Deno.Command("openssl", {
    args: ["s_client", "-connect", `127.0.0.1:${port}`, "-quiet", ...extra],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  await child.stdin.close();
  const r = await child.output();
  return r.stdout;
}

let pkiPromise: Promise<{ m: CertMaker; cleanup: () => Promise<void> }> | undefined;
function pki() {
  return pkiPromise ??= (async () => {
    const dir = await tempDir();
    const m = new CertMaker(dir.path);
    await m.make("root", "/O=env test/CN=Root", "self", CA, 30);
    await Promise.all([
      m.make("server", "/O=env test/CN=localhost", "root", SERVER, 30),
      m.make(
        "inject",
        { dn: ["CN=evil\\nSSL_INJECT=1\\nCN=admin", "O=x\\nSSL_CLIENT_VERIFY=SUCCESS"] },
        "root",
        CLIENT,
      ),
      m.make(
        "control",
        { dn: ["CN=ctl\x01\x1b[31m\x7f\rend\t=x", "OU=a/b+c"], mask: "utf8only" },
        "root",
        CLIENT,
      ),
      m.make(
        "eight",
        { dn: ["CN=M\xc3\xbcller \xe2\x82\xac", "O=caf\xc3\xa9"], utf8: true, mask: "utf8only" },
        "root",
        CLIENT,
      ),
      m.make("t61", { dn: ["CN=raw \xe4\xf6\xfc \x80\xff"], mask: "default" }, "root", CLIENT),
    ]);
    return { m, cleanup: dir.cleanup };
  })();
}

Deno.test("sslserver -s: hostile client certificate names add no variable; DNs as OpenSSL's one-line form", async () => {
  const { m } = await pki();
  const srv = await startTool(
    "sslserver",
    ["-1", "-s", "-RH", "-l0", "127.0.0.1", "0", ...ENVIRON],
    {
      CERTFILE: m.path("server"),
      KEYFILE: `${m.dir}/server.key`,
      CAFILE: m.path("root"),
    },
  );
  try {
    const server = await fields(m, "server");
    for (const name of ["inject", "control", "eight", "t61"]) {
      const env = environOf(
        await sClientBytes(srv.port, [
          "-CAfile",
          m.path("root"),
          "-cert",
          m.path(name),
          "-key",
          `${m.dir}/${name}.key`,
        ]),
      );
      const keys = env.map(([k]) => k);
      const get = (k: string) => env.filter(([n]) => n === k).map(([, v]) => v);
      const client = await fields(m, name);
      assert.deepEqual(get("SSL_CLIENT_S_DN"), [client.get("subject")], name);
      assert.deepEqual(get("SSL_CLIENT_I_DN"), [client.get("issuer")], name);
      assert.equal(get("SSL_CLIENT_S_DN_CN").length, 1, name);
      assert.ok(!keys.some((k) => /INJECT/.test(k)), `${name}: ${keys.join(" ")}`);
      assert.deepEqual(get("SSL_CLIENT_VERIFY"), ["SUCCESS"], name);
      // only the components the certificate has, each once
      const parts = keys.filter((k) => k.startsWith("SSL_CLIENT_S_DN_")).sort();
      assert.deepEqual(
        parts,
        name === "control" ? ["SSL_CLIENT_S_DN_CN", "SSL_CLIENT_S_DN_OU"] : [
          "SSL_CLIENT_S_DN_CN",
          ...(name === "t61" ? [] : ["SSL_CLIENT_S_DN_O"]),
        ],
        name,
      );
      // nothing the shell could split on, in any SSL_ value but the PEM
      for (const [k, v] of env) {
        if (k.startsWith("SSL_") && !k.endsWith("_CERT")) {
          assert.doesNotMatch(v, UNSAFE, `${name}: ${k}=${JSON.stringify(v)}`);
        }
      }
      if (name === "inject") {
        assert.deepEqual(get("SSL_CLIENT_S_DN_CN"), ["evil\\x0ASSL_INJECT=1\\x0ACN=admin"]);
        assert.deepEqual(get("SSL_CLIENT_S_DN_O"), ["x\\x0ASSL_CLIENT_VERIFY=SUCCESS"]);
      }
      if (name === "eight") {
        assert.deepEqual(get("SSL_CLIENT_S_DN_CN"), ["M\\xC3\\xBCller \\xE2\\x82\\xAC"]);
      }
      // ucspi-ssl's other variables
      assert.deepEqual(get("SSL_VERSION_INTERFACE"), ["ucspi-ssl"]);
      assert.equal(get("SSL_VERSION_LIBRARY").length, 1);
      assert.deepEqual(get("SSL_CIPHER_EXPORT"), ["false"]);
      const cipher = get("SSL_CIPHER")[0];
      const bits = /AES_?128|AES128/.test(cipher) ? "128" : "256";
      assert.deepEqual(get("SSL_CIPHER_USEKEYSIZE"), [bits], cipher);
      assert.deepEqual(get("SSL_CIPHER_ALGKEYSIZE"), [bits], cipher);
      for (
        const [side, f, file] of [["SERVER", server, "server"], ["CLIENT", client, name]] as const
      ) {
        assert.deepEqual(get(`SSL_${side}_M_VERSION`), ["3"]);
        assert.deepEqual(get(`SSL_${side}_M_SERIAL`), [BigInt("0x" + f.get("serial")).toString()]);
        assert.deepEqual(get(`SSL_${side}_A_SIG`), ["ecdsa-with-SHA256"]);
        assert.deepEqual(get(`SSL_${side}_A_KEY`), ["id-ecPublicKey"]);
        assert.deepEqual(get(`SSL_${side}_CERT`), [await Deno.readTextFile(m.path(file))]);
        assert.match(
          get(`SSL_${side}_V_END`)[0],
          /^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \d{4} GMT$/,
        );
      }
      assert.deepEqual(get("SSL_SERVER_S_DN"), [server.get("subject")]);
    }
  } finally {
    await srv.stop();
  }
});

function ipv6Loopback(): boolean {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
}
const noV6 = !ipv6Loopback();

Deno.test("sslclient -s: the server's and our own certificate's variables; -e sets no TCP6*", async () => {
  const { m } = await pki();
  for (const host of noV6 ? ["127.0.0.1"] : ["127.0.0.1", "::1"]) {
    const srv = await startTool("sslserver", ["-1", "-RH", "-l0", host, "0", "cat"], {
      CERTFILE: m.path("server"),
      KEYFILE: `${m.dir}/server.key`,
      CAFILE: m.path("root"),
    });
    try {
      const r = await ours("sslclient", [
        "-RHse",
        "-a",
        m.path("root"),
        "-c",
        m.path("inject"),
        "-k",
        `${m.dir}/inject.key`,
        host,
        String(srv.port),
        "sh",
        "-c",
        "cat /proc/$$/environ >&2",
      ], { env: { TCP6REMOTEIP: "::9", TCP6LOCALIP: "::8", SSL_CLIENT_S_DN_L: "inherited" } });
      assert.equal(r.code, 0, r.err);
      const env = environOf(new TextEncoder().encode(r.err));
      const get = (k: string) => env.filter(([n]) => n === k).map(([, v]) => v);
      assert.deepEqual(env.filter(([k]) => k.startsWith("TCP6")), [], host);
      assert.deepEqual(get("TCPREMOTEIP"), [host]);
      assert.deepEqual(get("PROTO"), [host === "::1" ? "SSL6" : "SSL"]);
      const server = await fields(m, "server");
      const client = await fields(m, "inject");
      assert.deepEqual(get("SSL_SERVER_S_DN"), [server.get("subject")]);
      assert.deepEqual(get("SSL_SERVER_M_SERIAL"), [
        BigInt("0x" + server.get("serial")).toString(),
      ]);
      assert.deepEqual(get("SSL_SERVER_CERT"), [await Deno.readTextFile(m.path("server"))]);
      assert.deepEqual(get("SSL_CLIENT_S_DN"), [client.get("subject")]);
      assert.deepEqual(get("SSL_CLIENT_S_DN_CN"), ["evil\\x0ASSL_INJECT=1\\x0ACN=admin"]);
      assert.deepEqual(get("SSL_CLIENT_S_DN_L"), []); // not in the certificate: not inherited either
      assert.deepEqual(get("SSL_VERSION_INTERFACE"), ["ucspi-ssl"]);
    } finally {
      await srv.stop();
    }
  }
});

Deno.test("PKI cleanup (ssl env)", async () => {
  if (pkiPromise) await (await pkiPromise).cleanup();
});
