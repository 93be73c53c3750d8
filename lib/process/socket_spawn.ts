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
import { type TextCommand, textCommand } from "./text_command.ts";

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
  // Deno.Command starts a program for about half the CPU of node's spawn
  // (measured: ~150 vs ~320 us each) and, undocumented, takes a descriptor
  // number too; it cannot set argv[0], so it runs argv[0] by its name (its
  // own PATH search, as runPumped's) and node's spawn takes the rest.
  const plain = textCommand(argv[0], argv.slice(1), env);
  const t = plain.command === argv[0] ? plain : textCommand(file, argv.slice(1), env, argv[0]);
  const dup = duplicateOf(sock);
  if (dup === null) return null;
  let started: { pid: number | undefined; ended: Promise<Ended> };
  try {
    started = t === plain ? denoStart(t, dup.fd, runAs) : nodeStart(t, dup.fd, runAs);
  } finally {
    // the program, if it runs, has its own copies now
    dup.close();
  }
  // The program starts synchronously: a pid says it runs, and the socket
  // (blocking from now on) is only ours to close.
  if (started.pid !== undefined) sock.destroy();
  return started.ended;
}

function denoStart(
  t: TextCommand,
  fd: number,
  runAs: Credentials,
): { pid: number | undefined; ended: Promise<Ended> } {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(t.command, {
      args: t.args,
      env: t.env,
      clearEnv: t.env !== undefined,
      // a descriptor number: accepted by Deno 2.9, absent from its types
      stdin: fd as unknown as "inherit",
      stdout: fd as unknown as "inherit",
      stderr: "inherit",
      uid: runAs.uid,
      gid: runAs.gid,
    }).spawn();
  } catch (e) {
    return { pid: undefined, ended: Promise.reject(e) };
  }
  const ended = child.status.then((st) => ({
    code: st.signal === null ? st.code : null,
    signal: st.signal,
  }));
  return { pid: child.pid, ended };
}

function nodeStart(
  t: TextCommand,
  fd: number,
  runAs: Credentials,
): { pid: number | undefined; ended: Promise<Ended> } {
  const child = nodeSpawn(t.command, t.args, {
    stdio: [fd, fd, "inherit"],
    env: t.env ?? process.env,
    argv0: t.argv0 ?? t.command,
    ...runAs,
  });
  const running = child.pid !== undefined;
  const ended = new Promise<Ended>((resolve, reject) => {
    // without a pid the reason comes as an "error" event; after, an error
    // is a failed kill(), not this program's end
    if (!running) child.once("error", reject);
    else child.on("error", () => {});
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  return { pid: child.pid, ended };
}
