/**
 * The example: compiles examples/rules with our tcprules into a temporary
 * directory and asks our tcprulescheck what tcpserver would do for a few
 * clients.
 */
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const MOD = `${ROOT}mod.ts`;

async function tool(name: string, args: string[], env: Record<string, string>, stdin?: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MOD, name, ...args],
    env,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const r = await child.output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

const dir = await Deno.makeTempDir({ prefix: "ucspi-example-" });
try {
  const rules = await Deno.readTextFile(`${ROOT}examples/rules`);
  const cdb = `${dir}/rules.cdb`;
  const made = await tool("tcprules", [cdb, `${dir}/rules.tmp`], {}, rules);
  if (made.code !== 0) throw new Error(made.err);
  console.log(`compiled examples/rules into ${cdb}`);
  const clients: Array<Record<string, string>> = [
    { TCPREMOTEIP: "127.0.0.1", TCPREMOTEINFO: "joe" },
    { TCPREMOTEIP: "127.0.0.1" },
    { TCPREMOTEIP: "127.0.0.2" },
    { TCPREMOTEIP: "18.23.0.32" },
    { TCPREMOTEIP: "1.2.3.40" },
    { TCPREMOTEIP: "10.3.0.1" },
    { TCPREMOTEIP: "192.168.1.1" },
    { TCPREMOTEIP: "::ffff:192.168.66.7" },
    { TCPREMOTEIP: "2001:db8::25" },
    { TCPREMOTEIP: "5.6.7.8", TCPREMOTEHOST: "relay.spam.example" },
    { TCPREMOTEIP: "5.6.7.8", TCPREMOTEHOST: "mail.example.com" },
    { TCPREMOTEIP: "5.6.7.8" },
  ];
  for (const env of clients) {
    const r = await tool("tcprulescheck", [cdb], env);
    const who = Object.entries(env).map(([k, v]) => `${k}=${v}`).join(" ");
    console.log(`\n$ ${who} tcprulescheck rules.cdb\n${r.out.trimEnd()}`);
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
