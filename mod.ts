/**
 * The one entry point, busybox style: runs the tool named by the basename of
 * argv[0] (a symlink to the compiled binary, or `exec -a NAME deno run mod.ts`),
 * otherwise the tool named by the first argument. `--list` prints the tool
 * names; `install [-f] DIR` makes the tool-name entries in DIR (lib/install/install.ts),
 * `install --man DIR` writes the manual pages (lib/install/man_pages.ts) there;
 * `--help` and `--version` say what this is. This is the only place that
 * writes a fatal error and exits.
 */
import { toolNames, TOOLS } from "./cli/tools.ts";
import { errorText, ToolError, toolErrorBytes } from "./lib/core/errors.ts";

const SELF = "ucspi-tcp";

/** This implementation's version (DJB's tools it follows are 0.88). */
export const VERSION = "0.88-deno.1";

const USAGE =
  `${SELF}: usage: ${SELF} TOOL [arg ...] | --list | --help | --version | install [-f] [--man] DIR`;

function help(): string {
  return [
    `${SELF} ${VERSION}: D. J. Bernstein's ucspi-tcp tools (with the IPv6, limits, TLS and PROXY`,
    `additions mail administrators patch in) in one Deno program.`,
    ``,
    `Run a tool as a link named after it (made by \`${SELF} install DIR\`), or as`,
    `  ${SELF} TOOL [arg ...]`,
    ``,
    `  --list            print the tool names`,
    `  install [-f] DIR  one entry per tool in DIR; -f replaces files that are not ours`,
    `  install --man DIR the manual pages, into DIR/man1 and DIR/man5 (man ucspi-tcp)`,
    `  --version         print the version`,
    ``,
    `Tools: ${toolNames().join(" ")}`,
  ].join("\n");
}

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
    if (first === "--help" || first === "-h") {
      console.log(help());
      return 0;
    }
    if (first === "--version") {
      console.log(`${SELF} ${VERSION} (Deno ${Deno.version.deno})`);
      return 0;
    }
    if (first === "install") {
      // install [-f] [--man] DIR: -f replaces files that are not ours; --man
      // writes the manual pages (DIR/man1, DIR/man5) instead of the tools.
      let force = false, man = false, i = 1;
      for (; args[i] === "-f" || args[i] === "--man"; i++) {
        if (args[i] === "-f") force = true;
        else man = true;
      }
      const rest = args.slice(i);
      if (rest.length !== 1) {
        throw new ToolError(`${SELF}: usage: ${SELF} install [-f] [--man] DIR`, 100);
      }
      const { installLinks, installManPages } = await import("./lib/install/install.ts");
      const lines = man
        ? installManPages(rest[0], (await import("./lib/install/man_pages.ts")).MAN_PAGES, {
          force,
        })
        : installLinks(rest[0], toolNames(), { force });
      for (const line of lines) console.log(line);
      return 0;
    }
    if (first === undefined || !(basename(first) in TOOLS)) {
      throw new ToolError(
        USAGE + (first === undefined ? "" : `\n${SELF}: unknown tool: ${first}`),
        100,
      );
    }
    name = basename(first);
    args = args.slice(1);
  }
  // Long-running servers are what admins look for with pgrep and top.
  if (name === "tcpserver" || name === "sslserver") {
    (await import("./lib/native/procname.ts")).setProcessName(name);
    // On the native path the supervised process is a front and the server
    // its child, so a restart never waits for sessions (lib/server/front.ts).
    const front = await import("./lib/server/front.ts");
    if (front.frontWanted()) {
      const { stderrLine } = await import("./lib/core/log.ts");
      // sslserver re-reads its certificate at SIGHUP; tcpserver dies of it, as C's.
      const forward: Deno.Signal[] = name === "sslserver" ? ["SIGHUP"] : [];
      const code = await front.runFront(name, stderrLine, forward);
      if (code !== null) return code;
    }
  }
  const tool = await TOOLS[name]();
  try {
    return await tool.main(args);
  } catch (e) {
    if (e instanceof ToolError) throw e;
    throw new ToolError(`${name}: fatal: ${errorText(e)}`, 111);
  }
}

/**
 * argv[0] as the kernel got it (the link's name, or `exec -a NAME`). Read
 * from /proc/self/cmdline when allowed: node:process, which has it too,
 * costs a tool about 10 ms of start-up to load the Node compatibility layer.
 */
async function argv0(): Promise<string> {
  const cmdline = "/proc/self/cmdline";
  try {
    if (Deno.permissions.querySync({ name: "read", path: cmdline }).state === "granted") {
      const b = Deno.readFileSync(cmdline);
      const nul = b.indexOf(0);
      return new TextDecoder().decode(nul < 0 ? b : b.subarray(0, nul));
    }
  } catch { /* not Linux, no /proc: Node's view below */ }
  return (await import("node:process")).default.argv0;
}

if (import.meta.main) {
  let code: number;
  try {
    code = await run(await argv0(), Deno.args);
  } catch (e) {
    if (e instanceof ToolError) {
      await Deno.stderr.write(toolErrorBytes(e));
      code = e.exitCode;
    } else {
      await Deno.stderr.write(new TextEncoder().encode(`${SELF}: fatal: ${errorText(e)}\n`));
      code = 111;
    }
  }
  Deno.exit(code);
}
