/**
 * sslserver's credentials, as ucspi-ssl reads them: the files named by
 * $CERTFILE, $CERTCHAINFILE, $KEYFILE, $CAFILE (and $CIPHERS, $VERIFYDEPTH),
 * loaded and checked once at start and again on SIGHUP, into a node:tls
 * secure context plus the parsed CAs that client certificates are verified
 * against (lib/tls/verify.ts). Also the system CA bundle sslclient trusts
 * by default. Failures are CredentialErrors naming ucspi-ssl's message.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import tls from "node:tls";
import { VerifiableCert } from "./verify.ts";

/** Why credentials could not be loaded; the cli maps it to ucspi-ssl's message. */
export type CredentialFailure =
  | "certificate"
  | "chain"
  | "key"
  | "mismatch"
  | "ca"
  | "ciphers";

/** Credentials that failed to load. */
export class CredentialError extends Error {
  /** `failure` picks ucspi-ssl's message; `message` says what exactly went wrong. */
  constructor(readonly failure: CredentialFailure, message: string) {
    super(message);
    this.name = "CredentialError";
  }
}

/** ucspi-ssl's fatal text for each credential failure (after "prog: fatal: "). */
export const CREDENTIAL_MESSAGES: Record<CredentialFailure, string> = {
  certificate: "unable to load certificate",
  chain: "unable to load certificate chain file",
  key: "unable to load key",
  mismatch: "key does not match certificate",
  ca: "unable to load CA list",
  ciphers: "unable to set cipher list",
};

/** The files and settings a server reads, as ucspi-ssl names them in the environment. */
export interface ServerFiles {
  /** $CERTFILE: the server's certificate (PEM); ignored when certChainFile is set. */
  certFile?: string;
  /** $CERTCHAINFILE: the certificate and its chain (PEM, either order). */
  certChainFile?: string;
  /** $KEYFILE: the private key (PEM); default: the certificate file. */
  keyFile?: string;
  /** $CAFILE: the CAs trusted for client certificates (PEM). */
  caFile?: string;
  /** $CIPHERS: an OpenSSL cipher list. */
  ciphers?: string;
  /** How many CA certificates above the client's may be used (ucspi-ssl $VERIFYDEPTH). */
  verifyDepth: number;
  /** The key's password (sslserver -3 reads it from descriptor 3). */
  passphrase?: string;
}

/** $CERTFILE, $CERTCHAINFILE, $KEYFILE, $CAFILE, $CIPHERS, $VERIFYDEPTH; empty means unset. */
export function serverFilesFromEnv(env: (name: string) => string | undefined): ServerFiles {
  const get = (n: string) => {
    const v = env(n);
    return v === undefined || v === "" ? undefined : v;
  };
  const depth = get("VERIFYDEPTH");
  return {
    certFile: get("CERTFILE"),
    certChainFile: get("CERTCHAINFILE"),
    keyFile: get("KEYFILE"),
    caFile: get("CAFILE"),
    ciphers: get("CIPHERS"),
    verifyDepth: depth === undefined ? 1 : Math.max(0, parseInt(depth, 10) || 0),
  };
}

/** Loaded, checked server credentials. */
export interface ServerCredentials {
  /** The certificate chain, key, CAs and ciphers, ready for node:tls. */
  context: tls.SecureContext;
  /** The server's own certificate. */
  cert: X509Certificate;
  /** CAs trusted for client certificates ($CAFILE), empty when none. */
  cas: X509Certificate[];
  /** The same CAs, parsed for verification. */
  trusted: VerifiableCert[];
  /**
   * ServerFiles.verifyDepth: how many CAs may stand between a client certificate and a trusted one.
   */
  verifyDepth: number;
}

/** The PEM certificates in text, in file order. */
export function pemCertificates(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** The first PEM private key block in text (a file may hold certificates too). */
function privateKeyPem(text: string | null): string | null {
  if (text === null) return null;
  const m = /-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]+?-----END \1PRIVATE KEY-----/.exec(text);
  return m ? m[0] : null;
}

async function readText(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return null;
  }
}

function certsOf(text: string | null): X509Certificate[] | null {
  if (text === null) return null;
  const pems = pemCertificates(text);
  if (pems.length === 0) return null;
  try {
    return pems.map((p) => new X509Certificate(p));
  } catch {
    return null;
  }
}

/**
 * Orders a chain leaf first: the certificate matching the key, then each
 * issuer in turn (ucspi-ssl's chain files come in either order).
 */
function orderChain(certs: X509Certificate[], leaf: X509Certificate): X509Certificate[] {
  const out = [leaf];
  const left = certs.filter((c) => c !== leaf);
  let cur = leaf;
  while (left.length) {
    const i = left.findIndex((c) => cur.checkIssued(c) && c !== cur);
    if (i < 0) break;
    cur = left.splice(i, 1)[0];
    out.push(cur);
    if (cur.checkIssued(cur)) break; // self-signed root: the end
  }
  return out.concat(left);
}

/**
 * Reads and checks the server's certificate (or chain), key and CA list as
 * ucspi-ssl does at start (and on SIGHUP). Throws CredentialError.
 */
export async function loadServerCredentials(files: ServerFiles): Promise<ServerCredentials> {
  const chainMode = files.certChainFile !== undefined;
  const certPath = files.certChainFile ?? files.certFile;
  const failCert: CredentialFailure = chainMode ? "chain" : "certificate";
  if (certPath === undefined) throw new CredentialError(failCert, "no certificate file given");
  const certs = certsOf(await readText(certPath));
  if (!certs) throw new CredentialError(failCert, `cannot read certificates from ${certPath}`);
  const keyPath = files.keyFile ?? certPath;
  const keyText = privateKeyPem(await readText(keyPath));
  let key;
  try {
    if (keyText === null) throw new Error("unreadable");
    key = createPrivateKey({ key: keyText, format: "pem", passphrase: files.passphrase });
  } catch {
    throw new CredentialError("key", `cannot read a private key from ${keyPath}`);
  }
  const leaf = certs.find((c) => c.checkPrivateKey(key));
  if (!leaf) throw new CredentialError("mismatch", "key does not match certificate");
  const chain = chainMode ? orderChain(certs, leaf) : [leaf];
  let cas: X509Certificate[] = [];
  let trusted: VerifiableCert[] = [];
  let caPem: string | undefined;
  if (files.caFile !== undefined) {
    const text = await readText(files.caFile);
    const got = certsOf(text);
    if (!got) throw new CredentialError("ca", `cannot read CA certificates from ${files.caFile}`);
    try {
      trusted = got.map((c) => VerifiableCert.fromDer(new Uint8Array(c.raw)));
    } catch (e) {
      throw new CredentialError("ca", `${files.caFile}: ${(e as Error).message}`);
    }
    cas = got;
    caPem = pemCertificates(text!).join("\n");
  }
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext({
      cert: chain.map((c) => c.toString()).join("\n"),
      key: keyText!,
      passphrase: files.passphrase,
      ca: caPem,
      ciphers: files.ciphers,
    });
  } catch (e) {
    throw new CredentialError(files.ciphers ? "ciphers" : "certificate", (e as Error).message);
  }
  return { context, cert: leaf, cas, trusted, verifyDepth: files.verifyDepth };
}

/** The system's CA bundle (Debian's ca-certificates), if any. */
export async function systemCaBundle(): Promise<string | undefined> {
  for (
    const p of [
      "/etc/ssl/certs/ca-certificates.crt",
      "/etc/pki/tls/certs/ca-bundle.crt",
      "/etc/ssl/cert.pem",
    ]
  ) {
    const t = await readText(p);
    if (t) return t;
  }
  return undefined;
}
