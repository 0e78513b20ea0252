/**
 * The Backend contract (see src/storage/backend.ts), run against every implementation, plus the
 * layout and crash-safety details specific to the local backend.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Backend, FileType, Handle } from '../../src/storage/backend.ts';
import { MemoryBackend } from '../../src/storage/memory.ts';
import { LocalBackend } from '../../src/storage/local.ts';
import { MeshbackError, NotFoundError } from '../../src/errors/index.ts';
import { listTree, removeDir, tempDir } from './helpers.ts';

interface Fixture {
  backend: Backend;
  cleanup(): Promise<void>;
}

function hexName(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

async function names(b: Backend, type: FileType): Promise<string[]> {
  const out: string[] = [];
  for await (const f of b.list(type)) out.push(f.name);
  return out;
}

function isNotFound(err: unknown): boolean {
  return err instanceof NotFoundError && err.code === 'NOT_FOUND';
}

/**
 * The contract suite. `knownBugs` maps a test name to a description of a known bug in the
 * implementation; such a test runs as `todo` so the suite stays green until it is fixed.
 */
export function describeBackend(name: string, factory: () => Promise<Fixture>, knownBugs: Record<string, string> = {}): void {
  describe(`Backend contract: ${name}`, () => {
    let fx: Fixture | undefined;
    let b: Backend;
    const fresh = async (): Promise<Backend> => {
      await fx?.cleanup();
      fx = await factory();
      await fx.backend.create();
      return fx.backend;
    };
    const test = (title: string, fn: () => Promise<void>): void => {
      const bug = knownBugs[title];
      it(title, bug !== undefined ? { todo: bug } : {}, async () => {
        b = await fresh();
        await fn();
      });
    };
    after(async () => {
      await fx?.cleanup();
    });

    it('exists() is false until the config is stored, and create() refuses an existing repository', async () => {
      await fx?.cleanup();
      fx = await factory();
      b = fx.backend;
      assert.equal(await b.exists(), false);
      await b.create();
      assert.equal(await b.exists(), false, 'create() alone does not make a config');
      await b.put({ type: 'config', name: 'config' }, Buffer.from('cfg'));
      assert.equal(await b.exists(), true);
      await assert.rejects(b.create(), MeshbackError);
      assert.deepEqual(await b.get({ type: 'config', name: 'config' }), Buffer.from('cfg'), 'a refused create() keeps the config');
    });

    test('put then get returns the same bytes, for every file type', async () => {
      const types: FileType[] = ['key', 'pack', 'index', 'snapshot', 'lock', 'parity'];
      for (const [i, type] of types.entries()) {
        const data = Buffer.from(`payload ${type} ${i}`.repeat(i + 1));
        const h = { type, name: hexName(type) };
        await b.put(h, data);
        assert.deepEqual(await b.get(h), data, type);
      }
      await b.put({ type: 'config', name: 'config' }, Buffer.from('{}'));
      assert.deepEqual(await b.get({ type: 'config', name: 'config' }), Buffer.from('{}'));
    });

    test('round trips empty files and binary data with every byte value', async () => {
      const all = Buffer.from(Array.from({ length: 512 }, (_, i) => i & 0xff));
      await b.put({ type: 'pack', name: hexName('all') }, all);
      await b.put({ type: 'index', name: hexName('empty') }, Buffer.alloc(0));
      assert.deepEqual(await b.get({ type: 'pack', name: hexName('all') }), all);
      assert.equal((await b.get({ type: 'index', name: hexName('empty') })).length, 0);
      assert.equal((await b.stat({ type: 'index', name: hexName('empty') })).size, 0);
    });

    test('stored bytes do not alias the caller buffers', async () => {
      const h = { type: 'snapshot' as const, name: hexName('alias') };
      const data = Buffer.from('original');
      await b.put(h, data);
      data.fill(0x41);
      const got = await b.get(h);
      assert.deepEqual(got, Buffer.from('original'));
      got.fill(0x42);
      assert.deepEqual(await b.get(h), Buffer.from('original'));
    });

    test('ranged get returns exactly the requested bytes', async () => {
      const h = { type: 'pack' as const, name: hexName('range') };
      const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff));
      await b.put(h, data);
      assert.deepEqual(await b.get(h, { offset: 0, length: 10 }), data.subarray(0, 10));
      assert.deepEqual(await b.get(h, { offset: 123, length: 456 }), data.subarray(123, 579));
      assert.deepEqual(await b.get(h, { offset: 990, length: 10 }), data.subarray(990, 1000), 'a range ending exactly at the end');
      assert.equal((await b.get(h, { offset: 500, length: 0 })).length, 0);
    });

    test('get and stat of a missing file reject with NotFoundError', async () => {
      const h = { type: 'pack' as const, name: hexName('missing') };
      await assert.rejects(b.get(h), isNotFound);
      await assert.rejects(b.get(h, { offset: 0, length: 1 }), isNotFound);
      await assert.rejects(b.stat(h), isNotFound);
      await assert.rejects(b.get({ type: 'config', name: 'config' }), isNotFound);
    });

    test('a range past the end rejects (and is not NotFound)', async () => {
      const h = { type: 'pack' as const, name: hexName('short') };
      await b.put(h, Buffer.alloc(100, 7));
      const notNotFound = (err: unknown): boolean => err instanceof MeshbackError && err.code !== 'NOT_FOUND';
      await assert.rejects(b.get(h, { offset: 90, length: 11 }), notNotFound);
      await assert.rejects(b.get(h, { offset: 100, length: 1 }), notNotFound);
      await assert.rejects(b.get(h, { offset: 5000, length: 10 }), notNotFound);
    });

    test('putting the same bytes twice is a no-op', async () => {
      const h = { type: 'index' as const, name: hexName('twice') };
      await b.put(h, Buffer.from('same bytes'));
      await b.put(h, Buffer.from('same bytes'));
      assert.deepEqual(await b.get(h), Buffer.from('same bytes'));
      assert.deepEqual(await names(b, 'index'), [h.name]);
    });

    test('putting different bytes of another size under an existing name rejects and keeps the original', async () => {
      const h = { type: 'snapshot' as const, name: hexName('clash') };
      await b.put(h, Buffer.from('the original content'));
      await assert.rejects(b.put(h, Buffer.from('something else, longer than before')), MeshbackError);
      await assert.rejects(b.put(h, Buffer.from('short')), MeshbackError);
      assert.deepEqual(await b.get(h), Buffer.from('the original content'));
    });

    test('putting different bytes of the same size under an existing name rejects and keeps the original', async () => {
      const h = { type: 'snapshot' as const, name: hexName('clash-same-size') };
      await b.put(h, Buffer.from('AAAAAAAA'));
      await assert.rejects(b.put(h, Buffer.from('BBBBBBBB')), MeshbackError);
      assert.deepEqual(await b.get(h), Buffer.from('AAAAAAAA'));
    });

    test('list yields each stored file of the type exactly once, with its size', async () => {
      const want = new Map<string, number>();
      for (let i = 0; i < 40; i++) {
        const n = hexName(`pack-${i}`);
        const data = Buffer.alloc(i + 1, i);
        await b.put({ type: 'pack', name: n }, data);
        if (i % 5 === 0) await b.put({ type: 'pack', name: n }, data); // idempotent re-put
        want.set(n, i + 1);
      }
      await b.put({ type: 'index', name: hexName('other-type') }, Buffer.from('x'));
      const got: { name: string; size: number }[] = [];
      for await (const f of b.list('pack')) got.push({ name: f.name, size: f.size });
      assert.equal(got.length, want.size, 'no duplicates, nothing missing');
      assert.equal(new Set(got.map((g) => g.name)).size, got.length);
      for (const g of got) assert.equal(want.get(g.name), g.size, g.name);
      assert.deepEqual(await names(b, 'index'), [hexName('other-type')]);
      assert.deepEqual(await names(b, 'snapshot'), []);
      assert.deepEqual(await names(b, 'config'), []);
      await b.put({ type: 'config', name: 'config' }, Buffer.from('c'));
      assert.deepEqual(await names(b, 'config'), ['config']);
    });

    test('delete removes a file; deleting a missing file is a no-op', async () => {
      const h = { type: 'lock' as const, name: hexName('lock') };
      const keep = { type: 'lock' as const, name: hexName('keep') };
      await b.put(h, Buffer.from('l'));
      await b.put(keep, Buffer.from('k'));
      await b.delete(h);
      await assert.rejects(b.get(h), isNotFound);
      await assert.rejects(b.stat(h), isNotFound);
      assert.deepEqual(await names(b, 'lock'), [keep.name]);
      await b.delete(h);
      await b.delete({ type: 'lock', name: hexName('never-existed') });
      assert.deepEqual(await b.get(keep), Buffer.from('k'));
      await b.put(h, Buffer.from('new content after delete'));
      assert.deepEqual(await b.get(h), Buffer.from('new content after delete'), 'a deleted name can be reused');
    });

    test('replace (repairs only) swaps a pack or parity file whole, creates a missing one, and refuses other types', async () => {
      assert.ok(b.replace !== undefined, 'both built-in backends implement replace');
      for (const type of ['pack', 'parity'] as const) {
        const h = { type, name: hexName(`replace-${type}`) };
        await b.put(h, Buffer.from('damaged bytes, longer than the repaired ones'));
        await b.replace(h, Buffer.from('repaired'));
        assert.deepEqual(await b.get(h), Buffer.from('repaired'));
        assert.equal((await b.stat(h)).size, 8);
        assert.deepEqual(await names(b, type), [h.name], 'listed once');
        const gone = { type, name: hexName(`replace-missing-${type}`) };
        await b.replace(gone, Buffer.from('rebuilt'));
        assert.deepEqual(await b.get(gone), Buffer.from('rebuilt'));
      }
      for (const type of ['index', 'snapshot', 'key', 'config', 'lock'] as const) {
        const h = { type, name: type === 'config' ? 'config' : hexName(`no-replace-${type}`) };
        await b.put(h, Buffer.from('original'));
        await assert.rejects(b.replace(h, Buffer.from('x')), (err: unknown) => err instanceof MeshbackError && err.code === 'BACKEND' && /only for repairs/.test(err.message), type);
        assert.deepEqual(await b.get(h), Buffer.from('original'));
      }
    });

    test('stat reports the size', async () => {
      const h = { type: 'pack' as const, name: hexName('stat') };
      await b.put(h, Buffer.alloc(12345, 1));
      const st = await b.stat(h);
      assert.equal(st.size, 12345);
      assert.equal(st.name, h.name);
    });

    test('concurrent puts of distinct files are all stored', async () => {
      const hs: Handle[] = Array.from({ length: 32 }, (_, i) => ({ type: 'pack', name: hexName(`conc-${i}`) }));
      await Promise.all(hs.map((h, i) => b.put(h, Buffer.alloc(100 + i, i))));
      assert.equal((await names(b, 'pack')).length, 32);
      for (const [i, h] of hs.entries()) assert.deepEqual(await b.get(h), Buffer.alloc(100 + i, i));
    });
  });
}

describeBackend('MemoryBackend', async () => ({ backend: new MemoryBackend(), cleanup: async () => undefined }));

describeBackend('LocalBackend', async () => {
  const dir = await tempDir('backend');
  return { backend: new LocalBackend(path.join(dir, 'repo')), cleanup: () => removeDir(dir) };
});

describe('LocalBackend layout and temporary files', () => {
  let dir: string;
  let root: string;
  let b: LocalBackend;
  before(async () => {
    dir = await tempDir('local');
    root = path.join(dir, 'repo');
    b = new LocalBackend(root);
    await b.create();
  });
  after(() => removeDir(dir));

  it('stores pack files sharded under data/<first two hex digits>/', async () => {
    const n1 = hexName('shard-1');
    const n2 = hexName('shard-2');
    await b.put({ type: 'pack', name: n1 }, Buffer.from('one'));
    await b.put({ type: 'pack', name: n2 }, Buffer.from('two'));
    assert.deepEqual(await fsp.readFile(path.join(root, 'data', n1.slice(0, 2), n1)), Buffer.from('one'));
    assert.deepEqual(await fsp.readFile(path.join(root, 'data', n2.slice(0, 2), n2)), Buffer.from('two'));
    const packs = await names(b, 'pack');
    assert.ok(packs.includes(n1) && packs.includes(n2));
  });

  it('stores parity files sharded under parity/<first two hex digits>/; replace leaves no temporary file', async () => {
    const n = hexName('parity-shard');
    await b.put({ type: 'parity', name: n }, Buffer.from('par'));
    assert.deepEqual(await fsp.readFile(path.join(root, 'parity', n.slice(0, 2), n)), Buffer.from('par'));
    assert.ok((await names(b, 'parity')).includes(n));
    await b.replace({ type: 'parity', name: n }, Buffer.from('parity rebuilt'));
    assert.deepEqual(await fsp.readFile(path.join(root, 'parity', n.slice(0, 2), n)), Buffer.from('parity rebuilt'));
    assert.deepEqual((await fsp.readdir(path.join(root, 'parity', n.slice(0, 2)))).filter((f) => f.startsWith('.tmp-')), []);
  });

  it('lists no parity files in a repository created before parity existed (no parity/ directory)', async () => {
    const other = await tempDir('old-layout');
    const old = path.join(other, 'repo');
    const ob = new LocalBackend(old);
    await ob.create();
    await fsp.rm(path.join(old, 'parity'), { recursive: true });
    assert.deepEqual(await names(ob, 'parity'), []);
    const n = hexName('late parity');
    await ob.put({ type: 'parity', name: n }, Buffer.from('p'));
    assert.deepEqual(await names(ob, 'parity'), [n]);
    await removeDir(other);
  });

  it('stores the other types in their own directories', async () => {
    const n = hexName('dirs');
    await b.put({ type: 'key', name: n }, Buffer.from('k'));
    await b.put({ type: 'index', name: n }, Buffer.from('i'));
    await b.put({ type: 'snapshot', name: n }, Buffer.from('s'));
    await b.put({ type: 'lock', name: n }, Buffer.from('l'));
    await b.put({ type: 'config', name: 'config' }, Buffer.from('c'));
    assert.deepEqual(await fsp.readFile(path.join(root, 'keys', n)), Buffer.from('k'));
    assert.deepEqual(await fsp.readFile(path.join(root, 'index', n)), Buffer.from('i'));
    assert.deepEqual(await fsp.readFile(path.join(root, 'snapshots', n)), Buffer.from('s'));
    assert.deepEqual(await fsp.readFile(path.join(root, 'locks', n)), Buffer.from('l'));
    assert.deepEqual(await fsp.readFile(path.join(root, 'config')), Buffer.from('c'));
  });

  it('put leaves no temporary files behind, also after a refused overwrite', async () => {
    const n = hexName('tmp-check');
    await b.put({ type: 'pack', name: n }, Buffer.from('first'));
    await b.put({ type: 'pack', name: n }, Buffer.from('first'));
    await assert.rejects(b.put({ type: 'pack', name: n }, Buffer.from('a different, longer file')));
    await b.put({ type: 'index', name: n }, Buffer.from('x'));
    const leftovers = (await listTree(root)).filter((p) => path.basename(p).startsWith('.tmp-'));
    assert.deepEqual(leftovers, []);
  });

  it('list never yields a stray temporary file or a subdirectory', async () => {
    const n = hexName('stray');
    await b.put({ type: 'pack', name: n }, Buffer.from('p'));
    await fsp.writeFile(path.join(root, 'data', n.slice(0, 2), '.tmp-xyz'), 'partial');
    await fsp.writeFile(path.join(root, 'keys', '.tmp-xyz'), 'partial');
    await fsp.mkdir(path.join(root, 'index', 'not-a-file'));
    const packs = await names(b, 'pack');
    assert.ok(packs.includes(n));
    assert.ok(!packs.some((p) => p.startsWith('.tmp-')), 'stray temporary pack listed');
    assert.ok(!(await names(b, 'key')).some((p) => p.startsWith('.tmp-')), 'stray temporary key listed');
    assert.ok(!(await names(b, 'index')).includes('not-a-file'));
  });

  it('refuses file names that could escape or hide in the layout', async () => {
    for (const bad of ['../evil', '.hidden', 'a/b', '', '.tmp-abc']) {
      await assert.rejects(b.put({ type: 'snapshot', name: bad }, Buffer.from('x')), MeshbackError, JSON.stringify(bad));
    }
    assert.deepEqual((await fsp.readdir(dir)).sort(), ['repo']);
  });
});
