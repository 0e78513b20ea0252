/**
 * lab/faults: damage done to a live volume, shared by the fault benchmark (volume-corruption) and
 * the testbed (`testbed fault corrupt`): bytes flipped, files truncated or deleted, data blocks
 * overwritten in a loop-mounted btrfs image; and the manifests that say what was there before.
 *
 * Every injector draws from an Rng, so the same seed damages the same files at the same offsets.
 * A *manifest* is every entry below a root by relative path, with type, size, SHA-256 (regular
 * files) and link target (symlinks); it survives unreadable files: a file that fails to read (EIO
 * from a btrfs checksum error, say) is recorded with `error`.
 */
import { constants as fsc, promises as fsp } from 'node:fs';
import { run } from '../../src/host/process.ts';
import { displayPath, sha256File, walk } from '../gen/compare.ts';
import { parallel } from '../../src/util/parallel.ts';
import type { Rng } from '../gen/rng.ts';

/** The size of one damaged region: a 4 KiB page. */
export const ROT_REGION = 4 * 1024;
const MiB = 1024 * 1024;

export type Kind = 'file' | 'dir' | 'symlink' | 'other';

export interface MEntry {
  /** displayPath of the relative path bytes (the key) */
  path: string;
  /** raw relative path bytes */
  rel: Buffer;
  type: Kind;
  size: number;
  sha256?: string;
  /** symlink target bytes, hex */
  link?: string;
  /** why a regular file could not be read (e.g. EIO), when it could not */
  error?: string;
}

export type Manifest = Map<string, MEntry>;

const SLASH = Buffer.from('/');

/** The absolute path (bytes) of a relative path below root. */
export function absPath(root: string, rel: Buffer): Buffer {
  return Buffer.concat([Buffer.from(root), SLASH, rel]);
}

/** Manifest of everything below `root` (root excluded); unreadable files are recorded, not thrown. */
export async function takeManifest(root: string): Promise<Manifest> {
  const items = await walk(root);
  const entries: MEntry[] = items.map(({ rel, st }) => ({
    path: displayPath(rel),
    rel,
    type: st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other',
    size: Number(st.size),
  }));
  await parallel(entries, 4, async (e, i) => {
    const abs = items[i]!.abs;
    if (e.type === 'symlink') e.link = ((await fsp.readlink(abs, { encoding: 'buffer' })) as Buffer).toString('hex');
    else if (e.type === 'file') {
      try {
        e.sha256 = await sha256File(abs);
      } catch (err) {
        e.error = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
      }
    }
  });
  return new Map(entries.map((e) => [e.path, e]));
}

/** Does `b` hold the same content as `a` (type, size, SHA-256, link target; readable)? */
export function sameEntry(a: MEntry, b: MEntry): boolean {
  if (a.type !== b.type) return false;
  if (a.type === 'file') return b.error === undefined && a.size === b.size && a.sha256 === b.sha256;
  if (a.type === 'symlink') return a.link === b.link;
  return true;
}


export interface FileDamage {
  flipped: string[];
  truncated: string[];
  deleted: string[];
}

/** Opens a file for writing even when its mode has no write bit (restic packs are 0400); restores the mode. */
export async function withWritable<T>(file: string | Buffer, fn: (fh: fsp.FileHandle) => Promise<T>): Promise<T> {
  const st = await fsp.stat(file);
  const mode = st.mode & 0o7777;
  if ((mode & 0o200) === 0) await fsp.chmod(file, mode | 0o200);
  try {
    const fh = await fsp.open(file, fsc.O_RDWR);
    try {
      return await fn(fh);
    } finally {
      await fh.close();
    }
  } finally {
    if ((mode & 0o200) === 0) await fsp.chmod(file, mode);
    // bit rot does not touch the modification time: tools that skip unchanged-looking files must see none
    await fsp.utimes(file, st.atime, st.mtime);
  }
}

/** XOR `length` bytes at `offset` of an open file with non-zero pseudo-random bytes (every byte changes). */
export async function xorRegion(fh: fsp.FileHandle, offset: number, length: number, rng: Rng): Promise<void> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await fh.read(buf, 0, length, offset);
  const noise = rng.bytes(bytesRead);
  for (let i = 0; i < bytesRead; i++) buf[i] = buf[i]! ^ (noise[i]! | 1);
  await fh.write(buf, 0, bytesRead, offset);
  await fh.datasync();
}

/**
 * Damages `fraction` of the regular files below `root` (at least 3, one of each kind): a third get
 * 1 to 8 single bytes flipped at random offsets, a third are truncated to a random shorter length,
 * the rest are deleted. Files are chosen from `reference` (empty files can only be deleted);
 * `exclude` keys are left alone. Modification times are kept. Returns the damaged paths per kind.
 */
export async function corruptFiles(root: string, reference: Manifest, rng: Rng, fraction: number, exclude: ReadonlySet<string> = new Set()): Promise<FileDamage> {
  const files = [...reference.values()].filter((e) => e.type === 'file' && !exclude.has(e.path));
  const nonEmpty = rng.shuffle(files.filter((e) => e.size > 0));
  const n = Math.min(files.length, Math.max(3, Math.round(files.length * fraction)));
  const each = Math.max(1, Math.floor(n / 3));
  const flip = nonEmpty.splice(0, Math.min(each, nonEmpty.length));
  const trunc = nonEmpty.splice(0, Math.min(each, nonEmpty.length));
  const taken = new Set([...flip, ...trunc].map((e) => e.path));
  const rest = rng.shuffle(files.filter((e) => !taken.has(e.path)));
  const del = rest.slice(0, Math.max(0, n - flip.length - trunc.length));
  for (const e of flip) {
    await withWritable(absPath(root, e.rel), async (fh) => {
      const flips = rng.int(1, 8);
      for (let i = 0; i < flips; i++) await xorRegion(fh, rng.int(0, e.size - 1), 1, rng);
    });
  }
  for (const e of trunc) {
    await withWritable(absPath(root, e.rel), (fh) => fh.truncate(rng.int(0, e.size - 1)));
  }
  for (const e of del) await fsp.unlink(absPath(root, e.rel));
  return { flipped: flip.map((e) => e.path), truncated: trunc.map((e) => e.path), deleted: del.map((e) => e.path) };
}

export interface ImageDamage {
  /** files whose data block was overwritten in the image */
  files: string[];
  /** of those, the files that now fail to read (EIO: the filesystem's checksum caught it) */
  unreadable: string[];
  /** why fewer files than asked were damaged, when so */
  shortfall?: string;
}

/**
 * Writes 4 KiB of garbage into the block image of a loop-mounted btrfs volume, over one data
 * block of each of `count` files (at least 8 KiB, UTF-8 names, not in `exclude`). The block is
 * found by content: the file's middle 4 KiB page is looked up in the image (sector-aligned, and
 * it must occur exactly once), so no knowledge of btrfs's logical-to-physical mapping is needed;
 * compressed or inline data is not found and its file is passed over. The volume stays mounted:
 * its data is synced first, the image written and synced, then the damaged files' cached pages
 * are dropped (dd iflag=nocache) so that the next read goes to the damaged block.
 */
export async function damageImage(volumePath: string, image: string, reference: Manifest, rng: Rng, count: number, exclude: ReadonlySet<string>): Promise<ImageDamage> {
  const candidates = rng.shuffle(
    [...reference.values()].filter((e) => e.type === 'file' && e.size >= 2 * ROT_REGION && !exclude.has(e.path) && !e.path.includes('\\')),
  );
  if (candidates.length === 0) return { files: [], unreadable: [], shortfall: 'no file of 8 KiB or more to damage' };
  await run(['sync', '-f', volumePath]);
  // look for a few more pages than needed: some are not found (compressed) or not unique
  const want = candidates.slice(0, Math.min(candidates.length, count * 4 + 8));
  const pages = new Map<bigint, { e: MEntry; page: Buffer }[]>();
  for (const e of want) {
    const fh = await fsp.open(absPath(volumePath, e.rel), 'r');
    try {
      const page = Buffer.alloc(ROT_REGION);
      const off = Math.floor(e.size / ROT_REGION / 2) * ROT_REGION;
      const { bytesRead } = await fh.read(page, 0, ROT_REGION, off);
      if (bytesRead !== ROT_REGION || page.every((b) => b === 0)) continue;
      const key = page.readBigUInt64LE(0);
      pages.set(key, [...(pages.get(key) ?? []), { e, page }]);
    } finally {
      await fh.close();
    }
  }
  // one pass over the image: the offsets where each wanted page occurs
  const found = new Map<string, number[]>();
  const img = await fsp.open(image, 'r');
  try {
    const size = (await img.stat()).size;
    const buf = Buffer.alloc(4 * MiB);
    for (let base = 0; base < size; base += buf.length) {
      const { bytesRead } = await img.read(buf, 0, buf.length, base);
      for (let p = 0; p + ROT_REGION <= bytesRead; p += ROT_REGION) {
        const hits = pages.get(buf.readBigUInt64LE(p));
        if (hits === undefined) continue;
        for (const h of hits) if (buf.compare(h.page, 0, ROT_REGION, p, p + ROT_REGION) === 0) found.set(h.e.path, [...(found.get(h.e.path) ?? []), base + p]);
      }
    }
  } finally {
    await img.close();
  }
  const chosen = want.filter((e) => found.get(e.path)?.length === 1).slice(0, count);
  const files: string[] = [];
  const fh = await fsp.open(image, 'r+');
  try {
    for (const e of chosen) {
      await fh.write(rng.bytes(ROT_REGION), 0, ROT_REGION, found.get(e.path)![0]!);
      files.push(e.path);
    }
    await fh.datasync();
  } finally {
    await fh.close();
  }
  const unreadable: string[] = [];
  for (const e of chosen) {
    const file = absPath(volumePath, e.rel).toString();
    await run(['dd', `if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
    try {
      await sha256File(file);
    } catch {
      unreadable.push(e.path);
    }
  }
  const out: ImageDamage = { files, unreadable };
  if (files.length < count) out.shortfall = `only ${files.length} of ${count} files had a data block found once in the image (compressed, inline or repeated data is passed over)`;
  return out;
}

