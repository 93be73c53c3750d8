/**
 * Client certificate verification as OpenSSL's X509_verify_cert does it for
 * purpose "sslclient" (what ucspi-ssl's sslserver gets from OpenSSL): build
 * the chain from the peer's certificate through the certificates it sent
 * and the trusted ones ($CAFILE; a trusted issuer is preferred) up to a
 * self-signed trusted certificate, at most `depth` certificates between the
 * leaf and that anchor (SSL_CTX_set_verify_depth); then, for each
 * certificate, critical extensions, CA status (basicConstraints CA:TRUE, and
 * keyCertSign when keyUsage is present), purpose (clientAuth when there is
 * an extended key usage; digitalSignature or keyAgreement for the leaf when
 * there is a key usage; Netscape cert type), pathLenConstraint; then every
 * signature and validity period. The reason texts are OpenSSL's.
 *
 * Not done (refused instead, so never more permissive): name constraints
 * (a CA carrying them fails the chain), proxy certificates. Not done at
 * all: revocation (ucspi-ssl does not load CRLs either), policies (off by
 * default in OpenSSL), security levels.
 */
import { X509Certificate } from "node:crypto";
import { type Certificate, type NameEntry, parseCertificate } from "./x509.ts";

/** A certificate ready for verification: parsed fields and (lazily) node's view for signatures. */
export class VerifiableCert {
  #node?: X509Certificate | null;
  /** `cert`: the parsed certificate. */
  constructor(readonly cert: Certificate) {}
  /** Parses DER; throws DerError. */
  static fromDer(der: Uint8Array): VerifiableCert {
    return new VerifiableCert(parseCertificate(der));
  }
  /** node:crypto's certificate (for its public key and signature check), null if it refuses it. */
  get node(): X509Certificate | null {
    if (this.#node === undefined) {
      try {
        this.#node = new X509Certificate(this.cert.der);
      } catch {
        this.#node = null;
      }
    }
    return this.#node;
  }
}

const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
const KU_DIGITAL_SIGNATURE = 0x8000;
const KU_KEY_AGREEMENT = 0x0800;
const KU_KEY_CERT_SIGN = 0x0400;
const NS_SSL_CLIENT = 0x80;
const NS_SSL_CA = 0x04;
const NS_ANY_CA = 0x07;
const NAME_CONSTRAINTS = "2.5.29.30";
const PROXY_CERT_INFO = "1.3.6.1.5.5.7.1.14";

/** The extensions OpenSSL knows (X509_supported_extension): others may not be critical. */
const SUPPORTED = new Set([
  "2.16.840.1.113730.1.1",
  "2.5.29.15",
  "2.5.29.17",
  "2.5.29.19",
  "2.5.29.32",
  "2.5.29.37",
  "1.3.6.1.5.5.7.1.7",
  "1.3.6.1.5.5.7.1.8",
  "2.5.29.36",
  PROXY_CERT_INFO,
  NAME_CONSTRAINTS,
  "2.5.29.33",
  "2.5.29.54",
  "1.3.6.1.5.5.7.1.24",
]);

const STRING_TAGS = new Set([0x0c, 0x13, 0x14, 0x16, 0x1a, 0x1c, 0x1e]);
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A value as OpenSSL compares names: text, whitespace trimmed and collapsed, ASCII lowercased. */
function canonValue(e: NameEntry): string {
  const hexOf = () => "#" + e.tag + ":" + Array.from(e.value).join(",");
  if (!STRING_TAGS.has(e.tag)) return hexOf();
  let text = "";
  const v = e.value;
  if (e.tag === 0x0c) {
    try {
      text = utf8.decode(v);
    } catch {
      return "\u0000bad" + hexOf(); // matches nothing but itself
    }
  } else if (e.tag === 0x1e) {
    if (v.length % 2) return "\u0000bad" + hexOf();
    for (let i = 0; i < v.length; i += 2) text += String.fromCharCode((v[i] << 8) | v[i + 1]);
  } else if (e.tag === 0x1c) {
    if (v.length % 4) return "\u0000bad" + hexOf();
    for (let i = 0; i < v.length; i += 4) {
      const cp = ((v[i] << 24) | (v[i + 1] << 16) | (v[i + 2] << 8) | v[i + 3]) >>> 0;
      if (cp > 0x10ffff) return "\u0000bad" + hexOf();
      text += String.fromCodePoint(cp);
    }
  } else {
    for (const b of v) text += String.fromCharCode(b);
  }
  return text.replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, "").replace(/[ \t\n\v\f\r]+/g, " ")
    .replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** A name's canonical form (OpenSSL's X509_NAME_cmp compares these). */
function canonName(name: NameEntry[]): string {
  const sets: string[][] = [];
  for (const e of name) (sets[e.set] ??= []).push(e.oid + "=" + JSON.stringify(canonValue(e)));
  return sets.filter((s) => s).map((s) => s.sort().join("+")).join("/");
}

const canonCache = new WeakMap<NameEntry[], string>();
function canon(name: NameEntry[]): string {
  let c = canonCache.get(name);
  if (c === undefined) canonCache.set(name, c = canonName(name));
  return c;
}

function sameName(a: NameEntry[], b: NameEntry[]): boolean {
  return canon(a) === canon(b);
}

function sameDer(a: Certificate, b: Certificate): boolean {
  if (a.der.length !== b.der.length) return false;
  for (let i = 0; i < a.der.length; i++) if (a.der[i] !== b.der[i]) return false;
  return true;
}

function selfIssued(c: Certificate): boolean {
  return sameName(c.subject, c.issuer);
}

function akidMatches(issuer: Certificate, subject: Certificate): boolean {
  return !subject.authorityKeyId || !issuer.subjectKeyId ||
    subject.authorityKeyId === issuer.subjectKeyId;
}

/** OpenSSL's EXFLAG_SS: self-issued, and its key identifiers agree. */
function selfSigned(c: Certificate): boolean {
  return selfIssued(c) && akidMatches(c, c);
}

function kuReject(c: Certificate, bits: number): boolean {
  return c.keyUsage !== undefined && (c.keyUsage & bits) === 0;
}

/** X509_check_issued: names and key identifiers (key usage is checked later, as a CA check). */
function issued(issuer: Certificate, subject: Certificate): boolean {
  return sameName(issuer.subject, subject.issuer) && akidMatches(issuer, subject);
}

function timeValid(c: Certificate, now: Date): boolean {
  return c.notBefore.getTime() <= now.getTime() && now.getTime() < c.notAfter.getTime();
}

/**
 * The issuer of cur in pool, not yet in the chain: the first valid now, else the one valid longest.
 */
function findIssuer(
  cur: VerifiableCert,
  pool: VerifiableCert[],
  chain: VerifiableCert[],
  now: Date,
): VerifiableCert | undefined {
  let best: VerifiableCert | undefined;
  for (const c of pool) {
    if (!issued(c.cert, cur.cert)) continue;
    if (chain.some((x) => sameDer(x.cert, c.cert))) continue;
    if (timeValid(c.cert, now)) return c;
    if (!best || c.cert.notAfter > best.cert.notAfter) best = c;
  }
  return best;
}

/** X509_check_ca: 0 not a CA, 1 basicConstraints CA, 3 v1 root, 4 keyUsage only, 5 Netscape CA. */
function caKind(c: Certificate): number {
  if (kuReject(c, KU_KEY_CERT_SIGN)) return 0;
  if (c.basicConstraints) return c.basicConstraints.ca ? 1 : 0;
  if (c.version === 1 && selfSigned(c)) return 3;
  if (c.keyUsage !== undefined) return 4;
  if (c.nsCertType !== undefined && (c.nsCertType & NS_ANY_CA)) return 5;
  return 0;
}

function xkuReject(c: Certificate): boolean {
  return c.extKeyUsage !== undefined && !c.extKeyUsage.includes(CLIENT_AUTH);
}

/** The signature of `subject` checks out with issuer's public key. */
function signedBy(subject: VerifiableCert, issuer: VerifiableCert): boolean {
  const s = subject.node, i = issuer.node;
  if (!s || !i) return false;
  try {
    return s.verify(i.publicKey);
  } catch {
    return false;
  }
}

const FAILED = (why: string) => `FAILED:${why}`;

/**
 * Verifies a peer's certificate for use as a TLS client certificate, as
 * OpenSSL with purpose sslclient, trusted certificates `trusted` ($CAFILE),
 * the other certificates the peer sent `untrusted`, and verify depth
 * `depth` (ucspi-ssl's $VERIFYDEPTH: how many certificates may stand between
 * the peer's and the self-signed trusted one). Returns "SUCCESS" or
 * "FAILED:" and OpenSSL's reason text.
 */
export function verifyClientChain(
  leaf: VerifiableCert,
  untrusted: VerifiableCert[],
  trusted: VerifiableCert[],
  depth: number,
  now: Date = new Date(),
): string {
  const maxLen = Math.max(depth, 0) + 2;
  const chain: VerifiableCert[] = [leaf];
  let trustedFrom = -1;
  if (selfSigned(leaf.cert)) {
    if (!trusted.some((t) => sameDer(t.cert, leaf.cert))) return FAILED("self-signed certificate");
    trustedFrom = 0;
  } else {
    for (;;) {
      const cur = chain[chain.length - 1];
      if (selfSigned(cur.cert)) {
        if (trusted.some((t) => sameDer(t.cert, cur.cert))) {
          trustedFrom = chain.length - 1;
          break;
        }
        return FAILED("self-signed certificate in certificate chain");
      }
      if (chain.length >= maxLen) return FAILED("certificate chain too long");
      const fromStore = findIssuer(cur, trusted, chain, now);
      if (fromStore) {
        chain.push(fromStore);
        if (trustedFrom < 0) trustedFrom = chain.length - 1;
        if (selfSigned(fromStore.cert)) break;
        continue;
      }
      // Above a trusted certificate only trusted ones may follow.
      if (trustedFrom >= 0) return FAILED("unable to get issuer certificate");
      const sent = findIssuer(cur, untrusted, chain, now);
      if (!sent) return FAILED("unable to get local issuer certificate");
      chain.push(sent);
    }
  }
  const n = chain.length;
  let plen = 0;
  for (let i = 0; i < n; i++) {
    const x = chain[i].cert;
    for (const [oid, e] of x.extensions) {
      if (e.critical && !SUPPORTED.has(oid)) return FAILED("unhandled critical extension");
    }
    if (x.extensions.has(PROXY_CERT_INFO)) {
      return FAILED("proxy certificates not allowed, please set the appropriate flag");
    }
    if (i > 0) {
      const kind = caKind(x);
      if (kind === 0 || (i + 1 < n && kind !== 1)) return FAILED("invalid CA certificate");
      if (xkuReject(x) || (kind === 5 && !(x.nsCertType! & NS_SSL_CA))) {
        return FAILED("unsuitable certificate purpose");
      }
      if (x.extensions.has(NAME_CONSTRAINTS)) return FAILED("name constraints not supported");
    } else {
      if (
        xkuReject(x) || kuReject(x, KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT) ||
        (x.nsCertType !== undefined && !(x.nsCertType & NS_SSL_CLIENT))
      ) return FAILED("unsuitable certificate purpose");
    }
    if (i > 1 && x.basicConstraints && x.basicConstraints.pathLen >= 0) {
      if (plen > x.basicConstraints.pathLen) return FAILED("path length constraint exceeded");
    }
    if (i > 0 && !selfIssued(x)) plen++;
  }
  // Signatures and dates, from the anchor down (its own signature is not checked).
  for (let i = n - 1; i >= 0; i--) {
    const x = chain[i];
    if (i < n - 1 && !signedBy(x, chain[i + 1])) return FAILED("certificate signature failure");
    if (x.cert.notBefore.getTime() > now.getTime()) return FAILED("certificate is not yet valid");
    if (x.cert.notAfter.getTime() <= now.getTime()) return FAILED("certificate has expired");
  }
  return "SUCCESS";
}
