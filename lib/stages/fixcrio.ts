/**
 * fixcrio as a stage: the next program's input and output both get a CR
 * inserted before every LF that lacks one, as DJB's fixcrio does.
 */
import { fixcrConverter, pullThrough, writeThrough } from "./crlf.ts";
import { usage } from "../core/errors.ts";
import type { Io, Outcome, Stage } from "./stage.ts";

/** The usage line's text after "fixcrio: usage: ". */
export const FIXCRIO_USAGE = "fixcrio program [ arg ... ]";

/** Wraps io so both directions have their missing CRs inserted. */
export function fixcrioIo(io: Io): Io {
  return {
    input: pullThrough(io.input, fixcrConverter()),
    output: writeThrough(io.output, fixcrConverter()),
    log: io.log,
    started: (pid) => io.started?.(pid),
  };
}

/**
 * `fixcrio program [arg ...]` (argv without "fixcrio"): no options, as in
 * DJB's (a leading "-x" or "--" is the program). Returns the program to run
 * over the fixed io; throws the usage ToolError (exit 100) without one.
 */
export const fixcrioStage: Stage = (argv, _env, io): Promise<Outcome> => {
  if (argv.length === 0) return Promise.reject(usage("fixcrio", FIXCRIO_USAGE));
  return Promise.resolve({ next: argv, io: fixcrioIo(io) });
};
