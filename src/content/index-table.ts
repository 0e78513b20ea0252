/**
 * The in-memory chunk index: blob id -> (type, pack, offset, length, raw length).
 *
 * It is the one structure that grows with the repository, so it is compact: ids live in one
 * Uint8Array (32 bytes each), the fields in parallel typed arrays, and lookups go through an
 * open-addressing hash table of Int32 slots (load factor <= 0.5). About 57-65 bytes per blob,
 * no object per blob; the arrays grow in place (see grow()).
 */
import { ID_LEN } from '../crypto/index.ts';

export const BLOB_DATA = 0;
export const BLOB_TREE = 1;
export type BlobType = typeof BLOB_DATA | typeof BLOB_TREE;

export interface IndexEntry {
  readonly type: BlobType;
  readonly pack: string;
  readonly offset: number;
  readonly length: number;
  readonly rawLength: number;
}

/** entries an index reserves address space for at first (4 Mi: 128 MiB of ids, none of it resident until used) */
const RESERVE_ENTRIES = 1 << 22;
/** the smallest step the arrays grow by */
const GROW_MIN = 1 << 14;

function resizable(bytes: number, maxBytes: number): ArrayBuffer {
  return new ArrayBuffer(bytes, { maxByteLength: maxBytes });
}

/** Slots of the hash table for a capacity: a power of two, at least twice the capacity (load <= 0.5). */
function tableSize(capacity: number): number {
  let n = 1024;
  while (n < capacity * 2) n *= 2;
  return n;
}

export class ChunkIndex {
  private ids: Uint8Array;
  private types: Uint8Array;
  private packNo: Uint32Array;
  private offsets: Uint32Array;
  private lengths: Uint32Array;
  private rawLengths: Uint32Array;
  private table: Int32Array;
  private count = 0;
  private readonly scratch = Buffer.allocUnsafeSlow(ID_LEN);
  /** entries the arrays can grow to in place (their buffers' maxByteLength) */
  private reserve: number;
  readonly packs: string[] = [];
  private readonly packMap = new Map<string, number>();
  /** Total size of each pack file (as recorded by the index), by pack number. */
  readonly packSizes: number[] = [];

  /** capacity: entries to start with; reserve: entries to reserve address space for (the arrays grow in place up to it) */
  constructor(capacity = 1024, reserve = RESERVE_ENTRIES) {
    this.reserve = Math.max(reserve, capacity);
    this.ids = new Uint8Array(resizable(capacity * ID_LEN, this.reserve * ID_LEN));
    this.types = new Uint8Array(resizable(capacity, this.reserve));
    this.packNo = new Uint32Array(resizable(capacity * 4, this.reserve * 4));
    this.offsets = new Uint32Array(resizable(capacity * 4, this.reserve * 4));
    this.lengths = new Uint32Array(resizable(capacity * 4, this.reserve * 4));
    this.rawLengths = new Uint32Array(resizable(capacity * 4, this.reserve * 4));
    this.table = new Int32Array(tableSize(capacity)).fill(-1);
  }

  get size(): number {
    return this.count;
  }

  /** Bytes held by the typed arrays (for memory accounting). */
  get memoryBytes(): number {
    return this.ids.byteLength + this.types.byteLength + 4 * (this.packNo.length * 4) + this.table.byteLength;
  }

  packNumber(pack: string, size: number): number {
    let n = this.packMap.get(pack);
    if (n === undefined) {
      n = this.packs.length;
      this.packs.push(pack);
      this.packSizes.push(size);
      this.packMap.set(pack, n);
    }
    return n;
  }

  hasPack(pack: string): boolean {
    return this.packMap.has(pack);
  }

  /** The number of a pack the index knows, or undefined. */
  packNumberOf(pack: string): number | undefined {
    return this.packMap.get(pack);
  }

  private slotOf(id: Uint8Array): number {
    // ids are uniformly distributed (HMAC output): the first 4 bytes are a good hash.
    return ((id[0]! | (id[1]! << 8) | (id[2]! << 16) | (id[3]! << 24)) >>> 0) & (this.table.length - 1);
  }

  private find(id: Uint8Array): number {
    const mask = this.table.length - 1;
    let s = this.slotOf(id);
    for (;;) {
      const e = this.table[s]!;
      if (e < 0) return -1;
      if (this.idAt(e, id)) return e;
      s = (s + 1) & mask;
    }
  }

  private idAt(e: number, id: Uint8Array): boolean {
    const ids = this.ids;
    const o = e * ID_LEN;
    for (let i = 0; i < ID_LEN; i++) if (ids[o + i] !== id[i]) return false;
    return true;
  }

  has(id: Uint8Array): boolean {
    return this.find(id) >= 0;
  }

  lookup(id: Uint8Array): IndexEntry | undefined {
    const e = this.find(id);
    if (e < 0) return undefined;
    return {
      type: this.types[e] as BlobType,
      pack: this.packs[this.packNo[e]!]!,
      offset: this.offsets[e]!,
      length: this.lengths[e]!,
      rawLength: this.rawLengths[e]!,
    };
  }

  /**
   * The entry number of an id given in hex (as trees hold them), or -1: decoded into a scratch
   * buffer, not a new Buffer per lookup (a walk of 1,000,000 files made a million of them).
   */
  entryOfHex(hex: string): number {
    if (hex.length !== ID_LEN * 2 || this.scratch.write(hex, 'hex') !== ID_LEN) return -1;
    return this.find(this.scratch);
  }

  hasHex(hex: string): boolean {
    return this.entryOfHex(hex) >= 0;
  }

  /** Returns the entry number of id, or -1. */
  entryOf(id: Uint8Array): number {
    return this.find(id);
  }
  /** The id of entry e, as a view into the table (valid until the next add). */
  entryId(e: number): Uint8Array {
    return this.ids.subarray(e * ID_LEN, e * ID_LEN + ID_LEN);
  }
  packOf(e: number): number {
    return this.packNo[e]!;
  }
  rawLengthOf(e: number): number {
    return this.rawLengths[e]!;
  }
  offsetOf(e: number): number {
    return this.offsets[e]!;
  }
  lengthOf(e: number): number {
    return this.lengths[e]!;
  }
  typeOf(e: number): BlobType {
    return this.types[e] as BlobType;
  }
  /** The id of entry e: a view into the index, valid until the next add(). */
  idOf(e: number): Uint8Array {
    return this.ids.subarray(e * ID_LEN, e * ID_LEN + ID_LEN);
  }

  /** Adds an entry; returns false (and changes nothing) when the id is already indexed. */
  add(id: Uint8Array, type: BlobType, packNo: number, offset: number, length: number, rawLength: number): boolean {
    if (this.find(id) >= 0) return false;
    if (this.count + 1 > this.types.length) this.grow();
    if (this.count + 1 > this.table.length >>> 1) this.rehash();
    const e = this.count++;
    this.ids.set(id.subarray(0, ID_LEN), e * ID_LEN);
    this.types[e] = type;
    this.packNo[e] = packNo;
    this.offsets[e] = offset;
    this.lengths[e] = length;
    this.rawLengths[e] = rawLength;
    this.insertSlot(e);
    return true;
  }

  private insertSlot(e: number): void {
    const mask = this.table.length - 1;
    let s = this.slotOf(this.ids.subarray(e * ID_LEN, e * ID_LEN + ID_LEN));
    while (this.table[s]! >= 0) s = (s + 1) & mask;
    this.table[s] = e;
  }

  /**
   * Makes room for more entries. The arrays live in resizable ArrayBuffers: they grow in place,
   * in steps of an eighth, with no copy (a doubling copy held the old and the new arrays at once:
   * 28 + 57 MiB at 524,288 blobs) and no capacity left unused beyond the step. Past the reserve
   * they move to new buffers with four times the reserve.
   */
  private grow(): void {
    const cap = this.types.length + Math.max(GROW_MIN, this.types.length >>> 3);
    if (cap > this.reserve) {
      this.reserve = Math.max(cap, this.reserve * 4);
      const move = <T extends Uint8Array | Uint32Array>(a: T, make: (b: ArrayBuffer) => T, width: number): T => {
        const b = make(resizable(cap * width, this.reserve * width));
        b.set(a);
        return b;
      };
      this.ids = move(this.ids, (b) => new Uint8Array(b), ID_LEN);
      this.types = move(this.types, (b) => new Uint8Array(b), 1);
      this.packNo = move(this.packNo, (b) => new Uint32Array(b), 4);
      this.offsets = move(this.offsets, (b) => new Uint32Array(b), 4);
      this.lengths = move(this.lengths, (b) => new Uint32Array(b), 4);
      this.rawLengths = move(this.rawLengths, (b) => new Uint32Array(b), 4);
    } else {
      for (const a of [this.ids, this.types, this.packNo, this.offsets, this.lengths, this.rawLengths]) {
        (a.buffer as ArrayBuffer).resize(cap * (a.BYTES_PER_ELEMENT * (a === this.ids ? ID_LEN : 1)));
      }
    }
  }

  /** Doubles the hash table (load factor stays <= 0.5). */
  private rehash(): void {
    this.table = new Int32Array(this.table.length * 2).fill(-1);
    for (let e = 0; e < this.count; e++) this.insertSlot(e);
  }

  /**
   * Entry numbers grouped by pack: the entries of pack p are order[start[p]] .. order[start[p+1]-1],
   * in the order they were added. Four bytes per entry and no object per entry (a check that
   * grouped them as objects held 200+ MiB for 1,000,000 blobs).
   */
  entriesByPack(): { start: Int32Array; order: Int32Array } {
    const packs = this.packs.length;
    const start = new Int32Array(packs + 1);
    for (let e = 0; e < this.count; e++) start[this.packNo[e]! + 1] = start[this.packNo[e]! + 1]! + 1;
    for (let p = 0; p < packs; p++) start[p + 1] = start[p + 1]! + start[p]!;
    const next = start.slice(0, packs);
    const order = new Int32Array(this.count);
    for (let e = 0; e < this.count; e++) {
      const p = this.packNo[e]!;
      order[next[p]!] = e;
      next[p] = next[p]! + 1;
    }
    return { start, order };
  }

  /** Iterates all entries (id is a view valid only during the callback). */
  forEach(fn: (id: Uint8Array, type: BlobType, packNo: number, offset: number, length: number, rawLength: number) => void): void {
    for (let e = 0; e < this.count; e++) {
      fn(this.ids.subarray(e * ID_LEN, e * ID_LEN + ID_LEN), this.types[e] as BlobType, this.packNo[e]!, this.offsets[e]!, this.lengths[e]!, this.rawLengths[e]!);
    }
  }
}
