/**
 * sslserver's log lines and messages as ucspi-ssl's sslserver prints them
 * for the same events (issue 11 item 8; read from ucspi-ssl's sslserver.c
 * and ssl_io.c): bind before the credentials, -w ends the program's input
 * silently, the ccafile line names $CCAFILE.
 */
import assert from "node:assert/strict";
import tls from "node:tls";
import { ours } from "../support/helpers.ts";
import { makePki, type Pki, startTool } from "../support/ssl_fixtures.ts";

let pkiPromise: Promise<Pki> | undefined;
function pki(): Promise<Pki> {
  return pkiPromise ??= makePki();
}

Deno.test("sslserver log: port in use: only the fatal bind line, no credential lines (ucspi-ssl binds first)", async () => {
  const p = await pki();
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = String((busy.addr as Deno.NetAddr).port);
    const r = await ours("sslserver", ["-v", "-RHl0", "127.0.0.1", port, "true"], {
      env: { CERTFILE: p.serverCert, KEYFILE: p.serverKey, CAFILE: p.caCert },
    });
    assert.equal(r.err, "sslserver: fatal: unable to bind: address already used\n");
    assert.equal(r.code, 111);
  } finally {
    busy.close();
  }
});

Deno.test("sslserver log: the ccafile line shows $CCAFILE (and nothing without -m/-z)", async () => {
  const p = await pki();
  const cca = `${p.dir}/client-cas.pem`;
  await Deno.copyFile(p.caCert, cca);
  for (const [opt, want] of [["-m", cca], ["-Z", ""]]) {
    const srv = await startTool(
      "sslserver",
      ["-1", "-v", opt, "-RHl0", "127.0.0.1", "0", "true"],
      { CERTFILE: p.serverCert, KEYFILE: p.serverKey, CAFILE: p.caCert, CCAFILE: cca },
    );
    try {
      const cafile = await srv.waitLine(/^sslserver: cafile /);
      const pid = cafile.split(" ")[2];
      assert.equal(cafile, `sslserver: cafile ${pid} ${p.caCert}`);
      assert.equal(await srv.waitLine(/^sslserver: ccafile /), `sslserver: ccafile ${pid} ${want}`);
    } finally {
      await srv.stop();
    }
  }
});

/** A TLS client that sends nothing; resolves with what it got at the end. */
function silentClient(port: number, ca: string): Promise<string> {
  return new Promise<string>((resolve) => {
    let text = "";
    const s = tls.connect({ host: "127.0.0.1", port, ca, servername: "localhost" });
    s.on("data", (d: Uint8Array) => (text += new TextDecoder().decode(d)));
    s.on("error", () => {});
    s.on("close", () => resolve(text));
  });
}

Deno.test("sslserver log: -w idle: the program gets EOF silently; idle again, the connection is dropped", async () => {
  const p = await pki();
  const ca = await Deno.readTextFile(p.caCert);
  // ends at EOF: as ucspi-ssl, nothing is logged, the program's status is 0
  const quiet = await startTool(
    "sslserver",
    ["-1", "-v", "-w", "1", "-RHl0", "127.0.0.1", "0", "sh", "-c", "echo start; cat; echo eof"],
    { CERTFILE: p.serverCert, KEYFILE: p.serverKey },
  );
  try {
    assert.equal(await silentClient(quiet.port, ca), "start\neof\n");
    await quiet.waitLine(/ end 1 status 0$/);
    assert.deepEqual(quiet.lines.filter((l) => /warning/.test(l)), []);
  } finally {
    await quiet.stop();
  }
  // ignores EOF and stays silent: dropped at the second idle period
  const stuck = await startTool(
    "sslserver",
    [
      "-1",
      "-v",
      "-w",
      "1",
      "-RHl0",
      "127.0.0.1",
      "0",
      "sh",
      "-c",
      "echo start; cat; exec sleep 30",
    ],
    { CERTFILE: p.serverCert, KEYFILE: p.serverKey },
  );
  try {
    assert.equal(await silentClient(stuck.port, ca), "start\n");
    await stuck.waitLine(
      /^sslserver: warning: dropping SSL connection, unable to speak SSL: timed out$/,
    );
  } finally {
    await stuck.stop();
  }
});

Deno.test("sslserver log: no client certificate under -m: with $CCAFILE OpenSSL refuses the accept (ucspi-ssl's line), without it ucspi-ssl's ssl_verify line", async () => {
  const p = await pki();
  // ucspi-ssl prints ERR_error_string of SSL_get_error's code (1): ask this
  // machine's OpenSSL how it renders that
  const errstr = new TextDecoder().decode(
    (await new Deno.Command("openssl", { args: ["errstr", "1"], stdout: "piped" }).output())
      .stdout,
  ).trim();
  const cases: [Record<string, string>, string][] = [
    [{ CCAFILE: p.caCert }, `unable to accept SSL: ${errstr}`],
    [{}, "no client certificate"],
  ];
  for (const [extra, want] of cases) {
    const srv = await startTool(
      "sslserver",
      ["-1", "-m", "-RHl0", "127.0.0.1", "0", "echo", "hi"],
      { CERTFILE: p.serverCert, KEYFILE: p.serverKey, CAFILE: p.caCert, ...extra },
    );
    try {
      await silentClient(srv.port, await Deno.readTextFile(p.caCert));
      assert.equal(
        await srv.waitLine(/dropping SSL connection/),
        `sslserver: warning: dropping SSL connection, ${want}`,
      );
    } finally {
      await srv.stop();
    }
  }
});
