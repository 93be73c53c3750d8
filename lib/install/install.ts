/**
 * `ucspi-tcp install [-f] DIR`: one entry per tool name in DIR, as a busybox
 * install does, that every user can run (`setuidgid nobody addcr` must work,
 * whoever installed it).
 *
 * - A compiled binary (`Deno.build.standalone`): each entry is a symlink to it.
 * - Under `deno run`, a link to the deno executable would run deno itself, and
 *   that deno usually lives in the installing user's npm cache, unreadable by
 *   others. So the runtime is copied once into DIR/.ucspi-tcp/ (hard-linked
 *   when on the same file system): the deno executable, mod.ts, cli/, lib/ and
 *   deno.json, all world-readable; each entry is a small bash wrapper that
 *   execs that copy with the tool's name as argv[0].
 *
 * An entry already in DIR is replaced only when it is one of ours (a symlink
 * to this binary, or a wrapper carrying WRAPPER_MARK), unless `force`: pointed
 * at /usr/bin, install must not silently overwrite Debian's C tools.
 *
 * `ucspi-tcp install --man DIR` (installManPages) writes the manual pages
 * into DIR/man1 and DIR/man5 instead, from texts the caller passes
 * (lib/install/man_pages.ts embeds them), so it reads no file at run time and works
 * from a compiled binary too.
 */
import { fileURLToPath } from "node:url";
import { ToolError } from "../core/errors.ts";

/** The line every wrapper carries; lib/stages/chain.ts recognises our wrappers by it. */
export const WRAPPER_MARK = "# ucspi-tcp wrapper";

/** The folder, inside DIR, that holds the copied runtime of a non-compiled install. */
export const RUNTIME_DIR = ".ucspi-tcp";

/** The first line of every manual page of ours; install --man replaces only such pages. */
export const MAN_MARK = '.\\" ucspi-tcp (Deno) manual page';

/** What an install may do. */
export interface InstallOptions {
  /** Replace entries that are not ours (-f). */
  force?: boolean;
}

/** The message for a failed step on `path`, naming it as DJB's tools do. */
function failure(what: string, path: string, e: unknown): ToolError {
  let why = e instanceof Error ? e.message : String(e);
  if (e instanceof Deno.errors.NotFound) why = "file does not exist";
  else if (e instanceof Deno.errors.PermissionDenied) why = "permission denied";
  else if (e instanceof Deno.errors.AlreadyExists) why = "file already exists";
  return new ToolError(`ucspi-tcp: fatal: unable to ${what} ${path}: ${why}`, 111);
}

/** True when `path` is an entry an earlier install of ours made. */
function isOurEntry(path: string, self: string | null): boolean {
  try {
    const info = Deno.lstatSync(path);
    if (info.isSymlink) {
      return self !== null && Deno.realPathSync(path) === self;
    }
    if (!info.isFile || info.size > 4096) return false;
    return Deno.readTextFileSync(path).includes(`\n${WRAPPER_MARK}\n`);
  } catch {
    return false;
  }
}

/** Removes `path` when it is ours (or `force`); refuses a foreign file. */
function clearEntry(path: string, self: string | null, force: boolean): void {
  try {
    Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw failure("stat", path, e);
  }
  if (!force && !isOurEntry(path, self)) {
    throw new ToolError(
      `ucspi-tcp: fatal: unable to create ${path}: file already exists and is not ours (use -f to replace it)`,
      111,
    );
  }
  try {
    Deno.removeSync(path);
  } catch (e) {
    throw failure("remove", path, e);
  }
}

/** Copies (or hard-links) file `from` to `to`, world-readable with `mode`. */
function placeFile(from: string, to: string, mode: number): void {
  try {
    Deno.removeSync(to);
  } catch { /* not there yet */ }
  try {
    Deno.linkSync(from, to);
    // A hard link shares the source's mode: only use it when others may read it.
    if ((Deno.statSync(to).mode! & 0o005) === 0o005) return;
    Deno.removeSync(to);
  } catch { /* other file system, or not allowed: copy */ }
  try {
    Deno.copyFileSync(from, to);
    Deno.chmodSync(to, mode);
  } catch (e) {
    throw failure("create", to, e);
  }
}

/** Copies the source tree folder `rel` (TypeScript and JSON only) from `root` into `dest`. */
function copyTree(root: string, dest: string, rel: string): void {
  const into = `${dest}/${rel}`;
  try {
    Deno.mkdirSync(into, { recursive: true, mode: 0o755 });
    Deno.chmodSync(into, 0o755);
  } catch (e) {
    throw failure("create", into, e);
  }
  for (const e of Deno.readDirSync(`${root}/${rel}`)) {
    const name = `${rel}/${e.name}`;
    if (e.isDirectory) copyTree(root, dest, name);
    else if (/\.(ts|json)$/.test(e.name) && !/_test\.ts$/.test(e.name)) {
      placeFile(`${root}/${name}`, `${dest}/${name}`, 0o644);
    }
  }
}

/** A shell single-quoted word. */
function quote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** The wrapper script for tool `name` running the runtime copied into `runtime`. */
export function wrapperScript(name: string, runtime: string): string {
  return `#!/bin/bash\n${WRAPPER_MARK}\nexec -a ${quote(name)} ${quote(`${runtime}/deno`)} run -A ${
    quote(`${runtime}/mod.ts`)
  } "$@"\n`;
}

/**
 * Installs an entry for each of `names` in `dir`; returns one line per entry
 * for the user. Throws a ToolError (exit 111) naming the path on failure.
 */
export function installLinks(dir: string, names: string[], opts: InstallOptions = {}): string[] {
  const exe = Deno.execPath();
  const compiled = Deno.build.standalone;
  const self = compiled ? Deno.realPathSync(exe) : null;
  try {
    if (!Deno.statSync(dir).isDirectory) throw new Deno.errors.NotADirectory("not a directory");
  } catch (e) {
    throw failure("install into", dir, e);
  }
  const made: string[] = [];
  let runtime = "";
  if (!compiled) {
    runtime = `${dir}/${RUNTIME_DIR}`;
    const root = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");
    try {
      Deno.mkdirSync(runtime, { recursive: true, mode: 0o755 });
      Deno.chmodSync(runtime, 0o755);
    } catch (e) {
      throw failure("create", runtime, e);
    }
    placeFile(exe, `${runtime}/deno`, 0o755);
    placeFile(`${root}/mod.ts`, `${runtime}/mod.ts`, 0o644);
    placeFile(`${root}/deno.json`, `${runtime}/deno.json`, 0o644);
    copyTree(root, runtime, "cli");
    copyTree(root, runtime, "lib");
    made.push(`${runtime} (deno ${Deno.version.deno} and the tools' sources)`);
  }
  for (const name of names) {
    const path = `${dir}/${name}`;
    clearEntry(path, self, opts.force ?? false);
    try {
      if (compiled) {
        Deno.symlinkSync(exe, path);
        made.push(`${path} -> ${exe}`);
      } else {
        Deno.writeTextFileSync(path, wrapperScript(name, runtime), { mode: 0o755 });
        Deno.chmodSync(path, 0o755);
        made.push(`${path} (wrapper)`);
      }
    } catch (e) {
      throw failure("create", path, e);
    }
  }
  return made;
}

/** True when `path` is a regular file holding one of our manual pages. */
function isOurPage(path: string): boolean {
  try {
    const info = Deno.lstatSync(path);
    if (!info.isFile || info.size > 1 << 20) return false;
    return Deno.readTextFileSync(path).startsWith(`${MAN_MARK}\n`);
  } catch {
    return false;
  }
}

/** Makes `path` a directory (0755 when we create it); an existing directory is kept as it is. */
function manDir(path: string): void {
  try {
    Deno.mkdirSync(path, { mode: 0o755 });
    Deno.chmodSync(path, 0o755);
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw failure("create", path, e);
    let dir = false;
    try {
      dir = Deno.statSync(path).isDirectory;
    } catch (e2) {
      throw failure("create", path, e2);
    }
    if (!dir) throw failure("create", path, new Deno.errors.AlreadyExists("not a directory"));
  }
}

/**
 * Writes `pages` (path under a man directory such as "man1/tcpserver.1" ->
 * roff text) into `dir`, world-readable (0644; the man1/man5 folders 0755
 * when created). A file already there is replaced only when it is one of our
 * pages (it starts with MAN_MARK), unless `force`. Each page is written to a
 * temporary name and renamed, so man never reads half a page. Returns one
 * line per page; throws a ToolError (exit 111) naming the path on failure.
 */
export function installManPages(
  dir: string,
  pages: Readonly<Record<string, string>>,
  opts: InstallOptions = {},
): string[] {
  try {
    if (!Deno.statSync(dir).isDirectory) throw new Deno.errors.NotADirectory("not a directory");
  } catch (e) {
    throw failure("install into", dir, e);
  }
  const made: string[] = [];
  const sections = new Set<string>();
  for (const rel of Object.keys(pages).sort()) {
    // The names come from our own table; refuse anything that could leave dir.
    if (!/^man[1-8]\/[A-Za-z0-9@._-]+\.[1-8]$/.test(rel) || rel.includes("..")) {
      throw new ToolError(`ucspi-tcp: fatal: bad manual page name ${rel}`, 111);
    }
    const section = rel.slice(0, rel.indexOf("/"));
    if (!sections.has(section)) {
      manDir(`${dir}/${section}`);
      sections.add(section);
    }
    const path = `${dir}/${rel}`;
    let exists = true;
    try {
      Deno.lstatSync(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw failure("stat", path, e);
      exists = false;
    }
    if (exists && !(opts.force ?? false) && !isOurPage(path)) {
      throw new ToolError(
        `ucspi-tcp: fatal: unable to create ${path}: file already exists and is not ours (use -f to replace it)`,
        111,
      );
    }
    const tmp = `${dir}/${section}/.${rel.slice(section.length + 1)}.tmp`;
    try {
      // A leftover (or planted) temporary file is removed, never written through.
      try {
        Deno.removeSync(tmp);
      } catch { /* none */ }
      Deno.writeTextFileSync(tmp, pages[rel], { mode: 0o644, createNew: true });
      Deno.chmodSync(tmp, 0o644);
      Deno.renameSync(tmp, path);
    } catch (e) {
      try {
        Deno.removeSync(tmp);
      } catch { /* not made */ }
      throw failure("create", path, e);
    }
    made.push(path);
  }
  return made;
}
