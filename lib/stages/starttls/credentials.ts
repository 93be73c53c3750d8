/**
 * The proxy's certificate: the files of $CERTFILE, $KEYFILE, ... (as
 * sslserver reads them), loaded once per set of files and again when one of
 * them changes, so a long-running tcpserver picks up a renewed certificate.
 */
import { byteStringText } from "../../core/bytes.ts";
import { fatal } from "../../core/errors.ts";
import {
  CREDENTIAL_MESSAGES,
  CredentialError,
  loadServerCredentials,
  type ServerCredentials,
  type ServerFiles,
  serverFilesFromEnv,
} from "../../tls/credentials.ts";

/** The certificate files of env ($CERTFILE, $KEYFILE, ... as sslserver reads them). */
export function proxyServerFiles(env: Map<string, string>): ServerFiles {
  return serverFilesFromEnv((n) => {
    const v = env.get(n);
    // environment values are byte strings; Deno's paths are text
    return v === undefined ? v : byteStringText(v) ?? v;
  });
}

/** Loaded credentials by files, kept while the files are unchanged (size, mtime, inode). */
const credentialCache = new Map<string, { stamp: string; creds: Promise<ServerCredentials> }>();
const MAX_CACHED = 16;

function stampOf(files: ServerFiles): string {
  const parts: string[] = [];
  for (const f of [files.certFile, files.certChainFile, files.keyFile, files.caFile]) {
    if (f === undefined) continue;
    try {
      const s = Deno.statSync(f);
      parts.push(`${s.ino}:${s.size}:${s.mtime?.getTime()}`);
    } catch {
      parts.push("-");
    }
  }
  return parts.join(",");
}

/**
 * The server credentials for files, loaded once per distinct set of files
 * and again when one of them changes (a renewed certificate is picked up by
 * the next connection). Throws the ToolError sslserver would print, as
 * `tool` (`smtpd-starttls-proxy: fatal: unable to load certificate`, exit 111).
 */
export async function proxyCredentials(
  tool: string,
  files: ServerFiles,
): Promise<ServerCredentials> {
  const key = JSON.stringify(files);
  const stamp = stampOf(files);
  let hit = credentialCache.get(key);
  if (!hit || hit.stamp !== stamp) {
    if (credentialCache.size >= MAX_CACHED) credentialCache.clear();
    hit = { stamp, creds: loadServerCredentials(files) };
    credentialCache.set(key, hit);
  }
  try {
    return await hit.creds;
  } catch (e) {
    if (credentialCache.get(key) === hit) credentialCache.delete(key);
    if (e instanceof CredentialError) throw fatal(tool, CREDENTIAL_MESSAGES[e.failure]);
    throw e;
  }
}
