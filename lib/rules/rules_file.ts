/**
 * RulesFile: the rules cdb tcpserver consults (-x), kept wholly in memory
 * and read again when tcprules replaces it, with the decisions for recent
 * clients remembered; the lookup itself is lib/rules/lookup.ts.
 */
import { BoundedMap } from "../core/bounded.ts";
import { Cdb, CdbError } from "./cdb.ts";
import { lookupRules, type RuleDecision } from "./lookup.ts";

/** Options of RulesFile. */
export interface RulesFileOptions {
  /** How often at most the file is stat()ed for a change, in ms (default 1000). */
  checkIntervalMs?: number;
}

/**
 * A rules cdb kept wholly in memory. lookup() stats the file at most once per
 * checkIntervalMs and rereads it only when it changed (tcprules renames a new
 * file over it: new inode, mtime or size), so a connection never reads the
 * file. A corrupt cdb makes lookup throw a CdbError (code EPROTO).
 */
export class RulesFile {
  /** The rules cdb's path (tcpserver -x). */
  readonly path: string;
  #interval: number;
  #checked = -Infinity;
  #stamp: string | null = null;
  #state: Cdb | "missing" | Error = "missing";
  #pending: Promise<void> | null = null;
  #get = (key: string) => (this.#state as Cdb).get(key);
  #memo = new BoundedMap<string, RuleDecision>(4096);
  #memoOf: Cdb | null = null;

  /** A RulesFile for `path`; nothing is read until the first lookup. */
  constructor(path: string, options: RulesFileOptions = {}) {
    this.path = path;
    this.#interval = options.checkIntervalMs ?? 1000;
  }

  async #refresh(): Promise<void> {
    let stamp = "missing";
    try {
      const info = await Deno.stat(this.path);
      stamp = `${info.ino}:${info.dev}:${info.size}:${info.mtime?.getTime()}`;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        this.#stamp = null;
        this.#state = e instanceof Error ? e : new Error(String(e));
        return;
      }
    }
    if (stamp === this.#stamp) return;
    this.#stamp = stamp;
    if (stamp === "missing") {
      this.#state = "missing";
      return;
    }
    try {
      const bytes = await Deno.readFile(this.path);
      this.#state = bytes.length < 2048 ? new CdbError("protocol error", "EPROTO") : new Cdb(bytes);
    } catch (e) {
      this.#stamp = null;
      this.#state = e instanceof Deno.errors.NotFound
        ? "missing"
        : e instanceof Error
        ? e
        : new Error(String(e));
    }
  }

  /**
   * The decision for a client, or "missing" when the file does not exist
   * (shared between lookups with the same arguments: do not modify it).
   * Throws when the file cannot be read or is corrupt (CdbError, code EPROTO).
   */
  async lookup(ip: string, host?: string, info?: string): Promise<RuleDecision | "missing"> {
    if (performance.now() - this.#checked >= this.#interval) {
      if (!this.#pending) {
        this.#pending = this.#refresh().finally(() => {
          this.#pending = null;
          this.#checked = performance.now();
        });
      }
      await this.#pending;
    }
    const state = this.#state;
    if (state === "missing") return "missing";
    if (state instanceof Cdb) {
      // Many connections come from few clients: the decision is remembered
      // per (ip, host, info) for as long as this cdb is the one in force.
      if (this.#memoOf !== state) {
        this.#memo.clear();
        this.#memoOf = state;
      }
      const key = `${ip}\0${host === undefined ? "" : "=" + host}\0${
        info === undefined ? "" : "=" + info
      }`;
      let d = this.#memo.get(key);
      if (d === undefined) {
        d = lookupRules(this.#get, ip, host, info);
        this.#memo.set(key, d);
      }
      return d;
    }
    throw state;
  }

  /** Forgets the cached cdb; the next lookup reads the file again. */
  close(): void {
    this.#state = "missing";
    this.#stamp = null;
    this.#checked = -Infinity;
  }
}
