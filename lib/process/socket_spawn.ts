/**
 * Starting a program on a node:net socket itself (fd 0 and 1 are the
 * socket, as after C tcpserver's fork and exec) without FFI: the pure
 * path's answer to pumping. Node's child_process takes a descriptor number
 * in `stdio` ("an fd open in the parent"); Deno 2.9's TCP handle gives one
 * through `fdForIpc()` (a close-on-exec duplicate, made for passing sockets
 * to a child over IPC). Once the program runs, the server closes both its
 * descriptors of the socket: it holds none per running program, the kernel
 * sends FIN when the program (and whatever it forked) closes the socket,
 * and no byte passes through this process.
 *
 * Three things Deno does with such a descriptor shape the order below:
 * - `fdForIpc()` returns a new duplicate every call and nothing closes it;
 *   Deno cannot close a bare descriptor from JavaScript (node:fs's close
 *   knows only its own), so a second TCP handle adopts it (`open(fd)`),
 *   and closing that handle closes it.
 * - Spawning clears O_NONBLOCK on the socket (the program expects blocking
 *   I/O), which is shared by every descriptor of it, ours included: from
 *   then on this process must not read or write it, only close it.
 * - Spawning dup()s the descriptor without close-on-exec: the program finds
 *   two more copies of the socket above fd 2 (Deno's doing; harmless unless
 *   the program closes 0 and 1 and expects the client to see FIN while it
 *   runs on).
 *
 * Everything here is detected, never assumed: `socketHandOff` returns null
 * when this Deno's socket handle lacks what it needs, and the caller pumps.
 */
import { spawn as nodeSpawn } from "node:child_process";
import type { Socket } from "node:net";
import process from "node:process";
import type { Credentials } from "./spawn.ts";
import type { Ended } from "./status.ts";
import { textCommand } from "./text_command.ts";

/** The parts of Deno's node:net TCP handle (TCPWrap) used here. */
interface TcpHandle {
  fdForIpc?: () => number;
  open?: (fd: number) => number;
  close(): void;
}

/** The handle type's value for a connected (not listening) socket. */
const SOCKET_HANDLE = 0;

/** A duplicate of a socket's descriptor and how to close it. */
interface Duplicate {
  fd: number;
  close(): void;
}

function duplicateOf(sock: Socket): Duplicate | null {
  const h = (sock as unknown as { _handle?: TcpHandle | null })._handle;
  if (!h || typeof h.fdForIpc !== "function") return null;
  const Handle = (h as { constructor?: unknown }).constructor;
  if (typeof Handle !== "function") return null;
  const owner = new (Handle as new (type: number) => TcpHandle)(SOCKET_HANDLE);
  if (typeof owner.open !== "function") return null;
  const fd = h.fdForIpc();
  if (!(typeof fd === "number" && fd >= 0)) return null;
  // open() only adopts it (no flag changes): closing owner closes fd.
  if (owner.open(fd) !== 0) throw new Error(`unable to adopt descriptor ${fd}`);
  return { fd, close: () => owner.close() };
}

/** True when this Deno can start a program on `sock` itself (see the module comment). */
export function canHandOff(sock: Socket): boolean {
  const h = (sock as unknown as { _handle?: TcpHandle | null })._handle;
  return !!h && typeof h.fdForIpc === "function";
}

/**
 * Starts `file` (argv[0] as its name, env byte strings as text_command.ts
 * passes them, runAs's ids) with `sock` as its fd 0 and 1 and our stderr,
 * then closes our descriptors of the socket: resolves how the program
 * ended. Rejects (ENOENT, EACCES, NotCapable...) when it cannot start; the
 * socket is then left open for the caller to close. Returns null, starting
 * nothing, when this Deno cannot hand a socket over. `sock` must be paused
 * and never have been read (pauseOnConnect): what Deno read ahead would be
 * lost to the program.
 */
export function socketHandOff(
  sock: Socket,
  file: string,
  argv: string[],
  env: Map<string, string>,
  runAs: Credentials,
): Promise<Ended> | null {
  const t = textCommand(file, argv.slice(1), env, argv[0]);
  const dup = duplicateOf(sock);
  if (dup === null) return null;
  let child;
  try {
    child = nodeSpawn(t.command, t.args, {
      stdio: [dup.fd, dup.fd, "inherit"],
      env: t.env ?? process.env,
      argv0: t.argv0 ?? t.command,
      ...runAs,
    });
  } finally {
    // the program, if it runs, has its own copies now
    dup.close();
  }
  // Deno starts the program synchronously: a pid says it runs, and the
  // socket (blocking from now on) is only ours to close; without one the
  // reason comes as an "error" event.
  const running = child.pid !== undefined;
  if (running) sock.destroy();
  return new Promise<Ended>((resolve, reject) => {
    if (!running) child.once("error", reject);
    else child.on("error", () => {}); // a failed kill(): not this program's end
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
}
