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
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ID_LEN } from '../crypto/index.ts';
import { IdMap } from './idmap.ts';

const MAGIC = Buffer.from('MBCPMAP1');
const RECORD = 1 + 2 * ID_LEN + 8;
export const KIND_CHUNK = 0;
export const KIND_TREE = 1;
type Kind = typeof KIND_CHUNK | typeof KIND_TREE;

function check(kind: number, a: Uint8Array, b: Uint8Array): Buffer {
  return createHash('sha256').update(Buffer.of(kind)).update(a).update(b).digest().subarray(0, 8);
}

export class CopyMap {
  readonly chunks = new IdMap();
  readonly trees = new IdMap();
  /** entries read from the file (not made by this run) */
  loaded = 0;
  /**
   * Records not yet appended to the file, written back to back into blocks of their own: a small
   * Buffer per record would come from Node's shared pool, and each kept one would pin a whole
   * pool slab (measured: 285 MiB of slabs held by 33,000 records in a copy of 2 GiB).
   */
  private pending: Buffer[] = [];
  private pendingFill = 0;
  readonly file: string | undefined;

  private constructor(file: string | undefined) {
    this.file = file;
  }

  /** The map of one pair of repositories, with the entries of its cache file when `cacheDir` is given. */
  static async open(cacheDir: string | undefined, sourceRepoId: string, destRepoId: string): Promise<CopyMap> {
    const m = new CopyMap(cacheDir !== undefined ? path.join(cacheDir, 'copy', `${sourceRepoId}-${destRepoId}.map`) : undefined);
    if (m.file === undefined) return m;
    let data: Buffer;
    try {
      data = await fsp.readFile(m.file);
    } catch {
      return m; // no cache yet, or unreadable: start empty
    }
    if (data.length < MAGIC.length || !data.subarray(0, MAGIC.length).equals(MAGIC)) {
      await fsp.rm(m.file, { force: true }).catch(() => undefined);
      return m;
    }
    for (let o = MAGIC.length; o + RECORD <= data.length; o += RECORD) {
      const kind = data[o]!;
      const a = data.subarray(o + 1, o + 1 + ID_LEN);
      const b = data.subarray(o + 1 + ID_LEN, o + 1 + 2 * ID_LEN);
      if ((kind !== KIND_CHUNK && kind !== KIND_TREE) || !check(kind, a, b).equals(data.subarray(o + 1 + 2 * ID_LEN, o + RECORD))) continue;
      (kind === KIND_CHUNK ? m.chunks : m.trees).set(a, b);
      m.loaded++;
    }
    return m;
  }

  /** Records a mapping made by this run (kept for the file until persist()). */
  add(kind: Kind, a: Uint8Array, b: Uint8Array): void {
    (kind === KIND_CHUNK ? this.chunks : this.trees).set(a, b);
    if (this.file === undefined) return;
    let block = this.pending[this.pending.length - 1];
    if (block === undefined || this.pendingFill + RECORD > block.length) {
      block = Buffer.allocUnsafeSlow(RECORD * 1024);
      this.pending.push(block);
      this.pendingFill = 0;
    }
    const r = block.subarray(this.pendingFill, this.pendingFill + RECORD);
    this.pendingFill += RECORD;
    r[0] = kind;
    r.set(a, 1);
    r.set(b, 1 + ID_LEN);
    check(kind, a, b).copy(r, 1 + 2 * ID_LEN);
  }

  /**
   * Appends the records added since the last call. Call only once the destination's index lists
   * every blob they name. A failure to write is not an error of the copy: it returns the message.
   */
  async persist(): Promise<string | undefined> {
    if (this.file === undefined || this.pending.length === 0) return undefined;
    // the last block holds only its first pendingFill bytes
    const records = this.pending.map((b, i, all) => (i === all.length - 1 ? b.subarray(0, this.pendingFill) : b));
    this.pending = [];
    this.pendingFill = 0;
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
      await fsp.appendFile(this.file, Buffer.concat(size === 0 ? [MAGIC, ...records] : records));
      return undefined;
    } catch (err) {
      return `the copy cache ${this.file} could not be written (${err instanceof Error ? err.message : String(err)}); the next copy reads the source's data again`;
    }
  }

  /** Forgets every entry, in memory and on disk (after a copy that used them failed its verification). */
  async drop(): Promise<void> {
    this.chunks.clear();
    this.trees.clear();
    this.pending = [];
    this.loaded = 0;
    if (this.file !== undefined) await fsp.rm(this.file, { force: true }).catch(() => undefined);
  }
}
