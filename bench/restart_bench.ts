/**
 * Restarts as admins do them: each server under Debian's daemontools
 * `supervise`, one session open through fixcrio (C's /usr/bin/fixcrio
 * process for the C servers; our in-process stage for ours), then
 * `svc -t`: how long until a new client is greeted by the next generation,
 * and whether the open session still answers afterwards (a row of its own:
 * 1 when it does). Ours on the native path exits through its front
 * (lib/server/front.ts); the pure path drains ($TCPSERVER_DRAIN, 10 s by
 * default) before it exits, and cuts the in-process session at the end.
 *
 *   deno run -A bench/restart_bench.ts [--quick] [--alternations N]
 */
import net from "node:net";
import {
  alternate,
  C,
  DENO,
  emitRow,
  executable,
  freePort,
  HOST,
  MOD,
  NATIVE,
  PURE,
  S6,
  S6_DIR,
  S6_TCPSERVER,
  SOCAT,
  TCPSVD,
  XINETD,
} from "./support.ts";

const SUPERVISE = executable("/usr/bin/supervise") && executable("/usr/bin/svc") &&
  executable("/usr/bin/svstat");

interface Contender {
  id: string;
  label: string;
  /**
   * The end of the run script in service directory dir, serving port (the
   * program greets with hi$GEN); dir/greet is the program as a script, for
   * the servers that cannot quote its arguments.
   */
  exec(port: number, dir: string): string;
  missing(): string | null;
}

const PROGRAM = `sh -c 'echo hi$GEN; exec cat'`;
const GREET = `#!/bin/sh\nexec /usr/bin/fixcrio ${PROGRAM}\n`;
const fixcrio = () => executable("/usr/bin/fixcrio") ? null : "no /usr/bin/fixcrio";

const CONTENDERS: Contender[] = [
  {
    id: NATIVE.id,
    label: NATIVE.label,
    exec: (port) =>
      `UCSPI_CHAIN=force exec "${DENO}" run -A "${MOD}" tcpserver -RHl0 ${HOST} ${port} fixcrio ${PROGRAM}`,
    missing: () => NATIVE.missing(),
  },
  {
    id: PURE.id,
    label: PURE.label,
    exec: (port) =>
      `UCSPI_NATIVE=0 UCSPI_CHAIN=force exec "${DENO}" run -A "${MOD}" tcpserver -RHl0 ${HOST} ${port} fixcrio ${PROGRAM}`,
    missing: () => PURE.missing(),
  },
  {
    id: C.id,
    label: C.label,
    exec: (port) => `exec /usr/bin/tcpserver -RHl0 ${HOST} ${port} /usr/bin/fixcrio ${PROGRAM}`,
    missing: () => C.missing() ?? fixcrio(),
  },
  {
    id: TCPSVD.id,
    label: TCPSVD.label,
    exec: (port) => `exec /usr/bin/tcpsvd ${HOST} ${port} /usr/bin/fixcrio ${PROGRAM}`,
    missing: () => TCPSVD.missing() ?? fixcrio(),
  },
  {
    id: XINETD.id,
    label: XINETD.label,
    // xinetd passes the program only the environment its env attribute names
    exec: (port, dir) =>
      [
        "cat > xinetd.conf <<EOF",
        "defaults",
        "{",
        "  log_type = FILE /dev/null",
        "}",
        "service bench",
        "{",
        "  type = UNLISTED",
        "  socket_type = stream",
        "  wait = no",
        ...(Deno.uid() === 0 ? ["  user = root"] : []),
        `  bind = ${HOST}`,
        `  port = ${port}`,
        `  server = ${dir}/greet`,
        "  env = GEN=$GEN PATH=/usr/bin:/bin",
        "  cps = 1000000 1",
        "}",
        "EOF",
        "exec /usr/sbin/xinetd -dontfork -stayalive -f xinetd.conf",
      ].join("\n"),
    missing: () => XINETD.missing() ?? fixcrio(),
  },
  {
    id: SOCAT.id,
    label: SOCAT.label,
    exec: (port, dir) =>
      `exec /usr/bin/socat TCP-LISTEN:${port},bind=${HOST},fork,reuseaddr EXEC:${dir}/greet`,
    missing: () => SOCAT.missing() ?? fixcrio(),
  },
  {
    id: S6_TCPSERVER.id,
    label: S6_TCPSERVER.label,
    // s6-tcpserver finds its helpers by PATH
    exec: (port) =>
      `PATH="${S6_DIR}:$PATH" exec "${S6}" -q ${HOST} ${port} /usr/bin/fixcrio ${PROGRAM}`,
    missing: () => S6_TCPSERVER.missing() ?? fixcrio(),
  },
];

/** Connects; resolves with the first line received (null: refused or closed first). */
function firstLine(
  port: number,
  keep: boolean,
): Promise<{ line: string; sock: net.Socket } | null> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: HOST, port });
    let text = "";
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(null);
    }, 15_000);
    sock.on("data", (d) => {
      text += d.toString("latin1");
      const i = text.indexOf("\n");
      if (i < 0) return;
      clearTimeout(timer);
      if (!keep) sock.destroy();
      resolve({ line: text.slice(0, i + 1), sock });
    });
    sock.once("error", () => {
      clearTimeout(timer);
      resolve(null);
    });
    sock.once("close", () => {
      clearTimeout(timer);
      resolve(null);
    });
  });
}

async function greetedBy(port: number, gen: number, limitMs: number, keep = false) {
  const until = performance.now() + limitMs;
  while (performance.now() < until) {
    const got = await firstLine(port, keep);
    if (got && got.line.startsWith(`hi${gen}`)) return got.sock;
    got?.sock.destroy();
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error(`generation ${gen} did not greet within ${limitMs} ms`);
}

async function svstatUp(dir: string): Promise<number> {
  const r = await new Deno.Command("svstat", { args: [dir], stdout: "piped" }).output();
  const m = /: up \(pid \d+\) (\d+) seconds/.exec(new TextDecoder().decode(r.stdout));
  return m ? Number(m[1]) : -1;
}

/** One restart of contender c: ms from svc -t to the next generation's greeting, and the old session kept. */
async function restartOnce(c: Contender): Promise<Record<string, number>> {
  const dir = await Deno.makeTempDir({ prefix: "ucspi-restart-" });
  const service = `${dir}/svc`;
  const port = freePort(HOST);
  await Deno.mkdir(service);
  await Deno.writeTextFile(`${service}/greet`, GREET, { mode: 0o755 });
  await Deno.writeTextFile(
    `${service}/run`,
    `#!/bin/sh\nexec 2>/dev/null\nGEN=$(( $(cat gen 2>/dev/null || echo 0) + 1 ))\necho $GEN > gen\nexport GEN\n${
      c.exec(port, service)
    }\n`,
    { mode: 0o755 },
  );
  const sup = new Deno.Command("supervise", {
    args: [service],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let old: net.Socket | null = null;
  let fresh: net.Socket | null = null;
  try {
    old = await greetedBy(port, 1, 20_000, true);
    // supervise pauses a second after each start before it reads svc's
    // commands; svstat counts whole seconds of a truncated start time, so 2
    // means at least one second
    while (await svstatUp(service) < 2) await new Promise((r) => setTimeout(r, 20));
    const t0 = performance.now();
    await new Deno.Command("svc", { args: ["-t", service] }).output();
    fresh = await greetedBy(port, 2, 30_000, true);
    const ms = performance.now() - t0;
    const kept = await new Promise<number>((resolve) => {
      let text = "";
      const timer = setTimeout(() => resolve(0), 3000);
      old!.on("data", (d) => {
        text += d.toString("latin1");
        if (text.includes("ping")) {
          clearTimeout(timer);
          resolve(1);
        }
      });
      old!.once("close", () => {
        clearTimeout(timer);
        resolve(0);
      });
      old!.write("ping\n");
    });
    return { ms, kept };
  } finally {
    old?.destroy();
    fresh?.destroy();
    await new Deno.Command("svc", { args: ["-dx", service] }).output();
    await sup.status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

const skipped: Record<string, string> = {};
const present: Contender[] = [];
for (const c of CONTENDERS) {
  const why = SUPERVISE ? c.missing() : "no daemontools (supervise, svc, svstat)";
  if (why) skipped[c.id] = why;
  else present.push(c);
}
const { samples, failed } = await alternate("restart", present, restartOnce);
Object.assign(skipped, failed);
emitRow(
  {
    id: "restart",
    label: "svc -t with a session open: next generation greets after",
    unit: "ms",
    better: "lower",
    note:
      "restart: under supervise, one fixcrio session open; ours pure drains $TCPSERVER_DRAIN (10 s)",
  },
  C.id,
  samples,
  "ms",
  skipped,
);
emitRow(
  {
    id: "restart-kept",
    label: "svc -t: the open session still answers (1 = yes)",
    unit: "",
    better: "higher",
  },
  C.id,
  samples,
  "kept",
  skipped,
);
