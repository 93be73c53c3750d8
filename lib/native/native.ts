/**
 * tcpserver's native fast path: libc through Deno FFI (Linux, glibc), the
 * folder's public face. A listening socket made with socket/bind/listen or
 * inherited from a supervisor (listener.ts, activation.ts), connections taken with
 * non-blocking accept4 and read/written with recv/send on the main thread,
 * one poll(2) on an FFI worker thread waiting for all of them (poller.ts),
 * each connection's program started with posix_spawn with the socket
 * itself as its fd 0 and 1 (spawn.ts) and reaped without SIGCHLD
 * (reaper.ts). libc's symbols, errno and
 * `nativeAvailable` are in libc.ts, the errno table in errno.ts, the
 * process-wide id switch in ids.ts.
 *
 * Used only when available (see `nativeAvailable`): Linux, the ffi
 * permission granted (--allow-ffi), libc.so.6 loadable, and
 * $UCSPI_NATIVE not "0". Otherwise tcpserver keeps its pure-Deno path.
 * Importing this module has no side effects: libc is opened on first use.
 */
export { nativeAvailable } from "./libc.ts";
export type { NativeEndpoint } from "./sockaddr.ts";
export { NativeListener } from "./listener.ts";
export { inheritedListener, listenFds } from "./activation.ts";
export { NativeConn } from "./conn.ts";
export { type Spawned, spawnOnSocket } from "./spawn.ts";
export { promptReaping } from "./reaper.ts";
export { dropIds } from "./ids.ts";
