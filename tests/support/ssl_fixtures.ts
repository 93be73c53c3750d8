/**
 * Test certificates made with the openssl command: a root CA, an intermediate
 * CA, server certificates for localhost/127.0.0.1 (one signed by the root,
 * one by the intermediate, with a chain file), a client certificate signed by
 * the root, and a self-signed stranger.
 */
import { oursArgv, tempDir } from "./helpers.ts";
import { spawnServer, type Srv } from "./tcpserver_util.ts";

export interface Pki {
  dir: string;
  caCert: string;
  interCert: string;
  serverCert: string;
  serverKey: string;
  /** Server certificate issued by the intermediate. */
  leafCert: string;
  leafKey: string;
  /** root, intermediate, leaf (ucspi-ssl order: root first, host last). */
  chainFile: string;
  /** A second server certificate (CN second.test) with its own key. */
  otherCert: string;
  otherKey: string;
  clientCert: string;
  clientKey: string;
  strangerCert: string;
  strangerKey: string;
  cleanup: () => Promise<void>;
}

async function openssl(cwd: string, args: string[]): Promise<void> {
  const r = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  if (!r.success) {
    throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
  }
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

async function issue(
  dir: string,
  name: string,
  subj: string,
  ca: string,
  ext: string,
): Promise<void> {
  await openssl(dir, [
    "req",
    ...EC,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    subj,
  ]);
  await Deno.writeTextFile(`${dir}/${name}.ext`, ext);
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${ca}.pem`,
    "-CAkey",
    `${ca}.key`,
    "-CAcreateserial",
    "-out",
    `${name}.pem`,
    "-days",
    "3",
    "-extfile",
    `${name}.ext`,
  ]);
}

/** Makes a fresh PKI in a temporary directory. */
export async function makePki(): Promise<Pki> {
  const { path: dir, cleanup } = await tempDir();
  const caExt = "basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\n";
  await openssl(dir, [
    "req",
    "-x509",
    ...EC,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "3",
    "-subj",
    "/O=ucspi test/CN=Test Root CA",
    "-addext",
    "basicConstraints=critical,CA:true",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  const san = "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n" +
    "extendedKeyUsage=serverAuth\n";
  await issue(dir, "server", "/CN=localhost", "ca", san);
  await issue(dir, "inter", "/O=ucspi test/CN=Test Intermediate CA", "ca", caExt);
  await issue(dir, "leaf", "/CN=localhost/O=chained", "inter", san);
  await issue(
    dir,
    "other",
    "/CN=second.test",
    "ca",
    "subjectAltName=DNS:second.test,IP:127.0.0.1\n",
  );
  await issue(
    dir,
    "client",
    "/C=DE/O=Example Mail/CN=client one",
    "ca",
    "extendedKeyUsage=clientAuth\n",
  );
  await openssl(dir, [
    "req",
    "-x509",
    ...EC,
    "-keyout",
    "stranger.key",
    "-out",
    "stranger.pem",
    "-days",
    "3",
    "-subj",
    "/CN=stranger",
  ]);
  const read = (n: string) => Deno.readTextFile(`${dir}/${n}`);
  await Deno.writeTextFile(
    `${dir}/chain.pem`,
    (await read("ca.pem")) + (await read("inter.pem")) + (await read("leaf.pem")),
  );
  return {
    dir,
    caCert: `${dir}/ca.pem`,
    interCert: `${dir}/inter.pem`,
    serverCert: `${dir}/server.pem`,
    serverKey: `${dir}/server.key`,
    leafCert: `${dir}/leaf.pem`,
    leafKey: `${dir}/leaf.key`,
    chainFile: `${dir}/chain.pem`,
    otherCert: `${dir}/other.pem`,
    otherKey: `${dir}/other.key`,
    clientCert: `${dir}/client.pem`,
    clientKey: `${dir}/client.key`,
    strangerCert: `${dir}/stranger.pem`,
    strangerKey: `${dir}/stranger.key`,
    cleanup,
  };
}

/** A running server tool (sslserver, tcpserver) started with -1. */
export type Running = Srv;

/** Starts our tool NAME with args (including -1) and waits for the port it prints. */
export function startTool(
  name: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<Running> {
  return spawnServer(oursArgv(name, args), { env, name });
}

/** What `openssl s_client` saw. */
export interface SClient {
  code: number;
  out: string;
  err: string;
}

/**
 * Connects with `openssl s_client` (a real OpenSSL client), sends `send`,
 * and collects what the server wrote until it closed.
 */
export async function sClient(
  port: number,
  send: string,
  extra: string[] = [],
): Promise<SClient> {
  const child = new Deno.Command("openssl", {
    args: ["s_client", "-connect", `127.0.0.1:${port}`, "-quiet", ...extra],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(send)).catch(() => {});
  // -quiet keeps reading after our EOF, until the server closes
  await w.close().catch(() => {});
  const r = await child.output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}
