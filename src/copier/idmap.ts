/**
 * copier/idmap: a compact map from one 32-byte id to another (a source blob id to its id in the
 * destination), without an object per entry: keys and values in two Uint8Arrays, an
 * open-addressing Int32 table (load factor at most 0.5), about 70 to 130 bytes per entry. Ids are
 * HMAC outputs, so their first four bytes are a good hash (as in ChunkIndex).
 */
import { ID_LEN } from '../crypto/index.ts';

export class IdMap {
  private keys: Uint8Array;
  private vals: Uint8Array;
  private table: Int32Array;
  private count = 0;

  constructor(capacity = 1024) {
    this.keys = new Uint8Array(capacity * ID_LEN);
    this.vals = new Uint8Array(capacity * ID_LEN);
    this.table = new Int32Array(capacity * 2).fill(-1);
  }

  get size(): number {
    return this.count;
  }

  private slotOf(id: Uint8Array): number {
    return ((id[0]! | (id[1]! << 8) | (id[2]! << 16) | (id[3]! << 24)) >>> 0) & (this.table.length - 1);
  }

  private find(id: Uint8Array): number {
    const mask = this.table.length - 1;
    for (let s = this.slotOf(id); ; s = (s + 1) & mask) {
      const e = this.table[s]!;
      if (e < 0) return -1;
      const o = e * ID_LEN;
      let same = true;
      for (let i = 0; i < ID_LEN; i++) {
        if (this.keys[o + i] !== id[i]) {
          same = false;
          break;
        }
      }
      if (same) return e;
    }
  }

  /** The value of `key`: a view into the map (copy it to keep it past the next set). */
  get(key: Uint8Array): Uint8Array | undefined {
    const e = this.find(key);
    return e < 0 ? undefined : this.vals.subarray(e * ID_LEN, (e + 1) * ID_LEN);
  }

  set(key: Uint8Array, value: Uint8Array): void {
    if (key.length !== ID_LEN || value.length !== ID_LEN) throw new Error(`IdMap: ids are ${ID_LEN} bytes`);
    const e = this.find(key);
    if (e >= 0) {
      this.vals.set(value, e * ID_LEN);
      return;
    }
    if (this.count * ID_LEN >= this.keys.length) this.grow();
    const n = this.count++;
    this.keys.set(key, n * ID_LEN);
    this.vals.set(value, n * ID_LEN);
    this.insert(n);
  }

  clear(): void {
    this.count = 0;
    this.table.fill(-1);
  }

  private insert(e: number): void {
    const mask = this.table.length - 1;
    let s = this.slotOf(this.keys.subarray(e * ID_LEN, (e + 1) * ID_LEN));
    while (this.table[s]! >= 0) s = (s + 1) & mask;
    this.table[s] = e;
  }

  private grow(): void {
    const cap = (this.keys.length / ID_LEN) * 2;
    const keys = new Uint8Array(cap * ID_LEN);
    keys.set(this.keys);
    const vals = new Uint8Array(cap * ID_LEN);
    vals.set(this.vals);
    this.keys = keys;
    this.vals = vals;
    this.table = new Int32Array(cap * 2).fill(-1);
    for (let e = 0; e < this.count; e++) this.insert(e);
  }
}
