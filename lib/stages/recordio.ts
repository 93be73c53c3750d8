/**
 * recordio as a stage: the next program's input and output pass unchanged
 * and are logged, packet by packet, as DJB's recordio logs them:
 * `PID < line ` (a complete line), `PID < part+` (no newline yet in this
 * packet), `PID < [EOF]`, and the same with `>` for output. PID is the
 * program's pid (DJB's recordio forks and the program keeps the original
 * pid). Packets are cut at 256 bytes, DJB's read size, so each log line is
 * one write.
 */
import { byteString } from "../core/bytes.ts";
import type { Converter } from "./crlf.ts";
import { pullThrough, writeThrough } from "./crlf.ts";
import { usage } from "../core/errors.ts";
import type { Io, Outcome, Stage } from "./stage.ts";

/** The usage line's text after "recordio: usage: ". */
export const RECORDIO_USAGE = "recordio program [ arg ... ]";

/** DJB's recordio reads (and so logs) at most this many bytes per packet. */
export const RECORDIO_PACKET = 256;

const NL = 10;

/**
 * The log lines (byte strings, without newline) for one packet of at most
 * RECORDIO_PACKET bytes, going in direction `arrow` of program `pid`.
 */
export function packetLines(pid: string, arrow: "<" | ">", packet: Uint8Array): string[] {
  const lines: string[] = [];
  let from = 0;
  while (from < packet.length) {
    const nl = packet.indexOf(NL, from);
    if (nl < 0) {
      lines.push(`${pid} ${arrow} ${byteString(packet.subarray(from))}+`);
      break;
    }
    lines.push(`${pid} ${arrow} ${byteString(packet.subarray(from, nl))} `);
    from = nl + 1;
  }
  return lines;
}

/** The log lines for a chunk of any size: cut into packets, then packetLines. */
export function chunkLines(pid: string, arrow: "<" | ">", chunk: Uint8Array): string[] {
  const lines: string[] = [];
  for (let i = 0; i < chunk.length; i += RECORDIO_PACKET) {
    lines.push(...packetLines(pid, arrow, chunk.subarray(i, i + RECORDIO_PACKET)));
  }
  return lines;
}

/** The line logged at end of input (`<`) or output (`>`). */
export function eofLine(pid: string, arrow: "<" | ">"): string {
  return `${pid} ${arrow} [EOF]`;
}

/** A pass-through Converter that logs what goes through it. */
function tap(pid: () => string, arrow: "<" | ">", log: (line: string) => void): Converter {
  return {
    push(chunk) {
      for (const line of chunkLines(pid(), arrow, chunk)) log(line);
      return chunk;
    },
    end() {
      log(eofLine(pid(), arrow));
      return new Uint8Array(0);
    },
  };
}

/**
 * Wraps io so both directions are logged to io.log. The pid is the one the
 * runner reports through `started`; before that (no program was spawned,
 * e.g. an in-process stage answered) `fallbackPid`.
 */
export function recordioIo(io: Io, fallbackPid: number): Io {
  let pid: string | undefined;
  const getPid = () => pid ?? String(fallbackPid);
  return {
    input: pullThrough(io.input, tap(getPid, "<", io.log)),
    output: writeThrough(io.output, tap(getPid, ">", io.log)),
    log: io.log,
    started: (p) => {
      pid = String(p);
      io.started?.(p);
    },
  };
}

/**
 * The recordio stage, logging `pid` until a spawned program's pid is known
 * (inside tcpserver: the connection's pid as tcpserver logs it; default ours).
 */
export function makeRecordioStage(opts: { pid?: number } = {}): Stage {
  return (argv, _env, io): Promise<Outcome> => {
    if (argv.length === 0) return Promise.reject(usage("recordio", RECORDIO_USAGE));
    return Promise.resolve({ next: argv, io: recordioIo(io, opts.pid ?? Deno.pid) });
  };
}

/**
 * `recordio program [arg ...]` (argv without "recordio"): no options, as in
 * DJB's. Returns the program to run over the logging io; throws the usage
 * ToolError (exit 100) without one.
 */
export const recordioStage: Stage = makeRecordioStage();
