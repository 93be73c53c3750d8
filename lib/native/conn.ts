/**
 * An accepted connection on the native path: its descriptor, read and
 * written with non-blocking recv/send on the main thread, waiting in the
 * shared poller (lib/native/poller.ts) when the socket is not ready.
 */
import type { Io } from "../stages/stage.ts";
import { PrefixError } from "../core/prefix.ts";
import { E } from "./errno.ts";
import { errno, IPPROTO_TCP, L, setInt, SHUT_WR, sysError, TCP_NODELAY } from "./libc.ts";
import { POLLIN, POLLOUT, thePoller } from "./poller.ts";
import { nameOf, type NativeEndpoint } from "./sockaddr.ts";

const MSG_PEEK = 0x2;
const MSG_DONTWAIT = 0x40;
/** takePrefix peeks at most this much at a time (a PROXY v1 line is 107 bytes). */
const PEEK_WINDOW = 512;
const MSG_NOSIGNAL = 0x4000;
const READ_SIZE = 64 * 1024;

/** An accepted connection's socket (a file descriptor we own until close). */
export class NativeConn {
  /** The socket's descriptor (a program started on it gets it as fd 0 and 1). */
  readonly fd: number;
  /** Our end (getsockname). */
  readonly local: NativeEndpoint;
  /** The client's end (getpeername). */
  readonly remote: NativeEndpoint;
  #closed = false;
  #writing = false;
  #io: Io | null = null;
  #readAny = false;

  /** Takes over socket fd; throws (ENOTCONN) when the client is already gone. */
  constructor(fd: number) {
    this.fd = fd;
    this.local = nameOf(fd, false);
    this.remote = nameOf(fd, true);
  }

  /** TCP_NODELAY on or off (best effort: a failure leaves Nagle as it was). */
  setNoDelay(on: boolean): void {
    setInt(this.fd, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0);
  }

  /** Reads what is there (waiting for some); null at EOF, an error, or close(). */
  async read(buf: Uint8Array): Promise<number | null> {
    this.#readAny = true;
    const l = L();
    while (!this.#closed) {
      const n = Number(l.recv(this.fd, buf, BigInt(buf.length), MSG_DONTWAIT));
      if (n > 0) return n;
      if (n === 0) return null;
      const e = errno();
      if (e === E.EINTR) continue;
      if (e !== E.EAGAIN) return null;
      await thePoller().wait(this.fd, POLLIN);
    }
    return null;
  }

  /**
   * Takes a prefix off the stream (tcpserver -W's PROXY header) without
   * reading a byte past it, so the socket stays pristine for the program:
   * peeks (MSG_PEEK), asks `measure` how long the prefix is (null: more
   * bytes needed; it throws when the bytes cannot start one), and receives
   * the peeked bytes only while they all belong to the prefix, then exactly
   * the rest of it. At most `max` bytes, within timeoutMs. Rejects with a
   * PrefixError ("eof", "timeout", "long") or what measure threw.
   */
  async takePrefix(
    measure: (buf: Uint8Array) => number | null,
    max: number,
    timeoutMs: number,
  ): Promise<Uint8Array> {
    const l = L();
    let store = new Uint8Array(Math.min(max, PEEK_WINDOW));
    let have = 0;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#closed) throw new PrefixError("eof", have);
      if (have === store.length) {
        if (have >= max) throw new PrefixError("long", have);
        const next = new Uint8Array(Math.min(max, 2 * store.length));
        next.set(store);
        store = next;
      }
      const room = Math.min(store.length - have, PEEK_WINDOW);
      const at = store.subarray(have, have + room);
      const n = Number(l.recv(this.fd, at, BigInt(room), MSG_PEEK | MSG_DONTWAIT));
      if (n === 0) throw new PrefixError("eof", have);
      if (n < 0) {
        const e = errno();
        if (e === E.EINTR) continue;
        if (e !== E.EAGAIN) throw new PrefixError("eof", have);
        const left = deadline - Date.now();
        if (left <= 0) throw new PrefixError("timeout", have);
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), left)));
        const woke = await Promise.race([thePoller().wait(this.fd, POLLIN), late]);
        clearTimeout(timer);
        if (woke === "late") throw new PrefixError("timeout", have);
        continue;
      }
      let len: number | null;
      try {
        len = measure(store.subarray(0, have + n));
      } catch (e) {
        // Not a prefix: the connection is dropped. Take in what was peeked,
        // so closing it sends a FIN, not a reset (unread data), as the
        // stream path's read does.
        l.recv(this.fd, at, BigInt(n), MSG_DONTWAIT);
        throw e;
      }
      // Receive what belongs to the prefix: all that was peeked while it is
      // incomplete, else exactly up to its end (already there: it was peeked).
      const take = len === null ? n : len - have;
      if (take < 0 || take > n) {
        throw new Error("takePrefix: measure's length outside the bytes seen");
      }
      let got = 0;
      while (got < take) {
        const r = Number(
          l.recv(this.fd, store.subarray(have + got), BigInt(take - got), MSG_DONTWAIT),
        );
        if (r > 0) got += r;
        else if (r < 0 && errno() === E.EINTR) continue;
        else throw new PrefixError("eof", have + got);
      }
      have += take;
      if (len !== null) return store.slice(0, len);
    }
  }

  /** Writes all of data; throws when the client is gone (or after close()). */
  async writeAll(data: Uint8Array): Promise<void> {
    const l = L();
    this.#writing = true;
    try {
      let off = 0;
      while (off < data.length) {
        if (this.#closed) throw sysError("write", E.EPIPE);
        const chunk = data.subarray(off);
        const n = Number(
          l.send(this.fd, chunk, BigInt(chunk.length), MSG_DONTWAIT | MSG_NOSIGNAL),
        );
        if (n > 0) {
          off += n;
          continue;
        }
        const e = errno();
        if (n < 0 && e === E.EINTR) continue;
        if (n < 0 && e === E.EAGAIN) {
          await thePoller().wait(this.fd, POLLOUT);
          continue;
        }
        throw sysError("write", e || E.EPIPE);
      }
    } finally {
      this.#writing = false;
    }
  }

  /**
   * The connection as an Io (for stages that run in-process): input ends
   * at the client's FIN, closing output half-closes the socket.
   */
  io(log: (line: string) => void): Io {
    if (this.#io) return this.#io;
    let ended = false;
    // Small first (most in-process stages read a line or two), doubling
    // up to READ_SIZE while reads fill the buffer.
    let size = 4096;
    const input = new ReadableStream<Uint8Array>({
      pull: async (c) => {
        if (ended) return;
        const buf = new Uint8Array(size);
        const n = await this.read(buf);
        if (n === null) {
          ended = true;
          c.close();
        } else {
          if (n === size && size < READ_SIZE) size *= 2;
          c.enqueue(buf.subarray(0, n));
        }
      },
      cancel() {
        ended = true;
      },
    }, { highWaterMark: 0 });
    const output = new WritableStream<Uint8Array>({
      write: (chunk) => this.writeAll(chunk),
      close: () => {
        // A failed shutdown means the client is gone: nothing more to tell it.
        if (!this.#closed) L().shutdown(this.fd, SHUT_WR);
      },
    });
    this.#io = { input, output, log };
    return this.#io;
  }

  /**
   * True while the socket can go to a program as it is: nothing read from
   * it by a stage, no write under way, not closed.
   */
  get pristine(): boolean {
    return !this.#readAny && !this.#closed && !this.#writing;
  }

  /**
   * Closes our descriptor once; waiting reads and writes return (EOF,
   * error). After a program was started on the socket this drops only our
   * copy: the program keeps its own.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    thePoller().forget(this.fd);
    L().close(this.fd);
  }
}
