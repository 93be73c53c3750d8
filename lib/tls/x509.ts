/**
 * X.509 certificates read from their DER bytes (lib/tls/der.ts): the fields
 * ucspi-ssl puts in the environment (names, serial, validity, algorithms)
 * and the ones certificate verification needs (lib/tls/verify.ts). Their
 * text forms (the one-line DN, algorithm names, serial, PEM) are
 * lib/tls/x509_text.ts's.
 */
import { byteString } from "../core/bytes.ts";
import {
  bitStringBytes,
  booleanOf,
  children,
  contents,
  DerError,
  encoding,
  expectTag,
  isConstructed,
  oidText,
  readOnly,
  smallInteger,
  type Tlv,
} from "./der.ts";

export { DerError } from "./der.ts";

/** One attribute of a name: OID, the value's ASN.1 tag and bytes, and its RDN's index. */
export interface NameEntry {
  /** The attribute type's OID, dotted ("2.5.4.3" for CN). */
  oid: string;
  /** The value's identifier octet (0x0c UTF8String, 0x13 PrintableString, ...). */
  tag: number;
  /** The value's content octets (the whole encoding for a constructed value). */
  value: Uint8Array;
  /** Index of the RDN (SET) the attribute belongs to. */
  set: number;
}

/** The fields of a certificate that the tools use. */
export interface Certificate {
  /** The whole certificate. */
  der: Uint8Array;
  /** 1, 2 or 3 (ucspi-ssl's SSL_*_M_VERSION). */
  version: number;
  /** The serial number's content octets (two's complement, big-endian). */
  serial: Uint8Array;
  /** OID of the signature algorithm named in the signed part. */
  signatureOid: string;
  /** The issuer's name, attribute by attribute in DER order. */
  issuer: NameEntry[];
  /** The subject's name, attribute by attribute in DER order. */
  subject: NameEntry[];
  /** Start of the validity period. */
  notBefore: Date;
  /** End of the validity period. */
  notAfter: Date;
  /** The validity dates as OpenSSL prints them ("Jan  2 03:04:05 2026 GMT"). */
  notBeforeText: string;
  /** notAfter as OpenSSL prints it. */
  notAfterText: string;
  /** OID of the subject public key's algorithm. */
  keyOid: string;
  /** Extensions by OID (the first of each). */
  extensions: Map<string, { critical: boolean; value: Uint8Array }>;
  /** basicConstraints, when present: cA and pathLenConstraint (-1: none). */
  basicConstraints?: { ca: boolean; pathLen: number };
  /** keyUsage bits when present (bit 0 = digitalSignature = 0x80 of the first octet). */
  keyUsage?: number;
  /** extendedKeyUsage OIDs when present. */
  extKeyUsage?: string[];
  /** Netscape certificate type bits when present (0x80 SSL client ... 0x04 SSL CA). */
  nsCertType?: number;
  /** subjectKeyIdentifier (hex), when present. */
  subjectKeyId?: string;
  /** authorityKeyIdentifier's keyIdentifier (hex), when present. */
  authorityKeyId?: string;
}

/** The most attributes a name may have: far more than any real certificate. */
const MAX_NAME_ENTRIES = 256;

function hex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** Parses a Name (SEQUENCE OF SET OF AttributeTypeAndValue). */
export function parseName(t: Tlv): NameEntry[] {
  expectTag(t, 0x30, "name");
  const out: NameEntry[] = [];
  let set = 0;
  for (const rdn of children(t)) {
    expectTag(rdn, 0x31, "relative distinguished name");
    for (const atv of children(rdn)) {
      expectTag(atv, 0x30, "attribute");
      const parts = children(atv);
      if (parts.length !== 2) throw new DerError("attribute: not a type and a value");
      const v = parts[1];
      if ((v.tag & 0xc0) !== 0) throw new DerError("attribute value: not a universal type");
      if (out.length >= MAX_NAME_ENTRIES) throw new DerError("name has too many attributes");
      out.push({
        oid: oidText(parts[0]),
        tag: v.tag,
        value: isConstructed(v.tag) ? encoding(v) : contents(v),
        set,
      });
    }
    set++;
  }
  return out;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function digits(s: string, from: number, n: number): number {
  const part = s.slice(from, from + n);
  if (!/^[0-9]+$/.test(part) || part.length !== n) throw new DerError("bad time");
  return parseInt(part, 10);
}

/** A UTCTime or GeneralizedTime: the instant and OpenSSL's printed form. */
function parseTime(t: Tlv): { date: Date; text: string } {
  const s = byteString(contents(t));
  let y: number, p: number;
  if (t.tag === 0x17) {
    y = digits(s, 0, 2);
    y += y < 50 ? 2000 : 1900;
    p = 2;
  } else if (t.tag === 0x18) {
    y = digits(s, 0, 4);
    p = 4;
  } else throw new DerError("time: unexpected tag");
  const mo = digits(s, p, 2), d = digits(s, p + 2, 2);
  const h = digits(s, p + 4, 2), mi = digits(s, p + 6, 2), sec = digits(s, p + 8, 2);
  let rest = s.slice(p + 10);
  let frac = "";
  if (t.tag === 0x18) {
    const m = /^\.[0-9]+/.exec(rest);
    if (m) {
      frac = m[0];
      rest = rest.slice(frac.length);
    }
  }
  if (rest !== "Z") throw new DerError("time: not in UTC");
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59) {
    throw new DerError("time out of range");
  }
  const ms = Date.UTC(y, mo - 1, d, h, mi, sec);
  const two = (n: number) => String(n).padStart(2, "0");
  const text = `${MONTHS[mo - 1]} ${String(d).padStart(2, " ")} ${two(h)}:${two(mi)}:${two(sec)}` +
    `${frac} ${y} GMT`;
  return { date: new Date(ms), text };
}

function algorithmOid(t: Tlv): string {
  expectTag(t, 0x30, "algorithm");
  const parts = children(t);
  if (parts.length < 1) throw new DerError("algorithm: empty");
  return oidText(parts[0]);
}

function bitsOf(t: Tlv): number {
  const b = bitStringBytes(t);
  return ((b[0] ?? 0) << 8) | (b[1] ?? 0);
}

/** Reads the extensions that verification and the environment use. */
function decodeExtensions(cert: Certificate): void {
  const get = (oid: string) => {
    const e = cert.extensions.get(oid);
    return e ? readOnly(e.value) : undefined;
  };
  const bc = get("2.5.29.19");
  if (bc) {
    expectTag(bc, 0x30, "basicConstraints");
    let ca = false, pathLen = -1;
    for (const c of children(bc)) {
      if (c.tag === 0x01) ca = booleanOf(c);
      else if (c.tag === 0x02) pathLen = smallInteger(c);
      else throw new DerError("basicConstraints: unexpected field");
    }
    cert.basicConstraints = { ca, pathLen };
  }
  const ku = get("2.5.29.15");
  if (ku) cert.keyUsage = bitsOf(ku);
  const eku = get("2.5.29.37");
  if (eku) {
    expectTag(eku, 0x30, "extKeyUsage");
    cert.extKeyUsage = children(eku).map(oidText);
  }
  const ns = get("2.16.840.1.113730.1.1");
  if (ns) cert.nsCertType = bitsOf(ns) >> 8;
  const ski = get("2.5.29.14");
  if (ski) cert.subjectKeyId = hex(contents(expectTag(ski, 0x04, "subjectKeyIdentifier")));
  const aki = get("2.5.29.35");
  if (aki) {
    expectTag(aki, 0x30, "authorityKeyIdentifier");
    for (const c of children(aki)) if (c.tag === 0x80) cert.authorityKeyId = hex(contents(c));
  }
}

/** Parses a DER certificate. Throws DerError when it is not one. */
export function parseCertificate(der: Uint8Array): Certificate {
  const top = expectTag(readOnly(der), 0x30, "certificate");
  const [tbs, sigAlg, sig] = children(top);
  if (!tbs || !sigAlg || !sig) throw new DerError("certificate: missing parts");
  expectTag(tbs, 0x30, "tbsCertificate");
  algorithmOid(sigAlg);
  expectTag(sig, 0x03, "signature");
  const f = children(tbs);
  let i = 0;
  let version = 1;
  if (f[i]?.tag === 0xa0) {
    const inner = children(f[i]);
    if (inner.length !== 1) throw new DerError("version: malformed");
    version = smallInteger(inner[0]) + 1;
    if (version > 3) throw new DerError("version: unknown");
    i++;
  }
  const need = (what: string) => {
    const t = f[i++];
    if (!t) throw new DerError(`tbsCertificate: no ${what}`);
    return t;
  };
  const serialT = expectTag(need("serial"), 0x02, "serial");
  const serial = contents(serialT);
  if (serial.length === 0) throw new DerError("serial: empty");
  const signatureOid = algorithmOid(need("signature"));
  const issuer = parseName(need("issuer"));
  const validity = children(expectTag(need("validity"), 0x30, "validity"));
  if (validity.length !== 2) throw new DerError("validity: malformed");
  const nb = parseTime(validity[0]), na = parseTime(validity[1]);
  const subject = parseName(need("subject"));
  const spki = children(expectTag(need("subjectPublicKeyInfo"), 0x30, "subjectPublicKeyInfo"));
  if (spki.length !== 2) throw new DerError("subjectPublicKeyInfo: malformed");
  const keyOid = algorithmOid(spki[0]);
  const extensions = new Map<string, { critical: boolean; value: Uint8Array }>();
  for (; i < f.length; i++) {
    if (f[i].tag === 0xa3) {
      const list = children(f[i]);
      if (list.length !== 1) throw new DerError("extensions: malformed");
      for (const ext of children(expectTag(list[0], 0x30, "extensions"))) {
        const p = children(expectTag(ext, 0x30, "extension"));
        if (p.length < 2 || p.length > 3) throw new DerError("extension: malformed");
        const oid = oidText(p[0]);
        const critical = p.length === 3 ? booleanOf(p[1]) : false;
        const value = contents(expectTag(p[p.length - 1], 0x04, "extension value"));
        if (extensions.has(oid)) throw new DerError("extension: duplicate");
        extensions.set(oid, { critical, value });
      }
    } else if (f[i].tag !== 0x81 && f[i].tag !== 0x82) {
      throw new DerError("tbsCertificate: unexpected field");
    }
  }
  const cert: Certificate = {
    der,
    version,
    serial,
    signatureOid,
    issuer,
    subject,
    notBefore: nb.date,
    notAfter: na.date,
    notBeforeText: nb.text,
    notAfterText: na.text,
    keyOid,
    extensions,
  };
  decodeExtensions(cert);
  return cert;
}
