/**
 * A test DNS responder for loopback: answers A, AAAA, TXT, PTR (and CNAME)
 * queries from a map of names, over UDP and TCP, with per-name misbehaviour
 * (SERVFAIL, REFUSED, NXDOMAIN, no answer at all, truncation forcing TCP).
 *
 * DJB's C tools send their queries to $DNSCACHEIP port 53 only, so by default
 * the server binds port 53 on a loopback address of its own (127.53.x.y; needs
 * root) and a test points $DNSCACHEIP at `server.address`.
 *
 * ```ts
 * const dns = await startDnsServer({
 *   "2.0.0.127.rbl.test": { TXT: ["listed: see http://rbl.test/"], A: ["127.0.0.2"] },
 *   "broken.rbl.test": { behaviour: "servfail" },
 *   "*.slow.test": { behaviour: "timeout" },
 * });
 * // ... env DNSCACHEIP=dns.address ...
 * await dns.close();
 * ```
 */
import dgram from "node:dgram";

/** What the server knows about one name. Absent names get NXDOMAIN. */
export interface ZoneEntry {
  A?: string[];
  AAAA?: string[];
  /** Each record: one text (cut into 255-byte strings) or its strings. */
  TXT?: (string | string[])[];
  PTR?: string[];
  /** An alias: queries of other types answer the CNAME plus the target's records. */
  CNAME?: string;
  /** TTL of every record of this name (default 300). */
  ttl?: number;
  /**
   * Misbehaviour for every query of this name: "servfail" (rcode 2),
   * "refused" (rcode 5), "nxdomain" (rcode 3), "timeout" (never answers),
   * "truncate" (UDP answers have TC set and no records; TCP answers fully).
   */
  behaviour?: "servfail" | "refused" | "nxdomain" | "timeout" | "truncate";
}

/** Names (case-insensitive, no trailing dot; `*.suffix` wildcards) to entries. */
export type Zones = Record<string, ZoneEntry>;

/** One query the server received. */
export interface SeenQuery {
  name: string;
  type: number;
  proto: "udp" | "tcp";
}

export interface DnsTestServer {
  /** The address the server listens on (set $DNSCACHEIP to it). */
  address: string;
  port: number;
  /** Every query received, in order. */
  queries: SeenQuery[];
  /** The zones answered from; edit it to change answers. */
  zones: Zones;
  close(): Promise<void>;
}

export interface DnsServerOptions {
  /** Default: a fresh 127.53.x.y. */
  address?: string;
  /** Default 53 (what DJB's tools use); 0 picks a free port. */
  port?: number;
  /** SOA minimum in negative answers (NXDOMAIN, no data); default: no SOA. */
  negativeTtl?: number;
}

const T = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, TXT: 16, AAAA: 28 } as const;

function randomLoopback(): string {
  const b = crypto.getRandomValues(new Uint8Array(2));
  return `127.53.${b[0]}.${(b[1] % 253) + 1}`;
}

function norm(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

function find(zones: Zones, name: string): ZoneEntry | undefined {
  const n = norm(name);
  for (const [k, v] of Object.entries(zones)) if (norm(k) === n) return v;
  const labels = n.split(".");
  for (let i = 1; i < labels.length; i++) {
    const wild = "*." + labels.slice(i).join(".");
    for (const [k, v] of Object.entries(zones)) if (norm(k) === wild) return v;
  }
  return undefined;
}

function nameBytes(name: string): number[] {
  const out: number[] = [];
  const n = norm(name);
  if (n !== "") {
    for (const label of n.split(".")) {
      const b = new TextEncoder().encode(label);
      out.push(b.length, ...b);
    }
  }
  out.push(0);
  return out;
}

function ipv4Bytes(ip: string): number[] {
  return ip.split(".").map(Number);
}

function ipv6Bytes(ip: string): number[] {
  const [head, tail = ""] = ip.split("::");
  const h = head ? head.split(":") : [];
  const t = ip.includes("::") ? (tail ? tail.split(":") : []) : [];
  const words = [...h, ...new Array(8 - h.length - t.length).fill("0"), ...t].map((w) =>
    parseInt(w, 16)
  );
  return words.flatMap((w) => [w >> 8, w & 0xff]);
}

function txtBytes(rec: string | string[]): number[] {
  const enc = new TextEncoder();
  const strings: Uint8Array[] = [];
  if (Array.isArray(rec)) {
    for (const s of rec) strings.push(enc.encode(s).subarray(0, 255));
  } else {
    const all = enc.encode(rec);
    if (all.length === 0) strings.push(all);
    for (let i = 0; i < all.length; i += 255) strings.push(all.subarray(i, i + 255));
  }
  return strings.flatMap((s) => [s.length, ...s]);
}

function u16(n: number): number[] {
  return [(n >> 8) & 0xff, n & 0xff];
}

function u32(n: number): number[] {
  return [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

function rr(owner: number[], type: number, ttl: number, data: number[]): number[] {
  return [...owner, ...u16(type), ...u16(1), ...u32(ttl), ...u16(data.length), ...data];
}

/** Parses the question of a query: id, flags, name, type, and where the question ends. */
function parseQuery(
  msg: Uint8Array,
): { id: number; rd: number; name: string; type: number; end: number } | null {
  if (msg.length < 17) return null;
  let off = 12;
  const labels: string[] = [];
  while (off < msg.length && msg[off] !== 0) {
    const len = msg[off];
    if (len > 63 || off + 1 + len >= msg.length) return null;
    labels.push(new TextDecoder("latin1").decode(msg.subarray(off + 1, off + 1 + len)));
    off += 1 + len;
  }
  off += 1;
  if (off + 4 > msg.length) return null;
  return {
    id: (msg[0] << 8) | msg[1],
    rd: msg[2] & 1,
    name: labels.join("."),
    type: (msg[off] << 8) | msg[off + 1],
    end: off + 4,
  };
}

/** The answer to msg, or null for "no answer at all". */
function answer(
  zones: Zones,
  msg: Uint8Array,
  proto: "udp" | "tcp",
  negativeTtl: number | undefined,
): Uint8Array | null {
  const q = parseQuery(msg);
  if (!q) return null;
  const question = Array.from(msg.subarray(12, q.end));
  let rcode = 0;
  let tc = 0;
  const answers: number[][] = [];
  const entry = find(zones, q.name);
  const ptr0 = [0xc0, 12];
  if (entry?.behaviour === "timeout") return null;
  if (!entry || entry.behaviour === "nxdomain") rcode = 3;
  else if (entry.behaviour === "servfail") rcode = 2;
  else if (entry.behaviour === "refused") rcode = 5;
  else if (entry.behaviour === "truncate" && proto === "udp") tc = 1;
  else {
    let owner = ptr0;
    let e: ZoneEntry | undefined = entry;
    let hops = 0;
    while (e && e.CNAME && q.type !== T.CNAME && hops++ < 8) {
      answers.push(rr(owner, T.CNAME, e.ttl ?? 300, nameBytes(e.CNAME)));
      owner = nameBytes(e.CNAME);
      e = find(zones, e.CNAME);
    }
    if (e) {
      const ttl = e.ttl ?? 300;
      if (q.type === T.A) {
        for (const ip of e.A ?? []) answers.push(rr(owner, T.A, ttl, ipv4Bytes(ip)));
      }
      if (q.type === T.AAAA) {
        for (const ip of e.AAAA ?? []) answers.push(rr(owner, T.AAAA, ttl, ipv6Bytes(ip)));
      }
      if (q.type === T.TXT) {
        for (const t of e.TXT ?? []) answers.push(rr(owner, T.TXT, ttl, txtBytes(t)));
      }
      if (q.type === T.PTR) {
        for (const p of e.PTR ?? []) answers.push(rr(owner, T.PTR, ttl, nameBytes(p)));
      }
      if (q.type === T.CNAME && e.CNAME) answers.push(rr(owner, T.CNAME, ttl, nameBytes(e.CNAME)));
    }
  }
  const authority: number[][] = [];
  if (answers.length === 0 && (rcode === 0 || rcode === 3) && negativeTtl !== undefined && !tc) {
    const soa = [
      ...nameBytes("ns.test"),
      ...nameBytes("hostmaster.test"),
      ...u32(1),
      ...u32(3600),
      ...u32(600),
      ...u32(86400),
      ...u32(negativeTtl),
    ];
    authority.push(rr(nameBytes("test"), T.SOA, negativeTtl, soa));
  }
  const flags1 = 0x80 | 0x04 | (tc << 1) | q.rd; // QR, AA
  const flags2 = 0x80 | rcode; // RA
  const header = [
    ...u16(q.id),
    flags1,
    flags2,
    ...u16(1),
    ...u16(answers.length),
    ...u16(authority.length),
    ...u16(0),
  ];
  return new Uint8Array([...header, ...question, ...answers.flat(), ...authority.flat()]);
}

async function serveTcp(
  listener: Deno.Listener,
  server: DnsTestServer,
  negativeTtl: number | undefined,
  conns: Set<Deno.Conn>,
) {
  for await (const conn of listener) {
    conns.add(conn);
    (async () => {
      try {
        const buf: number[] = [];
        const chunk = new Uint8Array(4096);
        while (true) {
          const n = await conn.read(chunk);
          if (n === null) break;
          buf.push(...chunk.subarray(0, n));
          while (buf.length >= 2 && buf.length >= 2 + ((buf[0] << 8) | buf[1])) {
            const len = (buf[0] << 8) | buf[1];
            const msg = new Uint8Array(buf.splice(0, 2 + len).slice(2));
            const q = parseQuery(msg);
            if (q) server.queries.push({ name: norm(q.name), type: q.type, proto: "tcp" });
            const out = answer(server.zones, msg, "tcp", negativeTtl);
            if (!out) continue;
            const framed = new Uint8Array([...u16(out.length), ...out]);
            let w = 0;
            while (w < framed.length) w += await conn.write(framed.subarray(w));
          }
        }
      } catch {
        /* client went away */
      } finally {
        conns.delete(conn);
        try {
          conn.close();
        } catch { /* closed */ }
      }
    })();
  }
}

function bindUdp(address: string, port: number): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket(address.includes(":") ? "udp6" : "udp4");
    sock.once("error", reject);
    sock.bind(port, address, () => {
      sock.off("error", reject);
      resolve(sock);
    });
  });
}

/** Starts a test DNS server over UDP and TCP answering from zones. */
export async function startDnsServer(
  zones: Zones,
  opts: DnsServerOptions = {},
): Promise<DnsTestServer> {
  let lastErr: unknown;
  for (let attempt = 0; attempt < 20; attempt++) {
    const address = opts.address ?? randomLoopback();
    let sock: dgram.Socket | undefined;
    let listener: Deno.TcpListener | undefined;
    try {
      sock = await bindUdp(address, opts.port ?? 53);
      const port = sock.address().port;
      listener = Deno.listen({ hostname: address, port });
      const conns = new Set<Deno.Conn>();
      const server: DnsTestServer = {
        address,
        port,
        queries: [],
        zones,
        close: async () => {
          listener!.close();
          for (const c of conns) {
            try {
              c.close();
            } catch { /* closed */ }
          }
          await new Promise<void>((r) => sock!.close(() => r()));
          await tcpDone;
        },
      };
      const udp = sock;
      udp.on("message", (msg: Uint8Array, rinfo: { address: string; port: number }) => {
        const q = parseQuery(msg);
        if (q) server.queries.push({ name: norm(q.name), type: q.type, proto: "udp" });
        const out = answer(server.zones, new Uint8Array(msg), "udp", opts.negativeTtl);
        if (out) udp.send(out, rinfo.port, rinfo.address);
      });
      udp.on("error", () => {});
      const tcpDone = serveTcp(listener, server, opts.negativeTtl, conns).catch(() => {});
      return server;
    } catch (e) {
      lastErr = e;
      if (sock) await new Promise<void>((r) => sock!.close(() => r()));
      listener?.close();
      if (opts.address !== undefined) break;
    }
  }
  throw lastErr;
}

/** Record type numbers, for inspecting `queries`. */
export const RTYPE = T;
