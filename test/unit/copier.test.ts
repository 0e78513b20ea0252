/**
 * The copy map (src/copier): the compact id map, and its cache file: entries survive a reopen, a
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
import { IdMap } from '../../src/copier/idmap.ts';
import { seal } from '../../src/crypto/index.ts';
import { backup, check, copy, initRepository, openBackend, openRepository } from '../../src/index.ts';
import { rmrf, tmpdir } from '../helpers/cli.ts';
import { prngBytes, removeDir, tempDir } from './helpers.ts';

test('IdMap: set, get, overwrite and growth past its first capacity', () => {
  const m = new IdMap(4);
  const pairs = Array.from({ length: 5000 }, () => [randomBytes(32), randomBytes(32)] as const);
  for (const [k, v] of pairs) m.set(k, v);
  assert.equal(m.size, 5000);
  for (const [k, v] of pairs) assert.ok(Buffer.from(m.get(k)!).equals(v));
  assert.equal(m.get(randomBytes(32)), undefined);
  const other = randomBytes(32);
  m.set(pairs[7]![0], other);
  assert.equal(m.size, 5000);
  assert.ok(Buffer.from(m.get(pairs[7]![0])!).equals(other));
  m.clear();
  assert.equal(m.get(pairs[0]![0]), undefined);
  assert.throws(() => m.set(Buffer.alloc(31), Buffer.alloc(32)));
});

test('CopyMap: the file keeps entries between runs; damaged and cut-short records are ignored', async () => {
  const dir = tmpdir('copymap');
  try {
    const src = 'a'.repeat(32);
    const dst = 'b'.repeat(32);
    const m = await CopyMap.open(dir, src, dst);
    const chunks = Array.from({ length: 10 }, () => [randomBytes(32), randomBytes(32)] as const);
    for (const [a, b] of chunks) m.add(KIND_CHUNK, a, b);
    const tree = [randomBytes(32), randomBytes(32)] as const;
    m.add(KIND_TREE, tree[0], tree[1]);
    assert.equal(await m.persist(), undefined);
    const file = m.file!;
    assert.equal(file, path.join(dir, 'copy', `${src}-${dst}.map`));

    const again = await CopyMap.open(dir, src, dst);
    assert.equal(again.loaded, 11);
    assert.ok(Buffer.from(again.trees.get(tree[0])!).equals(tree[1]));
    assert.equal(again.chunks.get(tree[0]), undefined, 'chunks and trees are apart');

    // one flipped byte in the third record's destination id: that record alone is ignored
    const bytes = await fsp.readFile(file);
    bytes[8 + 2 * 73 + 40]! ^= 1;
    // and a record cut short at the end
    await fsp.writeFile(file, Buffer.concat([bytes, Buffer.alloc(30, 7)]));
    const damaged = await CopyMap.open(dir, src, dst);
    assert.equal(damaged.loaded, 10);
    assert.equal(damaged.chunks.get(chunks[2]![0]), undefined);
    // the next append starts after the last whole record
    const late = [randomBytes(32), randomBytes(32)] as const;
    damaged.add(KIND_CHUNK, late[0], late[1]);
    assert.equal(await damaged.persist(), undefined);
    const after = await CopyMap.open(dir, src, dst);
    assert.equal(after.loaded, 11);
    assert.ok(Buffer.from(after.chunks.get(late[0])!).equals(late[1]));

    // not a copy map: replaced by an empty one
    await fsp.writeFile(file, 'something else');
    assert.equal((await CopyMap.open(dir, src, dst)).loaded, 0);
    await assert.rejects(fsp.access(file));

    // no cache directory: the map lives in memory only
    const mem = await CopyMap.open(undefined, src, dst);
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
    const m = await CopyMap.open(cacheDir, a.config.id, b.config.id);
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
