/**
 * Tree manifests and tree comparison for end-to-end backup/restore tests.
 *
 * Paths are handled as raw bytes (Buffer) throughout, so names that are not
 * valid UTF-8 survive the walk. Map keys use `displayPath()`: an injective,
 * human-readable escaping of the relative path bytes (see there).
 */
import { createHash } from 'node:crypto';
import { parallel } from '../../src/util/parallel.ts';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';

export type EntryType = 'file' | 'dir' | 'symlink' | 'other';

export interface Entry {
  /** Human-readable relative path (same as the manifest key, see displayPath). */
  path: string;
  /** Raw relative path bytes ('/'-separated), exactly as on disk. */
  rel: Buffer;
  type: EntryType;
  /** st_size (apparent size; for symlinks the target length). */
  size: number;
  /** Permission bits of st_mode including setuid/setgid/sticky (st_mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time in nanoseconds since the epoch. */
  mtimeNs: bigint;
  /** Modification time in milliseconds (convenience; too coarse for comparisons). */
  mtimeMs: number;
  /** Symlink target, escaped like displayPath. */
  linkTarget?: string;
  /** Raw symlink target bytes. */
  linkTargetRaw?: Buffer;
  /** Hex SHA-256 of the content (regular files, only with `hash: true`). */
  sha256?: string;
  dev: bigint;
  ino: bigint;
  nlink: number;
  /** Allocated 512-byte blocks (st_blocks). */
  blocks: number;
}

export interface WalkItem {
  rel: Buffer;
  abs: Buffer;
  st: BigIntStats;
}

const SLASH = Buffer.from('/');

/**
 * Recursively lstat everything below `root` (root itself excluded), in
 * byte-wise sorted pre-order, using Buffer paths. Symlinks are not followed.
 */
export async function walk(root: string | Buffer): Promise<WalkItem[]> {
  const out: WalkItem[] = [];
  const rootBuf = typeof root === 'string' ? Buffer.from(root) : root;
  async function visit(absDir: Buffer, relDir: Buffer | null): Promise<void> {
    const names = (await fs.readdir(absDir, { encoding: 'buffer' })) as Buffer[];
    names.sort(Buffer.compare);
    const items = await Promise.all(
      names.map(async (name) => {
        const abs = Buffer.concat([absDir, SLASH, name]);
        const rel = relDir ? Buffer.concat([relDir, SLASH, name]) : name;
        const st = await fs.lstat(abs, { bigint: true });
        return { rel, abs, st };
      }),
    );
    for (const item of items) {
      out.push(item);
      if (item.st.isDirectory()) await visit(item.abs, item.rel);
    }
  }
  await visit(rootBuf, null);
  return out;
}

/** Byte length of the UTF-8 sequence starting at buf[i], or 0 if it is not strictly valid. */
function utf8SeqLen(buf: Buffer, i: number): number {
  const b0 = buf[i] ?? 0;
  const cont = (j: number, lo = 0x80, hi = 0xbf) => {
    const b = buf[i + j];
    return b !== undefined && b >= lo && b <= hi;
  };
  if (b0 < 0x80) return 1;
  if (b0 >= 0xc2 && b0 <= 0xdf) return cont(1) ? 2 : 0;
  if (b0 === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if (b0 === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0; // no surrogates
  if (b0 >= 0xe1 && b0 <= 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (b0 === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (b0 >= 0xf1 && b0 <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (b0 === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

const hex2 = (b: number) => b.toString(16).padStart(2, '0');

/**
 * Injective, human-readable rendering of raw path bytes, used as manifest key:
 *  - valid UTF-8 sequences are kept as the characters they encode,
 *  - a backslash becomes `\\`,
 *  - control bytes (0x00–0x1f, 0x7f) and every byte that is not part of a
 *    strictly valid UTF-8 sequence become `\xNN` (lowercase hex).
 * Because a literal backslash is always doubled, `\x` only ever comes from an
 * escape, so distinct byte strings always give distinct keys
 * (e.g. [0x66,0xff] -> "f\xff", "a\nb" -> "a\x0ab").
 */
export function displayPath(buf: Buffer): string {
  let out = '';
  let i = 0;
  while (i < buf.length) {
    const b = buf[i] as number;
    if (b < 0x20 || b === 0x7f) {
      out += '\\x' + hex2(b);
      i++;
    } else if (b === 0x5c) {
      out += '\\\\';
      i++;
    } else {
      const n = utf8SeqLen(buf, i);
      if (n === 0) {
        out += '\\x' + hex2(b);
        i++;
      } else {
        out += buf.toString('utf8', i, i + n);
        i += n;
      }
    }
  }
  return out;
}

function typeOf(st: BigIntStats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

/** Streaming SHA-256 of a file (hex). */
export function sha256File(path: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path, { highWaterMark: 1 << 20 })
      .on('data', (chunk) => h.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}


/**
 * Manifest of everything below `dir` (the root itself is not included),
 * keyed by `displayPath(relative path bytes)`, in byte-wise sorted order.
 * With `hash: true` regular files get a streaming SHA-256.
 */
export async function manifest(dir: string, opts: { hash?: boolean } = {}): Promise<Map<string, Entry>> {
  const items = await walk(dir);
  const entries: Entry[] = await Promise.all(
    items.map(async ({ rel, abs, st }) => {
      const e: Entry = {
        path: displayPath(rel),
        rel,
        type: typeOf(st),
        size: Number(st.size),
        mode: Number(st.mode & 0o7777n),
        uid: Number(st.uid),
        gid: Number(st.gid),
        mtimeNs: st.mtimeNs,
        mtimeMs: Number(st.mtimeMs),
        dev: st.dev,
        ino: st.ino,
        nlink: Number(st.nlink),
        blocks: Number(st.blocks),
      };
      if (e.type === 'symlink') {
        e.linkTargetRaw = (await fs.readlink(abs, { encoding: 'buffer' })) as Buffer;
        e.linkTarget = displayPath(e.linkTargetRaw);
      }
      return e;
    }),
  );
  if (opts.hash) {
    const files = items.flatMap((it, i) => (entries[i]?.type === 'file' ? [i] : []));
    await parallel(files, 4, async (i) => {
      (entries[i] as Entry).sha256 = await sha256File((items[i] as WalkItem).abs);
    });
  }
  return new Map(entries.map((e) => [e.path, e]));
}

export interface CompareOptions {
  /** Compare uid/gid (default true). */
  owner?: boolean;
  /** Compare mtimes of files and symlinks (default true). */
  mtime?: boolean;
  /** Also compare directory mtimes (default false). */
  dirMtime?: boolean;
  /** Check that sparse source files are still sparse in dst (default false). */
  sparse?: boolean;
  /** Check that hard-link groups are preserved, and no new ones created (default false). */
  hardlinks?: boolean;
}

/** mtimes match if they differ by less than this (i.e. microsecond precision). */
const MTIME_TOLERANCE_NS = 1000n;
/** Slack allowed for dst allocation of a sparse file. */
const SPARSE_SLACK = 1 << 20;

function fmtNs(ns: bigint): string {
  const ms = ns / 1_000_000n - (ns < 0n && ns % 1_000_000n !== 0n ? 1n : 0n);
  const sub = ns - ms * 1_000_000n; // 0..999999 ns within the millisecond
  const iso = new Date(Number(ms)).toISOString(); // ...sss
  return `${iso.slice(0, -1)}${sub.toString().padStart(6, '0')}Z`;
}

const oct = (m: number) => '0' + m.toString(8).padStart(3, '0');

/** Is this a file whose allocation is much smaller than its apparent size? */
function isSparse(e: Entry): boolean {
  return e.type === 'file' && e.size >= SPARSE_SLACK && e.blocks * 512 * 2 <= e.size;
}

/**
 * Compare two trees; returns human-readable differences (empty array = equal).
 * Always checks: missing/extra paths, type, size, content (SHA-256), permission
 * bits (not for symlinks, whose mode cannot be set on Linux) and symlink targets.
 * See CompareOptions for the optional checks. mtimes must agree to within 1 µs.
 */
export async function compareTrees(src: string, dst: string, opts: CompareOptions = {}): Promise<string[]> {
  const o = { owner: true, mtime: true, dirMtime: false, sparse: false, hardlinks: false, ...opts };
  const [a, b] = await Promise.all([manifest(src, { hash: true }), manifest(dst, { hash: true })]);
  const diffs: string[] = [];

  for (const [key, s] of a) {
    const d = b.get(key);
    if (!d) {
      diffs.push(`missing in dst: ${key}`);
      continue;
    }
    if (s.type !== d.type) {
      diffs.push(`type differs: ${key}: ${s.type} vs ${d.type}`);
      continue;
    }
    if (s.type === 'file') {
      if (s.size !== d.size) diffs.push(`size differs: ${key}: ${s.size} vs ${d.size}`);
      else if (s.sha256 !== d.sha256) diffs.push(`content differs: ${key}: sha256 ${s.sha256} vs ${d.sha256}`);
    }
    if (s.type === 'symlink' && !s.linkTargetRaw?.equals(d.linkTargetRaw ?? Buffer.alloc(0))) {
      diffs.push(`symlink target differs: ${key}: ${s.linkTarget} vs ${d.linkTarget}`);
    }
    if (s.type !== 'symlink' && s.mode !== d.mode) diffs.push(`mode differs: ${key}: ${oct(s.mode)} vs ${oct(d.mode)}`);
    if (o.owner && (s.uid !== d.uid || s.gid !== d.gid)) {
      diffs.push(`owner differs: ${key}: ${s.uid}:${s.gid} vs ${d.uid}:${d.gid}`);
    }
    const checkMtime = s.type === 'dir' ? o.dirMtime : o.mtime;
    if (checkMtime) {
      const delta = s.mtimeNs - d.mtimeNs;
      if (delta >= MTIME_TOLERANCE_NS || delta <= -MTIME_TOLERANCE_NS) {
        diffs.push(`mtime differs: ${key}: ${fmtNs(s.mtimeNs)} vs ${fmtNs(d.mtimeNs)}`);
      }
    }
    if (o.sparse && isSparse(s) && d.blocks * 512 > s.blocks * 512 + SPARSE_SLACK) {
      diffs.push(
        `not sparse in dst: ${key}: size ${s.size}, allocated ${s.blocks * 512} in src vs ${d.blocks * 512} in dst`,
      );
    }
  }
  for (const key of b.keys()) if (!a.has(key)) diffs.push(`extra in dst: ${key}`);

  if (o.hardlinks) diffs.push(...compareHardlinks(a, b));
  return diffs;
}

/** Group non-directory paths by inode; only groups with 2+ names in the tree. */
function linkGroups(m: Map<string, Entry>): string[][] {
  const groups = new Map<string, string[]>();
  for (const e of m.values()) {
    if (e.type === 'dir' || e.nlink < 2) continue;
    const id = `${e.dev}:${e.ino}`;
    const g = groups.get(id);
    if (g) g.push(e.path);
    else groups.set(id, [e.path]);
  }
  return [...groups.values()].filter((g) => g.length > 1);
}

function compareHardlinks(a: Map<string, Entry>, b: Map<string, Entry>): string[] {
  const diffs: string[] = [];
  const inode = (m: Map<string, Entry>, p: string) => {
    const e = m.get(p);
    return e ? `${e.dev}:${e.ino}` : undefined;
  };
  // Every src group must map onto a single dst inode ...
  for (const g of linkGroups(a)) {
    const ids = new Set(g.map((p) => inode(b, p)));
    if (ids.size !== 1 || ids.has(undefined)) diffs.push(`hard link not preserved: ${g.join(' = ')}`);
  }
  // ... and dst must not link paths that are separate files in src.
  for (const g of linkGroups(b)) {
    const ids = new Set(g.map((p) => inode(a, p)));
    if (ids.size !== 1) diffs.push(`unexpected hard link in dst: ${g.join(' = ')}`);
  }
  return diffs;
}
