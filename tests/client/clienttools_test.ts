/**
 * who@, date@, finger@, http@, tcpcat, mconnect, mconnect-io against small
 * loopback servers, byte for byte against Debian's C scripts; plus the
 * cat -v and http@ body filters as units.
 */
import assert from "node:assert/strict";
import { catvConverter, chain, httpBodyConverter } from "../../lib/client/clienttools.ts";
import { delcrConverter } from "../../lib/stages/crlf.ts";
import { cTool, haveC, MOD, ours, type Result, theirs } from "../support/helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A fresh loopback address of this test's own, so fixed ports (11, 13, 79) do not collide. */
function freshLoopback(): string {
  const b = crypto.getRandomValues(new Uint8Array(2));
  return `127.${(b[0] % 50) + 150}.${b[1]}.${(b[0] % 200) + 2}`;
}

/** A server on ip:port that reads the request (up to a newline when `line`), then answers. */
function serve(
  ip: string,
  port: number,
  answer: (request: string) => Uint8Array,
  opts: { line?: boolean; until?: string } = {},
): { port: number; requests: string[]; close: () => void } {
  const l = Deno.listen({ hostname: ip, port });
  const requests: string[] = [];
  (async () => {
    try {
      for await (const c of l) {
        (async () => {
          let req = "";
          const buf = new Uint8Array(4096);
          while (opts.line || opts.until) {
            if (opts.until && req.includes(opts.until)) break;
            if (opts.line && !opts.until && req.includes("\n")) break;
            const n = await c.read(buf);
            if (n === null) break;
            req += dec.decode(buf.subarray(0, n));
          }
          requests.push(req);
          const data = answer(req);
          let off = 0;
          while (off < data.length) off += await c.write(data.subarray(off));
        })().catch(() => {}).finally(() => {
          try {
            c.close();
          } catch { /* closed */ }
        });
      }
    } catch { /* closed */ }
  })();
  return { port: (l.addr as Deno.NetAddr).port, requests, close: () => l.close() };
}

/** Every byte 0..255, and CR in the awkward places. */
const NASTY = (() => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  return new Uint8Array([
    ...enc.encode("joe  tty1\r\nann\tpts/0\r\n\rmid\r\r\n"),
    ...all,
    ...enc.encode("\nlast\r"),
  ]);
})();

function sameBytes(a: Result, b: Result, what: string) {
  assert.deepEqual(a.stdout, b.stdout, `${what}: stdout`);
  assert.equal(a.err, b.err, `${what}: stderr`);
  assert.equal(a.code, b.code, `${what}: exit code`);
}

Deno.test("cat -v and delcr as the scripts chain them", () => {
  const conv = chain(delcrConverter(), catvConverter());
  const bytes = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
  const out = new Uint8Array([
    ...conv.push(bytes("a\x01\tb\r")),
    ...conv.push(bytes("\nc\x7f\x80\x89\x8a\xa0\xff\re\r")),
    ...conv.end(),
  ]);
  assert.equal(dec.decode(out), "a^A\tb\nc^?M-^@M-^IM-^JM- M-^?^Me^M");
});

Deno.test("http@'s awk filter: the body after the first empty line, empty lines dropped", () => {
  const conv = httpBodyConverter();
  const out = new Uint8Array([
    ...conv.push(enc.encode("HTTP/1.0 200 OK\nX: y\n\nline1\n")),
    ...conv.push(enc.encode("\n\nline2\npart")),
    ...conv.push(enc.encode("ial")),
    ...conv.end(),
  ]);
  assert.equal(dec.decode(out), "line1\nline2\npartial\n");
});

Deno.test("who@ and date@: ports 11 and 13, CR removed, cat -v, as C", async () => {
  const ip = freshLoopback();
  const who = serve(ip, 11, () => NASTY);
  const date = serve(ip, 13, () => enc.encode("Sun Nov 22 02:40:00 2026\r\n"));
  try {
    const w = await ours("who@", [ip]);
    assert.equal(w.code, 0);
    assert.match(w.out, /^joe {2}tty1\nann\tpts\/0\n\^Mmid\^M\n/);
    assert.match(w.out, /\nlast\^M$/);
    const d = await ours("date@", [ip]);
    assert.equal(d.out, "Sun Nov 22 02:40:00 2026\n");
    if (haveC("who@")) {
      sameBytes(w, await theirs("who@", [ip]), "who@");
      sameBytes(d, await theirs("date@", [ip]), "date@");
    }
  } finally {
    who.close();
    date.close();
  }
});

Deno.test("who@, finger@, http@: a refused connection says tcpclient's line, exits 0, as C", async () => {
  const ip = freshLoopback();
  for (
    const [tool, args, port] of [
      ["who@", [ip], 11],
      ["date@", [ip], 13],
      ["finger@", [ip, "joe"], 79],
      ["http@", [ip, "x", "1"], 1],
    ] as const
  ) {
    const a = await ours(tool, [...args]);
    assert.equal(a.code, 0);
    assert.equal(a.err, `tcpclient: unable to connect to ${ip} port ${port}: connection refused\n`);
    assert.equal(a.out, "");
    if (haveC(tool)) sameBytes(a, await theirs(tool, [...args]), tool);
  }
});

Deno.test("finger@: sends user CRLF to port 79, prints the answer, as C", async () => {
  const ip = freshLoopback();
  const srv = serve(
    ip,
    79,
    (req) => enc.encode(`you asked ${JSON.stringify(req)}\r\nline\x1b[0m\r\n`),
    { line: true },
  );
  try {
    for (const args of [[ip, "joe"], [ip]]) {
      const a = await ours("finger@", args);
      assert.equal(a.code, 0, a.err);
      const user = args[1] ?? "";
      assert.equal(a.out, `you asked ${JSON.stringify(user + "\r\n")}\nline^[[0m\n`);
      if (haveC("finger@")) sameBytes(a, await theirs("finger@", args), `finger@ ${args}`);
    }
  } finally {
    srv.close();
  }
});

Deno.test("http@: GET /page with Host host:port, prints the body, as C", async () => {
  const ip = freshLoopback();
  const srv = serve(
    ip,
    0,
    (req) =>
      enc.encode(
        `HTTP/1.0 200 OK\r\nServer: t\r\n\r\nbody ${JSON.stringify(req)}\r\n\r\n\nx\x01\r\rend`,
      ),
    { line: true },
  );
  try {
    const args = [ip, "some/page?q=1", String(srv.port)];
    const a = await ours("http@", args);
    assert.equal(a.code, 0, a.err);
    assert.equal(
      a.out,
      `body ${
        JSON.stringify(`GET /some/page?q=1 HTTP/1.0\r\nHost: ${ip}:${srv.port}\r\n\r\n`)
      }\nx\x01\r\rend\n`,
    );
    if (haveC("http@")) sameBytes(a, await theirs("http@", args), "http@");
  } finally {
    srv.close();
  }
});

Deno.test("tcpcat: raw bytes, default port 17, tcpclient's exit code on failure, as C", async () => {
  const ip = freshLoopback();
  const srv = serve(ip, 0, () => NASTY);
  const qotd = serve(ip, 17, () => enc.encode("quote\r\n"));
  try {
    const a = await ours("tcpcat", [ip, String(srv.port)]);
    assert.equal(a.code, 0, a.err);
    assert.deepEqual(a.stdout, NASTY);
    const q = await ours("tcpcat", [ip]);
    assert.equal(q.out, "quote\r\n");
    const r = await ours("tcpcat", [ip, "1"]);
    assert.equal(r.code, 111);
    assert.equal(r.err, `tcpclient: unable to connect to ${ip} port 1: connection refused\n`);
    if (haveC("tcpcat")) {
      sameBytes(a, await theirs("tcpcat", [ip, String(srv.port)]), "tcpcat");
      sameBytes(q, await theirs("tcpcat", [ip]), "tcpcat 17");
      sameBytes(r, await theirs("tcpcat", [ip, "1"]), "tcpcat refused");
    }
  } finally {
    srv.close();
    qotd.close();
  }
});

Deno.test("mconnect: stdin with CRs added; prints until the server closes, as C", async () => {
  const ip = freshLoopback();
  const srv = serve(
    ip,
    0,
    (req) => enc.encode(`220 hi\r\ngot ${JSON.stringify(req)}\r\n`),
    { until: "QUIT\r\n" },
  );
  const smtp = serve(ip, 25, () => enc.encode("220 smtp\r\n"));
  try {
    const stdin = "HELO x\r\nMAIL\nQUIT\n";
    const a = await ours("mconnect", [ip, String(srv.port)], { stdin });
    assert.equal(a.code, 0, a.err);
    assert.equal(a.out, `220 hi\r\ngot ${JSON.stringify("HELO x\r\r\nMAIL\r\nQUIT\r\n")}\r\n`);
    // the server closing first ends mconnect whatever stdin does
    const d = await ours("mconnect", [ip], { stdin: "" });
    assert.equal(d.out, "220 smtp\r\n");
    const r = await ours("mconnect", [ip, "1"], { stdin: "" });
    assert.equal(r.code, 111);
    if (haveC("mconnect")) {
      sameBytes(a, await theirs("mconnect", [ip, String(srv.port)], { stdin }), "mconnect");
      sameBytes(d, await theirs("mconnect", [ip], { stdin: "" }), "mconnect 25");
      sameBytes(r, await theirs("mconnect", [ip, "1"], { stdin: "" }), "mconnect refused");
    }
  } finally {
    srv.close();
    smtp.close();
  }
});

Deno.test("mconnect-io under tcpclient (ours and C's)", async () => {
  const ip = freshLoopback();
  const srv = serve(ip, 0, (req) => enc.encode(`got ${JSON.stringify(req)}\n`), { until: "b\r\n" });
  try {
    const stdin = "a\nb\n";
    const want = `got ${JSON.stringify("a\r\nb\r\n")}\n`;
    // our mconnect-io, started by our tcpclient as a separate program
    const io = [
      "bash",
      "-c",
      `exec -a mconnect-io "${Deno.execPath()}" run -A "${MOD}"`,
    ];
    const a = await ours("tcpclient", ["-RHl0", ip, String(srv.port), ...io], { stdin });
    assert.equal(a.code, 0, a.err);
    assert.equal(a.out, want);
    const c = cTool("tcpclient");
    if (c && haveC("tcpclient")) {
      // our mconnect-io on C tcpclient's socket descriptors
      const b = await theirs("tcpclient", ["-RHl0", ip, String(srv.port), ...io], { stdin });
      assert.equal(b.out, want);
    }
  } finally {
    srv.close();
  }
});
