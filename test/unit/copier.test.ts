/**
 * The copy map (src/copier): the map keyed by the source's index entries, and its cache file: entries survive a reopen, a
 * damaged record is ignored, a record cut short by a crash is dropped and the next append starts
 * after the last whole record, a file that is not a copy map is replaced. And a copy between two
 * repositories that share their id key (the shortcut: no id recomputed).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CopyMap, KIND_CHUNK, KIND_TREE } from '../../src/copier/cache.ts';
import { EntryMap } from '../../src/copier/idmap.ts';
import { BLOB_DATA, ChunkIndex } from '../../src/content/index-table.ts';
import { seal } from '../../src/crypto/index.ts';
import { backup, check, copy, initRepository, openBackend, openRepository } from '../../src/index.ts';
import { rmrf, tmpdir } from '../helpers/cli.ts';
import { prngBytes, removeDir, tempDir } from './helpers.ts';

/** a source index holding `ids` (as data blobs of one pack) */
function sourceIndex(ids: Uint8Array[]): ChunkIndex {
  const idx = new ChunkIndex();
  const p = idx.packNumber('p'.repeat(64), 1 << 20);
  ids.forEach((id, i) => idx.add(id, BLOB_DATA, p, i * 100, 100, 100));
  return idx;
}

test('EntryMap: source entries to destination entries; a copy whose pack is not indexed waits, and takes its entry once it is; overwrite, clear, ids the source lacks', () => {
  const n = 40_000;
  const pairs = Array.from({ length: n }, () => [randomBytes(32), randomBytes(32)] as const);
  const src = sourceIndex(pairs.map(([k]) => k));
  // the destination indexes the first half now, the second half later (their packs in flight)
  const dst = sourceIndex(pairs.slice(0, n / 2).map(([, v]) => v));
  const m = new EntryMap(src, dst);
  // more waiting copies than the side table starts with (16,384): it sweeps, then doubles
  for (const [k, v] of pairs) assert.ok(m.set(k, v));
  assert.equal(m.size, n);
  const same = (x: Uint8Array | undefined, y: Uint8Array): boolean => x !== undefined && Buffer.from(x).equals(y);
  for (const [k, v] of pairs) assert.ok(same(m.get(k), v) && same(m.getHex(k.toString('hex')), v));
  // their packs are indexed: the same answers, now from the destination's index
  const p = dst.packNumber('q'.repeat(64), 1 << 20);
  pairs.slice(n / 2).forEach(([, v], i) => dst.add(v, BLOB_DATA, p, i, 1, 1));
  for (const [k, v] of pairs) assert.ok(same(m.get(k), v));
  assert.ok(same(m.getEntry(src.entryOf(pairs[3]![0])), pairs[3]![1]));
  assert.equal(m.set(randomBytes(32), randomBytes(32)), false, 'an id the source index lacks is not kept');
  assert.equal(m.get(randomBytes(32)), undefined);
  assert.equal(m.getEntry(-1), undefined);
  // overwritten, by an indexed copy and by a waiting one
  const other = randomBytes(32);
  m.set(pairs[7]![0], other);
  assert.ok(same(m.get(pairs[7]![0]), other));
  m.set(pairs[7]![0], pairs[8]![1]);
  assert.ok(same(m.get(pairs[7]![0]), pairs[8]![1]));
  assert.equal(m.size, n);
  m.clear();
  assert.equal(m.get(pairs[0]![0]), undefined);
  assert.equal(m.size, 0);
  assert.throws(() => m.set(pairs[0]![0], Buffer.alloc(31)));
});

test('CopyMap: the file keeps entries between runs; damaged and cut-short records are ignored', async () => {
  const dir = tmpdir('copymap');
  try {
    const src = 'a'.repeat(32);
    const dst = 'b'.repeat(32);
    const chunks = Array.from({ length: 10 }, () => [randomBytes(32), randomBytes(32)] as const);
    const tree = [randomBytes(32), randomBytes(32)] as const;
    const late = [randomBytes(32), randomBytes(32)] as const;
    const gone = [randomBytes(32), randomBytes(32)] as const;
    const idx = sourceIndex([...chunks.map(([a]) => a), tree[0], late[0], gone[0]]);
    // the destination's index holds every copy but the one of chunks[9], whose pack it lost later
    const dIdx = sourceIndex([...chunks.map(([, b]) => b), tree[1], late[1], gone[1]]);
    const dIdx2 = sourceIndex([...chunks.slice(0, 9).map(([, b]) => b), tree[1], late[1], gone[1]]);
    const m = await CopyMap.open(dir, src, dst, idx, dIdx);
    for (const [a, b] of chunks) assert.ok(m.add(KIND_CHUNK, a, b));
    m.add(KIND_TREE, tree[0], tree[1]);
    m.add(KIND_CHUNK, gone[0], gone[1]);
    assert.equal(m.add(KIND_CHUNK, randomBytes(32), randomBytes(32)), false, 'a blob the source index lacks');
    assert.equal(await m.persist(), undefined);
    const file = m.file!;
    assert.equal(file, path.join(dir, 'copy', `${src}-${dst}.map`));

    // the next run's source no longer holds `gone`: its record is not loaded
    const idx2 = sourceIndex([...chunks.map(([a]) => a), tree[0], late[0]]);
    const again = await CopyMap.open(dir, src, dst, idx2, dIdx);
    assert.equal(again.loaded, 11);
    // nor is the record of a copy the destination's index lacks
    const pruned = await CopyMap.open(dir, src, dst, idx2, dIdx2);
    assert.equal(pruned.loaded, 10);
    assert.equal(pruned.chunks.get(chunks[9]![0]), undefined, "the copy of chunks[9] is gone from the destination");
    assert.ok(Buffer.from(again.trees.get(tree[0])!).equals(tree[1]));
    assert.equal(again.chunks.get(tree[0]), undefined, 'chunks and trees are apart');

    // one flipped byte in the third record's destination id: that record alone is ignored
    const bytes = await fsp.readFile(file);
    bytes[8 + 2 * 73 + 40]! ^= 1;
    // (and the record of `gone` dropped, so that the file ends with whole records of known blobs)
    const kept = bytes.subarray(0, 8 + 11 * 73);
    // and a record cut short at the end
    await fsp.writeFile(file, Buffer.concat([kept, Buffer.alloc(30, 7)]));
    const damaged = await CopyMap.open(dir, src, dst, idx2, dIdx);
    assert.equal(damaged.loaded, 10);
    assert.equal(damaged.chunks.get(chunks[2]![0]), undefined);
    // the next append starts after the last whole record
    damaged.add(KIND_CHUNK, late[0], late[1]);
    assert.equal(await damaged.persist(), undefined);
    assert.equal((await fsp.stat(file)).size, 8 + 12 * 73);
    const after = await CopyMap.open(dir, src, dst, idx2, dIdx);
    assert.equal(after.loaded, 11);
    assert.ok(Buffer.from(after.chunks.get(late[0])!).equals(late[1]));

    // not a copy map: replaced by an empty one
    await fsp.writeFile(file, 'something else');
    assert.equal((await CopyMap.open(dir, src, dst, idx2, dIdx)).loaded, 0);
    await assert.rejects(fsp.access(file));

    // no cache directory: the map lives in memory only
    const mem = await CopyMap.open(undefined, src, dst, idx2, dIdx);
    mem.add(KIND_CHUNK, late[0], late[1]);
    assert.equal(await mem.persist(), undefined);
    assert.equal(mem.file, undefined);
    await mem.drop();
    assert.equal(mem.chunks.get(late[0]), undefined);
  } finally {
    await rmrf(dir);
  }
});

test('copy between repositories that share their id key: no id recomputed, a chunk the destination has is never read', async () => {
  process.env['MESHBACK_TEST_SCRYPT_N'] = '1024';
  const dir = await tempDir('copy-same');
  const src = path.join(dir, 'src');
  try {
    await fsp.mkdir(path.join(src, 'sub'), { recursive: true });
    await fsp.writeFile(path.join(src, 'big.bin'), prngBytes('big', 3 * 1024 * 1024));
    await fsp.writeFile(path.join(src, 'sub', 'small.txt'), 'small\n');
    const a = await initRepository(path.join(dir, 'A'), 'pw');
    const first = await backup(a, { paths: [src], host: 'h' });

    // B: A's key file under another repository id (as a repository cloned with its keys would be)
    const locB = path.join(dir, 'B');
    const bBackend = openBackend(locB);
    await bBackend.create();
    for await (const f of a.backend.list('key')) await bBackend.put({ type: 'key', name: f.name }, await a.backend.get({ type: 'key', name: f.name }));
    await bBackend.put({ type: 'config', name: 'config' }, seal(a.key.encKey, Buffer.from(JSON.stringify({ ...a.config, id: randomBytes(16).toString('hex') }))));
    const { repo: b, close } = await openRepository(bBackend, 'pw', { lock: 'shared' });
    try {
      const r1 = await copy(a, b);
      assert.equal(r1.sameIds, true);
      assert.equal(r1.copied, 1);
      const c1 = r1.snapshots[0]!;
      assert.equal(c1.chunksSent, c1.chunksRead);
      assert.equal((await b.loadSnapshot(c1.id)).tree, first.snapshot.tree, 'the same ids: the same root tree');

      await fsp.writeFile(path.join(src, 'sub', 'new.txt'), 'new\n');
      await backup(a, { paths: [src], host: 'h' });
      const r2 = await copy(a, b, { readData: true });
      const c2 = r2.snapshots.find((s) => s.copied)!;
      assert.equal(c2.chunksRead, 1, `only the new chunk is read: ${JSON.stringify(c2)}`);
      assert.equal(c2.chunksSent, 1);
      assert.ok(c2.chunksVerified >= 1);
      const chk = await check(b, { readData: true });
      assert.ok(chk.ok, JSON.stringify(chk.findings));
    } finally {
      await close();
    }
  } finally {
    await removeDir(dir);
  }
});

test('a copy-map entry that leads to a wrong tree fails the verification: the map is dropped and the snapshot copied again', async () => {
  process.env['MESHBACK_TEST_SCRYPT_N'] = '1024';
  const dir = await tempDir('copy-retry');
  const src = path.join(dir, 'src');
  const cacheDir = path.join(dir, 'cache');
  try {
    await fsp.mkdir(path.join(src, 'one'), { recursive: true });
    await fsp.mkdir(path.join(src, 'two'), { recursive: true });
    await fsp.writeFile(path.join(src, 'one', 'a.txt'), 'one\n');
    await fsp.writeFile(path.join(src, 'two', 'b.txt'), prngBytes('two', 100_000));
    const a = await initRepository(path.join(dir, 'A'), 'pa');
    const snap = await backup(a, { paths: [src], host: 'h' });
    const b = await initRepository(path.join(dir, 'B'), 'pb');
    const first = await copy(a, b, { cacheDir });
    const copied = first.snapshots[0]!;

    // the map now says: the source's root tree is the destination's tree of src/ (a tree B has, but the wrong one)
    const bRoot = (await b.loadSnapshot(copied.id)).tree;
    const bSrcDir = (await b.loadTree(bRoot)).nodes[0]!.subtree!;
    const m = await CopyMap.open(cacheDir, a.config.id, b.config.id, a.index, b.index);
    m.add(KIND_TREE, Buffer.from(snap.snapshot.tree, 'hex'), Buffer.from(bSrcDir, 'hex'));
    assert.equal(await m.persist(), undefined);
    await b.removeSnapshot(copied.id);

    const warnings: string[] = [];
    const again = await copy(a, b, { cacheDir, events: (e) => (e.type === 'warning' ? warnings.push(e.message) : undefined) });
    assert.equal(again.copied, 1);
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0]!, /^the copy of snapshot [0-9a-f]{8} did not match its source \(.+\): copying it again without the copy cache$/);
    assert.equal((await b.loadSnapshot(again.snapshots[0]!.id)).tree, bRoot, 'the same tree as the first copy');
    assert.ok((await check(b, { readData: true })).ok);
  } finally {
    await removeDir(dir);
  }
});
