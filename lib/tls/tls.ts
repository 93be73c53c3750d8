/**
 * TLS over an already-open byte stream pair (an accepted or connected TCP
 * connection, possibly after a PROXY header was read off it), for sslserver
 * and sslclient. Uses node:tls TLSSocket over a node Duplex adapter, which
 * Deno supports for both server and client handshakes. Credentials are read
 * and checked here (ucspi-ssl's $CERTFILE, $CERTCHAINFILE, $KEYFILE, $CAFILE,
 * $CIPHERS); client certificates are verified here against $CAFILE, because
 * Deno's server side only checks that one was sent.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { Duplex } from "node:stream";
import tls from "node:tls";
import { TCP_VARIABLES, V6_ONLY } from "../core/environ.ts";
import { VerifiableCert, verifyClientChain } from "./verify.ts";
import {
  algorithmName,
  type Certificate,
  DN_COMPONENTS,
  nameComponents,
  oneLine,
  parseCertificate,
  pemOf,
  serialDecimal,
} from "./x509.ts";

export { VerifiableCert, verifyClientChain } from "./verify.ts";
export { DerError, oneLine, parseCertificate } from "./x509.ts";

/** A connection as two Web streams. */
export interface StreamPair {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
  /** Closes the whole connection at once (Deno.Conn's close), when available. */
  close?: () => void;
  /**
   * Lingering close (servers): after our end went out, read and discard
   * what the peer still sends until it closes or is quiet this many
   * milliseconds, before closing. Closing with unread input makes the
   * kernel send a reset, which throws away our last data still on its way
   * (and the close_notify), so a client that was still sending when the
   * program exited would lose the end of the answer.
   */
  lingerMs?: number;
}

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
  certFile?: string;
  certChainFile?: string;
  keyFile?: string;
  caFile?: string;
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
  context: tls.SecureContext;
  /** The server's own certificate. */
  cert: X509Certificate;
  /** CAs trusted for client certificates ($CAFILE), empty when none. */
  cas: X509Certificate[];
  /** The same CAs, parsed for verification. */
  trusted: VerifiableCert[];
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

/**
 * Flow control for the encrypted input: open while the plaintext reader has
 * room. Closing it stops reading the connection (so the peer's sending
 * blocks in TCP, as with a plain socket), instead of asking node:tls to stop
 * reading (see keepEofDeliverable).
 */
class InputGate {
  #open = true;
  #waiters: Array<() => void> = [];
  get open(): boolean {
    return this.#open;
  }
  close(): void {
    this.#open = false;
  }
  release(): void {
    this.#open = true;
    for (const w of this.#waiters.splice(0)) w();
  }
  /** Runs f now if open, else once released. */
  when(f: () => void): void {
    if (this.#open) f();
    else this.#waiters.push(f);
  }
}

/**
 * A node Duplex over a Web stream pair (what node:tls needs underneath).
 * Reads the pair only while `gate` is open. Destroying it lets writes
 * already accepted reach the socket first (a TLS alert, Finished or
 * close_notify message), then closes the connection.
 */
function duplexOver(pair: StreamPair, gate: InputGate): Duplex {
  const reader = pair.readable.getReader();
  const writer = pair.writable.getWriter();
  let last: Promise<unknown> = Promise.resolve();
  let closing = false;
  return new Duplex({
    allowHalfOpen: true,
    read() {
      gate.when(() =>
        reader.read().then(
          ({ value, done }) => {
            if (done) this.push(null);
            else this.push(value);
          },
          () => this.push(null),
        )
      );
    },
    write(chunk: Uint8Array, _enc, cb) {
      last = writer.write(chunk);
      last.then(() => cb(), (e) => cb(e as Error));
    },
    final(cb) {
      closing = true;
      last = writer.close();
      last.then(() => cb(), () => cb());
    },
    destroy(err, cb) {
      gate.release();
      const linger = !err && (pair.lingerMs ?? 0) > 0;
      if (!linger) reader.cancel().catch(() => {});
      last.catch(() => {}).finally(async () => {
        if (!closing) await writer.close().catch(() => {});
        if (linger) await drain(reader, pair.lingerMs!);
        try {
          pair.close?.();
        } catch { /* already closed */ }
      });
      cb(err);
    },
  });
}

/** Reads and discards until the end, an error, or ms without data. */
async function drain(reader: ReadableStreamDefaultReader<Uint8Array>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let quiet = false;
  // A peer that never stops sending must not hold the connection (and a -c
  // slot) forever: the whole linger is bounded too.
  const cap = setTimeout(() => {
    quiet = true;
    reader.cancel().catch(() => {});
  }, ms * LINGER_CAP_FACTOR);
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      quiet = true;
      reader.cancel().catch(() => {});
    }, ms);
  };
  try {
    for (;;) {
      arm();
      const { done } = await reader.read();
      if (done || quiet) break;
    }
  } catch {
    /* reset or cancelled: done */
  } finally {
    clearTimeout(timer);
    clearTimeout(cap);
    reader.cancel().catch(() => {});
  }
}

/** A lingering close lasts at most this many times its quiet time. */
const LINGER_CAP_FACTOR = 5;

/**
 * Works around a Deno 2.9 node:tls bug that loses the peer's end of data.
 * When node:tls stops reading (readStop: its buffer is full, or pause()),
 * Deno's TLSWrap parks decrypted data and a received close_notify; on the
 * next readStart it hands over the parked data first, and if that fills the
 * buffer again node:tls calls readStop inside readStart, and the parked
 * end-of-data is then delivered to no one and forgotten: the peer's
 * half-close never shows as 'end', and the connection hangs (seen with bulk
 * traffic both ways when one side half-closes). Deno's readStop does not
 * stop the underlying input anyway (the parked data grows without bound),
 * so it is made a no-op here: decrypted data always goes straight into the
 * socket's buffer and the close_notify always becomes 'end'. Flow control
 * is done below TLS instead (InputGate for our adapter; for a native
 * socket Deno's TLS layer reads on regardless, as before).
 */
function keepEofDeliverable(sock: tls.TLSSocket): void {
  const handle = (sock as unknown as { _handle?: { readStop?: () => number } })._handle;
  if (handle && typeof handle.readStop === "function") handle.readStop = () => 0;
}

/** A TLS socket over pair whose end also ends the connection underneath. */
function tieDown(sock: tls.TLSSocket, duplex: Duplex): tls.TLSSocket {
  sock.once("close", () => duplex.destroy());
  return sock;
}

/**
 * The plaintext side of a TLS connection as Web streams. The socket is never
 * paused (see keepEofDeliverable); when the reader falls behind, `gate`
 * (if any) stops reading the connection underneath until it catches up.
 */
function streamsOf(sock: tls.TLSSocket, gate?: InputGate): StreamPair {
  let ended = false;
  let cancelled = false;
  const readable = new ReadableStream<Uint8Array>({
    start(controller) {
      const finish = () => {
        if (ended) return;
        ended = true;
        if (cancelled) return;
        try {
          controller.close();
        } catch { /* cancelled */ }
      };
      sock.on("data", (chunk: Uint8Array) => {
        if (cancelled || ended) return;
        controller.enqueue(new Uint8Array(chunk));
        if ((controller.desiredSize ?? 0) <= 0) gate?.close();
      });
      sock.on("end", finish);
      sock.on("close", finish);
      sock.on("error", () => {/* reported through close; logged by the caller */});
    },
    pull() {
      gate?.release();
    },
    cancel() {
      // Nobody reads any more: discard what comes (never stall the peer's
      // close), and close the connection once our own data is out.
      cancelled = true;
      gate?.release();
      if (sock.writableFinished || sock.destroyed) sock.destroy();
      else sock.once("finish", () => sock.destroy());
    },
  }, { highWaterMark: 4 });
  const writable = new WritableStream<Uint8Array>({
    write(chunk) {
      if (sock.destroyed) return Promise.reject(new Error("connection closed"));
      return new Promise<void>((resolve, reject) => {
        const ok = sock.write(chunk, (err?: Error | null) => {
          if (err && ok) reject(err);
        });
        if (ok) resolve();
        else {
          const done = () => {
            sock.off("drain", done);
            sock.off("close", done);
            if (sock.destroyed && !sock.writableFinished) reject(new Error("connection closed"));
            else resolve();
          };
          sock.on("drain", done);
          sock.on("close", done);
        }
      });
    },
    close() {
      return new Promise<void>((resolve) => {
        if (sock.destroyed) return resolve();
        sock.end(() => resolve());
        sock.once("close", () => resolve());
      });
    },
    abort() {
      sock.destroy();
    },
  });
  return { readable, writable };
}

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
  const gate = new InputGate();
  const duplex = duplexOver(pair, gate);
  const sock = tieDown(
    new tls.TLSSocket(duplex, {
      isServer: true,
      secureContext: creds.context,
      requestCert: wantCert,
      rejectUnauthorized: false,
    }),
    duplex,
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
    ...streamsOf(sock, gate),
    shutdown: () => sock.destroy(),
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
  /** Client certificate and key (PEM text), and the key's password. */
  cert?: string;
  key?: string;
  passphrase?: string;
  ciphers?: string;
  timeoutMs: number;
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

/**
 * Lingering close of a TLS socket (what StreamPair.lingerMs does for a
 * session over a stream pair, for a node TLS socket such as the one
 * connectTlsSocket gives): ends our side (close_notify) if not yet done,
 * then reads and discards what the peer still sends until it ends, fails
 * or is quiet ms milliseconds, and destroys the socket once our own data
 * is out. Resolves when the socket is closed.
 */
export async function lingeringClose(sock: tls.TLSSocket, ms: number): Promise<void> {
  if (!sock.writableEnded && !sock.destroyed) sock.end();
  if (!sock.destroyed && !sock.readableEnded) {
    // streamsOf's reader, cancelled by drain, destroys sock after our end;
    // resume: a pipe's backpressure may have left sock paused.
    const reader = streamsOf(sock).readable.getReader();
    sock.resume();
    await drain(reader, ms);
  } else if (!sock.destroyed) {
    if (sock.writableFinished) sock.destroy();
    else sock.once("finish", () => sock.destroy());
  }
  if (!sock.closed) await new Promise((r) => sock.once("close", r));
}

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
