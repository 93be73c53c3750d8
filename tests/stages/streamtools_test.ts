/**
 * addcr, delcr, fixcrio, recordio, argv0: the converters against byte-by-byte
 * oracles under random chunking, the stages in-process, and the tools as
 * processes against DJB's C tools on a corpus of tricky inputs.
 */
import assert from "node:assert/strict";
import {
  addcrConverter,
  convertAll,
  type Converter,
  delcrConverter,
  fixcrConverter,
  pullThrough,
  writeThrough,
} from "../../lib/stages/crlf.ts";
import {
  chunkLines,
  makeRecordioStage,
  packetLines,
  recordioIo,
  recordioStage,
} from "../../lib/stages/recordio.ts";
import { fixcrioIo, fixcrioStage } from "../../lib/stages/fixcrio.ts";
import { argv0Stage } from "../../lib/stages/argv0.ts";
import { findProgram } from "../../lib/process/pathexec.ts";
import { logLineBytes } from "../../lib/core/log.ts";
import { runPumped } from "../../lib/process/spawn.ts";
import type { Io } from "../../lib/stages/stage.ts";
import { ToolError } from "../../lib/core/errors.ts";
import {
  cTool,
  haveC,
  needs,
  ours,
  oursArgv,
  type Result,
  resultOf,
  tempDir,
  theirs,
} from "../support/helpers.ts";

const CR = 13;
const LF = 10;
const bytes = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
/** Bytes as a byte string, one char per byte. */
const bstr = (b: Uint8Array) => Array.from(b, (c) => String.fromCharCode(c)).join("");

// ---- oracles: the man pages' rules, byte by byte ----

function addcrRef(d: Uint8Array): Uint8Array {
  const out: number[] = [];
  for (const b of d) {
    if (b === LF) out.push(CR);
    out.push(b);
  }
  return Uint8Array.from(out);
}

function delcrRef(d: Uint8Array): Uint8Array {
  const out: number[] = [];
  let pending = false;
  for (const b of d) {
    if (pending) {
      pending = false;
      if (b === LF) {
        out.push(LF);
        continue;
      }
      out.push(CR);
    }
    if (b === CR) pending = true;
    else out.push(b);
  }
  if (pending) out.push(CR);
  return Uint8Array.from(out);
}

function fixcrRef(d: Uint8Array): Uint8Array {
  const out: number[] = [];
  let last = -1;
  for (const b of d) {
    if (b === LF && last !== CR) out.push(CR);
    out.push(b);
    last = b;
  }
  return Uint8Array.from(out);
}

/** A small seeded PRNG so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Random bytes rich in CR and LF, or (sparse) with one in about 150 bytes. */
function crlfNoise(rand: () => number, n: number, sparse = false): Uint8Array {
  const alphabet = [CR, LF, CR, LF, 0, 97, 98, 255, 32];
  const pick = () =>
    sparse && rand() < 0.99
      ? 97 + Math.floor(rand() * 3)
      : alphabet[Math.floor(rand() * alphabet.length)];
  return Uint8Array.from({ length: n }, pick);
}

/** Runs conv over data cut at random points (empty chunks included), up to `max` bytes a chunk. */
function chunked(conv: Converter, data: Uint8Array, rand: () => number, max = 4): Uint8Array {
  const parts: Uint8Array[] = [];
  let i = 0;
  while (i < data.length) {
    const n = Math.floor(rand() * (max + 1)); // lots of boundaries, some empty chunks
    parts.push(conv.push(data.slice(i, i + n)));
    i += n;
  }
  parts.push(conv.end());
  return concat(parts);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Inputs that have bitten CRLF converters. */
const CORPUS: string[] = [
  "",
  "\n",
  "\r",
  "\r\n",
  "\r\r\n",
  "\n\r",
  "a",
  "a\n",
  "a\r",
  "a\r\n",
  "a\nb",
  "a\r\nb\r",
  "a\r\r\r\n\r\n\n\r",
  "x\ry\r\r\r\nz\r\n\r",
  "\0\r\0\n\0",
  "line one\r\nline two\nline three\r\r\nno newline",
  "\xff\xfe\r\n\x80\n",
  "HELO x\r\nMAIL FROM:<a@b>\nRCPT TO:<c@d>\r\nDATA\n.\r\nQUIT\r\n",
  "y".repeat(300) + "\n" + "z".repeat(600) + "\r\n" + "tail",
  "\r".repeat(257) + "\n".repeat(257),
];

const converters: [string, () => Converter, (d: Uint8Array) => Uint8Array][] = [
  ["addcr", addcrConverter, addcrRef],
  ["delcr", delcrConverter, delcrRef],
  ["fixcr", fixcrConverter, fixcrRef],
];

for (const [name, make, ref] of converters) {
  Deno.test(`${name}: corpus one-shot equals the oracle`, () => {
    for (const s of CORPUS) {
      const d = bytes(s);
      assert.deepEqual(convertAll(make(), d), ref(d), JSON.stringify(s));
    }
  });

  Deno.test(`${name}: random chunking equals one-shot and the oracle`, () => {
    const rand = rng(name.length * 7919);
    for (let round = 0; round < 300; round++) {
      const d = crlfNoise(rand, Math.floor(rand() * 200));
      const want = ref(d);
      assert.deepEqual(convertAll(make(), d), want);
      assert.deepEqual(
        chunked(make(), d, rand),
        want,
        `round ${round}: ${JSON.stringify(bstr(d))}`,
      );
    }
  });

  Deno.test(`${name}: sparse line ends in big chunks (the run-copy path) equal the oracle`, () => {
    const rand = rng(name.length * 31337);
    for (let round = 0; round < 100; round++) {
      const d = crlfNoise(rand, Math.floor(rand() * 5000), true);
      assert.deepEqual(convertAll(make(), d), ref(d));
      assert.deepEqual(chunked(make(), d, rand, 1500), ref(d), `round ${round}`);
    }
  });

  Deno.test(`${name}: pushInto (reused buffer) under random chunking equals the oracle`, () => {
    const rand = rng(name.length * 104729);
    const scratch = new Uint8Array(2 * 1500 + 1);
    for (let round = 0; round < 400; round++) {
      const sparse = round % 2 === 1;
      const d = crlfNoise(rand, Math.floor(rand() * (sparse ? 5000 : 200)), sparse);
      const conv = make();
      const parts: Uint8Array[] = [];
      for (let i = 0; i < d.length;) {
        const n = Math.floor(rand() * (sparse ? 1500 : 5));
        scratch.fill(7);
        parts.push(scratch.slice(0, conv.pushInto!(d.slice(i, i + n), scratch)));
        i += n;
      }
      parts.push(conv.end());
      assert.deepEqual(concat(parts), ref(d), `round ${round}: ${JSON.stringify(bstr(d))}`);
    }
  });

  Deno.test(`${name}: every split of CR|LF across two chunks`, () => {
    for (const s of CORPUS) {
      const d = bytes(s);
      for (let cut = 0; cut <= d.length; cut++) {
        const conv = make();
        const got = concat([conv.push(d.slice(0, cut)), conv.push(d.slice(cut)), conv.end()]);
        assert.deepEqual(got, ref(d), `${JSON.stringify(s)} cut at ${cut}`);
      }
    }
  });
}

Deno.test("converters: exact outputs for the classic cases", () => {
  const cases: [string, string, string, string][] = [
    // input, addcr, delcr, fixcr
    ["a\nb", "a\r\nb", "a\nb", "a\r\nb"],
    ["\r\r\n", "\r\r\r\n", "\r\n", "\r\r\n"],
    ["a\r", "a\r", "a\r", "a\r"],
    ["\r\n\r\n", "\r\r\n\r\r\n", "\n\n", "\r\n\r\n"],
    ["\0\r\0\n", "\0\r\0\r\n", "\0\r\0\n", "\0\r\0\r\n"],
  ];
  for (const [input, a, d, f] of cases) {
    assert.equal(bstr(convertAll(addcrConverter(), bytes(input))), a);
    assert.equal(bstr(convertAll(delcrConverter(), bytes(input))), d);
    assert.equal(bstr(convertAll(fixcrConverter(), bytes(input))), f);
  }
});

// ---- stream plumbing ----

/** A source that counts how often it was pulled (highWaterMark 0: only on demand). */
function countingSource(chunks: Uint8Array[]) {
  const state = { pulls: 0 };
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      state.pulls++;
      const next = chunks.shift();
      if (next) c.enqueue(next);
      else c.close();
    },
  }, { highWaterMark: 0 });
  return { stream, state };
}

function collector() {
  const got: Uint8Array[] = [];
  const state = { closed: false, aborted: false };
  const stream = new WritableStream<Uint8Array>({
    write(c) {
      got.push(c.slice());
    },
    close() {
      state.closed = true;
    },
    abort() {
      state.aborted = true;
    },
  });
  return { stream, got, state, text: () => bstr(concat(got)) };
}

async function readAll(s: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of s) parts.push(c);
  return concat(parts);
}

Deno.test("pullThrough reads its source only when asked", async () => {
  const { stream, state } = countingSource([bytes("a\n"), bytes("b\n")]);
  const wrapped = pullThrough(stream, fixcrConverter());
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(state.pulls, 0, "no read-ahead before the first read");
  const reader = wrapped.getReader();
  assert.equal(bstr((await reader.read()).value!), "a\r\n");
  assert.equal(state.pulls, 1);
  assert.equal(bstr((await reader.read()).value!), "b\r\n");
  assert.equal((await reader.read()).done, true);
});

Deno.test("pullThrough: cancel reaches the source and skips end()", async () => {
  let cancelled = false;
  let ended = false;
  const src = new ReadableStream<Uint8Array>({
    pull(c) {
      c.enqueue(bytes("x"));
    },
    cancel() {
      cancelled = true;
    },
  });
  const conv: Converter = {
    push: (c) => c,
    end: () => {
      ended = true;
      return new Uint8Array(0);
    },
  };
  const reader = pullThrough(src, conv).getReader();
  await reader.read();
  await reader.cancel();
  assert.equal(cancelled, true);
  assert.equal(ended, false);
});

Deno.test("pullThrough: cancelled during a pending read, end() is not run", async () => {
  let ended = false;
  const idle = new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) }, {
    highWaterMark: 0,
  });
  const conv: Converter = {
    push: (c) => c,
    end: () => {
      ended = true;
      return new Uint8Array(0);
    },
  };
  const reader = pullThrough(idle, conv).getReader();
  const pending = reader.read();
  await new Promise((r) => setTimeout(r, 0));
  await reader.cancel();
  assert.equal((await pending).done, true);
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(ended, false, "no [EOF] for input the program never saw end");
});

Deno.test("writeThrough: close flushes end() and closes; abort does not", async () => {
  const a = collector();
  const w = writeThrough(a.stream, delcrConverter());
  const writer = w.getWriter();
  await writer.write(bytes("x\r"));
  await writer.write(bytes("\ny\r"));
  await writer.close();
  assert.equal(a.text(), "x\ny\r");
  assert.equal(a.state.closed, true);

  const b = collector();
  const w2 = writeThrough(b.stream, delcrConverter()).getWriter();
  await w2.write(bytes("q\r"));
  await w2.abort(new Error("peer gone"));
  assert.equal(b.text(), "q");
  assert.equal(b.state.aborted, true);
});

// ---- recordio's log lines ----

Deno.test("recordio: packet lines as DJB's", () => {
  assert.deepEqual(packetLines("42", "<", bytes("a\nb\n\nc")), [
    "42 < a ",
    "42 < b ",
    "42 <  ",
    "42 < c+",
  ]);
  assert.deepEqual(packetLines("42", ">", bytes("done\n")), ["42 > done "]);
  assert.deepEqual(packetLines("7", ">", bytes("\r\0\xff")), ["7 > \r\0\xff+"]);
  // 3000 bytes without newline: 11 lines of 256 then 184, each ending "+".
  const long = chunkLines("1", "<", new Uint8Array(3000).fill(97));
  assert.deepEqual(long.map((l) => l.length - 4), [...Array(11).fill(257), 185]);
  // A newline at 99 inside a 300-byte packet: cut at 256 as DJB's reads are.
  const mixed = chunkLines("1", "<", bytes("x".repeat(99) + "\n" + "y".repeat(200)));
  assert.deepEqual(mixed, [
    "1 < " + "x".repeat(99) + " ",
    "1 < " + "y".repeat(156) + "+",
    "1 < " + "y".repeat(44) + "+",
  ]);
});

function fakeIo(input: Uint8Array[]) {
  const log: string[] = [];
  const out = collector();
  const src = countingSource(input);
  const io: Io = { input: src.stream, output: out.stream, log: (l) => log.push(l) };
  return { io, log, out };
}

Deno.test("recordioIo: logs both directions with the started pid, passes bytes unchanged", async () => {
  const { io, log, out } = fakeIo([bytes("HELO x\r\n"), bytes("QU")]);
  let innerPid = 0;
  io.started = (p) => innerPid = p;
  const w = recordioIo(io, 1);
  w.started!(4321);
  assert.equal(innerPid, 4321, "started is forwarded to the wrapped io");
  assert.equal(bstr(await readAll(w.input)), "HELO x\r\nQU");
  const writer = w.output.getWriter();
  await writer.write(bytes("250 ok\r\n"));
  await writer.close();
  assert.equal(out.text(), "250 ok\r\n");
  assert.deepEqual(log, [
    "4321 < HELO x\r ",
    "4321 < QU+",
    "4321 < [EOF]",
    "4321 > 250 ok\r ",
    "4321 > [EOF]",
  ]);
});

Deno.test("recordioIo: without a spawned program the fallback pid is used", async () => {
  const { io, log } = fakeIo([bytes("a")]);
  const w = recordioIo(io, 99);
  await readAll(w.input);
  assert.deepEqual(log, ["99 < a+", "99 < [EOF]"]);
});

Deno.test("makeRecordioStage: the given pid until a program is spawned", async () => {
  const { io, log } = fakeIo([bytes("x\n")]);
  const r = await makeRecordioStage({ pid: 77 })(["prog"], new Map(), io);
  assert.ok("next" in r && r.io);
  await readAll(r.io.input);
  assert.deepEqual(log, ["77 < x ", "77 < [EOF]"]);
});

Deno.test("fixcrioIo: both directions fixed, state kept across chunks", async () => {
  const { io, out } = fakeIo([bytes("a\r"), bytes("\nb\n")]);
  const w = fixcrioIo(io);
  assert.equal(bstr(await readAll(w.input)), "a\r\nb\r\n");
  const writer = w.output.getWriter();
  await writer.write(bytes("x\r"));
  await writer.write(bytes("\ny\n"));
  await writer.close();
  assert.equal(out.text(), "x\r\ny\r\n");
});

Deno.test("stages: outcomes and usage errors", async () => {
  const { io } = fakeIo([]);
  const env = new Map<string, string>();
  const f = await fixcrioStage(["-x", "a"], env, io);
  assert.ok("next" in f && f.io);
  assert.deepEqual(f.next, ["-x", "a"], "no option parsing, as DJB's");
  const r = await recordioStage(["cat"], env, io);
  assert.ok("next" in r && r.io);
  assert.deepEqual(r.next, ["cat"]);
  const a = await argv0Stage(["/bin/sh", "-sh", "-c", "x"], env, io);
  assert.deepEqual(a, { next: ["/bin/sh", "-c", "x"], argv0: "-sh" });
  const expect = (msg: string) => (e: unknown) =>
    e instanceof ToolError && e.exitCode === 100 && e.message === msg;
  await assert.rejects(
    fixcrioStage([], env, io),
    expect("fixcrio: usage: fixcrio program [ arg ... ]"),
  );
  await assert.rejects(
    recordioStage([], env, io),
    expect("recordio: usage: recordio program [ arg ... ]"),
  );
  await assert.rejects(
    argv0Stage(["x"], env, io),
    expect("argv0: usage: argv0 realname program [ arg ... ]"),
  );
});

Deno.test("in-process chain: recordio then fixcrio over a real program, pid is the program's", async () => {
  const { io, log, out } = fakeIo([bytes("a\nb\r\n")]);
  const wrapped = fixcrioIo(recordioIo(io, 1));
  const ended = await runPumped(["sh", "-c", 'echo "pid $$"; cat'], undefined, wrapped);
  assert.equal(ended.code, 0);
  const pid = /^pid (\d+)\r\n/.exec(out.text())?.[1];
  assert.ok(pid, out.text());
  assert.equal(out.text(), `pid ${pid}\r\na\r\nb\r\n`);
  // recordio sees the raw input (it is outside fixcrio) and the fixed output.
  const ins = log.filter((l) => l.includes(" < "));
  assert.deepEqual(ins, [`${pid} < a `, `${pid} < b\r `, `${pid} < [EOF]`]);
  const outs = log.filter((l) => l.includes(" > "));
  assert.equal(outs.at(-1), `${pid} > [EOF]`);
  assert.equal(
    outs.slice(0, -1).join("").replaceAll(`${pid} > `, ""),
    [
      `pid ${pid}\r `,
      "a\r ",
      "b\r ",
    ].join(""),
  );
});

Deno.test("logLineBytes: byte strings stay bytes, wider chars are UTF-8", () => {
  assert.deepEqual(logLineBytes("a\xff\0"), Uint8Array.of(97, 255, 0));
  assert.deepEqual(logLineBytes("a\u20ac\xff"), Uint8Array.of(97, 0xe2, 0x82, 0xac, 255));
});

Deno.test("findProgram: DJB's pathexec search order and errors", async () => {
  const t = await tempDir();
  try {
    const d1 = `${t.path}/d1`, d2 = `${t.path}/d2`;
    await Deno.mkdir(d1);
    await Deno.mkdir(d2);
    await Deno.writeTextFile(`${d1}/prog`, "#!/bin/sh\n", { mode: 0o644 }); // not executable
    await Deno.writeTextFile(`${d2}/prog`, "#!/bin/sh\n", { mode: 0o755 });
    await Deno.mkdir(`${d1}/dirprog`);
    const env = (path: string) => new Map([["PATH", path]]);
    const code = (f: () => unknown) => {
      try {
        f();
        return "none";
      } catch (e) {
        return (e as { code: string }).code;
      }
    };
    assert.equal(findProgram("prog", env(`${d1}:${d2}`)), `${d2}/prog`, "skips the unexecutable");
    assert.equal(code(() => findProgram("prog", env(d1))), "EACCES");
    assert.equal(code(() => findProgram("dirprog", env(d1))), "EACCES");
    assert.equal(code(() => findProgram("nope", env(`${d1}:${d2}`))), "ENOENT");
    assert.equal(code(() => findProgram("", env(d1))), "EACCES", "an empty name finds a directory");
    assert.equal(code(() => findProgram("x", env(`${d2}/prog:${d2}`))), "ENOTDIR");
    assert.equal(findProgram("./rel/x", env(d1)), "./rel/x", "a name with a slash is used as is");
    assert.equal(findProgram("sh", new Map()).endsWith("/sh"), true, "default PATH /bin:/usr/bin");
  } finally {
    await t.cleanup();
  }
});

// ---- the tools as processes, against DJB's C tools ----

/** Runs fn over items, at most 4 at a time (each spawns a Deno process). */
async function eachLimited<T>(items: T[], fn: (item: T, i: number) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

function same(a: Result, b: Result, what: string) {
  assert.equal(a.code, b.code, `${what}: exit code`);
  assert.deepEqual(a.stdout, b.stdout, `${what}: stdout`);
  assert.equal(bstr(a.stderr), bstr(b.stderr), `${what}: stderr`);
}

for (const tool of ["addcr", "delcr"]) {
  Deno.test(`${tool}: same bytes, stderr and exit code as C on the corpus`, async () => {
    const ref = tool === "addcr" ? addcrRef : delcrRef;
    const all = bytes(CORPUS.join("\u0001"));
    const withC = haveC(tool);
    await eachLimited([...CORPUS, bstr(all)], async (s) => {
      const input = bytes(s);
      const o = await ours(tool, [], { stdin: input });
      assert.deepEqual(o.stdout, ref(input), `${tool} ${JSON.stringify(s)}`);
      assert.equal(o.code, 0);
      assert.equal(o.err, "");
      if (withC) same(o, await theirs(tool, [], { stdin: input }), `${tool} ${JSON.stringify(s)}`);
    });
  });
}

Deno.test("addcr/delcr: arguments ignored; unreadable input exits 111 silently, as C", async () => {
  for (const tool of ["addcr", "delcr"]) {
    const o = await ours(tool, ["-x", "junk"], { stdin: "a\n" });
    assert.equal(o.code, 0);
    assert.equal(o.out, tool === "addcr" ? "a\r\n" : "a\n");
    // stdin a directory: read fails with EISDIR
    const cmd = (argv: string[]) =>
      new Deno.Command("bash", {
        args: ["-c", '"$@" < /', "x", ...argv],
        stderr: "piped",
        stdout: "piped",
      })
        .output();
    const r = await cmd(oursArgv(tool));
    assert.equal(r.code, 111);
    assert.equal(r.stderr.length, 0);
    if (haveC(tool)) {
      const c = await cmd([cTool(tool)!]);
      assert.equal(c.code, r.code);
      assert.equal(c.stderr.length, 0);
    }
  }
});

Deno.test("fixcrio: output and input directions equal C's on the corpus", async () => {
  const t = await tempDir();
  try {
    const withC = haveC("fixcrio");
    await eachLimited(CORPUS, async (s, i) => {
      const data = bytes(s);
      const file = `${t.path}/in${i}`;
      await Deno.writeFile(file, data);
      // output direction: the program prints the file, no input
      const o = await ours("fixcrio", ["cat", file]);
      assert.deepEqual(o.stdout, fixcrRef(data), `out ${JSON.stringify(s)}`);
      assert.equal(o.code, 0);
      if (withC) same(o, await theirs("fixcrio", ["cat", file]), `out ${JSON.stringify(s)}`);
      // input direction: the program stores what it got
      const sink = (who: string) => ["sh", "-c", 'cat > "$0"', `${t.path}/${who}${i}`];
      const o2 = await ours("fixcrio", sink("ours"), { stdin: data });
      assert.equal(o2.code, 0);
      assert.deepEqual(await Deno.readFile(`${t.path}/ours${i}`), fixcrRef(data));
      if (withC) {
        const c2 = await theirs("fixcrio", sink("c"), { stdin: data });
        same(o2, c2, `in ${JSON.stringify(s)}`);
        assert.deepEqual(
          await Deno.readFile(`${t.path}/ours${i}`),
          await Deno.readFile(`${t.path}/c${i}`),
        );
      }
    });
  } finally {
    await t.cleanup();
  }
});

/** Runs argv with stdin a pipe kept open until the process exits (like an idle client). */
async function runHeld(argv: string[]): Promise<Result> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const r = await child.output();
  await child.stdin.close().catch(() => {});
  return resultOf(r);
}

/** Usage and cannot-run cases, with the files they name written to DIR. */
async function usageCases(dir: string): Promise<[string, string[]][]> {
  await Deno.writeTextFile(`${dir}/noexec`, "#!/bin/sh\n", { mode: 0o644 });
  await Deno.writeTextFile(`${dir}/noshebang`, "echo ran\n", { mode: 0o755 });
  await Deno.writeTextFile(`${dir}/empty`, "", { mode: 0o755 });
  return [
    ["fixcrio", []],
    ["recordio", []],
    ["argv0", []],
    ["argv0", ["sh"]],
    ["fixcrio", ["/nonexistent/prog"]],
    ["fixcrio", ["no-such-program-xyz"]],
    ["fixcrio", ["--"]],
    ["fixcrio", [""]],
    ["fixcrio", ["/tmp"]],
    ["fixcrio", [`${dir}/noexec`]],
    ["argv0", ["no-such-program-xyz", "x"]],
    ["argv0", ["", "x"]],
    ["argv0", [`${dir}/noexec`, "x"]],
    ["argv0", [`${dir}/noshebang`, "x"]],
    ["fixcrio", [`${dir}/empty`]],
    ["recordio", ["no-such-program-xyz"]],
    ["recordio", ["/tmp"]],
  ];
}

/** A usage or cannot-run result, its pids replaced by PID. */
function usageNorm(r: Result): Result {
  return { ...r, stderr: bytes(bstr(r.stderr).replace(/^\d+ /gm, "PID ")) };
}

Deno.test("fixcrio/recordio/argv0: usage and cannot-run messages and codes", async () => {
  const t = await tempDir();
  try {
    for (const [tool, args] of await usageCases(t.path)) {
      const o = usageNorm(await runHeld([...oursArgv(tool, args)]));
      assert.ok(o.code === 100 || o.code === 111, `${tool} ${args}: ${o.code}`);
      assert.match(o.err, new RegExp(`^${tool}: (usage|fatal): `));
    }
  } finally {
    await t.cleanup();
  }
});

for (const tool of ["fixcrio", "recordio", "argv0"]) {
  const n = needs(tool);
  Deno.test(`${tool}: usage and cannot-run messages and codes equal C's${n.reasonSuffix}`, {
    ignore: n.ignore,
  }, async () => {
    const t = await tempDir();
    try {
      for (const [which, args] of await usageCases(t.path)) {
        if (which !== tool) continue;
        const o = usageNorm(await runHeld([...oursArgv(tool, args)]));
        const c = usageNorm(await runHeld([cTool(tool)!, ...args]));
        same(o, c, `${tool} ${JSON.stringify(args)}`);
      }
    } finally {
      await t.cleanup();
    }
  });
}

Deno.test("fixcrio/recordio/argv0: the program's exit status is ours", async () => {
  for (
    const [tool, args] of [
      ["fixcrio", ["sh", "-c", "exit 7"]],
      ["recordio", ["sh", "-c", "exit 7"]],
      ["argv0", ["sh", "x", "-c", "exit 7"]],
    ] as [string, string[]][]
  ) {
    const o = await ours(tool, args, { stdin: "" });
    assert.equal(o.code, 7, tool);
    if (haveC(tool)) assert.equal((await theirs(tool, args, { stdin: "" })).code, 7);
  }
});

/** recordio's log split by direction, the pid replaced by PID (the arrival order across directions is a race in C too). */
function recordLog(stderr: Uint8Array) {
  const lines = bstr(stderr).split("\n");
  assert.equal(lines.pop(), "", "log ends with a newline");
  const pids = new Set(lines.map((l) => /^(\d+) [<>] /.exec(l)?.[1]));
  assert.equal(pids.size, 1, `one pid: ${[...pids]}`);
  const strip = (l: string) => l.replace(/^\d+ /, "PID ");
  return {
    pid: [...pids][0]!,
    input: lines.filter((l) => / < /.test(l.slice(0, 12))).map(strip),
    output: lines.filter((l) => / > /.test(l.slice(0, 12))).map(strip),
  };
}

/** Our recordio on INPUT, checked against the log DJB's recordio writes for it. */
async function ourRecord(input: Uint8Array) {
  const o = await ours("recordio", ["cat"], { stdin: input });
  assert.equal(o.code, 0);
  assert.deepEqual(o.stdout, input, "bytes pass unchanged");
  const lo = recordLog(o.stderr);
  assert.deepEqual(lo.input, [...chunkLines("PID", "<", input), "PID < [EOF]"]);
  assert.equal(lo.output.at(-1), "PID > [EOF]");
  return { o, lo };
}

Deno.test("recordio: per-direction log on the corpus", async () => {
  await eachLimited(CORPUS, async (s) => {
    await ourRecord(bytes(s));
  });
});

/** DJB's C recordio, the reference. */
const C_RECORDIO = needs("recordio");

Deno.test("recordio: per-direction log equals C's on the corpus" + C_RECORDIO.reasonSuffix, {
  ignore: C_RECORDIO.ignore,
}, async () => {
  await eachLimited(CORPUS, async (s) => {
    const input = bytes(s);
    const { o, lo } = await ourRecord(input);
    const c = await theirs("recordio", ["cat"], { stdin: input });
    assert.equal(o.code, c.code);
    assert.deepEqual(o.stdout, c.stdout);
    const lc = recordLog(c.stderr);
    assert.deepEqual(lo.input, lc.input, JSON.stringify(s));
    assert.deepEqual(lo.output, lc.output, JSON.stringify(s));
  });
});

Deno.test("recordio: a program that exits while the client is idle: no input [EOF], as C", async () => {
  const check = (r: Result) => {
    assert.equal(r.code, 0);
    assert.equal(r.out, "hi\n");
    assert.deepEqual(bstr(r.stderr).replace(/^\d+ /gm, "PID "), "PID > hi \nPID > [EOF]\n");
  };
  check(await runHeld(oursArgv("recordio", ["echo", "hi"])));
  if (haveC("recordio")) check(await runHeld([cTool("recordio")!, "echo", "hi"]));
});

Deno.test("recordio: the pid logged is the program's, as C's", async () => {
  const args = ["sh", "-c", 'echo "$$"'];
  const check = (r: Result) => {
    assert.equal(r.code, 0);
    const log = recordLog(r.stderr);
    assert.equal(r.out, `${log.pid}\n`);
    assert.deepEqual(log.output, [`PID > ${log.pid} `, "PID > [EOF]"]);
  };
  check(await ours("recordio", args, { stdin: "" }));
  if (haveC("recordio")) check(await theirs("recordio", args, { stdin: "" }));
});

Deno.test("argv0: the program sees the chosen argv[0], args and environment, as with C", async () => {
  const script = 'tr "\\0" " " < /proc/$$/cmdline; echo; echo "$0 $FOO"';
  for (const zero of ["-sh", "custom name", "x"]) {
    const args = ["sh", zero, "-c", script, "a1"];
    const o = await ours("argv0", args, { env: { FOO: "bar" } });
    assert.equal(o.code, 0);
    assert.equal(o.out, `${zero} -c ${script} a1 \na1 bar\n`);
    if (haveC("argv0")) same(o, await theirs("argv0", args, { env: { FOO: "bar" } }), zero);
  }
  // stdin is handed over untouched
  const o = await ours("argv0", ["cat", "kitty"], { stdin: "all of it\n" });
  assert.equal(o.out, "all of it\n");
});

Deno.test("argv0/recordio: a supervisor's SIGTERM reaches the program, its status is ours", async () => {
  const script =
    "trap 'kill $!; echo \"got TERM\"; exit 3' TERM; echo ready; sleep 30 >/dev/null & wait";
  for (
    const [tool, args] of [
      ["argv0", ["sh", "x", "-c", script]],
      ["recordio", ["sh", "-c", script]],
    ] as [string, string[]][]
  ) {
    const argv = oursArgv(tool, args);
    const child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = child.stdout.getReader();
    let out = "";
    const dec = new TextDecoder();
    while (!out.includes("ready\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += dec.decode(value);
    }
    assert.ok(out.includes("ready\n"), `${tool}: program started`);
    child.kill("SIGTERM");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out += dec.decode(value);
    }
    const status = await child.status;
    await child.stdin.close().catch(() => {});
    assert.equal(out, "ready\ngot TERM\n", tool);
    assert.equal(status.code, 3, tool);
  }
});

Deno.test("recordio inside our tcpserver (in-process stage): raw bytes in the log, program's pid", async () => {
  const argv = oursArgv("tcpserver", [
    "-1",
    "127.0.0.1",
    "0",
    "recordio",
    "sh",
    "-c",
    'echo "$$"; cat',
  ]);
  const srv = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: { UCSPI_CHAIN: "force" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    const out = srv.stdout.getReader();
    let first = "";
    while (!first.includes("\n")) {
      const { value, done } = await out.read();
      if (done) break;
      first += new TextDecoder().decode(value);
    }
    const port = Number(first.trim());
    assert.ok(port > 0, `port line: ${first}`);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(bytes("hi\xff\xfe\r\n\0x"));
    await conn.closeWrite();
    const got: Uint8Array[] = [];
    for await (const c of conn.readable) got.push(c);
    const reply = bstr(concat(got));
    const pid = /^(\d+)\n/.exec(reply)?.[1];
    assert.ok(pid, reply);
    assert.equal(reply, `${pid}\nhi\xff\xfe\r\n\0x`);
    // the log: read stderr until the output's [EOF]
    const errReader = srv.stderr.getReader();
    let log = "";
    while (!log.includes(`${pid} > [EOF]\n`)) {
      const { value, done } = await errReader.read();
      if (done) break;
      log += bstr(value);
    }
    const lines = log.split("\n").filter((l) => l.startsWith(`${pid} <`));
    assert.deepEqual(lines, [`${pid} < hi\xff\xfe\r `, `${pid} < \0x+`, `${pid} < [EOF]`]);
    errReader.releaseLock();
    out.releaseLock();
  } finally {
    srv.kill("SIGTERM");
    await srv.status;
    await srv.stdout.cancel().catch(() => {});
    await srv.stderr.cancel().catch(() => {});
  }
});

Deno.test("stderrLog: byte strings raw, wide chars UTF-8, long lines whole, order kept", async () => {
  const mod = new URL("../../lib/core/log.ts", import.meta.url).href;
  const code = `
    import { stderrLog } from "${mod}";
    stderrLog("a\\xff\\x00b");
    stderrLog("euro \\u20ac");
    stderrLog("L".repeat(5000));
    stderrLog("after");
    await new Promise((r) => setTimeout(r, 0));
    stderrLog("next turn");
  `;
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  const want = concat([
    bytes("a\xff\x00b\n"),
    new TextEncoder().encode("euro \u20ac\n"),
    bytes("L".repeat(5000) + "\nafter\nnext turn\n"),
  ]);
  assert.deepEqual(r.stderr, want);
});
