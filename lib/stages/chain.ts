/**
 * Runs the program of a connection: tcpserver hands every accepted
 * connection's argv, environment and io here.
 *
 * In-process chaining: while the program to run is one of our own stage
 * tools (rblsmtpd, fixcrio, recordio, argv0, ucspitlsd...), it runs here as a stage over
 * the connection's streams and environment instead of as a process; the
 * first program that is not ours is spawned once, with the (possibly
 * wrapped) connection pumped to its stdin/stdout. A client rblsmtpd blocks
 * never costs a process.
 *
 * A program name is ours when its basename is one of those tool names and
 * either it is not found by PATH (as DJB's pathexec searches it), or what PATH
 * finds is this executable (a symlink to the compiled binary) or the wrapper
 * script `ucspi-tcp install` writes under `deno run`. A name resolving to
 * anything else (say Debian's /usr/bin/rblsmtpd) is spawned as usual. The
 * answer is looked up once per distinct (name, PATH) and remembered.
 *
 * `$UCSPI_CHAIN` in the connection's environment: `0` turns chaining off
 * (every program is a process, as with DJB's tools); `force` chains by
 * basename alone, without looking at PATH; anything else (or unset): the rule
 * above.
 */
import { argv0Stage } from "./argv0.ts";
import { BoundedMap } from "../core/bounded.ts";
import { errorText, ToolError } from "../core/errors.ts";
import { fixcrioStage } from "./fixcrio.ts";
import { findProgram } from "../process/pathexec.ts";
import { makeRblsmtpdStage } from "./rblsmtpd.ts";
import { WRAPPER_MARK } from "../install/install.ts";
import { recordioStage } from "./recordio.ts";
import { makeStarttlsProxyStage, STARTTLS_PROTOCOLS } from "./starttls_proxy.ts";
import { runPumped } from "../process/spawn.ts";
import { CHAINABLE } from "./chainable.ts";
import type { Ended } from "../process/status.ts";
import type { Io, Outcome, Stage } from "./stage.ts";

/** Per-connection facts a stage may need. */
export interface ChainContext {
  /** The pid rblsmtpd names in its log line (default: ours). */
  pid?: number;
  /**
   * Offered the first foreign program (file found by PATH, its argv with the
   * argv[0] it sees, and the io it would talk over) before it is spawned
   * pumped: may start it on the connection's socket itself (tcpserver's
   * native path, when the io is still the untouched socket) and resolve with
   * how it ended; null declines.
   */
  spawnDirect?: (file: string, argv: string[], io: Io) => Promise<Ended> | null;
  /**
   * Called when a pumped program exits, before its output is drained (a
   * grandchild may hold it open): tcpserver frees the connection's slot then.
   */
  onExit?: (ended: Ended) => void;
}

export { CHAINABLE } from "./chainable.ts";

const defaultRblsmtpd = makeRblsmtpdStage();

function stageByName(name: string, ctx: ChainContext): Stage {
  switch (name) {
    case "argv0":
      return argv0Stage;
    case "fixcrio":
      return fixcrioStage;
    case "recordio":
      return recordioStage;
    case "smtpd-starttls-proxy":
    case "pop3d-starttls-proxy":
    case "imapd-starttls-proxy":
      return makeStarttlsProxyStage({ pid: ctx.pid }, STARTTLS_PROTOCOLS[name]);
    case "ucspitlsd":
      // loaded on first use: TLS is no start-up cost for tcpserver
      return async (argv, env, io) =>
        (await import("../tls/ucspitlsd.ts")).ucspitlsdStage(argv, env, io);
    default:
      return ctx.pid === undefined ? defaultRblsmtpd : makeRblsmtpdStage({ pid: ctx.pid });
  }
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

const MAX_REMEMBERED = 1024;
const recognised = new BoundedMap<string, boolean>(MAX_REMEMBERED);
let selfReal: string | null | undefined;

function selfRealPath(): string | null {
  if (selfReal === undefined) {
    // Under `deno run`, the executable is deno itself: a link to it is not us.
    if (!Deno.build.standalone) selfReal = null;
    else {
      try {
        selfReal = Deno.realPathSync(Deno.execPath());
      } catch {
        selfReal = null;
      }
    }
  }
  return selfReal;
}

/** True when file is this binary, or a wrapper `install` wrote (lib/install/install.ts). */
function isSelf(file: string): boolean {
  let real: string;
  try {
    real = Deno.realPathSync(file);
  } catch {
    return false;
  }
  const self = selfRealPath();
  if (self !== null && real === self) return true;
  try {
    if (Deno.statSync(real).size > 4096) return false;
    const text = Deno.readTextFileSync(real);
    return text.startsWith("#!") && text.includes(`\n${WRAPPER_MARK}\n`);
  } catch {
    return false;
  }
}

/**
 * Whether argv[0] `name` runs in-process under env's PATH and $UCSPI_CHAIN
 * (see the module comment). Remembered per (name, PATH).
 */
export function isOurs(name: string, env: Map<string, string>): boolean {
  const mode = env.get("UCSPI_CHAIN");
  if (mode === "0") return false;
  const base = basename(name);
  if (!(CHAINABLE as readonly string[]).includes(base)) return false;
  if (mode === "force") return true;
  const key = `${name}\0${env.get("PATH") ?? ""}`;
  let ours = recognised.get(key);
  if (ours === undefined) {
    try {
      ours = isSelf(findProgram(name, env));
    } catch (e) {
      ours = (e as { code?: string }).code === "ENOENT";
    }
    recognised.set(key, ours);
  }
  return ours;
}

/** Forgets what isOurs remembered (after binaries or PATH entries changed). */
export function forgetRecognised(): void {
  recognised.clear();
}

async function closeOutput(io: Io): Promise<void> {
  try {
    await io.output.close();
  } catch { /* already closed or the client went away */ }
}

function logError(io: Io, message: string): void {
  for (const line of message.split("\n")) io.log(line);
}

/**
 * Runs argv over io with env; resolves when it ended and io was flushed.
 * Our own stage tools at the head of argv run in-process (see the module
 * comment); a stage's failure is logged as the tool would print it and ends
 * with its exit code, as the process would.
 */
export async function runConnectionProgram(
  argv: string[],
  env: Map<string, string>,
  io: Io,
  ctx: ChainContext = {},
): Promise<Ended> {
  if (argv.length === 0 || !isOurs(argv[0], env)) {
    return runPumped(argv, env, io, undefined, ctx.onExit);
  }
  let cur = argv;
  let curIo = io;
  let argv0: string | undefined;
  let tool = "";
  while (cur.length > 0 && isOurs(cur[0], env)) {
    tool = basename(cur[0]);
    let outcome: Outcome;
    try {
      outcome = await stageByName(tool, ctx)(cur.slice(1), env, curIo);
    } catch (e) {
      const err = e instanceof ToolError
        ? e
        : new ToolError(`${tool}: fatal: ${errorText(e)}`, 111);
      logError(curIo, err.message);
      await closeOutput(curIo);
      return { code: err.exitCode, signal: null };
    }
    if ("exit" in outcome) {
      await closeOutput(curIo);
      return { code: outcome.exit, signal: null };
    }
    cur = outcome.next;
    argv0 = outcome.argv0;
    if (outcome.io) curIo = outcome.io;
  }
  // The first program that is not ours: found by PATH as the tool's pathexec
  // would, spawned once over the (possibly wrapped) connection.
  const name = cur[0];
  try {
    const file = findProgram(name, env);
    const direct = ctx.spawnDirect?.(file, [argv0 ?? name, ...cur.slice(1)], curIo);
    if (direct) return await direct;
    return await runPumped([file, ...cur.slice(1)], env, curIo, argv0 ?? name, ctx.onExit);
  } catch (e) {
    // As the tool's process would: its fatal line, then what closing the
    // program's output makes a wrapping stage log (recordio's [EOF]).
    logError(curIo, `${tool}: fatal: unable to run ${name}: ${errorText(e)}`);
    await closeOutput(curIo);
    return { code: 111, signal: null };
  }
}
