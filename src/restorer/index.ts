/**
 * restorer: writes a snapshot (or part of it) into a target directory, with its metadata,
 * and proves what it wrote.
 *
 * Safety: every path is built from validated single components under the target; each
 * directory component is created by the restore or checked to be a real directory (a
 * symlink or file in its way is removed, never followed); files are created fresh with
 * O_EXCL|O_NOFOLLOW after removing whatever was there. So nothing is written outside the
 * target, whatever the snapshot holds.
 *
 * Verification: each chunk is authenticated (GCM) and re-hashed against its id before it is
 * written; a chunk that fails is never written, and the files that need it are removed and
 * reported. With `verify`, each file is synced, read back from disk and compared chunk by
 * chunk with the snapshot.
 *
 * Parity: when chunks of a pack cannot be read or fail verification, and the pack has a
 * parity file, the pack is rebuilt in memory (verified against its name) and the chunks are
 * taken from the rebuilt copy; a warning says so. The repository itself is not changed
 * ('meshback repair packs' does that).
 */
import { createHmac } from 'node:crypto';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { constants as fsc, promises as fsp } from 'node:fs';
import { promisify } from 'node:util';
import { idEquals } from '../crypto/index.ts';
import { IntegrityError, MeshbackError, NoSpaceError, UsageError, errnoCode, errMessage } from '../errors/index.ts';
import type { EventSink } from '../events/index.ts';
import { nullSink } from '../events/index.ts';
import { getIfExists, rebuildFromParity } from '../content/parity.ts';
import type { Repository } from '../repository/index.ts';
import { HOLE_PREFIX, displayName, linkTargetBytes, nodeNameBytes } from '../snapshot/tree.ts';
import type { Node } from '../snapshot/tree.ts';
import { parallel } from '../util/parallel.ts';

const execFileP = promisify(execFile);

export interface RestoreOptions {
  snapshot: string;
  target: string;
  includes?: string[];
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

/** What a restored file needs once its writes are planned: no names, no chunk list (the heap stays small, so GC stays cheap) */
interface FileMeta {
  mode: number;
  uid: number;
  gid: number;
  mtime: string;
  size: number;
  /** kept for --verify only */
  content?: string[];
}

interface FileState {
  rel: Buffer;
  meta: FileMeta;
  remaining: number; // bytes still to write
  failed?: string;
  /** the open descriptor, shared by concurrent writers */
  fd?: Promise<number>;
  /** the file exists at its path, created by this restore (a reopen must not create it again) */
  created: boolean;
  busy: number;
  lastUse: number;
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

const SLASH = Buffer.from('/');
const MAX_OPEN = 128;
/** packs read at once, and blobs of one pack decoded at once (decryption, zstd and hashing run on the thread pool) */
const PACKS_AT_ONCE = 2;
const BLOBS_AT_ONCE = 4;
/** blobs of one pack range in flight at once (small ones decode on the main thread; file opens overlap) */
const WRITES_AT_ONCE = 16;
/** longest pack range read at once */
const RANGE_MAX = 16 * 1024 * 1024;
/** writes up to this size are cheaper as one synchronous call than as a thread-pool round trip */
const SYNC_WRITE_MAX = 64 * 1024;

const openP = (path: Buffer, flags: number, mode?: number): Promise<number> =>
  new Promise((resolve, reject) => fs.open(path, flags, mode, (err, fd) => (err !== null ? reject(err) : resolve(fd))));
const writeP = (fd: number, data: Buffer, off: number, len: number, pos: number): Promise<number> =>
  new Promise((resolve, reject) => fs.write(fd, data, off, len, pos, (err, n) => (err !== null ? reject(err) : resolve(n))));
const closeP = (fd: number): Promise<void> => new Promise((resolve, reject) => fs.close(fd, (err) => (err !== null && err !== undefined ? reject(err) : resolve())));

export async function restore(repo: Repository, opts: RestoreOptions): Promise<RestoreResult> {
  const t0 = performance.now();
  const emit = opts.events ?? nullSink;
  const isRoot = process.getuid?.() === 0;
  const ref = await repo.findSnapshot(opts.snapshot);
  const res: RestoreResult = {
    snapshotId: ref.id, files: 0, dirs: 0, symlinks: 0, others: 0, hardlinks: 0, bytes: 0, filesVerified: 0, bytesVerified: 0,
    filesReread: 0, bytesReread: 0, errors: [], damaged: [], rebuiltFromParity: [], duration: 0,
  };

  // A snapshot of one directory restores that directory's contents into the target.
  const view = await repo.rootView(ref.snapshot);
  const topNodes = view.nodes;
  const rootDirNode = view.rootDir;

  const includes = (opts.includes ?? []).map((p) => Buffer.from(p.replace(/^\/+/, '').replace(/\/+$/, ''), 'utf8')).filter((b) => b.length > 0);
  const matched = new Set<number>();
  /** 'all' = restore everything below; 'some' = an ancestor of an include; 'none' */
  const selection = (rel: Buffer): 'all' | 'some' | 'none' => {
    if (includes.length === 0) return 'all';
    let some = false;
    for (let i = 0; i < includes.length; i++) {
      const inc = includes[i]!;
      if (rel.equals(inc) || (rel.length > inc.length && rel[inc.length] === 0x2f && rel.subarray(0, inc.length).equals(inc))) {
        matched.add(i);
        return 'all';
      }
      if (inc.length > rel.length && inc[rel.length] === 0x2f && inc.subarray(0, rel.length).equals(rel)) some = true;
    }
    return some ? 'some' : 'none';
  };

  // ---- plan: walk the trees
  const dirs: Item[] = [];
  const files: Item[] = [];
  const links: Item[] = [];
  const others: Item[] = [];
  const walk = async (nodes: Node[], prefix: Buffer | undefined, all: boolean): Promise<void> => {
    for (const n of nodes) {
      const name = nodeNameBytes(n);
      const rel = prefix === undefined ? name : Buffer.concat([prefix, SLASH, name]);
      const sel = all ? 'all' : selection(rel);
      if (sel === 'none') continue;
      if (n.type === 'dir') {
        dirs.push({ rel, node: n });
        if (n.subtree === undefined) throw new IntegrityError(`directory ${displayName(rel)} has no subtree in the snapshot`);
        await walk((await repo.loadTree(n.subtree)).nodes, rel, sel === 'all');
      } else if (sel === 'all') {
        if (n.type === 'file') files.push({ rel, node: n });
        else if (n.type === 'symlink') links.push({ rel, node: n });
        else others.push({ rel, node: n });
      }
    }
  };
  await walk(topNodes, undefined, false);
  for (let i = 0; i < includes.length; i++) {
    if (!matched.has(i)) throw new MeshbackError('NOT_FOUND', `--include ${displayName(includes[i]!)} matches nothing in snapshot ${ref.id.slice(0, 8)}: see 'meshback ls ${ref.id.slice(0, 8)}'`);
  }

  // ---- target
  const target = Buffer.from(opts.target);
  const targetFull = (err: unknown): NoSpaceError => new NoSpaceError(`the restore target ${opts.target}`, err, 'free some space there (or restore into another directory) and run the restore again; the repository was not changed');
  try {
    await fsp.mkdir(target, { recursive: true });
    const st = await fsp.stat(target);
    if (!st.isDirectory()) throw new UsageError(`restore target ${opts.target} is not a directory`);
  } catch (err) {
    if (err instanceof MeshbackError) throw err;
    if (errnoCode(err) === 'ENOSPC' || errnoCode(err) === 'EDQUOT') throw targetFull(err);
    throw new MeshbackError('TARGET', `cannot use restore target ${opts.target}: ${errMessage(err)}`);
  }
  const absOf = (rel: Buffer): Buffer => Buffer.concat([target, SLASH, rel]);
  const fatalFs = (err: unknown, what: Buffer): never => {
    if (errnoCode(err) === 'ENOSPC' || errnoCode(err) === 'EDQUOT') throw targetFull(err);
    throw new MeshbackError('TARGET', `cannot restore ${displayName(what)}: ${errMessage(err)}`, { cause: err });
  };
  const fileError = (rel: Buffer, message: string): void => {
    res.errors.push({ path: displayName(rel), message });
    emit({ type: 'item-error', path: displayName(rel), message });
  };

  /** Removes whatever is at abs (file, symlink, or directory tree), never following links. */
  const clear = async (abs: Buffer): Promise<void> => {
    try {
      const st = await fsp.lstat(abs);
      if (st.isDirectory()) await fsp.rm(abs, { recursive: true, force: true });
      else await fsp.unlink(abs);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  };

  // ---- directories, parents first
  for (const d of dirs) {
    const abs = absOf(d.rel);
    try {
      const st = await fsp.lstat(abs).catch((err: unknown) => {
        if (errnoCode(err) === 'ENOENT') return undefined;
        throw err;
      });
      if (st === undefined || !st.isDirectory()) {
        if (st !== undefined) await fsp.unlink(abs);
        await fsp.mkdir(abs, { mode: 0o700 });
      }
    } catch (err) {
      fatalFs(err, d.rel);
    }
    res.dirs++;
  }

  // ---- files: create, then fill pack by pack
  const states: FileState[] = [];
  const byPack = new Map<number, BlobNeed[]>();
  const blobNeeds = new Map<number, BlobNeed>(); // index entry number -> need
  const hardlinkFirst = new Map<string, number>();
  const hardlinkLater: { item: Item; first: number }[] = [];
  let totalBytes = 0;
  for (const f of files) {
    const n = f.node;
    if (n.nlink > 1) {
      const k = `${n.dev}:${n.inode}`;
      const first = hardlinkFirst.get(k);
      if (first !== undefined) {
        hardlinkLater.push({ item: f, first });
        continue;
      }
      hardlinkFirst.set(k, states.length);
    }
    const fi = states.length;
    const st: FileState = { rel: f.rel, meta: { mode: n.mode, uid: n.uid, gid: n.gid, mtime: n.mtime, size: n.size ?? 0, ...(opts.verify === true && n.content !== undefined ? { content: n.content } : {}) }, remaining: 0, created: false, busy: 0, lastUse: 0, finalized: false };
    states.push(st);
    let off = 0;
    for (const c of n.content ?? []) {
      if (c.startsWith(HOLE_PREFIX)) {
        off += Number(c.slice(HOLE_PREFIX.length));
        continue;
      }
      const e = repo.store.index.entryOf(Buffer.from(c, 'hex'));
      if (e < 0) {
        st.failed = `its chunk ${c.slice(0, 16)} is missing from the repository index`;
        break;
      }
      const raw = repo.store.index.rawLengthOf(e);
      let need = blobNeeds.get(e);
      if (need === undefined) {
        need = { entry: e, offset: repo.store.index.offsetOf(e), length: repo.store.index.lengthOf(e), rawLength: raw, targets: [] };
        blobNeeds.set(e, need);
        const pn = repo.store.index.packOf(e);
        let list = byPack.get(pn);
        if (list === undefined) byPack.set(pn, (list = []));
        list.push(need);
      }
      need.targets.push({ file: fi, offset: off });
      off += raw;
      st.remaining += raw;
    }
    if (st.failed === undefined && off !== (n.size ?? 0)) st.failed = `its chunks add up to ${off} bytes but the file has ${n.size ?? 0}`;
    totalBytes += n.size ?? 0;
  }

  // the plan holds what the restore needs: the trees would only make every GC slower
  repo.dropTreeCache();
  files.length = 0;
  blobNeeds.clear();

  let doneBytes = 0;
  let doneFiles = 0;
  const openFiles = new Set<FileState>();
  let useClock = 0;
  const tick = setInterval(() => emit({ type: 'progress', op: 'restore', files: doneFiles, bytes: doneBytes, totalFiles: states.length, totalBytes }), 250);

  try {
    /**
     * Opens st's file for writing. The first open creates it (O_EXCL: a fresh restore needs no
     * lookup first; whatever is in the way is removed and the create retried) at its final
     * size, so that skipped zero blocks and holes stay holes.
     */
    async function openFile(st: FileState): Promise<number> {
      const abs = absOf(st.rel);
      if (st.created) return openP(abs, fsc.O_WRONLY | fsc.O_NOFOLLOW);
      const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;
      let fd: number;
      try {
        fd = await openP(abs, flags, 0o600);
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') throw err;
        await clear(abs);
        fd = await openP(abs, flags, 0o600);
      }
      st.created = true;
      try {
        const size = st.meta.size;
        if (size > 0) fs.ftruncateSync(fd, size);
      } catch (err) {
        fs.closeSync(fd);
        throw err;
      }
      return fd;
    }

    /** An open descriptor for st, shared by concurrent writers; busy-- when done with it. */
    function acquireFd(st: FileState): Promise<number> {
      st.lastUse = ++useClock;
      st.busy++;
      if (st.fd === undefined) {
        if (openFiles.size >= MAX_OPEN) {
          let oldest: FileState | undefined;
          for (const o of openFiles) if (o.busy === 0 && (oldest === undefined || o.lastUse < oldest.lastUse)) oldest = o;
          if (oldest !== undefined) void closeFd(oldest).catch(() => undefined);
        }
        st.fd = openFile(st);
        openFiles.add(st);
      }
      return st.fd;
    }
    async function closeFd(st: FileState): Promise<void> {
      const p = st.fd;
      if (p === undefined) return;
      st.fd = undefined;
      openFiles.delete(st);
      await closeP(await p);
    }

    /** Applies st's metadata through its open descriptor (no path lookups) and closes it. */
    async function finalize(st: FileState): Promise<void> {
      if (st.finalized) return;
      st.finalized = true;
      if (st.failed !== undefined) {
        await closeFd(st).catch(() => undefined);
        return;
      }
      try {
        const fd = await (st.fd ?? acquireFd(st).finally(() => st.busy--));
        const n = st.meta;
        // cheap syscalls on a descriptor: synchronous beats a thread-pool round trip
        if (isRoot) fs.fchownSync(fd, n.uid, n.gid);
        fs.fchmodSync(fd, n.mode);
        const t = timeArg(n.mtime);
        fs.futimesSync(fd, t, t);
        await closeFd(st);
      } catch (err) {
        fatalFs(err, st.rel);
      }
      res.files++;
      res.bytes += st.meta.size;
      res.filesVerified++;
      res.bytesVerified += st.meta.size;
      doneFiles++;
    }

    // a failed file gets no more writes; its handle is closed and the file removed at the end
    const failFile = (fi: number, message: string): void => {
      const st = states[fi]!;
      if (st.failed === undefined) st.failed = message;
    };

    // files with nothing to write (empty, all holes, or failed at planning time)
    await parallel(states.filter((st) => st.remaining === 0 || st.failed !== undefined), 16, (st) => finalize(st));

    const rebuildPack = async (pack: string): Promise<Buffer | undefined> => {
      const r = await rebuildFromParity(repo.backend, pack, await getIfExists(repo.backend, { type: 'pack', name: pack }).catch(() => undefined));
      if (r.status !== 'repaired') return undefined;
      res.rebuiltFromParity.push(pack);
      emit({ type: 'warning', message: `pack ${pack} is damaged: its chunks were rebuilt from its parity file (${r.badDataBlocks} of ${r.dataBlocks} blocks); run 'meshback repair packs' to repair the repository` });
      return r.data;
    };

    // large blobs decoded at once (each holds its sealed, decrypted and decompressed bytes)
    let decoding = 0;
    const decodeWaiters: (() => void)[] = [];
    const decodeSlot = async (): Promise<void> => {
      while (decoding >= BLOBS_AT_ONCE) await new Promise<void>((r) => decodeWaiters.push(r));
      decoding++;
    };
    const decodeDone = (): void => {
      decoding--;
      decodeWaiters.shift()?.();
    };

    const index = repo.store.index;
    const packs = [...byPack.entries()];
    // one read buffer per pack reader, reused for every range (fresh buffers per read made
    // V8 collect garbage far more often)
    const readBufs: Buffer[] = [];
    await parallel(packs, PACKS_AT_ONCE, async ([pn, needs]) => {
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
            if (readBuf === undefined || readBuf.length < end - start) readBuf = Buffer.allocUnsafeSlow(Math.max(end - start, RANGE_MAX + 1024 * 1024));
            data = await repo.backend.get({ type: 'pack', name: pack }, { offset: start, length: end - start }, readBuf);
          } catch (err) {
            if (err instanceof MeshbackError && err.code === 'NO_SPACE') throw err;
            readErr = `pack ${pack} cannot be read: ${errMessage(err)}`;
          }
          // blobs of a group decode concurrently (large ones on the thread pool) and are written as they come
          await parallel(group, WRITES_AT_ONCE, async (need) => {
            const live = need.targets.filter((t) => states[t.file]!.failed === undefined);
            if (live.length === 0) return;
            let plain: Buffer | undefined;
            let msg = readErr;
            if (data !== undefined) {
              const large = need.rawLength > SYNC_WRITE_MAX;
              if (large) await decodeSlot();
              try {
                plain = await repo.store.decodeBlob(data.subarray(need.offset - start, need.offset - start + need.length), index.entryId(need.entry), need.rawLength, pack, 'chunk');
              } catch (err) {
                if (!(err instanceof IntegrityError)) throw err;
                msg = err.message;
              } finally {
                if (large) decodeDone();
              }
            }
            if (plain === undefined) {
              const whole = await fromParity();
              if (whole !== undefined && need.offset + need.length <= whole.length) {
                try {
                  plain = await repo.store.decodeBlob(whole.subarray(need.offset, need.offset + need.length), index.entryId(need.entry), need.rawLength, pack, 'chunk');
                } catch (err) {
                  if (!(err instanceof IntegrityError)) throw err;
                }
              }
            }
            for (const t of live) {
              const st = states[t.file]!;
              if (plain === undefined) {
                failFile(t.file, msg ?? 'data unavailable');
                continue;
              }
              try {
                await writeSparse(await acquireFd(st), plain, t.offset);
              } catch (err) {
                fatalFs(err, st.rel);
              } finally {
                st.busy--;
              }
              st.remaining -= plain.length;
              doneBytes += plain.length;
              if (st.remaining === 0) await finalize(st);
            }
          });
        }
      } finally {
        if (readBuf !== undefined) readBufs.push(readBuf);
      }
    });

    for (const o of [...openFiles]) await closeFd(o);

    // damaged files: remove them so that no wrong or partial content is left behind
    for (const st of states) {
      if (st.failed !== undefined) {
        await fsp.unlink(absOf(st.rel)).catch(() => undefined);
        res.damaged.push(displayName(st.rel));
        fileError(st.rel, `not restored: ${st.failed}`);
      } else if (!st.finalized) {
        throw new MeshbackError('INTERNAL', `file ${displayName(st.rel)} was not completely written (${st.remaining} bytes left): this is a bug`);
      }
    }

    // hard links to files restored above
    for (const h of hardlinkLater) {
      const first = states[h.first]!;
      const abs = absOf(h.item.rel);
      if (first.failed !== undefined) {
        res.damaged.push(displayName(h.item.rel));
        fileError(h.item.rel, `not restored: ${first.failed}`);
        continue;
      }
      try {
        await clear(abs);
        await fsp.link(absOf(first.rel), abs);
      } catch (err) {
        fatalFs(err, h.item.rel);
      }
      res.hardlinks++;
      res.files++;
    }

    // symlinks (created as links; never followed)
    for (const l of links) {
      const abs = absOf(l.rel);
      try {
        await clear(abs);
        await fsp.symlink(linkTargetBytes(l.node), abs);
        await applyMeta(abs, l.node, isRoot, true);
      } catch (err) {
        fatalFs(err, l.rel);
      }
      res.symlinks++;
    }

    // fifos and device nodes
    for (const o of others) {
      const abs = absOf(o.rel);
      try {
        await clear(abs);
        if (o.node.type === 'fifo') await execFileP('mkfifo', ['--', abs.toString('latin1')], { encoding: 'buffer' });
        else if ((o.node.type === 'chardev' || o.node.type === 'blockdev') && isRoot) {
          const rdev = o.node.rdev ?? 0;
          const major = (rdev >> 8) & 0xfff;
          const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
          await execFileP('mknod', ['--', abs.toString('latin1'), o.node.type === 'chardev' ? 'c' : 'b', String(major), String(minor)]);
        } else {
          fileError(o.rel, `${o.node.type} not restored (not supported${o.node.type !== 'socket' ? ' without root' : ''})`);
          continue;
        }
        await applyMeta(abs, o.node, isRoot, false);
        res.others++;
      } catch (err) {
        fileError(o.rel, `${o.node.type} not restored: ${errMessage(err)}`);
      }
    }

    // --verify: sync and re-read every restored file, compare chunk by chunk
    if (opts.verify === true) {
      await parallel(states.filter((s) => s.failed === undefined), 2, async (st) => {
        const problem = await verifyFile(repo, absOf(st.rel), st.meta);
        if (problem !== undefined) {
          res.damaged.push(displayName(st.rel));
          fileError(st.rel, `verification failed: ${problem}`);
        } else {
          res.filesReread++;
          res.bytesReread += st.meta.size;
        }
        emit({ type: 'progress', op: 'verify', files: res.filesReread, bytes: res.bytesReread, totalFiles: states.length, totalBytes });
      });
    }

    // directory metadata last, deepest first (writing into a directory changes its mtime)
    const dirMetas: Item[] = [...dirs].reverse();
    if (rootDirNode !== undefined && includes.length === 0) dirMetas.push({ rel: Buffer.alloc(0), node: rootDirNode });
    for (const d of dirMetas) {
      const abs = d.rel.length === 0 ? target : absOf(d.rel);
      try {
        await applyMeta(abs, d.node, isRoot, false);
      } catch (err) {
        fatalFs(err, d.rel);
      }
    }
  } finally {
    clearInterval(tick);
    // on an error midway, close what is still open (the error is what gets reported)
    for (const o of openFiles) await o.fd?.then((fd) => closeP(fd)).catch(() => undefined);
  }
  emit({ type: 'progress', op: 'restore', files: doneFiles, bytes: doneBytes, totalFiles: states.length, totalBytes });
  res.duration = (performance.now() - t0) / 1000;
  return res;
}

/** Seconds for fs.utimes. Node treats a negative number as "now", but accepts a numeric string. */
function timeArg(ns: string): number | string {
  const b = BigInt(ns);
  const s = Number(b / 1000000000n) + Number(b % 1000000000n) / 1e9;
  return s < 0 ? String(s) : s;
}

async function applyMeta(abs: Buffer, n: Node, isRoot: boolean, isLink: boolean): Promise<void> {
  if (isRoot) {
    if (isLink) await fsp.lchown(abs, n.uid, n.gid);
    else await fsp.chown(abs, n.uid, n.gid);
  }
  if (!isLink) await fsp.chmod(abs, n.mode);
  const t = timeArg(n.mtime);
  if (isLink) await fsp.lutimes(abs, t, t);
  else await fsp.utimes(abs, t, t);
}

/** Re-reads a restored file from disk (after fsync) and compares it with the snapshot. */
async function verifyFile(repo: Repository, abs: Buffer, n: { size?: number; content?: string[] }): Promise<string | undefined> {
  const fh = await fsp.open(abs, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  try {
    await fh.sync();
    const st = await fh.stat();
    if (st.size !== (n.size ?? 0)) return `size on disk is ${st.size}, snapshot says ${n.size ?? 0}`;
    let off = 0;
    let buf = Buffer.allocUnsafe(1024 * 1024);
    for (const c of n.content ?? []) {
      let len: number;
      if (c.startsWith(HOLE_PREFIX)) len = Number(c.slice(HOLE_PREFIX.length));
      else {
        const e = repo.store.index.entryOf(Buffer.from(c, 'hex'));
        if (e < 0) return `chunk ${c.slice(0, 16)} is not in the index`;
        len = repo.store.index.rawLengthOf(e);
      }
      if (buf.length < len && !c.startsWith(HOLE_PREFIX)) buf = Buffer.allocUnsafe(len);
      if (c.startsWith(HOLE_PREFIX)) {
        // holes must read back as zeros
        let done = 0;
        while (done < len) {
          const step = Math.min(buf.length, len - done);
          const { bytesRead } = await fh.read(buf, 0, step, off + done);
          if (bytesRead !== step) return `short read at offset ${off + done}`;
          for (let i = 0; i < step; i++) if (buf[i] !== 0) return `bytes at offset ${off + done + i} should be zero`;
          done += step;
        }
      } else {
        let got = 0;
        while (got < len) {
          const { bytesRead } = await fh.read(buf, got, len - got, off + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        if (got !== len) return `short read at offset ${off}`;
        const h = createHmac('sha256', repo.key.idKey).update(buf.subarray(0, len)).digest();
        if (!idEquals(h, Buffer.from(c, 'hex'))) return `bytes ${off}..${off + len} differ from the snapshot`;
      }
      off += len;
    }
    return undefined;
  } finally {
    await fh.close();
  }
}

const ZERO_BLOCK = 64 * 1024;
const zeros = Buffer.alloc(ZERO_BLOCK);

/**
 * Writes data at pos, skipping aligned all-zero blocks: the file was created at its full
 * size (all holes), so skipped blocks stay holes and sparse files are restored sparse.
 */
async function writeSparse(fd: number, data: Buffer, pos: number): Promise<void> {
  let i = 0;
  const n = data.length;
  while (i < n) {
    // first block boundary (in file offsets) at or after pos + i
    const blockEnd = Math.min(n, Math.ceil((pos + i + 1) / ZERO_BLOCK) * ZERO_BLOCK - pos);
    const len = blockEnd - i;
    if (len === ZERO_BLOCK && zeros.equals(data.subarray(i, blockEnd))) {
      i = blockEnd;
      continue;
    }
    // extend over following non-zero blocks
    let j = blockEnd;
    while (j < n) {
      const e = Math.min(n, j + ZERO_BLOCK);
      if (e - j === ZERO_BLOCK && zeros.equals(data.subarray(j, e))) break;
      j = e;
    }
    let w = i;
    while (w < j) {
      w += j - w <= SYNC_WRITE_MAX ? fs.writeSync(fd, data, w, j - w, pos + w) : await writeP(fd, data, w, j - w, pos + w);
    }
    i = j;
  }
}
