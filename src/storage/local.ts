/**
 * The local-filesystem backend, meshback's embedded default.
 *
 * The repository directory holds the layout of storage/layout.ts (config, keys/, data/XX/,
 * parity/XX/, index/, snapshots/, locks/).
 *
 * A file is written to a temporary name in its final directory, fsynced, then hard-linked
 * to its final name (link(2) fails if the name exists, so nothing is ever overwritten) and
 * the temporary name removed; the directory is fsynced so the new entry is durable.
 * replace() (repairs only) renames a complete, fsynced temporary file over the old one.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp, constants as fsc, unlinkSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import type { Backend, BlobWriter, FileInfo, FileType, Handle } from './backend.ts';
import { REPLACEABLE, handleString, joinParts } from './backend.ts';
import { LAYOUT_DIRS, isSharded, layoutPath } from './layout.ts';
import { BackendError, NoSpaceError, NotFoundError, errnoCode, errMessage, isTransientErrno } from '../errors/index.ts';


const TMP_PREFIX = '.tmp-';

export class LocalBackend implements Backend {
  readonly location: string;
  /**
   * A disk serves many requests at once (its queue, the page cache): the connection limit of the
   * storage stack is there to stop runaway fan-out (EMFILE), not to throttle.
   */
  readonly properties = { connections: 32 };
  private readonly root: string;
  private readonly madeDirs = new Set<string>();

  constructor(root: string) {
    this.root = path.resolve(root);
    this.location = this.root;
  }

  private pathOf(h: Handle): string {
    return path.join(this.root, layoutPath(h));
  }

  private wrap(err: unknown, what: string): Error {
    const code = errnoCode(err);
    if (code === 'ENOSPC' || code === 'EDQUOT') return new NoSpaceError(`the repository ${this.root}`, err);
    if (code === 'ENOENT') return new NotFoundError(`${what} does not exist in the repository at ${this.root}`);
    return new BackendError(`storage error on ${what} in ${this.root}: ${errMessage(err)}`, { cause: err, retryable: isTransientErrno(code) });
  }

  async exists(): Promise<boolean> {
    try {
      await fsp.stat(path.join(this.root, 'config'));
      return true;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return false;
      throw this.wrap(err, 'config');
    }
  }

  async create(): Promise<void> {
    try {
      await fsp.mkdir(this.root, { recursive: true, mode: 0o700 });
      const entries = await fsp.readdir(this.root);
      if (entries.includes('config')) {
        throw new BackendError(`a repository already exists at ${this.root}`, { retryable: false });
      }
      for (const d of ['keys', 'data', 'index', 'snapshots', 'locks', 'parity']) {
        await fsp.mkdir(path.join(this.root, d), { recursive: true, mode: 0o700 });
      }
      // Key files without a config: left by an init that died before writing its config (or the
      // config was lost). They would shadow the new key, but they may be the only copy of an old
      // master key, so they are moved aside, never deleted.
      const stale = (await fsp.readdir(path.join(this.root, 'keys'))).filter((k) => !k.startsWith('.'));
      if (stale.length > 0) {
        const aside = path.join(this.root, `keys-orphaned-${new Date().toISOString().replace(/[:.]/g, '-')}`);
        await fsp.mkdir(aside, { mode: 0o700 });
        for (const k of stale) await fsp.rename(path.join(this.root, 'keys', k), path.join(aside, k));
      }
      for (let i = 0; i < 256; i++) {
        await fsp.mkdir(path.join(this.root, 'data', i.toString(16).padStart(2, '0')), { recursive: true, mode: 0o700 });
      }
      await fsyncDir(this.root);
    } catch (err) {
      if (err instanceof BackendError) throw err;
      throw this.wrap(err, 'repository directory');
    }
  }

  async put(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const final = this.pathOf(h);
    const dir = path.dirname(final);
    const tmp = path.join(dir, TMP_PREFIX + randomBytes(8).toString('hex'));
    try {
      if (!this.madeDirs.has(dir)) {
        await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
        this.madeDirs.add(dir);
      }
      const fh = await fsp.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
      try {
        if (data instanceof Uint8Array) await fh.writeFile(data);
        else await writeAll(fh, data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await this.publish(tmp, h, async () => joinParts(data));
    } catch (err) {
      await fsp.unlink(tmp).catch(() => undefined);
      if (err instanceof BackendError) throw err;
      throw this.wrap(err, handleString(h));
    }
  }

  /**
   * Gives a complete, fsynced temporary file its final name: link(2) never overwrites; if the
   * name exists, the same bytes make it a no-op (a retry) and different bytes are refused.
   * Then the temporary name goes and the directory is fsynced.
   */
  private async publish(tmp: string, h: Handle, content: () => Promise<Buffer>): Promise<void> {
    const final = this.pathOf(h);
    try {
      await fsp.link(tmp, final);
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
      const [existing, mine] = await Promise.all([fsp.readFile(final), content()]);
      if (!existing.equals(mine)) {
        throw new BackendError(`refusing to overwrite ${handleString(h)} in ${this.root}: a different file of that name exists`, { retryable: false });
      }
    }
    await fsp.unlink(tmp);
    await fsyncDir(path.dirname(final));
  }

  async replace(h: Handle, data: Uint8Array): Promise<void> {
    if (!REPLACEABLE.includes(h.type)) throw new BackendError(`replace is only for repairs of packs and parity files, not ${h.type}`, { retryable: false });
    const final = this.pathOf(h);
    const dir = path.dirname(final);
    const tmp = path.join(dir, TMP_PREFIX + randomBytes(8).toString('hex'));
    try {
      await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
      const fh = await fsp.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsp.rename(tmp, final);
      await fsyncDir(dir);
    } catch (err) {
      await fsp.unlink(tmp).catch(() => undefined);
      throw this.wrap(err, handleString(h));
    }
  }

  async openWriter(type: FileType): Promise<BlobWriter> {
    const dir = path.join(this.root, LAYOUT_DIRS[type]);
    const tmp = path.join(dir, TMP_PREFIX + randomBytes(8).toString('hex'));
    let fh: FileHandle;
    try {
      fh = await fsp.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
    } catch (err) {
      throw this.wrap(err, `${type} (new file)`);
    }
    let chain: Promise<void> = Promise.resolve();
    let queued = 0;
    let closed = false;
    const close = async (): Promise<void> => {
      if (closed) return;
      closed = true;
      await fh.close();
    };
    return {
      write: (parts) => {
        const n = parts.reduce((a, p) => a + p.byteLength, 0);
        queued += n;
        chain = chain.then(async () => {
          await writeAll(fh, parts);
          queued -= n;
        });
        chain.catch(() => undefined); // surfaced by drain() and commit()
      },
      get queued() {
        return queued;
      },
      drain: async () => {
        try {
          await chain;
        } catch (err) {
          throw this.wrap(err, `${type} (new file)`);
        }
      },
      commit: async (name) => {
        const h = { type, name };
        try {
          await chain;
          await fh.sync();
          await close();
          await this.publish(tmp, h, () => fsp.readFile(tmp));
        } catch (err) {
          await close().catch(() => undefined);
          await fsp.unlink(tmp).catch(() => undefined);
          if (err instanceof BackendError) throw err;
          throw this.wrap(err, handleString(h));
        }
      },
      abort: async () => {
        await chain.catch(() => undefined);
        await close().catch(() => undefined);
        await fsp.unlink(tmp).catch(() => undefined);
      },
    };
  }

  async get(h: Handle, range?: { offset: number; length: number }, into?: Buffer): Promise<Buffer> {
    const p = this.pathOf(h);
    try {
      if (range === undefined && into === undefined) return await fsp.readFile(p);
      const fh = await fsp.open(p, 'r');
      try {
        if (range === undefined) {
          // the whole file into the caller's buffer when it fits (to its end as read: packs do not change)
          const { size } = await fh.stat();
          if (into === undefined || size > into.length) return await fh.readFile();
          let got = 0;
          for (;;) {
            const { bytesRead } = await fh.read(into, got, into.length - got, got);
            if (bytesRead === 0 || got + bytesRead === into.length) return into.subarray(0, got + bytesRead);
            got += bytesRead;
          }
        }
        const buf = into !== undefined && into.length >= range.length ? into.subarray(0, range.length) : Buffer.allocUnsafe(range.length);
        let got = 0;
        while (got < range.length) {
          const { bytesRead } = await fh.read(buf, got, range.length - got, range.offset + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        if (got !== range.length) {
          throw new BackendError(`${handleString(h)} is shorter than expected (wanted bytes ${range.offset}..${range.offset + range.length}, file ends earlier): the file is truncated; run 'meshback check --read-data'`, { retryable: false, data: { file: handleString(h) } });
        }
        return buf;
      } finally {
        await fh.close();
      }
    } catch (err) {
      if (err instanceof BackendError) throw err;
      throw this.wrap(err, handleString(h));
    }
  }

  async stat(h: Handle): Promise<FileInfo> {
    try {
      const st = await fsp.stat(this.pathOf(h));
      return { name: h.name, size: st.size };
    } catch (err) {
      throw this.wrap(err, handleString(h));
    }
  }

  /**
   * Removes temporary files (`.tmp-*`, left by a process killed inside a write) not modified for
   * olderThanMs. Only for callers that hold the repository exclusively (prune): a live writer's
   * temporary file is modified as it grows. Returns how many were removed, and their bytes.
   */
  async removeTemporary(olderThanMs: number): Promise<{ files: number; bytes: number }> {
    const now = Date.now();
    const dirs: string[] = [this.root];
    for (const t of Object.keys(LAYOUT_DIRS) as FileType[]) {
      if (t === 'config') continue;
      const base = path.join(this.root, LAYOUT_DIRS[t]);
      dirs.push(base);
      if (isSharded(t)) for (const d of await this.readdirSafe(base)) if (!d.startsWith('.')) dirs.push(path.join(base, d));
    }
    let files = 0;
    let bytes = 0;
    for (const dir of dirs) {
      for (const name of await this.readdirSafe(dir)) {
        if (!name.startsWith(TMP_PREFIX)) continue;
        const p = path.join(dir, name);
        try {
          const st = await fsp.lstat(p);
          if (!st.isFile() || now - st.mtimeMs < olderThanMs) continue;
          await fsp.unlink(p);
          files++;
          bytes += st.size;
        } catch (err) {
          if (errnoCode(err) === 'ENOENT') continue;
          throw this.wrap(err, p);
        }
      }
    }
    return { files, bytes };
  }

  async *list(type: FileType): AsyncIterable<FileInfo> {
    if (type === 'config') {
      if (await this.exists()) yield await this.stat({ type, name: 'config' });
      return;
    }
    const base = path.join(this.root, LAYOUT_DIRS[type]);
    const dirs = isSharded(type) ? await this.readdirSafe(base).then((ds) => ds.filter((d) => !d.startsWith('.')).sort().map((d) => path.join(base, d))) : [base];
    for (const dir of dirs) {
      const names = (await this.readdirSafe(dir)).filter((n) => !n.startsWith('.')).sort();
      // stat in parallel, bounded
      for (let i = 0; i < names.length; i += 64) {
        const batch = names.slice(i, i + 64);
        const infos = await Promise.all(
          batch.map(async (name) => {
            try {
              const st = await fsp.lstat(path.join(dir, name));
              return st.isFile() ? { name, size: st.size } : undefined;
            } catch (err) {
              if (errnoCode(err) === 'ENOENT') return undefined;
              throw this.wrap(err, `${type}/${name}`);
            }
          }),
        );
        for (const info of infos) if (info !== undefined) yield info;
      }
    }
  }

  private async readdirSafe(dir: string): Promise<string[]> {
    try {
      return await fsp.readdir(dir);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw this.wrap(err, dir);
    }
  }

  /**
   * Removes a file durably: the directory is fsynced, so a deletion that returned is not undone
   * by a crash (prune relies on this: old index files are gone for good before their packs go).
   */
  async delete(h: Handle): Promise<void> {
    const p = this.pathOf(h);
    try {
      await fsp.unlink(p);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return;
      throw this.wrap(err, handleString(h));
    }
    try {
      await fsyncDir(path.dirname(p));
    } catch (err) {
      throw this.wrap(err, handleString(h));
    }
  }

  deleteSync(h: Handle): void {
    try {
      unlinkSync(this.pathOf(h));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return;
      throw this.wrap(err, handleString(h));
    }
  }

  async close(): Promise<void> {
    /* nothing held open */
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes parts one after another, in groups small enough for one writev(2), retrying short writes. */
async function writeAll(fh: FileHandle, parts: readonly Uint8Array[]): Promise<void> {
  const GROUP = 256;
  for (let i = 0; i < parts.length; i += GROUP) {
    let group = parts.slice(i, i + GROUP);
    let want = group.reduce((a, p) => a + p.byteLength, 0);
    while (want > 0) {
      const { bytesWritten } = await fh.writev(group);
      want -= bytesWritten;
      if (want === 0) break;
      // short write: drop what was written and go on with the rest
      let skip = bytesWritten;
      const rest: Uint8Array[] = [];
      for (const p of group) {
        if (skip >= p.byteLength) skip -= p.byteLength;
        else {
          rest.push(p.subarray(skip));
          skip = 0;
        }
      }
      group = rest;
    }
  }
}
