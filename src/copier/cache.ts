/**
 * copier/cache: what copy knows of the destination ids of source blobs: chunk id -> chunk id and
 * tree id -> tree id, in memory for one run and, when a cache directory is given, kept in a file
 * for the next run (`<cacheDir>/copy/<source repo id>-<destination repo id>.map`).
 *
 * The mapping is a pure function of the two id keys and the blob's content, so it never goes
 * stale; what may go away is the destination blob (a prune of the destination). An entry is
 * therefore only used while the destination's index holds its target (the copier checks), and a
 * copied snapshot is verified against its source before it is written. The file is a cache: safe
 * to delete at any time, and a damaged record (its check bytes do not match) is ignored.
 *
 * File: magic `MBCPMAP1`, then records of 73 bytes: kind (0 chunk, 1 tree) · source id [32] ·
 * destination id [32] · the first 8 bytes of SHA-256(kind · source id · destination id). Records
 * are appended only after the destination's index lists the blobs they name (after a flush).
 *
 * In memory both maps go from the blob's entry number in the source's index to its copy's in the
 * destination's (see EntryMap); a record of a blob the source's index does not hold, or of a copy
 * the destination's index no longer holds (a prune), is of no use to a copy and is not loaded.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ID_LEN } from '../crypto/index.ts';
import { EntryMap } from './idmap.ts';
import type { EntryKeys, EntryValues } from './idmap.ts';

const MAGIC = Buffer.from('MBCPMAP1');
const RECORD = 1 + 2 * ID_LEN + 8;
export const KIND_CHUNK = 0;
export const KIND_TREE = 1;
type Kind = typeof KIND_CHUNK | typeof KIND_TREE;

function check(kind: number, a: Uint8Array, b: Uint8Array): Buffer {
  return createHash('sha256').update(Buffer.of(kind)).update(a).update(b).digest().subarray(0, 8);
}

export class CopyMap {
  readonly chunks: EntryMap;
  readonly trees: EntryMap;
  /** entries read from the file (not made by this run) */
  loaded = 0;
  /**
   * Mappings not yet appended to the file, as source entry numbers (a tree's as -1 - e) in blocks
   * of their own: 4 bytes each, the ids are in the source's index and in the maps. (Whole records
   * held 73 MiB for a copy of 1,000,000 chunks until its one flush.)
   */
  private pending: Int32Array[] = [];
  private pendingFill = 0;
  readonly file: string | undefined;

  private constructor(file: string | undefined, keys: EntryKeys, values: EntryValues) {
    this.file = file;
    this.chunks = new EntryMap(keys, values);
    this.trees = new EntryMap(keys, values);
  }

  /**
   * The map of one pair of repositories, from the source's index `keys` to the destination's
   * `values`, with the entries of its cache file when `cacheDir` is given.
   */
  static async open(cacheDir: string | undefined, sourceRepoId: string, destRepoId: string, keys: EntryKeys, values: EntryValues): Promise<CopyMap> {
    const m = new CopyMap(cacheDir !== undefined ? path.join(cacheDir, 'copy', `${sourceRepoId}-${destRepoId}.map`) : undefined, keys, values);
    if (m.file === undefined) return m;
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(m.file, 'r');
    } catch {
      return m; // no cache yet, or unreadable: start empty
    }
    try {
      // read in pieces of whole records: the file may be larger than the memory a copy may use
      const magic = Buffer.alloc(MAGIC.length);
      const { bytesRead } = await fh.read(magic, 0, MAGIC.length, 0);
      if (bytesRead < MAGIC.length || !magic.equals(MAGIC)) {
        await fh.close();
        await fsp.rm(m.file, { force: true }).catch(() => undefined);
        return m;
      }
      const buf = Buffer.allocUnsafeSlow(RECORD * 8192);
      let pos = MAGIC.length;
      for (;;) {
        const got = (await fh.read(buf, 0, buf.length, pos)).bytesRead;
        const whole = got - (got % RECORD);
        for (let o = 0; o < whole; o += RECORD) {
          const kind = buf[o]!;
          const a = buf.subarray(o + 1, o + 1 + ID_LEN);
          const b = buf.subarray(o + 1 + ID_LEN, o + 1 + 2 * ID_LEN);
          if ((kind !== KIND_CHUNK && kind !== KIND_TREE) || !check(kind, a, b).equals(buf.subarray(o + 1 + 2 * ID_LEN, o + RECORD))) continue;
          if (values.entryOf(b) < 0) continue;
          if ((kind === KIND_CHUNK ? m.chunks : m.trees).set(a, b)) m.loaded++;
        }
        if (got < buf.length) break;
        pos += whole;
      }
    } catch {
      // unreadable part way: keep what was read
    } finally {
      await fh.close().catch(() => undefined);
    }
    return m;
  }

  /** Records a mapping made by this run of source entry `e` (kept for the file until persist()). */
  addEntry(kind: Kind, e: number, b: Uint8Array): void {
    (kind === KIND_CHUNK ? this.chunks : this.trees).setEntry(e, b);
    if (this.file === undefined) return;
    let block = this.pending[this.pending.length - 1];
    if (block === undefined || this.pendingFill === block.length) {
      block = new Int32Array(16384);
      this.pending.push(block);
      this.pendingFill = 0;
    }
    block[this.pendingFill++] = kind === KIND_CHUNK ? e : -1 - e;
  }

  /** Records a mapping made by this run of the source blob `a`; false when the source's index lacks it. */
  add(kind: Kind, a: Uint8Array, b: Uint8Array): boolean {
    const e = this.chunks.keys.entryOf(a);
    if (e < 0) return false;
    this.addEntry(kind, e, b);
    return true;
  }

  /**
   * Appends the records added since the last call. Call only once the destination's index lists
   * every blob they name. A failure to write is not an error of the copy: it returns the message.
   */
  async persist(): Promise<string | undefined> {
    if (this.file === undefined || this.pending.length === 0) return undefined;
    const pending = this.pending;
    const fill = this.pendingFill;
    this.pending = [];
    this.pendingFill = 0;
    const keys = this.chunks.keys;
    let fh: fsp.FileHandle | undefined;
    try {
      await fsp.mkdir(path.dirname(this.file), { recursive: true });
      let size = 0;
      try {
        size = (await fsp.stat(this.file)).size;
      } catch {
        size = 0;
      }
      // a record cut short by a crash would shift every later one: start after the last whole record
      if (size > MAGIC.length && (size - MAGIC.length) % RECORD !== 0) await fsp.truncate(this.file, size - ((size - MAGIC.length) % RECORD));
      fh = await fsp.open(this.file, 'a');
      if (size === 0) await fh.write(MAGIC);
      // written a block of records at a time
      const out = Buffer.allocUnsafeSlow(RECORD * 16384);
      for (let i = 0; i < pending.length; i++) {
        const block = pending[i]!;
        const n = i === pending.length - 1 ? fill : block.length;
        let o = 0;
        for (let j = 0; j < n; j++) {
          const x = block[j]!;
          const kind = x >= 0 ? KIND_CHUNK : KIND_TREE;
          const e = x >= 0 ? x : -1 - x;
          const b = (kind === KIND_CHUNK ? this.chunks : this.trees).getEntry(e);
          if (b === undefined) continue; // dropped since
          const a = keys.entryId(e);
          out[o] = kind;
          out.set(a, o + 1);
          out.set(b, o + 1 + ID_LEN);
          check(kind, a, b).copy(out, o + 1 + 2 * ID_LEN);
          o += RECORD;
        }
        if (o > 0) await fh.write(out, 0, o);
      }
      return undefined;
    } catch (err) {
      return `the copy cache ${this.file} could not be written (${err instanceof Error ? err.message : String(err)}); the next copy reads the source's data again`;
    } finally {
      await fh?.close().catch(() => undefined);
    }
  }

  /** Forgets every entry, in memory and on disk (after a copy that used them failed its verification). */
  async drop(): Promise<void> {
    this.chunks.clear();
    this.trees.clear();
    this.pending = [];
    this.pendingFill = 0;
    this.loaded = 0;
    if (this.file !== undefined) await fsp.rm(this.file, { force: true }).catch(() => undefined);
  }
}
