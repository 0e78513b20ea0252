/**
 * The metadata cache (src/storage/cache.ts) over a real in-memory backend, with the calls that
 * reach that backend counted (CountingBackend): hits make no GET, a damaged cached file is
 * detected and fetched again, the size bound holds (least recently used first), the cache
 * directory may vanish mid-way, several "processes" (CacheBackends on one directory) read and
 * evict at once, stale files go; and the repository's seam: tree packs are read from the cache.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CacheBackend } from '../../src/storage/cache.ts';
import { MemoryBackend } from '../../src/storage/memory.ts';
import { CountingBackend, formatRequests, requestCounter } from '../../src/storage/requests.ts';
import { stack, storageReport } from '../../src/storage/stack.ts';
import type { Backend, FileType } from '../../src/storage/backend.ts';
import { Repository } from '../../src/repository/index.ts';
import { flipFileByte, prngBytes, removeDir, tempDir } from './helpers.ts';

const REPO_ID = '0123456789abcdef0123456789abcdef';
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await removeDir(d);
});

async function cacheDir(): Promise<string> {
  const d = await tempDir('cache');
  dirs.push(d);
  return d;
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** A file of `n` bytes named by its hash, stored in `mem`. */
async function putFile(mem: Backend, type: FileType, seed: string, n = 1000): Promise<{ name: string; data: Buffer }> {
  const data = prngBytes(seed, n);
  const name = sha(data);
  await mem.put({ type, name }, data);
  return { name, data };
}

function setup(dir: string, opts: { maxBytes?: number; mem?: MemoryBackend } = {}): { mem: MemoryBackend; counted: CountingBackend; cache: CacheBackend; gets: () => number } {
  const mem = opts.mem ?? new MemoryBackend();
  const counted = new CountingBackend(mem);
  const cache = new CacheBackend(counted, { dir, local: true, ...(opts.maxBytes !== undefined ? { maxBytes: opts.maxBytes } : {}) });
  cache.bind(REPO_ID);
  return { mem, counted, cache, gets: () => counted.requests.snapshot().counts.GET };
}

describe('metadata cache', () => {
  it('serves index and snapshot files from the cache: a second read, and a second process, make no GET', async () => {
    const dir = await cacheDir();
    const a = setup(dir);
    const idx = await putFile(a.mem, 'index', 'i1');
    const snap = await putFile(a.mem, 'snapshot', 's1');
    assert.deepEqual(await a.cache.get({ type: 'index', name: idx.name }), idx.data);
    assert.deepEqual(await a.cache.get({ type: 'snapshot', name: snap.name }), snap.data);
    assert.equal(a.gets(), 2);
    assert.deepEqual(await a.cache.get({ type: 'index', name: idx.name }), idx.data);
    assert.equal(a.gets(), 2, 'a hit makes no GET');
    assert.deepEqual({ hits: a.cache.stats.hits, misses: a.cache.stats.misses }, { hits: 1, misses: 2 });
    // another process: the same directory, a new CacheBackend
    const b = setup(dir, { mem: a.mem });
    assert.deepEqual(await b.cache.get({ type: 'snapshot', name: snap.name }), snap.data);
    assert.deepEqual(await b.cache.get({ type: 'index', name: idx.name }), idx.data);
    assert.equal(b.gets(), 0);
    assert.ok((await fsp.readFile(path.join(dir, 'CACHEDIR.TAG'), 'utf8')).startsWith('Signature: 8a477f597d28d172789f06886806bc55'));
    assert.equal(await fsp.readFile(path.join(dir, REPO_ID, 'version'), 'utf8'), '1\n');
  });

  it('does not cache before bind(), nor files of other types (keys, config, locks, data packs)', async () => {
    const dir = await cacheDir();
    const mem = new MemoryBackend();
    const counted = new CountingBackend(mem);
    const cache = new CacheBackend(counted, { dir, local: true });
    const idx = await putFile(mem, 'index', 'unbound');
    await cache.get({ type: 'index', name: idx.name });
    await cache.get({ type: 'index', name: idx.name });
    assert.equal(counted.requests.snapshot().counts.GET, 2);
    cache.bind(REPO_ID);
    const key = await putFile(mem, 'key', 'k');
    const pack = await putFile(mem, 'pack', 'data pack');
    for (let i = 0; i < 2; i++) {
      await cache.get({ type: 'key', name: key.name });
      await cache.get({ type: 'pack', name: pack.name }, { offset: 10, length: 20 });
    }
    assert.equal(counted.requests.snapshot().counts.GET, 6);
    assert.deepEqual(counted.requests.snapshot().getsByType, { index: 2, key: 2, pack: 2 });
  });

  it('verifies on read: a damaged or truncated cached file is removed and fetched again', async () => {
    const dir = await cacheDir();
    const a = setup(dir);
    const idx = await putFile(a.mem, 'index', 'damage');
    await a.cache.get({ type: 'index', name: idx.name });
    const file = path.join(dir, REPO_ID, 'index', idx.name);
    await flipFileByte(file, 500);
    assert.deepEqual(await a.cache.get({ type: 'index', name: idx.name }), idx.data);
    assert.equal(a.gets(), 2, 'fetched again');
    assert.equal(a.cache.stats.damaged, 1);
    assert.equal(sha(await fsp.readFile(file)), idx.name, 'the cached copy is whole again');
    await fsp.truncate(file, 100);
    const b = setup(dir, { mem: a.mem });
    assert.deepEqual(await b.cache.get({ type: 'index', name: idx.name }), idx.data);
    assert.equal(b.gets(), 1);
    assert.equal(b.cache.stats.damaged, 1);
    // a file damaged in the repository is returned as it is (the caller reports it) but never cached
    const bad = prngBytes('bad', 300);
    const badName = sha(prngBytes('other', 300));
    await a.mem.put({ type: 'snapshot', name: badName }, bad);
    assert.deepEqual(await b.cache.get({ type: 'snapshot', name: badName }), bad);
    await assert.rejects(fsp.stat(path.join(dir, REPO_ID, 'snapshots', badName)), { code: 'ENOENT' });
  });

  it('reads tree packs whole once, then serves ranges locally; a damaged cached pack is fetched again', async () => {
    const dir = await cacheDir();
    const a = setup(dir);
    const pack = await putFile(a.mem, 'pack', 'tree pack', 200_000);
    a.cache.markTreePacks([pack.name]);
    const h = { type: 'pack' as const, name: pack.name };
    for (let off = 0; off < 200_000; off += 40_000) assert.deepEqual(await a.cache.get(h, { offset: off, length: 1234 }), pack.data.subarray(off, off + 1234));
    assert.equal(a.gets(), 1, 'one GET of the whole pack');
    const into = Buffer.alloc(5000);
    const got = await a.cache.get(h, { offset: 7, length: 100 }, into);
    assert.equal(got.buffer, into.buffer, 'read into the buffer given');
    assert.deepEqual(got, pack.data.subarray(7, 107));
    // past the end: the repository's own error
    await assert.rejects(a.cache.get(h, { offset: 199_990, length: 100 }));
    // another process finds it on disk, verifies it; damaged, it is fetched again
    const b = setup(dir, { mem: a.mem });
    b.cache.markTreePacks([pack.name]);
    assert.deepEqual(await b.cache.get(h, { offset: 100, length: 10 }), pack.data.subarray(100, 110));
    assert.equal(b.gets(), 0);
    await flipFileByte(path.join(dir, REPO_ID, 'packs', pack.name), 150_000);
    const c = setup(dir, { mem: a.mem });
    c.cache.markTreePacks([pack.name]);
    assert.deepEqual(await c.cache.get(h, { offset: 149_990, length: 20 }), pack.data.subarray(149_990, 150_010));
    assert.equal(c.gets(), 1);
    assert.equal(c.cache.stats.damaged, 1);
  });

  it('stays within its size bound, evicting the least recently used files first', async () => {
    const dir = await cacheDir();
    const a = setup(dir, { maxBytes: 10_500 });
    const files: { name: string; data: Buffer }[] = [];
    for (let i = 0; i < 30; i++) files.push(await putFile(a.mem, 'snapshot', `lru${i}`, 1000));
    const keep = files[0]!;
    for (const f of files) {
      assert.deepEqual(await a.cache.get({ type: 'snapshot', name: f.name }), f.data);
      // the first file stays in use: touch it again (another process's hit: a new CacheBackend)
      const other = setup(dir, { mem: a.mem, maxBytes: 10_500 });
      await other.cache.get({ type: 'snapshot', name: keep.name });
      await new Promise((r) => setTimeout(r, 3));
    }
    const names = await fsp.readdir(path.join(dir, REPO_ID, 'snapshots'));
    let bytes = 0;
    for (const n of names) bytes += (await fsp.stat(path.join(dir, REPO_ID, 'snapshots', n))).size;
    assert.ok(bytes <= 10_500, `${bytes} bytes cached`);
    assert.ok(names.length >= 9, `${names.length} files cached`);
    assert.ok(a.cache.stats.evicted >= 19, `${a.cache.stats.evicted} evicted`);
    assert.ok(names.includes(files[29]!.name), 'the newest file is cached');
    assert.ok(!names.includes(files[1]!.name), 'an old unused file is evicted');
    // a file larger than the whole bound is never cached
    const big = await putFile(a.mem, 'index', 'big', 20_000);
    await a.cache.get({ type: 'index', name: big.name });
    await a.cache.get({ type: 'index', name: big.name });
    assert.equal(a.cache.stats.misses, 32);
  });

  it('survives its directory being deleted mid-way: reads fall back to the repository, writes make it again', async () => {
    const dir = await cacheDir();
    const a = setup(dir);
    const fs1: { name: string; data: Buffer }[] = [];
    for (let i = 0; i < 5; i++) fs1.push(await putFile(a.mem, 'index', `del${i}`));
    const pack = await putFile(a.mem, 'pack', 'del pack', 50_000);
    a.cache.markTreePacks([pack.name]);
    for (const f of fs1) await a.cache.get({ type: 'index', name: f.name });
    await fsp.rm(dir, { recursive: true });
    for (const f of fs1) assert.deepEqual(await a.cache.get({ type: 'index', name: f.name }), f.data);
    assert.equal(a.gets(), 10);
    assert.equal(a.cache.stats.errors, 0, 'a missing file is a miss, not an error');
    assert.deepEqual(await a.cache.get({ type: 'pack', name: pack.name }, { offset: 5, length: 5 }), pack.data.subarray(5, 10));
    // in between the write of the temporary file and its rename, too
    await fsp.rm(path.join(dir, REPO_ID), { recursive: true });
    const idx = await putFile(a.mem, 'index', 'after');
    await a.cache.get({ type: 'index', name: idx.name });
    assert.equal(sha(await fsp.readFile(path.join(dir, REPO_ID, 'index', idx.name))), idx.name);
    const b = setup(dir, { mem: a.mem });
    await b.cache.get({ type: 'index', name: idx.name });
    assert.equal(b.gets(), 0);
  });

  it('lets several processes read, write and evict the same directory at once; every read is right', async () => {
    const dir = await cacheDir();
    const mem = new MemoryBackend();
    const files: { name: string; data: Buffer }[] = [];
    for (let i = 0; i < 40; i++) files.push(await putFile(mem, i % 2 === 0 ? 'index' : 'snapshot', `conc${i}`, 2000 + i));
    const procs = [0, 1, 2, 3].map(() => setup(dir, { mem, maxBytes: 30_000 }));
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const reader = async (p: (typeof procs)[number]): Promise<void> => {
      for (let i = 0; i < 100; i++) {
        const k = rnd(files.length);
        const type: FileType = k % 2 === 0 ? 'index' : 'snapshot';
        assert.ok((await p.cache.get({ type, name: files[k]!.name })).equals(files[k]!.data), 'right bytes');
      }
    };
    const deleter = async (): Promise<void> => {
      for (let i = 0; i < 8; i++) {
        await new Promise((r) => setTimeout(r, 10));
        await fsp.rm(path.join(dir, REPO_ID, i % 2 === 0 ? 'index' : 'snapshots'), { recursive: true, force: true, maxRetries: 20, retryDelay: 1 });
      }
    };
    const jobs = [...procs.map(reader), deleter()];
    await Promise.all(jobs);
    const hits = procs.reduce((n, p) => n + p.cache.stats.hits, 0);
    assert.ok(hits > 0, 'some reads were hits');
    assert.equal(procs.reduce((n, p) => n + p.cache.stats.damaged, 0), 0, 'no reader saw a partial file');
    const left = await fsp.readdir(path.join(dir, REPO_ID, 'tmp'));
    assert.deepEqual(left, [], 'no temporary file left');
  });

  it('removes the cached files a complete listing no longer has, and those deleted through it', async () => {
    const dir = await cacheDir();
    const a = setup(dir);
    const s1 = await putFile(a.mem, 'snapshot', 'st1');
    const s2 = await putFile(a.mem, 'snapshot', 'st2');
    await a.cache.get({ type: 'snapshot', name: s1.name });
    await a.cache.get({ type: 'snapshot', name: s2.name });
    await new Promise((r) => setTimeout(r, 5));
    await a.mem.delete({ type: 'snapshot', name: s1.name }); // forgotten by another machine
    const it = a.cache.list('snapshot')[Symbol.asyncIterator]();
    await it.next();
    await it.return!();
    assert.equal((await fsp.readdir(path.join(dir, REPO_ID, 'snapshots'))).length, 2, 'an unfinished listing removes nothing');
    const listed: string[] = [];
    for await (const f of a.cache.list('snapshot')) listed.push(f.name);
    assert.deepEqual(listed, [s2.name]);
    assert.deepEqual(await fsp.readdir(path.join(dir, REPO_ID, 'snapshots')), [s2.name]);
    assert.equal(a.cache.stats.stale, 1);
    await a.cache.delete({ type: 'snapshot', name: s2.name });
    assert.deepEqual(await fsp.readdir(path.join(dir, REPO_ID, 'snapshots')), []);
  });
});

describe('metadata cache in a repository', () => {
  it('is bound to the repository id; the trees and indexes it writes are read back with no GET by the next process', async () => {
    const dir = await cacheDir();
    const mem = new MemoryBackend();
    const open = (): Backend => stack(mem, { count: true, cache: { dir, local: true }, retry: false });
    const b1 = open();
    const repo = await Repository.init(b1, 'pw', { packSize: 64 * 1024 });
    const trees: string[] = [];
    for (let i = 0; i < 50; i++) trees.push(await repo.saveTree(Buffer.from(JSON.stringify({ nodes: [], i }))));
    await repo.store.flush();
    assert.ok((await fsp.readdir(path.join(dir, repo.config.id, 'packs'))).length >= 1, 'the tree pack written is cached');
    assert.ok((await fsp.readdir(path.join(dir, repo.config.id, 'index'))).length >= 1, 'the index written is cached');
    const b2 = open();
    const again = await Repository.open(b2, 'pw');
    for (const t of trees) assert.ok(again.store.index.has(Buffer.from(t, 'hex')));
    for (const t of trees) await again.store.load(Buffer.from(t, 'hex'), 'tree');
    const r = storageReport(b2);
    assert.equal(r.requests!.getsByType.pack ?? 0, 0, formatRequests(r.requests!));
    assert.equal(r.requests!.getsByType.index ?? 0, 0, formatRequests(r.requests!));
    assert.ok(r.cache!.hits >= 51, `hits ${r.cache!.hits}`);
    assert.equal(r.cache!.dir, path.join(dir, repo.config.id));
    assert.equal(requestCounter(b2), requestCounter(b2), 'one counter per stack');
  });

  it('a local backend gets no cache unless asked', () => {
    const s = stack(new MemoryBackend(), { count: true, cache: { dir: '/nonexistent' } });
    assert.equal(storageReport(s).cache, undefined);
    assert.equal(storageReport(s).remote, false);
    assert.ok(storageReport(s).requests !== undefined);
  });
});

describe('request counting', () => {
  it('counts the calls that reach a backend by kind, GETs by type, and formats them as S3 bills them', async () => {
    const dir = await cacheDir();
    const { LocalBackend } = await import('../../src/storage/local.ts');
    const s = stack(new LocalBackend(path.join(dir, 'repo')), { count: true, retry: false });
    await s.create();
    const data = prngBytes('count', 5000);
    await s.put({ type: 'index', name: sha(data) }, data);
    const w = await s.openWriter!('pack');
    w.write([data]);
    await w.drain();
    await w.commit(sha(data));
    await s.get({ type: 'pack', name: sha(data) }, { offset: 0, length: 100 });
    await s.get({ type: 'index', name: sha(data) });
    await s.stat({ type: 'index', name: sha(data) });
    for await (const f of s.list('index')) void f;
    await s.delete({ type: 'index', name: sha(data) });
    const r = storageReport(s).requests!;
    assert.deepEqual(r.counts, { PUT: 2, GET: 2, HEAD: 1, LIST: 1, DELETE: 1, COPY: 0, OTHER: 1 });
    assert.deepEqual(r.getsByType, { pack: 1, index: 1 });
    assert.equal(r.bytesDown, 5100);
    assert.equal(formatRequests(r), '2 PUT, 2 GET (pack 1, index 1), 1 HEAD, 1 LIST, 1 DELETE, 1 OTHER');
    assert.equal(formatRequests({ counts: { PUT: 1204, GET: 310, HEAD: 12, LIST: 4, DELETE: 0, COPY: 0, OTHER: 0 }, getsByType: {}, bytesDown: 0 }), '1,204 PUT, 310 GET, 12 HEAD, 4 LIST, 0 DELETE');
  });
});
