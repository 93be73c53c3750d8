/**
 * Running the program of a client connection with the network on
 * descriptors 6 (read) and 7 (write): the pumps, half-close both ways, the
 * supervisor's signals passed on, and closing the network once everything
 * the program wrote went out.
 */
import { spawn } from "node:child_process";
import type net from "node:net";
import type { Duplex } from "node:stream";
import { forwardSignals } from "../process/signals.ts";
import type { Ended } from "../process/status.ts";

/**
 * Runs argv with our stdin, stdout and stderr on 0-2, reading the network on
 * descriptor 6 and writing it on descriptor 7 (socket pairs pumped to and
 * from network). The program closing 7 half-closes the network; the peer
 * closing gives the program EOF on 6. Resolves when the program has exited
 * and everything it wrote to 7 reached the network; rejects with the spawn
 * error when it cannot be started. A supervisor's signals (TERM, HUP, ALRM,
 * USR1, USR2, INT, CONT) are passed on to the program meanwhile.
 * When it is over, network is destroyed; or, given close, it is unpiped
 * from the program and close() does it (resolving once closed), as
 * `SecuredNetwork.close` describes.
 */
export function runWithNetwork(
  argv: string[],
  env: Map<string, string>,
  network: Duplex,
  close?: () => Promise<void>,
): Promise<Ended> {
  return new Promise((resolve, reject) => {
    const forwarding = forwardSignals();
    const child = spawn(argv[0], argv.slice(1), {
      stdio: ["inherit", "inherit", "inherit", "ignore", "ignore", "ignore", "pipe", "pipe"],
      env: Object.fromEntries(env),
    });
    let ended: Ended | undefined;
    let flushed = false;
    const stdio = child.stdio as unknown as (net.Socket | null)[];
    const fd6 = stdio[6]!;
    const fd7 = stdio[7]!;
    let finished = false;
    const finish = () => {
      if (!ended || !flushed || finished) return;
      finished = true;
      if (close) {
        network.unpipe(fd6);
        fd6.destroy();
        const status = ended;
        close().catch(() => network.destroy()).finally(() => resolve(status));
        return;
      }
      fd6.destroy();
      network.destroy();
      resolve(ended);
    };
    child.once("error", (e) => {
      forwarding.detach();
      fd6?.destroy();
      fd7?.destroy();
      reject(e);
    });
    child.once("spawn", () => {
      if (child.pid !== undefined) forwarding.attach(child.pid);
      fd6.on("error", () => network.unpipe(fd6));
      // Descriptor 7 failing is the program's side going away: its close ends the pump.
      fd7.on("error", () => {});
      network.on("error", () => {
        // The peer reset: the program sees EOF on 6 and a broken pipe on 7.
        fd6.end();
        fd7.destroy();
      });
      network.pipe(fd6);
      fd7.pipe(network);
      // The program and everything it started closed descriptor 7.
      fd7.once("close", () => {
        flushed = true;
        if (network.writableFinished || network.destroyed) finish();
        else {
          network.once("finish", finish);
          network.once("close", finish);
        }
      });
      fd7.resume();
    });
    child.once("exit", (code, signal) => {
      forwarding.detach();
      ended = { code, signal };
      finish();
    });
  });
}

/**
 * What a `secure` hook may give instead of a bare stream: the stream the
 * program talks over, and how to close it. tcpclient destroys a bare stream
 * (and the socket) as soon as the program is done and its data went out;
 * with `close`, it calls close() instead and destroys the socket only once
 * that resolved. sslclient closes lingering there: if the server still
 * sends, closing at once (with its data unread) makes the kernel send a
 * reset, which destroys our last data and the TLS close_notify on their way.
 */
export interface SecuredNetwork {
  /** The stream the program talks over (piped to its descriptors 6 and 7). */
  stream: Duplex;
  /**
   * Called when the program is done and everything it wrote was handed to
   * stream (stream ended): closes stream and the connection underneath.
   */
  close: () => Promise<void>;
}
