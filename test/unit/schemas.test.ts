process.env.MESHBACK_TEST_SCRYPT_N = '1024';
/**
 * Untrusted JSON read through valibot schemas (src/util/schema.ts and the schemas beside their types):
 * malformed snapshots, trees, key files, the config, lock files and benchmark files give one-line
 * errors that name the file and the field, with the error class that maps to the right exit code;
 * docs/schemas/ is what the code's schemas say.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import * as path from 'node:path';
import { MemoryBackend } from '../../src/storage/memory.ts';
import { IntegrityError, MeshbackError } from '../../src/errors/index.ts';
import { seal } from '../../src/crypto/index.ts';
import { sha256hex } from '../../src/content/pack.ts';
import { Repository } from '../../src/repository/index.ts';
import { listLocks } from '../../src/repository/lock.ts';
import { NodeSchema, decodeTree, isPlainNode } from '../../src/snapshot/tree.ts';
import { SnapshotSchema } from '../../src/snapshot/manifest.ts';
import { checked, int, issueText, safeParse, v } from '../../src/util/schema.ts';
import { DatasetJsonSchema, SmallMarkerSchema, readJson } from '../../lab/bench/peers.ts';
import { staleSchemaFiles } from '../../scripts/schemas.ts';
import { removeDir, tempDir } from './helpers.ts';

const PW = 'correct horse';
const oneLine = (m: string): boolean => !m.includes('\n');
const isCode = (code: string, re: RegExp) => (err: unknown): boolean => err instanceof MeshbackError && err.code === code && re.test(err.message) && oneLine(err.message);

const goodSnapshot = () => ({
  version: 1,
  time: '2026-11-22T10:00:00.000Z',
  endTime: '2026-11-22T10:00:05.000Z',
  host: 'h',
  username: 'u',
  paths: ['/x'],
  tags: [],
  tree: 'ab'.repeat(32),
  summary: { files: 1, dirs: 0, symlinks: 0, others: 0, totalBytes: 1, bytesRead: 1, filesRead: 1, filesUnchanged: 0, filesChangedDuringRead: 0, errors: 0, blobsAdded: 1, bytesAdded: 1, bytesStored: 1, duration: 0.1 },
  program: 'meshback 0.1.0',
});

describe('issueText: one line naming the field', () => {
  const text = (schema: v.GenericSchema, x: unknown): string => {
    const r = safeParse(schema, x);
    assert.equal(r.success, false);
    return issueText(r.issues);
  };
  it('names nested fields with dots and indexes, says what was found', () => {
    const s = v.object({ a: v.object({ b: v.array(v.number()) }) });
    assert.equal(text(s, { a: { b: [1, 'x'] } }), 'field "a.b[1]" must be a number (it is "x")');
    assert.equal(text(s, { a: {} }), 'field "a.b" is missing');
    assert.equal(text(s, []), 'the top level must be an object (it is a list)');
    assert.equal(text(s, { a: [] }), 'field "a" must be an object (it is a list)');
    assert.equal(text(v.object({ n: int() }), { n: 1.5 }), 'field "n" must be a whole number (it is 1.5)');
    assert.equal(text(v.object({ n: int(0) }), { n: -1.5 }), 'field "n" must be a whole number (it is -1.5)', 'one problem per field');
    assert.equal(text(v.object({ k: v.picklist(['x', 'y']) }), { k: 'z' }), 'field "k" must be one of "x", "y" (it is "z")');
    assert.equal(text(v.object({ k: v.literal('x') }), { k: 'z' }), 'field "k" must be "x" (it is "z")');
    assert.equal(text(v.object({ a: v.string(), b: v.string() }), {}), 'field "a" is missing (and 1 more problem)');
  });
  it('checked() returns the value or throws what the caller makes of the line', () => {
    assert.deepEqual(checked(SnapshotSchema, goodSnapshot(), (m) => new Error(m)), goodSnapshot());
    assert.throws(() => checked(SnapshotSchema, { ...goodSnapshot(), time: 'yesterday' }, (m) => new IntegrityError(`snapshot 1a2b3c4d: ${m}`)), isCode('INTEGRITY', /^snapshot 1a2b3c4d: field "time" must be an ISO date/));
  });
});

describe('repository files', () => {
  it('a snapshot with a wrong field type: IntegrityError naming the snapshot and the field', async () => {
    const backend = new MemoryBackend();
    const repo = await Repository.init(backend, PW);
    const good = await repo.saveSnapshot(goodSnapshot() as never);
    assert.equal((await repo.loadSnapshot(good)).host, 'h');
    const cases: [unknown, RegExp][] = [
      [{ ...goodSnapshot(), time: 1764000000 }, /field "time" must be an ISO date/],
      [{ ...goodSnapshot(), summary: { ...goodSnapshot().summary, files: '12' } }, /field "summary\.files" must be a number \(it is "12"\)/],
      [{ ...goodSnapshot(), tree: 'not-an-id' }, /field "tree" must be 64 lowercase hex digits/],
      [{ ...goodSnapshot(), paths: undefined }, /field "paths" is missing/],
    ];
    for (const [bad, re] of cases) {
      const id = await repo.saveSnapshot(bad as never);
      await assert.rejects(repo.loadSnapshot(id), isCode('INTEGRITY', new RegExp(`^snapshot ${id.slice(0, 8)}: ${re.source}.*: the snapshot file is malformed; delete it`)));
    }
    // not JSON at all (sealed, so it authenticates)
    const file = seal(repo.key.encKey, Buffer.from('{"version":1,'));
    await backend.put({ type: 'snapshot', name: sha256hex(file) }, file);
    await assert.rejects(repo.loadSnapshot(sha256hex(file)), isCode('INTEGRITY', /: the file is not JSON \(/));
  });

  it('a tree with a wrong field: IntegrityError naming the tree and the field', () => {
    const node = { name: 'a', type: 'file', mode: 420, uid: 0, gid: 0, mtime: '1', ctime: '1', inode: 1, dev: 1, nlink: 1, size: 0, content: [] };
    const enc = (nodes: unknown[]) => Buffer.from(JSON.stringify({ nodes }));
    assert.equal(decodeTree(enc([node]), 'ab'.repeat(32)).nodes.length, 1);
    assert.throws(() => decodeTree(enc([node, { ...node, name: 'b', mode: '0644' }]), 'ab'.repeat(32)), isCode('INTEGRITY', /^tree abababababababab: field "nodes\[1\]\.mode" must be a number \(it is "0644"\): the repository holds a malformed tree/));
    assert.throws(() => decodeTree(enc([{ ...node, type: 'dir' }]), 't'), isCode('INTEGRITY', /field "nodes\[0\]\.subtree" is missing \(a directory node needs the id of its tree\)/));
    assert.throws(() => decodeTree(enc([{ ...node, content: ['xyz'] }]), 't'), isCode('INTEGRITY', /field "nodes\[0\]\.content\[0\]" must be a chunk id/));
    assert.throws(() => decodeTree(enc([{ ...node, type: 'pipe' }]), 't'), isCode('INTEGRITY', /field "nodes\[0\]\.type" must be one of "file", "dir"/));
    assert.throws(() => decodeTree(enc([{ ...node, ctime: undefined }]), 't'), isCode('INTEGRITY', /field "nodes\[0\]\.ctime" is missing/));
    assert.throws(() => decodeTree(Buffer.from('{"nodes":[1'), 't'), isCode('INTEGRITY', /^tree t: the tree is not JSON/));
    // a name that is not well-formed UTF-16 cannot stand for bytes
    assert.throws(() => decodeTree(enc([{ ...node, name: 'a\ud800' }]), 't'), isCode('INTEGRITY', /unsafe name/));
  });

  it("decodeTree's fast check of a node agrees with NodeSchema (valid and broken nodes of every kind)", () => {
    const id = 'cd'.repeat(32);
    const kinds: Record<string, unknown>[] = [
      { name: 'f', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: '1764000000000000000', ctime: '-5', inode: 7, dev: 2049, nlink: 2, size: 10, content: [id, '0:4096'] },
      { name: 'f', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: '1', ctime: '1', inode: 7, dev: 2049, nlink: 1, size: 0, content: [], changed: true },
      { name: '', nameRaw: '/w==', type: 'dir', mode: 0o7777, uid: 1000, gid: 1000, mtime: '1', ctime: '1', inode: 1.5, dev: -1, nlink: 0, subtree: id },
      { name: 'l', type: 'symlink', mode: 0o777, uid: 0, gid: 0, mtime: '1', ctime: '1', inode: 1, dev: 1, nlink: 1, linkTarget: '', linkTargetRaw: 'YWI=' },
      { name: 'c', type: 'chardev', mode: 0o600, uid: 0, gid: 0, mtime: '1', ctime: '1', inode: 1, dev: 1, nlink: 1, rdev: 259 },
    ];
    const fields = Object.keys(NodeSchema.entries);
    const values: unknown[] = [null, true, false, 0, -1, 1.5, 0o7777, 0o10000, 2 ** 53, '', '1', '-1', '1.5', 'x', 'dir', 'pipe', id, id.toUpperCase(), '0:12', 'YWI=', 'a=b', [], [id], ['0:1', 'x'], {}, { a: 1 }];
    let fast = 0;
    const agree = (n: Record<string, unknown>, what: string): void => {
      const r = safeParse(NodeSchema, n);
      const same = r.success && isDeepStrictEqual(r.output, n);
      assert.equal(isPlainNode(n), same, `${what}: ${JSON.stringify(n)}`);
      if (same) fast++;
    };
    for (const k of kinds) {
      agree(k, 'as is');
      agree({ ...k, extra: 1 }, 'an unknown field');
      for (const f of [...fields, 'type']) {
        const without = { ...k };
        delete without[f];
        agree(without, `without ${f}`);
        for (const x of values) agree({ ...k, [f]: x }, `${f} = ${JSON.stringify(x)}`);
      }
    }
    assert.ok(fast > kinds.length * 20, `the fast check took ${fast} nodes`);
    // a tree that is not plain (an unknown field) is decoded by the schema, which drops the field
    const node = { ...kinds[0]!, extra: 'x' };
    assert.deepEqual(decodeTree(Buffer.from(JSON.stringify({ nodes: [node], more: 1 })), id), { nodes: [kinds[0]] });
  });

  it('a key file missing a field: named; the repository opens with another key, else IntegrityError (not "wrong password")', async () => {
    const backend = new MemoryBackend();
    const repo = await Repository.init(backend, PW);
    const good = (await repo.listKeys())[0]!;
    const broken = { ...good.file! } as Record<string, unknown>;
    delete broken['data'];
    const bytes = Buffer.from(JSON.stringify(broken, null, 2));
    const brokenId = sha256hex(bytes);
    await backend.put({ type: 'key', name: brokenId }, bytes);
    // the good key still opens it; key list names the problem
    const again = await Repository.open(backend, PW, { loadIndex: false });
    const listed = (await again.listKeys()).find((k) => k.id === brokenId)!;
    assert.equal(listed.file, undefined);
    assert.equal(listed.damaged, 'field "data" is missing');
    // a wrong password names the malformed file too, and stays WRONG_PASSWORD
    await assert.rejects(Repository.open(backend, 'nope', { loadIndex: false }), isCode('WRONG_PASSWORD', new RegExp(`no key file opens with it \\(and key file ${brokenId.slice(0, 8)}: field "data" is missing\\)`)));
    // with the good key gone, nothing can be tried: damaged data, exit 4
    await backend.delete({ type: 'key', name: good.id });
    await assert.rejects(Repository.open(backend, PW, { loadIndex: false }), isCode('INTEGRITY', new RegExp(`^no key file of the repository at memory: can be read: key file ${brokenId.slice(0, 8)}: field "data" is missing: restore keys/`)));
    // scrypt parameters are bounded before anything is derived from them
    await backend.delete({ type: 'key', name: brokenId });
    const huge = Buffer.from(JSON.stringify({ ...good.file!, kdf: { ...good.file!.kdf, N: 2 ** 30 } }));
    await backend.put({ type: 'key', name: sha256hex(huge) }, huge);
    await assert.rejects(Repository.open(backend, PW, { loadIndex: false }), isCode('INTEGRITY', /field "kdf\.N" must be at most 4194304/));
  });

  it('the config: a malformed field is IntegrityError, another format UNSUPPORTED_FORMAT', async () => {
    const withConfig = async (edit: (c: Record<string, unknown>) => void): Promise<MemoryBackend> => {
      const backend = new MemoryBackend();
      const repo = await Repository.init(backend, PW);
      const c = structuredClone(repo.config) as Record<string, unknown>;
      edit(c);
      await backend.delete({ type: 'config', name: 'config' });
      await backend.put({ type: 'config', name: 'config' }, seal(repo.key.encKey, Buffer.from(JSON.stringify(c))));
      return backend;
    };
    await assert.rejects(Repository.open(await withConfig((c) => (c['packSize'] = 'big')), PW), isCode('INTEGRITY', /^the repository config at memory:: field "packSize" must be a number \(it is "big"\)/));
    await assert.rejects(Repository.open(await withConfig((c) => delete c['chunker']), PW), isCode('INTEGRITY', /field "chunker" is missing/));
    await assert.rejects(Repository.open(await withConfig((c) => (c['version'] = 2)), PW), isCode('UNSUPPORTED_FORMAT', /format version 2 .*upgrade meshback/));
    await assert.rejects(Repository.open(await withConfig((c) => (c['parity'] = { name: 'rs-other', k: 4, m: 2, blockSize: 4096 })), PW), isCode('UNSUPPORTED_FORMAT', /parity scheme "rs-other"/));
  });

  it('a lock file with garbage or a wrong field: listed as damaged with the reason, stale', async () => {
    const backend = new MemoryBackend();
    const repo = await Repository.init(backend, PW);
    const garbage = Buffer.from('this is not a lock at all, just some garbage bytes');
    await backend.put({ type: 'lock', name: sha256hex(garbage) }, garbage);
    const now = new Date().toISOString();
    const wrong = seal(repo.key.encKey, Buffer.from(JSON.stringify({ version: 1, exclusive: false, host: 'h', pid: 'x', username: 'u', time: now, created: now, command: 'backup' })));
    await backend.put({ type: 'lock', name: sha256hex(wrong) }, wrong);
    const locks = await listLocks(repo);
    assert.equal(locks.length, 2);
    assert.ok(locks.every((l) => l.stale && l.info === undefined && oneLine(l.reason!)));
    const w = locks.find((l) => l.name === sha256hex(wrong))!;
    assert.equal(w.damaged, 'field "pid" must be a number (it is "x")');
    const g = locks.find((l) => l.name === sha256hex(garbage))!;
    assert.match(g.damaged!, /lock [0-9a-f]{8}/);
  });
});

describe('bench:peers files', () => {
  it('readJson: absent is {}, a wrong shape or not JSON is a problem naming the file and field', async () => {
    const dir = await tempDir('schemas');
    try {
      const f = path.join(dir, 'dataset.json');
      assert.deepEqual(await readJson(f, DatasetJsonSchema), {});
      await fsp.writeFile(f, JSON.stringify({ generator: 'g', seed: 1, size: 1024, mesh: { files: 3 } }));
      assert.deepEqual((await readJson(f, DatasetJsonSchema)).value, { generator: 'g', seed: 1, size: 1024, mesh: { files: 3 } }, 'other fields are kept');
      await fsp.writeFile(f, JSON.stringify({ seed: 1.5 }));
      assert.match((await readJson(f, DatasetJsonSchema)).problem!, new RegExp(`^${f}: field "seed" must be a whole number \\(it is 1\\.5\\)$`));
      await fsp.writeFile(f, JSON.stringify({ seed: true }));
      assert.match((await readJson(f, DatasetJsonSchema)).problem!, new RegExp(`^${f}: field "seed" matches none of the allowed shapes$`));
      await fsp.writeFile(f, JSON.stringify({ seed: 1, postgresScale: 'ten' }));
      assert.match((await readJson(f, DatasetJsonSchema)).problem!, /field "postgresScale" must be a number \(it is "ten"\)/);
      await fsp.writeFile(f, '{"seed":');
      assert.match((await readJson(f, DatasetJsonSchema)).problem!, /: the file is not JSON \(/);
      const m = path.join(dir, 'small-10.json');
      await fsp.writeFile(m, JSON.stringify({ files: 10, seed: 1 }));
      assert.equal((await readJson(m, SmallMarkerSchema)).problem, `${m}: field "generator" is missing`);
    } finally {
      await removeDir(dir);
    }
  });
});

describe('docs/schemas', () => {
  it('is what the code checks with (npm run schemas writes it)', () => {
    assert.deepEqual(staleSchemaFiles(), [], "run 'npm run schemas' and commit docs/schemas/");
  });
});
