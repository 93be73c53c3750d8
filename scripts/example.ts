/**
 * The example service: compiles examples/rules with our tcprules, starts our
 * tcpserver on 127.0.0.1 (a free port) with those rules, serving a small
 * greeting program that echoes what the client types, shows one
 * conversation, prints how to connect, and runs until Ctrl-C.
 *
 *   deno task example            # runs until Ctrl-C
 *   deno task example --once     # one demo conversation, then stops
 */
import net from "node:net";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const MOD = `${ROOT}mod.ts`;
const once = Deno.args.includes("--once");

const GREETER = [
  "sh",
  "-c",
  'echo "hello $TCPREMOTEIP:$TCPREMOTEPORT (rule says which=${which-none}," ' +
  '"TCPLOCALHOST=${TCPLOCALHOST-unset}, connection $TCPCONNNUM from your address)"; ' +
  'echo "type lines, they come back upper-cased; end with Ctrl-D"; ' +
  // A read loop, not `tr`: tr buffers its output when it is not a terminal,
  // so typed lines would never come back.
  'while IFS= read -r line; do printf "%s\\n" "$line" | tr a-z A-Z; done',
];

const dir = await Deno.makeTempDir({ prefix: "ucspi-example-" });
let server: Deno.ChildProcess | null = null;
try {
  const cdb = `${dir}/rules.cdb`;
  const rules = await Deno.readFile(`${ROOT}examples/rules`);
  const tcprules = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MOD, "tcprules", cdb, `${dir}/rules.tmp`],
    stdin: "piped",
  }).spawn();
  const w = tcprules.stdin.getWriter();
  await w.write(rules);
  await w.close();
  if (!(await tcprules.status).success) throw new Error("tcprules failed");
  console.log(`compiled examples/rules into ${cdb}`);

  server = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MOD,
      "tcpserver",
      "-v",
      "-1",
      "-RH",
      "-l",
      "localhost",
      "-x",
      cdb,
      "127.0.0.1",
      "0",
      ...GREETER,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = server.stdout.getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("tcpserver did not start");
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const port = Number(out.trim());

  // One conversation, to show it works.
  const reply = await new Promise<string>((resolve, reject) => {
    let text = "";
    const s = net.connect({ host: "127.0.0.1", port }, () => s.end("it works\n"));
    s.on("data", (d: Uint8Array) => (text += new TextDecoder().decode(d)));
    s.on("error", reject);
    s.on("close", () => resolve(text));
  });
  console.log(`\n$ echo "it works" | nc 127.0.0.1 ${port}\n${reply.trimEnd()}\n`);

  if (!once) {
    // Hints that work as printed: Debian's nc needs -N to close at the end of
    // its input, and an npx user has no `deno` on PATH (print the one running).
    const deno = Deno.execPath();
    console.log(`tcpserver is listening on 127.0.0.1:${port}. Try:`);
    console.log(
      `  nc 127.0.0.1 ${port}      (or: telnet 127.0.0.1 ${port}; type lines, Ctrl-D ends)`,
    );
    console.log(`  echo hello | nc -N 127.0.0.1 ${port}`);
    console.log(
      `  ${deno} run -A ${MOD} tcpclient 127.0.0.1 ${port} sh -c 'echo hello >&7; head -n 3 <&6'`,
    );
    console.log("Ctrl-C stops it.");
    await new Promise<void>((resolve) => {
      Deno.addSignalListener("SIGINT", () => resolve());
      Deno.addSignalListener("SIGTERM", () => resolve());
      server!.status.then(() => resolve());
    });
  }
} finally {
  if (server) {
    try {
      server.kill("SIGTERM");
    } catch { /* already gone */ }
    await server.status;
  }
  await Deno.remove(dir, { recursive: true });
}
