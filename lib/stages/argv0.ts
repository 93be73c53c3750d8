/** argv0 as a stage: run realname with a chosen argv[0]. */
import { usage } from "../core/errors.ts";
import type { Outcome, Stage } from "./stage.ts";

/** The usage line's text after "argv0: usage: ". */
export const ARGV0_USAGE = "argv0 realname program [ arg ... ]";

/**
 * `argv0 realname program [arg ...]` (argv without "argv0"): no options, as
 * in DJB's. Returns realname to run (found by PATH as DJB's pathexec does)
 * with `program` as its argv[0]; throws the usage ToolError (exit 100) with
 * fewer than two arguments.
 */
export const argv0Stage: Stage = (argv): Promise<Outcome> => {
  if (argv.length < 2) return Promise.reject(usage("argv0", ARGV0_USAGE));
  const [realname, program, ...args] = argv;
  return Promise.resolve({ next: [realname, ...args], argv0: program });
};
