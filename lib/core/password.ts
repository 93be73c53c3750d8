/**
 * The key password of sslserver -3 and sslclient -3, as ucspi-ssl reads it:
 * everything on descriptor 3 up to a NUL or its end.
 */
import { errorText, fatal } from "./errors.ts";

/**
 * Reads descriptor 3 to its end and returns what precedes the first NUL (or
 * all of it), decoded as UTF-8 (the TLS library takes a text passphrase).
 * Throws ToolError `prog: fatal: unable to read password: REASON` (111).
 */
export async function readFd3Password(prog: string): Promise<string> {
  let data: Uint8Array;
  try {
    data = await Deno.readFile("/dev/fd/3");
  } catch (e) {
    throw fatal(prog, `unable to read password: ${errorText(e)}`);
  }
  const nul = data.indexOf(0);
  return new TextDecoder().decode(nul >= 0 ? data.subarray(0, nul) : data);
}
