/**
 * tcpserver's native path (lib/native/native.ts: libc sockets, the program gets the
 * socket itself) against the pure-Deno path (UCSPI_NATIVE=0): the key
 * end-to-end behaviours run on both; the native path's own promises (the
 * program's fd 0/1 is the socket, no descriptor leaks, no zombies, the
 * fallback without --allow-ffi) are checked on their own.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { DENO, MOD, needs, ours, tempDir } from "../support/helpers.ts";
import { fdCount, startSrv, talk, zombiesOf } from "../support/tcpserver_util.ts";

/** The native path: libc through FFI. */
const FFI = needs("ffi");

const MODES = [
  { name: "native", env: { UCSPI_NATIVE: "1" }, stdin: /^socket:/, n: FFI },
  { name: "pure", env: { UCSPI_NATIVE: "0" }, stdin: /^pipe:/, n: needs() },
] as const;

/** Waits until f() holds (polling /proc-like state that has no event), at most ~4 s. */
async function settle(f: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !f(); i++) await new Promise((r) => setTimeout(r, 20));
}

for (const mode of MODES) {
  Deno.test(
    `tcpserver ${mode.name}: the program's stdin/stdout, environment, -B banner${mode.n.reasonSuffix}`,
    {
      ignore: mode.n.ignore,
    },
    async () => {
      const srv = await startSrv("ours", [
        "-1",
        "-v",
        "-RH",
        "-l0",
        "-B",
        "hello\n",
        "127.0.0.1",
        "0",
        "sh",
        "-c",
        'readlink /proc/self/fd/0; readlink /proc/self/fd/1; echo "$PROTO $TCPREMOTEIP $TCPLOCALPORT $TCPCONNNUM"',
      ], { env: mode.env });
      try {
        const t = await talk(srv.port);
        const lines = t.text.split("\n");
        assert.equal(lines[0], "hello");
        assert.match(lines[1], mode.stdin);
        assert.match(lines[2], mode.stdin);
        // native: fd 0 and 1 are the same socket; pure: two pipes
        assert.equal(lines[2] === lines[1], mode.name === "native");
        assert.equal(lines[3], `TCP 127.0.0.1 ${srv.port} 1`);
        await srv.waitLine(/^tcpserver: end 1 status 0$/);
      } finally {
        await srv.stop();
      }
    },
  );

  Deno.test(`tcpserver ${mode.name}: end status for exit codes and signals${mode.n.reasonSuffix}`, {
    ignore: mode.n.ignore,
  }, async () => {
    const srv = await startSrv("ours", [
      "-1",
      "-v",
      "-RH",
      "-l0",
      "127.0.0.1",
      "0",
      "sh",
      "-c",
      "read x; case $x in k*) kill -${x#k} $$;; *) exit $x;; esac",
    ], { env: mode.env });
    try {
      const cases: Array<[string, number]> = [
        ["0", 0],
        ["3", 768],
        ["255", 65280],
        [
          "kTERM",
          15,
        ],
        ["kKILL", 9],
        ["kUSR1", 10],
      ];
      for (const [send, status] of cases) {
        const before = srv.lines.length;
        const t = await talk(srv.port, { send: send + "\n" });
        assert.equal(t.text, "");
        const end = await srv.waitLine(new RegExp(`^tcpserver: end \\d+ status ${status}$`));
        assert.ok(srv.lines.indexOf(end) >= before, `${send}: ${end}`);
      }
    } finally {
      await srv.stop();
    }
  });

  Deno.test(
    `tcpserver ${mode.name}: half-close, then all output before FIN${mode.n.reasonSuffix}`,
    {
      ignore: mode.n.ignore,
    },
    async () => {
      // The program reads to EOF (the client's FIN), then writes 1 MB and exits.
      const srv = await startSrv("ours", [
        "-1",
        "-RHq",
        "-l0",
        "127.0.0.1",
        "0",
        "sh",
        "-c",
        "wc -c; head -c 1048576 /dev/zero",
      ], { env: mode.env });
      try {
        const send = new Uint8Array(300000).fill(65);
        const t = await talk(srv.port, { send });
        const text = new TextDecoder().decode(t.data.subarray(0, 7));
        assert.equal(text, "300000\n");
        assert.equal(t.data.length, 7 + 1048576);
      } finally {
        await srv.stop();
      }
    },
  );

  Deno.test(
    `tcpserver ${mode.name}: in-process stage before the program (handed the socket when untouched)${mode.n.reasonSuffix}`,
    {
      ignore: mode.n.ignore,
    },
    async () => {
      const srv = await startSrv("ours", [
        "-1",
        "-v",
        "-RH",
        "-l0",
        "127.0.0.1",
        "0",
        "rblsmtpd",
        "sh",
        "-c",
        "readlink /proc/self/fd/0; cat",
      ], { env: { ...mode.env, UCSPI_CHAIN: "force", RBLSMTPD: "" } });
      try {
        const t = await talk(srv.port, { send: "through\n" });
        const [fd0, rest] = t.text.split("\n");
        assert.match(fd0, mode.stdin);
        assert.equal(rest, "through");
        await srv.waitLine(/^tcpserver: end 1 status 0$/);
      } finally {
        await srv.stop();
      }
    },
  );
}

Deno.test(
  "tcpserver native: many connections (spawned, denied, in-process, pumped) leak no descriptors, leave no zombies" +
    FFI.reasonSuffix,
  { ignore: FFI.ignore },
  async () => {
    const dir = await tempDir();
    try {
      const cdb = `${dir.path}/rules.cdb`;
      // 127.0.0.30: denied; .31: rblsmtpd answers in-process; .32: fixcrio
      // in-process, then cat pumped; others: `echo x` on the socket itself.
      const r = await ours("tcprules", [cdb, `${dir.path}/tmp`], {
        stdin: '127.0.0.30:deny\n127.0.0.31:allow,RBLSMTPD="-go away"\n' +
          '127.0.0.32:allow,MODE="fix"\n:allow,RBLSMTPD=""\n',
      });
      assert.equal(r.code, 0, r.err);
      const srv = await startSrv("ours", [
        "-1",
        "-RHq",
        "-l0",
        "-c",
        "50",
        "-x",
        cdb,
        "127.0.0.1",
        "0",
        "rblsmtpd",
        "sh",
        "-c",
        'if [ "$MODE" = fix ]; then exec fixcrio cat; else echo x; fi',
      ], { env: { UCSPI_NATIVE: "1", UCSPI_CHAIN: "force" } });
      try {
        assert.equal((await talk(srv.port)).text, "x\n");
        const before = fdCount(srv.pid);
        const total = 800;
        let next = 0;
        const worker = async () => {
          while (next < total) {
            const i = next++;
            const kind = i % 4;
            const t = await talk(srv.port, {
              localAddress: `127.0.0.${[33, 30, 31, 32][kind]}`,
              send: kind === 2 ? "QUIT\r\n" : kind === 3 ? "a\nb\n" : undefined,
            });
            if (kind === 0) assert.equal(t.text, "x\n");
            else if (kind === 1) assert.equal(t.text, "");
            else if (kind === 2) {
              assert.match(t.text, /^220 rblsmtpd\.local\r\n221 rblsmtpd\.local\r\n$/);
            } else assert.equal(t.text, "a\r\nb\r\n");
          }
        };
        await Promise.all(Array.from({ length: 12 }, worker));
        await settle(() => fdCount(srv.pid) <= before && zombiesOf(srv.pid) === 0);
        const after = fdCount(srv.pid);
        assert.ok(after <= before, `fds before ${before}, after ${after}`);
        assert.equal(zombiesOf(srv.pid), 0);
      } finally {
        await srv.stop();
      }
    } finally {
      await dir.cleanup();
    }
  },
);

Deno.test(
  "tcpserver native: SIGTERM while programs hold connections drains, then exits 0" +
    FFI.reasonSuffix,
  { ignore: FFI.ignore },
  async () => {
    const srv = await startSrv("ours", ["-1", "-RHq", "-l0", "127.0.0.1", "0", "cat"], {
      env: { UCSPI_NATIVE: "1" },
    });
    const sock = net.connect({ host: "127.0.0.1", port: srv.port });
    const got: Uint8Array[] = [];
    const closed = new Promise<void>((r) => sock.on("close", () => r()));
    sock.on("data", (d: Uint8Array) => got.push(d));
    await new Promise((r) => sock.once("connect", r));
    sock.write("one\n");
    await new Promise((r) => sock.once("data", r));
    const code = srv.stop();
    sock.end("two\n");
    await closed;
    assert.equal(await code, 0);
    assert.equal(
      new TextDecoder().decode(new Uint8Array(got.flatMap((c) => [...c]))),
      "one\ntwo\n",
    );
  },
);

Deno.test("tcpserver: without --allow-ffi the pure-Deno path serves silently", async () => {
  const child = new Deno.Command("bash", {
    args: [
      "-c",
      `exec -a tcpserver "${DENO}" run --allow-net --allow-read --allow-write --allow-run ` +
      `--allow-env --allow-sys "${MOD}" "$@"`,
      "tcpserver",
      "-1",
      "-RHv",
      "-l0",
      "127.0.0.1",
      "0",
      "readlink",
      "/proc/self/fd/0",
    ],
    env: { UCSPI_NATIVE: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    const reader = child.stdout.getReader();
    let out = "";
    while (!out.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
    }
    reader.releaseLock();
    const t = await talk(Number(out.trim()));
    assert.match(t.text, /^pipe:/);
  } finally {
    child.kill("SIGTERM");
    const st = await child.output();
    assert.equal(st.code, 0);
    const err = new TextDecoder().decode(st.stderr);
    assert.doesNotMatch(err, /ffi|permission/i, err);
    assert.match(err, /tcpserver: end 1 status 0/);
  }
});

Deno.test(
  "tcpserver native: 100 idle in-process conversations do not starve new connections" +
    FFI.reasonSuffix,
  { ignore: FFI.ignore },
  async () => {
    const dir = await tempDir();
    try {
      const cdb = `${dir.path}/rules.cdb`;
      const r = await ours("tcprules", [cdb, `${dir.path}/tmp`], {
        stdin: '127.0.0.31:allow,RBLSMTPD="-go away"\n:allow,RBLSMTPD=""\n',
      });
      assert.equal(r.code, 0, r.err);
      const srv = await startSrv("ours", [
        "-1",
        "-RHq",
        "-l0",
        "-c",
        "300",
        "-x",
        cdb,
        "127.0.0.1",
        "0",
        "rblsmtpd",
        "echo",
        "x",
      ], { env: { UCSPI_NATIVE: "1", UCSPI_CHAIN: "force" } });
      const held: net.Socket[] = [];
      try {
        // rblsmtpd answers these in-process and waits for their commands
        for (let i = 0; i < 100; i++) {
          const s = net.connect({ host: "127.0.0.1", port: srv.port, localAddress: "127.0.0.31" });
          s.on("error", () => {});
          await new Promise((res) => s.once("data", res)); // the 220 greeting
          held.push(s);
        }
        for (let i = 0; i < 20; i++) {
          assert.equal((await talk(srv.port, { localAddress: "127.0.0.33" })).text, "x\n");
        }
        // and the held ones still talk
        const last = held[held.length - 1];
        const reply = new Promise<string>((res) => last.once("data", (d) => res(String(d))));
        last.write("HELO x\r\n");
        assert.match(await reply, /^250 rblsmtpd\.local/);
      } finally {
        for (const s of held) s.destroy();
        await srv.stop();
      }
    } finally {
      await dir.cleanup();
    }
  },
);

/** Root, to drop to other ids, and the native path. */
const ROOT_FFI = needs("root", "ffi");

Deno.test(
  "tcpserver native: -u/-g programs (server dropped its ids) also get the socket itself" +
    ROOT_FFI.reasonSuffix,
  {
    ignore: ROOT_FFI.ignore,
  },
  async () => {
    const srv = await startSrv("ours", [
      "-1",
      "-v",
      "-RH",
      "-l0",
      "-u",
      "65534",
      "-g",
      "65534",
      "127.0.0.1",
      "0",
      "sh",
      "-c",
      "id -u; id -g; readlink /proc/self/fd/0; exit 7",
    ], { env: { UCSPI_NATIVE: "1" } });
    try {
      const [uid, gid, fd0] = (await talk(srv.port)).text.split("\n");
      assert.equal(uid, "65534");
      assert.equal(gid, "65534");
      assert.match(fd0, /^socket:/);
      await srv.waitLine(/^tcpserver: end 1 status 1792$/);
    } finally {
      await srv.stop();
    }
  },
);

/** The listen backlog of the socket listening on port (ss's Send-Q column). */
async function listenBacklog(port: number): Promise<number> {
  const out = await new Deno.Command("ss", { args: ["-ltnH", `sport = :${port}`] }).output();
  const fields = new TextDecoder().decode(out.stdout).trim().split(/\s+/);
  return Number(fields[2]);
}

for (
  const [which, n, cases] of [
    ["ours", needs("ss"), [[["-b", "7"], 7], [[], 511]]],
    ["c", needs("ss", "tcpserver"), [[["-b", "7"], 7], [[], 20]]],
  ] as const
) {
  Deno.test(
    `tcpserver (${which}) native: -b sets the listen backlog as C's (default: 511, C's is 20)${n.reasonSuffix}`,
    {
      ignore: n.ignore,
    },
    async () => {
      for (const [opts, want] of cases) {
        const srv = await startSrv(which, ["-1", ...opts, "-RHl0", "127.0.0.1", "0", "true"]);
        try {
          assert.equal(await listenBacklog(srv.port), want, `${which} ${opts.join(" ")}`);
        } finally {
          await srv.stop();
        }
      }
    },
  );
}
