/**
 * The process name (/proc/PID/comm, what `pgrep -x`, `top` and `ps -o comm`
 * show) set to the tool's name instead of "deno", through prctl(PR_SET_NAME)
 * when the ffi permission is granted (Linux, glibc). Without it the name
 * stays "deno": nothing else changes.
 */

const PR_SET_NAME = 15;

/** Sets the calling (main) thread's name, which is the process's comm; false when not possible. */
export function setProcessName(name: string): boolean {
  if (Deno.build.os !== "linux") return false;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return false;
    const lib = Deno.dlopen("libc.so.6", {
      prctl: { parameters: ["i32", "buffer", "u64", "u64", "u64"], result: "i32" },
    });
    try {
      // comm holds 15 bytes and a NUL
      const bytes = new TextEncoder().encode(name).subarray(0, 15);
      const buf = new Uint8Array(16);
      buf.set(bytes);
      return lib.symbols.prctl(PR_SET_NAME, buf, 0n, 0n, 0n) === 0;
    } finally {
      lib.close();
    }
  } catch {
    // No libc or prctl refused: the name stays "deno", which changes nothing else.
    return false;
  }
}
