/**
 * copier/idmap: a compact map from a source blob to its copy in the destination, without an id
 * stored twice: the key is the blob's entry number in the source's index, the value the copy's
 * entry number in the destination's index. Both indexes hold the ids already, the source's does
 * not change while a copy runs, and the destination's only grows.
 *
 * A copy stored in a pack that is not indexed yet (still open, or uploading) has no entry number:
 * its id waits in a small side table, and takes its entry number once its pack is indexed (looked
 * up when it is read, and for all of them when the side table fills). Those are at most the blobs
 * of the packs in flight.
 *
 * Memory: 4 bytes per entry of the source's index, and 36 bytes per copy waiting for its pack.
 * For a copy of 1,000,000 chunks that is 4 MiB; a map of ids to ids held 72 MiB (108 MiB while it
 * doubled), which a 256 MiB limit could not afford beside the two indexes.
 */
import { ID_LEN } from '../crypto/index.ts';

/** What the map needs of the source's index: entry numbers of ids and back. */
export interface EntryKeys {
  readonly size: number;
  entryOf(id: Uint8Array): number;
  entryOfHex(hex: string): number;
  entryId(e: number): Uint8Array;
}

/** What the map needs of the destination's index (the live one: it grows as packs are indexed). */
export interface EntryValues {
  entryOf(id: Uint8Array): number;
  entryId(e: number): Uint8Array;
}

/** slots value: no mapping */
const NONE = -1;
/** copies waiting for their pack at first (the table doubles when it is still 3/4 full after a sweep) */
const WAITING_START = 1 << 14;

export class EntryMap {
  /** by source entry: the destination entry (>= 0), NONE, or -2 - w for waiting copy w */
  private slots: Int32Array;
  /** waiting copies: their ids, and the source entry of each */
  private waitIds: Uint8Array;
  private waitSrc: Int32Array;
  private waiting = 0;
  private count = 0;
  readonly keys: EntryKeys;
  readonly values: EntryValues;

  constructor(keys: EntryKeys, values: EntryValues) {
    this.keys = keys;
    this.values = values;
    this.slots = new Int32Array(Math.max(keys.size, 1)).fill(NONE);
    this.waitIds = new Uint8Array(WAITING_START * ID_LEN);
    this.waitSrc = new Int32Array(WAITING_START);
  }

  /** mappings held */
  get size(): number {
    return this.count;
  }

  /** The copy's id for source entry `e`: a view (copy it to keep it past the next set). */
  getEntry(e: number): Uint8Array | undefined {
    const s = e >= 0 && e < this.slots.length ? this.slots[e]! : NONE;
    if (s >= 0) return this.values.entryId(s);
    if (s === NONE) return undefined;
    const w = -2 - s;
    const id = this.waitIds.subarray(w * ID_LEN, (w + 1) * ID_LEN);
    const d = this.values.entryOf(id);
    if (d >= 0) this.slots[e] = d; // its pack is indexed now (the waiting row is left for the next sweep)
    return id;
  }

  /** The copy's id for the source blob `id` (undefined also when the source's index lacks it). */
  get(id: Uint8Array): Uint8Array | undefined {
    return this.getEntry(this.keys.entryOf(id));
  }

  getHex(hex: string): Uint8Array | undefined {
    return this.getEntry(this.keys.entryOfHex(hex));
  }

  /** Maps source entry `e` to the copy `value` (an id of the destination). */
  setEntry(e: number, value: Uint8Array): void {
    if (value.length !== ID_LEN) throw new Error(`EntryMap: ids are ${ID_LEN} bytes`);
    if (e < 0) throw new Error('EntryMap: not an entry of the source index');
    if (e >= this.slots.length) {
      // the source's index grew (not during a copy): widen the slots
      const slots = new Int32Array(Math.max(e + 1, this.keys.size)).fill(NONE);
      slots.set(this.slots);
      this.slots = slots;
    }
    const was = this.slots[e]!;
    if (was === NONE) this.count++;
    const d = this.values.entryOf(value);
    if (d >= 0) {
      this.slots[e] = d;
      return;
    }
    if (was <= -2) {
      // waiting already: the new id replaces it in its row
      this.waitIds.set(value, (-2 - was) * ID_LEN);
      return;
    }
    if (this.waiting === this.waitSrc.length) this.sweep();
    const w = this.waiting++;
    this.waitIds.set(value, w * ID_LEN);
    this.waitSrc[w] = e;
    this.slots[e] = -2 - w;
  }

  /** Sets the copy of the source blob `id`; false (and nothing set) when the source's index lacks it. */
  set(id: Uint8Array, value: Uint8Array): boolean {
    const e = this.keys.entryOf(id);
    if (e < 0) return false;
    this.setEntry(e, value);
    return true;
  }

  clear(): void {
    this.count = 0;
    this.waiting = 0;
    this.slots.fill(NONE);
  }

  /** Gives waiting copies whose packs are indexed their entry numbers and drops their rows; doubles the table if it stays 3/4 full. */
  private sweep(): void {
    let keep = 0;
    for (let w = 0; w < this.waiting; w++) {
      const e = this.waitSrc[w]!;
      if (this.slots[e] !== -2 - w) continue; // resolved on a read
      const id = this.waitIds.subarray(w * ID_LEN, (w + 1) * ID_LEN);
      const d = this.values.entryOf(id);
      if (d >= 0) {
        this.slots[e] = d;
        continue;
      }
      if (keep !== w) {
        this.waitIds.copyWithin(keep * ID_LEN, w * ID_LEN, (w + 1) * ID_LEN);
        this.waitSrc[keep] = e;
      }
      this.slots[e] = -2 - keep;
      keep++;
    }
    this.waiting = keep;
    if (keep * 4 >= this.waitSrc.length * 3) {
      const ids = new Uint8Array(this.waitIds.length * 2);
      ids.set(this.waitIds);
      const src = new Int32Array(this.waitSrc.length * 2);
      src.set(this.waitSrc);
      this.waitIds = ids;
      this.waitSrc = src;
    }
  }
}
