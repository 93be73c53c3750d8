/**
 * The environment of a TLS connection, as ucspi-ssl sets it: the SSL*
 * copies of tcpserver's and tcpclient's TCP* variables (and PROTO), and
 * with -s the SSL_* variables of the session and of both certificates
 * (ucspi-ssl's ssl_env.c, mod_ssl's names), read from the certificates'
 * DER by lib/tls/x509.ts. Values are byte strings.
 */
import type { X509Certificate } from "node:crypto";
import { TCP_VARIABLES, V6_ONLY } from "../core/environ.ts";
import type { TlsInfo } from "./tls.ts";
import { type Certificate, parseCertificate } from "./x509.ts";
import {
  algorithmName,
  DN_COMPONENTS,
  nameComponents,
  oneLine,
  pemOf,
  serialDecimal,
} from "./x509_text.ts";

/** ucspi-ssl's SSL_VERSION_INTERFACE. */
export const SSL_VERSION_INTERFACE = "ucspi-ssl";

/**
 * SSL_VERSION_LIBRARY: the TLS library in use. ucspi-ssl puts OpenSSL's
 * version text here; ours is Deno's TLS (rustls), so it says that.
 */
export function sslLibraryVersion(): string {
  return `rustls (Deno ${Deno.version.deno})`;
}

/**
 * A cipher suite's secret key bits, used and of the algorithm (OpenSSL's
 * SSL_CIPHER_get_bits: 112 and 168 for triple DES), from its name.
 */
export function cipherBits(name: string): { use: number; alg: number } {
  const n = name.toUpperCase();
  const m = /(?:AES|CAMELLIA|ARIA)[_-]?(128|256)/.exec(n);
  if (m) return { use: +m[1], alg: +m[1] };
  if (n.includes("CHACHA20")) return { use: 256, alg: 256 };
  if (/3DES|DES[_-]CBC3|DES[_-]EDE3/.test(n)) return { use: 112, alg: 168 };
  if (n.includes("SM4")) return { use: 128, alg: 128 };
  return { use: 0, alg: 0 };
}

/** The names sslEnvironment may set for one side ("CLIENT" or "SERVER"), without the chain. */
export function sslSideVariables(side: "CLIENT" | "SERVER"): string[] {
  const p = `SSL_${side}_`;
  const out = [`${p}M_VERSION`, `${p}M_SERIAL`, `${p}S_DN`];
  for (const [k] of DN_COMPONENTS) out.push(`${p}S_DN_${k}`);
  out.push(`${p}I_DN`);
  for (const [k] of DN_COMPONENTS) out.push(`${p}I_DN_${k}`);
  out.push(`${p}V_START`, `${p}V_END`, `${p}A_SIG`, `${p}A_KEY`, `${p}CERT`);
  return out;
}

/** The session variables sslEnvironment sets, in ucspi-ssl's order. */
export const SSL_SESSION_VARIABLES = [
  "SSL_PROTOCOL",
  "SSL_SESSION_ID",
  "SSL_CIPHER",
  "SSL_CIPHER_EXPORT",
  "SSL_CIPHER_USEKEYSIZE",
  "SSL_CIPHER_ALGKEYSIZE",
  "SSL_VERSION_INTERFACE",
  "SSL_VERSION_LIBRARY",
];

/**
 * OpenSSL's bound on a one-line name (NAME_ONELINE_MAX): a longer one is
 * an error there, and ucspi-ssl then leaves the variable unset; so do we
 * (for the components too), so a huge certificate cannot make huge variables.
 */
const NAME_ONELINE_MAX = 1024 * 1024;

/** The variables of one certificate, from its DER (see lib/tls/x509.ts). */
function certificateVariables(env: Record<string, string>, side: string, c: Certificate): void {
  const p = `SSL_${side}_`;
  const put = (k: string, v: string) => {
    if (v.length <= NAME_ONELINE_MAX) env[k] = v;
  };
  env[`${p}M_VERSION`] = String(c.version);
  env[`${p}M_SERIAL`] = serialDecimal(c.serial);
  put(`${p}S_DN`, oneLine(c.subject));
  for (const [k, v] of nameComponents(c.subject)) put(`${p}S_DN_${k}`, v);
  put(`${p}I_DN`, oneLine(c.issuer));
  for (const [k, v] of nameComponents(c.issuer)) put(`${p}I_DN_${k}`, v);
  env[`${p}A_SIG`] = algorithmName(c.signatureOid);
  env[`${p}A_KEY`] = algorithmName(c.keyOid);
  env[`${p}V_START`] = c.notBeforeText;
  env[`${p}V_END`] = c.notAfterText;
  env[`${p}CERT`] = pemOf(c.der);
}

function parsed(c: X509Certificate): Certificate | undefined {
  try {
    return parseCertificate(new Uint8Array(c.raw));
  } catch {
    return undefined; // a certificate we cannot read gives no variables
  }
}

/**
 * ucspi-ssl's -s variables for a session (its ssl_env.c, plus mod_ssl's
 * SSL_CLIENT_VERIFY on a server): SSL_PROTOCOL, SSL_CIPHER,
 * SSL_CIPHER_EXPORT, SSL_CIPHER_USEKEYSIZE, SSL_CIPHER_ALGKEYSIZE,
 * SSL_VERSION_INTERFACE, SSL_VERSION_LIBRARY and, for each certificate
 * (side CLIENT for the peer on a server, SERVER for our own; the other way
 * round on a client), SSL_x_M_VERSION, SSL_x_M_SERIAL (decimal), SSL_x_S_DN
 * and SSL_x_I_DN (OpenSSL's one-line form, built from the certificate's
 * DER), their components SSL_x_S_DN_CN etc. (escaped the same way, so no
 * control byte reaches the environment), SSL_x_A_SIG, SSL_x_A_KEY,
 * SSL_x_V_START, SSL_x_V_END and SSL_x_CERT (PEM, ending with a newline).
 * Values are byte strings.
 */
export function sslEnvironment(
  info: TlsInfo,
  peerSide: "CLIENT" | "SERVER",
): Record<string, string> {
  const bits = cipherBits(info.cipher);
  const env: Record<string, string> = {
    SSL_PROTOCOL: info.protocol,
    SSL_CIPHER: info.cipher,
    SSL_CIPHER_EXPORT: bits.use < 56 ? "true" : "false",
    SSL_CIPHER_USEKEYSIZE: String(bits.use),
    SSL_CIPHER_ALGKEYSIZE: String(bits.alg),
    SSL_VERSION_INTERFACE,
    SSL_VERSION_LIBRARY: sslLibraryVersion(),
  };
  if (peerSide === "CLIENT") env.SSL_CLIENT_VERIFY = info.verify;
  const ownSide = peerSide === "CLIENT" ? "SERVER" : "CLIENT";
  const own = info.own && parsed(info.own);
  if (own) certificateVariables(env, ownSide, own);
  const peer = info.peer && parsed(info.peer);
  if (peer) certificateVariables(env, peerSide, peer);
  return env;
}

/**
 * Sets sslEnvironment's variables in env and removes the ones of its kind
 * that this session does not set (inherited from the server's own
 * environment, they would pass for certificate contents).
 */
export function applySslEnvironment(
  env: Map<string, string>,
  info: TlsInfo,
  peerSide: "CLIENT" | "SERVER",
): void {
  const vars = sslEnvironment(info, peerSide);
  const known = [
    ...SSL_SESSION_VARIABLES,
    "SSL_CLIENT_VERIFY",
    ...sslSideVariables("CLIENT"),
    ...sslSideVariables("SERVER"),
  ];
  for (const k of known) if (!(k in vars)) env.delete(k);
  for (const [k, v] of Object.entries(vars)) env.set(k, v);
}

const SSL_FROM_TCP: Array<[string, string]> = TCP_VARIABLES.map((v) => [v, "SSL" + v.slice(3)]);

const TCP_ONLY = [...TCP_VARIABLES, ...V6_ONLY];

/**
 * ucspi-ssl's environment from tcpserver's or tcpclient's: SSL* copies of
 * the TCP* variables, and no TCP* unless tcpEnv (-e); sslclient never sets
 * TCP6* (as ucspi-ssl's). PROTO: sslserver sets
 * SSL (TCP/TCP6 with -e, as ucspi-ssl); sslclient (client: true) sets SSL,
 * or SSL6 for an IPv6 connection.
 */
export function sslVariables(env: Map<string, string>, tcpEnv: boolean, client = false): void {
  const v6 = env.get("PROTO") === "TCP6";
  for (const [from, to] of SSL_FROM_TCP) {
    const v = env.get(from);
    if (v === undefined) env.delete(to);
    else env.set(to, v);
  }
  if (!tcpEnv) { for (const k of TCP_ONLY) env.delete(k); }
  // ucspi-ssl's sslclient -e sets the TCP* names only, never TCP6* (nor
  // may a TCP6* variable inherited from our own environment pass for this
  // connection's).
  if (client) { for (const k of V6_ONLY) env.delete(k); }
  if (client) env.set("PROTO", v6 ? "SSL6" : "SSL");
  else if (!tcpEnv) env.set("PROTO", "SSL");
}
