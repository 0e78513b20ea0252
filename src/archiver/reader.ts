/**
 * The archiver's file reader: reads a file, cuts it into content-defined chunks, computes
 * each chunk's keyed id, detects holes (all-zero chunks, stored as no data), and hands new
 * chunks to the content store.
 *
 * Threads: chunking runs on the main thread (a tight loop, about 1.3 GB/s); the keyed hash,
 * zstd and AES-GCM of large chunks run on libuv's thread pool (content store, crypto/async),
 * so both cores work without worker isolates and their memory. With MESHBACK_CHUNK_THREAD=1,
 * large files are read, cut and hashed on a worker thread instead (chunk-thread.ts) and the main
 * thread only stores their chunks: on this 2-core machine that gained nothing measurable (zstd, not
 * chunking, fills the cores; docs/runtime.md), so it is not the default.
 *
 * Memory is bounded and explicit: at most `lanes` large files are read at once, each through
 * one reused buffer of 2 x max chunk size; chunks copied out of it and not yet stored are
 * bounded by a byte window, and their memory is a ring of that size, reused once they are stored
 * (util/buffer-pool: no allocation per chunk, no dead chunks waiting for the collector); files of at most SMALL bytes are read synchronously into one
 * shared scratch buffer (cheaper than four thread-pool round trips per file).
 */
import type { BigIntStats } from 'node:fs';
import type { Chunker } from '../chunker/fastcdc.ts';
import { BLOB_DATA } from '../content/index-table.ts';
import type { ContentStore } from '../content/store.ts';
import { ID_LEN, contentId } from '../crypto/index.ts';
import { errnoCode } from '../errors/index.ts';
import type { AsyncFile, Source } from '../source/index.ts';
import { Semaphore } from '../util/semaphore.ts';
import { BufferRing } from '../util/buffer-pool.ts';
import { ChunkThread } from './chunk-thread.ts';

export interface FileStat {
  ino: number;
  size: number;
  mtime: string;
  ctime: string;
}

export type FileOutcome =
  | { ok: true; content: string[]; bytes: number; changed: boolean }
  | { ok: false; message: string; code?: string };

/** Files up to this size are read synchronously on the main thread. */
const SMALL = 64 * 1024;
/** large files queued on the chunking thread at once */
const THREAD_FILES = 8;
/** Zero runs shorter than this are stored as data, not as holes. */
const MIN_HOLE = 4096;


/** An error of the content store (the repository), as opposed to one of the file being read. */
class StoreFailure extends Error {
  constructor(cause: unknown) {
    super('content store failed', { cause });
  }
}

function storeFailure(err: unknown): never {
  throw new StoreFailure(err);
}

/** Appends a hole of `len` zero bytes to a content list, merged with a hole just before it. */
function addHole(content: string[], len: number): void {
  const last = content[content.length - 1];
  if (last !== undefined && last.startsWith('0:')) content[content.length - 1] = `0:${Number(last.slice(2)) + len}`;
  else content.push(`0:${len}`);
}

export class FileReader {
  private readonly store: ContentStore;
  private readonly source: Source;
  private readonly chunker: Chunker;
  private readonly idKey: Buffer;
  private readonly window: Semaphore;
  private readonly lanes: Semaphore;
  /** the memory of chunks handed to the store, reused once stored (the window plus one largest chunk) */
  private readonly pool: BufferRing;
  private readonly buffers: Buffer[] = [];
  private readonly scratch = Buffer.allocUnsafeSlow(SMALL + 1);
  private readonly zero: Buffer;

  /** the chunking thread, made for the first large file (undefined: chunk on the main thread) */
  private thread: ChunkThread | undefined;
  private readonly useThread: boolean;
  private readonly laneCount: number;
  /** large files given to the chunking thread at once (queued there in order; its buffers bound the memory) */
  private readonly threadFiles = new Semaphore(THREAD_FILES);

  /** `windowBytes`: chunks not yet stored; `lanes`: large files read at once; `chunkThread`: large files chunked on a worker thread */
  constructor(store: ContentStore, source: Source, chunker: Chunker, idKey: Buffer, windowBytes: number, lanes: number, chunkThread = false) {
    this.useThread = chunkThread;
    this.laneCount = lanes;
    this.lanes = new Semaphore(lanes);
    this.store = store;
    this.source = source;
    this.chunker = chunker;
    this.idKey = idKey;
    this.window = new Semaphore(windowBytes);
    this.pool = new BufferRing(windowBytes + chunker.params.max);
    this.zero = Buffer.alloc(chunker.params.max);
  }

  private isZero(b: Uint8Array, start: number, end: number): boolean {
    const len = end - start;
    return len >= MIN_HOLE && this.zero.compare(b, start, end, 0, len) === 0;
  }

  /** Reads one file into the store; resolves once its new chunks are queued in the content store. */
  async read(path: Buffer, st: FileStat): Promise<FileOutcome> {
    try {
      if (st.size <= SMALL) {
        const r = await this.readSmall(path, st);
        if (r !== undefined) return r;
      }
      return await this.readLarge(path, st);
    } catch (err) {
      // the repository failed, not the file: the backup cannot go on
      if (err instanceof StoreFailure) throw err.cause;
      const code = errnoCode(err);
      return { ok: false, message: (err as Error).message, ...(code !== undefined ? { code } : {}) };
    }
  }

  /** Whether the file changed while it was read: its metadata from before (s0) and after (s1), and the bytes read. */
  private changedDuring(s0: BigIntStats, s1: BigIntStats, bytes: number): boolean {
    return s1.mtimeNs !== s0.mtimeNs || s1.ctimeNs !== s0.ctimeNs || s1.size !== s0.size || BigInt(bytes) !== s1.size;
  }

  private changedFrom(st: FileStat, s: BigIntStats): boolean {
    return Number(s.ino) !== st.ino || s.mtimeNs.toString() !== st.mtime || s.ctimeNs.toString() !== st.ctime || Number(s.size) !== st.size;
  }

  /** Small file: synchronous read into the scratch buffer. Undefined when it has grown past SMALL. */
  private async readSmall(path: Buffer, st: FileStat): Promise<FileOutcome | undefined> {
    const f = this.source.openSync(path);
    let len = 0;
    let changed: boolean;
    try {
      const s0 = f.stat();
      changed = this.changedFrom(st, s0);
      // a regular file's short read is its end: asking for one byte more than its size tells
      // whether it grew, in one read(2) for the common case
      const want = Math.min(this.scratch.length, Number(s0.size) + 1);
      for (;;) {
        const n = f.read(this.scratch, len, (len < want ? want : this.scratch.length) - len);
        if (n === 0) break;
        len += n;
        if (len < want) break;
        if (len === this.scratch.length) return undefined; // grew: read it as a large file
      }
      const s1 = f.stat();
      if (this.changedDuring(s0, s1, len)) changed = true;
    } finally {
      f.close();
    }
    if (len === 0) return { ok: true, content: [], bytes: 0, changed };
    if (this.isZero(this.scratch, 0, len)) return { ok: true, content: [`0:${len}`], bytes: len, changed };
    const data = this.scratch.subarray(0, len);
    const id = contentId(this.idKey, data);
    if (!this.store.has(id)) await this.store.add(BLOB_DATA, id, Buffer.from(data)).catch(storeFailure);
    return { ok: true, content: [id.toString('hex')], bytes: len, changed };
  }

  /** Stops the chunking thread, if one was started. */
  async close(): Promise<void> {
    await this.thread?.close();
    this.thread = undefined;
  }

  private async readLarge(path: Buffer, st: FileStat): Promise<FileOutcome> {
    if (this.useThread) return this.readLargeThreaded(path, st);
    await this.lanes.acquire(1);
    const max = this.chunker.params.max;
    const buf = this.buffers.pop() ?? Buffer.allocUnsafeSlow(2 * max);
    let fh: AsyncFile | undefined;
    const stores: Promise<void>[] = [];
    try {
      fh = await this.source.open(path);
      const s0 = await fh.stat();
      let changed = this.changedFrom(st, s0);
      const content: string[] = [];
      let total = 0;
      let fill = 0;
      let eof = false;
      while (!eof || fill > 0) {
        while (!eof && fill < buf.length) {
          const bytesRead = await fh.read(buf, fill, buf.length - fill);
          if (bytesRead === 0) eof = true;
          fill += bytesRead;
        }
        let pos = 0;
        while (fill - pos >= max || (eof && pos < fill)) {
          const end = this.chunker.cut(buf, pos, fill);
          const len = end - pos;
          total += len;
          if (this.isZero(buf, pos, end)) addHole(content, len);
          else {
            await this.window.acquire(len);
            const copy = this.pool.take(len);
            buf.copy(copy, 0, pos, end);
            const slot = content.length;
            content.push('');
            stores.push(this.storeChunk(copy, content, slot));
          }
          pos = end;
        }
        buf.copyWithin(0, pos, fill);
        fill -= pos;
      }
      const s1 = await fh.stat();
      if (this.changedDuring(s0, s1, total)) changed = true;
      await Promise.all(stores);
      return { ok: true, content, bytes: total, changed };
    } finally {
      // chunks already handed over must settle before the caller moves on
      await Promise.allSettled(stores);
      await fh?.close();
      this.buffers.push(buf);
      this.lanes.release(1);
    }
  }

  /** Large file through the chunking thread: its chunks come back with their ids; this thread stores them. */
  private async readLargeThreaded(path: Buffer, st: FileStat): Promise<FileOutcome> {
    await this.threadFiles.acquire(1);
    this.thread ??= new ChunkThread(this.chunker, this.idKey, MIN_HOLE, 2 * this.laneCount + 1);
    const thread = this.thread;
    let fh: AsyncFile | undefined;
    const stores: Promise<void>[] = [];
    try {
      fh = await this.source.open(path);
      const s0 = await fh.stat();
      let changed = this.changedFrom(st, s0);
      const content: string[] = [];
      let total = 0;
      // a read error (ChunkReadError, with its errno code) ends the file as read() reports any other
      for await (const b of thread.chunks(fh.fd)) {
        const batch: Promise<unknown>[] = [];
        let off = 0;
        let k = 0;
        for (const l of b.lens) {
          if (l < 0) {
            addHole(content, -l);
            total -= l;
            off -= l;
            continue;
          }
          const id = Buffer.from(b.ids.buffer, b.ids.byteOffset + k * ID_LEN, ID_LEN);
          k++;
          content.push(id.toString('hex'));
          if (!this.store.has(id)) batch.push(this.store.add(BLOB_DATA, id, b.buf.subarray(off, off + l)));
          off += l;
          total += l;
        }
        // the buffer goes back once every chunk in it settled (the store keeps no reference after
        // add() settled); then the first failure, if any, is the repository's
        const stored = Promise.allSettled(batch).then((r) => {
          thread.give(b.slot);
          const failed = r.find((x) => x.status === 'rejected');
          if (failed !== undefined) storeFailure(failed.reason);
        });
        stored.catch(() => undefined); // awaited below, or settled in finally
        stores.push(stored);
      }
      const s1 = await fh.stat();
      if (this.changedDuring(s0, s1, total)) changed = true;
      await Promise.all(stores);
      return { ok: true, content, bytes: total, changed };
    } finally {
      await Promise.allSettled(stores);
      await fh?.close();
      this.threadFiles.release(1);
    }
  }

  private async storeChunk(data: Buffer, content: string[], slot: number): Promise<void> {
    try {
      const id = await this.store.idOf(data);
      content[slot] = id.toString('hex');
      await this.store.add(BLOB_DATA, id, data); // a no-op for a known blob
    } catch (err) {
      storeFailure(err);
    } finally {
      // the store holds no reference to a chunk once add() settled: its memory is reused
      this.pool.give(data);
      this.window.release(data.length);
    }
  }
}
