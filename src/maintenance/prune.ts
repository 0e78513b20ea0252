/**
 * prune: removes the data no snapshot references.
 *
 * 1. Mark: walk every tree of every snapshot and set a bit per used index entry. Every
 *    snapshot, every tree and every referenced blob must be present (trees are loaded, so
 *    authenticated and re-hashed); otherwise prune refuses (IntegrityError) before writing or
 *    deleting anything: with an uncertain reference set, data in use could look unused.
 * 2. Plan: packs with no used blob are deleted; packs with some are kept or repacked (most
 *    unused bytes first, until the unused bytes left are at most maxUnusedPercent of the used
 *    bytes); packs no index lists are deleted; a pack whose stored size differs from the index
 *    but whose used blobs all lie inside it is always repacked.
 * 3. Repack: the used blobs of those packs are read, decrypted and re-hashed, and stored again
 *    through a content store of their own; flush() makes the new packs durable, then their
 *    index file.
 * 4. Index: index files for every kept pack are written (durably).
 * 5. Delete: the old index files, then the packs no index lists any more.
 *
 * The repository object's in-memory index is stale afterwards: open the repository again to
 * use it.
 */
import { ContentStore } from '../content/store.ts';
import { BLOB_TREE } from '../content/index-table.ts';
import { HEADER_ENTRY_LEN, decodeIndex, encodeIndexRecord } from '../content/pack.ts';
import { SEAL_OVERHEAD } from '../crypto/index.ts';
import { IntegrityError, MeshbackError, NotFoundError, ObjectLockedError, UsageError, errMessage } from '../errors/index.ts';
import type { EventSink } from '../events/index.ts';
import { nullSink, reportOp } from '../events/index.ts';
import type { Repository } from '../repository/index.ts';
import { lockTimings } from '../repository/lock.ts';
import { HOLE_PREFIX } from '../snapshot/tree.ts';
import { walkTree } from '../snapshot/walker.ts';
import { parallel } from '../util/parallel.ts';
import { EntriesByPack, EntryBits, reachPhase } from './shared.ts';
import { latestDate, lockedFiles, renewAfter } from '../repository/object-lock.ts';
import type { RenewResult } from '../repository/object-lock.ts';
import { INDEX_ENTRY_BYTES, INDEX_FILE_BYTES, INDEX_FILE_OVERHEAD, INDEX_PACK_BYTES, IndexWriter } from '../content/index-writer.ts';
import { memoryPlan } from '../util/memory.ts';

/** What prune uses of a repository: it rewrites and deletes packs and index files itself, so the backend, config, key and content store, plus snapshots and trees to mark what is used. */
export type PruneRepo = Pick<Repository, 'backend' | 'config' | 'key' | 'store' | 'loadSnapshot' | 'loadTree' | 'reopen'>;

/**
 * Points at which prune can be stopped for crash tests (PAUSE_ENV, or onPhase throwing). A phase
 * is reached only when its step has work: no repack means no 'repacking'/'repacked', and so on.
 */
export const PRUNE_PHASES = ['planned', 'repacking', 'repacked', 'indexed', 'deleting-indexes', 'indexes-deleted', 'deleting-packs', 'done'] as const;
export type PrunePhase = (typeof PRUNE_PHASES)[number];

export const DEFAULT_MAX_UNUSED_PERCENT = 5;

export interface PruneOptions {
  /**
   * Unused bytes tolerated in kept packs afterwards, as a percentage of the used bytes (default 5).
   * 0 repacks every partly used pack; 100 or more (or Infinity) never repacks for space.
   */
  maxUnusedPercent?: number;
  /**
   * Packs to repack whatever their unused share, by name or unique prefix: e.g. packs holding a
   * damaged blob that 'repair snapshots' made unused, so that the damaged copy goes away.
   */
  repack?: readonly string[];
  /** plan and report only: nothing is written or deleted */
  dryRun?: boolean;
  events?: EventSink;
  /** called at each phase boundary (tests: throw to simulate a crash there) */
  onPhase?: (phase: PrunePhase) => void | Promise<void>;
}

export interface PruneResult {
  dryRun: boolean;
  maxUnusedPercent: number;
  snapshots: number;
  trees: number;
  /** blobs in the index before */
  blobs: number;
  blobsUsed: number;
  /** index entries dropped: unused blobs of deleted and repacked packs */
  blobsRemoved: number;
  /** used blobs copied into new packs */
  blobsRepacked: number;
  /** pack files in storage before */
  packs: number;
  /** pack files deleted: unused + repacked + unindexed */
  packsDeleted: number;
  /** indexed packs without a used blob */
  packsUnused: number;
  packsRepacked: number;
  /** packs in storage that no index lists (left by interrupted backups) */
  packsUnindexed: number;
  /** packs the index lists but storage lacks, with no used blob: dropped from the index */
  packsMissing: number;
  /** packs repacked because their size differs from the index (their used blobs are intact) */
  packsResized: number;
  packsWritten: number;
  indexFilesWritten: number;
  indexFilesDeleted: number;
  /** parity files deleted (with their packs, plus any whose pack was already gone) */
  parityFilesDeleted: number;
  /** temporary files of interrupted writes removed (not modified for the lock stale age) */
  temporaryFilesDeleted: number;
  /** size the used blobs would take in packs holding nothing else */
  bytesUsed: number;
  bytesUnusedBefore: number;
  bytesUnusedAfter: number;
  /** packs and index files in storage, before and after */
  bytesBefore: number;
  bytesAfter: number;
  bytesDeleted: number;
  /** new packs and index files (estimated in a dry run) */
  bytesWritten: number;
  /** bytesDeleted - bytesWritten */
  bytesFreed: number;
  /** Object Lock: packs and index files prune would delete but left in place (under retention, or listed by an index file under retention), and when the last retention among them ends */
  locked: { packs: number; indexes: number; until?: string };
  /** Object Lock: the retentions extended afterwards for what the snapshots use (absent without Object Lock, or in a dry run) */
  objectLock?: RenewResult;
  /** names of the packs deleted (or to delete) and repacked (or to repack) */
  deletedPacks: string[];
  repackedPacks: string[];
}

/** Parses --max-unused: a percentage (a trailing % is allowed) or 'unlimited'. */
export function parseMaxUnused(s: string): number {
  const v = s.trim().toLowerCase();
  if (v === 'unlimited') return Infinity;
  const m = /^(\d+(?:\.\d+)?)%?$/.exec(v);
  if (m === null) throw new UsageError(`--max-unused ${JSON.stringify(s)} is not a percentage: give a number from 0 to 100 (e.g. 5 or 5%) or 'unlimited'`);
  const n = Number(m[1]);
  if (n > 100) throw new UsageError(`--max-unused ${s} is above 100%: give 0 to 100, or 'unlimited'`);
  return n;
}

/** Size of a pack holding only `count` blobs of `bytes` sealed bytes. */
function compactSize(bytes: number, count: number): number {
  return bytes + SEAL_OVERHEAD + count * HEADER_ENTRY_LEN + 4;
}

/** prune, between its op-start and summary events. */
export function prune(repo: PruneRepo, opts: PruneOptions = {}): Promise<PruneResult> {
  return reportOp(opts.events ?? nullSink, 'prune', undefined, () => runPrune(repo, opts));
}

async function runPrune(repo: PruneRepo, opts: PruneOptions = {}): Promise<PruneResult> {
  const emit = opts.events ?? nullSink;
  const pct = opts.maxUnusedPercent ?? DEFAULT_MAX_UNUSED_PERCENT;
  if (Number.isNaN(pct) || pct < 0) throw new UsageError(`max unused ${pct}% is not a valid percentage: give 0 to 100`);
  const dryRun = opts.dryRun === true;
  const repackRefs = opts.repack ?? [];
  for (const ref of repackRefs) {
    if (!/^[0-9a-f]{1,64}$/.test(ref)) throw new UsageError(`--repack ${JSON.stringify(ref)} is not a pack id: give the id (or a unique prefix) that 'meshback check' names`);
  }
  const store = repo.store;
  const index = store.index;

  if (store.damagedIndexes.length > 0) {
    const d = store.damagedIndexes[0]!;
    throw new IntegrityError(`prune refused: ${d.message}; the packs it lists would look unused: run 'meshback repair index' first; nothing was deleted`, { index: d.name });
  }

  // ---- what storage holds
  const stored = new Map<string, number>();
  for await (const f of repo.backend.list('pack')) stored.set(f.name, f.size);
  const indexSizes = new Map<string, number>();
  for await (const f of repo.backend.list('index')) indexSizes.set(f.name, f.size);
  let bytesBefore = 0;
  for (const s of stored.values()) bytesBefore += s;
  for (const s of indexSizes.values()) bytesBefore += s;

  // ---- 1. mark
  const problems: string[] = [];
  let problemCount = 0;
  const problem = (m: string): void => {
    problemCount++;
    if (problems.length < 20) problems.push(m);
  };
  const snapNames: string[] = [];
  for await (const f of repo.backend.list('snapshot')) snapNames.push(f.name);
  const roots: { id: string; snap: string }[] = [];
  for (const name of snapNames) {
    try {
      roots.push({ id: (await repo.loadSnapshot(name)).tree, snap: name });
    } catch (err) {
      if (!(err instanceof IntegrityError) && !(err instanceof SyntaxError)) throw err;
      problem(`snapshot file ${name} cannot be read (${errMessage(err)})`);
    }
  }
  const used = new EntryBits(index.size);
  const missingChunks = new Set<string>();
  let trees = 0;
  const fits = (e: number): string | undefined => {
    const pack = index.packs[index.packOf(e)]!;
    const size = stored.get(pack);
    if (size === undefined) return `its pack ${pack} is missing`;
    if (index.offsetOf(e) + index.lengthOf(e) > size) return `its pack ${pack} is truncated`;
    return undefined;
  };
  // each tree once (the `used` bit of its index entry), 8 loads at a time, breadth-first
  for (const { id: root, snap } of roots) {
    await walkTree(
      repo,
      { tree: root },
      (n) => {
        if (n.type !== 'file' || n.content === undefined) return;
        for (const c of n.content) {
          if (c.startsWith(HOLE_PREFIX)) continue;
          const ce = index.entryOfHex(c);
          if (ce >= 0) used.set(ce);
          else if (!missingChunks.has(c)) {
            missingChunks.add(c);
            problem(`chunk ${c.slice(0, 16)} of snapshot ${snap.slice(0, 8)} is not in the index`);
          }
        }
      },
      {
        concurrency: 8,
        shouldLoad: (id) => {
          const e = index.entryOf(Buffer.from(id, 'hex'));
          if (e < 0) {
            problem(`tree ${id.slice(0, 16)} of snapshot ${snap.slice(0, 8)} is not in the index`);
            return false;
          }
          if (used.has(e)) return false;
          used.set(e);
          const bad = fits(e);
          if (bad !== undefined) problem(`tree ${id.slice(0, 16)} of snapshot ${snap.slice(0, 8)} cannot be read: ${bad}`);
          return bad === undefined;
        },
        onTreeError: (err, id) => {
          if (!(err instanceof MeshbackError) || (err.code !== 'INTEGRITY' && err.code !== 'NOT_FOUND')) throw err;
          problem(`tree ${id.slice(0, 16)} of snapshot ${snap.slice(0, 8)}: ${err.message}`);
        },
        onTree: () => {
          trees++;
          if (trees % 256 === 0) emit({ type: 'progress', op: 'prune', files: trees, bytes: 0, current: 'finding the data in use' });
        },
      },
    );
  }

  // ---- 2. plan
  const P = index.packs.length;
  const usedBytes = new Float64Array(P);
  const usedCount = new Uint32Array(P);
  const maxEnd = new Float64Array(P);
  let blobsUsed = 0;
  for (let e = 0; e < index.size; e++) {
    if (!used.has(e)) continue;
    const pn = index.packOf(e);
    blobsUsed++;
    usedBytes[pn]! += index.lengthOf(e);
    usedCount[pn]!++;
    maxEnd[pn] = Math.max(maxEnd[pn]!, index.offsetOf(e) + index.lengthOf(e));
  }
  const REMOVE = 1;
  const REPACK = 2;
  const action = new Uint8Array(P); // 0 keep
  let packsUnused = 0;
  let packsMissing = 0;
  let packsResized = 0;
  let bytesUsed = 0;
  let bytesUnusedBefore = 0;
  const candidates: { pn: number; unused: number }[] = [];
  for (let pn = 0; pn < P; pn++) {
    const name = index.packs[pn]!;
    const size = stored.get(name);
    if (usedCount[pn] === 0) {
      action[pn] = REMOVE;
      if (size === undefined) packsMissing++;
      else {
        packsUnused++;
        bytesUnusedBefore += size;
      }
      continue;
    }
    const compact = compactSize(usedBytes[pn]!, usedCount[pn]!);
    bytesUsed += compact;
    if (size === undefined) {
      problem(`pack ${name} holds ${usedCount[pn]} blob(s) in use but is missing from storage`);
      continue;
    }
    if (maxEnd[pn]! > size) {
      problem(`pack ${name} holds blobs in use past its end (${size} bytes, the index says ${index.packSizes[pn]}): it is truncated`);
      continue;
    }
    const unused = Math.max(0, size - compact);
    bytesUnusedBefore += unused;
    if (size !== index.packSizes[pn]) {
      // its blobs in use are intact as far as their places go; copying them out removes the
      // pack whose size no longer matches its index record
      action[pn] = REPACK;
      packsResized++;
    } else if (unused > 0 || repackRefs.length > 0) candidates.push({ pn, unused });
  }
  if (problemCount > 0) {
    throw new IntegrityError(
      `prune refused: ${problemCount} problem(s) with data that snapshots reference, first: ${problems[0]}; nothing was deleted: run 'meshback check --read-data', then 'meshback repair index' and/or 'meshback repair snapshots'`,
      { problems },
    );
  }
  const unindexed: string[] = [];
  for (const name of stored.keys()) if (!index.hasPack(name)) unindexed.push(name);
  for (const name of unindexed) bytesUnusedBefore += stored.get(name)!;

  // packs named by the caller: repacked when they hold a blob in use, deleted when not
  const forced = new Set<number>();
  for (const ref of repackRefs) {
    const m: number[] = [];
    for (let pn = 0; pn < P; pn++) if (index.packs[pn]!.startsWith(ref)) m.push(pn);
    if (m.length === 0) {
      if ([...stored.keys()].some((n) => n.startsWith(ref))) continue; // not indexed: deleted anyway
      throw new NotFoundError(`no pack with id ${ref} in the index or in storage: check the id`);
    }
    if (m.length > 1) throw new UsageError(`pack id prefix ${ref} is ambiguous (${m.length} packs): give more digits`);
    forced.add(m[0]!);
  }
  const maxUnused = pct >= 100 ? Infinity : (bytesUsed * pct) / 100;
  let unusedAfter = 0;
  for (const c of candidates) unusedAfter += c.unused;
  candidates.sort((a, b) => (forced.has(b.pn) ? 1 : 0) - (forced.has(a.pn) ? 1 : 0) || b.unused - a.unused);
  for (const c of candidates) {
    if (forced.has(c.pn)) {
      action[c.pn] = REPACK;
      unusedAfter -= c.unused;
      continue;
    }
    if (unusedAfter <= maxUnused) break;
    action[c.pn] = REPACK;
    unusedAfter -= c.unused;
  }

  // ---- Object Lock: a file under retention cannot be deleted yet. Such packs stay (kept, listed by
  // the new index), and so do the packs an old index file under retention lists: that file stays,
  // and an index file must never list a pack that is gone.
  const locked: PruneResult['locked'] = { packs: 0, indexes: 0 };
  const lockedOldIndexes = new Set<string>();
  if (repo.config.objectLock !== undefined) {
    const pin = (pn: number): void => {
      if (action[pn] === 0) return;
      const size = stored.get(index.packs[pn]!);
      if (action[pn] === REMOVE) {
        if (size === undefined) packsMissing--;
        else packsUnused--;
      } else if (size !== index.packSizes[pn]) packsResized--;
      action[pn] = 0;
      locked.packs++;
    };
    const dates: Date[] = [];
    const oldIndexes = await lockedFiles(repo, [...store.indexFiles].map((name) => ({ type: 'index' as const, name })));
    for (const [name, until] of oldIndexes) {
      lockedOldIndexes.add(name);
      dates.push(until);
      decodeIndex(repo.key.encKey, await repo.backend.get({ type: 'index', name }), name, (pack) => {
        const pn = index.packNumberOf(pack);
        if (pn !== undefined) pin(pn);
      });
    }
    const doomed: { type: 'pack'; name: string }[] = [];
    for (let pn = 0; pn < P; pn++) if (action[pn] !== 0 && stored.has(index.packs[pn]!)) doomed.push({ type: 'pack', name: index.packs[pn]! });
    for (const name of unindexed) doomed.push({ type: 'pack', name });
    const lockedPacks = await lockedFiles(repo, doomed);
    for (const [name, until] of lockedPacks) {
      dates.push(until);
      const pn = index.packNumberOf(name);
      if (pn !== undefined) pin(pn);
      else {
        unindexed.splice(unindexed.indexOf(name), 1);
        locked.packs++;
      }
    }
    const until = latestDate(dates);
    if (until !== undefined) locked.until = until;
  }

  const byPack = new EntriesByPack(index);
  const deletedPacks: string[] = [];
  const repackedPacks: string[] = [];
  let blobsRemoved = 0;
  let blobsRepacked = 0;
  const repackBytes = [0, 0]; // by blob type
  let bytesDeleted = 0;
  let keptPacks = 0;
  let keptEntries = 0;
  for (let pn = 0; pn < P; pn++) {
    const name = index.packs[pn]!;
    if (action[pn] === 0) {
      keptPacks++;
      keptEntries += byPack.count(pn);
      continue;
    }
    blobsRemoved += byPack.count(pn) - usedCount[pn]!;
    const size = stored.get(name);
    if (size !== undefined) {
      deletedPacks.push(name);
      bytesDeleted += size;
    }
    if (action[pn] === REPACK) {
      repackedPacks.push(name);
      blobsRepacked += usedCount[pn]!;
      // a pack holds blobs of one type
      repackBytes[byPack.count(pn) > 0 ? index.typeOf(byPack.entries(pn)[0]!) : 0]! += usedBytes[pn]!;
    }
  }
  for (const name of unindexed) {
    deletedPacks.push(name);
    bytesDeleted += stored.get(name)!;
  }
  const rewriteIndex = packsUnused + packsMissing + repackedPacks.length > 0;
  if (rewriteIndex) for (const name of store.indexFiles) if (!lockedOldIndexes.has(name)) bytesDeleted += indexSizes.get(name) ?? 0;
  if (rewriteIndex) locked.indexes = lockedOldIndexes.size;

  const res: PruneResult = {
    dryRun,
    maxUnusedPercent: pct,
    snapshots: roots.length,
    trees,
    blobs: index.size,
    blobsUsed,
    blobsRemoved,
    blobsRepacked,
    packs: stored.size,
    packsDeleted: deletedPacks.length,
    packsUnused,
    packsRepacked: repackedPacks.length,
    packsUnindexed: unindexed.length,
    packsMissing,
    packsResized,
    packsWritten: 0,
    indexFilesWritten: 0,
    indexFilesDeleted: rewriteIndex ? store.indexFiles.size - lockedOldIndexes.size : 0,
    parityFilesDeleted: 0,
    temporaryFilesDeleted: 0,
    bytesUsed,
    bytesUnusedBefore,
    bytesUnusedAfter: unusedAfter,
    bytesBefore,
    bytesAfter: 0,
    bytesDeleted,
    bytesWritten: 0,
    bytesFreed: 0,
    deletedPacks,
    repackedPacks,
    locked,
  };
  const finish = (): PruneResult => {
    res.bytesFreed = res.bytesDeleted - res.bytesWritten;
    res.bytesAfter = res.bytesBefore - res.bytesFreed;
    return res;
  };

  if (dryRun) {
    // estimates: repacked blobs keep their sealed sizes; packs of packSize bytes; index records
    const packSize = repo.config.packSize;
    const newPacks = repackBytes.reduce((a, b) => a + Math.ceil(b / packSize), 0);
    res.packsWritten = newPacks;
    const indexBytes = (packs: number, entries: number): number => {
      if (packs === 0) return 0;
      const records = packs * INDEX_PACK_BYTES + entries * INDEX_ENTRY_BYTES;
      return records + Math.ceil(records / INDEX_FILE_BYTES) * INDEX_FILE_OVERHEAD;
    };
    const newIndex = rewriteIndex ? indexBytes(keptPacks, keptEntries) : 0;
    const repackIndex = indexBytes(newPacks, blobsRepacked);
    res.indexFilesWritten = (newIndex > 0 ? Math.ceil(newIndex / INDEX_FILE_BYTES) : 0) + (repackIndex > 0 ? Math.ceil(repackIndex / INDEX_FILE_BYTES) : 0);
    res.bytesWritten = (newPacks > 0 ? compactSize(repackBytes[0]! + repackBytes[1]!, blobsRepacked) + (newPacks - 1) * compactSize(0, 0) : 0) + newIndex + repackIndex;
    return finish();
  }
  await reachPhase('planned', emit, opts.onPhase);

  // ---- 3. repack
  const newIndexFiles = new Set<string>();
  if (repackedPacks.length > 0) {
    const fresh = new ContentStore(repo.backend, repo.key, { packSize: repo.config.packSize, compressionLevel: repo.config.compression.level, ...(repo.config.parity !== undefined ? { parity: repo.config.parity } : {}) });
    const todo: number[] = [];
    for (let pn = 0; pn < P; pn++) if (action[pn] === REPACK) todo.push(pn);
    let done = 0;
    let bytesRead = 0;
    await parallel(todo, memoryPlan().packsAtOnce, async (pn) => {
      const name = index.packs[pn]!;
      const data = await repo.backend.get({ type: 'pack', name });
      bytesRead += data.length;
      const entries = Array.from(byPack.entries(pn)).filter((e) => used.has(e)).sort((a, b) => index.offsetOf(a) - index.offsetOf(b));
      for (const e of entries) {
        const off = index.offsetOf(e);
        const len = index.lengthOf(e);
        const id = Buffer.from(index.idOf(e));
        if (off + len > data.length) throw new IntegrityError(`prune stopped: pack ${name} became shorter while it was read; nothing was deleted: run 'meshback check --read-data'`, { pack: name });
        const type = index.typeOf(e);
        let plain: Buffer;
        try {
          plain = await store.decodeBlob(data.subarray(off, off + len), id, index.rawLengthOf(e), name, type === BLOB_TREE ? 'tree' : 'chunk');
        } catch (err) {
          if (err instanceof IntegrityError) {
            throw new IntegrityError(`prune stopped: ${err.message}; nothing was deleted: run 'meshback check --read-data' and 'meshback repair snapshots --read-data', then prune again`, err.data);
          }
          throw err;
        }
        await fresh.add(type, id, plain);
      }
      done++;
      emit({ type: 'progress', op: 'prune', files: done, totalFiles: todo.length, bytes: bytesRead, current: 'repacking' });
      if (done === 1) await reachPhase('repacking', emit, opts.onPhase);
    });
    await fresh.flush();
    for (const n of fresh.indexFiles) newIndexFiles.add(n);
    res.packsWritten = fresh.stats.packsWritten;
    res.bytesWritten += fresh.stats.bytesStored;
    await reachPhase('repacked', emit, opts.onPhase);
  }

  // ---- 4. the new index: every kept pack, with all its entries
  if (rewriteIndex) {
    const writer = new IndexWriter(repo.backend, repo.key.encKey);
    for (let pn = 0; pn < P; pn++) {
      if (action[pn] !== 0) continue;
      await writer.add(encodeIndexRecord({ id: index.packs[pn]!, size: index.packSizes[pn]!, entries: byPack.packEntries(pn) }));
    }
    await writer.flush();
    for (const n of writer.written) newIndexFiles.add(n);
    res.bytesWritten += writer.bytesWritten;
    await reachPhase('indexed', emit, opts.onPhase);
  }
  res.indexFilesWritten = newIndexFiles.size;

  // ---- 5. delete: old index files first, then the packs no index lists any more
  if (rewriteIndex) {
    const old = [...store.indexFiles].filter((n) => !newIndexFiles.has(n) && !lockedOldIndexes.has(n));
    res.indexFilesDeleted = old.length;
    await deleteAll(repo, 'index', old, emit, 'deleting old index files', () => reachPhase('deleting-indexes', emit, opts.onPhase));
    await reachPhase('indexes-deleted', emit, opts.onPhase);
  }
  await deleteAll(repo, 'pack', deletedPacks, emit, 'deleting packs', () => reachPhase('deleting-packs', emit, opts.onPhase));
  // parity files go with their packs (deleteAll removes each right after its pack); one left by an
  // interrupted prune, whose pack is gone, is removed here
  if (deletedPacks.length > 0 || repo.config.parity !== undefined) res.parityFilesDeleted = (repo.config.parity !== undefined ? deletedPacks.length : 0) + (await deleteOrphanParity(repo));
  // temporary files of writes interrupted by a crash (a writer silent for longer than the lock's
  // stale age is gone; a live one's lock would have kept this prune out)
  if (repo.backend.removeTemporary !== undefined) {
    const tmp = await repo.backend.removeTemporary(lockTimings().staleMs);
    res.temporaryFilesDeleted = tmp.files;
    res.bytesDeleted += tmp.bytes;
  }
  // the index was rewritten: the renewal reads it afresh
  const renewed = repo.config.objectLock !== undefined ? await renewAfter(await repo.reopen(), 'prune finished', { events: emit }) : undefined;
  if (renewed !== undefined) res.objectLock = renewed;
  await reachPhase('done', emit, opts.onPhase);
  return finish();
}

/** Deletes files: the first alone (then `afterFirst`), the rest 4 at a time. */
async function deleteAll(repo: PruneRepo, type: 'index' | 'pack', names: readonly string[], emit: EventSink, what: string, afterFirst: () => Promise<void>): Promise<void> {
  if (names.length === 0) return;
  await repo.backend.delete({ type, name: names[0]! });
  await afterFirst();
  let done = 1;
  if (type === 'pack') await repo.backend.delete({ type: 'parity', name: names[0]! });
  await parallel(names.slice(1), 4, async (name) => {
    await repo.backend.delete({ type, name });
    if (type === 'pack') await repo.backend.delete({ type: 'parity', name });
    done++;
    if (done % 64 === 0) emit({ type: 'progress', op: 'prune', files: done, totalFiles: names.length, bytes: 0, current: what });
  });
}

/** Deletes parity files whose pack is not in storage; returns how many. */
async function deleteOrphanParity(repo: PruneRepo): Promise<number> {
  const packs = new Set<string>();
  for await (const f of repo.backend.list('pack')) packs.add(f.name);
  const orphans: string[] = [];
  for await (const f of repo.backend.list('parity')) if (!packs.has(f.name)) orphans.push(f.name);
  let deleted = 0;
  await parallel(orphans, 4, async (name) => {
    try {
      await repo.backend.delete({ type: 'parity', name });
      deleted++;
    } catch (err) {
      if (!(err instanceof ObjectLockedError)) throw err; // under retention: a later prune removes it
    }
  });
  return deleted;
}
