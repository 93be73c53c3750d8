/**
 * A small, strict DER reader for what sslserver and sslclient read out of
 * certificates (lib/tls/x509.ts). Certificates come from the peer, so every
 * length is checked against its container before anything is read, and any
 * malformed input raises DerError, never another exception.
 */

/** A certificate (or part of one) that is not well-formed DER. */
export class DerError extends Error {
  /** `message` says what is malformed. */
  constructor(message: string) {
    super(message);
    this.name = "DerError";
  }
}

/** One DER element: identifier, where its contents are, and the bytes around it. */
export interface Tlv {
  /** The identifier octet (class, constructed bit and tag number < 31). */
  tag: number;
  /** Offset of the identifier octet in buf. */
  start: number;
  /** Offset of the first content octet. */
  contentStart: number;
  /** Offset just past the element. */
  end: number;
  /** The buffer the offsets are in (the whole certificate). */
  buf: Uint8Array;
}

/** The content octets of an element. */
export function contents(t: Tlv): Uint8Array {
  return t.buf.subarray(t.contentStart, t.end);
}

/** The whole encoding (identifier, length and contents) of an element. */
export function encoding(t: Tlv): Uint8Array {
  return t.buf.subarray(t.start, t.end);
}

/** Whether an identifier octet has the constructed bit. */
export function isConstructed(tag: number): boolean {
  return (tag & 0x20) !== 0;
}

/**
 * Reads the element at `off` that must end by `limit`. Only the forms DER
 * allows: definite, minimal lengths (at most 4 length octets: nothing in a
 * certificate is bigger) and low tag numbers.
 */
export function readTlv(buf: Uint8Array, off: number, limit = buf.length): Tlv {
  if (off + 2 > limit) throw new DerError("truncated element");
  const tag = buf[off];
  if ((tag & 0x1f) === 0x1f) throw new DerError("high tag number");
  let len = buf[off + 1];
  let p = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) throw new DerError("indefinite length");
    if (n > 4) throw new DerError("length too long");
    if (p + n > limit) throw new DerError("truncated length");
    if (buf[p] === 0) throw new DerError("non-minimal length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p + i];
    if (len < 0x80) throw new DerError("non-minimal length");
    p += n;
  }
  if (len > limit - p) throw new DerError("element overruns its container");
  return { tag, start: off, contentStart: p, end: p + len, buf };
}

/** The elements inside a constructed element, in order. */
export function children(t: Tlv): Tlv[] {
  if (!isConstructed(t.tag)) throw new DerError("primitive element where constructed expected");
  const out: Tlv[] = [];
  let off = t.contentStart;
  while (off < t.end) {
    const c = readTlv(t.buf, off, t.end);
    out.push(c);
    off = c.end;
  }
  return out;
}

/** Checks an element's identifier. */
export function expectTag(t: Tlv, tag: number, what: string): Tlv {
  if (t.tag !== tag) throw new DerError(`${what}: unexpected tag 0x${t.tag.toString(16)}`);
  return t;
}

/** Reads the only element of buf (nothing may follow it). */
export function readOnly(buf: Uint8Array): Tlv {
  const t = readTlv(buf, 0);
  if (t.end !== buf.length) throw new DerError("trailing bytes");
  return t;
}

/** An OBJECT IDENTIFIER's dotted text ("2.5.4.3"). */
export function oidText(t: Tlv): string {
  expectTag(t, 0x06, "object identifier");
  const c = contents(t);
  if (c.length === 0) throw new DerError("empty object identifier");
  const arcs: string[] = [];
  let v = 0n;
  let first = true;
  for (let i = 0; i < c.length; i++) {
    const b = c[i];
    // a leading 0x80 is not minimal (OpenSSL refuses it too)
    if (v === 0n && b === 0x80) throw new DerError("non-minimal object identifier");
    v = (v << 7n) | BigInt(b & 0x7f);
    if (b & 0x80) {
      if (i === c.length - 1) throw new DerError("truncated object identifier");
      continue;
    }
    if (first) {
      const x = v < 40n ? 0n : v < 80n ? 1n : 2n;
      arcs.push(String(x), String(v - 40n * x));
      first = false;
    } else arcs.push(String(v));
    v = 0n;
  }
  return arcs.join(".");
}

/** A BOOLEAN's value. */
export function booleanOf(t: Tlv): boolean {
  expectTag(t, 0x01, "boolean");
  const c = contents(t);
  if (c.length !== 1) throw new DerError("bad boolean");
  return c[0] !== 0;
}

/** A small non-negative INTEGER's value (pathLenConstraint, version). */
export function smallInteger(t: Tlv): number {
  expectTag(t, 0x02, "integer");
  const c = contents(t);
  if (c.length === 0) throw new DerError("empty integer");
  if (c[0] & 0x80) throw new DerError("negative integer");
  if (c.length > 4) return Number.MAX_SAFE_INTEGER; // larger than any chain
  let v = 0;
  for (const b of c) v = v * 256 + b;
  return v;
}

/** A BIT STRING's bits as a number, first bit = most significant bit of the first octet. */
export function bitStringBytes(t: Tlv): Uint8Array {
  expectTag(t, 0x03, "bit string");
  const c = contents(t);
  if (c.length === 0 || c[0] > 7) throw new DerError("bad bit string");
  return c.subarray(1);
}
