/**
 * A supervisor's signals passed on to the program we run: DJB's tools exec
 * it, so it gets them; we stay alive to report its status, so we forward.
 */

/**
 * The signals a supervisor sends to what it thinks is the program (svc -t,
 * -h, -a, -1, -2, -i, -c): DJB's tools exec, so the program gets them.
 */
export const FORWARDED: Deno.Signal[] = [
  "SIGTERM",
  "SIGHUP",
  "SIGALRM",
  "SIGUSR1",
  "SIGUSR2",
  "SIGINT",
  "SIGCONT",
];

/**
 * Passes the supervisor's signals on to the program: we stay alive until it
 * exits and report its status. Listening starts at once, so a signal that
 * comes while the program is being started is held and delivered when
 * `attach` names its pid. `detach` restores the default handling.
 */
export function forwardSignals(): { attach: (pid: number) => void; detach: () => void } {
  let pid: number | undefined;
  const held: Deno.Signal[] = [];
  const send = (sig: Deno.Signal) => {
    try {
      Deno.kill(pid!, sig);
    } catch { /* already gone */ }
  };
  const installed: [Deno.Signal, () => void][] = [];
  for (const sig of FORWARDED) {
    const handler = () => pid === undefined ? held.push(sig) : send(sig);
    try {
      Deno.addSignalListener(sig, handler);
      installed.push([sig, handler]);
    } catch { /* not supported here */ }
  }
  return {
    attach(p) {
      pid = p;
      for (const sig of held.splice(0)) send(sig);
    },
    detach() {
      for (const [sig, handler] of installed) Deno.removeSignalListener(sig, handler);
      installed.length = 0;
    },
  };
}
