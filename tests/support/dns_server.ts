/**
 * A test DNS responder for loopback: answers A, AAAA, TXT, PTR (and CNAME)
 * queries from a map of names, over UDP and TCP, with per-name misbehaviour
 * (SERVFAIL, REFUSED, NXDOMAIN, no answer at all, truncation forcing TCP).
 *
 * It is also the attacker: PTR and CNAME targets and TXT data may be raw
 * bytes (`wireName(...)`: labels holding NUL, '=', newlines, dots, 8-bit
 * bytes; names over 255 bytes; compression loops), extra records owned by
 * other names can be planted in an answer, and forged replies (from another
 * loopback address, with a wrong id, answering another question, over TCP
 * answering another question) go out before the real one. Zone keys match
 * the query name either as plain text or in djbdns's escaped form
 * (`x\000injected\075yes.example`), so a hostile name's forward lookup can
 * be answered too.
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

/** A name as the server sends it: dotted text, or raw wire bytes sent verbatim. */
export type NameData = string | Uint8Array;

/** A record planted in an answer ahead of the real ones (e.g. owned by another name). */
export interface ExtraRecord {
  owner: NameData;
  type: "A" | "AAAA" | "PTR" | "TXT" | "CNAME";
  /** A/AAAA: address text; PTR/CNAME: a name; TXT: one text, or raw rdata bytes. */
  value: NameData;
  /** Class (default 1, IN). */
  class?: number;
}

/** A forged reply, sent before the real one (alone when behaviour is "timeout"). */
export interface Forgery {
  /**
   * "source": right id and question, sent from another loopback address
   * (same port); "id": from the server but with the wrong id; "question":
   * from the server with the right id, answering `name` instead.
   */
  kind: "source" | "id" | "question";
  /** What the forged reply answers with (its records). */
  entry: ZoneEntry;
  /** For "question": the name it claims to answer (default "forged.invalid"). */
  name?: string;
}

/** What the server knows about one name. Absent names get NXDOMAIN. */
export interface ZoneEntry {
  A?: string[];
  AAAA?: string[];
  /** Each record: one text (cut into 255-byte strings), its strings, or raw rdata bytes. */
  TXT?: (string | string[] | Uint8Array)[];
  PTR?: NameData[];
  /** An alias: queries of other types answer the CNAME plus the target's records. */
  CNAME?: NameData;
  /** Records planted ahead of the real answer (same reply). */
  extra?: ExtraRecord[];
  /** Forged replies sent before the real one (UDP). */
  forged?: Forgery[];
  /** Over TCP (after "truncate"), answer as if the question were this name instead. */
  tcpQuestion?: string;
  /** TTL of every record of this name (default 300). */
  ttl?: number;
  /**
   * Misbehaviour for every query of this name: "servfail" (rcode 2),
   * "refused" (rcode 5), "nxdomain" (rcode 3), "timeout" (never answers),
   * "truncate" (UDP answers have TC set and no records; TCP answers fully).
   */
  behaviour?: Behaviour;
  /** Misbehaviour for queries of one type only (e.g. `{ AAAA: "refused" }`), over `behaviour`. */
  typeBehaviour?: Partial<Record<"A" | "AAAA" | "PTR" | "TXT" | "CNAME", Behaviour>>;
}

/** How a name misbehaves (see ZoneEntry.behaviour). */
export type Behaviour = "servfail" | "refused" | "nxdomain" | "timeout" | "truncate";

/** Names (case-insensitive, no trailing dot; `*.suffix` wildcards) to entries. */
export type Zones = Record<string, ZoneEntry>;

/** One query the server received. */
export interface SeenQuery {
  /** The name, labels joined by dots (lowercase). */
  name: string;
  /** The name as djbdns writes it (escaped, lowercase). */
  escaped: string;
  /** The query's id. */
  id: number;
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

/** A label as djbdns's dns_domain_todot_cat writes it (written here independently of lib/net/dns/name.ts). */
function escapeLabel(label: Uint8Array): string {
  let s = "";
  for (let c of label) {
    if (c >= 65 && c <= 90) c += 32;
    const ok = (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 95;
    s += ok ? String.fromCharCode(c) : "\\" + c.toString(8).padStart(3, "0");
  }
  return s;
}

function find(zones: Zones, name: string, escaped = name): ZoneEntry | undefined {
  for (const n of new Set([norm(name), norm(escaped)])) {
    for (const [k, v] of Object.entries(zones)) if (norm(k) === n) return v;
  }
  const labels = norm(name).split(".");
  for (let i = 1; i < labels.length; i++) {
    const wild = "*." + labels.slice(i).join(".");
    for (const [k, v] of Object.entries(zones)) if (norm(k) === wild) return v;
  }
  return undefined;
}

/**
 * The wire form of a name made of these labels (a string label is taken as
 * a byte string: one char, one byte), sent verbatim: no length checks, so a
 * test can make labels that hold dots or NULs and names over 255 bytes.
 */
export function wireName(...labels: (string | Uint8Array | number[])[]): Uint8Array {
  const out: number[] = [];
  for (const l of labels) {
    const b = typeof l === "string" ? Array.from(l, (c) => c.charCodeAt(0) & 0xff) : Array.from(l);
    out.push(b.length, ...b);
  }
  out.push(0);
  return new Uint8Array(out);
}

function nameBytes(name: NameData): number[] {
  if (name instanceof Uint8Array) return Array.from(name);
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

function txtBytes(rec: string | string[] | Uint8Array): number[] {
  if (rec instanceof Uint8Array) return Array.from(rec);
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

function rr(owner: number[], type: number, ttl: number, data: number[], klass = 1): number[] {
  return [...owner, ...u16(type), ...u16(klass), ...u32(ttl), ...u16(data.length), ...data];
}

/** Parses the question of a query: id, flags, name, type, and where the question ends. */
function parseQuery(
  msg: Uint8Array,
): { id: number; rd: number; name: string; escaped: string; type: number; end: number } | null {
  if (msg.length < 17) return null;
  let off = 12;
  const labels: string[] = [];
  const escaped: string[] = [];
  while (off < msg.length && msg[off] !== 0) {
    const len = msg[off];
    if (len > 63 || off + 1 + len >= msg.length) return null;
    const label = msg.subarray(off + 1, off + 1 + len);
    labels.push(String.fromCharCode(...label));
    escaped.push(escapeLabel(label));
    off += 1 + len;
  }
  off += 1;
  if (off + 4 > msg.length) return null;
  return {
    id: (msg[0] << 8) | msg[1],
    rd: msg[2] & 1,
    name: labels.join("."),
    escaped: escaped.join("."),
    type: (msg[off] << 8) | msg[off + 1],
    end: off + 4,
  };
}

/** A wire name's plain and escaped text (for zone lookup); null when it is not a plain label list. */
function wireText(name: NameData): { name: string; escaped: string } | null {
  if (typeof name === "string") return { name, escaped: name };
  const labels: string[] = [], escaped: string[] = [];
  for (let off = 0; off < name.length;) {
    const len = name[off];
    if (len === 0) return { name: labels.join("."), escaped: escaped.join(".") };
    if (len > 63 || off + 1 + len > name.length) return null;
    const label = name.subarray(off + 1, off + 1 + len);
    labels.push(String.fromCharCode(...label));
    escaped.push(escapeLabel(label));
    off += 1 + len;
  }
  return null;
}

function typeData(type: ExtraRecord["type"], value: NameData): number[] {
  if (type === "A") return ipv4Bytes(String(value));
  if (type === "AAAA") return ipv6Bytes(String(value));
  if (type === "TXT") return txtBytes(value);
  return nameBytes(value);
}

/** How a forged reply differs from the real one. */
interface Twist {
  /** Answer from this entry instead of the zones' one. */
  entry?: ZoneEntry;
  /** Claim to answer this name (the question section is rewritten). */
  questionName?: string;
  /** Added to the id. */
  idDelta?: number;
}

/** The answer to msg, or null for "no answer at all". */
function answer(
  zones: Zones,
  msg: Uint8Array,
  proto: "udp" | "tcp",
  negativeTtl: number | undefined,
  twist: Twist = {},
): Uint8Array | null {
  const q = parseQuery(msg);
  if (!q) return null;
  let question = Array.from(msg.subarray(12, q.end));
  let rcode = 0;
  let tc = 0;
  const answers: number[][] = [];
  const entry = twist.entry ?? find(zones, q.name, q.escaped);
  if (twist.questionName !== undefined) {
    question = [...nameBytes(twist.questionName), ...msg.subarray(q.end - 4, q.end)];
  } else if (proto === "tcp" && entry?.tcpQuestion !== undefined) {
    question = [...nameBytes(entry.tcpQuestion), ...msg.subarray(q.end - 4, q.end)];
  }
  const ptr0 = [0xc0, 12];
  const typeName = (Object.keys(T) as (keyof typeof T)[]).find((k) => T[k] === q.type);
  const tb = entry?.typeBehaviour as Record<string, Behaviour> | undefined;
  const behaviour = (typeName && tb?.[typeName]) ?? entry?.behaviour;
  if (behaviour === "timeout" && twist.entry === undefined) return null;
  if (!entry || behaviour === "nxdomain") rcode = 3;
  else if (behaviour === "servfail") rcode = 2;
  else if (behaviour === "refused") rcode = 5;
  else if (behaviour === "truncate" && proto === "udp") tc = 1;
  else {
    for (const x of entry.extra ?? []) {
      answers.push(
        rr(nameBytes(x.owner), T[x.type], entry.ttl ?? 300, typeData(x.type, x.value), x.class),
      );
    }
    let owner = ptr0;
    let e: ZoneEntry | undefined = entry;
    let hops = 0;
    while (e && e.CNAME !== undefined && q.type !== T.CNAME && hops++ < 8) {
      answers.push(rr(owner, T.CNAME, e.ttl ?? 300, nameBytes(e.CNAME)));
      owner = nameBytes(e.CNAME);
      const t = wireText(e.CNAME);
      e = t ? find(zones, t.name, t.escaped) : undefined;
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
      if (q.type === T.CNAME && e.CNAME !== undefined) {
        answers.push(rr(owner, T.CNAME, ttl, nameBytes(e.CNAME)));
      }
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
    ...u16((q.id + (twist.idDelta ?? 0)) & 0xffff),
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
            if (q) {
              server.queries.push({
                name: norm(q.name),
                escaped: q.escaped,
                id: q.id,
                type: q.type,
                proto: "tcp",
              });
            }
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
      let closeForger = async () => {};
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
          await closeForger();
          await tcpDone;
        },
      };
      const udp = sock;
      // The forger: a socket on another loopback address, same port (made when first needed).
      let forger: Promise<dgram.Socket> | undefined;
      const forgerSocket = () => {
        forger ??= (async () => {
          for (let i = 0;; i++) {
            try {
              return await bindUdp(randomLoopback(), port);
            } catch (e) {
              if (i > 20) throw e;
            }
          }
        })();
        return forger;
      };
      closeForger = async () => {
        if (!forger) return;
        const f = await forger.catch(() => null);
        if (f) await new Promise<void>((r) => f.close(() => r()));
      };
      const sendFrom = (
        s: dgram.Socket,
        out: Uint8Array,
        rinfo: { address: string; port: number },
      ) => new Promise<void>((r) => s.send(out, rinfo.port, rinfo.address, () => r()));
      udp.on("message", async (raw: Uint8Array, rinfo: { address: string; port: number }) => {
        const msg = new Uint8Array(raw);
        const q = parseQuery(msg);
        if (!q) return;
        server.queries.push({
          name: norm(q.name),
          escaped: q.escaped,
          id: q.id,
          type: q.type,
          proto: "udp",
        });
        const entry = find(server.zones, q.name, q.escaped);
        // Each forged reply reaches the client's socket before the real one (the
        // send callback runs once loopback has queued the datagram).
        for (const f of entry?.forged ?? []) {
          const twist: Twist = f.kind === "id"
            ? { entry: f.entry, idDelta: 1 }
            : f.kind === "question"
            ? { entry: f.entry, questionName: f.name ?? "forged.invalid" }
            : { entry: f.entry };
          const out = answer(server.zones, msg, "udp", opts.negativeTtl, twist);
          if (!out) continue;
          await sendFrom(f.kind === "source" ? await forgerSocket() : udp, out, rinfo);
        }
        const out = answer(server.zones, msg, "udp", opts.negativeTtl);
        if (out) await sendFrom(udp, out, rinfo).catch(() => {});
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
