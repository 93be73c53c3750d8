/**
 * $CADIR (s6-networking's): a directory of trust anchors, one certificate
 * per file, PEM or DER, for verifying client certificates, read as an
 * addition to $CAFILE's. Hashed-name links (c_rehash) are followed and the
 * duplicates they make dropped.
 */
import { X509Certificate } from "node:crypto";
import { CredentialError } from "./credentials.ts";
import { VerifiableCert } from "./verify.ts";

/** The certificates of a CA directory, as the two forms ServerCredentials keeps. */
export interface CaDir {
  /** For the environment and node:tls. */
  cas: X509Certificate[];
  /** For verification (lib/tls/verify.ts). */
  trusted: VerifiableCert[];
}

/** The most files looked at in a CA directory (Debian's /etc/ssl/certs holds a few hundred). */
export const CA_DIR_MAX_FILES = 10000;

/** The certificates in one file: its PEM blocks, or the whole file as one DER certificate. */
function certificatesOf(bytes: Uint8Array): X509Certificate[] {
  const text = new TextDecoder("latin1").decode(bytes);
  const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  try {
    if (pems) return pems.map((p) => new X509Certificate(p));
    return [new X509Certificate(bytes)];
  } catch {
    return [];
  }
}

/**
 * Reads every file of dir (following links) and keeps the certificates in
 * them; other files are passed over. Throws CredentialError("ca") when the
 * directory cannot be read or holds no certificate.
 */
export async function loadCaDir(dir: string): Promise<CaDir> {
  const cas: X509Certificate[] = [];
  const trusted: VerifiableCert[] = [];
  const seen = new Set<string>();
  let files = 0;
  try {
    for await (const e of Deno.readDir(dir)) {
      if (++files > CA_DIR_MAX_FILES) break;
      if (e.isDirectory) continue;
      let bytes: Uint8Array;
      try {
        bytes = await Deno.readFile(`${dir}/${e.name}`);
      } catch {
        continue; // a dangling link, a file we may not read
      }
      for (const c of certificatesOf(bytes)) {
        if (seen.has(c.fingerprint256)) continue;
        let v: VerifiableCert;
        try {
          v = VerifiableCert.fromDer(new Uint8Array(c.raw));
        } catch {
          continue;
        }
        seen.add(c.fingerprint256);
        cas.push(c);
        trusted.push(v);
      }
    }
  } catch (e) {
    throw new CredentialError("ca", `cannot read CA directory ${dir}: ${(e as Error).message}`);
  }
  if (cas.length === 0) throw new CredentialError("ca", `no CA certificate in ${dir}`);
  return { cas, trusted };
}
