/**
 * sslserver's start-up TLS session (lib/tls/warm_up.ts): it completes over
 * memory with our own credentials, plain or asking for client certificates
 * ($CAFILE), and every byte goes through both ways.
 */
import assert from "node:assert/strict";
import { loadServerCredentials, serverFilesFromEnv } from "../../lib/tls/credentials.ts";
import { warmUpTls } from "../../lib/tls/warm_up.ts";
import { makePki } from "../support/ssl_fixtures.ts";

Deno.test("warm-up: a session with our own certificate carries every byte both ways", async () => {
  const p = await makePki();
  try {
    const settings: Record<string, string>[] = [{}, { CAFILE: p.caCert }];
    for (const extra of settings) {
      const env: Record<string, string> = {
        CERTFILE: p.serverCert,
        KEYFILE: p.serverKey,
        ...extra,
      };
      const creds = await loadServerCredentials(serverFilesFromEnv((n) => env[n]));
      // not a multiple of the write size: the last write is whole, so at least this much
      const bytes = 300_000;
      const got = await warmUpTls(creds, bytes);
      assert.ok(got.down >= bytes && got.up >= bytes, JSON.stringify(got));
    }
  } finally {
    await p.cleanup();
  }
});
