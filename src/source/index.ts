/**
 * source: what a backup reads. The archiver walks and reads through a Source and never touches
 * node:fs itself. Today one kind, LocalSource: a tree on a local filesystem, which also serves a
 * mounted PersistentVolumeClaim and a read-only snapshot of a volume (src/volumes), since both are
 * mounted trees. An export of Kubernetes objects is the next kind: a Source whose tree is made of
 * the exported manifests.
 *
 * The calls are the archiver's hot path on trees of millions of files, so they mirror the system
 * calls it needs, synchronous where a local volume answers in microseconds (directory listings,
 * lstat, small files) and asynchronous for the reads of large files. Paths are byte strings
 * (Buffers): names on Linux need not be UTF-8.
 *
 * Contract: lstat never follows a symlink at the end of the path; open never follows one either
 * (a file replaced by a symlink between the walk and the read is an error, not a read of the
 * link's target); reads are sequential from the start of the file.
 */
import { closeSync, constants as fsc, fstatSync, lstatSync, openSync, promises as fsp, readSync, readdirSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { errnoCode } from '../errors/index.ts';

/** An open file read synchronously, start to end (small files). */
export interface SyncFile {
  stat(): BigIntStats;
  /** reads up to `length` bytes into buf at `offset`, continuing where the last read ended; 0 at the end */
  read(buf: Buffer, offset: number, length: number): number;
  close(): void;
}

/** An open file read asynchronously, start to end (large files). */
export interface AsyncFile {
  /** its descriptor (the chunking thread reads large files through it) */
  readonly fd: number;
  stat(): Promise<BigIntStats>;
  read(buf: Buffer, offset: number, length: number): Promise<number>;
  close(): Promise<void>;
}

export interface Source {
  /** what this source is, for messages ("local filesystem") */
  readonly kind: string;
  /** metadata of `path` (not following a symlink at its end) */
  lstat(path: Buffer): Promise<BigIntStats>;
  lstatSync(path: Buffer): BigIntStats;
  /** the names in a directory, unsorted */
  readdirSync(path: Buffer): Buffer[];
  readdir(path: Buffer): Promise<Buffer[]>;
  readlink(path: Buffer): Promise<Buffer>;
  openSync(path: Buffer): SyncFile;
  open(path: Buffer): Promise<AsyncFile>;
}

const OPEN_FLAGS = fsc.O_RDONLY | fsc.O_NOFOLLOW;

/**
 * A tree on a local filesystem. Files are opened with O_NOATIME where the kernel allows it (a
 * backup does not change what it reads; the flag is refused with EPERM for files the caller does
 * not own, and the open is retried without it).
 */
export class LocalSource implements Source {
  readonly kind = 'local filesystem';

  lstat(path: Buffer): Promise<BigIntStats> {
    return fsp.lstat(path, { bigint: true });
  }

  lstatSync(path: Buffer): BigIntStats {
    return lstatSync(path, { bigint: true });
  }

  readdirSync(path: Buffer): Buffer[] {
    return readdirSync(path, { encoding: 'buffer' });
  }

  readdir(path: Buffer): Promise<Buffer[]> {
    return fsp.readdir(path, { encoding: 'buffer' });
  }

  readlink(path: Buffer): Promise<Buffer> {
    return fsp.readlink(path, { encoding: 'buffer' });
  }

  openSync(path: Buffer): SyncFile {
    let fd: number;
    try {
      fd = openSync(path, OPEN_FLAGS | fsc.O_NOATIME);
    } catch (err) {
      if (errnoCode(err) !== 'EPERM') throw err;
      fd = openSync(path, OPEN_FLAGS);
    }
    return new LocalSyncFile(fd);
  }

  async open(path: Buffer): Promise<AsyncFile> {
    let fh: FileHandle;
    try {
      fh = await fsp.open(path, OPEN_FLAGS | fsc.O_NOATIME);
    } catch (err) {
      if (errnoCode(err) !== 'EPERM') throw err;
      fh = await fsp.open(path, OPEN_FLAGS);
    }
    return {
      fd: fh.fd,
      stat: () => fh.stat({ bigint: true }),
      read: async (buf, offset, length) => (await fh.read(buf, offset, length, null)).bytesRead,
      close: () => fh.close(),
    };
  }
}

/** A descriptor; one small object per file (the archiver opens millions of small files). */
class LocalSyncFile implements SyncFile {
  private readonly fd: number;
  constructor(fd: number) {
    this.fd = fd;
  }
  stat(): BigIntStats {
    return fstatSync(this.fd, { bigint: true });
  }
  read(buf: Buffer, offset: number, length: number): number {
    return readSync(this.fd, buf, offset, length, null);
  }
  close(): void {
    closeSync(this.fd);
  }
}

/** The local filesystem (the default source). */
export const localSource: Source = new LocalSource();
