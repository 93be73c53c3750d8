/**
 * X.509 certificates read from their DER bytes (lib/tls/der.ts): the fields
 * ucspi-ssl puts in the environment (names, serial, validity, algorithms)
 * and the ones certificate verification needs (lib/tls/verify.ts).
 *
 * Distinguished names are formatted here as OpenSSL's X509_NAME_oneline
 * does (what ucspi-ssl's SSL_*_S_DN and SSL_*_I_DN are): "/" before each
 * RDN, "+" between the attributes of a multi-valued RDN, the attribute's
 * OpenSSL short name (or its dotted OID), "=", then the value's bytes with
 * every byte below 0x20 or above 0x7e written as \xHH and "/" and "+"
 * preceded by a backslash. All results are byte strings (lib/core/bytes.ts).
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

/** OpenSSL's short names (OBJ_nid2sn) for the attributes names carry. */
const SHORT_NAMES: Record<string, string> = {
  "2.5.4.3": "CN",
  "2.5.4.4": "SN",
  "2.5.4.5": "serialNumber",
  "2.5.4.6": "C",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.9": "street",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  "2.5.4.12": "title",
  "2.5.4.13": "description",
  "2.5.4.15": "businessCategory",
  "2.5.4.16": "postalAddress",
  "2.5.4.17": "postalCode",
  "2.5.4.18": "postOfficeBox",
  "2.5.4.20": "telephoneNumber",
  "2.5.4.41": "name",
  "2.5.4.42": "GN",
  "2.5.4.43": "initials",
  "2.5.4.44": "generationQualifier",
  "2.5.4.45": "x500UniqueIdentifier",
  "2.5.4.46": "dnQualifier",
  "2.5.4.51": "houseIdentifier",
  "2.5.4.65": "pseudonym",
  "2.5.4.72": "role",
  "2.5.4.97": "organizationIdentifier",
  "1.2.840.113549.1.9.1": "emailAddress",
  "1.2.840.113549.1.9.2": "unstructuredName",
  "0.9.2342.19200300.100.1.1": "UID",
  "0.9.2342.19200300.100.1.25": "DC",
  "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
  "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
  "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
};

/** OpenSSL's long names (OBJ_nid2ln) of signature and key algorithms (SSL_*_A_SIG, _A_KEY). */
const LONG_NAMES: Record<string, string> = {
  "1.2.840.113549.1.1.1": "rsaEncryption",
  "1.2.840.113549.1.1.4": "md5WithRSAEncryption",
  "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
  "1.2.840.113549.1.1.10": "rsassaPss",
  "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
  "1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
  "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
  "1.2.840.113549.1.1.14": "sha224WithRSAEncryption",
  "1.2.840.10045.2.1": "id-ecPublicKey",
  "1.2.840.10045.4.1": "ecdsa-with-SHA1",
  "1.2.840.10045.4.3.1": "ecdsa-with-SHA224",
  "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
  "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
  "1.2.840.10045.4.3.4": "ecdsa-with-SHA512",
  "1.2.840.10040.4.1": "dsaEncryption",
  "1.2.840.10040.4.3": "dsaWithSHA1",
  "2.16.840.1.101.3.4.3.1": "dsa_with_SHA224",
  "2.16.840.1.101.3.4.3.2": "dsa_with_SHA256",
  "1.3.101.112": "ED25519",
  "1.3.101.113": "ED448",
};

/** An algorithm's OpenSSL long name, or "UNKNOWN" (as ucspi-ssl prints an unknown one). */
export function algorithmName(oid: string): string {
  return LONG_NAMES[oid] ?? "UNKNOWN";
}

/**
 * An attribute's name in the one-line form: the short name, else the dotted OID (79 chars at most,
 * as OpenSSL's buffer).
 */
export function attributeName(oid: string): string {
  return SHORT_NAMES[oid] ?? oid.slice(0, 79);
}

/**
 * The bytes of a value that OpenSSL prints (a GeneralString of 4-byte units with only the last byte
 * set shows those).
 */
function printedBytes(e: NameEntry): Uint8Array {
  const q = e.value;
  if (e.tag !== 0x1b || q.length % 4 !== 0) return q;
  let wide = false;
  for (let j = 0; j < q.length; j++) if ((j & 3) !== 3 && q[j] !== 0) wide = true;
  if (wide) return q;
  const out = new Uint8Array(q.length / 4);
  for (let j = 0; j < out.length; j++) out[j] = q[4 * j + 3];
  return out;
}

/** A value's bytes escaped as in the one-line form (a byte string of printable ASCII). */
export function escapeValue(e: NameEntry): string {
  let s = "";
  for (const n of printedBytes(e)) {
    if (n < 0x20 || n > 0x7e) s += "\\x" + n.toString(16).toUpperCase().padStart(2, "0");
    else if (n === 0x2f || n === 0x2b) s += "\\" + String.fromCharCode(n);
    else s += String.fromCharCode(n);
  }
  return s;
}

/** A name in OpenSSL's one-line form ("/C=DE/O=Example/CN=a+UID=b"); "" for an empty name. */
export function oneLine(name: NameEntry[]): string {
  let s = "";
  let prev = -1;
  for (const e of name) {
    s += (e.set === prev ? "+" : "/") + attributeName(e.oid) + "=" + escapeValue(e);
    prev = e.set;
  }
  return s;
}

/**
 * The per-attribute variables ucspi-ssl sets (SSL_x_S_DN_CN and so on), by
 * their suffix, with the attribute's OID. ucspi-ssl sets no others.
 */
export const DN_COMPONENTS: Array<[string, string]> = [
  ["C", "2.5.4.6"],
  ["ST", "2.5.4.8"],
  ["L", "2.5.4.7"],
  ["O", "2.5.4.10"],
  ["OU", "2.5.4.11"],
  ["CN", "2.5.4.3"],
  ["T", "2.5.4.12"],
  ["I", "2.5.4.43"],
  ["G", "2.5.4.42"],
  ["S", "2.5.4.4"],
  ["D", "2.5.4.13"],
  ["UID", "2.5.4.45"],
  ["Email", "1.2.840.113549.1.9.1"],
];

/**
 * The component values of a name for the environment, by suffix: the
 * value escaped as in the one-line DN (so it never holds a NUL, newline or
 * other control byte); of several attributes of one type, the last (as
 * ucspi-ssl, which sets the variable once per attribute).
 */
export function nameComponents(name: NameEntry[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const [suffix, oid] of DN_COMPONENTS) {
    for (const e of name) if (e.oid === oid) out.set(suffix, escapeValue(e));
  }
  return out;
}

/** The serial number in decimal (ucspi-ssl's SSL_*_M_SERIAL; negative as "-n"). */
export function serialDecimal(serial: Uint8Array): string {
  let v = 0n;
  for (const b of serial) v = (v << 8n) | BigInt(b);
  if (serial.length > 0 && serial[0] & 0x80) v -= 1n << BigInt(8 * serial.length);
  return v.toString(10);
}

/** The PEM text of a DER certificate, ending with a newline (as PEM_write_bio_X509). */
export function pemOf(der: Uint8Array): string {
  let b64 = "";
  for (let i = 0; i < der.length; i += 3072) {
    b64 += btoa(byteString(der.subarray(i, i + 3072)));
  }
  let s = "-----BEGIN CERTIFICATE-----\n";
  for (let i = 0; i < b64.length; i += 64) s += b64.slice(i, i + 64) + "\n";
  return s + "-----END CERTIFICATE-----\n";
}
