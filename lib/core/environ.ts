/**
 * The UCSPI-TCP environment of a connection (tcp-environ(5)), for both ends:
 * tcpserver and tcpclient. Variables without a value are removed, not set
 * empty, as DJB's pathexec_env(name, 0) does, so values inherited from the
 * tool's own environment never leak into a connection.
 *
 * An IPv4 connection (also one arriving on a dual-stack socket as an
 * IPv4-mapped IPv6 address) gets PROTO=TCP and plain dotted quads. An IPv6
 * connection gets PROTO=TCP6, the compressed IPv6 addresses in the TCP*
 * variables and, as the IPv6 patch (ucspi-tcp6) adds them, the same values
 * in TCP6LOCALIP, TCP6LOCALPORT, TCP6LOCALHOST, TCP6REMOTEIP,
 * TCP6REMOTEPORT, TCP6REMOTEHOST and TCP6INTERFACE (for a scoped link-local
 * address). `forceV6` (tcpserver -6) reports IPv4 clients the IPv6 way with
 * IPv4-mapped addresses.
 */
import { formatIp4, formatIp6, isV4Mapped, parseIp4, parseIp6, unmapV4 } from "../net/ip.ts";
import { BoundedMap } from "./bounded.ts";
import { byteString, byteStringText, utf8ByteString } from "./bytes.ts";

/** What the environment describes: the two ends and what was learnt about them. */
export interface TcpEnvironInput {
  /** Our address, as the socket layer gives it. */
  localIp: string;
  /** Our port. */
  localPort: number;
  /** -l name or the local address's DNS name; null/undefined = unset. */
  localHost?: string | null;
  /** The client's address, as the socket layer gives it. */
  remoteIp: string;
  /** The client's port. */
  remotePort: number;
  /** The remote address's (confirmed) DNS name; null/undefined = unset. */
  remoteHost?: string | null;
  /** The RFC 1413 answer; null/undefined = unset ("" is a value). */
  remoteInfo?: string | null;
  /** Report IPv4 clients as IPv4-mapped IPv6 with PROTO=TCP6 (tcpserver -6). */
  forceV6?: boolean;
}

/** The IPv6 patch's TCP6* copies, set only for IPv6 connections. */
export const V6_ONLY = [
  "TCP6LOCALIP",
  "TCP6LOCALPORT",
  "TCP6LOCALHOST",
  "TCP6REMOTEIP",
  "TCP6REMOTEPORT",
  "TCP6REMOTEHOST",
  "TCP6INTERFACE",
];

/** The tcp-environ(5) variables of one side of a connection, PROTO aside. */
export const TCP_VARIABLES = [
  "TCPLOCALIP",
  "TCPLOCALPORT",
  "TCPLOCALHOST",
  "TCPREMOTEIP",
  "TCPREMOTEPORT",
  "TCPREMOTEHOST",
  "TCPREMOTEINFO",
];

/** An address as the environment shows it, and whether it is reported as IPv6. */
export interface ShownAddress {
  /** The address as the environment shows it. */
  ip: string;
  /** Whether it is reported the IPv6 way (PROTO=TCP6). */
  v6: boolean;
  /** The zone of a scoped address ("eth0" of fe80::1%eth0), if any. */
  zone?: string;
}

/**
 * An address from the socket layer (Deno's hostname: "1.2.3.4", "::1",
 * "::ffff:1.2.3.4", "fe80::1%2") as tcpserver reports it: IPv4-mapped as
 * plain IPv4 (or, with forceV6, IPv4 as "::ffff:a.b.c.d"), IPv6 compressed.
 */
export function showAddress(addr: string, forceV6 = false): ShownAddress {
  const memo = forceV6 ? shownV6 : shown;
  const hit = memo.get(addr);
  if (hit) return hit;
  const a = Object.freeze(showAddressOf(addr, forceV6));
  memo.set(addr, a);
  return a;
}

// showAddress is called several times per connection with the same few
// addresses: its (frozen) answers are remembered, bounded.
const shown = new BoundedMap<string, ShownAddress>(4096);
const shownV6 = new BoundedMap<string, ShownAddress>(4096);

function showAddressOf(addr: string, forceV6: boolean): ShownAddress {
  let text = addr;
  if (text.startsWith("[") && text.endsWith("]")) text = text.slice(1, -1);
  let zone: string | undefined;
  const pct = text.indexOf("%");
  if (pct >= 0) {
    zone = text.slice(pct + 1);
    text = text.slice(0, pct);
  }
  let v4 = parseIp4(text);
  if (!v4) {
    const v6 = parseIp6(text);
    if (v6 && isV4Mapped(v6)) v4 = unmapV4(v6);
    else if (v6) return { ip: formatIp6(v6), v6: true, zone };
    else return { ip: text, v6: text.includes(":"), zone };
  }
  const quad = formatIp4(v4);
  return forceV6 ? { ip: `::ffff:${quad}`, v6: true } : { ip: quad, v6: false };
}

/**
 * The variables for a connection: name -> value, or null for "remove".
 * Apply with applyEnviron (the order of names is the order C sets them).
 */
export function tcpEnviron(e: TcpEnvironInput): Map<string, string | null> {
  const local = showAddress(e.localIp, e.forceV6);
  const remote = showAddress(e.remoteIp, e.forceV6);
  const v6 = local.v6 || remote.v6;
  const lp = String(e.localPort);
  const rp = String(e.remotePort);
  const vars = new Map<string, string | null>();
  vars.set("PROTO", v6 ? "TCP6" : "TCP");
  vars.set("TCPLOCALIP", local.ip);
  vars.set("TCPLOCALPORT", lp);
  vars.set("TCPLOCALHOST", e.localHost ?? null);
  vars.set("TCPREMOTEIP", remote.ip);
  vars.set("TCPREMOTEPORT", rp);
  vars.set("TCPREMOTEHOST", e.remoteHost ?? null);
  vars.set("TCPREMOTEINFO", e.remoteInfo ?? null);
  if (v6) {
    vars.set("TCP6LOCALIP", local.ip);
    vars.set("TCP6LOCALPORT", lp);
    vars.set("TCP6LOCALHOST", e.localHost ?? null);
    vars.set("TCP6REMOTEIP", remote.ip);
    vars.set("TCP6REMOTEPORT", rp);
    vars.set("TCP6REMOTEHOST", e.remoteHost ?? null);
    vars.set("TCP6INTERFACE", remote.zone ?? local.zone ?? null);
  } else {
    for (const name of V6_ONLY) vars.set(name, null);
  }
  return vars;
}

/** Sets (or, for null, deletes) each variable of vars in env. */
export function applyEnviron(env: Map<string, string>, vars: Map<string, string | null>): void {
  for (const [k, v] of vars) {
    if (v === null) env.delete(k);
    else env.set(k, v);
  }
}

// deno-lint-ignore no-control-regex
const WIDE = /[^\u0000-\u00ff]/;

/**
 * The variables of env as a program's environment receives them (both the
 * native posix_spawn path and the pure Deno.Command path use this, so both
 * agree): a name that is empty or holds "=" or NUL is left out (it cannot be
 * one variable in an environ(7) block: "=" would move bytes of the name into
 * the value, NUL would end the entry early); a value is cut at its first NUL,
 * as C's execve sees a C string end there. A name or value holding a char
 * above 255 is text that was never made a byte string (a caller's slip): it
 * is passed as its UTF-8 bytes rather than cut to 8 bits.
 */
export function execEnvironment(env: Map<string, string>): Array<[name: string, value: string]> {
  const out: Array<[string, string]> = [];
  for (const [name, value] of env) {
    const entry = execEntry(name, value);
    if (entry !== null) out.push(entry);
  }
  return out;
}

/** One variable as execEnvironment passes it: [name, value], or null when it is left out. */
export function execEntry(name: string, value: string): [name: string, value: string] | null {
  if (WIDE.test(name)) name = utf8ByteString(name);
  if (name === "" || name.includes("=") || name.includes("\0")) return null;
  if (WIDE.test(value)) value = utf8ByteString(value);
  const nul = value.indexOf("\0");
  return [name, nul >= 0 ? value.slice(0, nul) : value];
}

const ENVIRON_SYMBOLS = {
  environ: { type: "pointer" },
  strlen: { parameters: ["pointer"], result: "usize" },
} as const;

/**
 * Our own process environment as byte strings. Deno decodes the environment
 * as UTF-8 and silently leaves out every variable whose bytes are not UTF-8
 * (Deno.env.get even throws for one), so a value C tcpserver set from a
 * rules file (U="\xe4") would vanish between it and a tool run as a process.
 * When FFI and env access are both granted (the compiled binary, `-A`),
 * libc's `environ` is read instead: every variable with its exact bytes.
 * Otherwise Deno.env's text, each name and value as its UTF-8 bytes
 * (utf8ByteString); variables that are not UTF-8 are then missing. Throws
 * what Deno.env.toObject throws without env permission.
 */
export function ownEnviron(): Map<string, string> {
  return libcEnviron() ?? byteEnviron(new Map(Object.entries(Deno.env.toObject())), false);
}

/**
 * `text` (an environment as Deno.env gives it: text) as byte strings, each
 * name and value its UTF-8 bytes, plus (`more`, default true) the variables
 * of our own environment Deno could not decode, with their exact bytes, when
 * libc's `environ` can be read (see ownEnviron). tcpserver's base
 * environment for connections is made this way.
 */
export function byteEnviron(text: Map<string, string>, more = true): Map<string, string> {
  const env = new Map<string, string>();
  for (const [k, v] of text) env.set(utf8ByteString(k), utf8ByteString(v));
  if (!more) return env;
  for (const [k, v] of libcEnviron() ?? []) {
    if (!env.has(k) && (byteStringText(k) === null || byteStringText(v) === null)) env.set(k, v);
  }
  return env;
}

function libcEnviron(): Map<string, string> | null {
  let lib: Deno.DynamicLibrary<typeof ENVIRON_SYMBOLS> | undefined;
  try {
    if (Deno.build.os !== "linux") return null;
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
    if (Deno.permissions.querySync({ name: "env" }).state !== "granted") return null;
    lib = Deno.dlopen("libc.so.6", ENVIRON_SYMBOLS);
    // The static's symbol is the address of `char **environ`.
    const at = lib.symbols.environ as Deno.PointerValue;
    const list = at === null ? null : new Deno.UnsafePointerView(at).getPointer(0);
    const env = new Map<string, string>();
    if (list === null) return env;
    const view = new Deno.UnsafePointerView(list);
    for (let i = 0;; i++) {
      const entry = view.getPointer(i * 8);
      if (entry === null) break;
      const n = Number(lib.symbols.strlen(entry));
      const bytes = new Uint8Array(n);
      if (n > 0) new Deno.UnsafePointerView(entry).copyInto(bytes);
      const s = byteString(bytes);
      const eq = s.indexOf("=");
      // as getenv: an entry without "=" is no variable; the first of a name wins
      if (eq > 0 && !env.has(s.slice(0, eq))) env.set(s.slice(0, eq), s.slice(eq + 1));
    }
    return env;
  } catch {
    // libc's environ unreadable (no glibc, dlopen refused): fall back to
    // Deno.env's text, as documented at ownEnviron.
    return null;
  } finally {
    lib?.close();
  }
}
