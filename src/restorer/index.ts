/**
 * restorer: writes a snapshot (or part of it) into a target directory, with its metadata,
 * and proves what it wrote.
 *
 * Phases, each a function below: plan (walk the snapshot's trees with the one walker, pick what
 * --include selects), blobs (which chunk of which pack goes to which file offsets), prepare the
 * target and make the directories, fetch (read pack ranges, decode and verify each chunk, write
 * it to every place that needs it), links and special files, verify, directory metadata. Where
 * the bytes go is the RestoreTarget's business (src/target: a directory today); the target keeps
 * the safety rules (nothing written outside it, no symlink followed).
 *
 * Verification: each chunk is authenticated (GCM) and re-hashed against its id before it is
 * written; a chunk that fails is never written, and the files that need it are removed and
 * reported. With `verify`, each file is synced, read back from disk and compared chunk by
 * chunk with the snapshot.
 *
 * A pack read that fails for a passing reason (isRetryable: the store unreachable, after the
 * storage stack's retries) stops the restore with that error: the data is not known damaged.
 *
 * Parity: when chunks of a pack cannot be read or fail verification, and the pack has a
 * parity file, the pack is rebuilt in memory (verified against its name) and the chunks are
 * taken from the rebuilt copy; a warning says so. The repository itself is not changed
 * ('meshback repair packs' does that).
 */
import { idEquals } from '../crypto/index.ts';
import { availableParallelism } from 'node:os';
import { BlobList } from '../content/blob-threads.ts';
import type { BlobThreads } from '../content/blob-threads.ts';
import { free } from '../content/blob.ts';
import { IntegrityError, MeshbackError, isRetryable } from '../errors/index.ts';
import type { EventSink } from '../events/index.ts';
import { nullSink, reportOp } from '../events/index.ts';
import type { Repository } from '../repository/index.ts';
import type { SnapshotRef } from '../snapshot/manifest.ts';
import { HOLE_PREFIX, displayName, nodeNameBytes } from '../snapshot/tree.ts';
import type { Node } from '../snapshot/tree.ts';
import { childPath, walkTree } from '../snapshot/walker.ts';
import { DirectoryTarget } from '../target/index.ts';
import type { FileMeta, RestoreTarget, TargetFile } from '../target/index.ts';
import { parallel } from '../util/parallel.ts';
import { Semaphore } from '../util/semaphore.ts';
import { memoryPlan } from '../util/memory.ts';
import { ByteArena } from '../util/buffer-pool.ts';

/** What a restore uses of a repository. */
export type RestoreRepo = Pick<Repository, 'findSnapshot' | 'rootView' | 'loadTree' | 'dropTreeCache' | 'index' | 'readPack' | 'decodeBlob' | 'blobThreads' | 'rebuildPack' | 'chunkId'>;

export interface RestoreOptions {
  snapshot: string;
  /** a directory, or any RestoreTarget */
  target: string | RestoreTarget;
  includes?: string[];
  /** restore the directory at this path of the snapshot (as `meshback ls` shows it, e.g. `volume`) as the target's root; --include paths are relative to it */
  root?: string;
  verify?: boolean;
  events?: EventSink;
}

export interface RestoreResult {
  snapshotId: string;
  files: number;
  dirs: number;
  symlinks: number;
  others: number;
  hardlinks: number;
  bytes: number;
  filesVerified: number;
  bytesVerified: number;
  /** files re-read from disk and compared (with verify) */
  filesReread: number;
  bytesReread: number;
  errors: { path: string; message: string }[];
  /** files that were not restored because their data is damaged or missing */
  damaged: string[];
  /** damaged packs whose chunks were taken from a copy rebuilt from parity */
  rebuiltFromParity: string[];
  duration: number;
}

interface Item {
  rel: Buffer; // relative path under target
  node: Node;
}

/** What the restore writes besides file contents: the selected nodes by kind, directories parents first (files: the batch being planned). */
interface Plan {
  dirs: Item[];
  files: Item[];
  links: Item[];
  others: Item[];
}

/** A file being written: no names, no chunk list (the heap stays small, so GC stays cheap). */
interface FileState {
  file: TargetFile;
  meta: FileMeta;
  /** kept for --verify only */
  content?: string[];
  remaining: number; // bytes still to write
  failed?: string;
  finalized: boolean;
}

interface Need {
  file: number;
  offset: number; // in file
}

interface BlobNeed {
  /** index entry number (the id is read from the index when the blob is decoded) */
  entry: number;
  offset: number; // in pack
  length: number;
  rawLength: number;
  targets: Need[];
}

/**
 * Packs read at once (and with them the blob threads that decode their blobs: decryption, zstd
 * and re-hashing) and the longest pack range read at once come from the memory plan (util/memory).
 */
/** decoded blobs of one pack range being written at once (file opens overlap) */
const WRITES_AT_ONCE = 16;
/** raw bytes of the blobs sent to a blob thread at once (a reader holds at most two such batches decoded) */
const DECODE_BATCH = 8 * 1024 * 1024;

/** Waits for every promise; then throws the first failure, if any. */
async function settleAll(ps: readonly Promise<void>[]): Promise<void> {
  const failed = (await Promise.allSettled(ps)).find((r) => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

/** restore, between its op-start and summary events. */
export function restore(repo: RestoreRepo, opts: RestoreOptions): Promise<RestoreResult> {
  return reportOp(opts.events ?? nullSink, 'restore', { snapshot: opts.snapshot, target: typeof opts.target === 'string' ? opts.target : opts.target.location, includes: opts.includes ?? [], verify: opts.verify === true }, () => runRestore(repo, opts));
}

async function runRestore(repo: RestoreRepo, opts: RestoreOptions): Promise<RestoreResult> {
  const t0 = performance.now();
  const emit = opts.events ?? nullSink;
  const ref = await repo.findSnapshot(opts.snapshot);
  const res: RestoreResult = {
    snapshotId: ref.id, files: 0, dirs: 0, symlinks: 0, others: 0, hardlinks: 0, bytes: 0, filesVerified: 0, bytesVerified: 0,
    filesReread: 0, bytesReread: 0, errors: [], damaged: [], rebuiltFromParity: [], duration: 0,
  };
  const includes = (opts.includes ?? []).map((p) => Buffer.from(p.replace(/^\/+/, '').replace(/\/+$/, ''), 'utf8')).filter((b) => b.length > 0);
  // a snapshot of one directory restores that directory's contents into the target
  let view = await repo.rootView(ref.snapshot);
  if (opts.root !== undefined) view = await subView(repo, ref, view, opts.root);
  // an --include that matches nothing fails before anything is written
  for (const inc of includes) {
    const names = pathNames(inc);
    if (names.length === 0 || (await nodeAt(repo, view.nodes, names)) === undefined) throw new MeshbackError('NOT_FOUND', `--include ${displayName(inc)} matches nothing in snapshot ${ref.id.slice(0, 8)}: see 'meshback ls ${ref.id.slice(0, 8)}'`);
  }
  const target = typeof opts.target === 'string' ? new DirectoryTarget(opts.target) : opts.target;
  const verify = opts.verify === true;
  const fileError = (rel: Buffer, message: string): void => {
    res.errors.push({ path: displayName(rel), message });
    emit({ type: 'item-error', path: displayName(rel), message });
  };

  // the totals of a whole restore are the snapshot's; of a partial one, known once it is planned
  const whole = includes.length === 0 && opts.root === undefined;
  const totals: { files?: number; bytes?: number } = whole ? { files: ref.snapshot.summary.files, bytes: ref.snapshot.summary.totalBytes } : {};
  const progress = { files: 0, bytes: 0 };
  const totalFields = (): { totalFiles?: number; totalBytes?: number } => ({ ...(totals.files !== undefined ? { totalFiles: totals.files } : {}), ...(totals.bytes !== undefined ? { totalBytes: totals.bytes } : {}) });
  const progressEvent = (): void => emit({ type: 'progress', op: 'restore', files: progress.files, bytes: progress.bytes, ...totalFields() });
  await target.prepare();
  const tick = setInterval(progressEvent, 250);
  // the blob threads, made when the first batch has data to fetch and kept for the next ones, and
  // the read buffers shared with them (made once: a buffer a thread has seen lives until that
  // thread's collector runs, so new ones per batch would pile up)
  let threads: BlobThreads | undefined;
  const readBufs: Buffer[] = [];
  try {
    const finalize = async (st: FileState): Promise<void> => {
      if (st.finalized) return;
      st.finalized = true;
      if (st.failed !== undefined) return;
      await target.finishFile(st.file, st.meta);
      res.files++;
      res.bytes += st.meta.size;
      res.filesVerified++;
      res.bytesVerified += st.meta.size;
      progress.files++;
    };
    const links: Links = { first: new Map(), later: [] };
    let planned = { files: 0, bytes: 0 };
    /** restores one batch of files: plan their chunks, fetch and write them, verify them */
    const restoreFiles = async (files: Item[]): Promise<void> => {
      const { states, byPack, totalBytes } = planBlobs(repo, files, target, verify, links);
      files.length = 0;
      planned = { files: planned.files + states.length, bytes: planned.bytes + totalBytes };
      // the plan holds what the batch needs: cached trees would only make every GC slower
      repo.dropTreeCache();
      // files with nothing to write (empty, all holes, or failed at planning time)
      await parallel(states.filter((st) => st.remaining === 0 || st.failed !== undefined), 16, (st) => finalize(st));
      if (byPack.size > 0) {
        threads ??= repo.blobThreads(Math.min(availableParallelism(), memoryPlan().packsAtOnce));
        await fetchAndWrite(repo, target, threads, readBufs, states, byPack, res, emit, progress, finalize);
      }
      // damaged files: removed, so that no wrong or partial content is left behind
      for (const st of states) {
        if (st.failed !== undefined) {
          await target.discardFile(st.file);
          res.damaged.push(displayName(st.file.rel));
          fileError(st.file.rel, `not restored: ${st.failed}`);
        } else if (!st.finalized) {
          throw new MeshbackError('INTERNAL', `file ${displayName(st.file.rel)} was not completely written (${st.remaining} bytes left): this is a bug`);
        }
      }
      // --verify: sync and re-read every restored file, compare chunk by chunk
      if (verify) {
        await parallel(states.filter((st) => st.failed === undefined), 2, async (st) => {
          const problem = await verifyFile(repo, target, st);
          if (problem !== undefined) {
            res.damaged.push(displayName(st.file.rel));
            fileError(st.file.rel, `verification failed: ${problem}`);
          } else {
            res.filesReread++;
            res.bytesReread += st.meta.size;
          }
          emit({ type: 'progress', op: 'verify', files: res.filesReread, bytes: res.bytesReread, ...totalFields() });
        });
      }
    };

    const plan = await planRestore(repo, view, includes, {
      dir: async (d) => {
        await target.dir(d.rel);
        res.dirs++;
      },
      files: restoreFiles,
    });
    if (!whole) Object.assign(totals, planned);

    // hard links to files restored above
    for (const h of links.later) {
      if (h.first.failed !== undefined) {
        res.damaged.push(displayName(h.item.rel));
        fileError(h.item.rel, `not restored: ${h.first.failed}`);
        continue;
      }
      await target.hardlink(h.first.file.rel, h.item.rel);
      res.hardlinks++;
      res.files++;
    }
    // symlinks (created as links; never followed), then fifos and device nodes
    for (const l of plan.links) {
      await target.symlink(l.rel, l.node);
      res.symlinks++;
    }
    for (const o of plan.others) {
      const problem = await target.special(o.rel, o.node);
      if (problem !== undefined) fileError(o.rel, problem);
      else res.others++;
    }

    // directory metadata last, deepest first (writing into a directory changes its mtime)
    const dirMetas: Item[] = [...plan.dirs].reverse();
    if (view.rootDir !== undefined && includes.length === 0) dirMetas.push({ rel: Buffer.alloc(0), node: view.rootDir });
    for (const d of dirMetas) await target.dirMeta(d.rel, d.node);
  } finally {
    clearInterval(tick);
    // on an error midway, close what is still open (the error is what gets reported)
    await threads?.close();
    await target.close();
  }
  progressEvent();
  res.duration = (performance.now() - t0) / 1000;
  return res;
}

/**
 * Files planned and written at once. A restore holds the plan of one batch (nodes, file states,
 * chunk needs), not the snapshot's: planned all at once, 1,000,000 small files took 2 GiB of
 * memory. A chunk shared by files of two batches is read once per batch.
 */
const BATCH_FILES = 8192;
/** chunks planned at once: a batch of files with many chunks closes early */
const BATCH_CHUNKS = 65536;

/**
 * Phase 1: walks the snapshot's trees and picks what --include selects (everything without it).
 * Directories go to `dir` as they are met (parents first); files go to `files` in batches (see
 * BATCH_FILES), restored before the walk goes on. Directories, symlinks and special files are
 * returned for the end (their metadata, and links created after every file is written).
 */
async function planRestore(repo: RestoreRepo, view: { nodes: Node[] }, includes: Buffer[], on: { dir: (d: Item) => Promise<void>; files: (batch: Item[]) => Promise<void> }): Promise<Plan> {
  /** 'all' = restore everything below; 'some' = an ancestor of an include; 'none' */
  const selection = (rel: Buffer): 'all' | 'some' | 'none' => {
    if (includes.length === 0) return 'all';
    let some = false;
    for (const inc of includes) {
      if (rel.equals(inc) || (rel.length > inc.length && rel[inc.length] === 0x2f && rel.subarray(0, inc.length).equals(inc))) return 'all';
      if (inc.length > rel.length && inc[rel.length] === 0x2f && inc.subarray(0, rel.length).equals(rel)) some = true;
    }
    return some ? 'some' : 'none';
  };
  const plan: Plan = { dirs: [], files: [], links: [], others: [] };
  // the paths kept to the end, in memory of their own (see ByteArena)
  const kept = new ByteArena();
  let chunks = 0;
  await walkTree(repo, { nodes: view.nodes }, async (n, dir) => {
    const rel = childPath(dir, n);
    // a path below an --include is 'all' by itself: selection() needs no state from its parents
    const sel = selection(rel);
    if (sel === 'none') return 'skip';
    if (n.type === 'dir') {
      const d = { rel: kept.copy(rel), node: n };
      plan.dirs.push(d);
      await on.dir(d);
      return undefined;
    }
    if (sel !== 'all') return undefined;
    if (n.type === 'file') {
      plan.files.push({ rel, node: n });
      chunks += n.content?.length ?? 0;
      if (plan.files.length >= BATCH_FILES || chunks >= BATCH_CHUNKS) {
        chunks = 0;
        await on.files(plan.files);
      }
    } else if (n.type === 'symlink') plan.links.push({ rel: kept.copy(rel), node: n });
    else plan.others.push({ rel: kept.copy(rel), node: n });
    return undefined;
  });
  if (plan.files.length > 0) await on.files(plan.files);
  return plan;
}

/** The components of a slash-separated path, as bytes (empty ones dropped). */
function pathNames(path: Buffer): Buffer[] {
  const names: Buffer[] = [];
  for (let i = 0, j = 0; j <= path.length; j++) {
    if (j === path.length || path[j] === 0x2f) {
      if (j > i) names.push(path.subarray(i, j));
      i = j + 1;
    }
  }
  return names;
}

/** The node at the path `names` below `nodes` (loading the trees on the way), or undefined. */
async function nodeAt(repo: RestoreRepo, nodes: Node[], names: Buffer[]): Promise<Node | undefined> {
  let cur = nodes;
  let n: Node | undefined;
  for (const name of names) {
    if (n !== undefined) {
      if (n.type !== 'dir' || n.subtree === undefined) return undefined;
      cur = (await repo.loadTree(n.subtree)).nodes;
    }
    n = cur.find((x) => nodeNameBytes(x).equals(name));
    if (n === undefined) return undefined;
  }
  return n;
}

const DOT = Buffer.from('.');

/** The directory at `root` (slash-separated names below the snapshot's root view) as the view to restore. */
async function subView(repo: RestoreRepo, ref: SnapshotRef, view: { nodes: Node[]; rootDir?: Node }, root: string): Promise<{ nodes: Node[]; rootDir?: Node }> {
  const names = pathNames(Buffer.from(root, 'utf8')).filter((x) => !x.equals(DOT));
  if (names.length === 0) return view;
  const n = await nodeAt(repo, view.nodes, names);
  if (n === undefined || n.type !== 'dir' || n.subtree === undefined) {
    throw new MeshbackError('NOT_FOUND', `the snapshot ${ref.id.slice(0, 8)} has no directory ${names.map((x) => displayName(x)).join('/')} to restore from: see 'meshback ls ${ref.id.slice(0, 8)}'`);
  }
  return { nodes: (await repo.loadTree(n.subtree)).nodes, rootDir: n };
}

/** Hard links: the first path of each multiply-linked inode, and the later paths (linked at the end). */
interface Links {
  first: Map<string, FileState>;
  later: { item: Item; first: FileState }[];
}

/** Phase 2: which blob of which pack goes to which offsets of which file of a batch; later paths of hard links set aside. */
function planBlobs(repo: RestoreRepo, files: Item[], target: RestoreTarget, verify: boolean, links: Links): { states: FileState[]; byPack: Map<number, BlobNeed[]>; totalBytes: number } {
  const index = repo.index;
  const states: FileState[] = [];
  const byPack = new Map<number, BlobNeed[]>();
  const blobNeeds = new Map<number, BlobNeed>(); // index entry number -> need
  let totalBytes = 0;
  for (const f of files) {
    const n = f.node;
    const inode = n.nlink > 1 ? `${n.dev}:${n.inode}` : undefined;
    if (inode !== undefined) {
      const first = links.first.get(inode);
      if (first !== undefined) {
        links.later.push({ item: f, first });
        continue;
      }
    }
    const fi = states.length;
    const size = n.size ?? 0;
    const st: FileState = { file: target.file(f.rel, size), meta: { mode: n.mode, uid: n.uid, gid: n.gid, mtime: n.mtime, size }, ...(verify && n.content !== undefined ? { content: n.content } : {}), remaining: 0, finalized: false };
    states.push(st);
    if (inode !== undefined) links.first.set(inode, st);
    let off = 0;
    for (const c of n.content ?? []) {
      if (c.startsWith(HOLE_PREFIX)) {
        off += Number(c.slice(HOLE_PREFIX.length));
        continue;
      }
      const e = index.entryOfHex(c);
      if (e < 0) {
        st.failed = `its chunk ${c.slice(0, 16)} is missing from the repository index`;
        break;
      }
      const raw = index.rawLengthOf(e);
      let need = blobNeeds.get(e);
      if (need === undefined) {
        need = { entry: e, offset: index.offsetOf(e), length: index.lengthOf(e), rawLength: raw, targets: [] };
        blobNeeds.set(e, need);
        const pn = index.packOf(e);
        let list = byPack.get(pn);
        if (list === undefined) byPack.set(pn, (list = []));
        list.push(need);
      }
      need.targets.push({ file: fi, offset: off });
      off += raw;
      st.remaining += raw;
    }
    if (st.failed === undefined && off !== size) st.failed = `its chunks add up to ${off} bytes but the file has ${size}`;
    totalBytes += size;
  }
  return { states, byPack, totalBytes };
}

/**
 * Phase 3: reads the planned packs (a few at once, each in coalesced ranges), decodes and
 * verifies every blob, and writes it to each file offset that needs it; a file whose last bytes
 * arrive is finalized. A blob that cannot be read or fails verification is taken from the pack
 * rebuilt from parity when there is one; otherwise its files fail.
 */
async function fetchAndWrite(repo: RestoreRepo, target: RestoreTarget, threads: BlobThreads, readBufs: Buffer[], states: FileState[], byPack: Map<number, BlobNeed[]>, res: RestoreResult, emit: EventSink, progress: { files: number; bytes: number }, finalize: (st: FileState) => Promise<void>): Promise<void> {
  const index = repo.index;
  const rebuildPack = async (pack: string): Promise<Buffer | undefined> => {
    const r = await repo.rebuildPack(pack);
    if (r === undefined) return undefined;
    res.rebuiltFromParity.push(pack);
    emit({ type: 'warning', message: `pack ${pack} is damaged: its chunks were rebuilt from its parity file (${r.badBlocks} of ${r.blocks} blocks); run 'meshback repair packs' to repair the repository` });
    return r.data;
  };

  // blobs are decoded and proven on the blob threads (one per pack read at once, at most one per
  // core; made once per restore), and written here as they come back; the main thread reads, writes
  // and keeps the books
  const { packsAtOnce, rangeBytes: RANGE_MAX } = memoryPlan();

  /** Writes a decoded blob to every file that still wants it (a blob that failed: tried from parity, else its files fail). */
  const place = async (pack: string, need: BlobNeed, decoded: Buffer | undefined, msg: string | undefined, fromParity: () => Promise<Buffer | undefined>): Promise<void> => {
    const live = need.targets.filter((t) => states[t.file]!.failed === undefined);
    if (live.length === 0) return;
    let plain = decoded;
    if (plain === undefined) {
      const whole = await fromParity();
      if (whole !== undefined && need.offset + need.length <= whole.length) {
        try {
          plain = await repo.decodeBlob(whole.subarray(need.offset, need.offset + need.length), index.entryId(need.entry), need.rawLength, pack, 'chunk');
        } catch (err) {
          if (!(err instanceof IntegrityError)) throw err;
        }
      }
    }
    for (const t of live) {
      const st = states[t.file]!;
      if (plain === undefined) {
        // a failed file gets no more writes; it is removed at the end
        st.failed ??= msg ?? 'data unavailable';
        continue;
      }
      await target.write(st.file, plain, t.offset);
      st.remaining -= plain.length;
      progress.bytes += plain.length;
      if (st.remaining === 0) await finalize(st);
    }
  };

  // one read buffer per pack reader (readBufs, kept by the caller), reused for every range and
  // shared with the blob threads (fresh buffers per read made V8 collect garbage far more often)
  await parallel([...byPack.entries()], packsAtOnce, async ([pn, needs]) => {
    const pack = index.packs[pn]!;
    let readBuf = readBufs.pop();
    let rebuilt: Promise<Buffer | undefined> | undefined;
    // the pack rebuilt from parity, fetched the first time one of its chunks fails
    const fromParity = (): Promise<Buffer | undefined> => (rebuilt ??= rebuildPack(pack));
    try {
      needs.sort((a, b) => a.offset - b.offset);
      // coalesce into ranges with small gaps
      let i = 0;
      while (i < needs.length) {
        let j = i + 1;
        let end = needs[i]!.offset + needs[i]!.length;
        while (j < needs.length && needs[j]!.offset - end < 1024 * 1024 && needs[j]!.offset + needs[j]!.length - needs[i]!.offset <= RANGE_MAX) {
          end = needs[j]!.offset + needs[j]!.length;
          j++;
        }
        const start = needs[i]!.offset;
        const group = needs.slice(i, j);
        i = j;
        let data: Buffer | undefined;
        let readErr: string | undefined;
        try {
          if (readBuf === undefined || readBuf.length < end - start) readBuf = Buffer.from(new SharedArrayBuffer(Math.max(end - start, RANGE_MAX + 1024 * 1024)));
          data = await repo.readPack(pack, { offset: start, length: end - start }, readBuf);
          // a backend that read into memory of its own: into the shared buffer
          if (data.buffer !== readBuf.buffer) data = readBuf.subarray(0, data.copy(readBuf));
        } catch (err) {
          if (err instanceof MeshbackError && err.code === 'NO_SPACE') throw err;
          // a passing failure (connection, timeout, 5xx) that outlasted the storage stack's retries:
          // the store is unreachable, the data not damaged; the restore stops with it (exit 7)
          // instead of failing every file of the pack as damaged (exit 4, one line per file)
          if (isRetryable(err)) throw err;
          readErr = `pack ${pack} cannot be read: ${err instanceof Error ? err.message : String(err)}`;
        }
        if (data === undefined) {
          await parallel(group, WRITES_AT_ONCE, (need) => place(pack, need, undefined, readErr, fromParity));
          continue;
        }
        // the group goes to the threads in batches of at most DECODE_BATCH raw bytes; a batch's blobs
        // are written as they come back, WRITES_AT_ONCE at a time, while the next batch decodes, and
        // each decoded blob's memory is freed once every file that wants it has it: at most two
        // batches of decoded bytes per reader are held at once
        const batches: Promise<void>[] = [];
        let failure: { err: unknown } | undefined;
        try {
          let b = 0;
          while (b < group.length) {
            let e = b + 1;
            let raw = group[b]!.rawLength;
            while (e < group.length && raw + group[e]!.rawLength <= DECODE_BATCH) raw += group[e++]!.rawLength;
            const batch = group.slice(b, e);
            b = e;
            const blobs = new BlobList(batch.length);
            for (const [k, need] of batch.entries()) blobs.set(k, need.offset - start, need.length, need.rawLength, index.entryId(need.entry));
            const slots = new Semaphore(WRITES_AT_ONCE);
            const writes: Promise<void>[] = [];
            try {
              await threads.decode(pack, 'chunk', readBuf!.buffer as SharedArrayBuffer, data.length, blobs, (k, plain, fail) => {
                const w = (async () => {
                  await slots.acquire();
                  try {
                    await place(pack, batch[k]!, plain, fail?.message ?? undefined, fromParity);
                  } finally {
                    slots.release();
                    if (plain !== undefined) free(plain);
                  }
                })();
                // handled at once (settleAll reports it after the batch is decoded): a write that fails
                // before then is no unhandled rejection
                w.catch(() => undefined);
                writes.push(w);
              });
            } finally {
              const written = settleAll(writes);
              // handled at once too: it is awaited only after the next batch is decoded
              written.catch(() => undefined);
              batches.push(written);
            }
            // the batch before this one is written before the next one decodes
            if (batches.length > 1) await batches[batches.length - 2];
          }
        } catch (err) {
          failure = { err };
        }
        // every batch's writes end before the restore goes on or fails: none is left unawaited
        const settled = await Promise.allSettled(batches);
        if (failure !== undefined) throw failure.err;
        const bad = settled.find((r) => r.status === 'rejected');
        if (bad !== undefined) throw bad.reason;
      }
    } finally {
      if (readBuf !== undefined) readBufs.push(readBuf);
    }
  });
}

/** Phase 4 (--verify): re-reads a restored file from stable storage and compares it with the snapshot. */
async function verifyFile(repo: RestoreRepo, target: RestoreTarget, st: FileState): Promise<string | undefined> {
  const r = await target.readBack(st.file.rel);
  try {
    if (r.size !== st.meta.size) return `size on disk is ${r.size}, snapshot says ${st.meta.size}`;
    let off = 0;
    let buf = Buffer.allocUnsafe(1024 * 1024);
    for (const c of st.content ?? []) {
      let len: number;
      if (c.startsWith(HOLE_PREFIX)) len = Number(c.slice(HOLE_PREFIX.length));
      else {
        const e = repo.index.entryOfHex(c);
        if (e < 0) return `chunk ${c.slice(0, 16)} is not in the index`;
        len = repo.index.rawLengthOf(e);
      }
      if (buf.length < len && !c.startsWith(HOLE_PREFIX)) buf = Buffer.allocUnsafe(len);
      if (c.startsWith(HOLE_PREFIX)) {
        // holes must read back as zeros
        let done = 0;
        while (done < len) {
          const step = Math.min(buf.length, len - done);
          const n = await r.read(buf, 0, step, off + done);
          if (n !== step) return `short read at offset ${off + done}`;
          for (let i = 0; i < step; i++) if (buf[i] !== 0) return `bytes at offset ${off + done + i} should be zero`;
          done += step;
        }
      } else {
        let got = 0;
        while (got < len) {
          const n = await r.read(buf, got, len - got, off + got);
          if (n === 0) break;
          got += n;
        }
        if (got !== len) return `short read at offset ${off}`;
        if (!idEquals(repo.chunkId(buf.subarray(0, len)), Buffer.from(c, 'hex'))) return `bytes ${off}..${off + len} differ from the snapshot`;
      }
      off += len;
    }
    return undefined;
  } finally {
    await r.close();
  }
}
