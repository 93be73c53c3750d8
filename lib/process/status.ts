/**
 * How a program ended, in the three forms we meet it: Node's (code or
 * signal name), the wait(2) status word (the native path), and the exit
 * status a shell would report (what a tool that ran it exits with).
 */

/** How the next program ended: an exit code, or the signal that killed it. */
export interface Ended {
  /** The exit code, or null when a signal ended it. */
  code: number | null;
  /** The signal's name ("SIGTERM"), or null when it exited. */
  signal: string | null;
}

/** The exit status a shell would report: the code, or 128 + signal number. */
export function statusOf(ended: Ended): number {
  if (ended.code !== null) return ended.code;
  const n = ended.signal ? SIGNAL_NUMBERS[ended.signal] ?? 0 : 0;
  return 128 + n;
}

/** Linux signal numbers by name. */
export const SIGNAL_NUMBERS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGSTKFLT: 16,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPWR: 30,
  SIGSYS: 31,
};

/** A wait(2) status as an Ended (exit code, or the signal's name). */
export function endedOf(wstat: number): Ended {
  const sig = wstat & 0x7f;
  if (sig === 0) return { code: (wstat >> 8) & 0xff, signal: null };
  const name = Object.keys(SIGNAL_NUMBERS).find((k) => SIGNAL_NUMBERS[k] === sig);
  return { code: null, signal: name ?? `SIG${sig}` };
}

/** The wait(2) status word for an exit code or a terminating signal. */
export function waitStatus(ended: Ended): number {
  if (ended.code !== null) return (ended.code & 0xff) << 8;
  return ended.signal ? SIGNAL_NUMBERS[ended.signal] ?? 0 : 0;
}
