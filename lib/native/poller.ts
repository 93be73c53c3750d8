/**
 * One poller for every socket of the native path: waits for sockets to
 * become readable or writable with ONE poll(2) call on one of Deno's FFI
 * worker threads for all of them (Deno runs blocking FFI calls on a small
 * thread pool: a blocked call per connection would starve it). An eventfd
 * wakes the poll when the set of interests changes. Everything else
 * (accept4, recv, send) is a non-blocking call on the main thread.
 */
import { errno, L, sysError } from "./libc.ts";

/** poll(2) event: readable (or, for a listener, a connection is queued). */
export const POLLIN = 1;
/** poll(2) event: writable. */
export const POLLOUT = 4;
const POLLERR = 8;
const POLLHUP = 16;
const POLLNVAL = 32;
const EFD_FLAGS = 0o2000000 | 0o4000; // EFD_CLOEXEC | EFD_NONBLOCK

interface Interest {
  read: Array<() => void>;
  write: Array<() => void>;
}

/** The poll loop over every descriptor someone waits for (see the module comment). */
export class Poller {
  readonly #efd: number;
  readonly #want = new Map<number, Interest>();
  /** fd -> events of the poll in flight (null: none in flight). */
  #inFlight: Map<number, number> | null = null;
  #running = false;
  readonly #one = new BigUint64Array([1n]);
  readonly #drain = new Uint8Array(8);

  /** A poller woken through eventfd `efd` (non-blocking, close-on-exec). */
  constructor(efd: number) {
    this.#efd = efd;
  }

  /** Resolves when fd is readable (POLLIN) or writable (POLLOUT), or has an error. */
  wait(fd: number, events: number): Promise<void> {
    return new Promise((resolve) => {
      let w = this.#want.get(fd);
      if (!w) this.#want.set(fd, w = { read: [], write: [] });
      (events === POLLIN ? w.read : w.write).push(resolve);
      if (!this.#running) {
        this.#running = true;
        void this.#loop();
      } else if (this.#inFlight && ((this.#inFlight.get(fd) ?? 0) & events) === 0) {
        this.#wake();
      }
    });
  }

  /** Drops fd (before it is closed): its waiters are resolved and see it closed. */
  forget(fd: number): void {
    const w = this.#want.get(fd);
    if (!w) return;
    this.#want.delete(fd);
    for (const f of [...w.read, ...w.write]) f();
    if (this.#inFlight?.has(fd)) this.#wake();
  }

  #wake(): void {
    L().write(this.#efd, new Uint8Array(this.#one.buffer), 8n);
  }

  async #loop(): Promise<void> {
    const l = L();
    try {
      while (this.#want.size > 0) {
        const fds = [...this.#want.keys()];
        // (at least 128 bytes: V8 keeps small typed arrays in its heap, where
        // they could move while the worker thread writes revents)
        const buf = new Uint8Array(Math.max(128, 8 * (fds.length + 1)));
        const dv = new DataView(buf.buffer);
        dv.setInt32(0, this.#efd, true);
        dv.setInt16(4, POLLIN, true);
        const inFlight = new Map<number, number>();
        fds.forEach((fd, i) => {
          const w = this.#want.get(fd)!;
          const ev = (w.read.length ? POLLIN : 0) | (w.write.length ? POLLOUT : 0);
          dv.setInt32(8 * (i + 1), fd, true);
          dv.setInt16(8 * (i + 1) + 4, ev, true);
          inFlight.set(fd, ev);
        });
        this.#inFlight = inFlight;
        await l.poll(buf, BigInt(fds.length + 1), -1);
        this.#inFlight = null;
        if (dv.getInt16(6, true) !== 0) l.read(this.#efd, this.#drain, 8n);
        fds.forEach((fd, i) => {
          const rev = dv.getInt16(8 * (i + 1) + 6, true);
          if (rev === 0) return;
          const w = this.#want.get(fd);
          if (!w) return;
          const bad = POLLERR | POLLHUP | POLLNVAL;
          if (rev & (POLLIN | bad)) { for (const f of w.read.splice(0)) f(); }
          if (rev & (POLLOUT | bad)) { for (const f of w.write.splice(0)) f(); }
          if (!w.read.length && !w.write.length) this.#want.delete(fd);
        });
      }
    } finally {
      this.#running = false;
      this.#inFlight = null;
    }
  }
}

let poller: Poller | null = null;

/** The process's one poller, made on first use; throws when eventfd fails. */
export function thePoller(): Poller {
  if (!poller) {
    const efd = L().eventfd(0, EFD_FLAGS);
    if (efd < 0) throw sysError("eventfd", errno());
    poller = new Poller(efd);
  }
  return poller;
}
