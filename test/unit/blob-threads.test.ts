process.env.MESHBACK_TEST_SCRYPT_N = '1024';

/**
 * The blob threads (src/content/blob-threads.ts, blob-worker.ts) of check and restore, and the blob
 * proof they run (decodeBlobSync, verifyBlobSync in src/content/blob.ts): real worker threads, real packs of a real
 * repository (in memory), real damage.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { MemoryBackend } from '../../src/storage/memory.ts';
import { BLOB_DATA } from '../../src/content/index-table.ts';
import { ID_LEN, contentId, seal } from '../../src/crypto/index.ts';
import { IntegrityError } from '../../src/errors/index.ts';
import { Repository } from '../../src/repository/index.ts';
import { KIND_RAW, KIND_ZSTD, sha256hex } from '../../src/content/pack.ts';
import { BlobRef, verifyBlobSync } from '../../src/content/blob.ts';
import { BlobList, BlobThreads } from '../../src/content/blob-threads.ts';
import { check } from '../../src/checker/index.ts';
import { prngBytes } from './helpers.ts';

const PW = 'correct horse battery staple';
const KiB = 1024;

function logLines(n: number): Buffer {
  const line = Buffer.from('[2026-12-06T22:00:00Z] "GET /api/v1/orders HTTP/1.1" 200 512 upstream=10.0.0.7\n');
  const b = Buffer.alloc(n);
  for (let o = 0; o < n; o += line.length) line.copy(b, o);
  return b;
}

/** A repository whose packs hold raw (random) and zstd (log lines) blobs, some over 64 KiB (the size the proof frees at once). */
async function filledRepo(): Promise<{ backend: MemoryBackend; repo: Repository; blobs: Buffer[] }> {
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend, PW, { packSize: 256 * KiB });
  const blobs: Buffer[] = [];
  for (let i = 0; i < 24; i++) blobs.push(i % 2 === 0 ? logLines(3000 + i * 9000) : prngBytes(`v-${i}`, 1000 + i * 7000));
  for (const b of blobs) await repo.store.add(BLOB_DATA, repo.store.id(b), b);
  await repo.store.flush();
  return { backend, repo: await Repository.open(backend, PW), blobs };
}

/** The pack's bytes in shared memory, and its index entries as the verifier takes them. */
function job(repo: Repository, bytes: Buffer, pack: string): { buf: SharedArrayBuffer; blobs: BlobList; n: number } {
  const index = repo.store.index;
  const pn = index.packs.indexOf(pack);
  const { start, order } = index.entriesByPack();
  const n = start[pn + 1]! - start[pn]!;
  const blobs = new BlobList(n);
  for (let k = 0; k < n; k++) {
    const e = order[start[pn]! + k]!;
    blobs.set(k, index.offsetOf(e), index.lengthOf(e), index.rawLengthOf(e), index.idOf(e));
  }
  const buf = new SharedArrayBuffer(bytes.length);
  Buffer.from(buf).set(bytes);
  return { buf, blobs, n };
}

describe('verifyBlobSync', () => {
  const key = Buffer.alloc(32, 7);
  const idKey = Buffer.alloc(32, 9);
  const plain = logLines(200 * KiB);
  const id = contentId(idKey, plain);
  const ref = new BlobRef(id, 'p'.repeat(64), 'chunk');
  const framed = (kind: number, body: Uint8Array): Buffer => Buffer.concat([Buffer.from([kind]), body]);
  const rejects = (sealed: Buffer, rawLength: number, problem: RegExp): void =>
    assert.throws(
      () => verifyBlobSync(key, idKey, sealed, rawLength, ref),
      (err: unknown) => err instanceof IntegrityError && problem.test(err.message) && err.message.startsWith(`chunk ${id.toString('hex').slice(0, 16)} in pack ppp`) && err.data['pack'] === 'p'.repeat(64) && err.data['blob'] === id.toString('hex'),
    );

  it('proves a zstd and a raw blob, and leaves the sealed bytes it was given intact', () => {
    const z = seal(key, framed(KIND_ZSTD, zlib.zstdCompressSync(plain)));
    const r = seal(key, framed(KIND_RAW, plain));
    const before = [sha256hex(z), sha256hex(r)];
    verifyBlobSync(key, idKey, z, plain.length, ref);
    verifyBlobSync(key, idKey, r, plain.length, ref);
    assert.deepEqual([sha256hex(z), sha256hex(r)], before);
  });

  it('names each kind of damage', () => {
    const z = seal(key, framed(KIND_ZSTD, zlib.zstdCompressSync(plain)));
    const flipped = Buffer.from(z);
    flipped[100] = flipped[100]! ^ 1;
    rejects(flipped, plain.length, /failed authentication/);
    rejects(seal(key, framed(KIND_ZSTD, Buffer.from('not a zstd frame at all'))), plain.length, /does not decompress: it is damaged$/);
    rejects(seal(key, framed(7, plain)), plain.length, /has an unknown encoding 7$/);
    rejects(seal(key, framed(KIND_RAW, logLines(200 * KiB - 1))), plain.length, /does not match its id: it is damaged$/);
    // a frame that decompresses to more than the index's raw length
    rejects(z, plain.length - 1, /does not (decompress|match its id)/);
  });
});

describe('BlobThreads (worker threads)', () => {
  it('returns each pack SHA-256 and no failures for intact packs, on two threads at once', async () => {
    const { backend, repo } = await filledRepo();
    const packs = repo.store.index.packs;
    assert.ok(packs.length >= 3, `${packs.length} packs`);
    const v = new BlobThreads(repo.key.encKey, repo.key.idKey, 2);
    try {
      const results = await Promise.all(
        packs.map(async (p) => {
          const bytes = await backend.get({ type: 'pack', name: p });
          const j = job(repo, bytes, p);
          return { p, r: await v.verifyPack(p, j.buf, bytes.length, j.blobs) };
        }),
      );
      for (const { p, r } of results) {
        assert.equal(r.sha, p);
        assert.deepEqual(r.bad, []);
      }
    } finally {
      await v.close();
    }
  });

  it('reports the damaged blob by its number, a blob past the end with no message, and a wrong pack hash', async () => {
    const { backend, repo } = await filledRepo();
    const p = repo.store.index.packs[0]!;
    const bytes = Buffer.from(await backend.get({ type: 'pack', name: p }));
    const j = job(repo, bytes, p);
    assert.ok(j.n >= 2);
    // flip a byte in the middle of the second blob; move the last entry past the pack's end
    const at = j.blobs.entries[3]! + Math.floor(j.blobs.entries[4]! / 2);
    Buffer.from(j.buf)[at] = Buffer.from(j.buf)[at]! ^ 0x40;
    j.blobs.entries[3 * (j.n - 1)] = bytes.length;
    const second = Buffer.from(j.blobs.ids.subarray(ID_LEN, ID_LEN + 8)).toString('hex');
    const last = j.n - 1;
    const v = new BlobThreads(repo.key.encKey, repo.key.idKey, 1);
    try {
      // entries and ids go to the thread (transferred): they are not used here after this
      const r = await v.verifyPack(p, j.buf, bytes.length, j.blobs);
      assert.notEqual(r.sha, p);
      assert.deepEqual(
        r.bad.map((b) => b.k),
        [1, last],
      );
      assert.match(r.bad[0]!.message!, new RegExp(`^blob ${second} in pack ${p} failed authentication`));
      assert.equal(r.bad[1]!.message, null);
    } finally {
      await v.close();
    }
    await assert.rejects(v.verifyPack(p, new SharedArrayBuffer(1), 1, new BlobList(0)), /closed/);
  });

  it('decode: gives back every blob of a piece byte-identical, in entry order, and a damaged one as a failure', async () => {
    const { backend, repo, blobs } = await filledRepo();
    const byId = new Map(blobs.map((b) => [repo.store.id(b).toString('hex'), b]));
    const v = new BlobThreads(repo.key.encKey, repo.key.idKey, 2);
    try {
      let seen = 0;
      for (const p of repo.store.index.packs) {
        const bytes = await backend.get({ type: 'pack', name: p });
        const j = job(repo, bytes, p);
        const ids = Array.from({ length: j.n }, (_, k) => Buffer.from(j.blobs.ids.subarray(k * ID_LEN, (k + 1) * ID_LEN)).toString('hex'));
        const got: number[] = [];
        await v.decode(p, 'chunk', j.buf, bytes.length, j.blobs, (k, plain, failure) => {
          assert.equal(failure, undefined);
          assert.ok(plain!.equals(byId.get(ids[k]!)!), `blob ${k} of pack ${p}`);
          got.push(k);
        });
        assert.deepEqual(got, ids.map((_, k) => k));
        seen += got.length;
      }
      assert.equal(seen, blobs.length);

      const p = repo.store.index.packs[0]!;
      const j = job(repo, await backend.get({ type: 'pack', name: p }), p);
      const at = j.blobs.entries[0]! + 5;
      Buffer.from(j.buf)[at] = Buffer.from(j.buf)[at]! ^ 1;
      const failures: number[] = [];
      await v.decode(p, 'chunk', j.buf, j.buf.byteLength, j.blobs, (k, plain, failure) => {
        if (failure !== undefined) {
          assert.equal(plain, undefined);
          assert.match(failure.message!, new RegExp(`^chunk [0-9a-f]{16} in pack ${p} failed authentication`));
          failures.push(k);
        }
      });
      assert.deepEqual(failures, [0]);
      // the caller's failure ends the call once the thread is done with the buffer
      const again = job(repo, await backend.get({ type: 'pack', name: p }), p);
      await assert.rejects(
        v.decode(p, 'chunk', again.buf, again.buf.byteLength, again.blobs, () => {
          throw new Error('disk full');
        }),
        /disk full/,
      );
    } finally {
      await v.close();
    }
  });

  it('check --read-data through the threads: finds exactly the damaged blob and maps it to its file', async () => {
    const { backend, repo, blobs } = await filledRepo();
    const ok = await check(repo, { readData: true });
    assert.equal(ok.ok, true, JSON.stringify(ok.findings));
    assert.equal(ok.blobsChecked, blobs.length);
    assert.equal(ok.packsRead, repo.store.index.packs.length);
    // damage one blob inside its pack (same size: only reading the data finds it)
    const victim = repo.store.id(blobs[5]!);
    const e = repo.store.index.lookup(victim)!;
    const bytes = Buffer.from(await backend.get({ type: 'pack', name: e.pack }));
    bytes[e.offset + 20] = bytes[e.offset + 20]! ^ 1;
    await backend.replace({ type: 'pack', name: e.pack }, bytes);
    const bad = await check(await Repository.open(backend, PW), { readData: true });
    assert.equal(bad.ok, false);
    assert.deepEqual(bad.damagedPacks, [e.pack]);
    const blobFindings = bad.findings.filter((f) => f.kind === 'blob-damaged');
    assert.deepEqual(
      blobFindings.map((f) => f.blob),
      [victim.toString('hex')],
    );
    assert.match(blobFindings[0]!.message, /failed authentication/);
    assert.ok(bad.findings.some((f) => f.kind === 'pack-damaged' && f.pack === e.pack && /does not match its name/.test(f.message)));
  });
});
