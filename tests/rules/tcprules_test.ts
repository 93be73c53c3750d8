/**
 * tcprules and tcprulescheck end to end, and differentially against DJB's C
 * tools (Debian's ucspi-tcp): stdout, stderr, exit code and the cdb bytes.
 */
import assert from "node:assert/strict";
import { needs, ours, prng, type Result, tempDir, theirs } from "../support/helpers.ts";

type Tool = typeof ours;

async function readOrNull(path: string): Promise<Uint8Array | null> {
  try {
    return await Deno.readFile(path);
  } catch {
    return null;
  }
}

/** Runs `tcprules r.cdb r.tmp` with input in a fresh directory: the result and the cdb. */
async function compile(
  tool: Tool,
  input: string | Uint8Array,
  dir: string,
): Promise<{ r: Result; cdb: Uint8Array | null }> {
  const r = await tool("tcprules", ["r.cdb", "r.tmp"], { stdin: input, cwd: dir });
  return { r, cdb: await readOrNull(`${dir}/r.cdb`) };
}

async function inDirs<T>(fn: (a: string, b: string) => Promise<T>): Promise<T> {
  const a = await tempDir();
  const b = await tempDir();
  try {
    return await fn(a.path, b.path);
  } finally {
    await a.cleanup();
    await b.cleanup();
  }
}

/** Compares our tcprules with C's on input: exit code, stdout, stderr, cdb bytes. */
function sameAsC(input: string | Uint8Array, label = String(input)): Promise<Result> {
  return inDirs(async (a, b) => {
    const [o, t] = await Promise.all([compile(ours, input, a), compile(theirs, input, b)]);
    assert.equal(o.r.out, t.r.out, label);
    if (t.r.code === 100 && t.r.err.includes("unable to parse this line")) {
      // Deliberate difference: we name the line number and exit 111 (C: 100).
      assert.equal(o.r.code, 111, `exit code for ${JSON.stringify(label)}: ${o.r.err}`);
      assert.match(o.r.err, /^tcprules: fatal: unable to parse line \d+: /);
      assert.equal(
        o.r.err.replace(/unable to parse line \d+: /, "unable to parse this line: "),
        t.r.err,
        label,
      );
    } else {
      assert.equal(o.r.code, t.r.code, `exit code for ${JSON.stringify(label)}: ${o.r.err}`);
      assert.equal(o.r.err, t.r.err, label);
    }
    assert.deepEqual(o.cdb, t.cdb, `cdb bytes for ${JSON.stringify(label)}`);
    return o.r;
  });
}

async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(Array.from({ length: n }, async () => {
    for (let x = queue.shift(); x !== undefined; x = queue.shift()) await fn(x);
  }));
}

const CASES = [
  "",
  "\n",
  "1:allow\n2:deny\n3:deny,A=:x:\n",
  "joe@127.0.0.1:allow,which=/first/\n18.23.0.32:deny\n:allow,which=+third+\n127.:allow,which==fourth=\n",
  '10.0.:allow,RELAYCLIENT="@fix.me"\n127.0.0.1:allow,RELAYCLIENT="",TCPLOCALHOST="movie.edu"\n',
  "1.2.3.37-53:allow\n10.2-3.:deny\n127.0-5.:allow,X=/y/\n",
  "=host.example.com:deny\n=.example.com:allow\n=:deny\n:allow\n",
  "# comment\n  #not a comment:deny\n\n  \t\nno colon\n 1 :allow  \t \n",
  "4:allow", // no final newline
  "1:allow,Z,Y=/a/\n5:allow,=/x/\n6:allow,,A=/x/\n7:deny,A=xx,B=yy\n8:allow,A=/a,b/\n",
  "ABC:allow\n=Host.X:allow\nJoe@1.2.3.4:allow\n",
  "joe@1.2-3.4:allow\n=a-b:allow\n1-3:allow\n5-2.:allow\n300-302.1:allow\n1.2.250-300:deny\n",
  "1.2.3.-5:deny\n1.2.3.4-.:deny\n01.2.3.04-06:deny\n1.2.3.4-5.6-7:deny\n1.2.3.4-5.x:deny\n",
  "a\0b:allow\n",
  "dup:allow\ndup:deny\n",
  // Errors: C's message (plus our line number), no cdb.
  "bad:\n",
  "1:allowx  \t\n",
  '1:allow,X="y\n',
  "1:allow\r\n",
  "ok:allow\n1.2.3.4-5x:deny\n",
  "1-2-3:deny\n",
  "b:a@1-2:deny\n",
  "x:deny\0y\n",
  "1:allow,A=/x/,\n",
  "1:allow,A==\n",
];

/** The differential tests' C tcprules. */
const C_TCPRULES = needs("tcprules");

Deno.test(
  "tcprules: same exit code, messages and cdb bytes as C tcprules" + C_TCPRULES.reasonSuffix,
  { ignore: C_TCPRULES.ignore },
  async () => {
    let failures = 0;
    await pool(CASES, 4, async (input) => {
      if ((await sameAsC(input)).code !== 0) failures++;
    });
    assert.equal(failures, 10); // the error cases really are errors
  },
);

/** n random lines in every syntax DJB's tcprules accepts. */
function randomRules(n: number, seed: number): string {
  const r = prng(seed);
  const int = (k: number) => Math.floor(r() * k);
  const pick = <T>(xs: T[]): T => xs[int(xs.length)];
  const octet = () => String(int(256));
  const word = () => pick(["mail", "www", "a", "b1", "x-y", "Host", "example", "com", "net"]);
  const hostname = () => Array.from({ length: 1 + int(3) }, word).join(".");
  const ip = (parts: number) => Array.from({ length: parts }, octet).join(".");
  const address = (): string => {
    switch (int(12)) {
      case 0:
        return ip(4);
      case 1:
        return ip(1 + int(3)) + ".";
      case 2: {
        const lo = int(256);
        return `${ip(3)}.${lo}-${lo + int(40)}`;
      }
      case 3: {
        const lo = int(256);
        return `${ip(1 + int(2))}.${lo}-${lo + int(5)}.`;
      }
      case 4:
        return `${word()}@${ip(4)}`;
      case 5:
        return `${word()}@=${hostname()}`;
      case 6:
        return `=${hostname()}`;
      case 7:
        return `=.${hostname()}`;
      case 8:
        return pick(["=", ""]);
      case 9:
        return `${pick(["mail", "Host", "b1"])}${pick([" ", "", "\t"])}`;
      case 10:
        return String(int(30));
      default:
        return ip(4);
    }
  };
  const value = () => {
    const v = pick(["", "1", "@fix.me", "movie.edu", "a b", "x,y", "250 ok", "smtp:x"]);
    const quotes = ['"', "/", "+", "=", "'", "%", "|"].filter((q) => !v.includes(q));
    const q = pick(quotes);
    return `${q}${v}${q}`;
  };
  const instructions = () => {
    let s = pick(["allow", "allow", "deny"]);
    for (let k = int(4); k > 0; k--) {
      s += `,${pick(["RELAYCLIENT", "X", "which", "MAXCONNIP", "TCPLOCALHOST", "a_b"])}=${value()}`;
    }
    return s;
  };
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const kind = int(40);
    if (kind === 0) lines.push(`# ${word()}:${instructions()}`);
    else if (kind === 1) lines.push("");
    else if (kind === 2) lines.push(`no colon ${word()}`);
    else lines.push(`${address()}:${instructions()}${pick(["", "", "", " ", "\t "])}`);
  }
  return lines.join("\n") + "\n";
}

Deno.test(
  "tcprules: 10,000 random rules lines compile to the same bytes as C tcprules" +
    C_TCPRULES.reasonSuffix,
  { ignore: C_TCPRULES.ignore },
  async () => {
    for (const seed of [1, 2]) {
      const input = randomRules(10_000, seed);
      const r = await sameAsC(input, `random rules, seed ${seed}`);
      assert.equal(r.code, 0, r.err);
    }
  },
);

Deno.test("tcprules: usage, create and move failures as C tcprules" + C_TCPRULES.reasonSuffix, {
  ignore: C_TCPRULES.ignore,
}, async () => {
  await inDirs(async (a, b) => {
    const runs: Array<[string[], string]> = [
      [[], ""],
      [["only.cdb"], ""],
      [["x.cdb", "/dev/nonexistent/tmp"], "1:allow\n"],
      [["/nonexistent/x.cdb", "x.tmp"], "1:allow\n"],
    ];
    for (const [args, stdin] of runs) {
      const [o, t] = await Promise.all([
        ours("tcprules", args, { stdin, cwd: a }),
        theirs("tcprules", args, { stdin, cwd: b }),
      ]);
      assert.equal(o.code, t.code, args.join(" "));
      assert.equal(o.err, t.err, args.join(" "));
      assert.equal(o.out, t.out);
    }
  });
});

Deno.test("tcprules: a bad line leaves the old cdb untouched and removes the temporary file", async () => {
  const dir = await tempDir();
  try {
    const cdb = `${dir.path}/r.cdb`;
    let r = await ours("tcprules", ["r.cdb", "r.tmp"], { stdin: "1.2.3.4:deny\n", cwd: dir.path });
    assert.equal(r.code, 0);
    const before = await Deno.readFile(cdb);
    r = await ours("tcprules", ["r.cdb", "r.tmp"], {
      stdin: "5.6.7.8:deny\nnonsense:maybe\n",
      cwd: dir.path,
    });
    assert.equal(r.code, 111);
    assert.match(r.err, /^tcprules: fatal: unable to parse line \d+: nonsense:maybe\n$/);
    assert.deepEqual(await Deno.readFile(cdb), before);
    assert.equal(await readOrNull(`${dir.path}/r.tmp`), null);
    r = await ours("tcprulescheck", [cdb], { env: { TCPREMOTEIP: "1.2.3.4" }, clearEnv: true });
    assert.equal(r.out, "rule 1.2.3.4:\ndeny connection\n");
  } finally {
    await dir.cleanup();
  }
});

const CHECK_RULES = [
  "joe@127.0.0.1:allow,which=/first/",
  "18.23.0.32:deny",
  ":allow,which=+third+",
  "127.:allow,which==fourth=",
  "=h.example.com:deny,X=/y/",
  "=.example.com:allow,A=/1/,B=/2/",
  "=:allow,E=//",
  "@0.0.0.0:deny",
  "0.0.0.0:allow,Z=/zero/",
  "bill@=h.example.com:allow,W=/who/",
].join("\n") + "\n";

const CHECK_ENVS: Array<Record<string, string>> = [
  {},
  { TCPREMOTEIP: "" },
  { TCPREMOTEINFO: "" },
  { TCPREMOTEIP: "127.0.0.1" },
  { TCPREMOTEIP: "127.0.0.1", TCPREMOTEINFO: "joe" },
  { TCPREMOTEIP: "127.0.0.1", TCPREMOTEINFO: "bill" },
  { TCPREMOTEIP: "18.23.0.32" },
  { TCPREMOTEIP: "1.2.3.4", TCPREMOTEHOST: "h.example.com" },
  { TCPREMOTEIP: "1.2.3.4", TCPREMOTEHOST: "h.example.com", TCPREMOTEINFO: "bill" },
  { TCPREMOTEIP: "1.2.3.4", TCPREMOTEHOST: "a.b.example.com" },
  { TCPREMOTEIP: "1.2.3.4", TCPREMOTEHOST: "other" },
  { TCPREMOTEIP: "1.2.3.4", TCPREMOTEHOST: "" },
  { TCPREMOTEIP: "10.119.75.38" },
];

/** The differential tcprulescheck tests' C tools. */
const C_CHECK = needs("tcprulescheck", "tcprules");

Deno.test("tcprulescheck: same report as C tcprulescheck" + C_CHECK.reasonSuffix, {
  ignore: C_CHECK.ignore,
}, async () => {
  const dir = await tempDir();
  try {
    const cdb = `${dir.path}/r.cdb`;
    const made = await theirs("tcprules", [cdb, `${dir.path}/r.tmp`], { stdin: CHECK_RULES });
    assert.equal(made.code, 0);
    await pool(CHECK_ENVS, 4, async (env) => {
      const [o, t] = await Promise.all([
        ours("tcprulescheck", [cdb], { env, clearEnv: true }),
        theirs("tcprulescheck", [cdb], { env, clearEnv: true }),
      ]);
      assert.equal(o.out, t.out, JSON.stringify(env));
      assert.equal(o.err, t.err);
      assert.equal(o.code, t.code);
    });
    // Errors.
    await Deno.writeTextFile(`${dir.path}/short.cdb`, "abc");
    for (const args of [[], [`${dir.path}/nofile.cdb`], [`${dir.path}/short.cdb`]]) {
      const [o, t] = await Promise.all([
        ours("tcprulescheck", args, { env: { TCPREMOTEIP: "1.2.3.4" }, clearEnv: true }),
        theirs("tcprulescheck", args, { env: { TCPREMOTEIP: "1.2.3.4" }, clearEnv: true }),
      ]);
      assert.equal(o.code, t.code, args.join(" "));
      assert.equal(o.err, t.err, args.join(" "));
      assert.equal(o.out, t.out);
    }
  } finally {
    await dir.cleanup();
  }
});

/** tcprulescheck on records only tinycdb's cdb can write. */
const C_ODD = needs("tcprulescheck", "cdb");

Deno.test(
  "tcprulescheck: odd cdb records read as C tcprulescheck reads them" + C_ODD.reasonSuffix,
  { ignore: C_ODD.ignore },
  async () => {
    const dir = await tempDir();
    try {
      // Records no tcprules line makes (written with tinycdb), read as C reads them.
      const odd = `${dir.path}/odd.cdb`;
      const recs = [
        ["1", "+A=b\0D\0+C=d\0"],
        ["2", "+A=b\0X\0+Q=r\0"],
        ["3", "+Ab\0"],
        ["4", "Dxyz\0+A=b\0"],
        ["5", "+A=b"],
        ["6", "\0\0"],
        ["7", "D"],
      ];
      const input = recs.map(([k, d]) => `+${k.length},${d.length}:${k}->${d}\n`).join("") + "\n";
      assert.equal((await theirs("cdb", ["-c", odd], { stdin: input })).code, 0);
      for (const [ip] of recs) {
        const env = { TCPREMOTEIP: ip };
        const [o, t] = await Promise.all([
          ours("tcprulescheck", [odd], { env, clearEnv: true }),
          theirs("tcprulescheck", [odd], { env, clearEnv: true }),
        ]);
        assert.equal(o.out, t.out, ip);
      }
    } finally {
      await dir.cleanup();
    }
  },
);

Deno.test("tcprules + tcprulescheck: IPv6, CIDR and unset rules end to end", async () => {
  const dir = await tempDir();
  try {
    const cdb = `${dir.path}/r.cdb`;
    const rules = [
      "10.0.0.0/8:deny",
      "10.1.0.0/16:allow,RELAYCLIENT=//,MAXCONNIP=/5/",
      "127.0/8:allow,TCPLOCALHOST",
      "2001:db8::/32:deny",
      "2001:de01:2:3:4:a:b:c:deny",
      "::1:allow,V6=/yes/",
      ":allow",
    ].join("\n") + "\n";
    const made = await ours("tcprules", [cdb, `${dir.path}/r.tmp`], { stdin: rules });
    assert.equal(made.code, 0, made.err);
    const check = async (ip: string) =>
      (await ours("tcprulescheck", [cdb], { env: { TCPREMOTEIP: ip }, clearEnv: true })).out;
    assert.equal(await check("10.9.8.7"), "rule 10.0.0.0/8:\ndeny connection\n");
    assert.equal(await check("::ffff:10.9.8.7"), "rule 10.0.0.0/8:\ndeny connection\n");
    assert.equal(
      await check("10.1.8.7"),
      "rule 10.1.0.0/16:\nset environment variable RELAYCLIENT=\n" +
        "set environment variable MAXCONNIP=5\nallow connection\n",
    );
    assert.equal(
      await check("127.0.0.1"),
      "rule 127.0.0.0/8:\nunset environment variable TCPLOCALHOST\nallow connection\n",
    );
    assert.equal(await check("2001:DB8:5::1"), "rule 2001:db8::/32:\ndeny connection\n");
    assert.equal(
      await check("2001:de01:2:3:4:a:b:c"),
      "rule 2001:de01:2:3:4:a:b:c:\ndeny connection\n",
    );
    assert.equal(
      await check("0:0::1"),
      "rule ::1:\nset environment variable V6=yes\nallow connection\n",
    );
    assert.equal(await check("2001:db9::1"), "rule :\nallow connection\n");
    // A bad CIDR line is a syntax error like any other.
    const bad = await ours("tcprules", [cdb, `${dir.path}/r.tmp`], { stdin: "10.1.0.0/8:deny\n" });
    assert.equal(bad.code, 111);
    assert.match(bad.err, /^tcprules: fatal: unable to parse line \d+: 10.1.0.0\/8:deny\n$/);
  } finally {
    await dir.cleanup();
  }
});
