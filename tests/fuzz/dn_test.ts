/**
 * Fuzz: certificate and Name parsing (lib/tls/der.ts, lib/tls/x509.ts), DN
 * formatting and chain verification (lib/tls/verify.ts) on random and
 * mutated DER, starting from certificates made by openssl (hostile names:
 * newline, control and 8-bit bytes, BMPString, multi-valued RDNs; many
 * extensions; GeneralizedTime; Ed25519). Never throws but DerError; the
 * strings made stay within a bound of the input's size.
 */
import { DerError, readOnly } from "../../lib/tls/der.ts";
import { VerifiableCert, verifyClientChain } from "../../lib/tls/verify.ts";
import { parseCertificate, parseName } from "../../lib/tls/x509.ts";
import {
  algorithmName,
  nameComponents,
  oneLine,
  pemOf,
  serialDecimal,
} from "../../lib/tls/x509_text.ts";
import { below, type FuzzTarget, fuzzTest, type Rand, randomBytes } from "../support/fuzz.ts";

/** Made by `openssl req -x509` (see the module comment), as DER in base64. */
const SEED_CERTS = [
  "MIICujCCAmGgAwIBAgIUEsWytNBEKAKQE1oHO4a2aOb93EcwCgYIKoZIzj0EAwIwgYkxIzAhBgNVBAMUGmV2aWwKU1NMX0lOSkVDVD0xCkNOPWFkbWluMRcwFQYDVQQKFA5jdGwBG1szMW1/IGVuZDEcMBoGA1UECxQTbGF0aW4g5Pb8IC8gKyA9IFwgeDEPMA0GA1UECxMGc2Vjb25kMRowGAYJKoZIhvcNAQkBFgthQGIuZXhhbXBsZTAeFw0yNjEyMDIxODM5MDBaFw0yNjEyMDUxODM5MDBaMIGJMSMwIQYDVQQDFBpldmlsClNTTF9JTkpFQ1Q9MQpDTj1hZG1pbjEXMBUGA1UEChQOY3RsARtbMzFtfyBlbmQxHDAaBgNVBAsUE2xhdGluIOT2/CAvICsgPSBcIHgxDzANBgNVBAsTBnNlY29uZDEaMBgGCSqGSIb3DQEJARYLYUBiLmV4YW1wbGUwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATGowc3K8y6EfymJqKPabMxO2PP20igWMHwzFRNnL25iicNClNvmd5gI6efQwFzXEs4f799uGSqgnpEmC27so07o4GkMIGhMBIGA1UdEwEB/wQIMAYBAf8CAQIwDgYDVR0PAQH/BAQDAgKEMB0GA1UdJQQWMBQGCCsGAQUFBwMCBggrBgEFBQcDATARBglghkgBhvhCAQEEBAMCAoQwGgYDVR0RBBMwEYIJeC5leGFtcGxlhwR/AAABMA4GAyoDBAEB/wQEDAJ6ejAdBgNVHQ4EFgQUIDn3sIumkB8SOQGc1xFgQll1VPgwCgYIKoZIzj0EAwIDRwAwRAIge/HGx/TnqjAyfEUVqip+1oSeWoejCGNzsWohdou5S80CIA0wW0ZDrJfDMhVuF8kDPmNpBKf9nw8283jHyjjrAsfC",
  "MIIBDjCBwQIUR+Q0axoSCwhFptHLABJi2FByx3owBQYDK2VwMCkxEzARBgNVBAMeCgBiAG0AcAAgAOQxEjAQBgoJkiaJk/IsZAEBHgIAdTAgFw0yNjEyMDIxODM5MDBaGA8yMDgxMDkwNDE4MzkwMFowKTETMBEGA1UEAx4KAGIAbQBwACAA5DESMBAGCgmSJomT8ixkAQEeAgB1MCowBQYDK2VwAyEAtiekPu8111K8TlLCpZLK/c6jNFBwpsQkHU9hejbwT2YwBQYDK2VwA0EAg5ocjKXIRPPIC5uANWR0Ma7a0cUtp5mC/3XXOc/tf1BMQ1JoDodzzF1V84ILMZpD7jDH7XM+Rkw++sFBNKYsCw==",
  "MIIB1TCCAXugAwIBAgIIAICqu8zd7v8wCgYIKoZIzj0EAwIwRjELMAkGA1UEBhMCREUxHjAIBgNVBAUTATEwEgYDVQQDDAtNeGMzeGJjbGxlcjEXMBUGCgmSJomT8ixkARkWB2V4YW1wbGUwHhcNMjYxMjAyMTgzOTAwWhcNMjYxMjA1MTgzOTAwWjBGMQswCQYDVQQGEwJERTEeMAgGA1UEBRMBMTASBgNVBAMMC014YzN4YmNsbGVyMRcwFQYKCZImiZPyLGQBGRYHZXhhbXBsZTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABHODbZwFOoS1sby2vZNGxpP6cq7UBALLM3v99GwH9mdxoZG7X0E8qbS7Mno+MDRD53ASeip+qlNyfdntz5Vs0XSjUzBRMB0GA1UdDgQWBBTDr1traSB2fNHwWBks4yoIOKfWpTAfBgNVHSMEGDAWgBTDr1traSB2fNHwWBks4yoIOKfWpTAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQD3cAqudopJR/te1dYXlWgPGl02EYJy5EuvYaywSXBsrgIgGcsaO7zlryTp0yjoYmTgwILccQIHfF9HNbMZ2iO1ujI=",
];

const OIDS = [
  [0x55, 0x04, 0x03],
  [0x55, 0x04, 0x0a],
  [0x55, 0x04, 0x2d],
  [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
  [0x2a, 0x03, 0x04],
  [0x81, 0x80, 0x80, 0x01],
];
const TAGS = [0x0c, 0x13, 0x14, 0x16, 0x1b, 0x1c, 0x1e, 0x04, 0x30, 0x02];

function tlv(tag: number, body: number[]): number[] {
  const n = body.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return [tag, ...len, ...body];
}

/** A random Name: RDNs of attributes with chosen OIDs, string types and bytes. */
function randomName(rand: Rand): Uint8Array {
  const rdns: number[] = [];
  for (let i = below(rand, 5); i > 0; i--) {
    const atvs: number[] = [];
    for (let j = 1 + below(rand, 3); j > 0; j--) {
      const value = Array.from(randomBytes(rand, below(rand, 24)));
      atvs.push(
        ...tlv(0x30, [
          ...tlv(0x06, OIDS[below(rand, OIDS.length)]),
          ...tlv(TAGS[below(rand, TAGS.length)], value),
        ]),
      );
    }
    rdns.push(...tlv(0x31, atvs));
  }
  return new Uint8Array(tlv(0x30, rdns));
}

function b64(s: string): Uint8Array {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

let seedCerts: VerifiableCert[] | undefined;
/** The seeds as possible issuers (so mutated certificates reach the signature check). */
function anchors(): VerifiableCert[] {
  return seedCerts ??= SEED_CERTS.map((s) => VerifiableCert.fromDer(b64(s)));
}

export const target: FuzzTarget = {
  name: "dn",
  seeds: SEED_CERTS.map(b64),
  generate: randomName,
  maxLength: 4096,
  run: (input) => {
    let out = 0;
    try {
      const c = parseCertificate(input);
      out += oneLine(c.subject).length + oneLine(c.issuer).length;
      for (const v of nameComponents(c.subject).values()) out += v.length;
      for (const v of nameComponents(c.issuer).values()) out += v.length;
      out += serialDecimal(c.serial).length + pemOf(c.der).length;
      out += algorithmName(c.signatureOid).length + algorithmName(c.keyOid).length;
      const v = new VerifiableCert(c);
      const verdict = verifyClientChain(v, [v, ...anchors()], [v, ...anchors()], 2, new Date(0));
      if (!/^(SUCCESS|FAILED:.+)$/.test(verdict)) throw new Error(`verdict ${verdict}`);
    } catch (e) {
      if (!(e instanceof DerError)) throw e;
    }
    const name = parseName(readOnly(input));
    const line = oneLine(name);
    out += line.length;
    // deno-lint-ignore no-control-regex
    if (/[\x00-\x1f\x7f-\uffff]/.test(line)) throw new Error(`unescaped byte in ${line}`);
    for (const v of nameComponents(name).values()) out += v.length;
    // every input byte becomes at most 4 (\xHH), per attribute an OID name of at most 80
    if (out > input.length * 16 + 4096) throw new Error(`made ${out} chars from ${input.length}`);
  },
  expected: (e) => e instanceof DerError,
};

fuzzTest(target);
