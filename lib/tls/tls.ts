/**
 * The TLS handshake over an already-open connection (an accepted or
 * connected TCP connection, possibly after a PROXY header was read off it),
 * for sslserver, sslclient and smtpd-starttls-proxy: acceptTls and
 * connectTls give the plaintext side as a TlsSession. Uses node:tls
 * TLSSocket over a node Duplex adapter (lib/tls/streams.ts), which Deno
 * supports for both server and client handshakes, or, for a server given
 * the untouched accepted socket (sslserver without -W), over Deno's native
 * TCP handle of it (lib/tls/tcp_handle.ts: half the CPU). Client
 * certificates are verified here against $CAFILE (lib/tls/verify.ts),
 * because Deno's server side only checks that one was sent. Credentials: lib/tls/credentials.ts;
 * the environment: lib/tls/ssl_env.ts.
 */
import { X509Certificate } from "node:crypto";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { pemCertificates, type ServerCredentials, systemCaBundle } from "./credentials.ts";
import {
  duplexOver,
  InputGate,
  keepEofDeliverable,
  lingeringClose,
  type StreamPair,
  streamsOf,
  tieDown,
} from "./streams.ts";
import { handleReading, nodeSocketOn } from "./tcp_handle.ts";
import { VerifiableCert, verifyClientChain } from "./verify.ts";

/** What the handshake settled, for the environment and the log. */
export interface TlsInfo {
  /** "TLSv1.3", "TLSv1.2" */
  protocol: string;
  /** Cipher suite name, e.g. "TLS_AES_256_GCM_SHA384" */
  cipher: string;
  /** The certificate the peer presented (client certificate on a server), if any. */
  peer?: X509Certificate;
  /** The other certificates the peer sent with it (its chain), if any. */
  peerChain?: X509Certificate[];
  /** NONE, SUCCESS or FAILED:reason (mod_ssl's SSL_CLIENT_VERIFY). */
  verify: string;
  /** The certificate we presented, if any. */
  own?: X509Certificate;
}

/** A secured connection: plaintext streams and the handshake's outcome. */
export interface TlsSession extends StreamPair {
  /** What the handshake settled. */
  info: TlsInfo;
  /**
   * Ends the session and then the connection underneath (pair.close, after
   * the lingering close when pair.lingerMs is set).
   */
  shutdown(): void;
}

/**
 * A handshake that failed or timed out; message is the reason to log.
 * `verification` marks a completed handshake whose peer certificate was
 * refused (ucspi-ssl logs those without "unable to accept SSL").
 */
export class HandshakeError extends Error {
  /** `message`: the reason to log; `verification`: a refused peer certificate. */
  constructor(message: string, readonly verification = false) {
    super(message);
    this.name = "HandshakeError";
  }
}

/** Client certificate policy: Z (none), m (required, no name check), z (required + name). */
export type ClientCertMode = "none" | "require" | "require-host";

/** Options of acceptTls. */
export interface AcceptOptions {
  /** Give up on the handshake after this many milliseconds. */
  timeoutMs: number;
  /** Whether a client certificate is asked for and required (sslserver -Z, -m, -z). */
  clientCert: ClientCertMode;
  /** With require-host: the client's host name to match against the certificate. */
  clientHost?: string;
}

function handshake(
  sock: tls.TLSSocket,
  event: "secure" | "secureConnect",
  timeoutMs: number,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      fail(new HandshakeError("timed out"));
    }, timeoutMs);
    const fail = (e: Error) => {
      clearTimeout(timer);
      sock.off(event, ok);
      sock.destroy();
      reject(e instanceof HandshakeError ? e : new HandshakeError(e.message));
    };
    const ok = () => {
      clearTimeout(timer);
      sock.off("error", fail);
      sock.off("close", closed);
      sock.off("end", closed);
      resolve();
    };
    const closed = () => fail(new HandshakeError("connection closed during handshake"));
    sock.once(event, ok);
    sock.once("error", fail);
    sock.once("close", closed);
    sock.once("end", closed);
  });
}

/**
 * Verifies a client certificate as OpenSSL does for purpose sslclient
 * (lib/tls/verify.ts): through the certificates the client sent (`sent`)
 * and the trusted CAs up to a self-signed trusted one, at most `depth`
 * certificates between (ucspi-ssl's VERIFYDEPTH, counted as OpenSSL's
 * verify depth). Returns "SUCCESS" or "FAILED:reason" (OpenSSL's text).
 */
export function verifyCertificate(
  cert: X509Certificate,
  cas: Array<X509Certificate | VerifiableCert>,
  depth: number,
  now = new Date(),
  sent: X509Certificate[] = [],
): string {
  const parse = (c: X509Certificate) => VerifiableCert.fromDer(new Uint8Array(c.raw));
  let leaf: VerifiableCert;
  try {
    leaf = parse(cert);
  } catch {
    return "FAILED:unable to decode certificate";
  }
  const trusted = cas.map((c) => c instanceof VerifiableCert ? c : parse(c));
  const untrusted: VerifiableCert[] = [];
  for (const c of sent) {
    try {
      untrusted.push(parse(c));
    } catch { /* an undecodable extra certificate cannot be an issuer */ }
  }
  return verifyClientChain(leaf, untrusted, trusted, depth, now);
}

/** The most certificates taken from a peer's chain (OpenSSL's default limit is 100). */
const MAX_PEER_CHAIN = 100;

/** The certificate the peer sent and the rest of its chain, from node:tls. */
function peerCertificates(
  sock: tls.TLSSocket,
): { peer?: X509Certificate; chain: X509Certificate[] } {
  let raw: tls.DetailedPeerCertificate | undefined;
  try {
    raw = sock.getPeerCertificate(true);
  } catch {
    return { chain: [] };
  }
  if (!raw || !raw.raw) return { chain: [] };
  let peer: X509Certificate;
  try {
    peer = new X509Certificate(raw.raw);
  } catch {
    return { chain: [] }; // unparsable: treated as absent
  }
  const chain: X509Certificate[] = [];
  const seen = new Set<unknown>([raw]);
  let cur = raw.issuerCertificate;
  while (cur && cur.raw && !seen.has(cur) && chain.length < MAX_PEER_CHAIN) {
    seen.add(cur);
    try {
      chain.push(new X509Certificate(cur.raw));
    } catch { /* skip what cannot be read */ }
    cur = cur.issuerCertificate;
  }
  return { peer, chain };
}

/**
 * What a server's TLS socket runs on: Deno's native TCP handle when the
 * pair carries its untouched socket (pair.tcp) and this Deno can make one
 * (lib/tls/tcp_handle.ts), else the portable adapter over the pair's
 * streams (duplexOver); the gate that holds the client back when the
 * program reads slowly; and how a session over it ends (the lingering
 * close when pair.lingerMs is set, then pair.close).
 */
function underneath(
  pair: StreamPair,
): { under: Duplex; gate: InputGate; shutdown: (sock: tls.TLSSocket) => void; native: boolean } {
  const native = pair.tcp ? nodeSocketOn(pair.tcp) : null;
  const reading = native ? handleReading(native) : null;
  if (!native || !reading) {
    native?.destroy();
    const gate = new InputGate();
    return {
      under: duplexOver(pair, gate),
      gate,
      shutdown: (sock) => sock.destroy(),
      native: false,
    };
  }
  native.on("error", () => {/* reported by the TLS socket */});
  const gate = new InputGate({
    stop: reading.stop,
    // not once the socket is gone: a closed handle has nothing to read
    start: () => native.destroyed || reading.start(),
  });
  const closePair = () => {
    try {
      pair.close?.();
    } catch { /* already closed */ }
  };
  // the descriptor underneath is a duplicate: the pair's own is closed too
  native.once("close", closePair);
  const shutdown = (sock: tls.TLSSocket) => {
    gate.release();
    const ms = pair.lingerMs ?? 0;
    if (ms > 0) lingeringClose(sock, ms).catch(() => sock.destroy());
    else sock.destroy();
  };
  return { under: native, gate, shutdown, native: true };
}

/**
 * Runs the server side of a handshake over `pair` and returns the plaintext
 * streams. Throws HandshakeError (with the reason) on failure or timeout, or
 * when a required client certificate is missing or not trusted; the
 * connection is closed then.
 */
export async function acceptTls(
  pair: StreamPair,
  creds: ServerCredentials,
  opts: AcceptOptions,
): Promise<TlsSession> {
  const wantCert = opts.clientCert !== "none" || creds.cas.length > 0;
  const { under, gate, shutdown, native } = underneath(pair);
  const sock = tieDown(
    new tls.TLSSocket(under, {
      isServer: true,
      secureContext: creds.context,
      requestCert: wantCert,
      rejectUnauthorized: false,
    }),
    under,
  );
  keepEofDeliverable(sock);
  await handshake(sock, "secure", opts.timeoutMs);
  const { peer, chain } = peerCertificates(sock);
  let verify = "NONE";
  if (peer) verify = verifyCertificate(peer, creds.trusted, creds.verifyDepth, new Date(), chain);
  if (opts.clientCert !== "none") {
    let problem: string | undefined;
    if (!peer) problem = "no client certificate";
    else if (verify !== "SUCCESS") {
      problem = "missing credentials (CA) or unable to validate client certificate";
    } else if (
      opts.clientCert === "require-host" && opts.clientHost &&
      !peer.checkHost(opts.clientHost) && !peer.checkIP(opts.clientHost)
    ) {
      problem = `client hostname does not match certificate: ${opts.clientHost}`;
    }
    if (problem) {
      sock.destroy();
      throw new HandshakeError(problem, true);
    }
  }
  const cipher = sock.getCipher();
  return {
    ...streamsOf(sock, gate, native),
    shutdown: () => shutdown(sock),
    info: {
      protocol: sock.getProtocol() ?? "",
      cipher: cipher?.name ?? "",
      peer,
      peerChain: chain,
      verify,
      own: creds.cert,
    },
  };
}

/** Options of connectTls (sslclient). */
export interface ConnectOptions {
  /** The name the server was reached by: sent as SNI and matched against its certificate. */
  host: string;
  /** Verify the server certificate (default); -X turns it off. */
  verifyServer: boolean;
  /** Match host against the certificate (default); -N turns it off. */
  checkName: boolean;
  /** PEM text of trusted CAs; undefined means the system store. */
  ca?: string;
  /** Client certificate (PEM text), sslclient -c. */
  cert?: string;
  /** Its private key (PEM text), -k (default: the certificate file). */
  key?: string;
  /** The key's password (-3). */
  passphrase?: string;
  /** An OpenSSL cipher list (-z). */
  ciphers?: string;
  /** Give up on the handshake after this many milliseconds. */
  timeoutMs: number;
}

function isIp(host: string): boolean {
  return /^[0-9.]+$/.test(host) || host.includes(":");
}

/**
 * Runs the client side of a handshake over `pair`. Throws HandshakeError with
 * ucspi-ssl's reason when the handshake fails or the server's certificate is
 * not trusted (verifyServer) or does not name host (checkName).
 */
export async function connectTls(pair: StreamPair, opts: ConnectOptions): Promise<TlsSession> {
  const gate = new InputGate();
  const duplex = duplexOver(pair, gate);
  const { socket, info } = await connectTlsSocket(duplex, opts);
  tieDown(socket, duplex);
  return { ...streamsOf(socket, gate), info, shutdown: () => socket.destroy() };
}

/**
 * connectTls over a node Duplex (a connected net.Socket, as lib/tcpclient
 * hands to sslclient): resolves the TLS socket itself and the handshake's
 * outcome. The socket is destroyed when the handshake or a check fails.
 */
export async function connectTlsSocket(
  socket: Duplex,
  opts: ConnectOptions,
): Promise<{ socket: tls.TLSSocket; info: TlsInfo }> {
  const ca = opts.ca ?? (await systemCaBundle());
  const sock = tls.connect({
    socket,
    servername: isIp(opts.host) ? undefined : opts.host,
    host: opts.host,
    ca,
    cert: opts.cert,
    key: opts.key,
    passphrase: opts.passphrase,
    ciphers: opts.ciphers,
    rejectUnauthorized: false,
    checkServerIdentity: () => undefined,
  });
  keepEofDeliverable(sock);
  await handshake(sock, "secureConnect", opts.timeoutMs);
  const raw = sock.getPeerCertificate();
  let peer: X509Certificate | undefined;
  if (raw && raw.raw) {
    try {
      peer = new X509Certificate(raw.raw);
    } catch { /* absent */ }
  }
  const fail = (why: string) => {
    sock.destroy();
    socket.destroy();
    return new HandshakeError(why, true);
  };
  let verify = sock.authorized ? "SUCCESS" : `FAILED:${sock.authorizationError ?? "unknown"}`;
  if (opts.verifyServer) {
    if (!peer) throw fail("no server certificate");
    if (!sock.authorized) {
      throw fail("missing credentials (CA) or unable to validate server certificate");
    }
    if (
      opts.checkName &&
      !(isIp(opts.host) ? peer.checkIP(opts.host) : peer.checkHost(opts.host))
    ) {
      throw fail(`server hostname does not match certificate: ${opts.host}`);
    }
  } else if (!peer) verify = "NONE";
  const cipher = sock.getCipher();
  let own: X509Certificate | undefined;
  const ownPem = opts.cert ? pemCertificates(opts.cert)[0] : undefined;
  if (ownPem) {
    try {
      own = new X509Certificate(ownPem);
    } catch { /* node:tls took it, so this does not happen; no variables then */ }
  }
  return {
    socket: sock,
    info: { protocol: sock.getProtocol() ?? "", cipher: cipher?.name ?? "", peer, verify, own },
  };
}
