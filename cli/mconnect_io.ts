/**
 * mconnect-io: under tcpclient, sends stdin to the network (descriptor 7) with
 * a CR added to each line and prints what arrives on descriptor 6.
 */
import net from "node:net";
import { fatalSys } from "../lib/core/errors.ts";
import { mconnectIo } from "../lib/client/clienttools.ts";

function openFd(fd: number, readable: boolean): net.Socket {
  try {
    return new net.Socket({ fd, readable, writable: !readable, allowHalfOpen: true });
  } catch (e) {
    throw fatalSys("mconnect-io", `unable to use descriptor ${fd}`, e);
  }
}

/**
 * Runs mconnect-io (no arguments); resolves 0 when the network side ends; fatal (111) without
 * descriptors 6 and 7.
 */
export async function main(_args: string[]): Promise<number> {
  const fromNet = openFd(6, true);
  const toNet = openFd(7, false);
  fromNet.on("error", () => {});
  toNet.on("error", () => {});
  const write = (d: Uint8Array) =>
    new Promise<boolean>((resolve) => toNet.write(d, (err) => resolve(!err)));
  try {
    return await mconnectIo(fromNet, write);
  } finally {
    fromNet.destroy();
    toNet.destroy();
  }
}
