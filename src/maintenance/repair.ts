/**
 * repair: rebuilds what damage left inconsistent.
 *
 * repairIndex: reads every pack in storage whole, checks SHA-256 = name and decrypts its
 * header, and writes a new index listing every blob of every intact pack; then deletes the old
 * index files. A damaged pack (wrong hash, unreadable or inconsistent header) is reported and
 * left out: its blobs are lost to the index (the file itself stays until prune deletes it).
 *
 * repairSnapshots: walks the trees of each snapshot; a file whose data is lost (a chunk not in
 * the index, in a pack missing from storage or past its end, or, with readData, failing to
 * decrypt or re-hash) is dropped from its directory, as is a directory whose tree cannot be
 * loaded. Changed trees are stored again, bottom up, then a new snapshot manifest tagged
 * 'repaired' recording the original id and the dropped paths; then the original manifest is
 * deleted. Snapshots with nothing lost are not rewritten.
 */
import { ChunkIndex } from '../content/index-table.ts';
import { decodePackHeader, encodeIndexRecord, sha256hex } from '../content/pack.ts';
import type { PackEntry } from '../content/pack.ts';
import { IntegrityError, MeshbackError, NotFoundError, UsageError, errMessage } from '../errors/index.ts';
import type { EventSink } from '../events/index.ts';
import { nullSink, reportOp } from '../events/index.ts';
import type { Repository } from '../repository/index.ts';
import type { Snapshot } from '../snapshot/manifest.ts';
import { HOLE_PREFIX, displayName, encodeTree, nodeNameBytes } from '../snapshot/tree.ts';
import type { Node } from '../snapshot/tree.ts';
import { foldTrees } from '../snapshot/walker.ts';
import { parallel } from '../util/parallel.ts';
import { reachPhase } from './shared.ts';
import { IndexWriter } from '../content/index-writer.ts';

/** What repair uses of a repository: pack headers and index files through the backend and key, the content store, and snapshots and trees to rewrite. */
export type RepairRepo = Pick<Repository, 'backend' | 'key' | 'store' | 'loadSnapshot' | 'loadTree' | 'saveTree' | 'saveSnapshot' | 'removeSnapshot' | 'listSnapshots'>;

// ---------------------------------------------------------------- repair index

export const REPAIR_INDEX_PHASES = ['repair-index-indexed', 'repair-index-deleting', 'repair-index-done'] as const;
export type RepairIndexPhase = (typeof REPAIR_INDEX_PHASES)[number];

export interface RepairIndexOptions {
  dryRun?: boolean;
  events?: EventSink;
  onPhase?: (phase: RepairIndexPhase) => void | Promise<void>;
}

export interface DamagedPack {
  pack: string;
  message: string;
  /** blobs the pack held, from its header or the old index, when known */
  blobs?: number;
}

export interface RepairIndexResult {
  dryRun: boolean;
  /** pack files in storage */
  packs: number;
  packsIndexed: number;
  blobsIndexed: number;
  bytesRead: number;
  /** packs left out of the index: their blobs are lost */
  damagedPacks: DamagedPack[];
  /** packs the old index listed that storage lacks */
  missingPacks: { pack: string; blobs: number }[];
  /** blobs the old index listed that the new one does not (in damaged or missing packs) */
  blobsLost: number;
  /** blobs the new index lists that the old one did not (packs left unindexed, or damaged index files) */
  blobsFound: number;
  /** index files before (damagedIndexFiles of them could not be read) */
  indexFiles: number;
  damagedIndexFiles: number;
  indexFilesWritten: number;
  indexFilesDeleted: number;
}

/** Rebuilds the index from the pack files. The repository's loaded index is used only to report losses. */
/** repairIndex, between its op-start and summary events. */
export function repairIndex(repo: RepairRepo, opts: RepairIndexOptions = {}): Promise<RepairIndexResult> {
  return reportOp(opts.events ?? nullSink, 'repair', { what: 'index' }, () => runRepairIndex(repo, opts));
}

async function runRepairIndex(repo: RepairRepo, opts: RepairIndexOptions = {}): Promise<RepairIndexResult> {
  const emit = opts.events ?? nullSink;
  const dryRun = opts.dryRun === true;
  const old = repo.store.index;
  const oldNames: string[] = [];
  for await (const f of repo.backend.list('index')) oldNames.push(f.name);
  const packs: { name: string; size: number }[] = [];
  for await (const f of repo.backend.list('pack')) packs.push(f);
  const oldCount = new Map<string, number>();
  old.forEach((_id, _t, pn) => {
    const name = old.packs[pn]!;
    oldCount.set(name, (oldCount.get(name) ?? 0) + 1);
  });

  const res: RepairIndexResult = {
    dryRun,
    packs: packs.length,
    packsIndexed: 0,
    blobsIndexed: 0,
    bytesRead: 0,
    damagedPacks: [],
    missingPacks: [],
    blobsLost: 0,
    blobsFound: 0,
    indexFiles: oldNames.length,
    damagedIndexFiles: repo.store.damagedIndexes.length,
    indexFilesWritten: 0,
    indexFilesDeleted: 0,
  };
  const fresh = new ChunkIndex();
  const writer = new IndexWriter(repo.backend, repo.key.encKey, { dryRun });
  let done = 0;
  await parallel(packs, 2, async ({ name }) => {
    let data: Buffer;
    try {
      data = await repo.backend.get({ type: 'pack', name });
    } catch (err) {
      if (err instanceof NotFoundError) return; // deleted meanwhile
      throw err;
    }
    res.bytesRead += data.length;
    done++;
    emit({ type: 'progress', op: 'repair', files: done, totalFiles: packs.length, bytes: res.bytesRead, current: 'reading pack headers' });
    let entries: PackEntry[] | undefined;
    let headerError: string | undefined;
    try {
      entries = decodePackHeader(repo.key.encKey, data, name);
      const bad = entries.find((e) => (e.type !== 0 && e.type !== 1) || e.offset + e.length > data.length);
      if (bad !== undefined) throw new IntegrityError(`header of pack ${name} lists a blob of unknown type or past the end`);
    } catch (err) {
      if (!(err instanceof IntegrityError)) throw err;
      headerError = err.message;
    }
    const known = entries?.length ?? oldCount.get(name);
    if (sha256hex(data) !== name) {
      res.damagedPacks.push({ pack: name, message: `pack ${name} is damaged: its content does not match its name (SHA-256)`, ...(known !== undefined ? { blobs: known } : {}) });
      return;
    }
    if (entries === undefined) {
      res.damagedPacks.push({ pack: name, message: headerError!, ...(known !== undefined ? { blobs: known } : {}) });
      return;
    }
    const pn = fresh.packNumber(name, data.length);
    for (const e of entries) fresh.add(e.id, e.type, pn, e.offset, e.length, e.rawLength);
    res.packsIndexed++;
    res.blobsIndexed += entries.length;
    await writer.add(encodeIndexRecord({ id: name, size: data.length, entries }));
  });
  await writer.flush();
  res.damagedPacks.sort((a, b) => (a.pack < b.pack ? -1 : 1));
  const inStorage = new Set(packs.map((p) => p.name));
  for (const [pack, blobs] of oldCount) if (!inStorage.has(pack)) res.missingPacks.push({ pack, blobs });
  res.missingPacks.sort((a, b) => (a.pack < b.pack ? -1 : 1));
  old.forEach((id) => {
    if (!fresh.has(id)) res.blobsLost++;
  });
  fresh.forEach((id) => {
    if (!old.has(id)) res.blobsFound++;
  });
  res.indexFilesWritten = writer.written.length;
  const written = new Set(writer.written);
  const stale = oldNames.filter((n) => !written.has(n));
  res.indexFilesDeleted = stale.length;
  if (dryRun) return res;
  await reachPhase('repair-index-indexed', emit, opts.onPhase);
  for (const [i, name] of stale.entries()) {
    await repo.backend.delete({ type: 'index', name });
    if (i === 0) await reachPhase('repair-index-deleting', emit, opts.onPhase);
  }
  await reachPhase('repair-index-done', emit, opts.onPhase);
  return res;
}

// ---------------------------------------------------------------- repair snapshots

export const REPAIR_SNAPSHOTS_PHASES = ['repair-snapshots-flushed', 'repair-snapshots-written', 'repair-snapshots-deleting', 'repair-snapshots-done'] as const;
export type RepairSnapshotsPhase = (typeof REPAIR_SNAPSHOTS_PHASES)[number];

export const REPAIRED_TAG = 'repaired';

export interface RepairSnapshotsOptions {
  /** snapshot ids or unique prefixes; all snapshots when empty */
  snapshots?: readonly string[];
  /** also read, decrypt and re-hash every data blob the snapshots reference */
  readData?: boolean;
  dryRun?: boolean;
  events?: EventSink;
  onPhase?: (phase: RepairSnapshotsPhase) => void | Promise<void>;
}

export interface RepairedSnapshot {
  original: string;
  /** the new snapshot's id (absent in a dry run) */
  id?: string;
  time: string;
  host: string;
  paths: string[];
  droppedFiles: string[];
  droppedDirs: string[];
}

export interface RepairSnapshotsResult {
  dryRun: boolean;
  readData: boolean;
  /** snapshots examined */
  snapshots: number;
  trees: number;
  /** distinct data blobs examined (read and re-hashed with readData) */
  blobsChecked: number;
  /** distinct blobs found lost */
  blobsLost: number;
  /** packs holding a lost blob (missing, truncated or damaged): 'prune --repack' removes them */
  damagedPacks: string[];
  repaired: RepairedSnapshot[];
  unchanged: number;
  /** snapshot manifests that cannot be read: left as they are */
  damagedSnapshots: { id: string; message: string }[];
  treesWritten: number;
}

interface Rebuilt {
  /** the tree's id after repair, or null when the tree itself is lost */
  id: string | null;
  changed: boolean;
  droppedFiles: string[];
  droppedDirs: string[];
}

/** per index entry: 0 not yet examined, GOOD or LOST */
const GOOD = 1;
const LOST = 2;

/** Rewrites snapshots without the files and directories whose data is lost. */
/** repairSnapshots, between its op-start and summary events. */
export function repairSnapshots(repo: RepairRepo, opts: RepairSnapshotsOptions = {}): Promise<RepairSnapshotsResult> {
  return reportOp(opts.events ?? nullSink, 'repair', { what: 'snapshots' }, () => runRepairSnapshots(repo, opts));
}

async function runRepairSnapshots(repo: RepairRepo, opts: RepairSnapshotsOptions = {}): Promise<RepairSnapshotsResult> {
  const emit = opts.events ?? nullSink;
  const dryRun = opts.dryRun === true;
  const readData = opts.readData === true;
  const store = repo.store;
  const index = store.index;
  const res: RepairSnapshotsResult = { dryRun, readData, snapshots: 0, trees: 0, blobsChecked: 0, blobsLost: 0, damagedPacks: [], repaired: [], unchanged: 0, damagedSnapshots: [], treesWritten: 0 };

  if (store.damagedIndexes.length > 0) {
    throw new IntegrityError(`repair snapshots refused: ${store.damagedIndexes[0]!.message}; the data it lists would look lost: run 'meshback repair index' first; nothing was changed`);
  }
  const stored = new Map<string, number>();
  for await (const f of repo.backend.list('pack')) stored.set(f.name, f.size);

  // all manifests, readable or not (listSnapshots would fail on the first damaged one)
  const all: { id: string; snapshot?: Snapshot; error?: string }[] = [];
  for await (const f of repo.backend.list('snapshot')) {
    try {
      all.push({ id: f.name, snapshot: await repo.loadSnapshot(f.name) });
    } catch (err) {
      if (!(err instanceof IntegrityError) && !(err instanceof SyntaxError)) throw err;
      all.push({ id: f.name, error: errMessage(err) });
    }
  }
  let selected = all;
  if (opts.snapshots !== undefined && opts.snapshots.length > 0) {
    const pick = new Set<string>();
    for (const ref of opts.snapshots) {
      if (!/^[0-9a-f]{1,64}$/.test(ref)) throw new UsageError(`${JSON.stringify(ref)} is not a snapshot id: give ids (or prefixes) from 'meshback snapshots'`);
      const m = all.filter((s) => s.id.startsWith(ref));
      if (m.length === 0) throw new NotFoundError(`no snapshot with id ${ref}: list them with 'meshback snapshots'`, { snapshot: ref });
      if (m.length > 1) throw new UsageError(`snapshot id prefix ${ref} is ambiguous (${m.length} snapshots): give more digits`);
      pick.add(m[0]!.id);
    }
    selected = all.filter((s) => pick.has(s.id));
  }
  for (const s of selected) if (s.snapshot === undefined) res.damagedSnapshots.push({ id: s.id, message: s.error! });

  const state = new Uint8Array(index.size);
  const verifying = new Map<number, Promise<boolean>>();
  const badPacks = new Set<string>();
  const lose = (e: number): false => {
    if (state[e] !== LOST) res.blobsLost++;
    state[e] = LOST;
    badPacks.add(index.packs[index.packOf(e)]!);
    return false;
  };
  const missing = new Set<string>();
  /** the blob's index entry, or -1 when it is not indexed, known lost, or its pack lacks it */
  const placed = (hex: string): number => {
    const e = index.entryOf(Buffer.from(hex, 'hex'));
    if (e < 0) {
      if (!missing.has(hex)) {
        missing.add(hex);
        res.blobsLost++;
      }
      return -1;
    }
    if (state[e] === LOST) return -1;
    const size = stored.get(index.packs[index.packOf(e)]!);
    if (size === undefined || index.offsetOf(e) + index.lengthOf(e) > size) {
      lose(e);
      return -1;
    }
    return e;
  };
  const chunkOk = async (hex: string): Promise<boolean> => {
    const e = placed(hex);
    if (e < 0) return false;
    if (state[e] === GOOD) return true;
    if (!readData) {
      res.blobsChecked++;
      state[e] = GOOD;
      return true;
    }
    let p = verifying.get(e);
    if (p === undefined) {
      p = (async () => {
        try {
          await store.load(Buffer.from(hex, 'hex'), 'chunk');
          res.blobsChecked++;
          state[e] = GOOD;
          return true;
        } catch (err) {
          if (!(err instanceof IntegrityError)) throw err;
          res.blobsChecked++;
          return lose(e);
        } finally {
          verifying.delete(e);
        }
      })();
      verifying.set(e, p);
    }
    return p;
  };
  const fileOk = async (n: Node): Promise<boolean> => {
    for (const c of n.content ?? []) {
      if (c.startsWith(HOLE_PREFIX)) continue;
      if (!(await chunkOk(c))) return false;
    }
    return true;
  };

  const lost: Rebuilt = { id: null, changed: true, droppedFiles: [], droppedDirs: [] };
  /** a tree whose blob is known lost is not even read */
  const NOT_PLACED = new Error('not placed');
  const loader = {
    loadTree: (id: string) => (placed(id) < 0 ? Promise.reject(NOT_PLACED) : repo.loadTree(id)),
  };
  // post-order over the trees (memoized: a tree shared by snapshots is rebuilt once)
  const rebuild = foldTrees<Rebuilt>(
    loader,
    async (treeId, tree, child) => {
      const nodes = tree.nodes;
      res.trees++;
      if (res.trees % 256 === 0) emit({ type: 'progress', op: 'repair', files: res.trees, bytes: 0, current: 'walking trees' });
      // files of this directory are checked concurrently, subdirectories one after another
      const fileResults = new Map<Node, boolean>();
      const files = nodes.filter((n) => n.type === 'file');
      await parallel(files, 8, async (n) => {
        fileResults.set(n, await fileOk(n));
      });
      const out: Node[] = [];
      const r: Rebuilt = { id: treeId, changed: false, droppedFiles: [], droppedDirs: [] };
      for (const n of nodes) {
        const name = `/${displayName(nodeNameBytes(n))}`;
        if (n.type === 'dir' && n.subtree !== undefined) {
          const sub = await child(n.subtree);
          if (sub.id === null) {
            r.changed = true;
            r.droppedDirs.push(name);
            continue;
          }
          for (const d of sub.droppedFiles) r.droppedFiles.push(name + d);
          for (const d of sub.droppedDirs) r.droppedDirs.push(name + d);
          if (sub.changed) {
            r.changed = true;
            out.push({ ...n, subtree: sub.id });
            continue;
          }
        } else if (n.type === 'file' && fileResults.get(n) === false) {
          r.changed = true;
          r.droppedFiles.push(name);
          continue;
        }
        out.push(n);
      }
      if (r.changed) r.id = await saveTree(out);
      return r;
    },
    (treeId, err) => {
      if (err === NOT_PLACED) return lost;
      if (!(err instanceof MeshbackError) || (err.code !== 'INTEGRITY' && err.code !== 'NOT_FOUND')) throw err;
      lose(index.entryOf(Buffer.from(treeId, 'hex')));
      return lost;
    },
  );
  const saveTree = async (nodes: Node[]): Promise<string> => {
    const data = encodeTree({ nodes });
    if (dryRun) return store.id(data).toString('hex');
    res.treesWritten++;
    return repo.saveTree(data);
  };

  const plans: { original: { id: string; snapshot: Snapshot }; tree: string; droppedFiles: string[]; droppedDirs: string[] }[] = [];
  for (const s of selected) {
    if (s.snapshot === undefined) continue;
    res.snapshots++;
    const r = await rebuild(s.snapshot.tree);
    if (!r.changed) {
      res.unchanged++;
      continue;
    }
    // a lost root: the snapshot keeps its record but holds nothing
    const tree = r.id ?? (await saveTree([]));
    plans.push({ original: { id: s.id, snapshot: s.snapshot }, tree, droppedFiles: r.id === null ? [] : r.droppedFiles, droppedDirs: r.id === null ? ['/'] : r.droppedDirs });
  }
  res.damagedPacks = [...badPacks].sort();
  if (missing.size > 0) await refuseIfIndexable(repo, stored, missing);
  if (!dryRun && plans.length > 0) {
    // trees before the manifests that name them
    await store.flush();
    await reachPhase('repair-snapshots-flushed', emit, opts.onPhase);
  }
  const now = new Date().toISOString();
  for (const p of plans) {
    const o = p.original.snapshot;
    const rep: RepairedSnapshot = { original: p.original.id, time: o.time, host: o.host, paths: o.paths, droppedFiles: p.droppedFiles, droppedDirs: p.droppedDirs };
    res.repaired.push(rep);
    if (dryRun) continue;
    // an earlier run that stopped before deleting the original may have written it already
    const again = all.find((x) => x.snapshot?.repaired?.original === p.original.id && x.snapshot.tree === p.tree);
    if (again !== undefined) {
      rep.id = again.id;
      continue;
    }
    const snap: Snapshot = {
      ...o,
      tags: [...new Set([...o.tags, REPAIRED_TAG])].sort(),
      tree: p.tree,
      repaired: {
        original: p.original.id,
        time: now,
        droppedFiles: [...(o.repaired?.droppedFiles ?? []), ...p.droppedFiles],
        droppedDirs: [...(o.repaired?.droppedDirs ?? []), ...p.droppedDirs],
      },
    };
    rep.id = await repo.saveSnapshot(snap);
  }
  if (dryRun || plans.length === 0) return res;
  await reachPhase('repair-snapshots-written', emit, opts.onPhase);
  for (const [i, p] of plans.entries()) {
    await repo.backend.delete({ type: 'snapshot', name: p.original.id });
    if (i === 0) await reachPhase('repair-snapshots-deleting', emit, opts.onPhase);
  }
  await reachPhase('repair-snapshots-done', emit, opts.onPhase);
  return res;
}

/**
 * Blobs missing from the index may be in intact packs that no index lists (after an index file
 * was lost): dropping the files that need them would lose data that 'repair index' recovers.
 * Reads those packs (whole: the same test as repair index, so a pack it would leave out does not
 * stop the repair) and refuses if one holds a missing blob.
 */
async function refuseIfIndexable(repo: RepairRepo, stored: Map<string, number>, missing: Set<string>): Promise<void> {
  const unindexed = [...stored.keys()].filter((n) => !repo.store.index.hasPack(n));
  let found: { pack: string; blob: string } | undefined;
  await parallel(unindexed, 2, async (name) => {
    if (found !== undefined) return;
    let data: Buffer;
    try {
      data = await repo.backend.get({ type: 'pack', name });
    } catch (err) {
      if (err instanceof NotFoundError) return;
      throw err;
    }
    if (sha256hex(data) !== name) return;
    let entries: PackEntry[];
    try {
      entries = decodePackHeader(repo.key.encKey, data, name);
    } catch (err) {
      if (err instanceof IntegrityError) return;
      throw err;
    }
    for (const e of entries) {
      const hex = e.id.toString('hex');
      if (missing.has(hex)) {
        found ??= { pack: name, blob: hex };
        return;
      }
    }
  });
  if (found !== undefined) {
    throw new IntegrityError(
      `repair snapshots refused: pack ${found.pack} holds blob ${found.blob.slice(0, 16)} that a snapshot needs, but no index lists it: run 'meshback repair index' first; nothing was changed`,
      { pack: found.pack, blob: found.blob },
    );
  }
}
