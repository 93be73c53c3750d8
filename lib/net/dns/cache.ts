/**
 * A bounded cache of DNS answers, each kept for its TTL; at most maxEntries,
 * the oldest stored forgotten first (lib/core/bounded.ts), so a client
 * making us look up endless distinct names cannot grow memory.
 */
import { BoundedMap } from "../../core/bounded.ts";

/** The records of one type an answer holds, and the smallest TTL among them. */
export interface Answer {
  /** A/AAAA: address text; PTR/CNAME: the name as toDot prints it; TXT: the record's strings joined, a byte string. */
  values: string[];
  /** Seconds the answer may be cached (for an empty answer: a short negative TTL). */
  ttl: number;
}

/** A bounded cache of answers, each kept for its TTL (least recently stored evicted first). */
export class DnsCache {
  readonly #map: BoundedMap<string, { answer: Answer; expires: number }>;

  /** A cache of at most maxEntries answers; now() is the clock (milliseconds, tests set it). */
  constructor(readonly maxEntries = 10000, readonly now: () => number = Date.now) {
    this.#map = new BoundedMap(maxEntries, "evict-oldest");
  }

  /** The cached answer for key, if not expired. */
  get(key: string): Answer | undefined {
    const e = this.#map.get(key);
    if (!e) return undefined;
    if (e.expires <= this.now()) {
      this.#map.delete(key);
      return undefined;
    }
    return {
      values: e.answer.values,
      ttl: Math.max(0, Math.ceil((e.expires - this.now()) / 1000)),
    };
  }

  /** Stores answer for its TTL (nothing for TTL 0). */
  set(key: string, answer: Answer): void {
    if (answer.ttl <= 0) return;
    // Stored again, a key counts as newest (deleted first, so the oldest other key makes room).
    this.#map.delete(key);
    this.#map.set(key, { answer, expires: this.now() + answer.ttl * 1000 });
  }

  /** Number of entries held (expired ones included until looked up). */
  get size(): number {
    return this.#map.size;
  }

  /** Forgets everything. */
  clear(): void {
    this.#map.clear();
  }

  /**
   * Lookups under way, by key: concurrent askers of one name (through the
   * same servers) share one query, made with the first asker's options.
   */
  readonly inflight: Map<string, Promise<Answer>> = new Map();
}
