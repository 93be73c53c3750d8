/**
 * sslserver -3 and sslclient -3: the key's password read from descriptor 3
 * (lib/core/password.ts, up to a NUL or the end), as ucspi-ssl does; an
 * encrypted key without the right password, or no descriptor 3, is fatal.
 */
import assert from "node:assert/strict";
import { DENO, MOD, resultOf } from "../support/helpers.ts";
import { makePki, type Pki } from "../support/ssl_fixtures.ts";
import { spawnServer } from "../support/tcpserver_util.ts";

let pkiPromise: Promise<Pki> | undefined;
function pki(): Promise<Pki> {
  return pkiPromise ??= makePki();
}

const PASSWORD = "s3cret pass";

/** The key `name` encrypted with PASSWORD (PKCS#8, AES-256), made once. */
async function encryptedKey(p: Pki, key: string, name: string): Promise<string> {
  const out = `${p.dir}/${name}.enc.key`;
  const r = await new Deno.Command("openssl", {
    args: ["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", key, "-out", out, "-passout", "stdin"],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const w = r.stdin.getWriter();
  await w.write(new TextEncoder().encode(PASSWORD + "\n"));
  await w.close();
  const st = await r.output();
  assert.ok(st.success, new TextDecoder().decode(st.stderr));
  assert.match(await Deno.readTextFile(out), /BEGIN ENCRYPTED PRIVATE KEY/);
  return out;
}

/**
 * Our tool NAME run with descriptor 3 reading `fd3` (a file; null: closed),
 * as `exec 3<file tool args` in a shell.
 */
function withFd3(name: string, fd3: string | null, args: string[]): string[] {
  const redirect = fd3 === null ? "exec 3<&-" : 'exec 3<"$FD3"';
  return [
    "bash",
    "-c",
    `${redirect}; exec -a "$0" "${DENO}" run -A "${MOD}" "$@"`,
    name,
    ...args,
  ];
}

async function runFd3(
  name: string,
  fd3: string | null,
  args: string[],
  env: Record<string, string>,
) {
  const argv = withFd3(name, fd3, args);
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: { ...env, FD3: fd3 ?? "" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return resultOf(out);
}

Deno.test("sslserver -3 and sslclient -3: encrypted keys opened with the password on descriptor 3", async () => {
  const p = await pki();
  const serverKey = await encryptedKey(p, p.serverKey, "server");
  const clientKey = await encryptedKey(p, p.clientKey, "client");
  // a NUL ends the password, as ucspi-ssl's: what follows it is not part of it
  const pw = `${p.dir}/password`;
  await Deno.writeFile(pw, new TextEncoder().encode(PASSWORD + "\0ignored"));
  const srv = await spawnServer(
    withFd3("sslserver", pw, [
      "-1",
      "-3",
      "-m",
      "-s",
      "-RH",
      "-l0",
      "127.0.0.1",
      "0",
      "sh",
      "-c",
      'echo "hello $SSL_CLIENT_S_DN_CN"',
    ]),
    {
      env: { FD3: pw, CERTFILE: p.serverCert, KEYFILE: serverKey, CAFILE: p.caCert },
      name: "sslserver",
    },
  );
  try {
    const r = await runFd3("sslclient", pw, [
      "-3",
      "-RH",
      "-a",
      p.caCert,
      "-c",
      p.clientCert,
      "-k",
      clientKey,
      "127.0.0.1",
      String(srv.port),
      "sh",
      "-c",
      "cat <&6",
    ], {});
    assert.equal(r.err, "");
    assert.equal(r.code, 0);
    assert.equal(r.out, "hello client one\n");
  } finally {
    await srv.stop();
  }
});

Deno.test("sslserver -3: a wrong password is ucspi-ssl's 'unable to load key'", async () => {
  const p = await pki();
  const serverKey = await encryptedKey(p, p.serverKey, "server-wrong");
  const pw = `${p.dir}/wrong-password`;
  await Deno.writeTextFile(pw, "not it");
  const r = await runFd3("sslserver", pw, ["-3", "-RH", "-l0", "127.0.0.1", "0", "true"], {
    CERTFILE: p.serverCert,
    KEYFILE: serverKey,
  });
  assert.equal(r.err, "sslserver: fatal: unable to load key\n");
  assert.equal(r.code, 111);
});

for (const name of ["sslserver", "sslclient"]) {
  Deno.test(`${name} -3 without a descriptor 3: fatal 'unable to read password'`, async () => {
    const p = await pki();
    const args = name === "sslserver"
      ? ["-3", "-RH", "-l0", "127.0.0.1", "0", "true"]
      : ["-3", "-RH", "127.0.0.1", "1", "true"];
    const r = await runFd3(name, null, args, { CERTFILE: p.serverCert, KEYFILE: p.serverKey });
    assert.match(r.err, new RegExp(`^${name}: fatal: unable to read password: .+\\n$`));
    assert.equal(r.code, 111);
  });
}
