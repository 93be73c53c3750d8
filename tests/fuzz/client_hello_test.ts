/**
 * Fuzz: ucspitlsd -k's ClientHello reader (lib/tls/client_hello.ts) on
 * hostile bytes, against a model: well-formed ClientHellos built here with
 * a chosen server name (or none, or a name that is no DNS name), split into
 * records of input-chosen sizes and cut anywhere, must give "more" on every
 * proper prefix and the model's name on the whole; mutated bytes must give
 * an answer without throwing, and never a name that is not lower-case DNS
 * characters.
 */
import { clientHelloName } from "../../lib/tls/client_hello.ts";
import { below, type FuzzTarget, fuzzTest } from "../support/fuzz.ts";

function fail(why: string): never {
  throw new Error(why);
}

const u16 = (n: number) => [(n >> 8) & 255, n & 255];
const u24 = (n: number) => [(n >> 16) & 255, (n >> 8) & 255, n & 255];

/** A ClientHello body with the given server name bytes (null: no server_name extension). */
function helloBody(name: number[] | null, padding: number): number[] {
  const ext: number[] = [];
  ext.push(...u16(0x000a), ...u16(4), ...u16(2), ...u16(0x001d)); // supported_groups
  if (name) {
    const entry = [0, ...u16(name.length), ...name];
    const list = [...u16(entry.length), ...entry];
    ext.push(...u16(0), ...u16(list.length), ...list);
  }
  ext.push(...u16(0x0015), ...u16(padding), ...new Array(padding).fill(0)); // padding
  return [
    3,
    3,
    ...new Array(32).fill(7), // random
    0, // session id
    ...u16(2),
    0x13,
    0x01, // one cipher suite
    1,
    0, // null compression
    ...u16(ext.length),
    ...ext,
  ];
}

/** The handshake message in records whose sizes the input picks. */
function records(msg: number[], sizes: number[]): Uint8Array {
  const out: number[] = [];
  let at = 0;
  let i = 0;
  while (at < msg.length) {
    const n = Math.min(msg.length - at, Math.max(1, sizes[i++ % sizes.length]));
    out.push(22, 3, 1, ...u16(n), ...msg.slice(at, at + n));
    at += n;
  }
  return new Uint8Array(out);
}

const DNS = /^[a-z0-9._-]+$/;

export const target: FuzzTarget = {
  name: "client_hello",
  seeds: [new Uint8Array([1, 2, 3, 200, 50]), new Uint8Array([0, 255, 7, 9])],
  generate: (rand) => {
    const n = 2 + below(rand, 40);
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = below(rand, 256);
    return out;
  },
  maxLength: 512,
  run: (input) => {
    if (input.length < 2) return;
    // the model: a name of the input's letters (upper case mixed in), or none, or no DNS name
    const kind = input[0] % 4;
    const letters = Array.from(input.subarray(2, 2 + (input[1] % 40)), (b) => {
      const abc = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-";
      return abc.charCodeAt(b % abc.length);
    });
    const name = kind === 0 ? null : kind === 3 ? [...letters, 0x20, 0xff] : letters;
    const want = name === null || name.length === 0 || kind === 3
      ? null
      : String.fromCharCode(...name).toLowerCase();
    const body = helloBody(name, input[1] % 3 === 0 ? 300 : 0);
    const msg = [1, ...u24(body.length), ...body];
    const sizes = Array.from(input.subarray(1, 5), (b) => 1 + b * 4);
    const data = records(msg, sizes);
    // every proper prefix: more, or (past a record with a wrong header) nothing
    for (let cut = 0; cut < data.length; cut += 1 + (input[cut % input.length] % 7)) {
      const r = clientHelloName(data.subarray(0, cut));
      if (!("more" in r)) fail(`prefix of ${cut}/${data.length} gave ${JSON.stringify(r)}`);
    }
    const whole = clientHelloName(data);
    if (!("name" in whole) || whole.name !== want) {
      fail(`gave ${JSON.stringify(whole)}, model ${JSON.stringify(want)}`);
    }
    // bytes after the ClientHello (the client's next flight) change nothing
    const more = new Uint8Array(data.length + 3);
    more.set(data);
    more.set([23, 3, 3], data.length);
    if (JSON.stringify(clientHelloName(more)) !== JSON.stringify(whole)) fail("trailing bytes");
    // mutations: any answer, never a throw, a name only of DNS characters
    for (let i = 0; i < input.length; i++) {
      const m = data.slice();
      m[(input[i] * 131 + i * 17) % m.length] ^= 1 + input[(i + 1) % input.length];
      const r = clientHelloName(m.subarray(0, m.length - (i % 3)));
      if ("name" in r && r.name !== null && !DNS.test(r.name)) fail(`name ${r.name}`);
    }
  },
};

fuzzTest(target);
