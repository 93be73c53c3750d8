/**
 * Runs the program of a connection: tcpserver hands every accepted
 * connection's argv, environment and io here. Today it spawns argv[0] with
 * the connection pumped to its stdin/stdout; chaining our own tools
 * in-process (rblsmtpd, fixcrio, recordio, argv0) plugs in here.
 */
import { type Ended, runPumped } from "./spawn.ts";
import type { Io } from "./stage.ts";

/** Runs argv over io with env; resolves when it ended and io was flushed. */
export function runConnectionProgram(
  argv: string[],
  env: Map<string, string>,
  io: Io,
): Promise<Ended> {
  return runPumped(argv, env, io);
}
