/**
 * tcpserver -W on the native path: the PROXY header is taken off the socket
 * itself (MSG_PEEK, then exactly its bytes), so the program still gets the
 * socket as fd 0 and 1 (as C gives it), sees the announced endpoints, and
 * reads the conversation from its first byte, whether the header came with
 * data in one packet, alone, or a byte at a time. The pure path does the
 * same through a pipe.
 */
import assert from "node:assert/strict";
import { buildV1, buildV2 } from "../../lib/net/proxy/header.ts";
import { needs } from "../support/helpers.ts";
import { oursArgv } from "../support/helpers.ts";
import { spawnServer } from "../support/tcpserver_util.ts";

const FFI = needs("ffi");
const enc = new TextEncoder();
const PROGRAM = [
  "sh",
  "-c",
  'readlink /proc/self/fd/0 | cut -d: -f1; echo "$TCPREMOTEIP:$TCPREMOTEPORT $TCPLOCALIP:$TCPLOCALPORT"; exec cat',
];

/** Sends the pieces (a pause between them), half-closes, and reads everything back. */
async function converse(port: number, pieces: Uint8Array[]): Promise<string> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  for (const [i, p] of pieces.entries()) {
    if (i > 0) await new Promise((r) => setTimeout(r, 30)); // separate packets, separate peeks
    await c.write(p);
  }
  await c.closeWrite();
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(4096);
  for (;;) {
    const n = await c.read(buf).catch(() => null);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  c.close();
  return new TextDecoder().decode(new Uint8Array(chunks.flatMap((x) => [...x])));
}

const V4 = {
  family: "TCP4" as const,
  sourceIp: "192.0.2.7",
  destIp: "198.51.100.9",
  sourcePort: 40123,
  destPort: 25,
};

for (const native of [true, false]) {
  const path = native ? "native" : "pure";
  Deno.test({
    name:
      `tcpserver -W (${path}): the header taken off exactly, the program on ${
        native ? "the socket itself" : "a pipe"
      }` + (native ? FFI.reasonSuffix : ""),
    ignore: native && FFI.ignore,
  }, async () => {
    const srv = await spawnServer(
      oursArgv("tcpserver", ["-1", "-W", "-RHl0", "127.0.0.1", "0", ...PROGRAM]),
      { env: { UCSPI_NATIVE: native ? "1" : "0" }, name: "tcpserver" },
    );
    try {
      const fd0 = native ? "socket" : "pipe";
      const want = `${fd0}\n192.0.2.7:40123 198.51.100.9:25\nHELO x\r\nQUIT\r\n`;
      const data = enc.encode("HELO x\r\nQUIT\r\n");
      const v1 = buildV1(V4);
      const v2 = buildV2(V4, new Uint8Array([0x04, 0, 2, 1, 2])); // a TLV, skipped
      // header and data in one packet
      assert.equal(await converse(srv.port, [new Uint8Array([...v1, ...data])]), want);
      assert.equal(await converse(srv.port, [new Uint8Array([...v2, ...data])]), want);
      // header alone, then data
      assert.equal(await converse(srv.port, [v2, data]), want);
      // the header dribbled in pieces, the data glued to its last piece
      assert.equal(
        await converse(srv.port, [
          v1.subarray(0, 3),
          v1.subarray(3, 20),
          new Uint8Array([...v1.subarray(20), ...data]),
        ]),
        want,
      );
      assert.equal(
        await converse(srv.port, [
          v2.subarray(0, 5),
          v2.subarray(5, 17),
          new Uint8Array([...v2.subarray(17), ...data]),
        ]),
        want,
      );
      // no header: dropped with the warning, a FIN (not a reset) to the client
      assert.equal(await converse(srv.port, [data]), "");
      await srv.waitLine(
        /^tcpserver: warning: dropping connection, unable to read PROXY header from 127\.0\.0\.1: /,
      );
    } finally {
      await srv.stop();
    }
  });
}
