/**
 * The in-memory chunk index: blob id -> (type, pack, offset, length, raw length).
 *
 * It is the one structure that grows with the repository, so it is compact: ids live in one
 * Uint8Array (32 bytes each), the fields in parallel typed arrays, and lookups go through an
 * open-addressing hash table of Int32 slots (load factor <= 0.5). About 60 bytes per blob,
 * no object per blob.
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

export class ChunkIndex {
  private ids: Uint8Array;
  private types: Uint8Array;
  private packNo: Uint32Array;
  private offsets: Uint32Array;
  private lengths: Uint32Array;
  private rawLengths: Uint32Array;
  private table: Int32Array;
  private count = 0;
  readonly packs: string[] = [];
  private readonly packMap = new Map<string, number>();
  /** Total size of each pack file (as recorded by the index), by pack number. */
  readonly packSizes: number[] = [];

  constructor(capacity = 1024) {
    this.ids = new Uint8Array(capacity * ID_LEN);
    this.types = new Uint8Array(capacity);
    this.packNo = new Uint32Array(capacity);
    this.offsets = new Uint32Array(capacity);
    this.lengths = new Uint32Array(capacity);
    this.rawLengths = new Uint32Array(capacity);
    this.table = new Int32Array(capacity * 2).fill(-1);
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

  private grow(): void {
    const cap = this.types.length * 2;
    const grow8 = (a: Uint8Array, n: number): Uint8Array => {
      const b = new Uint8Array(n);
      b.set(a);
      return b;
    };
    const grow32 = (a: Uint32Array): Uint32Array => {
      const b = new Uint32Array(cap);
      b.set(a);
      return b;
    };
    this.ids = grow8(this.ids, cap * ID_LEN);
    this.types = grow8(this.types, cap);
    this.packNo = grow32(this.packNo);
    this.offsets = grow32(this.offsets);
    this.lengths = grow32(this.lengths);
    this.rawLengths = grow32(this.rawLengths);
    this.table = new Int32Array(cap * 2).fill(-1);
    for (let e = 0; e < this.count; e++) this.insertSlot(e);
  }

  /** Iterates all entries (id is a view valid only during the callback). */
  forEach(fn: (id: Uint8Array, type: BlobType, packNo: number, offset: number, length: number, rawLength: number) => void): void {
    for (let e = 0; e < this.count; e++) {
      fn(this.ids.subarray(e * ID_LEN, e * ID_LEN + ID_LEN), this.types[e] as BlobType, this.packNo[e]!, this.offsets[e]!, this.lengths[e]!, this.rawLengths[e]!);
    }
  }
}
