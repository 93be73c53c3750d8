/**
 * The one definition of what the benchmarks share: the servers side by side
 * (ours on both paths, DJB's C tcpserver and the peers an administrator would
 * pick instead), starting them with the same settings, clients, bounded load,
 * interleaving (A B C ... A B C ...), the /proc readers, and the `BENCH {json}`
 * rows bench/run.ts turns into the README table (bench/table.ts).
 *
 * Every bench takes `--quick` (small counts, one alternation, for a smoke
 * run) and `--alternations N`. Loopback only; every load is bounded in count
 * and in time.
 */
import { serverBehind } from "../lib/server/front.ts";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { type BenchRow, median } from "./table.ts";

/** The repository root, with a trailing slash. */
export const ROOT = fileURLToPath(new URL("../", import.meta.url));
/** The multi-call entry point. */
export const MOD = `${ROOT}mod.ts`;
/** This Deno. */
export const DENO = Deno.execPath();

/** --quick: small counts and one alternation, to check the machinery. */
export const QUICK = Deno.args.includes("--quick");
const altAt = Deno.args.indexOf("--alternations");
/** How many times every implementation is measured per row, interleaved. */
export const ALTERNATIONS = altAt >= 0
  ? Math.max(1, Number(Deno.args[altAt + 1]) || 1)
  : QUICK
  ? 1
  : 3;

/** `full` in a full run, `quick` with --quick. */
export function pick<T>(full: T, quick: T): T {
  return QUICK ? quick : full;
}

/** The loopback address every server binds and every client connects to. */
export const HOST = "127.0.0.1";

/** The path of an executable file, or null. */
export function executable(path: string | undefined): string | null {
  if (!path) return null;
  try {
    const st = Deno.statSync(path);
    return st.isFile && ((st.mode ?? 0) & 0o111) !== 0 ? path : null;
  } catch {
    return null;
  }
}

/** The argv that runs our tool NAME through the multi-call entry, as a link named NAME would. */
export function oursArgv(name: string, args: string[] = []): string[] {
  return ["/bin/bash", "-c", `exec -a "$0" "${DENO}" run -A "${MOD}" "$@"`, name, ...args];
}

/** What one row asks of a server: the same settings for every implementation. */
export interface ServerSpec {
  /** The program and its arguments (absolute path first). */
  program: string[];
  /** Our program when it differs (an in-process stage such as rblsmtpd). */
  ourProgram?: string[];
  /** Concurrency limit (-c, instances, max-children). */
  limit: number;
  /** Listen backlog; undefined: the server's own default. */
  backlog?: number;
  /**
   * The same rules compiled for each server: a tcprules cdb (tcpserver), an
   * ipsvd-cdb one (tcpsvd), an s6-accessrules one (s6-tcpserver-access).
   */
  rules?: { tcprules: string; ipsvd?: string; s6?: string };
  /** Extra environment for the server. */
  env?: Record<string, string>;
  /** Extra environment for ours only (with ourProgram). */
  ourEnv?: Record<string, string>;
  /** Address to bind (default HOST). */
  host?: string;
  /** Port to bind (default: a free one). */
  port?: number;
  /** The program reads $TCPREMOTEIP (rblsmtpd): servers that set no UCSPI environment cannot run it. */
  needsUcspiEnv?: boolean;
}

/** A running server. */
export interface Server {
  /** The process that serves (for ours on the native path: the front's child). */
  pid: number;
  /** The process started (the front, for ours on the native path): the root of its tree. */
  root: number;
  host: string;
  port: number;
  /** SIGKILL and wait for the exit; runs cleanup. */
  stop(): Promise<void>;
}

/** One implementation that can be measured. */
export interface Peer {
  /** Column id in the table. */
  id: string;
  /** Column heading. */
  label: string;
  /** Why it is absent from this run (not installed), or null. */
  missing(): string | null;
  /** Why it cannot serve this spec with the same settings, or null. */
  unsupported(spec: ServerSpec): string | null;
  /** Starts it and waits until it accepts. */
  start(spec: ServerSpec): Promise<Server>;
  /** Version or source, for bench/RESULTS.md. */
  version(): Promise<string>;
}

const handedOut = new Set<number>();

/** A free TCP port on host (bound and released; never the same one twice in a process). */
export function freePort(host = HOST): number {
  for (;;) {
    const l = Deno.listen({ hostname: host, port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

/** Inodes of the sockets listening on port (/proc/net/tcp and tcp6, state 0A). */
export function listeningInodes(port: number): string[] {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const out: string[] = [];
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      const f = line.trim().split(/\s+/);
      if (f[1]?.endsWith(hex) && f[3] === "0A") out.push(f[9]);
    }
  }
  return out;
}

/** Whether process pid holds one of the sockets listening on port. */
function holdsListener(pid: number, port: number): boolean {
  const inodes = new Set(listeningInodes(port).map((i) => `socket:[${i}]`));
  try {
    for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        if (inodes.has(Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`))) return true;
      } catch { /* closed meanwhile */ }
    }
  } catch { /* exited */ }
  return false;
}

/**
 * Waits (at most 10 s) until this child itself listens on port and a
 * connection is accepted (served once): a server that failed to bind must
 * not pass for ready because another one holds the port.
 */
async function waitAccepting(
  host: string,
  port: number,
  child: Deno.ChildProcess,
): Promise<number> {
  let exited = false;
  child.status.then(() => (exited = true));
  const deadline = performance.now() + 10_000;
  while (performance.now() < deadline && !exited) {
    const server = serverBehind(child.pid);
    if (holdsListener(server, port)) {
      try {
        const c = await Deno.connect({ hostname: host, port });
        c.close();
        return server;
      } catch { /* not yet */ }
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(exited ? "server exited at start" : `nothing accepts on ${host}:${port}`);
}

/** Spawns argv as a server and waits until it accepts on host:port. */
export async function spawnServer(
  argv: string[],
  host: string,
  port: number,
  env: Record<string, string> = {},
  cleanup: () => Promise<void> = async () => {},
): Promise<Server> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // the server's log (rblsmtpd's lines, socat's complaints) is drained; its
  // tail explains a start that fails
  let tail = "";
  const drain = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of child.stderr) tail = (tail + dec.decode(chunk)).slice(-2000);
  })().catch(() => {});
  let server: number;
  try {
    server = await waitAccepting(host, port, child);
  } catch (e) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await child.status;
    await drain;
    await cleanup();
    throw new Error(`${argv.join(" ")}: ${(e as Error).message}: ${tail.trim()}`);
  }
  return {
    pid: server,
    root: child.pid,
    host,
    port,
    async stop() {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      if (server !== child.pid) {
        try {
          Deno.kill(server, "SIGKILL"); // the front's server would finish its sessions first
        } catch { /* gone */ }
      }
      await child.status;
      await cleanup();
    },
  };
}

async function commandOut(argv: string[]): Promise<string> {
  try {
    const r = await new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdout: "piped",
      stderr: "piped",
    }).output();
    return (new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr)).trim();
  } catch {
    return "";
  }
}

/** The Debian package version of PKG, or "". */
export async function debVersion(pkg: string): Promise<string> {
  const v = await commandOut(["dpkg-query", "-W", "-f", "${Version}", pkg]);
  return v && !v.includes("no packages") ? `Debian ${pkg} ${v}` : "";
}

function tcpserverArgs(spec: ServerSpec, host: string, port: number, ours: boolean): string[] {
  return [
    "-RHq",
    "-l0",
    "-c",
    String(spec.limit),
    ...(spec.backlog !== undefined ? ["-b", String(spec.backlog)] : []),
    ...(spec.rules ? ["-x", spec.rules.tcprules] : []),
    host,
    String(port),
    ...(ours && spec.ourProgram ? spec.ourProgram : spec.program),
  ];
}

function ourPeer(
  id: string,
  label: string,
  native: boolean,
  extraEnv: Record<string, string> = {},
): Peer {
  return {
    id,
    label,
    missing: () => null,
    unsupported: () => null,
    start(spec) {
      const host = spec.host ?? HOST, port = spec.port ?? freePort(host);
      return spawnServer(
        oursArgv("tcpserver", tcpserverArgs(spec, host, port, true)),
        host,
        port,
        { ...spec.env, ...spec.ourEnv, ...extraEnv, UCSPI_NATIVE: native ? "1" : "0" },
      );
    },
    async version() {
      const commit = await commandOut(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]);
      const v = await commandOut([DENO, "run", "-A", MOD, "--version"]);
      const path = native ? "native (FFI) path" : "UCSPI_NATIVE=0";
      const extra = Object.entries(extraEnv).map(([k, v]) => ` ${k}=${v}`).join("");
      return `${v}, commit ${commit}, ${path}${extra}`;
    },
  };
}

const C_TCPSERVER = "/usr/bin/tcpserver";

/** DJB's C tcpserver (Debian's ucspi-tcp): the reference every ratio divides by. */
export const C: Peer = {
  id: "c",
  label: "C tcpserver",
  missing: () =>
    executable(C_TCPSERVER) ? null : "no /usr/bin/tcpserver (apt-get install ucspi-tcp)",
  unsupported: () => null,
  start(spec) {
    const host = spec.host ?? HOST, port = spec.port ?? freePort(host);
    return spawnServer(
      [C_TCPSERVER, ...tcpserverArgs(spec, host, port, false)],
      host,
      port,
      spec.env ?? {},
    );
  },
  version: async () => (await debVersion("ucspi-tcp")) || C_TCPSERVER,
};

/** Ours, native (FFI) path: the default with -A. */
export const NATIVE: Peer = ourPeer("native", "ours native", true);
/** Ours, pure-Deno path (UCSPI_NATIVE=0). */
export const PURE: Peer = ourPeer("pure", "ours pure", false);
/**
 * Ours, pure-Deno path with $UCSPI_HANDOFF=1: the program gets the socket
 * itself without FFI where nothing runs before it (tcpserver(1)).
 */
export const HANDOFF: Peer = ourPeer("handoff", "ours pure hand-off", false, {
  UCSPI_HANDOFF: "1",
});

/** ipsvd's tcpsvd. */
export const TCPSVD: Peer = {
  id: "tcpsvd",
  label: "tcpsvd",
  missing: () =>
    executable("/usr/bin/tcpsvd") ? null : "no /usr/bin/tcpsvd (apt-get install ipsvd)",
  unsupported: (spec) =>
    spec.rules && !spec.rules.ipsvd ? "no ipsvd-cdb rules (apt-get install ipsvd)" : null,
  start(spec) {
    const host = spec.host ?? HOST, port = spec.port ?? freePort(host);
    return spawnServer(
      [
        "/usr/bin/tcpsvd",
        "-c",
        String(spec.limit),
        ...(spec.backlog !== undefined ? ["-b", String(spec.backlog)] : []),
        ...(spec.rules?.ipsvd ? ["-x", spec.rules.ipsvd] : []),
        "-l",
        "0",
        host,
        String(port),
        ...spec.program,
      ],
      host,
      port,
      spec.env ?? {},
    );
  },
  version: async () => (await debVersion("ipsvd")) || "/usr/bin/tcpsvd",
};

/** xinetd, one UNLISTED service on the port, no logging, no rate limit. */
export const XINETD: Peer = {
  id: "xinetd",
  label: "xinetd",
  missing: () =>
    executable("/usr/sbin/xinetd") ? null : "no /usr/sbin/xinetd (apt-get install xinetd)",
  unsupported: (spec) =>
    spec.backlog !== undefined
      ? "no backlog setting (listen backlog fixed at 64)"
      : spec.rules
      ? "no rules database"
      : spec.needsUcspiEnv
      ? "sets no $TCPREMOTEIP"
      : null,
  async start(spec) {
    const host = spec.host ?? HOST, port = spec.port ?? freePort(host);
    const dir = await Deno.makeTempDir({ prefix: "bench-xinetd-" });
    const root = Deno.uid() === 0;
    const conf = [
      "defaults",
      "{",
      "  log_type = FILE /dev/null",
      "  log_on_success =",
      "  log_on_failure =",
      "}",
      "service bench",
      "{",
      "  type = UNLISTED",
      "  socket_type = stream",
      "  protocol = tcp",
      "  wait = no",
      ...(root ? ["  user = root"] : []),
      `  bind = ${host}`,
      `  port = ${port}`,
      `  server = ${spec.program[0]}`,
      ...(spec.program.length > 1 ? [`  server_args = ${spec.program.slice(1).join(" ")}`] : []),
      `  instances = ${spec.limit}`,
      "  per_source = UNLIMITED",
      // the default (50 connections a second, then 10 s off) would stop every load row
      "  cps = 1000000 1",
      "}",
      "",
    ].join("\n");
    await Deno.writeTextFile(`${dir}/xinetd.conf`, conf);
    return spawnServer(
      [
        "/usr/sbin/xinetd",
        "-dontfork",
        "-stayalive",
        "-f",
        `${dir}/xinetd.conf`,
        "-pidfile",
        `${dir}/pid`,
      ],
      host,
      port,
      spec.env ?? {},
      () => Deno.remove(dir, { recursive: true }).catch(() => {}),
    );
  },
  version: async () => (await debVersion("xinetd")) || "/usr/sbin/xinetd",
};

/** socat TCP-LISTEN:...,fork,reuseaddr EXEC:... (socat relays through a socketpair). */
export const SOCAT: Peer = {
  id: "socat",
  label: "socat fork",
  missing: () => executable("/usr/bin/socat") ? null : "no /usr/bin/socat (apt-get install socat)",
  unsupported: (spec) =>
    spec.rules
      ? "no rules database"
      : spec.needsUcspiEnv
      ? "sets no $TCPREMOTEIP"
      : spec.program.some((a) => /[\s,:!'"\\]/.test(a))
      ? "program arguments socat's EXEC cannot quote"
      : null,
  start(spec) {
    const host = spec.host ?? HOST, port = spec.port ?? freePort(host);
    const listen = [
      `TCP-LISTEN:${port}`,
      `bind=${host}`,
      "fork",
      "reuseaddr",
      `max-children=${spec.limit}`,
      ...(spec.backlog !== undefined ? [`backlog=${spec.backlog}`] : []),
    ].join(",");
    return spawnServer(
      ["/usr/bin/socat", listen, `EXEC:${spec.program.join(" ")}`],
      host,
      port,
      spec.env ?? {},
    );
  },
  version: async () => (await debVersion("socat")) || "/usr/bin/socat",
};

/** $S6_TCPSERVER: the built s6-tcpserver, or undefined. */
export const S6 = Deno.env.get("S6_TCPSERVER");
/** The directory of $S6_TCPSERVER, where its helpers (and s6's rules compiler) are looked for. */
export const S6_DIR = S6 ? S6.slice(0, S6.lastIndexOf("/")) || "/" : "";

/** s6-networking's s6-tcpserver, when $S6_TCPSERVER names a built binary. */
export const S6_TCPSERVER: Peer = {
  id: "s6",
  label: "s6-tcpserver",
  missing: () =>
    executable(S6)
      ? null
      : S6
      ? `$S6_TCPSERVER=${S6} is not an executable file`
      : "$S6_TCPSERVER not set (build s6-networking with bench/build_s6.sh, see bench/README.md)",
  unsupported: (spec) =>
    spec.rules && !spec.rules.s6
      ? "no s6-accessrules-cdb-from-fs next to $S6_TCPSERVER (s6's, for the rules cdb)"
      : null,
  start(spec) {
    const host = spec.host ?? HOST, port = spec.port ?? freePort(host);
    // s6 checks rules in s6-tcpserver-access, a program of its own in the chain
    const access = spec.rules?.s6
      ? [`${S6_DIR}/s6-tcpserver-access`, "-v", "0", "-H", "-R", "-l", "0", "-x", spec.rules.s6]
      : [];
    return spawnServer(
      [
        S6!,
        "-q",
        "-c",
        String(spec.limit),
        // the per-address limit (default 40) too: every client is 127.0.0.1
        "-C",
        String(spec.limit),
        ...(spec.backlog !== undefined ? ["-b", String(spec.backlog)] : []),
        host,
        String(port),
        ...access,
        ...spec.program,
      ],
      host,
      port,
      // s6-tcpserver execs its helpers (s6-tcpserverd, ...) by PATH: its own directory first
      {
        ...spec.env,
        PATH: `${S6_DIR}:${spec.env?.PATH ?? Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
      },
    );
  },
  version: () => Promise.resolve(s6Version()),
};

/**
 * The versions of the skarnet packages in the prefix $S6_TCPSERVER was
 * installed into (PREFIX/include/NAME/config.h, as bench/build_s6.sh leaves
 * them), or the path alone.
 */
function s6Version(): string {
  const prefix = S6_DIR.replace(/\/bin$/, "");
  const of = (name: string) => {
    try {
      const h = Deno.readTextFileSync(`${prefix}/include/${name}/config.h`);
      return /#define \S+_VERSION "([^"]+)"/.exec(h)?.[1] ?? null;
    } catch {
      return null;
    }
  };
  const net = of("s6-networking");
  if (!net) return `${S6} (built from source)`;
  const deps = ["skalibs", "s6", "s6-dns", "execline"]
    .map((n) => [n, of(n)]).filter(([, v]) => v).map(([n, v]) => `${n} ${v}`);
  return `s6-networking ${net} (${deps.join(", ")}), built from source: ${S6}`;
}

/** Every server, in table order. */
export const SERVERS: Peer[] = [NATIVE, PURE, HANDOFF, C, TCPSVD, XINETD, SOCAT, S6_TCPSERVER];

/** The servers present on this machine; prints a reason for each one that is not. */
export function presentServers(peers: Peer[] = SERVERS): Peer[] {
  const out: Peer[] = [];
  for (const p of peers) {
    const why = p.missing();
    if (why) console.log(`skip ${p.label}: ${why}`);
    else out.push(p);
  }
  return out;
}

// ---- clients ----

/** One connection options. */
export interface ClientOptions {
  /** Bytes to send (then half-close); otherwise half-close at once. */
  send?: Uint8Array;
  /** Local address to connect from. */
  localAddress?: string;
  /** Aborts the connection (destroyed, the promise rejects with an AbortError). */
  signal?: AbortSignal;
}

/** One connection: sends, half-closes, reads to EOF; resolves the bytes read. */
export function connectOnce(host: string, port: number, opts: ClientOptions = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    const s = net.connect({ host, port, localAddress: opts.localAddress });
    const abort = () => {
      s.destroy();
      reject(new DOMException("aborted", "AbortError"));
    };
    if (opts.signal?.aborted) return abort();
    opts.signal?.addEventListener("abort", abort, { once: true });
    s.on("connect", () => {
      if (opts.send) s.end(opts.send);
      else s.end();
    });
    s.on("data", (d: Uint8Array) => (n += d.length));
    s.on("error", reject);
    s.on("close", () => {
      opts.signal?.removeEventListener("abort", abort);
      resolve(n);
    });
  });
}

/** Result of a bounded load. */
export interface Load {
  done: number;
  failed: number;
  seconds: number;
  perSecond: number;
}

/**
 * Runs `one` at most `total` times, `concurrency` at a time, for at most
 * `maxSeconds`: then the signal aborts the ones in flight (a SYN the backlog
 * dropped may wait seconds for its retry), which count neither as done nor
 * as failed. Any other rejection counts as failed. Completed per second.
 */
export async function load(
  concurrency: number,
  total: number,
  maxSeconds: number,
  one: (i: number, signal: AbortSignal) => Promise<unknown>,
): Promise<Load> {
  let next = 0, done = 0, failed = 0;
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), maxSeconds * 1000);
  const t0 = performance.now();
  const worker = async () => {
    while (next < total && !stop.signal.aborted) {
      const i = next++;
      try {
        await one(i, stop.signal);
        done++;
      } catch {
        if (!stop.signal.aborted) failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  clearTimeout(timer);
  const seconds = (performance.now() - t0) / 1000;
  return { done, failed, seconds, perSecond: done / seconds };
}

/**
 * Opens n connections that stay open; resolves when each one's program has
 * answered "x" (cat). At most 4 connections wait for their answer at a time:
 * fewer than the smallest default backlog (socat's 5), so no server's accept
 * queue overflows (a dropped handshake waits seconds for the SYN-ACK's
 * retransmission) and the row measures memory, not the backlog.
 */
export async function holdIdle(host: string, port: number, n: number): Promise<net.Socket[]> {
  const socks: net.Socket[] = [];
  let next = 0;
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const s = net.connect({ host, port });
      socks.push(s);
      const t = setTimeout(() => reject(new Error("an idle connection got no answer")), 30_000);
      s.once("error", (e) => {
        clearTimeout(t);
        reject(e);
      });
      s.once("connect", () => s.write("x"));
      s.once("data", () => {
        clearTimeout(t);
        s.on("error", () => {});
        resolve();
      });
    });
  let failed = false;
  const worker = async () => {
    while (next < n && !failed) {
      next++;
      await one().catch((e) => {
        failed = true;
        throw e;
      });
    }
  };
  const all = await Promise.allSettled(Array.from({ length: 4 }, worker));
  const bad = all.find((r) => r.status === "rejected");
  if (!bad) return socks;
  for (const s of socks) s.destroy();
  throw bad.reason;
}

// ---- /proc ----

/** CPU ms of a process: its own (utime+stime) and its reaped children's (cutime+cstime). */
export function cpuMs(pid: number): { own: number; children: number } {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields after the name start at field 3 (state): utime is field 14
  const tick = 1000 / CLK_TCK;
  return {
    own: (Number(f[11]) + Number(f[12])) * tick,
    children: (Number(f[13]) + Number(f[14])) * tick,
  };
}

/** Clock ticks per second (Linux's USER_HZ). */
export const CLK_TCK = 100;

/** The kB value of a field of /proc/PID/smaps_rollup (Rss, Pss, ...), 0 if gone. */
export function rollupKb(pid: number, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(
      Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`),
    );
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** pid and all its descendants (scanning /proc for parent pids). */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(e.name));
      children.set(ppid, list);
    } catch { /* exited */ }
  }
  const out: number[] = [];
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** This process's soft limit on open files, from /proc/self/limits. */
export function openFilesLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(Deno.readTextFileSync("/proc/self/limits"));
  return !m ? 1024 : m[1] === "unlimited" ? Infinity : Number(m[1]);
}

// ---- interleaving and rows ----

/**
 * Measures every peer `ALTERNATIONS` times, interleaved (A B C ... A B C ...):
 * per peer, the list of the measures' values, one entry per alternation. A
 * measurement that throws is printed and leaves that peer out of the row.
 */
export async function alternate<P extends { id: string; label: string }>(
  what: string,
  peers: P[],
  measure: (peer: P, round: number) => Promise<Record<string, number>>,
): Promise<{ samples: Map<string, Record<string, number>[]>; failed: Record<string, string> }> {
  const samples = new Map<string, Record<string, number>[]>();
  const failed: Record<string, string> = {};
  const t0 = performance.now();
  for (let round = 0; round < ALTERNATIONS; round++) {
    for (const p of peers) {
      if (failed[p.id]) continue;
      try {
        const v = await measure(p, round);
        const list = samples.get(p.id) ?? [];
        list.push(v);
        samples.set(p.id, list);
        console.log(
          `  ${what} #${round + 1} ${p.label.padEnd(14)} ` +
            Object.entries(v).map(([k, x]) => `${k} ${fmt(x)}`).join("  "),
        );
      } catch (e) {
        failed[p.id] = `failed: ${(e as Error).message.slice(0, 200)}`;
        samples.delete(p.id);
        console.log(`  ${what} ${p.label}: ${failed[p.id]}`);
      }
    }
  }
  console.log(`  ${what}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return { samples, failed };
}

function fmt(x: number): string {
  return Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2);
}

/** Row description shared by the rows built from one alternate() result. */
export interface RowHead {
  id: string;
  label: string;
  unit: string;
  better: "higher" | "lower";
  note?: string;
}

/**
 * Prints one row: a human line per implementation, then `BENCH {json}` (the
 * line bench/run.ts collects). `key` picks the measure out of each sample;
 * `skipped` says why an implementation has no value.
 */
export function emitRow(
  head: RowHead,
  ref: string,
  samples: Map<string, Record<string, number>[]>,
  key: string,
  skipped: Record<string, string>,
  refSamples?: Record<string, number[]>,
): BenchRow {
  const row: BenchRow = {
    ...head,
    ref,
    samples: {},
    skipped: { ...skipped },
    ...(refSamples ? { refSamples } : {}),
  };
  for (const [id, list] of samples) {
    const xs = list.map((s) => s[key]).filter((x) => Number.isFinite(x));
    if (xs.length === list.length && xs.length) row.samples[id] = xs;
    else row.skipped[id] = row.skipped[id] ?? "no value";
  }
  const refMed = row.samples[ref] ? median(row.samples[ref]) : NaN;
  console.log(`${head.label} (${head.unit}, ${head.better} is better)`);
  for (const [id, xs] of Object.entries(row.samples)) {
    const m = median(xs);
    const base = refSamples?.[id] ? median(refSamples[id]) : refMed;
    console.log(`  ${id.padEnd(8)} median ${fmt(m).padStart(8)}  ratio ${(m / base).toFixed(2)}`);
  }
  for (const [id, why] of Object.entries(row.skipped)) {
    console.log(`  ${id.padEnd(8)} skipped: ${why}`);
  }
  console.log(`BENCH ${JSON.stringify(row)}`);
  return row;
}

/** Skip reasons for the peers that cannot serve spec; returns the ones that can. */
export function supporting<P extends Peer>(
  peers: P[],
  spec: ServerSpec,
  skipped: Record<string, string>,
): P[] {
  return peers.filter((p) => {
    const why = p.unsupported(spec);
    if (why) skipped[p.id] = why;
    return !why;
  });
}

/** Runs f(peer, server) with one server per peer started up front and stopped at the end. */
export async function withServers<P extends Peer, T>(
  peers: P[],
  spec: ServerSpec,
  skipped: Record<string, string>,
  f: (servers: Map<string, Server>, started: P[]) => Promise<T>,
): Promise<T> {
  const servers = new Map<string, Server>();
  const started: P[] = [];
  try {
    // started together (nothing is measured yet), kept in table order
    const want = supporting(peers, spec, skipped);
    const results = await Promise.allSettled(want.map((p) => p.start(spec)));
    want.forEach((p, i) => {
      const r = results[i];
      if (r.status === "fulfilled") {
        servers.set(p.id, r.value);
        started.push(p);
      } else {
        skipped[p.id] = `did not start: ${String(r.reason?.message ?? r.reason).slice(0, 200)}`;
        console.log(`  ${p.label}: ${skipped[p.id]}`);
      }
    });
    return await f(servers, started);
  } finally {
    for (const s of servers.values()) await s.stop();
  }
}
