/**
 * Environment values are byte strings (lib/core/bytes.ts), but Deno.Command and
 * node:child_process take only text and pass its UTF-8 encoding. So
 * (textCommand) a variable whose name and value are valid UTF-8 is passed
 * decoded, which gives the program the same bytes; when one is not (a rules
 * value U="\xe4"), the program is started through `/bin/sh -c`: the script
 * builds each such entry with printf octal escapes (`\344`, all ASCII) and
 * ends in `exec env -i -- ENTRY... NAME ARG...`, so the program gets exactly
 * the environment asked for (env -i: none of the shell's own variables, no
 * PWD, names the shell could not hold kept) under its own name as argv[0]
 * (env finds it by the new PATH, as DJB's pathexec). Measured with dash and
 * bash: every byte 1-255 (0x80-0x9f included) and trailing newlines arrive
 * unchanged. This costs two extra execs for such connections only, needs
 * run permission for /bin/sh (without it the program is not started: a
 * NotCapable error names the variable) and keeps the escaped entries under
 * Linux's 128 KiB limit for one argument. The native path (lib/native/native.ts)
 * needs none of this: it builds envp from the bytes.
 */
import { byteStringText } from "../core/bytes.ts";
import { execEnvironment } from "../core/environ.ts";

/** How to start a program through an API that takes only text. */
export interface TextCommand {
  /** The file to start. */
  command: string;
  /** Its arguments after argv[0]. */
  args: string[];
  /** The whole environment (clearEnv), or undefined to inherit ours. */
  env: Record<string, string> | undefined;
  /** argv[0] the program must see when it is not `command` (node's argv0). */
  argv0?: string;
}

/** The shell the byte-exact start goes through. */
export const BYTE_SHELL = "/bin/sh";

/**
 * How to start `file` with args, env (byte strings) and argv0 through
 * Deno.Command or node's spawn so that the program receives exactly env's
 * bytes (see the module comment): the plain command when every name and
 * value is UTF-8, else BYTE_SHELL's script. Throws (NotCapable naming the
 * variable) when the script is needed but cannot be run or cannot keep
 * argv0.
 */
export function textCommand(
  file: string,
  args: string[],
  env: Map<string, string> | undefined,
  argv0?: string,
): TextCommand {
  const same = argv0 === undefined || argv0 === file ? undefined : argv0;
  if (env === undefined) return { command: file, args, env: undefined, argv0: same };
  const entries = execEnvironment(env);
  const text: Record<string, string> = {};
  let odd: string | undefined;
  for (const [name, value] of entries) {
    const n = byteStringText(name);
    const v = byteStringText(value);
    if (n === null || v === null) {
      odd ??= name;
      continue;
    }
    text[n] = v;
  }
  if (odd === undefined) return { command: file, args, env: text, argv0: same };
  return shellCommand(file, args, entries, argv0 ?? file, odd, env);
}

function shellCommand(
  file: string,
  args: string[],
  entries: Array<[string, string]>,
  name: string,
  odd: string,
  env: Map<string, string>,
): TextCommand {
  const why = `to pass $${odd}, whose bytes are not UTF-8`;
  if (Deno.permissions.querySync({ name: "run", command: BYTE_SHELL }).state !== "granted") {
    throw new Deno.errors.NotCapable(
      `Requires run access to "${BYTE_SHELL}" ${why}, run again with the --allow-run flag`,
    );
  }
  // Deno refuses these to a program unless --allow-run is unrestricted; the
  // script must not be a way around that.
  const guarded = entries.find(([n]) => n.startsWith("LD_") || n.startsWith("DYLD_"));
  if (guarded && Deno.permissions.querySync({ name: "run" }).state !== "granted") {
    throw new Deno.errors.NotCapable(
      `Requires --allow-run permissions to spawn subprocess with ${
        guarded[0]
      } environment variable`,
    );
  }
  // env execs `name` found by the new PATH (keeping it as argv[0]): only
  // when that is `file` (and env cannot take the name for an assignment).
  if (name.includes("=") || (name !== file && !execFinds(name, file, env))) {
    throw new Error(`unable ${why}: ${name} does not name ${file} (use the native path)`);
  }
  let script = "";
  const built: string[] = [];
  const plain: string[] = [];
  entries.forEach(([n, v], i) => {
    const entry = n + "=" + v;
    const t = byteStringText(entry);
    if (t !== null) {
      plain.push(t);
      return;
    }
    // the "x" keeps trailing newlines from the command substitution
    script += `e${i}=$(printf '${octalEscaped(entry)}x'); e${i}=\${e${i}%x}; `;
    built.push(`"$e${i}"`);
  });
  script += `exec env -i -- ${built.join(" ")} "$@"`;
  return {
    command: BYTE_SHELL,
    args: ["-c", script, "sh", ...plain, name, ...args],
    env: { PATH: "/usr/bin:/bin" },
  };
}

/** s (a byte string) as a printf format printing its bytes: [A-Za-z0-9] as is, others \ooo. */
export function octalEscaped(s: string): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) & 0xff;
    const alnum = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
    out += alnum ? s[i] : "\\" + c.toString(8).padStart(3, "0");
  }
  return out;
}

/** Whether execvp(name) under env's PATH runs `file` (same file after symlinks). */
function execFinds(name: string, file: string, env: Map<string, string>): boolean {
  try {
    const want = Deno.realPathSync(file);
    if (name.includes("/")) return Deno.realPathSync(name) === want;
    const path = byteStringText(env.get("PATH") ?? "/bin:/usr/bin") ?? "";
    for (const dir of path.split(":")) {
      const f = `${dir === "" ? "." : dir}/${name}`;
      let info: Deno.FileInfo;
      try {
        info = Deno.statSync(f);
      } catch {
        continue; // not there (or not searchable): execvp tries the next entry too
      }
      if (!info.isFile || ((info.mode ?? 0o111) & 0o111) === 0) continue;
      return Deno.realPathSync(f) === want;
    }
  } catch { /* cannot tell: no */ }
  return false;
}
