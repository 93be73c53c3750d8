/**
 * Where a program is found: DJB's pathexec_run, which execs `name` itself
 * when it holds a slash and otherwise tries each directory of $PATH in
 * turn. We cannot exec, so this finds the file the exec would have run (and
 * the error it would have failed with); the callers spawn it.
 */
import { byteStringText } from "../core/bytes.ts";
import { errnoName } from "../core/errors.ts";

/** An error carrying an errno name in `code`, as node: errors do. */
function errnoError(code: string, path: string): Error {
  return Object.assign(new Error(`${code}: ${path}`), { code });
}

function executable(info: Deno.FileInfo): boolean {
  const mode = info.mode ?? 0o755;
  let uid = -1;
  let gid = -1;
  try {
    uid = Deno.uid() ?? -1;
    gid = Deno.gid() ?? -1;
  } catch { /* no --allow-sys: judge by "others" */ }
  if (uid === 0) return (mode & 0o111) !== 0;
  if (info.uid === uid) return (mode & 0o100) !== 0;
  if (info.gid === gid) return (mode & 0o010) !== 0;
  return (mode & 0o001) !== 0;
}

let binfmtMisc: boolean | undefined;

/** Whether the kernel has extra executable formats registered (binfmt_misc). */
function haveBinfmtMisc(): boolean {
  if (binfmtMisc === undefined) {
    binfmtMisc = false;
    try {
      for (const e of Deno.readDirSync("/proc/sys/fs/binfmt_misc")) {
        if (e.name !== "register" && e.name !== "status") binfmtMisc = true;
      }
    } catch { /* not mounted */ }
  }
  return binfmtMisc;
}

/**
 * `file`, unless execve would refuse it with ENOEXEC (neither "#!" nor ELF,
 * e.g. a script without its #! line): node's spawn would run that with
 * /bin/sh, DJB's tools fail with "exec format error". Unreadable files and
 * hosts with binfmt_misc formats are left to the kernel.
 */
function checkFormat(file: string): string {
  let head: Uint8Array;
  try {
    const f = Deno.openSync(file, { read: true });
    try {
      head = new Uint8Array(4);
      const n = f.readSync(head) ?? 0;
      head = head.subarray(0, n);
    } finally {
      f.close();
    }
  } catch {
    // Unreadable here (no read permission, a race): the exec itself will
    // tell (EACCES, ENOENT), as the kernel decides, not us.
    return file;
  }
  const script = head[0] === 0x23 && head[1] === 0x21; // "#!"
  const elf = head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46;
  if (script || elf || haveBinfmtMisc()) return file;
  throw errnoError("ENOEXEC", file);
}

/**
 * The file DJB's pathexec_run would exec for `name`: `name` itself when it
 * contains a slash, else the first PATH entry (from `env`; "/bin:/usr/bin"
 * when unset; an empty entry is ".") holding an executable `name`. Entries
 * failing with "access denied" (not executable, a directory) are skipped but
 * remembered; any other error but "file does not exist" stops the search.
 * Throws an error with `code` (ENOENT, EACCES, ENOTDIR, ENOEXEC...) when
 * none fits. env's PATH is a byte string: it is decoded as UTF-8 to name
 * files (Deno's paths are text).
 */
export function findProgram(name: string, env: Map<string, string>): string {
  if (name.includes("/")) return checkFormat(name);
  const raw = env.get("PATH") ?? "/bin:/usr/bin";
  const path = byteStringText(raw) ?? raw;
  let saved: string | undefined;
  for (const dir of path.split(":")) {
    const file = `${dir === "" ? "." : dir}/${name}`;
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(file);
    } catch (e) {
      const code = errnoName(e) ?? "ENOENT";
      if (code === "ENOENT") continue;
      saved = code;
      if (code !== "EACCES" && code !== "EPERM") break;
      continue;
    }
    if (info.isDirectory || !executable(info)) {
      saved = "EACCES";
      continue;
    }
    return checkFormat(file);
  }
  throw errnoError(saved ?? "ENOENT", name);
}
