/**
 * sslserver's warm-up: one TLS session with itself, in memory, before its
 * first accept. A fresh Deno process pays on its first TLS session what
 * later ones do not: node:tls's first secure context use, the first
 * handshake's set-up and compiling the record and stream code on the path
 * (a 32 MB download through a fresh server ran at about half the speed of
 * the second). Run once at start, after -1's line, while clients wait in
 * the backlog, that cost leaves the first client's connection. Measured
 * (handshake only, /bin/true): a first client coming once the warm-up is
 * done took 8 ms instead of 37; one already waiting at bind takes ~12 ms
 * longer (60 instead of 48: it waits for the 1 MB each way too). No network and no descriptors: the
 * two ends talk over a pair of in-memory streams.
 */
import type { ServerCredentials } from "./credentials.ts";
import type { StreamPair } from "./streams.ts";
import { acceptTls, connectTls, type TlsSession } from "./tls.ts";

/**
 * How much the warm-up sends each way: enough records to get the record
 * path compiled (1 MB adds ~7 ms to the ~37 ms the first handshake costs a
 * fresh process; 4 MB did no better for the first client).
 */
export const WARM_UP_BYTES = 1 << 20;
/** The chunk size of the warm-up's writes (what a program's pipe hands over). */
const CHUNK = 64 * 1024;
/** A bound on the whole warm-up: it never holds the first accept longer. */
const WARM_UP_TIMEOUT_MS = 5000;

/** Two stream pairs joined back to back: what one writes, the other reads. */
function memoryPairs(): { server: StreamPair; client: StreamPair } {
  const toServer = new TransformStream<Uint8Array, Uint8Array>();
  const toClient = new TransformStream<Uint8Array, Uint8Array>();
  return {
    server: { readable: toServer.readable, writable: toClient.writable },
    client: { readable: toClient.readable, writable: toServer.writable },
  };
}

/**
 * Writes `bytes` in CHUNK pieces to `to`. It is not closed: a TLS end's
 * close_notify ends the peer's writing too (node:tls is not half-open).
 */
async function send(to: WritableStream<Uint8Array>, bytes: number): Promise<void> {
  const w = to.getWriter();
  const chunk = new Uint8Array(CHUNK);
  for (let sent = 0; sent < bytes; sent += CHUNK) await w.write(chunk);
  w.releaseLock();
}

/** Reads `from` until `bytes` came (or it ended); resolves the byte count. */
async function receive(from: ReadableStream<Uint8Array>, bytes: number): Promise<number> {
  const r = from.getReader();
  let got = 0;
  while (got < bytes) {
    const { value, done } = await r.read();
    if (done) break;
    got += value.length;
  }
  r.releaseLock();
  return got;
}

/**
 * One handshake against our own certificate and `bytes` each way (both
 * ends sending at once), over memory. Resolves the
 * bytes that came through each way; throws when the session fails or
 * takes over WARM_UP_TIMEOUT_MS (the caller ignores it: a warm-up that
 * fails only leaves the cost to the first client).
 */
export async function warmUpTls(
  creds: ServerCredentials,
  bytes = WARM_UP_BYTES,
): Promise<{ down: number; up: number }> {
  const { server, client } = memoryPairs();
  let serverSession: TlsSession | undefined;
  let clientSession: TlsSession | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("TLS warm-up timed out")), WARM_UP_TIMEOUT_MS);
  });
  const session = async () => {
    [serverSession, clientSession] = await Promise.all([
      acceptTls(server, creds, { timeoutMs: WARM_UP_TIMEOUT_MS, clientCert: "none" }),
      connectTls(client, {
        host: "localhost",
        verifyServer: false,
        checkName: false,
        ca: creds.cert.toString(),
        timeoutMs: WARM_UP_TIMEOUT_MS,
      }),
    ]);
    const [, down, , up] = await Promise.all([
      send(serverSession.writable, bytes),
      receive(clientSession.readable, bytes),
      send(clientSession.writable, bytes),
      receive(serverSession.readable, bytes),
    ]);
    return { down, up };
  };
  try {
    return await Promise.race([session(), timeout]);
  } finally {
    clearTimeout(timer);
    serverSession?.shutdown();
    clientSession?.shutdown();
  }
}
