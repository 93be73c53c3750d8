/**
 * DNS transport: which resolvers to ask ($DNSCACHEIP, else the nameserver
 * lines of /etc/resolv.conf, else 127.0.0.1) and asking them. A query goes
 * over UDP from a fresh socket on a random port, connected to the server
 * asked, with an id from the CSPRNG; a reply counts only from that server's
 * address and port and only when it answers that question (wire.ts
 * answersQuery), anything else is ignored and the wait goes on. A truncated
 * answer is asked again over TCP, where a reply to another question fails
 * that server. Retransmissions follow djbdns's 1, 3, 11, 45 seconds.
 */
import dgram from "node:dgram";
import process from "node:process";
import { errorText } from "../../core/errors.ts";
import { writeAll } from "../../core/write_all.ts";
import { parseIp4, parseIp6Loose } from "../ip.ts";
import { DnsProtocolError, DnsTemporaryError } from "./errors.ts";
import {
  answersQuery,
  decodeResponse,
  encodeQuery,
  RCODE_NXDOMAIN,
  type Response,
} from "./wire.ts";
import { fromDot } from "./name.ts";

/** A resolver to ask: an IPv4 or IPv6 address and a port. */
export interface DnsServer {
  /** IPv4 or IPv6 text. */
  address: string;
  /** UDP and TCP port (53). */
  port: number;
}

/** Options every query takes. */
export interface QueryOptions {
  /** Give up (DnsTemporaryError) after this many milliseconds; default 10000. */
  timeoutMs?: number;
  /** Abort the lookup (rejects with DnsTemporaryError). */
  signal?: AbortSignal;
  /** Resolvers to ask instead of $DNSCACHEIP / resolv.conf. */
  servers?: DnsServer[];
}

// ---------------------------------------------------------------- servers

let defaultServersCache: { key: string; servers: DnsServer[] } | undefined;
let resolvConfServers: DnsServer[] | undefined;

function parseIpList(text: string): string[] {
  return text.split(/[\s,]+/).filter((s) => s !== "" && (parseIp4(s) || parseIp6Loose(s)));
}

function readResolvConf(): DnsServer[] {
  if (resolvConfServers) return resolvConfServers;
  const out: DnsServer[] = [];
  try {
    const text = Deno.readTextFileSync("/etc/resolv.conf");
    for (const line of text.split("\n")) {
      const m = /^\s*nameserver\s+(\S+)/.exec(line);
      if (m) {
        const ip = m[1].replace(/%.*$/, "");
        if (parseIp4(ip) || parseIp6Loose(ip)) out.push({ address: ip, port: 53 });
      }
    }
  } catch (e) {
    // djbdns's openreadclose: a missing file is an empty one (127.0.0.1 is asked); any
    // other failure to read it fails the lookup for now, with the reason as DJB words it.
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new DnsTemporaryError(`unable to read /etc/resolv.conf: ${errorText(e)}`, errorText(e));
    }
  }
  resolvConfServers = out;
  return out;
}

/**
 * The resolvers a lookup asks by default: $DNSCACHEIP (read at each call, so a
 * stage's environment can change it), else /etc/resolv.conf, else 127.0.0.1.
 */
export function defaultServers(env?: Map<string, string>): DnsServer[] {
  const fromEnv = env ? env.get("DNSCACHEIP") : process.env.DNSCACHEIP;
  const key = fromEnv ?? "";
  if (defaultServersCache && defaultServersCache.key === key) return defaultServersCache.servers;
  let servers: DnsServer[] = [];
  if (fromEnv !== undefined) {
    servers = parseIpList(fromEnv).map((address) => ({ address, port: 53 }));
  }
  if (servers.length === 0) servers = readResolvConf();
  if (servers.length === 0) servers = [{ address: "127.0.0.1", port: 53 }];
  defaultServersCache = { key, servers };
  return servers;
}

// ---------------------------------------------------------------- transport

const RETRANSMIT_MS = [1000, 3000, 11000, 45000];

function abortError(): DnsTemporaryError {
  return new DnsTemporaryError("DNS lookup aborted", "timed out");
}

/** A 16-bit query id from the system's CSPRNG (a guessable id invites forged answers). */
function randomId(): number {
  return crypto.getRandomValues(new Uint16Array(1))[0];
}

/** Whether text address a and b are the same address. */
function sameAddress(a: string, b: string): boolean {
  if (a === b) return true;
  const x = parseIp6Loose(a), y = parseIp6Loose(b);
  if (!x || !y) return false;
  return x.every((v, i) => v === y[i]);
}

/**
 * Sends query to one server over UDP from a fresh socket (a random port)
 * connected to the server, so the kernel drops datagrams from any other
 * address; resolves the first reply that answers the query (answersQuery)
 * or null on timeout. Datagrams from elsewhere or answering something else
 * are ignored and the wait goes on.
 */
function udpExchange(
  server: DnsServer,
  query: Uint8Array,
  waitMs: number,
  signal?: AbortSignal,
): Promise<Uint8Array | null> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket(parseIp6Loose(server.address) ? "udp6" : "udp4");
    let done = false;
    const finish = (err: Error | null, value: Uint8Array | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      try {
        sock.close();
      } catch {
        // dgram's close() throws only for a socket an error already closed: nothing to release.
      }
      if (err) reject(err);
      else resolve(value);
    };
    const netError = (e: Error) =>
      finish(new DnsTemporaryError(`DNS network error: ${e.message}`, "timed out"), null);
    const onAbort = () => finish(abortError(), null);
    const timer = setTimeout(() => finish(null, null), waitMs);
    signal?.addEventListener("abort", onAbort, { once: true });
    sock.on("error", netError);
    sock.on("message", (msg: Uint8Array, rinfo: { address: string; port: number }) => {
      // connect() already filters; checked again in case a runtime does not.
      if (rinfo.port !== server.port || !sameAddress(rinfo.address, server.address)) return;
      const raw = new Uint8Array(msg);
      if (!answersQuery(raw, query)) return;
      finish(null, raw);
    });
    try {
      sock.connect(server.port, server.address, () => {
        sock.send(query, (e) => {
          if (e) netError(e);
        });
      });
    } catch (e) {
      netError(e as Error);
    }
  });
}

/** Sends query to one server over TCP (for truncated UDP answers); the reply must answer it. */
async function tcpExchange(
  server: DnsServer,
  query: Uint8Array,
  waitMs: number,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  let conn: Deno.TcpConn | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const onAbort = () => conn?.close();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const work = (async () => {
      conn = await Deno.connect({ hostname: server.address, port: server.port });
      const framed = new Uint8Array(2 + query.length);
      framed[0] = query.length >> 8;
      framed[1] = query.length & 0xff;
      framed.set(query, 2);
      await writeAll(conn, framed);
      const readExact = async (n: number) => {
        const buf = new Uint8Array(n);
        let got = 0;
        while (got < n) {
          const r = await conn!.read(buf.subarray(got));
          if (r === null) throw new Error("connection closed");
          got += r;
        }
        return buf;
      };
      const len = await readExact(2);
      const raw = await readExact((len[0] << 8) | len[1]);
      // One exchange per connection: a reply to something else is this server's failure.
      if (!answersQuery(raw, query)) throw new DnsProtocolError("TCP reply to another query");
      return raw;
    })();
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new DnsTemporaryError("DNS lookup timed out", "timed out")),
        waitMs,
      );
    });
    return await Promise.race([work, timeout]);
  } catch (e) {
    if (e instanceof DnsTemporaryError) throw e;
    if (signal?.aborted) throw abortError();
    throw new DnsTemporaryError(`DNS network error: ${(e as Error).message}`, "timed out");
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    try {
      conn?.close();
    } catch {
      // Already closed (the abort handler closes it): nothing left to release.
    }
  }
}

/**
 * Asks for (name, type): UDP to each server in turn, retransmitting with
 * growing waits until timeoutMs; TCP when the answer is truncated. `name` is
 * dotted text as fromDot reads it (escapes allowed) or a wire-form name.
 * Only replies from the server asked, with the query's random id and its
 * question, count (answersQuery). Resolves the parsed response with rcode
 * NOERROR or NXDOMAIN; throws DnsTemporaryError for anything else
 * (DnsProtocolError for a name DNS cannot carry or a malformed answer).
 */
export async function query(
  name: string | Uint8Array,
  type: number,
  opts: QueryOptions = {},
): Promise<Response> {
  const qname = typeof name === "string" ? fromDot(name) : name;
  const servers = opts.servers ?? defaultServers();
  const timeoutMs = opts.timeoutMs ?? 10000;
  const deadline = Date.now() + timeoutMs;
  const signal = opts.signal;
  const timedOut = () => new DnsTemporaryError("DNS lookup timed out", "timed out");
  let lastError: DnsTemporaryError | null = null;
  for (const step of RETRANSMIT_MS) {
    let silent = 0;
    for (const server of servers) {
      if (signal?.aborted) throw abortError();
      const left = deadline - Date.now();
      if (left <= 0) throw lastError ?? timedOut();
      const q = encodeQuery(randomId(), qname, type);
      let raw: Uint8Array | null;
      try {
        raw = await udpExchange(server, q, Math.min(step, left), signal);
      } catch (e) {
        if (signal?.aborted) throw abortError();
        lastError = e instanceof DnsTemporaryError ? e : new DnsTemporaryError(String(e));
        continue;
      }
      if (raw === null) {
        silent++;
        continue;
      }
      let resp: Response;
      try {
        resp = decodeResponse(raw);
        if (resp.truncated) {
          resp = decodeResponse(
            await tcpExchange(server, q, Math.max(1, deadline - Date.now()), signal),
          );
        }
      } catch (e) {
        lastError = e instanceof DnsTemporaryError ? e : new DnsProtocolError(String(e));
        continue;
      }
      if (resp.rcode === 0 || resp.rcode === RCODE_NXDOMAIN) return resp;
      lastError = new DnsTemporaryError(
        `DNS server failure (rcode ${resp.rcode})`,
        "temporary failure",
      );
      // SERVFAIL/REFUSED from this server: try the next one
    }
    // Every server failed outright (no timeouts): asking again will not help.
    if (silent === 0 && lastError) throw lastError;
  }
  throw lastError ?? timedOut();
}
