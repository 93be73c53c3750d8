/**
 * A small asynchronous DNS stub client: queries a recursive resolver over UDP
 * (TCP when the answer is truncated) and reports TTLs, so callers can cache,
 * and tells a permanent "no such record" (NXDOMAIN, no data: an empty result)
 * from a temporary failure (SERVFAIL, REFUSED, timeout, network error:
 * DnsTemporaryError).
 *
 * The resolver is `$DNSCACHEIP` (djbdns's convention: one or more IP
 * addresses, port 53), else the `nameserver` lines of /etc/resolv.conf (read
 * once), else 127.0.0.1.
 */
import dgram from "node:dgram";
import process from "node:process";

/** A lookup failed for now (SERVFAIL, REFUSED, timeout, network error): try again later. */
export class DnsTemporaryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DnsTemporaryError";
  }
}

/** A resolver to ask: an IPv4 or IPv6 address and a port. */
export interface DnsServer {
  address: string;
  port: number;
}

/** Options every lookup takes. */
export interface LookupOptions {
  /** Give up (DnsTemporaryError) after this many milliseconds; default 10000. */
  timeoutMs?: number;
  /** Abort the lookup (rejects with DnsTemporaryError). */
  signal?: AbortSignal;
  /** Resolvers to ask instead of $DNSCACHEIP / resolv.conf. */
  servers?: DnsServer[];
  /** A cache to answer from and fill (answers kept for their TTL). */
  cache?: DnsCache;
}

/** Record types this client asks for. */
export const TYPE = { A: 1, PTR: 12, TXT: 16, AAAA: 28, CNAME: 5 } as const;

const RCODE_NXDOMAIN = 3;

/** The records of one type an answer holds, and the smallest TTL among them. */
export interface Answer {
  /** A/AAAA: address text; PTR: name; TXT: the record's strings joined. */
  values: string[];
  /** Seconds the answer may be cached (for an empty answer: a short negative TTL). */
  ttl: number;
}

// ---------------------------------------------------------------- servers

let defaultServersCache: { key: string; servers: DnsServer[] } | undefined;
let resolvConfServers: DnsServer[] | undefined;

function parseIpList(text: string): string[] {
  return text.split(/[\s,]+/).filter((s) => s !== "" && (isIPv4(s) || isIPv6(s)));
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
        if (isIPv4(ip) || isIPv6(ip)) out.push({ address: ip, port: 53 });
      }
    }
  } catch { /* no resolv.conf: fall back to 127.0.0.1 */ }
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

// ---------------------------------------------------------------- addresses

/** True for dotted-quad IPv4 text. */
export function isIPv4(s: string): boolean {
  const parts = s.split(".");
  return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}

/** True for IPv6 text (with an optional embedded IPv4 tail). */
export function isIPv6(s: string): boolean {
  return s.includes(":") && expandIPv6(s) !== null;
}

/** The 16 bytes of an IPv6 address, or null when s is not one. */
export function expandIPv6(s: string): Uint8Array | null {
  let text = s.replace(/%.*$/, "");
  if (text.startsWith("[") && text.endsWith("]")) text = text.slice(1, -1);
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(":");
  if (lastColon >= 0 && text.slice(lastColon + 1).includes(".")) {
    const v4 = text.slice(lastColon + 1);
    if (!isIPv4(v4)) return null;
    const b = v4.split(".").map(Number);
    tail.push((b[0] << 8) | b[1], (b[2] << 8) | b[3]);
    text = text.slice(0, lastColon + 1) + "0";
    text = text.slice(0, -1);
    if (text.endsWith(":") && !text.endsWith("::")) text = text.slice(0, -1);
  }
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const parse = (h: string): number[] | null => {
    if (h === "") return [];
    const groups = h.split(":");
    const out: number[] = [];
    for (const g of groups) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parse(halves[0]);
  if (head === null) return null;
  let words: number[];
  if (halves.length === 2) {
    const back = parse(halves[1]);
    if (back === null) return null;
    const fill = 8 - head.length - back.length - tail.length;
    if (fill < 1) return null;
    words = [...head, ...new Array(fill).fill(0), ...back, ...tail];
  } else {
    words = [...head, ...tail];
  }
  if (words.length !== 8) return null;
  const bytes = new Uint8Array(16);
  words.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  return bytes;
}

function mappedIPv4(bytes: Uint8Array): string | null {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return null;
  if (bytes[10] !== 0xff || bytes[11] !== 0xff) return null;
  return `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
}

/**
 * The label sequence an RBL uses for ip (without a base): IPv4 a.b.c.d gives
 * "d.c.b.a"; IPv6 gives its 32 nibbles in reverse order, dot-separated; an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) is treated as its IPv4 address.
 * Throws TypeError when ip is not an address.
 */
export function reverseName(ip: string): string {
  if (isIPv4(ip)) return ip.split(".").reverse().join(".");
  const bytes = expandIPv6(ip);
  if (!bytes) throw new TypeError(`not an IP address: ${ip}`);
  const v4 = mappedIPv4(bytes);
  if (v4) return reverseName(v4);
  const nibbles: string[] = [];
  for (let i = 15; i >= 0; i--) {
    nibbles.push((bytes[i] & 0xf).toString(16), (bytes[i] >> 4).toString(16));
  }
  return nibbles.join(".");
}

/** The PTR query name of ip: d.c.b.a.in-addr.arpa or the nibbles under ip6.arpa. */
export function ptrName(ip: string): string {
  if (isIPv4(ip)) return `${reverseName(ip)}.in-addr.arpa`;
  const bytes = expandIPv6(ip);
  if (!bytes) throw new TypeError(`not an IP address: ${ip}`);
  const v4 = mappedIPv4(bytes);
  if (v4) return `${reverseName(v4)}.in-addr.arpa`;
  return `${reverseName(ip)}.ip6.arpa`;
}

// ---------------------------------------------------------------- wire format

/** Encodes a DNS name as labels; throws TypeError for a label over 63 bytes. */
export function encodeName(name: string): Uint8Array {
  const enc = new TextEncoder();
  const trimmed = name.endsWith(".") ? name.slice(0, -1) : name;
  const parts: number[] = [];
  if (trimmed !== "") {
    for (const label of trimmed.split(".")) {
      const b = enc.encode(label);
      if (b.length === 0 || b.length > 63) throw new TypeError(`bad DNS name: ${name}`);
      parts.push(b.length, ...b);
    }
  }
  parts.push(0);
  if (parts.length > 255) throw new TypeError(`DNS name too long: ${name}`);
  return new Uint8Array(parts);
}

/** A query packet for (name, type, class IN) with id and recursion desired. */
export function encodeQuery(id: number, name: string, type: number): Uint8Array {
  const qname = encodeName(name);
  const out = new Uint8Array(12 + qname.length + 4);
  const v = new DataView(out.buffer);
  v.setUint16(0, id);
  v.setUint16(2, 0x0100); // RD
  v.setUint16(4, 1);
  out.set(qname, 12);
  v.setUint16(12 + qname.length, type);
  v.setUint16(14 + qname.length, 1);
  return out;
}

/** Reads a possibly compressed name at off; returns it and the offset after it. */
export function decodeName(msg: Uint8Array, off: number): [string, number] {
  const labels: string[] = [];
  let end = -1;
  let hops = 0;
  const dec = new TextDecoder("latin1");
  while (true) {
    if (off >= msg.length) throw new RangeError("truncated name");
    const len = msg[off];
    if (len === 0) {
      off += 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (off + 1 >= msg.length) throw new RangeError("truncated pointer");
      if (end < 0) end = off + 2;
      off = ((len & 0x3f) << 8) | msg[off + 1];
      if (++hops > 64) throw new RangeError("name pointer loop");
      continue;
    }
    if (len > 63 || off + 1 + len > msg.length) throw new RangeError("bad label");
    labels.push(dec.decode(msg.subarray(off + 1, off + 1 + len)));
    off += 1 + len;
  }
  return [labels.join("."), end >= 0 ? end : off];
}

/** A parsed response: its id, flags, rcode and the answer section. */
export interface Response {
  id: number;
  truncated: boolean;
  rcode: number;
  question: { name: string; type: number } | null;
  answers: { name: string; type: number; ttl: number; data: Uint8Array; offset: number }[];
  /** Minimum of the SOA TTL/minimum in the authority section (negative caching). */
  negativeTtl: number | null;
  /** The whole message (record data refers into it). */
  message: Uint8Array;
}

/** Parses a DNS response; throws RangeError when it is malformed. */
export function decodeResponse(msg: Uint8Array): Response {
  if (msg.length < 12) throw new RangeError("short DNS packet");
  const v = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  const id = v.getUint16(0);
  const flags = v.getUint16(2);
  const qd = v.getUint16(4), an = v.getUint16(6), ns = v.getUint16(8);
  let off = 12;
  let question: Response["question"] = null;
  for (let i = 0; i < qd; i++) {
    const [name, next] = decodeName(msg, off);
    if (next + 4 > msg.length) throw new RangeError("truncated question");
    if (i === 0) question = { name, type: v.getUint16(next) };
    off = next + 4;
  }
  const answers: Response["answers"] = [];
  let negativeTtl: number | null = null;
  for (let i = 0; i < an + ns; i++) {
    const [name, next] = decodeName(msg, off);
    if (next + 10 > msg.length) throw new RangeError("truncated record");
    const type = v.getUint16(next);
    const ttl = v.getUint32(next + 4);
    const rdlen = v.getUint16(next + 8);
    const start = next + 10;
    if (start + rdlen > msg.length) throw new RangeError("truncated rdata");
    if (i < an) {
      answers.push({ name, type, ttl, data: msg.subarray(start, start + rdlen), offset: start });
    } else if (type === 6) {
      // SOA: negative TTL is min(record TTL, SOA minimum)
      try {
        const [, a] = decodeName(msg, start);
        const [, b] = decodeName(msg, a);
        if (b + 20 <= start + rdlen) {
          const minimum = v.getUint32(b + 16);
          negativeTtl = Math.min(ttl, minimum);
        }
      } catch { /* ignore a bad SOA */ }
    }
    off = start + rdlen;
  }
  return {
    id,
    truncated: (flags & 0x0200) !== 0,
    rcode: flags & 0x0f,
    question,
    answers,
    negativeTtl,
    message: msg,
  };
}

function ipv6Text(b: Uint8Array): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((b[i] << 8) | b[i + 1]);
  // compress the longest run of zero words (RFC 5952)
  let bestAt = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestAt < 0) return hex.join(":");
  return hex.slice(0, bestAt).join(":") + "::" + hex.slice(bestAt + bestLen).join(":");
}

/** The value of one record in text: address, name, or TXT strings concatenated. */
function recordText(msg: Uint8Array, r: Response["answers"][number]): string | null {
  const d = r.data;
  switch (r.type) {
    case TYPE.A:
      return d.length === 4 ? `${d[0]}.${d[1]}.${d[2]}.${d[3]}` : null;
    case TYPE.AAAA:
      return d.length === 16 ? ipv6Text(d) : null;
    case TYPE.PTR:
      return decodeName(msg, r.offset)[0];
    case TYPE.TXT: {
      const parts: string[] = [];
      const dec = new TextDecoder("latin1");
      for (let i = 0; i < d.length;) {
        const n = d[i];
        parts.push(dec.decode(d.subarray(i + 1, i + 1 + n)));
        i += 1 + n;
      }
      return parts.join("");
    }
  }
  return null;
}

// ---------------------------------------------------------------- transport

const RETRANSMIT_MS = [1000, 3000, 11000, 45000];

function abortError(): DnsTemporaryError {
  return new DnsTemporaryError("DNS lookup aborted");
}

/** Sends query to one server over UDP, resolving the matching reply or null on timeout. */
function udpExchange(
  server: DnsServer,
  query: Uint8Array,
  id: number,
  waitMs: number,
  signal?: AbortSignal,
): Promise<Uint8Array | null> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket(isIPv6(server.address) ? "udp6" : "udp4");
    let done = false;
    const finish = (err: Error | null, value: Uint8Array | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      try {
        sock.close();
      } catch { /* already closed */ }
      if (err) reject(err);
      else resolve(value);
    };
    const onAbort = () => finish(abortError(), null);
    const timer = setTimeout(() => finish(null, null), waitMs);
    signal?.addEventListener("abort", onAbort, { once: true });
    sock.on("error", (e) => finish(new DnsTemporaryError(`DNS network error: ${e.message}`), null));
    sock.on("message", (msg: Uint8Array, rinfo: { address: string; port: number }) => {
      if (rinfo.port !== server.port) return;
      if (msg.length < 2 || ((msg[0] << 8) | msg[1]) !== id) return;
      finish(null, new Uint8Array(msg));
    });
    sock.send(query, server.port, server.address, (e) => {
      if (e) finish(new DnsTemporaryError(`DNS network error: ${e.message}`), null);
    });
  });
}

/** Sends query to one server over TCP (for truncated UDP answers). */
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
      let w = 0;
      while (w < framed.length) w += await conn.write(framed.subarray(w));
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
      return await readExact((len[0] << 8) | len[1]);
    })();
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DnsTemporaryError("DNS lookup timed out")), waitMs);
    });
    return await Promise.race([work, timeout]);
  } catch (e) {
    if (e instanceof DnsTemporaryError) throw e;
    if (signal?.aborted) throw abortError();
    throw new DnsTemporaryError(`DNS network error: ${(e as Error).message}`);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    try {
      conn?.close();
    } catch { /* closed */ }
  }
}

/**
 * Asks for (name, type): UDP to each server in turn, retransmitting with
 * growing waits until timeoutMs; TCP when the answer is truncated. Resolves
 * the parsed response with rcode NOERROR or NXDOMAIN; throws
 * DnsTemporaryError for anything else.
 */
export async function query(
  name: string,
  type: number,
  opts: LookupOptions = {},
): Promise<Response> {
  const servers = opts.servers ?? defaultServers();
  const timeoutMs = opts.timeoutMs ?? 10000;
  const deadline = Date.now() + timeoutMs;
  const signal = opts.signal;
  let lastError: DnsTemporaryError | null = null;
  for (const step of RETRANSMIT_MS) {
    let silent = 0;
    for (const server of servers) {
      if (signal?.aborted) throw abortError();
      const left = deadline - Date.now();
      if (left <= 0) throw lastError ?? new DnsTemporaryError("DNS lookup timed out");
      const id = (Math.random() * 0x10000) | 0;
      const q = encodeQuery(id, name, type);
      let raw: Uint8Array | null;
      try {
        raw = await udpExchange(server, q, id, Math.min(step, left), signal);
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
        lastError = e instanceof DnsTemporaryError
          ? e
          : new DnsTemporaryError(`bad DNS answer: ${e}`);
        continue;
      }
      if (resp.rcode === 0 || resp.rcode === RCODE_NXDOMAIN) return resp;
      lastError = new DnsTemporaryError(`DNS server failure (rcode ${resp.rcode})`);
      // SERVFAIL/REFUSED from this server: try the next one
    }
    // Every server failed outright (no timeouts): asking again will not help.
    if (silent === 0 && lastError) throw lastError;
  }
  throw lastError ?? new DnsTemporaryError("DNS lookup timed out");
}

// ---------------------------------------------------------------- cache

/** A bounded cache of answers, each kept for its TTL (least recently stored evicted first). */
export class DnsCache {
  #map = new Map<string, { answer: Answer; expires: number }>();
  constructor(readonly maxEntries = 10000, readonly now: () => number = Date.now) {}

  /** The cached answer for key, if not expired. */
  get(key: string): Answer | undefined {
    const e = this.#map.get(key);
    if (!e) return undefined;
    if (e.expires <= this.now()) {
      this.#map.delete(key);
      return undefined;
    }
    return {
      values: e.answer.values,
      ttl: Math.max(0, Math.ceil((e.expires - this.now()) / 1000)),
    };
  }

  /** Stores answer for its TTL (nothing for TTL 0). */
  set(key: string, answer: Answer): void {
    if (answer.ttl <= 0 || this.maxEntries <= 0) return;
    this.#map.delete(key);
    while (this.#map.size >= this.maxEntries) {
      const oldest = this.#map.keys().next().value as string;
      this.#map.delete(oldest);
    }
    this.#map.set(key, { answer, expires: this.now() + answer.ttl * 1000 });
  }

  /** Number of entries held (expired ones included until looked up). */
  get size(): number {
    return this.#map.size;
  }

  /** Forgets everything. */
  clear(): void {
    this.#map.clear();
  }

  /**
   * Lookups under way, by key: concurrent askers of one name (through the
   * same servers) share one query, made with the first asker's options.
   */
  readonly inflight: Map<string, Promise<Answer>> = new Map();
}

const NEGATIVE_TTL_CAP = 300;

/**
 * The records of one type for name: [] for NXDOMAIN or no data. Throws
 * DnsTemporaryError on a temporary failure.
 */
export function lookup(name: string, type: number, opts: LookupOptions = {}): Promise<Answer> {
  const cache = opts.cache;
  if (!cache) return ask(name, type, opts);
  const via = opts.servers?.map((v) => `${v.address}#${v.port}`).join(",") ?? "";
  const key = `${type}/${name.toLowerCase().replace(/\.$/, "")}/${via}`;
  const hit = cache.get(key);
  if (hit) return Promise.resolve(hit);
  const pending = cache.inflight.get(key);
  if (pending) return pending;
  const p = ask(name, type, opts).then((answer) => {
    cache.set(key, answer);
    return answer;
  }).finally(() => cache.inflight.delete(key));
  cache.inflight.set(key, p);
  return p;
}

async function ask(name: string, type: number, opts: LookupOptions): Promise<Answer> {
  const resp = await query(name, type, opts);
  const values: string[] = [];
  let ttl = Infinity;
  for (const r of resp.answers) {
    if (r.type !== type) continue;
    const text = recordText(resp.message, r);
    if (text === null) continue;
    values.push(text);
    ttl = Math.min(ttl, r.ttl);
  }
  return {
    values,
    ttl: values.length ? ttl : Math.min(resp.negativeTtl ?? 0, NEGATIVE_TTL_CAP),
  };
}

// ---------------------------------------------------------------- lookups

/** The names of ip (PTR under in-addr.arpa or ip6.arpa). [] when there is none. */
export async function resolvePtr(ip: string, opts: LookupOptions = {}): Promise<string[]> {
  return (await lookup(ptrName(ip), TYPE.PTR, opts)).values;
}

/** The IPv4 addresses of name and their TTL; ips [] when there are none. */
export async function resolveA(
  name: string,
  opts: LookupOptions = {},
): Promise<{ ips: string[]; ttl: number }> {
  const a = await lookup(name, TYPE.A, opts);
  return { ips: a.values, ttl: a.ttl };
}

/** The TXT records of name (each record's strings concatenated) and their TTL. */
export async function resolveTxt(
  name: string,
  opts: LookupOptions = {},
): Promise<{ texts: string[]; ttl: number }> {
  const a = await lookup(name, TYPE.TXT, opts);
  return { texts: a.values, ttl: a.ttl };
}

/**
 * The addresses of name: family 4 (A), 6 (AAAA) or 0 (both; IPv4 first).
 * A literal address resolves to itself.
 */
export async function resolveAddrs(
  name: string,
  opts: LookupOptions & { family?: 4 | 6 | 0 } = {},
): Promise<string[]> {
  const family = opts.family ?? 0;
  if (isIPv4(name)) return family === 6 ? [] : [name];
  if (isIPv6(name)) return family === 4 ? [] : [name];
  const out: string[] = [];
  if (family !== 6) out.push(...(await lookup(name, TYPE.A, opts)).values);
  if (family !== 4) out.push(...(await lookup(name, TYPE.AAAA, opts)).values);
  return out;
}
