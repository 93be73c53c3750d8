/**
 * The one entry point, busybox style: runs the tool named by the basename of
 * argv[0] (a symlink to the compiled binary, or `exec -a NAME deno run mod.ts`),
 * otherwise the tool named by the first argument. `--list` prints the tool
 * names; `install DIR` makes the tool-name links in DIR. This is the only
 * place that writes a fatal error and exits.
 */
import process from "node:process";
import { toolNames, TOOLS } from "./cli/tools.ts";
import { errorText, ToolError } from "./lib/errors.ts";
import { installLinks } from "./lib/install.ts";

const SELF = "ucspi-tcp";

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

async function run(argv0: string, args: string[]): Promise<number> {
  let name = basename(argv0);
  if (!(name in TOOLS)) {
    const first = args[0];
    if (first === "--list") {
      console.log(toolNames().join("\n"));
      return 0;
    }
    if (first === "install") {
      if (args.length !== 2) throw new ToolError(`${SELF}: usage: ${SELF} install DIR`, 100);
      const made = await installLinks(args[1], toolNames());
      for (const line of made) console.log(line);
      return 0;
    }
    if (first === undefined || !(basename(first) in TOOLS)) {
      throw new ToolError(
        `${SELF}: usage: ${SELF} TOOL [arg ...] | --list | install DIR` +
          (first === undefined ? "" : `\n${SELF}: unknown tool: ${first}`),
        100,
      );
    }
    name = basename(first);
    args = args.slice(1);
  }
  const tool = await TOOLS[name]();
  try {
    return await tool.main(args);
  } catch (e) {
    if (e instanceof ToolError) throw e;
    throw new ToolError(`${name}: fatal: ${errorText(e)}`, 111);
  }
}

if (import.meta.main) {
  let code: number;
  try {
    code = await run(process.argv0, Deno.args);
  } catch (e) {
    if (e instanceof ToolError) {
      await Deno.stderr.write(new TextEncoder().encode(e.message + "\n"));
      code = e.exitCode;
    } else {
      await Deno.stderr.write(new TextEncoder().encode(`${SELF}: fatal: ${errorText(e)}\n`));
      code = 111;
    }
  }
  Deno.exit(code);
}
