/**
 * Taking a prefix (a PROXY header) off a connection before its program sees
 * the rest: why it can fail, the same on both socket paths.
 */

/** Why taking a prefix gave up: end of input, the time bound, or more than its bound. */
export class PrefixError extends Error {
  /** `kind` says why; `seen` is how many bytes of the prefix had come. */
  constructor(readonly kind: "eof" | "timeout" | "long", readonly seen: number) {
    super(kind === "eof" ? "connection closed" : kind === "timeout" ? "timed out" : "too long");
    this.name = "PrefixError";
  }
}
