/**
 * The steps that run on a connection before the banner and the peer info,
 * in order (ServerOptions.steps): tcpserver -W has the PROXY step
 * (lib/net/proxy/step.ts), sslserver the PROXY step (-W) and the TLS handshake
 * (lib/tls/server_hook.ts). tcpserver and sslserver differ only in this
 * list. A step sees the streams and endpoints the steps before it left and
 * hands back what changes; resolving null drops the connection (the step
 * logged why), throwing drops it and logs the error once.
 */
import type { Io } from "../../stages/stage.ts";
import type { Connection, Endpoint, PrefixMeasure } from "../connection.ts";

/** What a step learns about a fresh connection. */
export interface PrepareContext {
  /** The connection number (the "pid" of the log lines). */
  id: number;
  /** The connection's streams so far (the raw socket, or what an earlier step made). */
  io: Io;
  /** The local endpoint so far (the socket's, or what an earlier step announced). */
  local: Endpoint;
  /** The remote endpoint so far (the socket's, or what an earlier step announced). */
  remote: Endpoint;
  /**
   * Takes a prefix off the socket itself without reading past it (the
   * native path, while no step has wrapped the stream): a PROXY header read
   * this way leaves the socket pristine, so the program still gets it as
   * fd 0 and 1. Absent otherwise: read `io` instead.
   */
  takePrefix?: (measure: PrefixMeasure, max: number, timeoutMs: number) => Promise<Uint8Array>;
  /**
   * The accepted Deno socket itself (the pure path, while no step has
   * wrapped or read the stream): sslserver's TLS step runs node:tls on it
   * natively (Deno's TLS layer on the socket, no JS stream adapter per
   * record). A step that takes it over closes it through Prepared.close.
   */
  tcp?: Deno.TcpConn;
}

/** What a step hands back (each field replaces or adds to what the steps before it gave). */
export interface Prepared {
  /** New streams to talk over (a TLS session), replacing the raw socket's. */
  io?: Io;
  /** The real endpoints (a PROXY header): used for env, rules, limits, logs. */
  local?: Endpoint;
  /** The real remote endpoint (a PROXY header): used for env, rules, limits, logs. */
  remote?: Endpoint;
  /** Variables to set (or remove: null) after the TCP ones, before the rules. */
  extraEnv?: Array<[string, string | null]>;
  /** Called once when the connection is finished (after the socket is closed). */
  cleanup?: () => void | Promise<void>;
  /**
   * How the connection is closed from now on, instead of closing the socket
   * (TLS: the session's close_notify and lingering close first).
   */
  close?: () => void;
  /**
   * Edits the environment after the TCP variables and extraEnv, before the
   * rules (sslserver renames TCP* to SSL*, as ucspi-ssl does).
   */
  environ?: (env: Map<string, string>) => void;
}

/**
 * A step run on each accepted connection before anything else (before the
 * banner): read a PROXY header, do a TLS handshake. Resolving null drops the
 * connection (the hook logs why); throwing drops it and logs the error.
 */
export type PrepareHook = (conn: Connection, ctx: PrepareContext) => Promise<Prepared | null>;
