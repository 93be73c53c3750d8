/**
 * Test helpers for tcpserver: start ours or DJB's C tcpserver with -1, learn
 * its port, watch its stderr lines, talk to it over loopback (from a chosen
 * source address), stop it.
 */
import net from "node:net";
import { cTool, oursArgv } from "./helpers.ts";
import { serverBehind } from "../../lib/server/front.ts";

/** A running server process (tcpserver, sslserver, ...) started with -1. */
export interface Srv {
  port: number;
  pid: number;
  child: Deno.ChildProcess;
  /** stderr lines so far */
  lines: string[];
  /** The first stderr line (past or future) matching re. */
  waitLine(re: RegExp): Promise<string>;
  /** Resolves once pred() holds, checked again at each new stderr line. */
  waitUntil(pred: () => boolean): Promise<void>;
  /** Resolves when the process exited, with its code. */
  exited: Promise<number>;
  /** Sends signal (SIGTERM by default; once) and waits for the exit. */
  stop(signal?: Deno.Signal): Promise<number>;
}

/**
 * Spawns argv (a server started with -1), collects its stderr lines and waits
 * for the port it prints on stdout; `name` is used in the error when it does
 * not start.
 */
export async function spawnServer(
  argv: string[],
  opts: { env?: Record<string, string>; clearEnv?: boolean; name?: string } = {},
): Promise<Srv> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: opts.env,
    clearEnv: opts.clearEnv ?? false,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (s: string) => void; reject: (e: Error) => void }[] = [];
  const checks: { pred: () => boolean; resolve: () => void; reject: (e: Error) => void }[] = [];
  let errDone = false;
  const pumpErr = (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of child.stderr) {
      buf += dec.decode(chunk, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        for (const w of [...waiters]) {
          if (w.re.test(line)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
        for (const c of [...checks]) {
          if (c.pred()) {
            checks.splice(checks.indexOf(c), 1);
            c.resolve();
          }
        }
      }
    }
    errDone = true;
    for (const w of waiters.splice(0)) {
      w.reject(new Error(`stderr ended before ${w.re}: ${lines.join("\n")}`));
    }
    for (const c of checks.splice(0)) {
      c.reject(new Error(`stderr ended before the condition held: ${lines.join("\n")}`));
    }
  })();
  const exited = (async () => {
    const st = await child.status;
    await pumpErr;
    return st.code;
  })();
  const reader = child.stdout.getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) {
      await exited;
      throw new Error(`${opts.name ?? argv[0]} did not start: ${lines.join("\n")}`);
    }
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  const port = Number(out.trim());
  let stopped = false;
  return {
    port,
    pid: child.pid,
    child,
    lines,
    exited,
    waitLine(re) {
      const hit = lines.find((l) => re.test(l));
      if (hit) return Promise.resolve(hit);
      if (errDone) return Promise.reject(new Error(`no line ${re}: ${lines.join("\n")}`));
      return new Promise((resolve, reject) => waiters.push({ re, resolve, reject }));
    },
    waitUntil(pred) {
      if (pred()) return Promise.resolve();
      if (errDone) {
        return Promise.reject(new Error(`condition never held: ${lines.join("\n")}`));
      }
      return new Promise((resolve, reject) => checks.push({ pred, resolve, reject }));
    },
    async stop(signal: Deno.Signal = "SIGTERM") {
      if (!stopped) {
        stopped = true;
        try {
          child.kill(signal);
        } catch { /* gone */ }
      }
      return await exited;
    },
  };
}

/** Starts `which` tcpserver with args (which must include -1) and waits for its port. */
export async function startSrv(
  which: "ours" | "c",
  args: string[],
  opts: { env?: Record<string, string>; clearEnv?: boolean; wrap?: string[] } = {},
): Promise<Srv> {
  let argv: string[];
  if (which === "ours") argv = oursArgv("tcpserver", args);
  else {
    const c = cTool("tcpserver");
    if (!c) throw new Error("C tcpserver not installed");
    argv = [c, ...args];
  }
  if (opts.wrap) argv = [...opts.wrap, ...argv];
  const env = opts.clearEnv
    ? { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", ...opts.env }
    : opts.env;
  return await spawnServer(argv, { env, clearEnv: opts.clearEnv, name: "tcpserver" });
}

/** What a client got back. */
export interface Talk {
  data: Uint8Array;
  text: string;
  /** The client's own port. */
  localPort: number;
}

/**
 * Connects to host:port (from localAddress if given), writes send, half-closes
 * (unless keepOpen), and collects everything until the server closes.
 */
export function talk(
  port: number,
  opts: { host?: string; localAddress?: string; send?: Uint8Array | string; keepOpen?: boolean } =
    {},
): Promise<Talk> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    const sock = net.connect({
      host: opts.host ?? "127.0.0.1",
      port,
      localAddress: opts.localAddress,
    });
    let localPort = 0;
    sock.on("connect", () => {
      localPort = sock.localPort ?? 0;
      if (opts.send !== undefined) sock.write(opts.send);
      if (!opts.keepOpen) sock.end();
    });
    sock.on("data", (c: Uint8Array) => chunks.push(new Uint8Array(c)));
    sock.on("error", reject);
    sock.on("close", () => {
      const data = concat(chunks);
      resolve({ data, text: new TextDecoder().decode(data), localPort });
    });
  });
}

/** The concatenation of chunks. */
export function concat(chunks: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const c of chunks) n += c.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/** Log lines with pids and ports replaced, for comparing ours with C's. */
export function normalise(lines: string[], ports: Record<string, string> = {}): string[] {
  return lines.map((l) => {
    let s = l
      .replace(/^(tcpserver: (?:pid|ok|deny|end)) \d+/, "$1 PID");
    for (const [from, to] of Object.entries(ports)) s = s.replaceAll(from, to);
    return s;
  });
}

/** Number of open descriptors of a process. */
export function fdCount(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

/**
 * tcpserver arguments for a quiet loopback test server: -1 (print the port),
 * -RH -l0 (no lookups), then opts, host and port 0, then the program.
 */
export function quietArgs(opts: string[], prog: string[], host = "127.0.0.1"): string[] {
  return ["-1", "-RH", "-l0", ...opts, host, "0", ...prog];
}

/** Number of zombie children of a process (state Z in /proc/N/stat). */
export function zombiesOf(pid: number): number {
  let n = 0;
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] === "Z" && Number(fields[1]) === pid) n++;
    } catch { /* gone */ }
  }
  return n;
}

/**
 * The children of a process, of all its threads (/proc/PID/task/TID/children:
 * a child spawned from an FFI worker thread is that thread's).
 */
export function childrenOf(pid: number): number[] {
  const all: number[] = [];
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        const text = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/children`);
        for (const s of text.trim().split(/\s+/)) if (s !== "") all.push(Number(s));
      } catch { /* the thread ended */ }
    }
  } catch { /* the process ended */ }
  return all;
}

/** The server process behind pid (lib/server/front.ts: a front's child, else pid). */
export const serverOf: (pid: number) => number = serverBehind;

/** Resolves when process pid has ended (gone, or a zombie); rejects after limitMs. */
export async function waitGone(pid: number, limitMs = 20_000): Promise<void> {
  const until = Date.now() + limitMs;
  for (;;) {
    let state: string | null = null;
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    } catch { /* gone */ }
    if (state === null || state === "Z") return;
    if (Date.now() > until) throw new Error(`process ${pid} still running after ${limitMs} ms`);
    // no event tells a non-child's end: look again shortly
    await new Promise((r) => setTimeout(r, 10));
  }
}
