/**
 * content: the content-addressed store. Blobs (file chunks and tree objects) are
 * deduplicated by their keyed id, compressed with zstd (skipped when it does not pay),
 * encrypted, and packed into pack files of several MiB. The index maps ids to packs.
 *
 * Write ordering: a blob becomes visible in the in-memory index only after its pack has been
 * stored durably; index files are written after their packs (flush), and callers write
 * snapshots only after flush() resolved.
 */
import * as zlib from 'node:zlib';
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import type { Backend, BlobWriter } from '../storage/backend.ts';
import { findLayer } from '../storage/backend.ts';
import { CacheBackend } from '../storage/cache.ts';
import { contentId, seal } from '../crypto/index.ts';
import { BlobRef, NOT_DECOMPRESSING, blobKind, checkPlain } from './blob.ts';
import { ASYNC_MIN, AsyncKeys } from '../crypto/async.ts';
import type { MasterKey } from '../crypto/index.ts';
import { IntegrityError, MeshbackError, NotFoundError } from '../errors/index.ts';
import { BLOB_DATA, BLOB_TREE, ChunkIndex } from './index-table.ts';
import type { BlobType } from './index-table.ts';
import { KIND_RAW, KIND_ZSTD, PackEntryLog, decodeIndex, sha256hex } from './pack.ts';
import { IndexWriter } from './index-writer.ts';
import type { PackEntry } from './pack.ts';
import { parallel } from '../util/parallel.ts';
import type { ParityScheme } from '../parity/index.ts';
import { ParityWriter } from './parity.ts';
import { Semaphore } from '../util/semaphore.ts';
import { memoryPlan } from '../util/memory.ts';
import { ZstdContexts } from './zstd.ts';

/** finished packs being written at once */
const MAX_UPLOADS = 2;
/** bytes of an open pack queued for writing before add() waits for the disk */
const MAX_UNWRITTEN = 8 * 1024 * 1024;
/**
 * Blobs this small are stored uncompressed: zstd's per-call context setup cost more than the
 * few bytes it saves (measured: 1.8 s of 10 s for 200,000 files of 50-200 bytes).
 */
const MIN_COMPRESS = 512;
/** size of the segments small sealed blobs are gathered in */
const SEGMENT = 1024 * 1024;
/**
 * Blobs in one pack at most. A pack of tiny files would otherwise hold 100,000+ entries, all kept
 * (with their ids in the set of pending blobs) until the pack is written and indexed; at this
 * cap, the open pack and the uploading ones hold about 50,000 entries whatever the file sizes.
 */
export const MAX_PACK_BLOBS = 16384;

export interface StoreOptions {
  packSize: number;
  compressionLevel: number;
  /** when set, every pack gets a parity file, written after the pack and before its index */
  parity?: ParityScheme;
}

interface OpenPack {
  parts: Uint8Array[];
  entries: PackEntryLog;
  size: number;
  /** SHA-256 of the parts so far: the pack's name once the header is added */
  hash: Hash;
  /** the backend file the parts are streamed to, when the backend can stream */
  sink?: Promise<BlobWriter>;
  /** small parts gathered before they are written */
  seg?: Buffer;
  segFill: number;
}

export interface StoreStats {
  blobsAdded: number;
  bytesAdded: number; // raw bytes of new blobs
  bytesStored: number; // bytes of new pack, parity and index files
  packsWritten: number;
  bytesParity: number; // bytes of new parity files (included in bytesStored)
}

export class ContentStore {
  readonly index = new ChunkIndex();
  readonly stats: StoreStats = { blobsAdded: 0, bytesAdded: 0, bytesStored: 0, packsWritten: 0, bytesParity: 0 };
  private readonly pending = new Set<string>();
  private readonly open: Record<BlobType, OpenPack> = { 0: newPack(), 1: newPack() };
  /** index records (about 45 B per blob) of packs written since the last index file, and their writer */
  private readonly indexWriter: IndexWriter;
  private uploads = new Set<Promise<void>>();
  private failure: unknown;
  /** removals of the temporary files of packs given up after a failure (see fail()) */
  private readonly discards: Promise<void>[] = [];
  private readonly backend: Backend;
  private readonly key: MasterKey;
  private readonly opts: StoreOptions;
  readonly indexFiles = new Set<string>();
  /** index files that could not be read when the index was loaded */
  readonly damagedIndexes: { name: string; message: string }[] = [];
  /**
   * large blobs being compressed and sealed on the thread pool at once (each holds a zstd context
   * and its buffers): the memory plan's (util/memory), or MESHBACK_COMPRESSORS
   */
  private readonly compressors = new Semaphore(Math.max(1, Number(process.env['MESHBACK_COMPRESSORS'] ?? memoryPlan().compressors)));
  private readonly keys: AsyncKeys;
  /** zstd contexts kept for the blobs compressed and decompressed on the thread pool */
  private readonly zstd: ZstdContexts;
  private readonly parity: ParityWriter | undefined;
  /**
   * Checkpoints: when set, an index file is written as soon as a pack has become durable and this
   * many milliseconds have passed since the last index file, so that the packs of a long run that
   * is interrupted are indexed and a rerun reuses them (copy sets it). Unset: index files go out
   * every INDEX_FILE_BYTES of records and at flush() only.
   */
  checkpointMs: number | undefined;
  private lastIndexFile = performance.now();
  /** The metadata cache of the storage stack, if any: told which packs hold trees (see loadIndex, upload). */
  private readonly cache: CacheBackend | undefined;

  constructor(backend: Backend, key: MasterKey, opts: StoreOptions) {
    this.backend = backend;
    this.key = key;
    this.opts = opts;
    this.keys = new AsyncKeys(key.encKey, key.idKey);
    this.zstd = new ZstdContexts(opts.compressionLevel, memoryPlan().compressors);
    this.parity = opts.parity !== undefined ? new ParityWriter(backend, opts.parity) : undefined;
    this.cache = findLayer(backend, CacheBackend);
    this.indexWriter = new IndexWriter(backend, key.encKey, {
      onWritten: (name, bytes) => {
        this.lastIndexFile = performance.now();
        this.indexFiles.add(name);
        this.stats.bytesStored += bytes;
      },
    });
  }

  id(data: Uint8Array): Buffer {
    return contentId(this.key.idKey, data);
  }

  /** The keyed id of `data`, computed on the thread pool when it is large. */
  idOf(data: Uint8Array): Promise<Buffer> {
    return this.keys.id(data);
  }

  /** Loads the index files of the repository into memory; called again, it loads only files it has not seen. */
  async loadIndex(): Promise<void> {
    const started = Date.now();
    const first = this.indexFiles.size === 0 && this.damagedIndexes.length === 0;
    const names: string[] = [];
    const treePacks: string[] = [];
    const damaged = new Set(this.damagedIndexes.map((d) => d.name));
    for await (const f of this.backend.list('index')) if (!this.indexFiles.has(f.name) && !damaged.has(f.name)) names.push(f.name);
    await parallel(names, 8, async (name) => {
        const file = await this.backend.get({ type: 'index', name });
        try {
          if (sha256hex(file) !== name) throw new IntegrityError(`index file ${name} is damaged (its content does not match its name)`, { index: name });
          // decode fully before adding anything, so a damaged file adds nothing
          const packs: { pack: string; size: number; entries: PackEntry[] }[] = [];
          decodeIndex(this.key.encKey, file, name, (pack, size, entries) => packs.push({ pack, size, entries }));
          for (const p of packs) {
            if (p.entries[0]?.type === BLOB_TREE) treePacks.push(p.pack);
            const pn = this.index.packNumber(p.pack, p.size);
            for (const e of p.entries) this.index.add(e.id, e.type, pn, e.offset, e.length, e.rawLength);
          }
          this.indexFiles.add(name);
        } catch (err) {
          // one damaged index file must not make the whole repository unreadable: its blobs
          // are reported missing by check and by restore, and backup stores them again
          if (!(err instanceof IntegrityError)) throw err;
          this.damagedIndexes.push({ name, message: err.message });
        }
    });
    if (this.cache !== undefined) {
      // packs hold blobs of one type: a pack whose first blob is a tree is a tree pack
      this.cache.markTreePacks(treePacks);
      // cached packs that no index lists any more were pruned (by another machine, too)
      if (first && this.damagedIndexes.length === 0) await this.cache.retainPacks((p) => this.index.hasPack(p), started);
    }
  }

  /** True when the blob is stored or queued for storing in this session. */
  has(id: Uint8Array): boolean {
    return this.index.has(id) || (this.pending.size > 0 && this.pending.has(Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('latin1')));
  }

  /** has() of an id given in hex (as trees hold them), without a Buffer per lookup. */
  hasHex(hex: string): boolean {
    return this.index.hasHex(hex) || (this.pending.size > 0 && this.pending.has(Buffer.from(hex, 'hex').toString('latin1')));
  }

  /**
   * Stores a blob unless it is known. Returns true when it was new. The blob is durable
   * only after flush(). Small blobs are compressed and sealed on the calling thread; large
   * ones on libuv's thread pool, at most MAX_BUSY at a time.
   */
  async add(type: BlobType, id: Buffer, plain: Uint8Array): Promise<boolean> {
    if (this.failure !== undefined) throw this.failure;
    const key = id.toString('latin1');
    if (this.index.has(id) || this.pending.has(key)) return false;
    this.pending.add(key);
    const level = this.opts.compressionLevel;
    let parts: Uint8Array[];
    if (plain.byteLength <= ASYNC_MIN) {
      let body: Uint8Array = plain;
      let kind = KIND_RAW;
      if (plain.byteLength > MIN_COMPRESS) {
        const z = zlib.zstdCompressSync(plain, { params: { [zlib.constants.ZSTD_c_compressionLevel]: level } });
        if (z.length < plain.byteLength - (plain.byteLength >>> 5)) {
          body = z;
          kind = KIND_ZSTD;
        }
      }
      const framed = Buffer.allocUnsafe(body.byteLength + 1);
      framed[0] = kind;
      framed.set(body, 1);
      parts = [seal(this.key.encKey, framed)];
    } else {
      if (!this.compressors.tryAcquire()) await this.compressors.acquire();
      try {
        const z = await this.zstd.compress(plain);
        const pays = z.length < plain.byteLength - (plain.byteLength >>> 5);
        parts = await this.keys.sealFramed(pays ? KIND_ZSTD : KIND_RAW, pays ? z : plain);
      } finally {
        this.compressors.release();
      }
    }
    // a failure while this blob was being sealed gave up the open packs: start no new one
    if (this.failure !== undefined) throw this.failure;
    const p = this.open[type];
    let length = 0;
    for (const part of parts) length += part.byteLength;
    p.entries.add(type, id, p.size, length, plain.byteLength);
    p.size += length;
    this.append(p, parts);
    this.stats.blobsAdded++;
    this.stats.bytesAdded += plain.byteLength;
    if (p.size >= this.opts.packSize || p.entries.length >= MAX_PACK_BLOBS) await this.finishPack(type);
    else if (p.sink !== undefined) {
      // back-pressure: a slow disk must not make written-later bytes pile up in memory
      const w = await p.sink;
      if (w.queued > MAX_UNWRITTEN) {
        try {
          await w.drain();
        } catch (err) {
          await this.fail(err);
          throw err;
        }
      }
    }
    return true;
  }

  /**
   * Appends parts to an open pack: hashed now, streamed to the backend when it can. Small parts
   * are gathered into one segment first: thousands of tiny buffers would each pin a slab of
   * Node's buffer pool and cost one write each.
   */
  private append(p: OpenPack, parts: Uint8Array[]): void {
    const out: Uint8Array[] = [];
    for (const part of parts) {
      p.hash.update(part);
      if (part.byteLength >= SEGMENT / 4) {
        if (p.segFill > 0) out.push(this.takeSegment(p));
        out.push(part);
        continue;
      }
      if (p.seg === undefined || p.segFill + part.byteLength > p.seg.length) {
        if (p.segFill > 0) out.push(this.takeSegment(p));
        p.seg = Buffer.allocUnsafeSlow(SEGMENT);
      }
      p.seg.set(part, p.segFill);
      p.segFill += part.byteLength;
    }
    this.emit(p, out);
  }

  private takeSegment(p: OpenPack): Uint8Array {
    const s = p.seg!.subarray(0, p.segFill);
    p.seg = undefined;
    p.segFill = 0;
    return s;
  }

  private emit(p: OpenPack, out: Uint8Array[]): void {
    if (out.length === 0 || this.failure !== undefined) return;
    if (this.backend.openWriter === undefined) {
      p.parts.push(...out);
      return;
    }
    p.sink ??= this.backend.openWriter('pack');
    p.sink.then((w) => w.write(out)).catch((err: unknown) => {
      void this.fail(err);
    });
  }

  private async finishPack(type: BlobType): Promise<void> {
    const p = this.open[type];
    if (p.entries.length === 0) return;
    this.open[type] = newPack();
    const header = p.entries.header(this.key.encKey);
    this.append(p, [header]);
    if (p.segFill > 0) this.emit(p, [this.takeSegment(p)]);
    p.size += header.length;
    // bound the uploads in flight: memory stays within a few packs
    while (this.uploads.size >= MAX_UPLOADS) await Promise.race(this.uploads);
    if (this.failure !== undefined) {
      await discard(p);
      throw this.failure;
    }
    const up = this.upload(p).then(
      () => {
        this.uploads.delete(up);
      },
      (err: unknown) => {
        this.uploads.delete(up);
        void this.fail(err);
      },
    );
    this.uploads.add(up);
  }

  private async upload(p: OpenPack): Promise<void> {
    const name = p.hash.digest('hex');
    // a tree pack written through a metadata cache is kept there (the next backup reads it locally)
    if (p.entries.firstType() === BLOB_TREE) this.cache?.markTreePacks([name]);
    if (p.sink !== undefined) {
      const w = await p.sink;
      try {
        await w.commit(name);
      } catch (err) {
        await w.abort();
        throw err;
      }
    } else {
      await this.backend.put({ type: 'pack', name }, p.parts);
      p.parts.length = 0;
    }
    if (this.parity !== undefined) {
      // parity: after the pack is durable, before any index lists it
      const n = await this.parity.write(name, p.size);
      this.stats.bytesParity += n;
      this.stats.bytesStored += n;
    }
    const pn = this.index.packNumber(name, p.size);
    p.entries.forEach((type, id, offset, length, rawLength) => {
      this.index.add(id, type, pn, offset, length, rawLength);
      this.pending.delete(id.toString('latin1'));
    });
    const record = p.entries.indexRecord(name, p.size);
    p.entries.clear();
    // index files go out during a backup too (every INDEX_FILE_BYTES of records), so that memory
    // stays flat with millions of blobs and the packs of a long backup are indexed
    await this.indexWriter.add(record);
    this.stats.packsWritten++;
    this.stats.bytesStored += p.size;
    if (this.checkpointMs !== undefined && performance.now() - this.lastIndexFile >= this.checkpointMs) {
      this.lastIndexFile = performance.now();
      await this.indexWriter.flush();
    }
  }

  /** Writes the open packs and then an index file for every pack written since the last flush. */
  async flush(): Promise<void> {
    await this.finishPack(BLOB_DATA);
    await this.finishPack(BLOB_TREE);
    await Promise.all(this.uploads);
    if (this.failure !== undefined) {
      await Promise.all(this.discards);
      throw this.failure;
    }
    await this.indexWriter.flush();
  }

  /**
   * Records the first failure of a pack write (e.g. ENOSPC) and gives up the packs still open:
   * their temporary files are removed, so a failed run leaves no partial file behind. Packs
   * already committed stay (complete, not indexed: prune deletes them). Every later add() and
   * flush() throws the failure.
   */
  private fail(err: unknown): Promise<void> {
    this.failure ??= err;
    for (const type of [BLOB_DATA, BLOB_TREE] as const) {
      const p = this.open[type];
      this.open[type] = newPack();
      this.discards.push(discard(p));
    }
    return Promise.all(this.discards).then(() => undefined);
  }

  /** Reads, authenticates, decompresses and re-hashes one blob. */
  async load(id: Uint8Array, what?: string): Promise<Buffer> {
    const e = this.index.lookup(id);
    const hex = Buffer.from(id).toString('hex');
    if (e === undefined) throw new NotFoundError(`${what ?? 'blob'} ${hex.slice(0, 16)} is not in the index: the repository is incomplete; run 'meshback check'`, { blob: hex });
    let sealed: Buffer;
    try {
      sealed = await this.backend.get({ type: 'pack', name: e.pack }, { offset: e.offset, length: e.length });
    } catch (err) {
      if (err instanceof MeshbackError && err.code === 'NOT_FOUND') {
        throw new IntegrityError(`pack ${e.pack} holding ${what ?? 'blob'} ${hex.slice(0, 16)} is missing from the repository`, { pack: e.pack, blob: hex });
      }
      throw err;
    }
    return this.decodeBlob(sealed, id, e.rawLength, e.pack, what);
  }

  /** Decrypts a sealed blob and checks it against its id; throws IntegrityError naming the pack. Large blobs are decrypted and decompressed on libuv's pool (verifyBlobSync in blob.ts proves one on the calling thread). */
  async decodeBlob(sealed: Uint8Array, id: Uint8Array, rawLength: number, pack: string, what?: string): Promise<Buffer> {
    const ref = new BlobRef(id, pack, what);
    let framed: Buffer;
    try {
      framed = await this.keys.open(sealed, () => ref.label());
    } catch (err) {
      throw ref.rename(err);
    }
    let plain: Buffer;
    if (blobKind(framed, ref) === KIND_ZSTD) {
      try {
        plain = rawLength <= ASYNC_MIN ? zlib.zstdDecompressSync(framed.subarray(1), { maxOutputLength: Math.max(rawLength, 1) }) : await this.zstd.decompress(framed.subarray(1), rawLength);
      } catch {
        throw ref.error(NOT_DECOMPRESSING);
      }
    } else {
      plain = framed.subarray(1);
    }
    checkPlain(this.key.idKey, plain, rawLength, ref);
    return plain;
  }
}

/** Removes the temporary file an open pack is streamed to, if it has one. */
function discard(p: OpenPack): Promise<void> {
  p.parts.length = 0;
  return p.sink === undefined ? Promise.resolve() : p.sink.then((w) => w.abort()).catch(() => undefined);
}

function newPack(): OpenPack {
  return { parts: [], entries: new PackEntryLog(), size: 0, hash: createHash('sha256'), segFill: 0 };
}
