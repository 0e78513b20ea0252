process.env.MESHBACK_TEST_SCRYPT_N = '1024';

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBackend } from '../../src/storage/memory.ts';
import { BLOB_DATA, BLOB_TREE } from '../../src/content/index-table.ts';
import { SEAL_OVERHEAD } from '../../src/crypto/index.ts';
import { IntegrityError, MeshbackError } from '../../src/errors/index.ts';
import { Repository } from '../../src/repository/index.ts';
import { MAX_PACK_BLOBS } from '../../src/content/store.ts';
import { check } from '../../src/checker/index.ts';
import { prngBytes } from './helpers.ts';

const PW = 'correct horse battery staple';
const KiB = 1024;

async function newRepo(): Promise<{ backend: MemoryBackend; repo: Repository }> {
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend, PW, { packSize: 64 * KiB });
  return { backend, repo };
}

async function listNames(b: MemoryBackend, type: 'pack' | 'index' | 'key'): Promise<string[]> {
  const out: string[] = [];
  for await (const f of b.list(type)) out.push(f.name);
  return out;
}

function compressible(seed: number, n: number): Buffer {
  const line = Buffer.from(`[2024-03-01T00:00:${String(seed % 60).padStart(2, '0')}Z] "GET /api/v1/items HTTP/1.1" 200 1234 upstream=10.0.0.${seed % 250}\n`);
  const b = Buffer.alloc(n);
  for (let o = 0; o < n; o += line.length) line.copy(b, o);
  return b;
}

const codeIs = (code: string) => (err: unknown): boolean => err instanceof MeshbackError && err.code === code;

describe('ContentStore', () => {
  it('stores blobs in several packs and loads them back byte-identical after reopening', async () => {
    const { backend, repo } = await newRepo();
    const blobs: Buffer[] = [];
    for (let i = 0; i < 60; i++) blobs.push(i % 3 === 0 ? compressible(i, 1000 + i * 300) : prngBytes(`blob-${i}`, 1 + i * 411));
    blobs.push(Buffer.alloc(0), Buffer.from('x'));
    const ids = blobs.map((b) => repo.store.id(b));
    for (const [i, b] of blobs.entries()) assert.equal(await repo.store.add(BLOB_DATA, ids[i]!, b), true);
    const treeBlob = Buffer.from(JSON.stringify({ nodes: [] }));
    const treeId = repo.store.id(treeBlob);
    await repo.store.add(BLOB_TREE, treeId, treeBlob);
    await repo.store.flush();
    assert.ok(repo.store.stats.packsWritten >= 3, `${repo.store.stats.packsWritten} packs for ~750 KiB at 64 KiB per pack`);
    assert.equal((await listNames(backend, 'pack')).length, repo.store.stats.packsWritten);
    assert.equal((await listNames(backend, 'index')).length, 1);

    const again = await Repository.open(backend, PW);
    assert.equal(again.store.index.size, blobs.length + 1);
    for (const [i, b] of blobs.entries()) assert.ok((await again.store.load(ids[i]!)).equals(b), `blob ${i}`);
    assert.deepEqual(await again.store.load(treeId), treeBlob);
    assert.equal(again.store.index.lookup(treeId)?.type, BLOB_TREE);
    // data and tree blobs go to different packs
    assert.notEqual(again.store.index.lookup(treeId)?.pack, again.store.index.lookup(ids[0]!)?.pack);
  });

  it('closes a pack at MAX_PACK_BLOBS blobs, however small they are', async () => {
    const backend = new MemoryBackend();
    const repo = await Repository.init(backend, PW, { packSize: 64 * 1024 * 1024 });
    const n = MAX_PACK_BLOBS + 10;
    const ids: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const b = Buffer.from(`tiny file ${i}`);
      ids.push(repo.store.id(b));
      assert.equal(await repo.store.add(BLOB_DATA, ids[i]!, b), true);
    }
    await repo.store.flush();
    assert.equal(repo.store.stats.packsWritten, 2, 'one full pack of MAX_PACK_BLOBS blobs and one of the rest');
    const again = await Repository.open(backend, PW);
    assert.equal(again.store.index.size, n);
    assert.deepEqual(await again.store.load(ids[n - 1]!), Buffer.from(`tiny file ${n - 1}`));
    assert.notEqual(again.store.index.lookup(ids[0]!)?.pack, again.store.index.lookup(ids[n - 1]!)?.pack);
  });

  it('loads blobs in the same session after flush, and a second flush adds a second index', async () => {
    const { backend, repo } = await newRepo();
    const a = prngBytes('a', 5000);
    await repo.store.add(BLOB_DATA, repo.store.id(a), a);
    await repo.store.flush();
    assert.deepEqual(await repo.store.load(repo.store.id(a)), a);
    const b = prngBytes('b', 5000);
    await repo.store.add(BLOB_DATA, repo.store.id(b), b);
    await repo.store.flush();
    await repo.store.flush(); // nothing new: no empty index
    assert.equal((await listNames(backend, 'index')).length, 2);
    const again = await Repository.open(backend, PW);
    assert.deepEqual(await again.store.load(repo.store.id(b)), b);
    assert.deepEqual(await again.store.load(repo.store.id(a)), a);
  });

  it('deduplicates: the same id is stored once, within a session and across sessions', async () => {
    const { backend, repo } = await newRepo();
    const data = prngBytes('dup', 10 * KiB);
    const id = repo.store.id(data);
    assert.equal(await repo.store.add(BLOB_DATA, id, data), true);
    assert.equal(repo.store.has(id), true, 'pending blobs are known');
    assert.equal(await repo.store.add(BLOB_DATA, id, data), false);
    assert.equal(await repo.store.add(BLOB_DATA, Buffer.from(id), Buffer.from(data)), false);
    await repo.store.flush();
    assert.equal(await repo.store.add(BLOB_DATA, id, data), false);
    assert.equal(repo.store.stats.blobsAdded, 1);
    assert.equal(repo.store.stats.bytesAdded, data.length);
    assert.equal(repo.store.stats.packsWritten, 1);
    const again = await Repository.open(backend, PW);
    assert.equal(await again.store.add(BLOB_DATA, id, data), false);
    await again.store.flush();
    assert.equal(again.store.stats.blobsAdded, 0);
    assert.equal((await listNames(backend, 'pack')).length, 1);
    assert.equal((await listNames(backend, 'index')).length, 1);
  });

  it('compresses compressible data', async () => {
    const { repo } = await newRepo();
    let raw = 0;
    const ids: Buffer[] = [];
    for (let i = 0; i < 20; i++) {
      const b = compressible(i, 20 * KiB);
      raw += b.length;
      ids.push(repo.store.id(b));
      await repo.store.add(BLOB_DATA, ids[i]!, b);
    }
    await repo.store.flush();
    for (const id of ids) {
      const e = repo.store.index.lookup(id)!;
      assert.ok(e.length < e.rawLength / 4, `blob stored in ${e.length} bytes for ${e.rawLength} raw`);
    }
    assert.equal(repo.store.stats.bytesAdded, raw);
    assert.ok(repo.store.stats.bytesStored < raw / 4, `${repo.store.stats.bytesStored} bytes stored for ${raw} raw`);
  });

  it('stores random data raw, with only the framing and encryption overhead', async () => {
    const { repo } = await newRepo();
    let raw = 0;
    const ids: Buffer[] = [];
    for (let i = 0; i < 20; i++) {
      const b = prngBytes(`rnd-${i}`, 20 * KiB);
      raw += b.length;
      ids.push(repo.store.id(b));
      await repo.store.add(BLOB_DATA, ids[i]!, b);
    }
    await repo.store.flush();
    for (const id of ids) {
      const e = repo.store.index.lookup(id)!;
      assert.equal(e.length, e.rawLength + 1 + SEAL_OVERHEAD, 'kind byte + nonce + tag, no compression');
    }
    const stored = repo.store.stats.bytesStored;
    assert.ok(stored >= raw, `${stored} < ${raw}`);
    assert.ok(stored < raw * 1.02, `${stored} bytes stored for ${raw} raw`);
  });

  it('a flipped byte inside a stored pack makes load() throw IntegrityError naming the pack', async () => {
    const { backend, repo } = await newRepo();
    const blobs = [prngBytes('f1', 3000), compressible(1, 30000), prngBytes('f3', 3000)];
    for (const b of blobs) await repo.store.add(BLOB_DATA, repo.store.id(b), b);
    await repo.store.flush();
    const again = await Repository.open(backend, PW);
    for (const b of blobs) {
      const id = repo.store.id(b);
      const e = again.store.index.lookup(id)!;
      const raw = backend.raw({ type: 'pack', name: e.pack })!;
      for (const at of [0, Math.floor(e.length / 2), e.length - 1]) {
        raw[e.offset + at] = raw[e.offset + at]! ^ 0x20;
        await assert.rejects(
          again.store.load(id),
          (err: unknown) => err instanceof IntegrityError && err.message.includes(e.pack) && err.data['pack'] === e.pack,
          `flip at ${at} of a ${e.length}-byte blob`,
        );
        raw[e.offset + at] = raw[e.offset + at]! ^ 0x20;
      }
      assert.ok((await again.store.load(id)).equals(b), 'restoring the byte makes it loadable again');
    }
  });

  it('a missing pack makes load() throw IntegrityError naming the pack', async () => {
    const { backend, repo } = await newRepo();
    const b = prngBytes('gone', 1000);
    await repo.store.add(BLOB_DATA, repo.store.id(b), b);
    await repo.store.flush();
    const pack = repo.store.index.lookup(repo.store.id(b))!.pack;
    await backend.delete({ type: 'pack', name: pack });
    await assert.rejects(repo.store.load(repo.store.id(b)), (err: unknown) => err instanceof IntegrityError && err.message.includes(pack));
  });

  it('load() of an unknown id rejects with NOT_FOUND', async () => {
    const { repo } = await newRepo();
    await assert.rejects(repo.store.load(prngBytes('unknown-id', 32)), codeIs('NOT_FOUND'));
  });

  it('a damaged index file is reported, not fatal: the other index files still load', async () => {
    const { backend, repo } = await newRepo();
    const good = prngBytes('ix-good', 1000);
    await repo.store.add(BLOB_DATA, repo.store.id(good), good);
    await repo.store.flush();
    const [goodIndex] = await listNames(backend, 'index');
    const lost = prngBytes('ix-lost', 1000);
    await repo.store.add(BLOB_DATA, repo.store.id(lost), lost);
    await repo.store.flush();
    const damaged = (await listNames(backend, 'index')).find((n) => n !== goodIndex)!;
    const raw = backend.raw({ type: 'index', name: damaged })!;
    raw[raw.length - 1] = raw[raw.length - 1]! ^ 1;

    const again = await Repository.open(backend, PW);
    assert.deepEqual(again.store.damagedIndexes.map((d) => d.name), [damaged]);
    assert.match(again.store.damagedIndexes[0]!.message, new RegExp(damaged));
    assert.deepEqual([...again.store.indexFiles], [goodIndex]);
    assert.deepEqual(await again.store.load(repo.store.id(good)), good);
    assert.equal(again.store.has(repo.store.id(lost)), false, 'nothing from the damaged index was added');
    await assert.rejects(again.store.load(repo.store.id(lost)), codeIs('NOT_FOUND'));
    const r = await check(again);
    assert.equal(r.ok, false);
    assert.ok(r.findings.some((f) => f.kind === 'index-damaged' && f.message.includes(damaged)), JSON.stringify(r.findings));
  });
});

describe('Repository open and keys', () => {
  it('refuses a wrong password with WRONG_PASSWORD', async () => {
    const { backend } = await newRepo();
    await assert.rejects(Repository.open(backend, 'wrong password'), codeIs('WRONG_PASSWORD'));
    await assert.rejects(Repository.open(backend, PW + ' '), codeIs('WRONG_PASSWORD'));
    const ok = await Repository.open(backend, PW);
    assert.equal(ok.config.packSize, 64 * KiB);
  });

  it('reports REPO_NOT_FOUND for an empty backend, and REPO_EXISTS for a second init', async () => {
    await assert.rejects(Repository.open(new MemoryBackend(), PW), codeIs('REPO_NOT_FOUND'));
    const { backend } = await newRepo();
    await assert.rejects(Repository.init(backend, PW), codeIs('REPO_EXISTS'));
    await assert.rejects(Repository.init(new MemoryBackend(), ''), codeIs('USAGE'));
  });

  it('opens with the same master key and config: ids agree across sessions', async () => {
    const { backend, repo } = await newRepo();
    const again = await Repository.open(backend, PW);
    assert.deepEqual(again.config, repo.config);
    assert.deepEqual(again.key.encKey, repo.key.encKey);
    assert.deepEqual(again.store.id(Buffer.from('x')), repo.store.id(Buffer.from('x')));
    assert.equal(again.keyId, repo.keyId);
  });

  it('a second password opens the repository until its key is removed', async () => {
    const { backend, repo } = await newRepo();
    const id2 = await repo.addKey('second password');
    assert.equal((await repo.listKeys()).length, 2);
    const viaSecond = await Repository.open(backend, 'second password');
    assert.equal(viaSecond.keyId, id2);
    assert.deepEqual(viaSecond.key.idKey, repo.key.idKey, 'both passwords unlock the same master key');
    await repo.removeKey(id2.slice(0, 12));
    assert.deepEqual((await repo.listKeys()).map((k) => k.id), [repo.keyId]);
    await assert.rejects(Repository.open(backend, 'second password'), codeIs('WRONG_PASSWORD'));
    await Repository.open(backend, PW);
  });

  it('refuses to remove the key in use, and keeps it', async () => {
    const { backend, repo } = await newRepo();
    await repo.addKey('other');
    await assert.rejects(repo.removeKey(repo.keyId), codeIs('USAGE'));
    assert.equal((await repo.listKeys()).length, 2);
    await Repository.open(backend, PW);
    await assert.rejects(repo.removeKey('ffffffffffff'), codeIs('NOT_FOUND'));
    await assert.rejects(repo.addKey(''), codeIs('USAGE'));
  });

  it('the key file does not hold the master key in the clear', async () => {
    const { backend, repo } = await newRepo();
    const file = backend.raw({ type: 'key', name: repo.keyId })!;
    assert.equal(file.includes(repo.key.encKey), false);
    assert.equal(file.toString().includes(repo.key.encKey.toString('base64')), false);
    assert.equal(file.toString().includes(PW), false);
  });
});
