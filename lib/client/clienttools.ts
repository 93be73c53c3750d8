/**
 * DJB's little TCP clients (who@, date@, finger@, http@, tcpcat, mconnect)
 * in-process. The originals are shell scripts chaining `tcpclient -RHl0`
 * with addcr, delcr, `cat -v` and awk; these run the same logic over one
 * socket, byte for byte, without spawning anything.
 */
import type net from "node:net";
import { addcrConverter, type Converter, delcrConverter } from "../stages/crlf.ts";
import { ToolError } from "../core/errors.ts";
import { concatBytes, utf8ByteString } from "../core/bytes.ts";
import { stderrLine } from "../core/log.ts";
import { writeAll } from "../core/write_all.ts";
import { connectClient } from "./connect.ts";
import { defaultClientOptions, remotePort } from "./options.ts";

const EMPTY: Uint8Array = new Uint8Array(0);

/** `cat -v`: control bytes as ^X, DEL as ^?, high bytes as M-x; tab and newline kept. */
export function catvConverter(): Converter {
  return {
    push(chunk) {
      const out: number[] = [];
      for (let b of chunk) {
        const high = b >= 128;
        if (high) {
          out.push(77, 45); // "M-"
          b -= 128;
        }
        if (b === 127) out.push(94, 63);
        else if (b < 32 && (high || (b !== 9 && b !== 10))) out.push(94, b + 64);
        else out.push(b);
      }
      return Uint8Array.from(out);
    },
    end: () => EMPTY,
  };
}

/**
 * The awk filter of http@ (`/^$/ { body=1; next } { if (body) print }`): every
 * line after the first empty one, except empty lines, each ending in a newline
 * (also a partial final line). Streams: nothing of a line is held back, so a
 * server sending a line without end costs no memory (awk would hold it).
 */
export function httpBodyConverter(): Converter {
  let body = false;
  let atLineStart = true; // no byte of the current line seen yet
  return {
    push(chunk) {
      const out = new Uint8Array(chunk.length);
      let j = 0;
      for (const b of chunk) {
        if (b === 10) {
          if (atLineStart) body = true;
          else if (body) out[j++] = 10;
          atLineStart = true;
        } else {
          if (body) out[j++] = b;
          atLineStart = false;
        }
      }
      return out.subarray(0, j);
    },
    end() {
      const partial = !atLineStart && body;
      atLineStart = true;
      return partial ? Uint8Array.of(10) : EMPTY;
    },
  };
}

/** Runs converters in order over each chunk. */
export function chain(...convs: Converter[]): Converter {
  return {
    push(chunk) {
      for (const c of convs) chunk = c.push(chunk);
      return chunk;
    },
    end() {
      let out: Uint8Array = EMPTY;
      for (let i = 0; i < convs.length; i++) {
        let tail = convs[i].end();
        for (const c of convs.slice(i + 1)) tail = c.push(tail);
        if (tail.length) out = concatBytes(out, tail);
      }
      return out;
    },
  };
}

/** Writes all of data to stdout. */
function toStdout(data: Uint8Array): Promise<void> {
  return writeAll(Deno.stdout, data);
}

/**
 * Connects as `tcpclient -RHl0 -- host port` does (its messages, prefixed
 * "tcpclient:", go to stderr). Null when tcpclient would have failed; the
 * exit code it would have had is then in `failed`.
 */
export async function connectLikeTcpclient(
  host: string,
  port: string,
): Promise<{ sock: net.Socket } | { failed: number }> {
  const opts = defaultClientOptions();
  opts.remoteHost = false;
  opts.remoteInfo = false;
  opts.localName = "0";
  try {
    const { sock } = await connectClient(
      "tcpclient",
      host,
      remotePort("tcpclient", port),
      opts,
      stderrLine,
    );
    return { sock };
  } catch (e) {
    if (!(e instanceof ToolError)) throw e;
    // A ToolError's message is text (it may name the host as typed): its UTF-8 bytes, as mod.ts writes it.
    if (e.message !== "") stderrLine(utf8ByteString(e.message));
    return { failed: e.exitCode };
  }
}

/** Copies everything the socket sends, through conv, to stdout. */
export async function socketToStdout(sock: net.Socket, conv?: Converter): Promise<void> {
  try {
    for await (const chunk of sock) {
      const data = conv ? conv.push(chunk as Uint8Array) : chunk as Uint8Array;
      if (data.length) await toStdout(data);
    }
  } catch {
    // A reset ends the conversation as EOF would; so does stdout going away (nobody to
    // print to), as for the scripts' cat, whose status theirs is not.
  }
  if (conv) {
    const tail = conv.end();
    if (tail.length) await toStdout(tail);
  }
}

/** Writes data to the socket, resolving when it was handed to the kernel (false on error). */
export function sockWrite(sock: net.Socket, data: Uint8Array): Promise<boolean> {
  return new Promise((resolve) => {
    if (sock.destroyed || !sock.writable) return resolve(false);
    sock.write(data, (err) => resolve(!err));
  });
}

/**
 * who@, date@, finger@: connect to host:port, send `send` (if any; the
 * connection is not half-closed, as in the scripts), print what comes back
 * with the CR before each LF removed and unprintable bytes made visible.
 * Exits 0 even when the connection fails (the scripts' status is cat's).
 */
export async function printService(host: string, port: string, send?: Uint8Array): Promise<number> {
  const c = await connectLikeTcpclient(host, port);
  if ("failed" in c) return 0;
  const { sock } = c;
  sock.on("error", () => {}); // a reset ends the reads below; nothing else to do with it
  try {
    if (send) await sockWrite(sock, addcrConverter().push(send));
    await socketToStdout(sock, chain(delcrConverter(), catvConverter()));
  } finally {
    sock.destroy();
  }
  return 0;
}

/**
 * http@: GET /page over HTTP/1.0 with "Host: host:port", print the body
 * (delcr, then http@'s awk filter). Exits 0 whatever happens.
 */
export async function httpAt(host: string, page: string, port: string): Promise<number> {
  const c = await connectLikeTcpclient(host, port);
  if ("failed" in c) return 0;
  const { sock } = c;
  sock.on("error", () => {}); // a reset ends the reads below; nothing else to do with it
  const request = new TextEncoder().encode(
    `GET /${page} HTTP/1.0\nHost: ${host}:${port}\n\n`,
  );
  try {
    await sockWrite(sock, addcrConverter().push(request));
    await socketToStdout(sock, chain(delcrConverter(), httpBodyConverter()));
  } finally {
    sock.destroy();
  }
  return 0;
}

/** tcpcat: print everything host:port sends, unchanged. tcpclient's exit code on failure. */
export async function tcpcat(host: string, port: string): Promise<number> {
  const c = await connectLikeTcpclient(host, port);
  if ("failed" in c) return c.failed;
  c.sock.on("error", () => {}); // a reset ends the reads below; nothing else to do with it
  try {
    await socketToStdout(c.sock);
  } finally {
    c.sock.destroy();
  }
  return 0;
}

/**
 * mconnect-io's conversation over a connected duplex: stdin, with a CR
 * added before each LF, goes to the network (stopped when a write fails; as
 * in C, stdin's EOF does not half-close the connection); the network goes to
 * stdout unchanged. Done when the network says EOF.
 */
export async function mconnectIo(
  fromNet: AsyncIterable<unknown>,
  toNet: (data: Uint8Array) => Promise<boolean>,
): Promise<number> {
  const conv = addcrConverter();
  (async () => {
    const reader = Deno.stdin.readable.getReader();
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        if (!(await toNet(conv.push(value)))) return;
      }
    } catch {
      // stdin failed: stop sending, as mconnect-io's copy loop ends; the network still prints.
    }
  })();
  try {
    for await (const chunk of fromNet) {
      const data = chunk as Uint8Array;
      if (data.length) await toStdout(data);
    }
  } catch {
    // A reset (or stdout gone) ends the conversation: mconnect exits 0 as when the server closes.
  }
  return 0;
}

/** mconnect: mconnect-io over a connection to host:port (tcpclient's exit code on failure). */
export async function mconnect(host: string, port: string): Promise<number> {
  const c = await connectLikeTcpclient(host, port);
  if ("failed" in c) return c.failed;
  const { sock } = c;
  sock.on("error", () => {}); // a reset ends the reads below; nothing else to do with it
  try {
    return await mconnectIo(sock, (d) => sockWrite(sock, d));
  } finally {
    sock.destroy();
  }
}
