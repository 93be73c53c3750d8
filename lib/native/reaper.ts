/**
 * Reaping the native path's programs without SIGCHLD.
 *
 * A SIGCHLD handler costs a busy server a wake-up per program: the signal,
 * Deno's self-pipe, its reactor, the listener's turn (measured: about a
 * tenth of the server's CPU per `/bin/echo` connection). C tcpserver pays
 * nothing like it, as its signal only interrupts an accept it was blocked
 * in. So no SIGCHLD listener is installed (its default disposition wakes
 * nobody), and programs are reaped
 *
 * - lazily, for programs whose end only ends their slot and writes their
 *   "end" line (`onEnd` callbacks): before every accept, and at a timer
 *   while such programs run (10 ms after the first starts, doubling while
 *   none ends, at most a second), so an otherwise idle server notices an
 *   end within it; a timer wakes only the main thread, and a busy server
 *   rarely reaches it;
 * - promptly, while someone needs an end as it happens (a caller awaiting
 *   a program's status, a server at its -c limit or draining: `promptReaping`):
 *   one waitid(WNOWAIT) blocked on an FFI worker thread returns as soon as
 *   any child has ended.
 *
 * Only our own pids are reaped (waitpid by pid): Deno reaps its own children.
 */
import { E } from "./errno.ts";
import { errno, L } from "./libc.ts";

const WNOHANG = 1;
const P_ALL = 0;
const WEXITED = 4;
const WNOWAIT = 0x01000000;

/** Our running programs, by pid: what their end calls. */
const waiting = new Map<number, (wstat: number) => void>();
const statusBuf = new Int32Array(1);
/** siginfo_t (128 bytes on Linux; si_pid at 16), off V8's heap. */
const siginfo = new Uint8Array(128);
const siginfoView = new DataView(siginfo.buffer);
/** The blocked waitid's own siginfo_t (written by the worker thread). */
const blockedInfo = new Uint8Array(128);
const blockedView = new DataView(blockedInfo.buffer);

/** How many ask for prompt reaping now (see `promptReaping`). */
let promptDemand = 0;
/** True while the blocked waitid is in flight. */
let armed = false;

/** The lazy timer's delay: first, and at most. */
const LAZY_FIRST_MS = 10;
const LAZY_MAX_MS = 1000;
let lazyMs = LAZY_FIRST_MS;
/** True while the lazy timer is set. */
let lazyArmed = false;
/** The pids of `waiting` whose end someone awaits (statusOf): the lazy timer skips them. */
const promptPids = new Set<number>();

/** Reaps pid if it ended; true when it did. */
function reapOne(pid: number, done: (wstat: number) => void): boolean {
  const r = L().waitpid(pid, statusBuf, WNOHANG);
  if (r === pid || (r < 0 && errno() === E.ECHILD)) {
    waiting.delete(pid);
    promptPids.delete(pid);
    done(r === pid ? statusBuf[0] : 0);
    return true;
  }
  return false;
}

/**
 * Reaps every program of ours that ended, now (one waitid when none has):
 * waitid(WNOWAIT) names an ended child without reaping it; ours is reaped
 * and the next one asked for. A child that is not ours (Deno's own, about
 * to be reaped by Deno) would be named again and again: then, as when
 * waitid fails, every pid of ours is asked in turn.
 */
export function reapEnded(): void {
  if (waiting.size === 0) return;
  const l = L();
  for (;;) {
    siginfo.fill(0);
    if (l.waitid(P_ALL, 0, siginfo, WEXITED | WNOHANG | WNOWAIT) !== 0) break;
    const pid = siginfoView.getInt32(16, true);
    if (pid === 0) return; // no child has ended
    const done = waiting.get(pid);
    if (done === undefined || !reapOne(pid, done)) break;
  }
  for (const [pid, done] of waiting) reapOne(pid, done);
}

/**
 * Adds pid (just started) to the programs reaped here; done gets its wait
 * status. Its end is noticed promptly while `promptReaping` is asked for, else
 * lazily (see the module comment).
 */
export function watch(pid: number, done: (wstat: number) => void): void {
  waiting.set(pid, done);
  if (promptDemand > 0) arm();
  if (!lazyArmed && !promptPids.has(pid)) lazyAfter(LAZY_FIRST_MS);
}

/** Whether a program reaped lazily still runs (one not in promptPids). */
function lazyRunning(): boolean {
  return waiting.size > promptPids.size;
}

function lazyAfter(ms: number): void {
  lazyMs = ms;
  lazyArmed = true;
  const t = setTimeout(lazyTick, ms);
  // the programs run on their own: the timer keeps no process alive
  Deno.unrefTimer(t);
}

function lazyTick(): void {
  lazyArmed = false;
  const before = waiting.size;
  reapEnded();
  if (!lazyRunning()) return;
  lazyAfter(waiting.size < before ? LAZY_FIRST_MS : Math.min(LAZY_MAX_MS, 2 * lazyMs));
}

/**
 * Asks for ends to be noticed as they happen until the returned function is
 * called (once; later calls do nothing).
 */
export function promptReaping(): () => void {
  promptDemand++;
  reapEnded();
  arm();
  let given = false;
  return () => {
    if (given) return;
    given = true;
    promptDemand--;
  };
}

/** The wait status of `pid` (just started), noticed promptly. */
export function statusOf(pid: number): Promise<number> {
  promptPids.add(pid);
  const done = promptReaping();
  return new Promise((resolve) =>
    watch(pid, (wstat) => {
      done();
      resolve(wstat);
    })
  );
}

/** Keeps one blocked waitid in flight while prompt reaping is asked for and programs run. */
function arm(): void {
  if (armed || promptDemand === 0 || waiting.size === 0) return;
  armed = true;
  blockedInfo.fill(0);
  L().waitid_blocking(P_ALL, 0, blockedInfo, WEXITED | WNOWAIT).then((r) => {
    armed = false;
    const pid = blockedView.getInt32(16, true);
    const foreign = r === 0 && pid !== 0 && !waiting.has(pid);
    reapEnded();
    if (foreign && waiting.size > 0) {
      // Deno's own child, not yet reaped by Deno: waiting again at once
      // would return at once; look again shortly.
      setTimeout(arm, 10);
    } else arm();
  }, () => {
    armed = false;
  });
}
