/**
 * Dropping the server's ids (tcpserver -u/-g) on the native path: the whole
 * process switches, so the programs it starts inherit the ids, as with C.
 */
import { libc } from "./libc.ts";

/**
 * glibc's own setgroups/setgid/setuid (not raw syscalls): on Linux they
 * apply the change to every thread of the process (nptl's setxid), and
 * Deno runs several threads. Opened separately, on first use.
 */
const ID_SYMBOLS = {
  setgroups: { parameters: ["usize", "buffer"], result: "i32" },
  setgid: { parameters: ["u32"], result: "i32" },
  setuid: { parameters: ["u32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

let idLib: Deno.DynamicLibrary<typeof ID_SYMBOLS>["symbols"] | null = null;

/**
 * Switches the whole process to gid and uid as DJB's tcpserver does after
 * binding (prot_gid, prot_uid): when gid is not 0, setgroups to just gid and
 * setgid(gid); then, when uid is not 0, setuid(uid). Throws an Error
 * ("os error N") naming which step failed in `step` ("gid" or "uid").
 * Only when nativeAvailable() said yes.
 */
export function dropIds(gid: number, uid: number): void {
  if (!libc()) throw new Error("native path not available");
  idLib ??= Deno.dlopen("libc.so.6", ID_SYMBOLS).symbols;
  const l = idLib;
  const fail = (step: "gid" | "uid", what: string): never => {
    const p = l.__errno_location();
    const n = p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
    const e = new Error(`${what}: os error ${n}`) as Error & { step?: string };
    e.step = step;
    throw e;
  };
  if (gid) {
    if (l.setgroups(1n, new Uint32Array([gid])) !== 0) fail("gid", "setgroups");
    if (l.setgid(gid) !== 0) fail("gid", "setgid");
  }
  if (uid && l.setuid(uid) !== 0) fail("uid", "setuid");
}
