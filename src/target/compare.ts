/**
 * target/compare: a restore that writes nothing. Every chunk still goes through the restorer's
 * checks (authenticated, re-hashed against its id), so reading a snapshot into a CompareTarget
 * proves the repository holds all of it intact. With a directory to compare with (a frozen source,
 * such as the volume snapshot a backup was taken from), each file's bytes, size, type and each
 * symlink's target are also compared with that directory: the snapshot is proven to be the data.
 *
 * Differences are collected (the first 100 named), never thrown: the caller decides.
 */
import * as fs from 'node:fs';
import { constants as fsc, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { errMessage } from '../errors/index.ts';
import { displayName, linkTargetBytes } from '../snapshot/tree.ts';
import type { Node } from '../snapshot/tree.ts';
import type { FileMeta, ReadBack, RestoreTarget, TargetFile } from './index.ts';

const MAX_NAMED = 100;

interface CompareFile extends TargetFile {
  fd?: fs.promises.FileHandle;
  differs: boolean;
}

export class CompareTarget implements RestoreTarget {
  readonly location: string;
  /** paths (relative) that differ, the first MAX_NAMED, each with why */
  readonly differences: string[] = [];
  differing = 0;
  filesCompared = 0;
  bytesCompared = 0;
  private readonly root: string | undefined;

  /** `root`: the directory to compare with; undefined: read and verify only */
  constructor(root?: string) {
    this.root = root;
    this.location = root === undefined ? '(read and verify only)' : `comparison with ${root}`;
  }

  private differ(rel: Buffer, why: string): void {
    this.differing++;
    if (this.differences.length < MAX_NAMED) this.differences.push(`${displayName(rel)}: ${why}`);
  }

  private abs(rel: Buffer): string {
    return path.join(this.root!, rel.toString());
  }

  async prepare(): Promise<void> {
    if (this.root !== undefined) await fsp.access(this.root, fsc.R_OK);
  }

  async dir(rel: Buffer): Promise<void> {
    if (this.root === undefined) return;
    const st = await fsp.lstat(this.abs(rel)).catch(() => undefined);
    if (st === undefined || !st.isDirectory()) this.differ(rel, st === undefined ? 'missing from the volume' : 'not a directory in the volume');
  }

  file(rel: Buffer, size: number): TargetFile {
    const f: CompareFile = { rel, size, differs: false };
    return f;
  }

  async write(t: TargetFile, data: Buffer, pos: number): Promise<void> {
    const f = t as CompareFile;
    if (this.root === undefined || f.differs) return;
    if (f.fd === undefined) {
      try {
        f.fd = await fsp.open(this.abs(f.rel), fsc.O_RDONLY | fsc.O_NOFOLLOW);
      } catch (e) {
        f.differs = true;
        this.differ(f.rel, `cannot be read from the volume (${errMessage(e)})`);
        return;
      }
    }
    const got = Buffer.allocUnsafe(data.length);
    let n = 0;
    while (n < data.length) {
      const { bytesRead } = await f.fd.read(got, n, data.length - n, pos + n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    if (n !== data.length || !got.equals(data)) {
      f.differs = true;
      this.differ(f.rel, `bytes ${pos}..${pos + data.length} differ from the volume`);
    }
  }

  async finishFile(t: TargetFile, meta: FileMeta): Promise<void> {
    const f = t as CompareFile;
    await f.fd?.close();
    f.fd = undefined;
    this.filesCompared++;
    this.bytesCompared += meta.size;
    if (this.root === undefined || f.differs) return;
    const st = await fsp.lstat(this.abs(f.rel)).catch(() => undefined);
    if (st === undefined || !st.isFile()) this.differ(f.rel, st === undefined ? 'missing from the volume' : 'not a regular file in the volume');
    else if (st.size !== meta.size) this.differ(f.rel, `size ${meta.size} in the snapshot, ${st.size} in the volume`);
  }

  async discardFile(t: TargetFile): Promise<void> {
    const f = t as CompareFile;
    await f.fd?.close();
    f.fd = undefined;
  }

  async hardlink(existing: Buffer, rel: Buffer): Promise<void> {
    if (this.root === undefined) return;
    const [a, b] = await Promise.all([fsp.lstat(this.abs(existing)).catch(() => undefined), fsp.lstat(this.abs(rel)).catch(() => undefined)]);
    if (a === undefined || b === undefined || a.ino !== b.ino) this.differ(rel, `not a hard link to ${displayName(existing)} in the volume`);
  }

  async symlink(rel: Buffer, node: Node): Promise<void> {
    if (this.root === undefined) return;
    const want = linkTargetBytes(node);
    const got = await fsp.readlink(this.abs(rel), { encoding: 'buffer' }).catch(() => undefined);
    if (got === undefined || !got.equals(want)) this.differ(rel, got === undefined ? 'symlink missing from the volume' : 'symlink target differs');
  }

  special(): Promise<string | undefined> {
    return Promise.resolve(undefined);
  }

  dirMeta(): Promise<void> {
    return Promise.resolve();
  }

  readBack(rel: Buffer): Promise<ReadBack> {
    return Promise.reject(new Error(`a comparison does not read back ${displayName(rel)}`));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
