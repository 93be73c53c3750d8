/**
 * Byte strings: how bytes from the network, rules files and certificates
 * travel through the tools without ever being decoded as text. A byte string
 * is a JS string whose every char is one byte (code 0-255), so a value keeps
 * its exact bytes from where it was read to where it is written (an
 * environment, a log line, a cdb, a socket). Environment values (`Env`,
 * Map<string, string>) are byte strings; text typed by a user (argv, our own
 * environment as Deno decodes it) becomes one with `utf8ByteString`.
 */

/** The bytes of `data` as a byte string (one char per byte). */
export function byteString(data: Uint8Array): string {
  let s = "";
  for (let i = 0; i < data.length; i += 4096) {
    // apply takes the typed array as is: far faster than spreading it
    s += String.fromCharCode.apply(null, data.subarray(i, i + 4096) as unknown as number[]);
  }
  return s;
}

/** The bytes of byte string `s` (each char's low 8 bits: one byte). */
export function stringBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

const utf8 = new TextEncoder();
const NON_ASCII = /[\u0080-\uffff]/;

/** Text (any JS string) as the byte string of its UTF-8 encoding; ASCII is returned as is. */
export function utf8ByteString(text: string): string {
  return NON_ASCII.test(text) ? byteString(utf8.encode(text)) : text;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Byte string `s` decoded as UTF-8 text, or null when its bytes are not
 * valid UTF-8 (an API that takes only text, such as Deno.Command's env,
 * cannot carry it unchanged). ASCII is returned as is.
 */
export function byteStringText(s: string): string | null {
  if (!NON_ASCII.test(s)) return s;
  try {
    return strictUtf8.decode(stringBytes(s));
  } catch {
    // not valid UTF-8: that is the answer, not an error
    return null;
  }
}

/**
 * The bytes of parts one after another. A part that is the only non-empty
 * one is returned itself, not copied (the callers hand the result on and
 * never write to it).
 */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const full = parts.filter((p) => p.length > 0);
  if (full.length <= 1) return full[0] ?? new Uint8Array(0);
  let n = 0;
  for (const p of full) n += p.length;
  const out = new Uint8Array(n);
  n = 0;
  for (const p of full) {
    out.set(p, n);
    n += p.length;
  }
  return out;
}
