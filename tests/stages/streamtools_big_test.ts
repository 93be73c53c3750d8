/**
 * addcr and delcr on a 200 MB stream, fixcrio (running cat) on the same
 * stream: output identical (sha256 and size) to
 * DJB's C tools (or, without them, to the converters run in-process), and
 * the process's peak RSS stays bounded: the tools stream, they never hold
 * the input.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  addcrConverter,
  type Converter,
  delcrConverter,
  fixcrConverter,
} from "../../lib/stages/crlf.ts";
import { cTool, haveC, oursArgv } from "../support/helpers.ts";

const SIZE = 200 * 1024 * 1024;
const PIECE = 1 << 20;
/** Peak RSS allowed: far below the 200 MB the input would take if held. */
const RSS_LIMIT_KB = 160 * 1024;
/** fixcrio also runs node:child_process pumps: a higher floor, still below the input. */
const RSS_LIMIT_PUMPED_KB = 190 * 1024;

/** A block of text-ish bytes with CR, LF, CR CR LF and binary; its odd length moves every boundary. */
function block(): Uint8Array {
  const parts = [
    "SMTP line\r\n",
    "unix line\n",
    "lone\rcr",
    "\r\r\n",
    "\0\xff",
    "x".repeat(97),
    "\n",
  ];
  let s = "";
  let seed = 12345;
  while (s.length < 65521) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    s += parts[seed % parts.length];
  }
  return Uint8Array.from(s.slice(0, 65521), (c) => c.charCodeAt(0));
}

/** The stream's n-th megabyte piece: the block repeated, read from an offset. */
function pieces(): Uint8Array[] {
  const b = block();
  const twice = new Uint8Array(b.length + PIECE);
  for (let i = 0; i < twice.length; i++) twice[i] = b[i % b.length];
  const out: Uint8Array[] = [];
  for (let off = 0; off < SIZE; off += PIECE) {
    const start = off % b.length;
    out.push(twice.subarray(start, start + Math.min(PIECE, SIZE - off)));
  }
  return out;
}

interface Run {
  hash: string;
  size: number;
  code: number;
  peakKb: number;
}

function vmHwmKb(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Streams the input through argv; hashes the output; samples peak RSS while it runs. */
async function run(argv: string[], input: Uint8Array[]): Promise<Run> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let peakKb = 0;
  const sampler = setInterval(() => peakKb = Math.max(peakKb, vmHwmKb(child.pid)), 25);
  const feed = (async () => {
    const w = child.stdin.getWriter();
    for (const p of input) await w.write(p);
    await w.close();
  })();
  const hash = createHash("sha256");
  let size = 0;
  for await (const c of child.stdout) {
    hash.update(c);
    size += c.length;
    peakKb = Math.max(peakKb, vmHwmKb(child.pid));
  }
  await feed;
  const { code } = await child.status;
  clearInterval(sampler);
  return { hash: hash.digest("hex"), size, code, peakKb };
}

function inProcess(conv: Converter, input: Uint8Array[]): { hash: string; size: number } {
  const hash = createHash("sha256");
  let size = 0;
  for (const p of [...input.map((x) => conv.push(x)), conv.end()]) {
    hash.update(p);
    size += p.length;
  }
  return { hash: hash.digest("hex"), size };
}

for (const [tool, make] of [["addcr", addcrConverter], ["delcr", delcrConverter]] as const) {
  Deno.test(`${tool}: 200 MB stream equals C's output, RSS bounded`, async () => {
    const input = pieces();
    const o = await run(oursArgv(tool), input);
    assert.equal(o.code, 0);
    console.log(`${tool}: ours peak RSS ${Math.round(o.peakKb / 1024)} MB for ${SIZE >> 20} MB`);
    assert.ok(o.peakKb > 0, "RSS was sampled");
    assert.ok(o.peakKb < RSS_LIMIT_KB, `peak RSS ${o.peakKb} kB`);
    const want = haveC(tool) ? await run([cTool(tool)!], input) : inProcess(make(), input);
    assert.equal(o.size, want.size);
    assert.equal(o.hash, want.hash);
    assert.notEqual(o.size, SIZE, "the stream had line ends to convert");
  });
}

Deno.test("fixcrio cat: 200 MB stream equals C's output, RSS bounded", async () => {
  const input = pieces();
  const o = await run(oursArgv("fixcrio", ["cat"]), input);
  assert.equal(o.code, 0);
  console.log(`fixcrio: ours peak RSS ${Math.round(o.peakKb / 1024)} MB for ${SIZE >> 20} MB`);
  assert.ok(o.peakKb > 0, "RSS was sampled");
  assert.ok(o.peakKb < RSS_LIMIT_PUMPED_KB, `peak RSS ${o.peakKb} kB`);
  const want = haveC("fixcrio")
    ? await run([cTool("fixcrio")!, "cat"], input)
    : inProcess(fixcrConverter(), input);
  assert.equal(o.size, want.size);
  assert.equal(o.hash, want.hash);
  assert.notEqual(o.size, SIZE, "the stream had line ends to convert");
});
