/**
 * `ucspi-tcp install DIR`: one link per tool name to this executable, as a
 * busybox install does. Under `deno run` (no compiled binary) a link to the
 * deno executable would run deno itself, so a two-line wrapper script that
 * execs `deno run` with the tool name as argv[0] is written instead.
 */
export async function installLinks(dir: string, names: string[]): Promise<string[]> {
  const exe = Deno.execPath();
  const compiled = !/(^|\/)deno(\.exe)?$/.test(exe);
  const mod = new URL("../mod.ts", import.meta.url);
  const made: string[] = [];
  for (const name of names) {
    const path = `${dir}/${name}`;
    try {
      await Deno.remove(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    if (compiled) {
      await Deno.symlink(exe, path);
      made.push(`${path} -> ${exe}`);
    } else {
      const script = `#!/bin/bash\nexec -a '${name}' '${exe}' run -A '${mod.pathname}' "$@"\n`;
      await Deno.writeTextFile(path, script, { mode: 0o755 });
      made.push(`${path} (wrapper for ${mod.pathname})`);
    }
  }
  return made;
}
