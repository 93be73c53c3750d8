/**
 * A tool's core as a stage: a function over the connection's streams and the
 * environment that either ends the conversation ({ exit }) or names the next
 * program to run ({ next }). The same stage runs as a process (cli/, io is
 * stdin/stdout/stderr) or in-process inside tcpserver (io is the connection).
 */

/** The byte streams a stage talks over, and where its log lines go. */
export interface Io {
  /** What the client sends (fd 0 as a process). */
  input: ReadableStream<Uint8Array>;
  /** What goes to the client (fd 1 as a process). */
  output: WritableStream<Uint8Array>;
  /**
   * Writes one line (newline added) to the log (stderr). Lines that carry
   * connection data (recordio) are byte strings, one char (0-255) per byte:
   * writers should encode them with `logLineBytes` from lib/core/log.ts.
   */
  log: (line: string) => void;
  /**
   * Called by the runner (runPumped) with the pid of the program it spawned
   * over this io, before any data flows. Transform stages forward it to the
   * io they wrapped; recordio prints this pid, as DJB's does.
   */
  started?: (pid: number) => void;
}

/**
 * Done with an exit status, or run argv next. `argv0` replaces the name the
 * next program sees as argv[0] (the argv0 tool). `io`, when a transform stage
 * (fixcrio, recordio) wrapped the streams, is what the next program must talk
 * over; without it the next program talks over the stage's own io unchanged.
 */
export type Outcome =
  | { exit: number }
  | { next: string[]; argv0?: string; io?: Io };

/** A stage. It may edit `env`, the environment the next program gets. */
export type Stage = (argv: string[], env: Map<string, string>, io: Io) => Promise<Outcome>;
