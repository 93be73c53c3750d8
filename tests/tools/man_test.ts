/**
 * The manual pages (man/*.1, man/*.5): one per tool, rendering without a
 * warning, every option the tool accepts or names in its usage line shown in
 * the SYNOPSIS, the embedded copy (lib/install/man_pages.ts) up to date, and
 * `ucspi-tcp install --man DIR` writing them where `man` finds them.
 */
import assert from "node:assert/strict";
import { DENO, MOD, ours, ROOT, tempDir } from "../support/helpers.ts";
import { toolNames } from "../../cli/tools.ts";
import { MAN_MARK } from "../../lib/install/install.ts";
import { MAN_PAGES } from "../../lib/install/man_pages.ts";
import { OUTPUT, readPages, render } from "../../scripts/gen_man.ts";
import { getopt } from "../../lib/core/getopt.ts";
import { CLIENT_OPTSPEC, CLIENT_USAGE } from "../../lib/client/options.ts";
import { parseArgs as tcpserverArgs } from "../../cli/tcpserver.ts";
import { parseArgs as sslserverArgs } from "../../cli/sslserver.ts";
import { parseRblsmtpdArgs } from "../../lib/stages/rblsmtpd.ts";

const MAN = `${ROOT}man`;
/** Pages beside the tools': the multi-call binary and the environment. */
const EXTRA = ["man1/ucspi-tcp.1", "man5/tcp-environ.5"];
const expectedPages = () => [...toolNames().map((t) => `man1/${t}.1`), ...EXTRA].sort();

function which(cmd: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${cmd}`).isFile) return true;
    } catch { /* not here */ }
  }
  return false;
}
const HAVE_GROFF = which("groff");
const HAVE_MANDOC = which("mandoc");
const HAVE_MAN = which("man");

async function run(cmd: string, args: string[], env: Record<string, string> = {}) {
  const r = await new Deno.Command(cmd, { args, env, stdin: "null" }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

/** The text of section `name` of a page, with the roff markup removed. */
function section(page: string, name: string): string {
  const lines = page.split("\n");
  const from = lines.findIndex((l) => l === `.SH ${name}` || l === `.SH "${name}"`);
  assert.ok(from >= 0, `no .SH ${name}`);
  const out: string[] = [];
  for (const l of lines.slice(from + 1)) {
    if (l.startsWith(".SH")) break;
    out.push(
      l.replace(/^\.[A-Za-z]+ ?/, "").replaceAll(/\\f[BIRP]/g, "").replaceAll("\\-", "-")
        .replaceAll("\\&", "").replaceAll('"', ""),
    );
  }
  return out.join(" ");
}

/** Every letter of every `-xyz` word of a synopsis or usage line. */
function optionLetters(text: string): Set<string> {
  const letters = new Set<string>();
  for (const m of text.matchAll(/(?:^|[\s[])-([A-Za-z0-9]+)/g)) {
    for (const c of m[1]) letters.add(c);
  }
  return letters;
}

const page = (tool: string) => MAN_PAGES[`man1/${tool}.1`];

Deno.test("man: every tool has a page, plus ucspi-tcp(1) and tcp-environ(5)", () => {
  assert.deepEqual(readPages().map(([p]) => p), expectedPages());
  for (const [path, text] of readPages()) {
    const name = path.slice(5, path.lastIndexOf("."));
    assert.ok(text.startsWith(`${MAN_MARK}\n`), `${path} starts with the mark install relies on`);
    assert.match(text, new RegExp(`^\\.TH ${name.toUpperCase()} ${path[3]} `, "m"), path);
    assert.match(section(text, "NAME"), new RegExp(`^${name} - \\S`), `${path}: NAME`);
    for (const s of ["NAME", "DESCRIPTION", "SEE ALSO"]) section(text, s);
    if (path.startsWith("man1/")) section(text, "SYNOPSIS");
  }
});

Deno.test(`man: ${OUTPUT} is what scripts/gen_man.ts makes from man/`, () => {
  assert.equal(Deno.readTextFileSync(`${ROOT}${OUTPUT}`), render(readPages(MAN)));
});

Deno.test({
  name: "man: groff -man -ww renders every page without a warning",
  ignore: !HAVE_GROFF,
}, async () => {
  for (const [path] of readPages()) {
    const file = `${MAN}/${path.slice(5)}`;
    const r = await run("groff", ["-man", "-Tutf8", "-ww", "-z", file]);
    assert.equal(r.err, "", `${path}: groff warnings`);
    assert.equal(r.code, 0, path);
  }
});

Deno.test({
  name: "man: mandoc -Tlint -Wstyle finds nothing in any page",
  ignore: !HAVE_MANDOC,
}, async () => {
  for (const [path] of readPages()) {
    const r = await run("mandoc", ["-Tlint", "-Wstyle", `${MAN}/${path.slice(5)}`]);
    assert.equal(r.out + r.err, "", `${path}: mandoc lint`);
  }
});

/**
 * Tools that print a usage line (with no arguments, or a bad option), and the
 * letters of it that are no option (shown by the tool refusing them).
 */
const USAGE_TOOLS: Record<string, Record<string, string>> = {
  tcpserver: {},
  sslserver: {},
  tcpclient: {},
  sslclient: {},
  rblsmtpd: { R: "DJB's usage line names -R; neither rblsmtpd accepts it" },
  tcprules: {},
  tcprulescheck: {},
  fixcrio: {},
  recordio: {},
  argv0: {},
  sslprint: {},
  "smtpd-starttls-proxy": {},
  "pop3d-starttls-proxy": {},
  "imapd-starttls-proxy": {},
  ucspitlsd: {},
};
/** Tools without options or usage line: the stream filters and the client scripts. */
const PLAIN_TOOLS = [
  "addcr",
  "delcr",
  "date@",
  "finger@",
  "http@",
  "https@",
  "mconnect",
  "mconnect-io",
  "tcpcat",
  "who@",
];

Deno.test("man: every tool is classified for the usage-line check", () => {
  assert.deepEqual([...Object.keys(USAGE_TOOLS), ...PLAIN_TOOLS].sort(), toolNames());
});

for (const [tool, notOptions] of Object.entries(USAGE_TOOLS)) {
  Deno.test(`man: the letters of ${tool}'s usage line are in its SYNOPSIS`, async () => {
    const usage: string[] = [];
    for (const args of [[], ["-%"]]) {
      const r = await ours(tool, args);
      for (const line of r.err.split("\n")) {
        const at = line.indexOf(`${tool}: usage: `);
        if (at === 0) usage.push(line.slice(`${tool}: usage: `.length));
      }
    }
    assert.ok(usage.length > 0, `${tool} printed no usage line`);
    const synopsis = optionLetters(section(page(tool), "SYNOPSIS"));
    for (const line of usage) {
      assert.ok(line.startsWith(`${tool} `) || line === tool, line);
      for (const letter of optionLetters(line)) {
        if (letter in notOptions) {
          const r = await ours(tool, [`-${letter}`, "x"]);
          assert.match(r.err, new RegExp(`illegal option -- ${letter}`), notOptions[letter]);
          assert.ok(!synopsis.has(letter), `-${letter} is no option of ${tool}`);
        } else {
          assert.ok(synopsis.has(letter), `${tool}: -${letter} (usage line) not in the SYNOPSIS`);
        }
      }
    }
  });
}

Deno.test("man: the SYNOPSIS of each tool without options shows none", () => {
  for (const tool of PLAIN_TOOLS) {
    assert.deepEqual([...optionLetters(section(page(tool), "SYNOPSIS"))], [], tool);
  }
});

/** The option letters a parser accepts: those it does not call illegal. */
function accepted(parse: (args: string[]) => unknown): Set<string> {
  const letters = new Set<string>();
  const all = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  for (const letter of all) {
    try {
      parse([`-${letter}`, "1", "0", "0", "true"]);
    } catch (e) {
      if (/illegal option/.test((e as Error).message)) continue;
    }
    letters.add(letter);
  }
  return letters;
}

/** sslclient's getopt spec (not exported: read from its source). */
function sslclientSpec(): string {
  const src = Deno.readTextFileSync(`${ROOT}cli/sslclient.ts`);
  const m = /const SPEC = "([^"]+)"/.exec(src);
  assert.ok(m, 'cli/sslclient.ts: no `const SPEC = "..."` to read the option letters from');
  return m[1];
}

Deno.test("man: every option letter a tool accepts is in its SYNOPSIS", () => {
  const env = new Map<string, string>();
  const parsers: Record<string, (args: string[]) => unknown> = {
    tcpserver: (a) => tcpserverArgs(a, env),
    sslserver: (a) => sslserverArgs(a, env),
    rblsmtpd: (a) => parseRblsmtpdArgs(a),
    tcpclient: (a) => getopt("tcpclient", a, CLIENT_OPTSPEC, CLIENT_USAGE),
    sslclient: (a) => getopt("sslclient", a, sslclientSpec(), ""),
  };
  for (const [tool, parse] of Object.entries(parsers)) {
    const synopsis = optionLetters(section(page(tool), "SYNOPSIS"));
    const letters = accepted(parse);
    assert.ok(letters.size > 5, `${tool}: the probe found too few options`);
    for (const letter of letters) {
      assert.ok(synopsis.has(letter), `${tool} accepts -${letter}; its SYNOPSIS does not show it`);
    }
    for (const letter of synopsis) {
      assert.ok(letters.has(letter), `${tool}'s SYNOPSIS shows -${letter}, which it refuses`);
    }
  }
});

async function mode(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o777;
}

Deno.test("install --man DIR writes every page world-readable (also under umask 077)", async () => {
  const dir = await tempDir();
  try {
    // bash sets the umask, then runs ucspi-tcp exactly as a link to it would.
    const r = await run("bash", [
      "-c",
      `umask 077; exec -a ucspi-tcp "${DENO}" run -A "${MOD}" install --man "$0"`,
      dir.path,
    ]);
    assert.equal(r.code, 0, r.err);
    const written: string[] = [];
    for (const s of ["man1", "man5"]) {
      assert.equal(await mode(`${dir.path}/${s}`), 0o755, s);
      for await (const e of Deno.readDir(`${dir.path}/${s}`)) written.push(`${s}/${e.name}`);
    }
    assert.deepEqual(written.sort(), expectedPages());
    for (const [path, text] of readPages()) {
      assert.equal(await Deno.readTextFile(`${dir.path}/${path}`), text, path);
      assert.equal(await mode(`${dir.path}/${path}`), 0o644, path);
    }
    assert.deepEqual(r.out.trim().split("\n"), expectedPages().map((p) => `${dir.path}/${p}`));
  } finally {
    await dir.cleanup();
  }
});

Deno.test({
  name: "install --man: man -l DIR/man1/tcpserver.1 and man -M DIR find and show the pages",
  ignore: !HAVE_MAN,
}, async () => {
  const dir = await tempDir();
  try {
    const r = await ours("ucspi-tcp", ["install", "--man", dir.path]);
    assert.equal(r.code, 0, r.err);
    const env = { MANPAGER: "cat", PAGER: "cat", MANWIDTH: "80", LANG: "C" };
    const l = await run("man", ["-l", `${dir.path}/man1/tcpserver.1`], env);
    assert.equal(l.code, 0, l.err);
    assert.match(l.out, /tcpserver - accept TCP connections and run a program for each one/);
    assert.match(l.out, /PROXY_TRUSTED/);
    const m = await run("man", ["-M", dir.path, "5", "tcp-environ"], env);
    assert.equal(m.code, 0, m.err);
    assert.match(m.out, /TCPREMOTEIP/);
  } finally {
    await dir.cleanup();
  }
});

Deno.test("install --man needs no file of the source tree at run time (as in a compiled binary)", async () => {
  const dir = await tempDir();
  try {
    // Reading is allowed only in DIR: the pages must come from the module.
    const r = await run("bash", [
      "-c",
      `exec -a ucspi-tcp "${DENO}" run --allow-read="$0" --allow-write="$0" "${MOD}" install --man "$0"`,
      dir.path,
    ]);
    assert.equal(r.code, 0, r.err);
    assert.equal(
      await Deno.readTextFile(`${dir.path}/man1/tcpserver.1`),
      await Deno.readTextFile(`${MAN}/tcpserver.1`),
    );
  } finally {
    await dir.cleanup();
  }
});

Deno.test("install --man replaces its own pages, refuses a foreign one unless -f", async () => {
  const dir = await tempDir();
  try {
    assert.equal((await ours("ucspi-tcp", ["install", "--man", dir.path])).code, 0);
    const again = await ours("ucspi-tcp", ["install", "--man", dir.path]);
    assert.equal(again.code, 0, "our own pages are replaced: " + again.err);
    const foreign = `${dir.path}/man1/tcpserver.1`;
    await Deno.writeTextFile(foreign, ".TH tcpserver 1\n.SH NAME\ntcpserver \\- DJB's\n");
    const r = await ours("ucspi-tcp", ["install", "--man", dir.path]);
    assert.equal(r.code, 111);
    assert.equal(
      r.err,
      `ucspi-tcp: fatal: unable to create ${foreign}: file already exists and is not ours (use -f to replace it)\n`,
    );
    assert.match(await Deno.readTextFile(foreign), /DJB's/);
    const f = await ours("ucspi-tcp", ["install", "-f", "--man", dir.path]);
    assert.equal(f.code, 0, f.err);
    assert.equal(await Deno.readTextFile(foreign), MAN_PAGES["man1/tcpserver.1"]);
  } finally {
    await dir.cleanup();
  }
});

Deno.test("install --man: a missing DIR is named; a bad command line is a usage error", async () => {
  const dir = await tempDir();
  try {
    const missing = `${dir.path}/nonexistent`;
    const r = await ours("ucspi-tcp", ["install", "--man", missing]);
    assert.equal(r.code, 111);
    assert.equal(
      r.err,
      `ucspi-tcp: fatal: unable to install into ${missing}: file does not exist\n`,
    );
    const u = await ours("ucspi-tcp", ["install", "--man"]);
    assert.equal(u.code, 100);
    assert.match(u.err, /usage: ucspi-tcp install \[-f\] \[--man\] DIR/);
  } finally {
    await dir.cleanup();
  }
});

/** Whether deno compile can run here without downloading its runtime. */
function canCompile(): boolean {
  if (Deno.env.get("DENORT_BIN")) return true;
  const home = Deno.env.get("HOME") ?? "";
  const denoDir = Deno.env.get("DENO_DIR") ?? `${home}/.cache/deno`;
  try {
    for (const e of Deno.readDirSync(`${denoDir}/dl/release/v${Deno.version.deno}`)) {
      if (e.name.startsWith("denort-")) return true;
    }
  } catch { /* never downloaded */ }
  return false;
}

Deno.test({
  name: "install --man from a deno compile binary writes the pages",
  ignore: !canCompile(),
}, async () => {
  const dir = await tempDir();
  try {
    const exe = `${dir.path}/ucspi-tcp`;
    const c = await run(DENO, ["compile", "-A", "--output", exe, MOD]);
    assert.equal(c.code, 0, c.err);
    await Deno.mkdir(`${dir.path}/share`);
    const r = await run(exe, ["install", "--man", `${dir.path}/share`]);
    assert.equal(r.code, 0, r.err);
    assert.equal(
      await Deno.readTextFile(`${dir.path}/share/man1/tcpserver.1`),
      MAN_PAGES["man1/tcpserver.1"],
    );
  } finally {
    await dir.cleanup();
  }
});

Deno.test("install --man never writes through a temporary name planted as a symlink", async () => {
  const dir = await tempDir();
  try {
    await Deno.mkdir(`${dir.path}/man1`);
    const target = `${dir.path}/target`;
    await Deno.writeTextFile(target, "untouched\n");
    await Deno.symlink(target, `${dir.path}/man1/.tcpserver.1.tmp`);
    const r = await ours("ucspi-tcp", ["install", "--man", dir.path]);
    assert.equal(r.code, 0, r.err);
    assert.equal(await Deno.readTextFile(target), "untouched\n");
    assert.equal(
      await Deno.readTextFile(`${dir.path}/man1/tcpserver.1`),
      MAN_PAGES["man1/tcpserver.1"],
    );
    assert.ok(!(await Deno.lstat(`${dir.path}/man1/tcpserver.1`)).isSymlink);
  } finally {
    await dir.cleanup();
  }
});
