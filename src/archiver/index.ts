/**
 * archiver: backs up source paths into a snapshot.
 *
 * Walk (main thread, depth first, names in byte order) -> per file: reuse the parent
 * snapshot's content when path, size, mtime, ctime and inode are unchanged; otherwise a
 * chunking worker reads and chunks it -> new chunks are compressed, encrypted and packed by
 * the content store -> one tree blob per directory -> flush packs and index -> snapshot.
 *
 * Per-item failures (an unreadable file) are events, not exceptions: the item is skipped and
 * the snapshot is marked incomplete.
 *
 * Read last (`last`, for the policy presets): some paths are left out of the walk and read only
 * after `last.ready()` resolved, which the caller uses to end what must end before they are read
 * (postgres: pg_backup_stop, after which pg_wal holds all the WAL the backup needs); ready() may
 * also hand back small files to add (postgres: backup_label). The trees of the directories above
 * those paths are held in memory, not saved, until the paths are read, so nothing is saved twice.
 */
import type { BigIntStats } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MeshbackError, UsageError, errnoCode, errMessage } from '../errors/index.ts';
import type { EventSink } from '../events/index.ts';
import { nullSink, reportOp } from '../events/index.ts';
import { renewAfter } from '../repository/object-lock.ts';
import type { RenewResult } from '../repository/object-lock.ts';
import type { Repository } from '../repository/index.ts';
import type { Snapshot, SnapshotSummary } from '../snapshot/manifest.ts';
import { HOLE_PREFIX, displayName, encodeName, encodeTree, nodeNameBytes } from '../snapshot/tree.ts';
import type { Node, NodeType, Tree } from '../snapshot/tree.ts';
import { BLOB_DATA } from '../content/index-table.ts';
import { contentId } from '../crypto/index.ts';
import { Excluder } from './glob.ts';
import { FileReader } from './reader.ts';
import type { FileOutcome } from './reader.ts';
import { localSource } from '../source/index.ts';
import type { Source } from '../source/index.ts';
import { Semaphore } from '../util/semaphore.ts';
import { memoryPlan } from '../util/memory.ts';

/** What a backup uses of a repository: snapshots to find its parent and save itself, trees, the content store it adds chunks to, the id key for small files. */
export type BackupRepo = Pick<Repository, 'chunker' | 'findSnapshot' | 'loadTree' | 'saveTree' | 'saveSnapshot' | 'store' | 'key' | 'backend' | 'config' | 'index' | 'listSnapshots'>;

export interface BackupOptions {
  paths: string[];
  tags?: string[];
  host?: string;
  excludes?: string[];
  /** snapshot id to compare with; undefined = latest snapshot of same host and paths; null = none */
  parent?: string | null;
  events?: EventSink;
  /** walk the source first to know totals (for ETA); runs concurrently */
  scan?: boolean;
  /** what the paths are read from (default: the local filesystem) */
  source?: Source;
  /** absolute paths under `paths` the walk leaves out (e.g. a database's lock file) */
  omit?: string[];
  /** paths read after everything else, once `ready` resolved (see the module comment) */
  last?: LastRead;
}

/** A file that is not read from the source: its content is given (small: it is held in memory). */
export interface ExtraFile {
  /** absolute; its directory must be one of `paths` or a directory above one of `last.paths` */
  path: string;
  content: Buffer;
  /** default 0o600 */
  mode?: number;
}

export interface LastRead {
  /** absolute paths under `paths` (not equal to one), left out of the walk and read after `ready` */
  paths: string[];
  /** awaited once the walk has read everything else; its files are added to the snapshot (replacing an entry of the same name) */
  ready(): Promise<ExtraFile[]>;
}

export interface BackupResult {
  id: string;
  snapshot: Snapshot;
  errors: { path: string; message: string }[];
  changedDuringRead: string[];
  /** Object Lock: the retentions extended for what the new snapshot uses (absent without Object Lock) */
  objectLock?: RenewResult;
}

const MAX_INFLIGHT_FILES = 512;
const MAX_INFLIGHT_BYTES = 256 * 1024 * 1024;

/** backup, between its op-start and summary events. */
export function backup(repo: BackupRepo, opts: BackupOptions): Promise<BackupResult> {
  return reportOp(opts.events ?? nullSink, 'backup', { paths: opts.paths }, () => runBackup(repo, opts));
}

async function runBackup(repo: BackupRepo, opts: BackupOptions): Promise<BackupResult> {
  const started = new Date();
  const t0 = performance.now();
  const emit = opts.events ?? nullSink;
  const source = opts.source ?? localSource;
  if (opts.paths.length === 0) throw new UsageError('nothing to back up: give at least one PATH');
  const paths = opts.paths.map((p) => path.resolve(p));
  const names = new Set<string>();
  for (const p of paths) {
    const b = path.basename(p) || '/';
    if (names.has(b)) throw new UsageError(`two paths share the name ${JSON.stringify(b)}: back them up in separate snapshots`);
    names.add(b);
    try {
      await source.lstat(Buffer.from(p));
    } catch (err) {
      // a path that exists but cannot be read is an item error below (snapshot incomplete)
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') throw new MeshbackError('NOT_FOUND', `cannot back up ${p}: it does not exist`);
    }
  }
  const host = opts.host ?? os.hostname();

  let parentRoot: Tree | undefined;
  let parentId: string | undefined;
  if (opts.parent !== null) {
    try {
      const ref = await repo.findSnapshot(opts.parent ?? 'latest', opts.parent === undefined ? { host, paths } : undefined);
      parentId = ref.id;
      parentRoot = await repo.loadTree(ref.snapshot.tree);
    } catch (err) {
      if (!(err instanceof MeshbackError && err.code === 'NOT_FOUND' && opts.parent === undefined)) throw err;
    }
  }

  const summary: SnapshotSummary = {
    files: 0, dirs: 0, symlinks: 0, others: 0, totalBytes: 0, bytesRead: 0, filesRead: 0, filesUnchanged: 0,
    filesChangedDuringRead: 0, errors: 0, blobsAdded: 0, bytesAdded: 0, bytesStored: 0, duration: 0,
  };
  const errors: { path: string; message: string }[] = [];
  const changedDuringRead: string[] = [];
  const store = repo.store;
  const stats0 = { ...store.stats };
  const excluder = new Excluder(opts.excludes ?? []);
  // paths left out of the walk (omitted, or read last), and the directories above the ones read last
  const key = (b: Buffer | string): string => (typeof b === 'string' ? Buffer.from(b) : b).toString('latin1');
  const lastPaths = (opts.last?.paths ?? []).map((p) => path.resolve(p));
  const skipped = new Set([...(opts.omit ?? []).map((p) => key(path.resolve(p))), ...lastPaths.map(key)]);
  const held = new Map<string, { tree?: Tree; old?: Map<string, Node>; node?: Node }>();
  for (const l of lastPaths) {
    const root = paths.find((p) => l.startsWith(p === '/' ? '/' : `${p}/`));
    if (root === undefined) throw new MeshbackError('INTERNAL', `a path to read last (${l}) is not below a path of the backup`);
    for (let d = path.dirname(l); ; d = path.dirname(d)) {
      held.set(key(d), {});
      if (d === root || d === '/') break;
    }
  }
  const HELD = 'held:';
  const plan = memoryPlan();
  const windowBytes = process.env['MESHBACK_WINDOW_KIB'] !== undefined ? Number(process.env['MESHBACK_WINDOW_KIB']) * 1024 : plan.windowBytes;
  // MESHBACK_CHUNK_THREAD=1: large files chunked on a worker thread (off by default: no gain measured on 2 cores, docs/runtime.md)
  const reader = new FileReader(store, source, repo.chunker(), repo.key.idKey, windowBytes, plan.lanes, process.env['MESHBACK_CHUNK_THREAD'] === '1');

  // progress
  let doneFiles = 0;
  let doneBytes = 0;
  let totalFiles: number | undefined;
  let totalBytes: number | undefined;
  let current: Buffer | undefined; // decoded only when a progress event is emitted
  const tick = setInterval(() => {
    emit({ type: 'progress', op: 'backup', files: doneFiles, bytes: doneBytes, ...(current !== undefined ? { current: displayName(current) } : {}), ...(totalFiles !== undefined ? { totalFiles, totalBytes: totalBytes ?? 0 } : {}) });
  }, 250);
  if (opts.scan === true) {
    void scanTotals(source, paths, excluder, (f, b, done) => {
      emit({ type: 'scan-progress', files: f, bytes: b, done });
      if (done) {
        totalFiles = f;
        totalBytes = b;
      }
    }).catch(() => undefined);
  }

  // bounded in-flight file jobs: by count and by bytes (one file larger than the byte bound runs alone)
  const inflightFiles = new Semaphore(MAX_INFLIGHT_FILES);
  const inflightBytes = new Semaphore(MAX_INFLIGHT_BYTES);
  const acquire = async (size: number): Promise<void> => {
    if (!inflightFiles.tryAcquire()) await inflightFiles.acquire();
    const n = Math.max(1, size);
    if (!inflightBytes.tryAcquire(n)) await inflightBytes.acquire(n);
  };
  const release = (size: number): void => {
    inflightBytes.release(Math.max(1, size));
    inflightFiles.release();
  };

  const hardlinks = new Map<string, Promise<FileOutcome | undefined>>();

  const itemError = (p: Buffer, err: unknown): void => {
    const msg = errMessage(err);
    const disp = displayName(p);
    errors.push({ path: disp, message: msg });
    summary.errors++;
    emit({ type: 'item-error', path: disp, message: msg });
  };

  const nodeFromStat = (nameRaw: Buffer, st: BigIntStats): Node => {
    let type: NodeType;
    if (st.isFile()) type = 'file';
    else if (st.isDirectory()) type = 'dir';
    else if (st.isSymbolicLink()) type = 'symlink';
    else if (st.isFIFO()) type = 'fifo';
    else if (st.isSocket()) type = 'socket';
    else if (st.isCharacterDevice()) type = 'chardev';
    else type = 'blockdev';
    const n: Node = {
      ...encodeName(nameRaw),
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtime: st.mtimeNs.toString(),
      ctime: st.ctimeNs.toString(),
      inode: Number(st.ino),
      dev: Number(st.dev),
      nlink: Number(st.nlink),
    };
    if (type === 'file') n.size = Number(st.size);
    if (type === 'chardev' || type === 'blockdev') n.rdev = Number(st.rdev);
    return n;
  };

  const unchanged = (n: Node, old: Node | undefined): boolean =>
    old !== undefined && old.type === 'file' && old.size === n.size && old.mtime === n.mtime && old.ctime === n.ctime && old.inode === n.inode && old.content !== undefined && old.changed !== true &&
    old.content.every((c) => c.startsWith(HOLE_PREFIX) || store.hasHex(c));

  /** Archives a file node; resolves with false when the file must be left out. */
  const archiveFile = async (abs: Buffer, n: Node, old: Node | undefined): Promise<boolean> => {
    if (unchanged(n, old)) {
      n.content = old!.content!;
      summary.filesUnchanged++;
      doneFiles++;
      doneBytes += n.size ?? 0;
      return true;
    }
    const size = n.size ?? 0;
    let outcome: FileOutcome | undefined;
    const hlKey = n.nlink > 1 ? `${n.dev}:${n.inode}` : undefined;
    const first = hlKey !== undefined ? hardlinks.get(hlKey) : undefined;
    if (first !== undefined) {
      outcome = await first;
    } else {
      await acquire(size);
      const p = reader.read(abs, { ino: n.inode, size, mtime: n.mtime, ctime: n.ctime }).finally(() => release(size));
      if (hlKey !== undefined) hardlinks.set(hlKey, p.catch(() => undefined));
      current = abs;
      outcome = await p;
      if (outcome.ok) {
        summary.filesRead++;
        summary.bytesRead += outcome.bytes;
      }
    }
    if (outcome !== undefined && !outcome.ok && outcome.code === 'ENOENT') {
      // deleted between its lstat and its read (a database's temporary file): left out, as if deleted before the walk
      emit({ type: 'warning', path: displayName(abs), message: 'vanished before it was read: left out of the snapshot' });
      return false;
    }
    if (outcome === undefined || !outcome.ok) {
      itemError(abs, new Error(outcome === undefined ? 'unreadable' : outcome.message));
      return false;
    }
    n.content = outcome.content;
    n.size = outcome.bytes;
    if (outcome.changed) {
      n.changed = true;
      summary.filesChangedDuringRead++;
      changedDuringRead.push(displayName(abs));
      emit({ type: 'warning', path: displayName(abs), message: 'file changed while it was read; the stored copy may mix old and new content' });
    }
    doneFiles++;
    doneBytes += size;
    return true;
  };

  /** `rootLen`: length of the backed-up PATH `abs` lies under, as a string (for exclude patterns with a '/') */
  const archiveNode = async (abs: Buffer, nameRaw: Buffer, st: BigIntStats, old: Node | undefined, rootLen: number): Promise<Node | undefined> => {
    const n = nodeFromStat(nameRaw, st);
    if (n.type === 'dir') {
      summary.dirs++;
      const sub = await archiveDir(abs, old?.type === 'dir' ? old.subtree : undefined, rootLen);
      if (sub === undefined) return undefined;
      n.subtree = sub;
      if (sub.startsWith(HELD)) held.get(sub.slice(HELD.length))!.node = n;
      return n;
    }
    if (n.type === 'symlink') {
      try {
        const target = await source.readlink(abs);
        const e = encodeName(target);
        if (e.nameRaw !== undefined) n.linkTargetRaw = e.nameRaw;
        else n.linkTarget = e.name;
      } catch (err) {
        itemError(abs, err);
        return undefined;
      }
      summary.symlinks++;
      return n;
    }
    if (n.type === 'file') {
      const ok = await archiveFile(abs, n, old);
      if (!ok) return undefined;
      summary.files++;
      summary.totalBytes += n.size ?? 0;
      return n;
    }
    summary.others++;
    return n;
  };

  /** Archives a directory; returns its tree id, or undefined if it could not be read. */
  const archiveDir = async (abs: Buffer, parentTree: string | undefined, rootLen: number): Promise<string | undefined> => {
    let entries: Buffer[];
    try {
      // synchronous metadata calls: on a local volume they cost microseconds, far less than a
      // thread-pool round trip each (measured: a no-change backup of 4000 files spent most of its
      // time waiting for batched async lstat calls)
      entries = source.readdirSync(abs);
    } catch (err) {
      itemError(abs, err);
      return undefined;
    }
    entries.sort(Buffer.compare);
    let oldNodes: Map<string, Node> | undefined;
    if (parentTree !== undefined) {
      try {
        const t = await repo.loadTree(parentTree);
        oldNodes = new Map(t.nodes.map((x) => [nodeNameBytes(x).toString('latin1'), x]));
      } catch {
        oldNodes = undefined; // an unreadable parent tree only costs re-reading
      }
    }
    const nodes: (Node | undefined)[] = new Array<Node | undefined>(entries.length);
    const fileJobs: Promise<void>[] = [];
    const sep = Buffer.from('/');
    for (let i = 0; i < entries.length; i += 64) {
      const batch = entries.slice(i, i + 64);
      const stats = batch.map((name) => {
        const child = Buffer.concat([abs, sep, name]);
        try {
          return { child, name, st: source.lstatSync(child) };
        } catch (err) {
          if (errnoCode(err) !== 'ENOENT') itemError(child, err);
          return undefined;
        }
      });
      for (let k = 0; k < stats.length; k++) {
        const s = stats[k];
        if (s === undefined) continue;
        if (skipped.size > 0 && skipped.has(key(s.child))) continue;
        if (!excluder.empty) {
          // the path is decoded only when a pattern looks at it; the path below PATH skips PATH and its '/'
          const abs = excluder.needsPath ? s.child.toString('utf8') : '';
          if (excluder.excluded(s.name.toString('utf8'), s.st.isDirectory(), abs, abs.slice(rootLen + 1))) continue;
        }
        const idx = i + k;
        const old = oldNodes?.get(s.name.toString('latin1'));
        if (s.st.isDirectory()) {
          nodes[idx] = await archiveNode(s.child, s.name, s.st, old, rootLen);
        } else {
          const job = archiveNode(s.child, s.name, s.st, old, rootLen).then((n) => {
            nodes[idx] = n;
          });
          fileJobs.push(job);
          // let the walk run ahead, but start the bounded queue's jobs in order
          if (inflightFiles.inUse >= MAX_INFLIGHT_FILES) await Promise.race([job, new Promise((r) => setImmediate(r))]);
        }
      }
    }
    await Promise.all(fileJobs);
    const tree: Tree = { nodes: nodes.filter((n): n is Node => n !== undefined) };
    const h = held.size > 0 ? held.get(key(abs)) : undefined;
    if (h !== undefined) {
      // above a path read last: saved once that path is read
      h.tree = tree;
      if (oldNodes !== undefined) h.old = oldNodes;
      return HELD + key(abs);
    }
    return repo.saveTree(encodeTree(tree));
  };

  /** Puts `n` into the held tree of directory `dir` (replacing an entry of the same name). */
  const graft = (dir: string, n: Node): void => {
    const h = held.get(key(dir));
    if (h?.tree === undefined) throw new MeshbackError('INTERNAL', `cannot add ${path.join(dir, n.name)}: ${dir} was not read (it is not above a path read last, or it is unreadable)`);
    const nb = nodeNameBytes(n);
    h.tree.nodes = h.tree.nodes.filter((x) => !nodeNameBytes(x).equals(nb));
    h.tree.nodes.push(n);
  };

  /** The second pass: `last.ready()`, the paths read last, the files given; then the held trees, deepest first. */
  const readLast = async (last: LastRead): Promise<void> => {
    const extra = await last.ready();
    for (const l of lastPaths) {
      const dir = path.dirname(l);
      const root = paths.find((p) => l.startsWith(p === '/' ? '/' : `${p}/`))!;
      // its directory was left out (excluded) or could not be read (an item error already)
      if (held.get(key(dir))?.tree === undefined) continue;
      const abs = Buffer.from(l);
      const nameRaw = Buffer.from(path.basename(l));
      let st: BigIntStats;
      try {
        st = await source.lstat(abs);
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') itemError(abs, err);
        continue;
      }
      const n = await archiveNode(abs, nameRaw, st, held.get(key(dir))?.old?.get(nameRaw.toString('latin1')), root === '/' ? 0 : root.length);
      if (n !== undefined) graft(dir, n);
    }
    for (const f of extra) {
      const abs = path.resolve(f.path);
      const n: Node = { ...encodeName(Buffer.from(path.basename(abs))), type: 'file', mode: f.mode ?? 0o600, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, mtime: `${BigInt(Date.now()) * 1_000_000n}`, ctime: `${BigInt(Date.now()) * 1_000_000n}`, inode: 0, dev: 0, nlink: 1, size: f.content.length, content: await storeContent(f.content) };
      // owned like its directory (a database refuses files it does not own)
      const h = held.get(key(path.dirname(abs)));
      if (h?.node !== undefined) {
        n.uid = h.node.uid;
        n.gid = h.node.gid;
      }
      graft(path.dirname(abs), n);
      summary.files++;
      summary.totalBytes += f.content.length;
    }
    const order = [...held.entries()].sort((a, b) => b[0].length - a[0].length);
    for (const [, h] of order) {
      if (h.tree === undefined || h.node === undefined) continue;
      h.tree.nodes.sort((a, b) => Buffer.compare(nodeNameBytes(a), nodeNameBytes(b)));
      h.node.subtree = await repo.saveTree(encodeTree(h.tree));
    }
  };

  /** Stores `data` as chunks (cut by the repository's chunker); their ids. */
  const storeContent = async (data: Buffer): Promise<string[]> => {
    const chunker = repo.chunker();
    const out: string[] = [];
    for (let pos = 0; pos < data.length; ) {
      const end = chunker.cut(data, pos, data.length);
      const c = data.subarray(pos, end);
      const id = contentId(repo.key.idKey, c);
      if (!store.has(id)) await store.add(BLOB_DATA, id, Buffer.from(c));
      out.push(id.toString('hex'));
      pos = end;
    }
    return out;
  };

  let rootId: string;
  try {
    const oldRoot = parentRoot !== undefined ? new Map(parentRoot.nodes.map((x) => [nodeNameBytes(x).toString('latin1'), x])) : undefined;
    const rootNodes: Node[] = [];
    for (const p of paths) {
      const abs = Buffer.from(p);
      const name = Buffer.from(path.basename(p) || 'root');
      let st: BigIntStats;
      try {
        st = await source.lstat(abs);
      } catch (err) {
        itemError(abs, err);
        continue;
      }
      const n = await archiveNode(abs, name, st, oldRoot?.get(name.toString('latin1')), p.length);
      if (n !== undefined) rootNodes.push(n);
    }
    if (opts.last !== undefined) await readLast(opts.last);
    rootId = await repo.saveTree(encodeTree({ nodes: rootNodes }));
    await store.flush();
  } finally {
    clearInterval(tick);
    await reader.close();
  }
  emit({ type: 'progress', op: 'backup', files: doneFiles, bytes: doneBytes, ...(totalFiles !== undefined ? { totalFiles, totalBytes: totalBytes ?? 0 } : {}) });

  summary.blobsAdded = store.stats.blobsAdded - stats0.blobsAdded;
  summary.bytesAdded = store.stats.bytesAdded - stats0.bytesAdded;
  summary.duration = (performance.now() - t0) / 1000;
  const snap: Snapshot = {
    version: 1,
    time: started.toISOString(),
    endTime: new Date().toISOString(),
    host,
    username: os.userInfo().username,
    paths,
    tags: [...(opts.tags ?? [])].sort(),
    ...(parentId !== undefined ? { parent: parentId } : {}),
    tree: rootId,
    ...(errors.length > 0 ? { incomplete: `${errors.length} item(s) could not be read and are missing from this snapshot` } : {}),
    summary,
    program: 'meshback 0.1.0',
  };
  // snapshot size is counted before it is written; the snapshot file itself is small
  summary.bytesStored = store.stats.bytesStored - stats0.bytesStored;
  const id = await repo.saveSnapshot(snap);
  const renewed = await renewAfter(repo, `snapshot ${id.slice(0, 8)} was saved`, { snapshots: [id], ...(opts.events !== undefined ? { events: opts.events } : {}) });
  return { id, snapshot: snap, errors, changedDuringRead, ...(renewed !== undefined ? { objectLock: renewed } : {}) };
}

async function scanTotals(source: Source, paths: string[], excluder: Excluder, report: (files: number, bytes: number, done: boolean) => void): Promise<void> {
  let files = 0;
  let bytes = 0;
  let last = 0;
  const walk = async (p: string, rootLen: number): Promise<void> => {
    let names: Buffer[];
    try {
      names = await source.readdir(Buffer.from(p));
    } catch {
      return;
    }
    for (const nb of names) {
      const n = nb.toString('utf8');
      const c = p === '/' ? `/${n}` : `${p}/${n}`;
      let st;
      try {
        st = await source.lstat(Buffer.from(c));
      } catch {
        continue;
      }
      if (!excluder.empty && excluder.excluded(n, st.isDirectory(), c, c.slice(rootLen + 1))) continue;
      if (st.isDirectory()) await walk(c, rootLen);
      else if (st.isFile()) {
        files++;
        bytes += Number(st.size);
        if (performance.now() - last > 500) {
          last = performance.now();
          report(files, bytes, false);
        }
      }
    }
  };
  for (const p of paths) {
    let st;
    try {
      st = await source.lstat(Buffer.from(p));
    } catch {
      continue;
    }
    if (st.isDirectory()) await walk(p, p === '/' ? 0 : p.length);
    else if (st.isFile()) {
      files++;
      bytes += Number(st.size);
    }
  }
  report(files, bytes, true);
}
