/**
 * tcprulescheck rules.cdb: says what tcpserver would do with a client whose
 * address, host name and remote info are $TCPREMOTEIP (default 0.0.0.0),
 * $TCPREMOTEHOST and $TCPREMOTEINFO, in DJB's words. Those values and the
 * report are bytes, as C's: the variables are read as byte strings
 * (ownEnviron) and the rule's key, names and values printed unchanged.
 */
import { fatalSys, usage } from "../lib/core/errors.ts";
import { stringBytes } from "../lib/core/bytes.ts";
import { Cdb, CdbError } from "../lib/rules/cdb.ts";
import { ownEnviron } from "../lib/core/environ.ts";
import { findRule, ruleItems } from "../lib/rules/lookup.ts";
import { writeAll } from "../lib/core/write_all.ts";

const PROG = "tcprulescheck";

/**
 * Runs tcprulescheck with args (rules.cdb); resolves 0 after printing the decision, else throws
 * (100 usage, 111).
 */
export async function main(args: string[]): Promise<number> {
  const fn = args[0];
  if (fn === undefined) throw usage(PROG, "tcprulescheck rules.cdb");
  const unreadable = (e: unknown) => fatalSys(PROG, `unable to read ${fn}`, e);
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(fn);
  } catch (e) {
    throw unreadable(e);
  }
  const env = ownEnviron();
  const ip = env.get("TCPREMOTEIP") ?? "0.0.0.0";
  const host = env.get("TCPREMOTEHOST");
  const info = env.get("TCPREMOTEINFO");
  const lines: string[] = [];
  try {
    if (bytes.length < 2048) throw new CdbError("protocol error", "EPROTO");
    const cdb = new Cdb(bytes);
    const match = findRule((k) => cdb.get(k), ip, host, info);
    if (!match) lines.push("default:");
    else {
      lines.push(`rule ${match.key}:`);
      for (const item of ruleItems(match.data)) {
        if (item.kind === "deny") {
          lines.push("deny connection");
          break;
        }
        if (item.kind === "set") lines.push(`set environment variable ${item.text}`);
        else lines.push(`unset environment variable ${item.name}`);
      }
    }
    if (lines[lines.length - 1] !== "deny connection") lines.push("allow connection");
  } catch (e) {
    throw unreadable(e);
  }
  const out = stringBytes(lines.join("\n") + "\n");
  await writeAll(Deno.stdout, out);
  return 0;
}
