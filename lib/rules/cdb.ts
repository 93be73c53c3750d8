/**
 * D. J. Bernstein's constant database (cdb): a reader over bytes held in memory
 * and a streaming writer that produces, for the same records in the same
 * order, exactly the bytes DJB's cdb_make produces.
 *
 * Layout: a 2048-byte header of 256 (position, slot count) pairs; the records
 * (key length, data length, key, data; lengths little-endian uint32); then 256
 * hash tables of (hash, record position) slots. Table i holds the records whose
 * hash ends in the byte i, twice as many slots as records; a record goes to the
 * first free slot from (hash >>> 8) % slots on, in the order it was added.
 */
import { stringBytes } from "../core/bytes.ts";
import { writeAllSync } from "../core/write_all.ts";

/** A cdb that cannot be read (truncated, corrupt) or cannot be written (too big). */
export class CdbError extends Error {
  /** errno name for errorText(): EPROTO ("protocol error") for a corrupt file, as DJB's cdb. */
  readonly code?: string;
  /** `message` says what is wrong; `code` is the errno name it stands for, if any. */
  constructor(message: string, code?: string) {
    super(message);
    this.name = "CdbError";
    this.code = code;
  }
}

/** The largest size a cdb may have: positions are 32-bit. */
export const CDB_MAX_SIZE = 0xffffffff;

/** DJB's cdb hash of bytes[start, end): h = 5381; h = ((h << 5) + h) ^ byte, unsigned 32-bit. */
export function cdbHash(bytes: Uint8Array, start = 0, end = bytes.length): number {
  // Kept as an int32 in the loop (the low 32 bits are the same), unsigned at the end.
  let h = 5381;
  for (let i = start; i < end; i++) h = ((h << 5) + h) ^ bytes[i];
  return h >>> 0;
}

function corrupt(): CdbError {
  return new CdbError("protocol error", "EPROTO");
}

const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/**
 * A cdb held in memory. Every position read is checked against the size, and
 * every probe loop is bounded by its table's slot count, so a truncated or
 * corrupt file gives a CdbError (code EPROTO) or a miss, never a hang.
 */
export class Cdb {
  /** The whole cdb file. */
  readonly bytes: Uint8Array;
  #view: DataView;

  /** A reader over `bytes` (kept, not copied); nothing is checked until a lookup. */
  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  #u32(pos: number): number {
    if (pos < 0 || pos + 4 > this.bytes.length) throw corrupt();
    return this.#view.getUint32(pos, true);
  }

  /** Positions [data start, data end) of every record with this key, in file order. */
  *#find(key: Uint8Array): Generator<[number, number]> {
    const h = cdbHash(key);
    const tpos = this.#u32((h & 255) * 8);
    const tlen = this.#u32((h & 255) * 8 + 4);
    if (tlen === 0) return;
    let slot = (h >>> 8) % tlen;
    for (let probe = 0; probe < tlen; probe++) {
      const at = tpos + slot * 8;
      const sh = this.#u32(at);
      const rpos = this.#u32(at + 4);
      if (rpos === 0) return;
      if (++slot === tlen) slot = 0;
      if (sh !== h) continue;
      const klen = this.#u32(rpos);
      const dlen = this.#u32(rpos + 4);
      const kstart = rpos + 8;
      const dstart = kstart + klen;
      if (dstart + dlen > this.bytes.length) throw corrupt();
      if (klen !== key.length) continue;
      let same = true;
      for (let i = 0; i < klen; i++) {
        if (this.bytes[kstart + i] !== key[i]) {
          same = false;
          break;
        }
      }
      if (same) yield [dstart, dstart + dlen];
    }
  }

  /**
   * The data of the first record with this key (a view into the cdb), or
   * null. A string key is a byte string (lib/core/bytes.ts: one char per byte),
   * so a key built from environment values matches the bytes C looks up.
   */
  get(key: Uint8Array | string): Uint8Array | null {
    const k = typeof key === "string" ? stringBytes(key) : key;
    for (const [s, e] of this.#find(k)) return this.bytes.subarray(s, e);
    return null;
  }

  /**
   * The data of every record with this key (a string: a byte string), in the order they were added.
   */
  getAll(key: Uint8Array | string): Uint8Array[] {
    const k = typeof key === "string" ? stringBytes(key) : key;
    const out: Uint8Array[] = [];
    for (const [s, e] of this.#find(k)) out.push(this.bytes.subarray(s, e));
    return out;
  }

  /** Every record in file order (for dumps, as `cdb -d`). */
  *entries(): Generator<[key: Uint8Array, data: Uint8Array]> {
    const end = this.#u32(0); // table 0 starts right after the records
    let pos = 2048;
    while (pos < end) {
      const klen = this.#u32(pos);
      const dlen = this.#u32(pos + 4);
      const kstart = pos + 8;
      const next = kstart + klen + dlen;
      if (next > end) throw corrupt();
      yield [this.bytes.subarray(kstart, kstart + klen), this.bytes.subarray(kstart + klen, next)];
      pos = next;
    }
  }
}

/** Where a CdbWriter's bytes go: called with chunks that are only valid during the call. */
export type CdbSink = (chunk: Uint8Array) => void;

/**
 * Writes a cdb as DJB's cdb_make does, streaming: records are copied into one
 * buffer (1 MiB unless told) and passed to the sink each time it fills; only
 * the (hash, position) pairs stay in memory (8 bytes per record). `finish()`
 * writes the hash tables and returns the 2048-byte header, which the caller
 * puts at offset 0 (the sink received 2048 zero bytes there first).
 */
export class CdbWriter {
  #sink: CdbSink;
  #buf: Uint8Array;
  #fill = 0;
  #pos = 2048;
  // Each the uint32's bits, as int32 (small integers for V8 at every tier).
  #hashes = new Int32Array(1024);
  #positions = new Int32Array(1024);
  #count = 0;
  #limit: number;
  #done = false;

  /**
   * `limit` is the largest file allowed (tests lower it to see the 4 GiB
   * refusal); `bufferSize` how many bytes the sink gets at a time (at least 64).
   */
  constructor(sink: CdbSink, limit = CDB_MAX_SIZE, bufferSize = 1 << 20) {
    this.#sink = sink;
    this.#limit = limit;
    this.#buf = new Uint8Array(Math.max(64, bufferSize));
    this.#put(new Uint8Array(2048));
  }

  /** Number of records added so far. */
  get count(): number {
    return this.#count;
  }

  #flush(): void {
    if (this.#fill > 0) {
      this.#sink(this.#buf.subarray(0, this.#fill));
      this.#fill = 0;
    }
  }

  #put(bytes: Uint8Array): void {
    if (bytes.length > this.#buf.length - this.#fill) {
      this.#flush();
      if (bytes.length > this.#buf.length) {
        this.#sink(bytes);
        return;
      }
    }
    this.#buf.set(bytes, this.#fill);
    this.#fill += bytes.length;
  }

  #putU32Pair(a: number, b: number): void {
    if (this.#buf.length - this.#fill < 8) this.#flush();
    const buf = this.#buf;
    let i = this.#fill;
    buf[i++] = a & 255;
    buf[i++] = (a >>> 8) & 255;
    buf[i++] = (a >>> 16) & 255;
    buf[i++] = a >>> 24;
    buf[i++] = b & 255;
    buf[i++] = (b >>> 8) & 255;
    buf[i++] = (b >>> 16) & 255;
    buf[i++] = b >>> 24;
    this.#fill = i;
  }

  #tooBig(): CdbError {
    return new CdbError(`cdb would exceed ${this.#limit} bytes (4 GiB limit of the format)`);
  }

  /** Adds a record; the bytes are copied before add returns. Throws CdbError past 4 GiB. */
  add(key: Uint8Array, data: Uint8Array): void {
    this.addRecord(key, 0, key.length, data, 0, data.length);
  }

  /**
   * Adds the record key[kstart, kend) -> data[dstart, dend), copied before it
   * returns (so a compiler can pass its own buffers without making views).
   * Throws CdbError past 4 GiB.
   */
  addRecord(
    key: Uint8Array,
    kstart: number,
    kend: number,
    data: Uint8Array,
    dstart: number,
    dend: number,
  ): void {
    if (this.#done) throw new CdbError("cdb already finished");
    const klen = kend - kstart;
    const dlen = dend - dstart;
    const size = 8 + klen + dlen;
    const count = this.#count;
    // Every record also needs two 8-byte hash slots at the end.
    if (this.#pos + size + 16 * (count + 1) > this.#limit) throw this.#tooBig();
    if (count === this.#hashes.length) this.#grow();
    this.#positions[count] = this.#pos;
    this.#pos += size;
    this.#count = count + 1;
    if (size > this.#buf.length - this.#fill) {
      this.#flush();
      if (size > this.#buf.length) {
        this.#hashes[count] = cdbHash(key, kstart, kend);
        this.#putU32Pair(klen, dlen);
        this.#put(key.subarray(kstart, kend));
        this.#put(data.subarray(dstart, dend));
        return;
      }
    }
    // The common case: the record fits the buffer; hash the key while copying it.
    const buf = this.#buf;
    let at = this.#fill;
    buf[at++] = klen & 255;
    buf[at++] = (klen >>> 8) & 255;
    buf[at++] = (klen >>> 16) & 255;
    buf[at++] = klen >>> 24;
    buf[at++] = dlen & 255;
    buf[at++] = (dlen >>> 8) & 255;
    buf[at++] = (dlen >>> 16) & 255;
    buf[at++] = dlen >>> 24;
    let h = 5381;
    for (let i = kstart; i < kend; i++) {
      const c = key[i];
      h = ((h << 5) + h) ^ c;
      buf[at++] = c;
    }
    this.#hashes[count] = h;
    if (dlen > 64) {
      buf.set(data.subarray(dstart, dend), at);
      at += dlen;
    } else for (let i = dstart; i < dend; i++) buf[at++] = data[i];
    this.#fill = at;
  }

  #grow(): void {
    const n = this.#hashes.length * 2;
    const h = new Int32Array(n);
    h.set(this.#hashes);
    this.#hashes = h;
    const p = new Int32Array(n);
    p.set(this.#positions);
    this.#positions = p;
  }

  /** Writes the hash tables, flushes the sink and returns the header for offset 0. */
  finish(): Uint8Array {
    if (this.#done) throw new CdbError("cdb already finished");
    this.#done = true;
    const n = this.#count;
    const hashes = this.#hashes;
    const positions = this.#positions;
    const counts = new Int32Array(256);
    for (let i = 0; i < n; i++) counts[hashes[i] & 255]++;
    const start = new Int32Array(257);
    for (let b = 0; b < 256; b++) start[b + 1] = start[b] + counts[b];
    // The records grouped by table, in the order they were added, so that
    // filling a table reads them in sequence (not one cache miss each).
    const byHash = new Int32Array(n);
    const byPos = new Int32Array(n);
    const next = start.slice(0, 256);
    for (let i = 0; i < n; i++) {
      const h = hashes[i];
      const k = next[h & 255]++;
      byHash[k] = h;
      byPos[k] = positions[i];
    }

    let maxSlots = 0;
    for (let b = 0; b < 256; b++) maxSlots = Math.max(maxSlots, counts[b] * 2);
    // (hash, position) pairs interleaved; on little-endian hosts its bytes are the table.
    const slots = new Int32Array(maxSlots * 2);
    const slotBytes = new Uint8Array(slots.buffer);
    const header = new Uint8Array(2048);
    const hv = new DataView(header.buffer);
    let pos = this.#pos;
    for (let b = 0; b < 256; b++) {
      const len = counts[b] * 2;
      hv.setUint32(b * 8, pos, true);
      hv.setUint32(b * 8 + 4, len, true);
      if (len === 0) continue;
      if (pos + len * 8 > this.#limit) throw this.#tooBig();
      slots.fill(0, 0, len * 2);
      const last = start[b + 1];
      for (let k = start[b]; k < last; k++) {
        const h = byHash[k];
        let where = (h >>> 8) % len;
        // A record's position is never 0 (the header is there): 0 is a free slot.
        while (slots[2 * where + 1] !== 0) if (++where === len) where = 0;
        slots[2 * where] = h;
        slots[2 * where + 1] = byPos[k];
      }
      if (LITTLE_ENDIAN) this.#put(slotBytes.subarray(0, len * 8));
      else for (let s = 0; s < len; s++) this.#putU32Pair(slots[2 * s], slots[2 * s + 1]);
      pos += len * 8;
    }
    this.#flush();
    this.#pos = pos;
    return header;
  }

  /** Total size of the cdb (after finish: of the whole file). */
  get size(): number {
    return this.#pos;
  }
}

/**
 * Builds a whole cdb in memory from records (for tests and small tables); strings are byte strings.
 */
export function makeCdb(records: Iterable<[Uint8Array | string, Uint8Array | string]>): Uint8Array {
  const chunks: Uint8Array[] = [];
  const w = new CdbWriter((c) => chunks.push(c.slice()));
  for (const [k, d] of records) {
    w.add(
      typeof k === "string" ? stringBytes(k) : k,
      typeof d === "string" ? stringBytes(d) : d,
    );
  }
  const header = w.finish();
  const out = new Uint8Array(w.size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  out.set(header, 0);
  return out;
}

/**
 * Writes a cdb file as cdb_make does: creates (truncates) `path`, streams
 * records to it through the CdbWriter, and on `finish()` writes the header,
 * fsyncs and closes. Synchronous I/O: this is for command-line compilers.
 */
export class CdbFile {
  #file: Deno.FsFile;
  #writer: CdbWriter;
  #closed = false;

  /** Opens `path` for writing (create, truncate, mode 0644). Throws Deno's error on failure. */
  constructor(path: string, limit = CDB_MAX_SIZE) {
    this.#file = Deno.openSync(path, { write: true, create: true, truncate: true, mode: 0o644 });
    const file = this.#file;
    this.#writer = new CdbWriter((chunk) => writeAllSync(file, chunk), limit);
  }

  /** Adds a record (see CdbWriter.add). */
  add(key: Uint8Array, data: Uint8Array): void {
    this.#writer.add(key, data);
  }

  /** Adds key[kstart, kend) -> data[dstart, dend) (see CdbWriter.addRecord). */
  addRecord(
    key: Uint8Array,
    kstart: number,
    kend: number,
    data: Uint8Array,
    dstart: number,
    dend: number,
  ): void {
    this.#writer.addRecord(key, kstart, kend, data, dstart, dend);
  }

  /** Writes the tables and header, fsyncs and closes the file. */
  finish(): void {
    const header = this.#writer.finish();
    this.#file.seekSync(0, Deno.SeekMode.Start);
    writeAllSync(this.#file, header);
    this.#file.syncSync();
    this.close();
  }

  /** Closes the file without finishing it (after an error). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#file.close();
  }
}
