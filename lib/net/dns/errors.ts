/**
 * The two ways a DNS lookup fails for now: DnsTemporaryError (SERVFAIL,
 * REFUSED, timeout, network error) and its kind DnsProtocolError (a name DNS
 * cannot carry, a malformed or looping message), each carrying the reason as
 * DJB's tools word it.
 */

/** A lookup failed for now (SERVFAIL, REFUSED, timeout, network error): try again later. */
export class DnsTemporaryError extends Error {
  /**
   * A temporary failure.
   * @param message what happened, for logs
   * @param reason the failure as DJB's tools word it after "temporarily
   *   unable to figure out IP address for HOST: " ("timed out", "temporary
   *   failure", "protocol error")
   */
  constructor(message: string, readonly reason = "temporary failure") {
    super(message);
    this.name = "DnsTemporaryError";
  }
}

/**
 * A DNS message or name DNS cannot carry or that breaks the wire format: a
 * label over 63 bytes, a name over 255 bytes, a truncated or looping
 * message. A temporary failure whose reason is djbdns's "protocol error".
 */
export class DnsProtocolError extends DnsTemporaryError {
  /**
   * A malformed message or a name DNS cannot carry.
   * @param detail what was wrong, for tests and debugging (the reason stays "protocol error")
   */
  constructor(readonly detail: string) {
    super("protocol error", "protocol error");
    this.name = "DnsProtocolError";
  }
}
