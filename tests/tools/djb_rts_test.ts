/**
 * DJB's regression script for ucspi-tcp 0.88 (rts.tests), section by
 * section, as a differential test: our own shell script runs the commands of
 * each of its sections (written from reading the script's published form:
 * fehcom's ucspi-tcp6 rts.base, which keeps DJB's sections and titles, with
 * the IPv4 commands of 0.88; none of those files is used or fetched) with our
 * tools first on PATH (the wrappers `ucspi-tcp install DIR` writes), once on
 * tcpserver's native path and once on its pure one (UCSPI_NATIVE=1/0), and
 * once with Debian's C tools. Each section's output must be the same bytes
 * after the normalisation DJB's script itself applies (pids, ephemeral
 * ports) plus the address and host name of each run.
 *
 * Where rts.tests needs what is not here, the script uses a local stand-in:
 * the DNS cache is tests/support/dns_server.ts (each run's own loopback address has a
 * PTR and an A record, as DJB's "127.0.0.1 <-> localhost"), the RBL is a test
 * zone of that server instead of rbl.maps.vix.com, supervise is a background
 * job whose -1 line says it is ready. Sections DJB's script runs as a
 * non-root user (-u 1, -g 2) are ignored when the test runs as root.
 *
 * rblsmtpd's six blocking sections put stdout and stderr on one pipe, so
 * they pass only when the log line comes before the 220 greeting: they are
 * run 20 times more, in a separate test.
 */
import assert from "node:assert/strict";
import { cTool, DENO, MOD, ROOT } from "../support/helpers.ts";
import { USAGE } from "../../cli/tcpserver.ts";
import { startDnsServer, type Zones } from "../support/dns_server.ts";

const C_TOOLS = ["tcpserver", "tcpclient", "tcprules", "tcprulescheck", "rblsmtpd", "tcpcat"];
const haveC = C_TOOLS.every((t) => cTool(t) !== null);
const NO_C = "Debian's ucspi-tcp is not installed (apt-get install ucspi-tcp)";
const isRoot = Deno.uid() === 0;
const NEEDS_USER = "rts.tests runs these as a user other than root (-u 1 would succeed as root)";

// The script's set-up: the environment printer and the server (DJB's
// supervised tcpserver), started in the background and awaited through its -1
// line on a fifo.
const SETUP = `
cat > print <<'EOF'
#!/bin/sh
trap "" 13
echo PROTO="$PROTO"
echo TCPLOCALHOST="\${TCPLOCALHOST-unset}"
echo TCPLOCALIP="\${TCPLOCALIP-unset}"
echo TCPLOCALPORT="\${TCPLOCALPORT-unset}"
echo TCPREMOTEHOST="\${TCPREMOTEHOST-unset}"
echo TCPREMOTEIP="\${TCPREMOTEIP-unset}"
echo TCPREMOTEPORT="\${TCPREMOTEPORT-unset}"
echo TCPREMOTEINFO="\${TCPREMOTEINFO-unset}"
EOF
chmod 755 print
mkfifo ready
tcpserver -c 2 -Bbanner -vo -D -1 -Xx rules.cdb -Rt5 -hp -l Local -b 2 $ADDR 50016 ./print > ready 2> log &
server=$!
read port < ready
`;

/** One section: DJB's title and the commands that reproduce it. */
interface Section {
  title: string;
  sh: string;
  ignore?: string | false;
}

const S = (title: string, sh: string, ignore?: string | false): Section => ({ title, sh, ignore });

const RBL = (
  title: string,
  ip: string,
  env: string,
  args: string,
  input = "( echo help; echo quit )",
) =>
  S(
    title,
    `${input} | ( TCPREMOTEIP=${ip} ${env} rblsmtpd ${args} 2>&1; echo $? ) | sed 's/pid [0-9]*/pid x/'`,
  );

/** rblsmtpd's sections; the six that block a client are BLOCKING. */
export const RBLSMTPD_SECTIONS: Section[] = [
  RBL("rblsmtpd does not find 127.0.0.1 on the RBL", "127.0.0.1", "", "-r $RBL echo ok"),
  RBL("rblsmtpd finds 127.0.0.2 on the RBL", "127.0.0.2", "", "-r $RBL echo whoops"),
  RBL("rblsmtpd -b uses a permanent error code", "127.0.0.2", "", "-r $RBL -b echo whoops"),
  RBL("rblsmtpd quits after a timeout", "127.0.0.2", "", "-r $RBL -cBt1 echo whoops", "sleep 2"),
  RBL(
    "rblsmtpd prints an immediate error message with -t0",
    "127.0.0.2",
    "",
    "-r $RBL -Ct0 echo whoops",
    "sleep 2",
  ),
  RBL("rblsmtpd understands an empty $RBLSMTPD", "127.0.0.2", "RBLSMTPD=", "echo ok"),
  RBL("rblsmtpd understands a nonempty $RBLSMTPD", "127.0.0.2", "RBLSMTPD=Error", "echo whoops"),
  RBL("rblsmtpd understands a permanent $RBLSMTPD", "127.0.0.2", "RBLSMTPD=-Error", "echo whoops"),
  RBL("rblsmtpd understands -r", "127.0.0.2", "", "-r nonexistent.local echo ok"),
  RBL("rblsmtpd understands -a", "127.0.0.2", "", "-a $RBL echo ok"),
];
const BLOCKING = new Set([1, 2, 3, 4, 6, 7].map((i) => RBLSMTPD_SECTIONS[i].title));

const LONG = "thislabelistoolongbecausednshasalimitof63charactersinasinglelabel.";
const check = (env: string) => `env ${env} tcprulescheck test.cdb`;

const SECTIONS: Section[] = [
  S("tcpclient prints usage message without enough arguments", "tcpclient 0 0; echo $?"),
  S(
    "tcpclient prints error message with unknown port name",
    "tcpclient 0 nonexistentport echo wrong; echo $?",
  ),
  S("tcpclient prints error message when connection fails", "tcpclient 0 016 echo wrong; echo $?"),
  S(
    "tcpclient -q does not print error message when connection fails",
    "tcpclient -q 0 016 echo wrong; echo $?",
  ),
  S(
    "tcpclient understands empty host name as synonym for 0",
    "tcpclient '' 016 echo wrong; echo $?",
  ),
  S(
    "tcpclient understands unbracketed IP address",
    "tcpclient '127.000.000.001' 016 echo wrong; echo $?",
  ),
  S(
    "tcpclient understands bracketed IP address",
    "tcpclient '[127.000.000.001]' 016 echo wrong; echo $?",
  ),
  S(
    "tcpclient prints error message with unknown host name",
    "tcpclient nonexistent.local. 016 echo wrong; echo $?",
  ),
  S(
    "tcpclient prints error message with unresolvable host name",
    `tcpclient ${LONG} 016 echo wrong; echo $?`,
  ),
  S("tcpserver prints usage message without enough arguments", "tcpserver 0 0; echo $?"),
  S(
    "tcpserver -u 1 attempts to set uid to 1",
    "tcpserver -u 1 0 0 echo wrong; echo $?",
    isRoot && NEEDS_USER,
  ),
  S(
    "tcpserver -U reads $UID",
    "env UID=1 tcpserver -U 0 0 echo wrong; echo $?",
    isRoot && NEEDS_USER,
  ),
  S(
    "tcpserver -g 2 attempts to set gid to 2",
    "tcpserver -g 2 0 0 echo wrong; echo $?",
    isRoot && NEEDS_USER,
  ),
  S(
    "tcpserver -U reads $GID",
    "env GID=2 tcpserver -U 0 0 echo wrong; echo $?",
    isRoot && NEEDS_USER,
  ),
  S(
    "tcpserver prints error message with unknown port name",
    "tcpserver 0 nonexistentport echo wrong; echo $?",
  ),
  S(
    "tcpserver prints error message with unknown host name",
    "tcpserver nonexistent.local. 016 echo wrong; echo $?",
  ),
  S(
    "tcpserver prints error message with unresolvable host name",
    `tcpserver ${LONG} 016 echo wrong; echo $?`,
  ),
  S(
    "tcpserver prints error message with non-local host name",
    "tcpserver 1.2.3.4 016 echo wrong; echo $?",
  ),
  S("tcpserver -1 prints the local port", 'echo "$port"'),
  S(
    "tcpserver sets basic environment variables",
    "tcpclient -p 50017 -R -H -T 10 -l Local $ADDR 50016 sh -c 'cat <&6'; echo $?",
  ),
  S(
    "tcpclient recognizes -D, -i, -r, -h, -t",
    "tcpclient -Di $ADDR -p 50018 -hrt1 $ADDR 50016 sh -c 'cat <&6'; echo $?",
  ),
  S(
    "tcpclient sets basic environment variables",
    "tcpclient -p 50019 -R -H -l Local $ADDR 50016 ./print; echo $?",
  ),
  S(
    "tcpclient looks up host names properly",
    "tcpclient -p 50020 -R $ADDR 50016 ./print; echo $?",
  ),
  S("tcpclient -v works", "tcpclient -p 50021 -v -R -H -l Local $ADDR 50016 echo ok; echo $?"),
  S(
    "tcpserver prints error message with used port",
    "tcpserver -R -H -l Local $ADDR 50016 echo wrong; echo $?",
  ),
  S("tcpcat works", "tcpcat $ADDR 50016 | grep -v TCPREMOTEPORT; echo $?"),
  S("mconnect works", "mconnect $ADDR 50016 </dev/null | grep -v TCPREMOTEPORT; echo $?"),
  S("tcprules prints usage message without enough arguments", "tcprules test.cdb; echo $?"),
  S(
    "tcprules prints error message if it cannot create tmp",
    "echo 1.2.3.4:deny | tcprules test.cdb /dev/nonexistent/tmp; echo $?",
  ),
  S(
    "tcprules prints error message if it cannot move tmp to cdb",
    "echo 1.2.3.4:deny | tcprules /dev/nonexistent/cdb test.tmp; echo $?",
  ),
  S("tcprules creates a cdb file", "echo 1.2.3.4:deny | tcprules test.cdb test.tmp; echo $?"),
  S("tcprulescheck sees deny", `${check("TCPREMOTEIP=1.2.3.4")}; echo $?`),
  S(
    "tcprulescheck does not apply deny to another host",
    `${check("TCPREMOTEIP=1.2.3.5")}; echo $?`,
  ),
  S(
    "tcprules replaces a cdb file",
    `echo 'joe@127.0.0.1:allow,which=/first/
18.23.0.32:allow,which="second"
127.:allow,which=+third+
:allow,which==fourth=' | tcprules test.cdb test.tmp; echo $?`,
  ),
  S(
    "tcprulescheck finds rule with address and info",
    `${check("TCPREMOTEIP=127.0.0.1 TCPREMOTEINFO=joe")}; echo $?`,
  ),
  S(
    "tcprulescheck finds rule with address",
    `${check("TCPREMOTEIP=18.23.0.32 TCPREMOTEINFO=joe")}; echo $?`,
  ),
  S(
    "tcprulescheck finds one-dot wildcard",
    `${check("TCPREMOTEIP=127.0.0.1 TCPREMOTEINFO=bill")}; echo $?`,
  ),
  S(
    "tcprulescheck finds zero-dot wildcard",
    `${check("TCPREMOTEIP=10.119.75.39 TCPREMOTEINFO=bill")}; echo $?`,
  ),
  S(
    "tcprules handles comments, address ranges, multiple variables",
    `echo '127.0-5.:allow,which=/first/,where=/whatever/
# comment' | tcprules test.cdb test.tmp; echo $?
` + [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((i) => check(`TCPREMOTEIP=127.${i}.0.1`)).join("\n"),
  ),
  S(
    "tcprules handles host names",
    `echo '=known.edu:allow,which=/known/
=.abuser.edu:deny
:allow,which=/anybody/' | tcprules test.cdb test.tmp; echo $?
` + ["known.edu", "random.edu", "abuser.edu", "x.abuser.edu", "x.y.abuser.edu"]
        .map((h) => check(`TCPREMOTEIP=1.2.3.4 TCPREMOTEHOST=${h}`)).join("\n"),
  ),
  S(
    "tcprulescheck searches for rules in the proper order",
    `echo 'xyz@86.75.30.9:allow,which=/first/
xyz@=one.two.three:allow,which=/second/
86.75.30.9:allow,which=/third/
=one.two.three:allow,which=/fourth/
86.75.30.:allow,which=/fifth/
86.75.:allow,which=/sixth/
86.:allow,which=/seventh/
=.two.three:allow,which=/eighth/
=.three:allow,which=/ninth/
=:allow,which=/tenth/
:allow,which=/eleventh/
' | tcprules test.cdb test.tmp; echo $?
` + [
        "86.75.30.9 one.two.three xyz",
        "86.75.30.9 - xyz",
        "86.75.30.10 one.two.three xyz",
        "86.75.30.9 one.two.three abc",
        "86.75.30.9 - abc",
        "86.75.30.9 one.two.three -",
        "86.75.30.9 - -",
        "86.75.30.10 one.two.three abc",
        "86.75.30.10 one.two.three -",
        "86.75.30.10 four.two.three -",
        "86.75.30.10 - -",
        "86.75.20.10 four.two.three abc",
        "86.75.20.10 - abc",
        "86.75.20.10 four.two.three -",
        "86.75.20.10 - -",
        "86.85.20.10 four.two.three abc",
        "86.85.20.10 - abc",
        "86.85.20.10 four.two.three -",
        "86.85.20.10 - -",
        "96.85.20.10 four.two.three abc",
        "96.85.20.10 four.two.three -",
        "96.85.20.10 four.three abc",
        "96.85.20.10 four.three -",
        "96.85.20.10 four abc",
        "96.85.20.10 four -",
        "96.85.20.10 - abc",
        "96.85.20.10 - -",
      ].map((l) => {
        const [ip, host, info] = l.split(" ");
        const vars = [`TCPREMOTEIP=${ip}`];
        if (host !== "-") vars.push(`TCPREMOTEHOST=${host}`);
        if (info !== "-") vars.push(`TCPREMOTEINFO=${info}`);
        return check(vars.join(" "));
      }).join("\n"),
  ),
  S("addcr leaves an empty file alone", "echo '' | tr -d '\\012' | addcr; echo $?"),
  S("addcr leaves a partial final line alone", "echo test | tr -d '\\012' | addcr; echo $?"),
  S("addcr adds CR after the first line", "echo test | addcr; echo $?"),
  S("addcr adds CR after the second line", "( echo test; echo test2 ) | addcr; echo $?"),
  S("addcr handles nulls", "echo test | tr e '\\0' | addcr; echo $?"),
  S("delcr leaves an empty file alone", "echo '' | tr -d '\\012' | delcr; echo $?"),
  S("delcr leaves a non-CR line alone", "echo test | delcr; echo $?"),
  S("delcr removes CR if a line has it", "echo testx | tr x '\\015' | delcr; echo $?"),
  S("delcr converts CR CR LF to CR LF", "echo testxx | tr x '\\015' | delcr; echo $?"),
  S(
    "delcr does not remove CR from a partial final line",
    "echo testx | tr -d '\\012' | tr x '\\015' | delcr; echo $?",
  ),
  S("delcr handles a non-CR partial final line", "echo test | tr -d '\\012' | delcr; echo $?"),
  S("delcr handles nulls", "echo test | tr e '\\0' | delcr; echo $?"),
  S(
    "fixcrio works",
    "( echo ''; echo hi; echo therex ) | tr x '\\015' | fixcrio sh -c 'cat; echo bye' | cat",
  ),
  // DJB's script gives the packet a second (sleep 1) so that it is one
  // packet; here the writer keeps the pipe open until cat has echoed it.
  S(
    "recordio works",
    "( echo test; sleep 1 ) | recordio cat 2>&1 >/dev/null | sed 's/^[0-9]*/.../' | sed 's/$/$/'",
  ),
  S(
    "recordio handles multiple-line packets",
    "( echo 'test\ntest2'; sleep 1 ) | recordio cat 2>&1 >/dev/null | sed 's/^[0-9]*/.../' | sed 's/$/$/'",
  ),
  S(
    "recordio handles partial final lines",
    "( echo test | tr -d '\\012'; sleep 1 ) | recordio cat 2>&1 >/dev/null | sed 's/^[0-9]*/.../' | sed 's/$/$/'",
  ),
  S("argv0 works", "argv0 sh zero -c 'echo $0'; echo $?"),
  S("argv0 requires arguments", "argv0 sh; echo $?"),
  ...RBLSMTPD_SECTIONS,
  S(
    "tcpserver -1v prints proper messages",
    "kill -TERM $server; wait $server; " +
      // A client that hangs up without reading (-v ... echo ok) races the
      // program's writes, in DJB's script too: whether its echo fails with
      // EPIPE (and it exits 1), and whether the next connection comes while
      // it still runs (status: 2/2), depends on who is faster. So the
      // status lines and the failed echos do not count, and the other lines
      // are compared in sorted order.
      "grep -v -e 'echo: I/O error' -e ' status: ' < log | " +
      "sed -e 's/::.*/::x/' -e 's/ [0-9]* / x /' -e 's/:[0-9]*$/:x/' -e 's/status 256$/status 0/' | " +
      "LC_ALL=C sort",
  ),
];

const MARK = "\u0001--- ";

/** The whole script: set-up, then each section after its marker line. */
function script(sections: Section[], setup = SETUP): string {
  // DJB's script runs as `sh rts.tests 2>&1`: stderr in line with stdout.
  const parts = [`exec 2>&1\n`, setup];
  for (const s of sections) parts.push(`printf '%s\\n' '${MARK}${s.title}'\n${s.sh}\n`);
  return parts.join("");
}

/** Section title -> output. */
function split(out: string): Map<string, string> {
  const m = new Map<string, string>();
  const chunks = out.split(MARK);
  for (const c of chunks.slice(1)) {
    const nl = c.indexOf("\n");
    m.set(c.slice(0, nl), c.slice(nl + 1));
  }
  if (chunks[0] !== "") m.set("(set-up)", chunks[0]);
  return m;
}

/** A bin directory holding one flavour's tool names. */
async function binDir(flavour: "ours" | "c", dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  if (flavour === "ours") {
    const r = await new Deno.Command(DENO, {
      args: ["run", "-A", MOD, "install", dir],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!r.success) throw new Error(new TextDecoder().decode(r.stderr));
    return;
  }
  const names = new TextDecoder().decode(
    (await new Deno.Command(DENO, { args: ["run", "-A", MOD, "--list"], stdout: "piped" }).output())
      .stdout,
  ).trim().split("\n");
  for (const n of names) {
    const c = cTool(n);
    if (c) await Deno.symlink(c, `${dir}/${n}`);
  }
}

interface Flavour {
  addr: string;
  host: string;
  /** Extra environment (tcpserver's path: UCSPI_NATIVE). */
  env?: Record<string, string>;
}

/** Runs the script in a fresh directory with `flavour`'s tools first on PATH. */
async function runScript(
  flavour: "ours" | "c",
  text: string,
  f: Flavour,
  dns: string,
  base: string,
): Promise<string> {
  const dir = `${base}/${flavour}-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.mkdir(dir, { recursive: true });
  await binDir(flavour, `${dir}/bin`);
  await Deno.mkdir(`${dir}/work`);
  const env: Record<string, string> = {
    PATH: `${dir}/bin:/usr/bin:/bin`,
    DNSCACHEIP: dns,
    ADDR: f.addr,
    RBL: "rbl.rts.test",
    ...f.env,
  };
  for (const k of ["HOME", "DENO_DIR"]) {
    const v = Deno.env.get(k);
    if (v !== undefined) env[k] = v;
  }
  const r = await new Deno.Command("/bin/sh", {
    args: ["-c", text],
    cwd: `${dir}/work`,
    clearEnv: true,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).output();
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  const all = new TextDecoder().decode(r.stdout);
  return all.replaceAll(f.addr, "ADDR").replaceAll(f.host, "HOST");
}

function ownAddress(): string {
  const b = crypto.getRandomValues(new Uint8Array(2));
  return `127.16.${b[0]}.${(b[1] % 250) + 2}`;
}

/** Our tools on tcpserver's two paths, and C's. */
const PATHS = { native: { UCSPI_NATIVE: "1" }, pure: { UCSPI_NATIVE: "0" } };
type Path = keyof typeof PATHS;

/** Each run's section outputs, computed once for all the section tests. */
let runs: Promise<Record<Path | "c", Map<string, string>>> | null = null;

function results() {
  runs ??= (async () => {
    const rev = (a: string) => a.split(".").reverse().join(".") + ".in-addr.arpa";
    const flavours: Record<Path | "c", Flavour> = {
      native: { addr: ownAddress(), host: "native.rts.test", env: PATHS.native },
      pure: { addr: ownAddress(), host: "pure.rts.test", env: PATHS.pure },
      c: { addr: ownAddress(), host: "c.rts.test" },
    };
    const zones: Zones = {
      "2.0.0.127.rbl.rts.test": { TXT: ["listed: see http://rbl.rts.test/"], A: ["127.0.0.2"] },
    };
    for (const f of Object.values(flavours)) {
      zones[rev(f.addr)] = { PTR: [f.host] };
      zones[f.host] = { A: [f.addr] };
    }
    const dns = await startDnsServer(zones);
    const base = `${ROOT}/.tmp/rts`;
    try {
      const text = script(SECTIONS.filter((s) => !s.ignore));
      const [native, pure, c] = await Promise.all([
        runScript("ours", text, flavours.native, dns.address, base),
        runScript("ours", text, flavours.pure, dns.address, base),
        runScript("c", text, flavours.c, dns.address, base),
      ]);
      return { native: split(native), pure: split(pure), c: split(c) };
    } finally {
      await dns.close();
    }
  })();
  return runs;
}

for (const path of Object.keys(PATHS) as Path[]) {
  for (const s of SECTIONS) {
    Deno.test({
      name: `rts (${path}): ${s.title}`,
      ignore: !haveC || !!s.ignore,
      sanitizeResources: false,
      sanitizeOps: false,
      fn: async () => {
        const r = await results();
        const theirs = r.c.get(s.title);
        assert.ok(theirs !== undefined, `C run has no section "${s.title}":\n${[...r.c.keys()]}`);
        // Deliberate difference: our tcpserver's usage line lists our added options.
        const want = theirs.replace(/tcpserver: usage: .*\n/, `tcpserver: usage: ${USAGE}\n`);
        assert.equal(r[path].get(s.title), want);
      },
    });
  }
}
if (!haveC || SECTIONS.some((s) => s.ignore)) {
  console.log(
    !haveC ? `skip: rts sections: ${NO_C}` : `skip: rts sections -u/-g/-U: ${NEEDS_USER}`,
  );
}

Deno.test({
  name: "rts: rblsmtpd's six blocking sections, stdout and stderr on one pipe, 20 runs each",
  ignore: !haveC,
  fn: async () => {
    const sections = RBLSMTPD_SECTIONS.filter((s) => BLOCKING.has(s.title));
    assert.equal(sections.length, 6);
    const f = { addr: "127.0.0.1", host: "unused.rts.test" };
    const dns = await startDnsServer({
      "2.0.0.127.rbl.rts.test": { TXT: ["listed: see http://rbl.rts.test/"], A: ["127.0.0.2"] },
    });
    const base = `${ROOT}/.tmp/rts`;
    try {
      // Every run is a subshell of its own, 20 of them side by side (the two
      // sections with DJB's `sleep 2` would take 80 s in a row), each into
      // its own file, printed in order.
      const repeat = (s: Section) =>
        `for i in $(seq 1 20); do ( ${s.sh} ) > out.$i 2>&1 & done; wait
for i in $(seq 1 20); do printf '%s #%s\\n' '${MARK}${s.title}' $i; cat out.$i; done\n`;
      const text = `exec 2>&1\n` + sections.map(repeat).join("");
      const expect = script(sections, "");
      const [o, t] = await Promise.all([
        runScript("ours", text, f, dns.address, base),
        runScript("c", expect, f, dns.address, base),
      ]);
      const ours = split(o);
      const theirs = split(t);
      for (const s of sections) {
        const want = theirs.get(s.title);
        assert.ok(want !== undefined && want.startsWith("rblsmtpd: "), t);
        for (let i = 1; i <= 20; i++) {
          assert.equal(ours.get(`${s.title} #${i}`), want, `${s.title}, run ${i}`);
        }
      }
    } finally {
      await dns.close();
    }
  },
});
