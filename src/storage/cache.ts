/**
 * cache: a Backend wrapper that keeps a local copy of a remote repository's metadata, so that
 * `snapshots`, `ls`, `diff`, `prune` and an incremental backup do not download it again: index
 * files, snapshot files and tree packs (packs hold blobs of one type, and the index says which
 * packs hold trees; the content store tells the cache: markTreePacks()).
 *
 * Layout: BASE/CACHEDIR.TAG, and one directory per repository, named by the repository's id
 * (from its config, which is authenticated: bind() is called once the config is read):
 *
 *   BASE/<repository id>/version           "1"
 *   BASE/<repository id>/index/<name>      index files, as stored in the repository
 *   BASE/<repository id>/snapshots/<name>  snapshot files
 *   BASE/<repository id>/packs/<name>      whole tree packs
 *   BASE/<repository id>/tmp/              files being written
 *
 * Until bind() the cache passes every call through (the key files and the config are never
 * cached; nor are locks, parity files or data packs).
 *
 * Rules:
 * - Verified on read: every cached file is named by the SHA-256 of its bytes; a file read from
 *   the cache is hashed (a tree pack once per process), and one that does not match is removed
 *   and downloaded again. A downloaded file that does not match its name is not cached.
 * - Bounded: at most maxBytes per repository (default 1 GiB). A write that takes it over reads
 *   the directory again (what other processes wrote and used) and removes the least recently
 *   used files (by modification time, which a hit refreshes) down to 90% of the bound.
 * - Safe to delete at any time: files are written to tmp/ and renamed into place (a reader sees
 *   a whole file or none); a missing directory is made again; any error of the cache (a deleted
 *   directory, a full disk) only costs a download: the call goes to the repository.
 * - Stale files removed: a complete listing of index/ or snapshots/ removes the cached files of
 *   that type it no longer has; deleting a file through the cache removes its copy (forget,
 *   prune); loading the index removes cached packs no index lists. Files written since the
 *   listing began are kept (another process may have just written them).
 * - Writes go through: an index, snapshot or tree pack this process stores is cached too (a
 *   second backup from the same machine reads its parent's trees locally).
 *
 * In the stack (stack.ts) it is the outermost layer: a hit makes no call below it (no
 * connection slot, no retry), and a miss is one call that the retry layer below makes again
 * if it fails.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { meshbackDir } from '../util/dirs.ts';
import type { Backend, BlobWriter, FileInfo, FileType, Handle, ObjectLock, Wrapper } from './backend.ts';
import { joinParts } from './backend.ts';

export const DEFAULT_CACHE_BYTES = 1024 ** 3;
export const CACHE_VERSION = 1;
/** Tree packs held in memory once read (they are read blob by blob). */
const MEMORY_BYTES = 64 * 1024 * 1024;
/** Temporary files older than this are left over from a process that died: removed. */
const TMP_STALE_MS = 60 * 60 * 1000;
const CACHEDIR_TAG = 'Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by meshback.\n# For information about cache directory tags see https://bford.info/cachedir/\n';

export interface CacheOptions {
  /** The base directory: one sub-directory per repository (see defaultCacheDir). */
  dir: string;
  /** The most bytes one repository's cache holds (default DEFAULT_CACHE_BYTES). */
  maxBytes?: number;
  /** Cache a backend that is not remote too (tests; a local repository needs no cache). */
  local?: boolean;
}

export interface CacheStats {
  /** Reads served from the cache (a whole index or snapshot file, or one blob's range of a tree pack). */
  hits: number;
  /** Reads that had to download (a whole file or a whole tree pack). */
  misses: number;
  /** Bytes read from the cache files. */
  bytesRead: number;
  /** Bytes written to the cache. */
  bytesWritten: number;
  /** Files removed to keep the bound. */
  evicted: number;
  /** Files removed because the repository no longer has them. */
  stale: number;
  /** Cached files that did not match their name: removed and downloaded again. */
  damaged: number;
  /** Failed cache reads or writes (the call went to the repository instead). */
  errors: number;
}

/** $XDG_CACHE_HOME/meshback, else ~/.cache/meshback. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return meshbackDir('cache', env);
}

const DIRS: Partial<Record<FileType, string>> = { index: 'index', snapshot: 'snapshots', pack: 'packs' };

function sha256hex(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

function isEnoent(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

interface Entry {
  size: number;
  mtimeMs: number;
}

export class CacheBackend implements Backend, Wrapper {
  readonly inner: Backend;
  readonly stats: CacheStats = { hits: 0, misses: 0, bytesRead: 0, bytesWritten: 0, evicted: 0, stale: 0, damaged: 0, errors: 0 };
  readonly base: string;
  readonly maxBytes: number;
  readonly openWriter?: (type: FileType) => Promise<BlobWriter>;
  readonly replace?: (h: Handle, data: Uint8Array) => Promise<void>;
  readonly removeTemporary?: (olderThanMs: number) => Promise<{ files: number; bytes: number }>;
  readonly deleteSync?: (h: Handle) => void;
  /** Passed through: retention calls make no cacheable reads. */
  readonly objectLock?: ObjectLock;
  /** BASE/<repository id> once bound. */
  private root: string | undefined;
  private scanned: Promise<void> | undefined;
  /** What this process knows is in the cache: path below root -> size and last use. */
  private readonly entries = new Map<string, Entry>();
  private total = 0;
  private readonly treePacks = new Set<string>();
  /** Verified tree packs in memory, oldest first. */
  private readonly memory = new Map<string, Buffer>();
  private memoryBytes = 0;
  private readonly inflight = new Map<string, Promise<Buffer>>();
  /** Files whose last use this process has already recorded. */
  private readonly touched = new Set<string>();

  constructor(inner: Backend, opts: CacheOptions) {
    this.inner = inner;
    this.base = opts.dir;
    this.maxBytes = opts.maxBytes ?? DEFAULT_CACHE_BYTES;
    const { openWriter, replace, removeTemporary, deleteSync } = inner;
    if (openWriter !== undefined) this.openWriter = (type) => openWriter.call(inner, type);
    if (replace !== undefined) {
      this.replace = async (h, data) => {
        await replace.call(inner, h, data);
        await this.forget(h);
      };
    }
    if (removeTemporary !== undefined) this.removeTemporary = (ms) => removeTemporary.call(inner, ms);
    if (deleteSync !== undefined) this.deleteSync = (h) => deleteSync.call(inner, h);
    if (inner.objectLock !== undefined) this.objectLock = inner.objectLock;
  }

  get location(): string {
    return this.inner.location;
  }
  get properties(): Backend['properties'] {
    return this.inner.properties;
  }

  /** The directory of the bound repository, or undefined before bind(). */
  get dir(): string | undefined {
    return this.root;
  }

  /** Uses the cache of the repository with this id (32 hex digits, from its authenticated config). */
  bind(repositoryId: string): void {
    if (!/^[0-9a-f]{32}$/.test(repositoryId)) throw new Error(`cache: ${JSON.stringify(repositoryId)} is not a repository id`);
    const root = path.join(this.base, repositoryId);
    if (this.root === root) return;
    this.root = root;
    this.entries.clear();
    this.total = 0;
    this.scanned = undefined;
  }

  /** These packs hold tree blobs: reads of them are served from whole cached packs. */
  markTreePacks(names: Iterable<string>): void {
    for (const n of names) this.treePacks.add(n);
  }

  /** Removes cached packs for which keep() is false, unless written or used at or after `since` (ms). */
  async retainPacks(keep: (name: string) => boolean, since: number): Promise<void> {
    if (this.root === undefined) return;
    await this.scan();
    for (const [rel, e] of [...this.entries]) {
      if (!rel.startsWith('packs/') || e.mtimeMs >= since) continue;
      const name = rel.slice('packs/'.length);
      if (keep(name)) continue;
      this.treePacks.delete(name);
      if (await this.remove(rel)) this.stats.stale++;
    }
  }

  private relOf(h: Handle): string | undefined {
    const d = DIRS[h.type];
    if (d === undefined || this.root === undefined) return undefined;
    if (h.type === 'pack' && !this.treePacks.has(h.name)) return undefined;
    return `${d}/${h.name}`;
  }

  /** Reads what this process does not know of the cache yet (once), and marks the directory used. */
  private scan(): Promise<void> {
    const root = this.root;
    if (root === undefined) return Promise.resolve();
    this.scanned ??= (async () => {
      for (const d of new Set(Object.values(DIRS))) {
        let names: string[];
        try {
          names = await fsp.readdir(path.join(root, d));
        } catch (err) {
          if (!isEnoent(err)) this.stats.errors++;
          continue;
        }
        for (const n of names) {
          try {
            const st = await fsp.stat(path.join(root, d, n));
            if (!st.isFile()) continue;
            const rel = `${d}/${n}`;
            if (!this.entries.has(rel)) this.total += st.size;
            this.entries.set(rel, { size: st.size, mtimeMs: st.mtimeMs });
          } catch {
            /* gone meanwhile */
          }
        }
      }
      try {
        const now = Date.now();
        for (const n of await fsp.readdir(path.join(root, 'tmp'))) {
          const p = path.join(root, 'tmp', n);
          const st = await fsp.stat(p).catch(() => undefined);
          if (st !== undefined && now - st.mtimeMs > TMP_STALE_MS) await fsp.rm(p, { force: true });
        }
      } catch {
        /* no tmp/ */
      }
      await fsp.utimes(root, new Date(), new Date()).catch(() => undefined);
    })();
    return this.scanned;
  }

  /** The cached file, verified against its name; undefined when absent or damaged (then removed). */
  private async readVerified(rel: string, name: string): Promise<Buffer | undefined> {
    const root = this.root!;
    let data: Buffer;
    try {
      data = await fsp.readFile(path.join(root, rel));
    } catch (err) {
      if (!isEnoent(err)) this.stats.errors++;
      if (this.entries.has(rel)) this.dropEntry(rel);
      return undefined;
    }
    if (sha256hex(data) !== name) {
      this.stats.damaged++;
      await this.remove(rel);
      return undefined;
    }
    this.stats.bytesRead += data.length;
    if (!this.touched.has(rel)) {
      this.touched.add(rel);
      const now = new Date();
      await fsp.utimes(path.join(root, rel), now, now).catch(() => undefined);
      const e = this.entries.get(rel);
      if (e !== undefined) e.mtimeMs = now.getTime();
      else {
        this.entries.set(rel, { size: data.length, mtimeMs: now.getTime() });
        this.total += data.length;
      }
    }
    return data;
  }

  /** Writes a file into the cache (temporary file, rename), then keeps the bound. Never throws. */
  private async store(rel: string, name: string, data: Buffer): Promise<void> {
    const root = this.root;
    if (root === undefined || data.length > this.maxBytes || sha256hex(data) !== name) return;
    await this.scan();
    const tmp = path.join(root, 'tmp', `${name}.${randomBytes(6).toString('hex')}`);
    const final = path.join(root, rel);
    for (let attempt = 0; ; attempt++) {
      try {
        await fsp.writeFile(tmp, data, { mode: 0o600 });
        await fsp.rename(tmp, final);
        break;
      } catch (err) {
        await fsp.rm(tmp, { force: true }).catch(() => undefined);
        if (isEnoent(err) && attempt === 0) {
          // the directory is new, or was deleted meanwhile: make it (again) and retry once
          if (await this.makeDirs(root, path.dirname(final))) continue;
        }
        this.stats.errors++;
        return;
      }
    }
    this.stats.bytesWritten += data.length;
    const old = this.entries.get(rel);
    if (old !== undefined) this.total -= old.size;
    this.entries.set(rel, { size: data.length, mtimeMs: Date.now() });
    this.total += data.length;
    this.touched.add(rel);
    await this.evict();
  }

  private async makeDirs(root: string, dir: string): Promise<boolean> {
    try {
      await fsp.mkdir(this.base, { recursive: true, mode: 0o700 });
      await fsp.writeFile(path.join(this.base, 'CACHEDIR.TAG'), CACHEDIR_TAG, { flag: 'wx' }).catch(() => undefined);
      await fsp.mkdir(path.join(root, 'tmp'), { recursive: true, mode: 0o700 });
      await fsp.writeFile(path.join(root, 'version'), `${CACHE_VERSION}\n`, { flag: 'wx' }).catch(() => undefined);
      await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Over the bound: reads the directory again (other processes add files and refresh the ones
   * they use), then removes the least recently used files until the cache holds at most 90% of
   * maxBytes (so that the next writes do not each read the directory again).
   */
  private async evict(): Promise<void> {
    if (this.total <= this.maxBytes) return;
    this.entries.clear();
    this.total = 0;
    this.scanned = undefined;
    await this.scan();
    const target = Math.floor(this.maxBytes * 0.9);
    const byAge = [...this.entries].sort((a, b) => a[1].mtimeMs - b[1].mtimeMs);
    for (const [rel] of byAge) {
      if (this.total <= target) break;
      if (await this.remove(rel)) this.stats.evicted++;
    }
  }

  private dropEntry(rel: string): void {
    const e = this.entries.get(rel);
    if (e !== undefined) {
      this.total -= e.size;
      this.entries.delete(rel);
    }
    this.touched.delete(rel);
    if (rel.startsWith('packs/')) {
      const name = rel.slice('packs/'.length);
      const m = this.memory.get(name);
      if (m !== undefined) {
        this.memoryBytes -= m.length;
        this.memory.delete(name);
      }
    }
  }

  /** Removes a cached file; true when there was one. */
  private async remove(rel: string): Promise<boolean> {
    this.dropEntry(rel);
    try {
      await fsp.unlink(path.join(this.root!, rel));
      return true;
    } catch (err) {
      if (!isEnoent(err)) this.stats.errors++;
      return false;
    }
  }

  private async forget(h: Handle): Promise<void> {
    const d = DIRS[h.type];
    if (d === undefined || this.root === undefined) return;
    await this.scan();
    await this.remove(`${d}/${h.name}`);
  }

  /** A whole tree pack: from memory, the cache file, or downloaded (and cached when it matches its name). */
  private treePack(h: Handle, rel: string): Promise<Buffer> {
    const m = this.memory.get(h.name);
    if (m !== undefined) return Promise.resolve(m);
    let p = this.inflight.get(h.name);
    if (p === undefined) {
      p = (async () => {
        await this.scan();
        let data = await this.readVerified(rel, h.name);
        if (data === undefined) {
          this.stats.misses++;
          data = await this.inner.get(h);
          await this.store(rel, h.name, data);
        }
        this.remember(h.name, data);
        return data;
      })().finally(() => this.inflight.delete(h.name));
      this.inflight.set(h.name, p);
    }
    return p;
  }

  private remember(name: string, data: Buffer): void {
    if (data.length > MEMORY_BYTES || this.memory.has(name)) return;
    this.memory.set(name, data);
    this.memoryBytes += data.length;
    for (const [n, b] of this.memory) {
      if (this.memoryBytes <= MEMORY_BYTES) break;
      this.memory.delete(n);
      this.memoryBytes -= b.length;
    }
  }

  exists(): Promise<boolean> {
    return this.inner.exists();
  }
  create(): Promise<void> {
    return this.inner.create();
  }

  async put(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    await this.inner.put(h, data);
    const rel = this.relOf(h);
    if (rel !== undefined) await this.store(rel, h.name, joinParts(data));
  }

  async get(h: Handle, range?: { offset: number; length: number }, into?: Buffer): Promise<Buffer> {
    const rel = this.relOf(h);
    if (rel === undefined) return this.inner.get(h, range, into);
    if (h.type === 'pack') {
      const whole = await this.treePack(h, rel);
      if (range === undefined) return Buffer.from(whole);
      // out of bounds: the repository's own answer (its error)
      if (range.offset + range.length > whole.length) return this.inner.get(h, range, into);
      this.stats.hits++;
      const out = into !== undefined && into.length >= range.length ? into.subarray(0, range.length) : Buffer.allocUnsafe(range.length);
      whole.copy(out, 0, range.offset, range.offset + range.length);
      return out;
    }
    if (range !== undefined) return this.inner.get(h, range, into);
    await this.scan();
    const cached = await this.readVerified(rel, h.name);
    if (cached !== undefined) {
      this.stats.hits++;
      return cached;
    }
    this.stats.misses++;
    const data = await this.inner.get(h);
    await this.store(rel, h.name, data);
    return data;
  }

  stat(h: Handle): Promise<FileInfo> {
    return this.inner.stat(h);
  }

  /** A listing of index/ or snapshots/ that ran to its end removes the cached files it did not yield. */
  list(type: FileType): AsyncIterable<FileInfo> {
    const d = DIRS[type];
    if (d === undefined || type === 'pack' || this.root === undefined) return this.inner.list(type);
    return {
      [Symbol.asyncIterator]: (): AsyncIterator<FileInfo> => {
        const since = Date.now();
        const seen = new Set<string>();
        const it = this.inner.list(type)[Symbol.asyncIterator]();
        return {
          next: async () => {
            const r = await it.next();
            if (r.done === true) await this.dropStale(d, seen, since);
            else seen.add(r.value.name);
            return r;
          },
          return: async (value?: unknown) => (it.return !== undefined ? it.return(value) : { done: true, value: undefined }),
        };
      },
    };
  }

  private async dropStale(dir: string, seen: Set<string>, since: number): Promise<void> {
    await this.scan();
    for (const [rel, e] of [...this.entries]) {
      if (!rel.startsWith(`${dir}/`) || e.mtimeMs >= since || seen.has(rel.slice(dir.length + 1))) continue;
      if (await this.remove(rel)) this.stats.stale++;
    }
  }

  async delete(h: Handle): Promise<void> {
    await this.inner.delete(h);
    if (h.type === 'pack') this.treePacks.delete(h.name);
    await this.forget(h);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
