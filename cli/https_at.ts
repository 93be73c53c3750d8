/**
 * https@ [-4|-6] [host [page [port [sslclient-option ...]]]] (ucspi-ssl):
 * http@ over TLS. Connects as `sslclient -XRHl0` (the server's certificate
 * is not checked unless the extra options say -x), sends "GET /page
 * HTTP/1.0" and "Host: host:port" with CRLF line ends, and prints the
 * response's body with the CR before each LF removed. Defaults: host 0
 * (the local host), page "", port 443. Exits 0 whatever happens, as the
 * script (whose status is its awk's); sslclient's errors go to stderr.
 */
import { chain, httpBodyConverter, socketToStdout, sockWrite } from "../lib/client/clienttools.ts";
import { addcrConverter, delcrConverter } from "../lib/stages/crlf.ts";
import { ToolError } from "../lib/core/errors.ts";
import { stringBytes, utf8ByteString } from "../lib/core/bytes.ts";
import { sslConversation } from "./sslclient.ts";

/** Runs https@ with args (see above); resolves 0 whatever happens, sslclient's errors on stderr. */
export async function main(args: string[]): Promise<number> {
  const rest = [...args];
  const family = rest[0] === "-4" || rest[0] === "-6" ? [rest.shift()!] : [];
  const host = rest[0] ?? "0";
  const page = rest[1] ?? "";
  const port = rest[2] ?? "443";
  const extra = rest.slice(3);
  const request = stringBytes(utf8ByteString(`GET /${page} HTTP/1.0\nHost: ${host}:${port}\n\n`));
  try {
    await sslConversation(["-XRHl0", ...family, ...extra, "--", host, port], async (sock) => {
      sock.on("error", () => {});
      if (await sockWrite(sock, addcrConverter().push(request))) {
        await socketToStdout(sock, chain(delcrConverter(), httpBodyConverter()));
      }
    });
  } catch (e) {
    if (!(e instanceof ToolError)) throw e;
    if (e.message) {
      await Deno.stderr.write(new TextEncoder().encode(e.message + "\n")).catch(() => {});
    }
  }
  return 0;
}
