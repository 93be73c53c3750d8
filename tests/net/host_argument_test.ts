/**
 * The host argument of tcpserver and tcpclient (lib/net/dns/host.ts, one
 * resolver for both): dns_ip4_qualify's search domains and trailing dot,
 * dns_ip4's numeric forms, and no /etc/hosts ("localhost" is a DNS name), in
 * process and against DJB's C tcpserver and tcpclient with a test DNS server
 * on $DNSCACHEIP.
 */
import assert from "node:assert/strict";
import { qualifiedNames, resolveHostArgument } from "../../lib/net/dns/host.ts";
import { cTool, needs, oursArgv, type Result, theirs } from "../support/helpers.ts";
import { startDnsServer } from "../support/dns_server.ts";

const dec = new TextDecoder();

/** Runs fn with $LOCALDOMAIN set to value (restored after). */
async function withLocalDomain<T>(value: string, fn: () => Promise<T> | T): Promise<T> {
  const old = Deno.env.get("LOCALDOMAIN");
  Deno.env.set("LOCALDOMAIN", value);
  try {
    return await fn();
  } finally {
    if (old === undefined) Deno.env.delete("LOCALDOMAIN");
    else Deno.env.set("LOCALDOMAIN", old);
  }
}

Deno.test("qualifiedNames: dns_ip4_qualify's default rules", async () => {
  await withLocalDomain("one.test two.test", () => {
    // "?": only a name without '.', '[' or ']' gets the search domains; the bare name is not tried.
    assert.deepEqual(qualifiedNames("srv"), ["srv.one.test", "srv.two.test"]);
    assert.deepEqual(qualifiedNames("srv.x"), ["srv.x"]);
    assert.deepEqual(qualifiedNames("[srv]"), ["[srv]"]);
    assert.deepEqual(qualifiedNames("127"), ["127.one.test", "127.two.test"]);
    // "*.:": one trailing dot dropped, and a name with a dot is not qualified.
    assert.deepEqual(qualifiedNames("srv."), ["srv"]);
    assert.deepEqual(qualifiedNames("srv.."), ["srv."]);
    // The '+' signs are dns_ip4_qualify's alternatives, also when the name has one.
    assert.deepEqual(qualifiedNames("a+b.c"), ["ab.c"]);
  });
  // $LOCALDOMAIN is split at each space: an empty entry stands for the bare name ("srv.",
  // which dns_ip4 reads as "srv"; only the last one loses its dot to "*.:").
  await withLocalDomain("", () => assert.deepEqual(qualifiedNames("srv"), ["srv"]));
  await withLocalDomain("one.test  two.test", () => {
    assert.deepEqual(qualifiedNames("srv"), ["srv.one.test", "srv.", "srv.two.test"]);
  });
});

Deno.test("resolveHostArgument: the numeric forms and the tools' own hosts, without DNS", async () => {
  const client = { family: 0, unspecified: "loopback", literalsByFamily: true } as const;
  const server = { family: 0, unspecified: "any", literalsByFamily: false } as const;
  assert.deepEqual(await resolveHostArgument("", client), ["127.0.0.1"]);
  assert.deepEqual(await resolveHostArgument("0", { ...client, family: 6 }), ["::1"]);
  assert.deepEqual(await resolveHostArgument("0", server), ["::"]);
  assert.deepEqual(await resolveHostArgument("", { ...server, family: 4 }), ["0.0.0.0"]);
  for (const o of [client, server]) {
    assert.deepEqual(await resolveHostArgument("127.0.0.1.10.0.0.1", o), [
      "127.0.0.1",
      "10.0.0.1",
    ]);
    assert.deepEqual(await resolveHostArgument("[127.0.0.1]", o), ["127.0.0.1"]);
    assert.deepEqual(await resolveHostArgument("127.0.0.1.", o), ["127.0.0.1"]);
    assert.deepEqual(await resolveHostArgument("256.0.0.1", o), ["0.0.0.1"]);
    assert.deepEqual(await resolveHostArgument("127.1", o), []);
    assert.deepEqual(await resolveHostArgument("[::1]", o), ["::1"]);
    assert.deepEqual(await resolveHostArgument("fe80::1%lo", o), ["fe80::1%lo"]);
  }
  // tcpclient -4/-6 refuse a literal of the other family; tcpserver takes it.
  assert.deepEqual(await resolveHostArgument("127.0.0.1", { ...client, family: 6 }), []);
  assert.deepEqual(await resolveHostArgument("::1", { ...client, family: 4 }), []);
  assert.deepEqual(await resolveHostArgument("127.0.0.1", { ...server, family: 6 }), [
    "127.0.0.1",
  ]);
});

/** A fresh loopback address of our own (127.FIRST.x.y). */
function freshLoopback(first: number): string {
  const b = crypto.getRandomValues(new Uint8Array(2));
  return `127.${first}.${b[0]}.${(b[1] % 250) + 2}`;
}

/**
 * Where a tcpserver (argv, started with -1) listens, tried at `expect`: the
 * address its program reports there ($TCPLOCALIP), or how it failed.
 */
async function listening(argv: string[], env: Record<string, string>, expect: string) {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const err = new Response(child.stderr).text();
  const reader = child.stdout.getReader();
  const first = await reader.read();
  reader.releaseLock();
  let outcome: string;
  if (first.done) {
    outcome = `exit ${(await child.status).code}: ${await err}`;
  } else {
    const port = Number(dec.decode(first.value).trim());
    try {
      const c = await Deno.connect({ hostname: expect, port });
      outcome = `listening on ${(await new Response(c.readable).text()).trim()}`;
    } catch (e) {
      outcome = `listening, but not on ${expect}: ${(e as Error).message}`;
    }
    child.kill("SIGTERM");
    await child.status;
    await err;
  }
  await child.stdout.cancel().catch(() => {});
  return outcome;
}

/** A listener on ip that closes every connection at once. */
function listener(ip: string): { port: number; close: () => void } {
  const l = Deno.listen({ hostname: ip, port: 0 });
  (async () => {
    try {
      for await (const c of l) c.close();
    } catch { /* closed */ }
  })();
  return { port: (l.addr as Deno.NetAddr).port, close: () => l.close() };
}

function outcome(r: Result): string {
  return `exit ${r.code}: ${r.out}${r.err}`;
}

const C = needs("tcpserver", "tcpclient", "root");

Deno.test({
  name:
    "host argument: tcpserver and tcpclient as C (search domains, trailing dot, no /etc/hosts)" +
    C.reasonSuffix,
  ignore: C.ignore,
  async fn() {
    const ipLocal = freshLoopback(61);
    const ipSrv = freshLoopback(62);
    const ipBare = freshLoopback(63);
    const dns = await startDnsServer({
      // /etc/hosts says 127.0.0.1; DJB's tools ask DNS, which says otherwise.
      "localhost": { A: [ipLocal] },
      "localhost.one.test": { A: [ipLocal] },
      "srv.two.test": { A: [ipSrv] },
      "bare": { A: [ipBare] },
    });
    const cases: Array<{ host: string; domains: string; ip: string }> = [
      { host: "localhost", domains: "", ip: ipLocal },
      { host: "localhost", domains: "one.test", ip: ipLocal },
      { host: "localhost", domains: "two.test", ip: "127.0.0.1" },
      { host: "srv", domains: "one.test two.test", ip: ipSrv },
      { host: "srv.two.test.", domains: "one.test", ip: ipSrv },
      { host: "bare", domains: "one.test", ip: ipBare },
      { host: "bare.", domains: "one.test", ip: ipBare },
      { host: "127.0.0.1.1.2.3.4", domains: "one.test", ip: "127.0.0.1" },
      { host: "[127.0.0.1]", domains: "one.test", ip: "127.0.0.1" },
      { host: "127.1", domains: "one.test", ip: "127.0.0.1" },
      { host: "0", domains: "one.test", ip: "127.0.0.1" },
    ];
    try {
      for (const { host, domains, ip } of cases) {
        const env = { DNSCACHEIP: dns.address, LOCALDOMAIN: domains };
        const what = `${host} with LOCALDOMAIN="${domains}"`;
        const server = ["-1", "-RH", "-l0", host, "0", "sh", "-c", "echo $TCPLOCALIP"];
        const ours = await listening(oursArgv("tcpserver", server), env, ip);
        const theirsOut = await listening([cTool("tcpserver")!, ...server], env, ip);
        assert.equal(ours, theirsOut, `tcpserver ${what}`);
        const l = listener(ip);
        try {
          const client = ["-RH", host, String(l.port), "sh", "-c", "echo $TCPREMOTEIP"];
          const a = outcome(await theirs("tcpclient", client, { env }));
          const cmd = oursArgv("tcpclient", client);
          const b = await new Deno.Command(cmd[0], { args: cmd.slice(1), env }).output();
          assert.equal(
            `exit ${b.code}: ${dec.decode(b.stdout)}${dec.decode(b.stderr)}`,
            a,
            `tcpclient ${what}`,
          );
        } finally {
          l.close();
        }
      }
      // The answers the cases expect came from DNS, not from /etc/hosts.
      assert.ok(dns.queries.some((q) => /^localhost\.?$/i.test(q.name)), "localhost asked");
    } finally {
      await dns.close();
    }
  },
});
