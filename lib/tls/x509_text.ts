/**
 * An X.509 certificate's fields as text, the way OpenSSL prints them and
 * ucspi-ssl puts them in the environment: names in X509_NAME_oneline's form
 * and by component, algorithm names, the serial in decimal, the PEM text.
 *
 * Distinguished names are formatted as OpenSSL's X509_NAME_oneline
 * does (what ucspi-ssl's SSL_*_S_DN and SSL_*_I_DN are): "/" before each
 * RDN, "+" between the attributes of a multi-valued RDN, the attribute's
 * OpenSSL short name (or its dotted OID), "=", then the value's bytes with
 * every byte below 0x20 or above 0x7e written as \xHH and "/" and "+"
 * preceded by a backslash. All results are byte strings (lib/core/bytes.ts).
 */
import { byteString } from "../core/bytes.ts";
import type { NameEntry } from "./x509.ts";

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
