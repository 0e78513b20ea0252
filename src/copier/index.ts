/**
 * copier: copies snapshots from one repository (the source) into another (the destination), of
 * different keys and backends, sending only the chunks the destination lacks.
 *
 * Blob ids are HMACs under each repository's id key, so every id changes on the way: each chunk
 * the source holds is read (authenticated, re-hashed), its destination id computed with the
 * destination's key, and the chunk stored through the destination's content store (its packs,
 * index, compression and parity) unless the destination's index has that id already. Trees are
 * rewritten bottom up with the destination's chunk and subtree ids. Source tree -> destination
 * tree and source chunk -> destination chunk are memoized (CopyMap; kept in a cache file between
 * runs when a cache directory is given), so a subtree shared by several snapshots, or unchanged
 * since the last copy, is translated once; an entry is used only while the destination's index
 * holds its target.
 *
 * Per snapshot, oldest first: translate (trees in post-order; the chunks they need fetched in
 * batches, pack by pack in coalesced ranges), flush (packs, then index), verify (both snapshots'
 * trees walked side by side, every node compared, every blob the copy references in the
 * destination's index; with readData every chunk read back), then the snapshot file, which records
 * its source (`copied`). A rerun skips every snapshot the destination already has a copy of; an
 * interrupted run leaves no snapshot, and the packs its checkpoints indexed are reused.
 */
import { IntegrityError, MeshbackError, NotFoundError, UsageError } from '../errors/index.ts';
import type { EventSink } from '../events/index.ts';
import { nullSink, reportOp } from '../events/index.ts';
import { BLOB_DATA, BLOB_TREE } from '../content/index-table.ts';
import type { Repository } from '../repository/index.ts';
import type { Snapshot, SnapshotRef } from '../snapshot/manifest.ts';
import { HOLE_PREFIX, encodeTree } from '../snapshot/tree.ts';
import type { Node, Tree } from '../snapshot/tree.ts';
import { childPath, displayPath } from '../snapshot/walker.ts';
import { parallel } from '../util/parallel.ts';
import { Semaphore } from '../util/semaphore.ts';
import { CopyMap, KIND_CHUNK, KIND_TREE } from './cache.ts';
import { memoryPlan } from '../util/memory.ts';

/** What copy uses of the source: snapshots, trees, and its chunks, read pack by pack (a damaged pack rebuilt from its parity file). */
export type CopySource = Pick<Repository, 'config' | 'key' | 'backend' | 'listSnapshots' | 'findSnapshot' | 'loadTree' | 'index' | 'readPack' | 'decodeBlob' | 'rebuildPack'>;
/** What copy uses of the destination: the content store it adds chunks and trees to, its snapshots, trees and chunks (to verify). */
export type CopyDest = Pick<Repository, 'config' | 'key' | 'backend' | 'listSnapshots' | 'loadSnapshot' | 'loadTree' | 'saveSnapshot' | 'store' | 'index' | 'readPack' | 'decodeBlob'>;

/** an index file at least this often while packs are written (see ContentStore.checkpointMs) */
export const DEFAULT_CHECKPOINT_MS = 2 * 60_000;

export interface CopyOptions {
  /** source snapshots by id, unique prefix or 'latest'; or else every snapshot the filters select */
  snapshots?: string[];
  /** only snapshots of one of these hosts, that include every one of these paths, that carry every one of these tags */
  hosts?: string[];
  paths?: string[];
  tags?: string[];
  /** verify by reading back every chunk each copied snapshot references in the destination */
  readData?: boolean;
  /** the cache directory the copy map is kept in between runs (the CLI's --cache-dir; default: none, the map lives for this run) */
  cacheDir?: string;
  /** write an index file of the destination at least this often (ms; default DEFAULT_CHECKPOINT_MS) */
  checkpointMs?: number;
  events?: EventSink;
}

export interface CopiedSnapshot {
  /** id in the source */
  source: string;
  /** id in the destination */
  id: string;
  /** false: the destination had a copy already (from an earlier run), nothing was done */
  copied: boolean;
  time: string;
  host: string;
  paths: string[];
  tags: string[];
  /** files and bytes of the snapshot (its summary) */
  files: number;
  bytes: number;
  /** bytes read from the source's packs for chunks, and the chunks read */
  bytesRead: number;
  chunksRead: number;
  /** chunks stored in the destination, their raw bytes, and the bytes of pack, parity and index files written (chunks and trees) */
  chunksSent: number;
  bytesSent: number;
  bytesStored: number;
  /** references to chunks the destination had already (known from the copy map, or read and found there) */
  chunksSkipped: number;
  /** trees stored in the destination; subtrees met before in this run or found in the copy map (not read again) */
  treesWritten: number;
  treesReused: number;
  /** nodes compared with the source; chunks read back from the destination (readData) */
  nodesVerified: number;
  chunksVerified: number;
  duration: number;
}

export interface CopyResult {
  source: string;
  destination: string;
  readData: boolean;
  /** the source's and destination's id keys are the same: ids were not recomputed */
  sameIds: boolean;
  snapshots: CopiedSnapshot[];
  copied: number;
  alreadyCopied: number;
  chunksSent: number;
  bytesSent: number;
  bytesStored: number;
  bytesRead: number;
  /** the copy map file, if one is kept, and the entries it held at the start */
  cacheFile?: string;
  cacheEntries: number;
  duration: number;
}

/** Refuses selections that do not make one copy; callers may check before opening a repository. */
export function checkCopyOptions(opts: CopyOptions): void {
  const selecting = (opts.hosts?.length ?? 0) > 0 || (opts.paths?.length ?? 0) > 0 || (opts.tags?.length ?? 0) > 0;
  if ((opts.snapshots?.length ?? 0) > 0 && selecting) throw new UsageError('copy takes either snapshot ids or --host, --path and --tag to select snapshots, not both: leave one out');
}

/** copy, between its op-start and summary events. */
export function copy(src: CopySource, dst: CopyDest, opts: CopyOptions = {}): Promise<CopyResult> {
  return reportOp(opts.events ?? nullSink, 'copy', { source: src.backend.location, destination: dst.backend.location, snapshots: opts.snapshots ?? [] }, () => runCopy(src, dst, opts));
}

/** Names the repository an error came from (its code, and so its exit code, unchanged). */
function sided(err: unknown, side: 'source' | 'destination', location: string): unknown {
  if (!(err instanceof MeshbackError) || err.message.startsWith('source repository') || err.message.startsWith('destination repository')) return err;
  const prefix = err.message.includes(location) ? `${side} repository: ` : `${side} repository ${location}: `;
  return new MeshbackError(err.code, prefix + err.message, { cause: err, data: { ...err.data, repository: side } });
}

/** the batch's bytes, the packs read at once, the large blobs decoded at once and the longest range come from the memory plan (util/memory) */
const BATCH_CHUNKS = 16_384;
const BATCH_TREES = 2048;
/** blobs of one range decoded at once */
const BLOBS_AT_ONCE = 8;
const SMALL_BLOB = 64 * 1024;
const RANGE_GAP = 1024 * 1024;

type ReadRepo = Pick<Repository, 'index' | 'readPack'>;

/**
 * Reads the blobs of `entries` (index entry numbers of `repo`) pack by pack, in coalesced ranges,
 * and calls `onBlob` with each sealed blob (a view of a buffer reused for the next range). A range
 * that cannot be read goes to `onUnreadable` when given (else its error is thrown).
 */
async function readEntries(
  repo: ReadRepo,
  entries: Iterable<number>,
  onBlob: (entry: number, sealed: Buffer, pack: string) => Promise<void>,
  onRange: (bytes: number) => void,
  onUnreadable?: (entries: number[], pack: string, err: unknown) => Promise<void>,
): Promise<void> {
  const index = repo.index;
  const byPack = new Map<number, number[]>();
  for (const e of entries) {
    const pn = index.packOf(e);
    let l = byPack.get(pn);
    if (l === undefined) byPack.set(pn, (l = []));
    l.push(e);
  }
  const { compressors, packsAtOnce, rangeBytes: RANGE_MAX } = memoryPlan();
  const large = new Semaphore(compressors);
  await parallel([...byPack.entries()], packsAtOnce, async ([pn, list]) => {
    const pack = index.packs[pn]!;
    list.sort((a, b) => index.offsetOf(a) - index.offsetOf(b));
    let buf: Buffer | undefined;
    let i = 0;
    while (i < list.length) {
      const start = index.offsetOf(list[i]!);
      let end = start + index.lengthOf(list[i]!);
      let j = i + 1;
      while (j < list.length) {
        const o = index.offsetOf(list[j]!);
        const e = o + index.lengthOf(list[j]!);
        if (o - end >= RANGE_GAP || e - start > RANGE_MAX) break;
        end = Math.max(end, e);
        j++;
      }
      const group = list.slice(i, j);
      i = j;
      if (buf === undefined || buf.length < end - start) buf = Buffer.allocUnsafeSlow(Math.max(end - start, RANGE_MAX));
      let data: Buffer;
      try {
        data = await repo.readPack(pack, { offset: start, length: end - start }, buf);
      } catch (err) {
        if (onUnreadable === undefined || !(err instanceof MeshbackError) || err.code === 'NO_SPACE') throw err;
        await onUnreadable(group, pack, err);
        continue;
      }
      onRange(end - start);
      await parallel(group, BLOBS_AT_ONCE, async (e) => {
        const o = index.offsetOf(e) - start;
        const big = index.rawLengthOf(e) > SMALL_BLOB;
        if (big) await large.acquire();
        try {
          await onBlob(e, data.subarray(o, o + index.lengthOf(e)), pack);
        } finally {
          if (big) large.release();
        }
      });
    }
  });
}

/** Runs a call of one repository, naming that repository in its errors. */
type Sided = <T>(p: Promise<T>) => Promise<T>;

/** The two repositories of a copy and what the translator and the verifier share. */
interface Sides {
  src: CopySource;
  dst: CopyDest;
  map: CopyMap;
  sameIds: boolean;
  fromSource: Sided;
  toDest: Sided;
  emit: EventSink;
}

/** Counters of one snapshot's copy. */
interface Counters {
  files: number;
  bytesRead: number;
  plainRead: number;
  chunksRead: number;
  chunksSent: number;
  bytesSent: number;
  chunksSkipped: number;
  treesWritten: number;
  treesReused: number;
}

const newCounters = (): Counters => ({ files: 0, bytesRead: 0, plainRead: 0, chunksRead: 0, chunksSent: 0, bytesSent: 0, chunksSkipped: 0, treesWritten: 0, treesReused: 0 });

/** A destination tree id, known once the batch holding its tree is written. */
interface Slot {
  b?: Buffer;
}

/**
 * Translates source trees into destination trees (one run; the maps outlive a snapshot). Trees are
 * visited in post-order and queued; the chunks they need are gathered into a batch; a full batch
 * (or the end) fetches its chunks and then writes its trees in order, children before parents.
 */
class Translator {
  private readonly memo = new Map<string, Slot>();
  private queue: { aId: Buffer; tree: Tree; subs: (Slot | undefined)[]; slot: Slot }[] = [];
  /** the batch's source entries */
  private needs = new Set<number>();
  private needBytes = 0;
  /** a batch is stored once its blobs reach this many bytes (the memory plan's) */
  private readonly batchBytes = memoryPlan().batchBytes;
  c: Counters = newCounters();

  private readonly src: CopySource;
  private readonly dst: CopyDest;
  private readonly map: CopyMap;
  private readonly sameIds: boolean;
  private readonly fromSource: Sided;
  private readonly toDest: Sided;
  private readonly emit: EventSink;
  /** source packs rebuilt from their parity files in this run (undefined: not rebuildable) */
  private readonly rebuilt = new Map<string, Promise<Buffer | undefined>>();

  constructor(sides: Sides) {
    this.src = sides.src;
    this.dst = sides.dst;
    this.map = sides.map;
    this.sameIds = sides.sameIds;
    this.fromSource = sides.fromSource;
    this.toDest = sides.toDest;
    this.emit = sides.emit;
  }

  /** A damaged source pack rebuilt in memory from its parity file (once per run), or undefined. */
  private fromParity(pack: string): Promise<Buffer | undefined> {
    let p = this.rebuilt.get(pack);
    if (p === undefined) {
      p = this.src.rebuildPack(pack).then(
        (r) => {
          if (r === undefined) return undefined;
          this.emit({ type: 'warning', message: `source repository: pack ${pack} is damaged: its chunks were taken from a copy rebuilt from its parity file (${r.badBlocks} of ${r.blocks} blocks); run 'meshback repair packs' on the source` });
          return r.data;
        },
        () => undefined,
      );
      this.rebuilt.set(pack, p);
    }
    return p;
  }

  /** a tree found in the destination by its id (shared id key) is translated anyway: set for a retry */
  private distrustTrees = false;

  /** Forgets what this run learnt and trusts no tree of the destination (after a verification failure, before the retry). */
  reset(): void {
    this.distrustTrees = true;
    this.memo.clear();
    this.queue = [];
    this.needs.clear();
    this.needBytes = 0;
  }

  /** Whether the destination has the source chunk `ref` of source entry `e` (-1: not in the source's index): by the map, or by its id. */
  private knownChunk(e: number, ref: string): boolean {
    const b = this.map.chunks.getEntry(e);
    if (b !== undefined && this.dst.store.has(b)) return true;
    return this.sameIds && this.dst.store.hasHex(ref);
  }

  private knownTree(aId: Buffer): Uint8Array | undefined {
    const b = this.map.trees.get(aId);
    if (b !== undefined && this.dst.store.has(b)) return b;
    if (this.sameIds && !this.distrustTrees && this.dst.store.has(aId)) return aId;
    return undefined;
  }

  /** The destination id of the tree `aHex` (a slot filled by the batch that writes it). */
  async translate(aHex: string): Promise<Buffer> {
    const slot = await this.visit(aHex);
    await this.flushBatch();
    if (slot.b === undefined) throw new Error(`internal: tree ${aHex.slice(0, 16)} was not written`);
    return slot.b;
  }

  private async visit(aHex: string): Promise<Slot> {
    const hit = this.memo.get(aHex);
    if (hit !== undefined) {
      this.c.treesReused++;
      return hit;
    }
    const aId = Buffer.from(aHex, 'hex');
    const known = this.knownTree(aId);
    if (known !== undefined) {
      const s = { b: Buffer.from(known) };
      this.memo.set(aHex, s);
      this.c.treesReused++;
      return s;
    }
    const slot: Slot = {};
    this.memo.set(aHex, slot);
    const tree = await this.fromSource(this.src.loadTree(aHex));
    const subs: (Slot | undefined)[] = [];
    for (const n of tree.nodes) {
      if (n.type === 'dir' && n.subtree !== undefined) {
        subs.push(await this.visit(n.subtree));
        continue;
      }
      subs.push(undefined);
      if (n.type === 'file') {
        this.c.files++;
        for (const ref of n.content ?? []) if (!ref.startsWith(HOLE_PREFIX)) this.need(ref);
      }
    }
    this.queue.push({ aId, tree, subs, slot });
    if (this.needBytes >= this.batchBytes || this.needs.size >= BATCH_CHUNKS || this.queue.length >= BATCH_TREES) await this.flushBatch();
    return slot;
  }

  private need(ref: string): void {
    const e = this.src.index.entryOfHex(ref);
    if (this.knownChunk(e, ref)) {
      this.c.chunksSkipped++;
      return;
    }
    if (e < 0) throw new NotFoundError(`source repository ${this.src.backend.location}: chunk ${ref.slice(0, 16)} is not in its index: run 'meshback check' on it`, { blob: ref, repository: 'source' });
    if (this.needs.has(e)) return;
    this.needs.add(e);
    this.needBytes += this.src.index.rawLengthOf(e);
  }

  /** Fetches the batch's chunks, then writes its trees in order. */
  private async flushBatch(): Promise<void> {
    if (this.needs.size > 0) {
      const entries = [...this.needs];
      this.needs = new Set();
      this.needBytes = 0;
      await this.transfer(entries);
    }
    const queue = this.queue;
    this.queue = [];
    for (const q of queue) {
      const nodes = q.tree.nodes.map((n, i) => this.rewrite(n, q.subs[i]));
      const data = encodeTree({ nodes });
      const bId = this.dst.store.id(data);
      if (await this.toDest(this.dst.store.add(BLOB_TREE, bId, data))) this.c.treesWritten++;
      q.slot.b = bId;
      this.map.add(KIND_TREE, q.aId, bId);
    }
  }

  private rewrite(n: Node, sub: Slot | undefined): Node {
    const out: Node = { ...n };
    if (n.type === 'dir') {
      if (sub?.b === undefined) throw new Error(`internal: the subtree of ${n.name} was not translated first`);
      out.subtree = sub.b.toString('hex');
    }
    if (n.content !== undefined) {
      out.content = n.content.map((ref) => {
        if (ref.startsWith(HOLE_PREFIX)) return ref;
        const b = this.map.chunks.getHex(ref);
        if (b !== undefined) return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
        if (this.sameIds) return ref;
        throw new Error(`internal: chunk ${ref.slice(0, 16)} was not copied`);
      });
    }
    return out;
  }

  /** Reads the chunks from the source, computes their destination ids, stores those the destination lacks. */
  private async transfer(entries: number[]): Promise<void> {
    const sIndex = this.src.index;
    await readEntries(
      this.src,
      entries,
      async (e, sealed, pack) => {
        const aId = Buffer.from(sIndex.entryId(e));
        let plain: Buffer;
        try {
          plain = await this.src.decodeBlob(sealed, aId, sIndex.rawLengthOf(e), pack, 'chunk');
        } catch (err) {
          if (!(err instanceof IntegrityError)) throw sided(err, 'source', this.src.backend.location);
          plain = await this.repaired(e, pack, err);
        }
        await this.store(e, aId, plain);
      },
      (bytes) => {
        this.c.bytesRead += bytes;
      },
      async (group, pack, err) => {
        for (const e of group) await this.store(e, Buffer.from(sIndex.entryId(e)), await this.repaired(e, pack, err));
      },
    ).catch((err: unknown) => {
      // a failed read of a pack (the blob calls name their side already)
      throw sided(err, 'source', this.src.backend.location);
    });
  }

  /** A source chunk taken from its pack rebuilt from parity; else the error that made it needed. */
  private async repaired(e: number, pack: string, err: unknown): Promise<Buffer> {
    const sIndex = this.src.index;
    const whole = await this.fromParity(pack);
    const off = sIndex.offsetOf(e);
    const len = sIndex.lengthOf(e);
    if (whole === undefined || off + len > whole.length) throw sided(err, 'source', this.src.backend.location);
    return this.fromSource(this.src.decodeBlob(whole.subarray(off, off + len), Buffer.from(sIndex.entryId(e)), sIndex.rawLengthOf(e), pack, 'chunk'));
  }

  /** Stores one source chunk's plaintext (source entry `e`) in the destination under its destination id. */
  private async store(e: number, aId: Buffer, plain: Buffer): Promise<void> {
    this.c.chunksRead++;
    this.c.plainRead += plain.length;
    const bId = this.sameIds ? aId : await this.dst.store.idOf(plain);
    if (await this.toDest(this.dst.store.add(BLOB_DATA, bId, plain))) {
      this.c.chunksSent++;
      this.c.bytesSent += plain.length;
    } else this.c.chunksSkipped++;
    this.map.addEntry(KIND_CHUNK, e, bId);
  }
}

/** Fields of two nodes that differ, by name (content and subtree are ids, compared apart). */
function nodeDiff(a: Node, b: Node): string | undefined {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) {
    if (k === 'content' || k === 'subtree') continue;
    const x = (a as Record<string, unknown>)[k];
    const y = (b as Record<string, unknown>)[k];
    if (x !== y) return `${k} is ${JSON.stringify(x)} in the source, ${JSON.stringify(y)} in the copy`;
  }
  if ((a.content?.length ?? -1) !== (b.content?.length ?? -1)) return `${a.content?.length ?? 0} content entries in the source, ${b.content?.length ?? 0} in the copy`;
  if ((a.subtree === undefined) !== (b.subtree === undefined)) return 'a subtree on one side only';
  return undefined;
}

/** copy's checks of one copied snapshot: its trees against the source's, node by node. */
class Verifier {
  /** source tree · destination tree pairs found equal in this run */
  private readonly pairs = new Set<string>();
  /** destination chunks read back in this run: a bit per entry of the destination's index */
  private chunksRead = new Uint8Array(0);

  private readonly src: CopySource;
  private readonly dst: CopyDest;
  private readonly map: CopyMap;
  private readonly sameIds: boolean;
  private readonly fromSource: Sided;
  private readonly toDest: Sided;

  constructor(sides: Sides) {
    this.src = sides.src;
    this.dst = sides.dst;
    this.map = sides.map;
    this.sameIds = sides.sameIds;
    this.fromSource = sides.fromSource;
    this.toDest = sides.toDest;
  }

  /** Problems found (empty: the copy matches), nodes compared, chunks read back. */
  async verify(aRoot: string, bRoot: string, readData: boolean): Promise<{ problems: string[]; nodes: number; chunks: number }> {
    const problems: string[] = [];
    // destination entries to read back
    const reread = new Set<number>();
    const wasRead = (e: number): boolean => (e >>> 3 < this.chunksRead.length ? (this.chunksRead[e >>> 3]! & (1 << (e & 7))) !== 0 : false);
    let nodes = 0;
    const bad = (dir: Buffer, n: Node | undefined, what: string): void => {
      if (problems.length < 10) problems.push(`${n !== undefined ? displayPath(childPath(dir, n)) : displayPath(dir) || '/'}: ${what}`);
    };
    const walk = async (aHex: string, bHex: string, dir: Buffer): Promise<boolean> => {
      const key = aHex + bHex;
      if (this.pairs.has(key)) return true;
      if (!this.dst.index.has(Buffer.from(bHex, 'hex'))) {
        bad(dir, undefined, `tree ${bHex.slice(0, 16)} is not in the destination's index`);
        return false;
      }
      const [ta, tb] = await Promise.all([this.fromSource(this.src.loadTree(aHex)), this.toDest(this.dst.loadTree(bHex))]);
      let ok = true;
      if (ta.nodes.length !== tb.nodes.length) {
        bad(dir, undefined, `${ta.nodes.length} entries in the source, ${tb.nodes.length} in the copy`);
        return false;
      }
      for (let i = 0; i < ta.nodes.length; i++) {
        const a = ta.nodes[i]!;
        const b = tb.nodes[i]!;
        nodes++;
        const d = nodeDiff(a, b);
        if (d !== undefined) {
          bad(dir, a, d);
          ok = false;
          continue;
        }
        for (let j = 0; j < (a.content?.length ?? 0); j++) {
          const ar = a.content![j]!;
          const br = b.content![j]!;
          if (ar.startsWith(HOLE_PREFIX) || br.startsWith(HOLE_PREFIX)) {
            if (ar !== br) {
              bad(dir, a, `content entry ${j} is ${ar.slice(0, 16)} in the source, ${br.slice(0, 16)} in the copy`);
              ok = false;
            }
            continue;
          }
          const mapped = this.map.chunks.getHex(ar);
          if (mapped !== undefined ? Buffer.from(mapped.buffer, mapped.byteOffset, mapped.byteLength).toString('hex') !== br : this.sameIds && ar !== br) {
            bad(dir, a, `chunk ${j} of the copy (${br.slice(0, 16)}) is not the copy of the source's chunk ${ar.slice(0, 16)}`);
            ok = false;
          }
          const e = this.dst.index.entryOfHex(br);
          if (e < 0) {
            bad(dir, a, `chunk ${br.slice(0, 16)} is not in the destination's index`);
            ok = false;
          } else if (readData && !wasRead(e)) reread.add(e);
        }
        if (a.type === 'dir' && a.subtree !== undefined && b.subtree !== undefined && !(await walk(a.subtree, b.subtree, childPath(dir, a)))) ok = false;
      }
      if (ok) this.pairs.add(key);
      return ok;
    };
    await walk(aRoot, bRoot, Buffer.alloc(0));
    let chunks = 0;
    if (readData && reread.size > 0) {
      const dIndex = this.dst.index;
      if (this.chunksRead.length < (dIndex.size >>> 3) + 1) {
        const bits = new Uint8Array((dIndex.size >>> 3) + 1);
        bits.set(this.chunksRead);
        this.chunksRead = bits;
      }
      await this.toDest(
        readEntries(
          this.dst,
          reread,
          async (e, sealed, pack) => {
            const id = Buffer.from(dIndex.entryId(e));
            try {
              await this.dst.decodeBlob(sealed, id, dIndex.rawLengthOf(e), pack, 'chunk');
              this.chunksRead[e >>> 3] = this.chunksRead[e >>> 3]! | (1 << (e & 7));
              chunks++;
            } catch (err) {
              if (!(err instanceof IntegrityError)) throw err;
              if (problems.length < 10) problems.push(err.message);
            }
          },
          () => undefined,
        ),
      );
    }
    return { problems, nodes, chunks };
  }
}

async function runCopy(src: CopySource, dst: CopyDest, opts: CopyOptions): Promise<CopyResult> {
  const t0 = performance.now();
  checkCopyOptions(opts);
  const emit = opts.events ?? nullSink;
  const srcLoc = src.backend.location;
  const dstLoc = dst.backend.location;
  const fromSource = <T>(p: Promise<T>): Promise<T> =>
    p.catch((err: unknown) => {
      throw sided(err, 'source', srcLoc);
    });
  const toDest = <T>(p: Promise<T>): Promise<T> =>
    p.catch((err: unknown) => {
      throw sided(err, 'destination', dstLoc);
    });
  if (src.config.id === dst.config.id) throw new UsageError(`the source (${srcLoc}) and the destination (${dstLoc}) are the same repository (id ${src.config.id}): give another --repo or --from-repo`);
  const sameIds = src.key.idKey.equals(dst.key.idKey);
  const readData = opts.readData === true;

  // selection, oldest first (parents before their children)
  const all = await fromSource(src.listSnapshots());
  let selected: SnapshotRef[];
  const ids = opts.snapshots ?? [];
  if (ids.length > 0) {
    const want = new Set<string>();
    for (const ref of ids) want.add((await fromSource(src.findSnapshot(ref, undefined, all))).id);
    selected = all.filter((s) => want.has(s.id));
  } else {
    const hosts = opts.hosts ?? [];
    const paths = opts.paths ?? [];
    const tags = opts.tags ?? [];
    selected = all.filter((s) => (hosts.length === 0 || hosts.includes(s.snapshot.host)) && paths.every((p) => s.snapshot.paths.includes(p)) && tags.every((t) => s.snapshot.tags.includes(t)));
  }

  // what the destination holds already: copies of source snapshots, and its own snapshots
  const destSeen = new Set<string>();
  const copies = new Map<string, string>(); // source snapshot id -> destination snapshot id
  const learn = (ref: SnapshotRef): void => {
    destSeen.add(ref.id);
    const c = ref.snapshot.copied;
    if (c !== undefined && c.repository === src.config.id && !copies.has(c.original)) copies.set(c.original, ref.id);
  };
  for (const ref of await toDest(dst.listSnapshots())) learn(ref);
  /** snapshots written to the destination since it was listed (a concurrent copy): read them too */
  const relist = async (): Promise<void> => {
    const names: string[] = [];
    for await (const f of dst.backend.list('snapshot')) if (!destSeen.has(f.name)) names.push(f.name);
    for (const id of names) learn({ id, snapshot: await toDest(dst.loadSnapshot(id)) });
  };
  const alreadyThere = (s: SnapshotRef): string | undefined => {
    const c = copies.get(s.id);
    if (c !== undefined) return c;
    // a snapshot that is itself a copy of one of the destination's
    const from = s.snapshot.copied;
    if (from !== undefined && from.repository === dst.config.id && destSeen.has(from.original)) return from.original;
    return undefined;
  };

  const map = await CopyMap.open(opts.cacheDir, src.config.id, dst.config.id, src.index, dst.index);
  const cacheEntries = map.loaded;
  const sides: Sides = { src, dst, map, sameIds, fromSource, toDest, emit };
  const translator = new Translator(sides);
  const verifier = new Verifier(sides);
  const store = dst.store;
  const checkpointBefore = store.checkpointMs;
  store.checkpointMs = opts.checkpointMs ?? DEFAULT_CHECKPOINT_MS;

  const out: CopiedSnapshot[] = [];
  const res: CopyResult = {
    source: srcLoc, destination: dstLoc, readData, sameIds, snapshots: out, copied: 0, alreadyCopied: 0, chunksSent: 0, bytesSent: 0, bytesStored: 0, bytesRead: 0,
    ...(map.file !== undefined ? { cacheFile: map.file } : {}), cacheEntries, duration: 0,
  };
  let doneFiles = 0;
  let doneBytes = 0;
  const tick = setInterval(() => emit({ type: 'progress', op: 'copy', files: doneFiles + translator.c.files, bytes: doneBytes + translator.c.plainRead }), 250);
  const report = (c: CopiedSnapshot): void => {
    out.push(c);
    const stats: Record<string, number> = {};
    for (const [k, v] of Object.entries(c)) if (typeof v === 'number') stats[k] = v;
    emit({ type: 'snapshot-copied', source: c.source, id: c.id, copied: c.copied, stats });
  };
  try {
    for (const s of selected) {
      const s0 = performance.now();
      const base = { source: s.id, time: s.snapshot.time, host: s.snapshot.host, paths: s.snapshot.paths, tags: s.snapshot.tags, files: s.snapshot.summary.files, bytes: s.snapshot.summary.totalBytes };
      const zero = { bytesRead: 0, chunksRead: 0, chunksSent: 0, bytesSent: 0, bytesStored: 0, chunksSkipped: 0, treesWritten: 0, treesReused: 0, nodesVerified: 0, chunksVerified: 0 };
      const there = alreadyThere(s);
      if (there !== undefined) {
        res.alreadyCopied++;
        report({ ...base, id: there, copied: false, ...zero, duration: 0 });
        continue;
      }
      const stats0 = { ...store.stats };
      let attempt = 0;
      let bRoot: Buffer;
      let checked: { problems: string[]; nodes: number; chunks: number };
      for (;;) {
        translator.c = newCounters();
        bRoot = await translator.translate(s.snapshot.tree);
        // packs, then index: every blob the snapshot reaches is indexed before it is verified and written
        await toDest(store.flush());
        const warn = await map.persist();
        if (warn !== undefined) emit({ type: 'warning', message: warn });
        checked = await verifier.verify(s.snapshot.tree, bRoot.toString('hex'), readData);
        if (checked.problems.length === 0) break;
        // an entry of the copy map (or of a shared id key) pointed at data the destination lost: drop the map and translate again
        if (attempt === 0 && (map.loaded > 0 || sameIds)) {
          emit({ type: 'warning', message: `the copy of snapshot ${s.id.slice(0, 8)} did not match its source (${checked.problems[0]}): copying it again without the copy cache` });
          attempt++;
          await map.drop();
          translator.reset();
          continue;
        }
        throw new IntegrityError(`the copy of snapshot ${s.id.slice(0, 8)} into ${dstLoc} does not match its source: ${checked.problems[0]}${checked.problems.length > 1 ? ` (and ${checked.problems.length - 1} more)` : ''}; it was not saved: run 'meshback check --read-data' on both repositories`, { snapshot: s.id });
      }
      // never a duplicate: a copy written meanwhile by another run counts
      await toDest(relist());
      const raced = alreadyThere(s);
      if (raced !== undefined) {
        res.alreadyCopied++;
        report({ ...base, id: raced, copied: false, ...zero, duration: (performance.now() - s0) / 1000 });
        continue;
      }
      const rest: Snapshot = { ...s.snapshot };
      delete rest.parent;
      delete rest.copied;
      const parentCopy = s.snapshot.parent !== undefined ? copies.get(s.snapshot.parent) : undefined;
      const snap: Snapshot = {
        ...rest,
        ...(parentCopy !== undefined ? { parent: parentCopy } : {}),
        tree: bRoot.toString('hex'),
        copied: { original: s.id, repository: src.config.id, time: new Date().toISOString() },
      };
      const id = await toDest(dst.saveSnapshot(snap));
      copies.set(s.id, id);
      destSeen.add(id);
      const c = translator.c;
      const cs: CopiedSnapshot = {
        ...base,
        id,
        copied: true,
        bytesRead: c.bytesRead,
        chunksRead: c.chunksRead,
        chunksSent: c.chunksSent,
        bytesSent: c.bytesSent,
        bytesStored: store.stats.bytesStored - stats0.bytesStored,
        chunksSkipped: c.chunksSkipped,
        treesWritten: c.treesWritten,
        treesReused: c.treesReused,
        nodesVerified: checked.nodes,
        chunksVerified: checked.chunks,
        duration: (performance.now() - s0) / 1000,
      };
      doneFiles += c.files;
      doneBytes += c.plainRead;
      res.copied++;
      res.chunksSent += cs.chunksSent;
      res.bytesSent += cs.bytesSent;
      res.bytesStored += cs.bytesStored;
      res.bytesRead += cs.bytesRead;
      report(cs);
    }
  } finally {
    clearInterval(tick);
    store.checkpointMs = checkpointBefore;
  }
  res.duration = (performance.now() - t0) / 1000;
  return res;
}
