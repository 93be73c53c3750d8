/**
 * Fault isolation: each connection's work runs in its own scope (an
 * AsyncLocalStorage store that follows timers, callbacks and promises), so
 * an error nothing caught, raised while that work ran, is that
 * connection's fault: logged once, the connection dropped, the server and
 * every other connection untouched. Also how a missing Deno permission is
 * recognised inside a lookup's error.
 */
import { AsyncLocalStorage } from "node:async_hooks";

/**
 * A connection's fault state: the first error raised inside its handling
 * (see #guarded), and the promise that rejects with it.
 */
export class ConnScope {
  /** The first error raised inside the connection's handling (null: none yet). */
  fault: unknown = null;
  #reject: ((e: unknown) => void) | null = null;
  /** Rejects with the first fault; never resolves. */
  readonly faulted: Promise<never>;

  constructor() {
    this.faulted = new Promise<never>((_, reject) => (this.#reject = reject));
    this.faulted.catch(() => {});
  }

  /** Records the first fault (later ones are the same failure's echoes). */
  raise(e: unknown): void {
    if (this.fault !== null) return;
    this.fault = e ?? new Error("unknown error");
    this.#reject?.(this.fault);
  }
}

/** Which connection the running code works for (follows timers, callbacks, promises). */
export const CONN_SCOPE = new AsyncLocalStorage<ConnScope>();
let faultHandlers = false;

/**
 * Once per process: an error nothing caught ("error" event) or a rejection
 * nothing handled, raised while a connection's work ran, is that
 * connection's fault, not the server's: it drops that connection only.
 * Anything else keeps Deno's default (the process ends: a bug of the
 * server itself).
 */
export function installFaultHandlers(): void {
  if (faultHandlers) return;
  faultHandlers = true;
  const fault = (ev: Event, err: unknown) => {
    const scope = CONN_SCOPE.getStore();
    if (!scope) return;
    ev.preventDefault();
    scope.raise(err);
  };
  globalThis.addEventListener("error", (ev) => fault(ev, (ev as ErrorEvent).error));
  globalThis.addEventListener(
    "unhandledrejection",
    (ev) => fault(ev, (ev as PromiseRejectionEvent).reason),
  );
}

const DENIED = /Requires \S+ access to .*?, run again with the --allow-\S+ flag/;

/**
 * The missing Deno permission behind e (NotCapable itself, or a lookup
 * error that carried its message), as a NotCapable error; null otherwise.
 * A lookup that was not allowed must drop the connection with that reason
 * rather than pass as "no answer".
 */
export function permissionFault(e: unknown): Error | null {
  for (let cur = e, depth = 0; cur && depth < 5; depth++) {
    const err = cur as { name?: unknown; message?: unknown; cause?: unknown };
    if (err.name === "NotCapable") return cur as Error;
    const m = DENIED.exec(String(err.message ?? ""));
    if (m) return new Deno.errors.NotCapable(m[0]);
    cur = err.cause;
  }
  return null;
}
