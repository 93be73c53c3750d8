/**
 * The server name a TLS client asks for (SNI, RFC 6066 section 3), read
 * off its ClientHello before the handshake runs, so that ucspitlsd -k can
 * pick the certificate for that name and then hand the untouched bytes to
 * the handshake (acceptTls takes one set of credentials). Pure functions
 * over bytes, bounded: records of TLS 1.0-1.3 (RFC 8446 5.1), the
 * ClientHello possibly spread over several of them.
 */

/** The largest ClientHello looked at; a bigger one is handshaken without a name. */
export const CLIENT_HELLO_MAX = 65536;

/** What clientHelloName made of the bytes so far. */
export type HelloScan =
  /** The ClientHello is not complete yet: read more. */
  | { more: true }
  /** Done: the host name asked for (lower case), or null for none or not a ClientHello. */
  | { name: string | null };

const HANDSHAKE = 22;
const CLIENT_HELLO = 1;
const SERVER_NAME = 0;
const HOST_NAME = 0;
/** RFC 8446 5.1: a record's fragment is at most 2^14 bytes (+2048 for protected ones). */
const RECORD_MAX = 16384 + 2048;
const NONE: HelloScan = { name: null };

/**
 * Scans the first bytes a TLS client sent for the host name of its
 * server_name extension. Anything that is not a well-formed ClientHello
 * gives `{ name: null }` (the handshake then fails or goes on by itself);
 * so does a name that is not a plain DNS name (letters, digits, '-', '.',
 * '_'), which is never looked up.
 */
export function clientHelloName(data: Uint8Array): HelloScan {
  // the handshake message, reassembled from the records' fragments
  const parts: Uint8Array[] = [];
  let have = 0;
  let at = 0;
  let want = -1;
  while (want < 0 || have < want) {
    if (at + 5 > data.length) return { more: true };
    if (data[at] !== HANDSHAKE || data[at + 1] !== 3) return NONE;
    const len = (data[at + 3] << 8) | data[at + 4];
    if (len === 0 || len > RECORD_MAX) return NONE;
    if (at + 5 + len > data.length) {
      return at + 5 + len > CLIENT_HELLO_MAX ? NONE : { more: true };
    }
    parts.push(data.subarray(at + 5, at + 5 + len));
    have += len;
    at += 5 + len;
    if (want < 0 && have >= 4) {
      const head = concat(parts, 4);
      if (head[0] !== CLIENT_HELLO) return NONE;
      want = 4 + ((head[1] << 16) | (head[2] << 8) | head[3]);
      if (want > CLIENT_HELLO_MAX) return NONE;
    }
  }
  return { name: serverName(concat(parts, want).subarray(4)) };
}

function concat(parts: Uint8Array[], n: number): Uint8Array {
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    if (at >= n) break;
    const take = p.subarray(0, n - at);
    out.set(take, at);
    at += take.length;
  }
  return out;
}

/** The host name in a ClientHello body, or null. */
function serverName(b: Uint8Array): string | null {
  let at = 2 + 32; // legacy_version, random
  if (at + 1 > b.length) return null;
  at += 1 + b[at]; // legacy_session_id
  if (at + 2 > b.length) return null;
  at += 2 + ((b[at] << 8) | b[at + 1]); // cipher_suites
  if (at + 1 > b.length) return null;
  at += 1 + b[at]; // legacy_compression_methods
  if (at + 2 > b.length) return null;
  const end = Math.min(b.length, at + 2 + ((b[at] << 8) | b[at + 1]));
  at += 2;
  while (at + 4 <= end) {
    const type = (b[at] << 8) | b[at + 1];
    const len = (b[at + 2] << 8) | b[at + 3];
    at += 4;
    if (at + len > end) return null;
    if (type === SERVER_NAME) return hostName(b.subarray(at, at + len));
    at += len;
  }
  return null;
}

/** The host_name entry of a server_name extension's list, or null. */
function hostName(ext: Uint8Array): string | null {
  if (ext.length < 2) return null;
  const end = Math.min(ext.length, 2 + ((ext[0] << 8) | ext[1]));
  let at = 2;
  while (at + 3 <= end) {
    const type = ext[at];
    const len = (ext[at + 1] << 8) | ext[at + 2];
    at += 3;
    if (at + len > end) return null;
    if (type === HOST_NAME) return dnsName(ext.subarray(at, at + len));
    at += len;
  }
  return null;
}

/** bytes as a lower-case DNS name, or null when they are anything else (or empty, or > 253). */
function dnsName(bytes: Uint8Array): string | null {
  if (bytes.length === 0 || bytes.length > 253) return null;
  let s = "";
  for (const c of bytes) {
    const lower = c >= 65 && c <= 90 ? c + 32 : c;
    const ok = (lower >= 97 && lower <= 122) || (lower >= 48 && lower <= 57) || lower === 45 ||
      lower === 46 || lower === 95;
    if (!ok) return null;
    s += String.fromCharCode(lower);
  }
  return s;
}

/**
 * The names a certificate chosen for `name` may be filed under, most
 * specific first: the name itself, then "*." and the name without its first
 * label, when what remains is no top-level domain (s6-networking's rule).
 */
export function sniCandidates(name: string): string[] {
  const dot = name.indexOf(".");
  if (dot <= 0) return [name];
  const parent = name.slice(dot + 1);
  return parent.includes(".") ? [name, `*.${parent}`] : [name];
}
