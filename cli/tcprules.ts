/**
 * tcprules rules.cdb rules.tmp: compiles the rules on stdin into rules.tmp,
 * fsyncs it and renames it over rules.cdb, as DJB's tcprules (same records,
 * same bytes). On a bad line: DJB's message plus the line number, exit 111
 * (C exits 100), rules.tmp removed,
 * rules.cdb untouched.
 */
import { fatalSys, ToolError, usage } from "../lib/core/errors.ts";
import { CdbFile } from "../lib/rules/cdb.ts";
import { RuleCompiler, RuleSyntaxError } from "../lib/rules/compile.ts";

const PROG = "tcprules";
const FATAL = `${PROG}: fatal: `;

/**
 * Reads stdin in large chunks into the compiler: the complete lines of each
 * chunk at once (RuleCompiler.lines), the unfinished rest moved to the front
 * for the next read, a last line without a newline on its own.
 */
function compileInput(compiler: RuleCompiler): void {
  let buf = new Uint8Array(1 << 20);
  let fill = 0;
  for (;;) {
    if (fill === buf.length) {
      const bigger = new Uint8Array(buf.length * 2);
      bigger.set(buf);
      buf = bigger;
    }
    let n: number | null;
    try {
      n = Deno.stdin.readSync(buf.subarray(fill));
    } catch (e) {
      throw fatalSys(PROG, "unable to read input", e);
    }
    if (n === null || n === 0) break;
    fill += n;
    const rest = compiler.lines(buf, 0, fill);
    if (rest > 0) {
      buf.copyWithin(0, rest, fill);
      fill -= rest;
    }
  }
  if (fill > 0) compiler.line(buf, 0, fill);
}

/**
 * Runs tcprules with args (rules.cdb, rules.tmp) on stdin; resolves 0 once rules.cdb is replaced,
 * else throws (100 usage, 111).
 */
export function main(args: string[]): Promise<number> {
  const fn = args[0];
  const fntemp = args[1];
  if (fn === undefined || fntemp === undefined) {
    throw usage(PROG, "tcprules rules.cdb rules.tmp");
  }
  let out: CdbFile;
  try {
    out = new CdbFile(fntemp);
  } catch (e) {
    throw fatalSys(PROG, `unable to create ${fntemp}`, e);
  }
  const writeError = (e: unknown) => fatalSys(PROG, `unable to write to ${fntemp}`, e);
  let compiler: RuleCompiler | undefined;
  try {
    // The cdb is the compiler's sink: its errors (the 4 GiB limit, write
    // errors) are not RuleSyntaxErrors and so become "unable to write" below.
    compiler = new RuleCompiler(out);
    compileInput(compiler);
    compiler.finish();
    try {
      out.finish();
    } catch (e) {
      throw writeError(e);
    }
  } catch (e) {
    out.close();
    try {
      Deno.removeSync(fntemp);
    } catch { /* already gone */ }
    // C says "unable to parse this line: LINE" and exits 100; we name the line
    // number too and exit 111, as the project's rule for bad input asks. The
    // line is shown as its bytes, as C's (a byte string: not text).
    if (e instanceof RuleSyntaxError) {
      throw new ToolError(
        `${FATAL}unable to parse line ${compiler?.lineCount}: ${e.line}`,
        111,
        true,
      );
    }
    if (e instanceof ToolError) throw e;
    throw writeError(e);
  }
  try {
    Deno.renameSync(fntemp, fn);
  } catch (e) {
    throw fatalSys(PROG, `unable to move ${fntemp} to ${fn}`, e);
  }
  return Promise.resolve(0);
}
