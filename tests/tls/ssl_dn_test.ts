/**
 * Distinguished names and the other -s fields, read from the certificate's
 * DER (lib/tls/x509.ts), against what openssl prints for the same
 * certificate: the one-line DN (`-nameopt compat`, OpenSSL's
 * X509_NAME_oneline, what ucspi-ssl's SSL_*_S_DN is), serial, dates,
 * version and algorithms. Names hold what attackers put there: newlines,
 * control bytes, '/', '+', '=', 8-bit bytes in UTF8String, T61String and
 * BMPString, unknown and very long OIDs, multi-valued RDNs.
 */
import assert from "node:assert/strict";
import { parseCertificate } from "../../lib/tls/x509.ts";
import {
  algorithmName,
  nameComponents,
  oneLine,
  pemOf,
  serialDecimal,
} from "../../lib/tls/x509_text.ts";
import { byteString } from "../../lib/core/bytes.ts";
import { tempDir } from "../support/helpers.ts";
import { CertMaker } from "../support/ssl_certmaker.ts";

/** A byte the environment, a log line or a shell could trip over (control, DEL, 8-bit). */
// deno-lint-ignore no-control-regex
const UNSAFE = /[\x00-\x1f\x7f-\xff]/;

const CA = ["basicConstraints=critical,CA:true", "keyUsage=critical,keyCertSign,cRLSign"];
const CLIENT = ["extendedKeyUsage=clientAuth"];

/** Names for the corpus: -subj strings, or config [dn] sections (raw bytes, "\n" escapes). */
const SUBJECTS: Array<
  string | { dn: string[]; utf8?: boolean; mask?: string; oids?: string[] }
> = [
  "/C=DE/ST=Berlin/L=Mitte/O=Example Mail/OU=Ops/CN=client one/emailAddress=a@b.example",
  "/CN=a\\/b\\+c=d\\\\e/O=x=y",
  "/DC=org/DC=example/UID=jdoe/CN=John Doe",
  "/title=Dr/GN=John/SN=Doe/initials=JD/description=a desc/x500UniqueIdentifier=xyz",
  "/serialNumber=123/street=Main St 1/postalCode=10115/name=n/pseudonym=p/dnQualifier=q",
  "/businessCategory=Private Organization/jurisdictionC=DE/organizationIdentifier=VATDE-1",
  "/jurisdictionST=Berlin/jurisdictionL=Mitte/generationQualifier=III/CN=ev",
  {
    dn: ["unknown=unknown oid", "long=long", "CN=x+unknown=y"],
    oids: [
      "unknown=1.2.3.4",
      "long=1.2.840.113549.1.9.99999.1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23",
    ],
  },
  "/CN=a+OU=b+O=c/L=d",
  "/CN= spaced  out /O=tab\tin",
  { dn: ["CN=evil\\nSSL_INJECT=1\\nCN=admin"] },
  { dn: ["CN=ctl\x01\x02\x1b[31m\x7f\rend", "O=x"], mask: "utf8only" },
  { dn: ["CN=latin \xe4\xf6\xfc", "OU=t61 \xe4\xf6\xfc \x80\x9f\xff"], mask: "default" },
  { dn: ["CN=latin to utf8 \xe4\xf6\xfc"], mask: "utf8only" },
  { dn: ["CN=M\xc3\xbcller \xe2\x82\xac", "O=\xf0\x9f\x98\x80"], utf8: true, mask: "utf8only" },
  { dn: ["CN=bmp \xe4 x", "O=plain"], mask: "MASK:0x800" },
  { dn: ["CN=nul free \x01", "emailAddress=x@y", "UID=u\\n1"], mask: "utf8only" },
];

async function printed(m: CertMaker, name: string, opt: string[]): Promise<string> {
  const r = await new Deno.Command("openssl", {
    args: ["x509", "-in", m.path(name), "-noout", ...opt],
    stdout: "piped",
  }).output();
  return byteString(r.stdout).replace(/\n$/, "");
}

Deno.test("DN one-line form and fields equal openssl's for a corpus of hostile names", async () => {
  const dir = await tempDir();
  try {
    const m = new CertMaker(dir.path);
    await m.make("root", "/O=test \\/ root/CN=Root+serialNumber=1", "self", CA, 30);
    const diffs: string[] = [];
    await Promise.all(SUBJECTS.map((subj, i) => m.make(`c${i}`, subj, "root", CLIENT, 30)));
    for (const i of SUBJECTS.keys()) {
      const name = `c${i}`;
      const c = parseCertificate(await m.der(name));
      const lines = new Map(
        (await printed(m, name, [
          "-subject",
          "-issuer",
          "-serial",
          "-startdate",
          "-enddate",
          "-nameopt",
          "compat",
        ])).split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
      );
      const check = (what: string, got: string, expected: string | undefined) => {
        if (got !== expected) diffs.push(`${name} ${what}: openssl ${expected} ours ${got}`);
      };
      check("subject", oneLine(c.subject), lines.get("subject"));
      check("issuer", oneLine(c.issuer), lines.get("issuer"));
      check("serial", serialDecimal(c.serial), BigInt("0x" + lines.get("serial")).toString());
      check("start", c.notBeforeText, lines.get("notBefore"));
      check("end", c.notAfterText, lines.get("notAfter"));
      // the corpus really holds what it is meant to
      if (!c.subject.length) diffs.push(`${name}: empty subject`);
      const text = await printed(m, name, ["-text"]);
      check("version", String(c.version), /Version: (\d+)/.exec(text)![1]);
      check("sig", algorithmName(c.signatureOid), /Signature Algorithm: (\S+)/.exec(text)![1]);
      check("key", algorithmName(c.keyOid), /Public Key Algorithm: (\S+)/.exec(text)![1]);
      check("pem", pemOf(c.der), await Deno.readTextFile(m.path(name)));
      // components never carry a byte the environment or a shell line could split on
      for (const [k, v] of nameComponents(c.subject)) {
        if (UNSAFE.test(v)) diffs.push(`${name} component ${k} unescaped: ${v}`);
      }
    }
    assert.deepEqual(diffs, []);
  } finally {
    await dir.cleanup();
  }
});

Deno.test("DN components: the last of each kind, escaped as in the one-line form", async () => {
  const dir = await tempDir();
  try {
    const m = new CertMaker(dir.path);
    await m.make("root", "/CN=Root", "self", CA, 30);
    await m.make(
      "x",
      { dn: ["CN=evil\\nSSL_INJECT=1\\nCN=admin", "1.OU=a", "2.OU=b/c"] },
      "root",
      CLIENT,
    );
    const c = parseCertificate(await m.der("x"));
    const parts = nameComponents(c.subject);
    assert.equal(parts.get("CN"), "evil\\x0ASSL_INJECT=1\\x0ACN=admin");
    assert.equal(parts.get("OU"), "b\\/c");
    assert.deepEqual([...parts.keys()].sort(), ["CN", "OU"]);
    assert.equal(oneLine(c.subject), "/CN=evil\\x0ASSL_INJECT=1\\x0ACN=admin/OU=a/OU=b\\/c");
  } finally {
    await dir.cleanup();
  }
});
