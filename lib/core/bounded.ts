/**
 * A bounded map for memos: many connections come from few clients, so a
 * hot path remembers its answers, but a hostile stream of distinct keys must
 * not grow memory without bound. The one definition of "remember, but at
 * most N entries" (rules decisions, shown addresses, parsed argv, PATH
 * searches, DNS answers).
 */

/** What a full BoundedMap does before it stores a new key. */
export type WhenFull =
  /** Forget everything (cheap; right for memos whose entries are all cheap to redo). */
  | "clear"
  /** Forget the oldest stored key (insertion order), as a cache that must keep warm entries. */
  | "evict-oldest";

/**
 * A Map that holds at most `max` entries: storing a new key into a full map
 * first clears it (`"clear"`, the default) or drops the oldest key
 * (`"evict-oldest"`). Replacing the value of a key already held never
 * evicts. `max` 0 stores nothing.
 */
export class BoundedMap<K, V> extends Map<K, V> {
  readonly #max: number;
  readonly #whenFull: WhenFull;

  /** A map of at most `max` entries that does `whenFull` when full. */
  constructor(max: number, whenFull: WhenFull = "clear") {
    super();
    this.#max = max;
    this.#whenFull = whenFull;
  }

  /** The most entries held at once. */
  get max(): number {
    return this.#max;
  }

  /** Stores value under key, making room first when the map is full and key is new. */
  override set(key: K, value: V): this {
    // (Map's constructor calls set only with an iterable, which we never pass.)
    if (this.#max <= 0) return this;
    if (!super.has(key) && this.size >= this.#max) {
      if (this.#whenFull === "clear") super.clear();
      else {
        const oldest = super.keys().next();
        if (!oldest.done) super.delete(oldest.value);
      }
    }
    return super.set(key, value);
  }
}

/**
 * `compute(key)`, remembered in `map` (a BoundedMap, so bounded): the
 * memo pattern in one call. A computed `undefined` is not remembered.
 */
export function memoized<K, V>(map: Map<K, V>, key: K, compute: (key: K) => V): V {
  const hit = map.get(key);
  if (hit !== undefined) return hit;
  const v = compute(key);
  if (v !== undefined) map.set(key, v);
  return v;
}
