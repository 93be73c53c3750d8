/**
 * POSIX option parsing as DJB's sgetopt does it: options end at the first
 * non-option or at `--`; flags group (`-Rt5`, `-hp`); an option's argument is
 * the rest of the word or the next word (`-Bbanner`, `-x rules.cdb`).
 */
import { ToolError } from "./errors.ts";

/** One parsed option: its letter and, for options taking one, its argument. */
export interface Option {
  /** The option's letter. */
  letter: string;
  /** Its argument ("" for a flag). */
  value: string;
}

/** What getopt found: the options in order and the operands. */
export interface Parsed {
  /** The options, in the order given. */
  options: Option[];
  /** The operands after the options. */
  rest: string[];
}

/**
 * Parses `args` by `spec` (letters, a `:` after a letter taking an argument).
 * On a bad option throws a ToolError with sgetopt's line and the usage line, exit 100.
 */
export function getopt(prog: string, args: string[], spec: string, usageText: string): Parsed {
  const options: Option[] = [];
  let i = 0;
  const bad = (line: string) => new ToolError(`${line}\n${prog}: usage: ${usageText}`, 100);
  while (i < args.length) {
    const word = args[i];
    if (word === "--") {
      i++;
      break;
    }
    if (word.length < 2 || word[0] !== "-") break;
    i++;
    for (let j = 1; j < word.length; j++) {
      const letter = word[j];
      const at = letter === ":" ? -1 : spec.indexOf(letter);
      if (at < 0) throw bad(`${prog}: illegal option -- ${letter}`);
      if (spec[at + 1] === ":") {
        let value = word.slice(j + 1);
        if (value === "") {
          if (i >= args.length) throw bad(`${prog}: option requires an argument -- ${letter}`);
          value = args[i++];
        }
        options.push({ letter, value });
        break;
      }
      options.push({ letter, value: "" });
    }
  }
  return { options, rest: args.slice(i) };
}

/** DJB's scan_ulong: the leading decimal digits of s as a number (0 if none). */
export function scanUlong(s: string): number {
  let n = 0;
  for (const c of s) {
    if (c < "0" || c > "9") break;
    n = n * 10 + (c.charCodeAt(0) - 48);
  }
  return n;
}
