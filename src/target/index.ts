/**
 * target: where a restore writes. The restorer decides what goes where (its plan, the data it
 * fetched and verified); a RestoreTarget puts it there. Today one kind, a directory on a local
 * filesystem (DirectoryTarget); a PersistentVolumeClaim mounted by a node agent is the next.
 *
 * The calls follow the restore's phases: prepare; directories, parents first; file data (a file
 * is created at its final size on its first write, so skipped zero blocks and holes stay holes),
 * then finishFile with its metadata, or discardFile when its data turned out damaged; hard links,
 * symlinks and special files; verification reads; directory metadata last, deepest first.
 *
 * Safety (DirectoryTarget): every path is built from validated single components under the
 * target; each directory component is created by the restore or checked to be a real directory
 * (a symlink or file in its way is removed, never followed); files are created fresh with
 * O_EXCL|O_NOFOLLOW after removing whatever was there. So nothing is written outside the target,
 * whatever the snapshot holds.
 *
 * Errors: a full target is a NoSpaceError naming it (exit 6); any other failure to write is a
 * MeshbackError of code TARGET naming the path (exit 8).
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { constants as fsc, promises as fsp } from 'node:fs';
import { promisify } from 'node:util';
import { MeshbackError, NoSpaceError, UsageError, errMessage, errnoCode } from '../errors/index.ts';
import { displayName, linkTargetBytes } from '../snapshot/tree.ts';
import type { Node } from '../snapshot/tree.ts';

const execFileP = promisify(execFile);

/** The metadata a file gets once its data is written. */
export interface FileMeta {
  mode: number;
  uid: number;
  gid: number;
  /** nanoseconds since the epoch, decimal */
  mtime: string;
  size: number;
}

/** A file being restored, as the target tracks it (the restorer holds one per file). */
export interface TargetFile {
  /** the path below the target, raw bytes */
  readonly rel: Buffer;
  readonly size: number;
}

export interface RestoreTarget {
  /** human-readable location, for messages */
  readonly location: string;
  /** makes the target usable (creates the directory); fails with a one-line reason */
  prepare(): Promise<void>;
  /** a directory at rel (parents were made first) */
  dir(rel: Buffer): Promise<void>;
  /** a file to be written; nothing happens on disk until its first write */
  file(rel: Buffer, size: number): TargetFile;
  /** writes data at pos of the file; aligned all-zero blocks are skipped (left as holes) */
  write(f: TargetFile, data: Buffer, pos: number): Promise<void>;
  /** the file's data is complete: applies its metadata and closes it */
  finishFile(f: TargetFile, meta: FileMeta): Promise<void>;
  /** the file's data is damaged: closes it and removes what was written */
  discardFile(f: TargetFile): Promise<void>;
  /** a hard link at rel to the finished file `existing` */
  hardlink(existing: Buffer, rel: Buffer): Promise<void>;
  /** a symlink at rel (never followed), with its metadata */
  symlink(rel: Buffer, node: Node): Promise<void>;
  /** a fifo or device node; returns why it was not made, when it was not */
  special(rel: Buffer, node: Node): Promise<string | undefined>;
  /** a directory's metadata (rel empty: the target itself) */
  dirMeta(rel: Buffer, node: Node): Promise<void>;
  /** reads a finished file back from stable storage, for --verify (sync first) */
  readBack(rel: Buffer): Promise<ReadBack>;
  /** closes whatever is still open (after an error midway) */
  close(): Promise<void>;
}

export interface ReadBack {
  size: number;
  read(buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  close(): Promise<void>;
}

const SLASH = Buffer.from('/');
const MAX_OPEN = 128;
/** writes up to this size are cheaper as one synchronous call than as a thread-pool round trip */
const SYNC_WRITE_MAX = 64 * 1024;
const ZERO_BLOCK = 64 * 1024;
const zeros = Buffer.alloc(ZERO_BLOCK);

const openP = (path: Buffer, flags: number, mode?: number): Promise<number> =>
  new Promise((resolve, reject) => fs.open(path, flags, mode, (err, fd) => (err !== null ? reject(err) : resolve(fd))));
const writeP = (fd: number, data: Buffer, off: number, len: number, pos: number): Promise<number> =>
  new Promise((resolve, reject) => fs.write(fd, data, off, len, pos, (err, n) => (err !== null ? reject(err) : resolve(n))));
const closeP = (fd: number): Promise<void> => new Promise((resolve, reject) => fs.close(fd, (err) => (err !== null && err !== undefined ? reject(err) : resolve())));

/** A file of a DirectoryTarget: its descriptor, shared by concurrent writers, in an LRU of open files. */
class DirFile implements TargetFile {
  readonly rel: Buffer;
  readonly size: number;
  fd: Promise<number> | undefined;
  /** the file exists at its path, created by this restore (a reopen must not create it again) */
  created = false;
  busy = 0;
  lastUse = 0;
  constructor(rel: Buffer, size: number) {
    this.rel = rel;
    this.size = size;
  }
}

/** Seconds for fs.utimes. Node treats a negative number as "now", but accepts a numeric string. */
function timeArg(ns: string): number | string {
  const b = BigInt(ns);
  const s = Number(b / 1000000000n) + Number(b % 1000000000n) / 1e9;
  return s < 0 ? String(s) : s;
}

/** A directory on a local filesystem. */
export class DirectoryTarget implements RestoreTarget {
  readonly location: string;
  private readonly root: Buffer;
  private readonly isRoot = process.getuid?.() === 0;
  private readonly open = new Set<DirFile>();
  private clock = 0;

  constructor(dir: string) {
    this.location = dir;
    this.root = Buffer.from(dir);
  }

  private abs(rel: Buffer): Buffer {
    return rel.length === 0 ? this.root : Buffer.concat([this.root, SLASH, rel]);
  }

  private full(err: unknown): NoSpaceError {
    return new NoSpaceError(`the restore target ${this.location}`, err, 'free some space there (or restore into another directory) and run the restore again; the repository was not changed');
  }

  /** A write failure as the error the user sees: a full disk (exit 6), else TARGET (exit 8). */
  private fail(err: unknown, rel: Buffer): never {
    if (err instanceof MeshbackError) throw err;
    if (errnoCode(err) === 'ENOSPC' || errnoCode(err) === 'EDQUOT') throw this.full(err);
    throw new MeshbackError('TARGET', `cannot restore ${displayName(rel)}: ${errMessage(err)}`, { cause: err });
  }

  async prepare(): Promise<void> {
    try {
      await fsp.mkdir(this.root, { recursive: true });
      const st = await fsp.stat(this.root);
      if (!st.isDirectory()) throw new UsageError(`restore target ${this.location} is not a directory`);
    } catch (err) {
      if (err instanceof MeshbackError) throw err;
      if (errnoCode(err) === 'ENOSPC' || errnoCode(err) === 'EDQUOT') throw this.full(err);
      throw new MeshbackError('TARGET', `cannot use restore target ${this.location}: ${errMessage(err)}`);
    }
  }

  /** Removes whatever is at abs (file, symlink, or directory tree), never following links. */
  private async clear(abs: Buffer): Promise<void> {
    try {
      const st = await fsp.lstat(abs);
      if (st.isDirectory()) await fsp.rm(abs, { recursive: true, force: true });
      else await fsp.unlink(abs);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }

  async dir(rel: Buffer): Promise<void> {
    const abs = this.abs(rel);
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
      this.fail(err, rel);
    }
  }

  file(rel: Buffer, size: number): TargetFile {
    return new DirFile(rel, size);
  }

  /**
   * Opens f for writing. The first open creates it (O_EXCL: a fresh restore needs no lookup
   * first; whatever is in the way is removed and the create retried) at its final size.
   */
  private async openFile(f: DirFile): Promise<number> {
    const abs = this.abs(f.rel);
    if (f.created) return openP(abs, fsc.O_WRONLY | fsc.O_NOFOLLOW);
    const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;
    let fd: number;
    try {
      fd = await openP(abs, flags, 0o600);
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
      await this.clear(abs);
      fd = await openP(abs, flags, 0o600);
    }
    f.created = true;
    try {
      if (f.size > 0) fs.ftruncateSync(fd, f.size);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    return fd;
  }

  /** An open descriptor for f, shared by concurrent writers; the caller does busy-- when done with it. */
  private acquire(f: DirFile): Promise<number> {
    f.lastUse = ++this.clock;
    f.busy++;
    if (f.fd === undefined) {
      if (this.open.size >= MAX_OPEN) {
        let oldest: DirFile | undefined;
        for (const o of this.open) if (o.busy === 0 && (oldest === undefined || o.lastUse < oldest.lastUse)) oldest = o;
        if (oldest !== undefined) void this.closeFd(oldest).catch(() => undefined);
      }
      f.fd = this.openFile(f);
      this.open.add(f);
    }
    return f.fd;
  }

  private async closeFd(f: DirFile): Promise<void> {
    const p = f.fd;
    if (p === undefined) return;
    f.fd = undefined;
    this.open.delete(f);
    await closeP(await p);
  }

  async write(tf: TargetFile, data: Buffer, pos: number): Promise<void> {
    const f = tf as DirFile;
    try {
      await writeSparse(await this.acquire(f), data, pos);
    } catch (err) {
      this.fail(err, f.rel);
    } finally {
      f.busy--;
    }
  }

  async finishFile(tf: TargetFile, n: FileMeta): Promise<void> {
    const f = tf as DirFile;
    try {
      const fd = await (f.fd ?? this.acquire(f).finally(() => f.busy--));
      // cheap syscalls on a descriptor: synchronous beats a thread-pool round trip
      if (this.isRoot) fs.fchownSync(fd, n.uid, n.gid);
      fs.fchmodSync(fd, n.mode);
      const t = timeArg(n.mtime);
      fs.futimesSync(fd, t, t);
      await this.closeFd(f);
    } catch (err) {
      this.fail(err, f.rel);
    }
  }

  async discardFile(tf: TargetFile): Promise<void> {
    const f = tf as DirFile;
    await this.closeFd(f).catch(() => undefined);
    // no wrong or partial content is left behind (nor an older file that was in the way)
    await fsp.unlink(this.abs(f.rel)).catch(() => undefined);
  }

  async hardlink(existing: Buffer, rel: Buffer): Promise<void> {
    const abs = this.abs(rel);
    try {
      await this.clear(abs);
      await fsp.link(this.abs(existing), abs);
    } catch (err) {
      this.fail(err, rel);
    }
  }

  async symlink(rel: Buffer, node: Node): Promise<void> {
    const abs = this.abs(rel);
    try {
      await this.clear(abs);
      await fsp.symlink(linkTargetBytes(node), abs);
      await this.applyMeta(abs, node, true);
    } catch (err) {
      this.fail(err, rel);
    }
  }

  async special(rel: Buffer, node: Node): Promise<string | undefined> {
    const abs = this.abs(rel);
    try {
      await this.clear(abs);
      if (node.type === 'fifo') await execFileP('mkfifo', ['--', abs.toString('latin1')], { encoding: 'buffer' });
      else if ((node.type === 'chardev' || node.type === 'blockdev') && this.isRoot) {
        const rdev = node.rdev ?? 0;
        const major = (rdev >> 8) & 0xfff;
        const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
        await execFileP('mknod', ['--', abs.toString('latin1'), node.type === 'chardev' ? 'c' : 'b', String(major), String(minor)]);
      } else {
        return `${node.type} not restored (not supported${node.type !== 'socket' ? ' without root' : ''})`;
      }
      await this.applyMeta(abs, node, false);
      return undefined;
    } catch (err) {
      return `${node.type} not restored: ${errMessage(err)}`;
    }
  }

  async dirMeta(rel: Buffer, node: Node): Promise<void> {
    try {
      await this.applyMeta(this.abs(rel), node, false);
    } catch (err) {
      this.fail(err, rel);
    }
  }

  private async applyMeta(abs: Buffer, n: Node, isLink: boolean): Promise<void> {
    if (this.isRoot) {
      if (isLink) await fsp.lchown(abs, n.uid, n.gid);
      else await fsp.chown(abs, n.uid, n.gid);
    }
    if (!isLink) await fsp.chmod(abs, n.mode);
    const t = timeArg(n.mtime);
    if (isLink) await fsp.lutimes(abs, t, t);
    else await fsp.utimes(abs, t, t);
  }

  async readBack(rel: Buffer): Promise<ReadBack> {
    const fh = await fsp.open(this.abs(rel), fsc.O_RDONLY | fsc.O_NOFOLLOW);
    try {
      await fh.sync();
      const st = await fh.stat();
      return {
        size: st.size,
        read: async (buf, offset, length, position) => (await fh.read(buf, offset, length, position)).bytesRead,
        close: () => fh.close(),
      };
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    for (const o of [...this.open]) await o.fd?.then((fd) => closeP(fd)).catch(() => undefined);
    this.open.clear();
  }
}

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
