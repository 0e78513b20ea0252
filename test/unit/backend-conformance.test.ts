/**
 * The Backend contract (backendConformance, src/storage/conformance.ts) run against every
 * implementation and the storage stack, plus the layout and crash-safety details specific to
 * the local backend.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Backend } from '../../src/storage/backend.ts';
import { unwrap } from '../../src/storage/backend.ts';
import { backendConformance, hexName, names } from '../../src/storage/conformance.ts';
import type { BackendFixture } from '../../src/storage/conformance.ts';
import { FaultyBackend } from '../../src/storage/faulty.ts';
import { CacheBackend } from '../../src/storage/cache.ts';
import { findLayer } from '../../src/storage/backend.ts';
import { MemoryBackend } from '../../src/storage/memory.ts';
import { LocalBackend } from '../../src/storage/local.ts';
import { RETRIED_OPS } from '../../src/storage/retry.ts';
import { stack } from '../../src/storage/stack.ts';
import type { StackOptions } from '../../src/storage/stack.ts';
import { MeshbackError } from '../../src/errors/index.ts';
import { listTree, removeDir, tempDir } from './helpers.ts';


const noSleep = async (): Promise<void> => undefined;

function local(wrap: (b: Backend) => Backend = (b) => b): () => Promise<BackendFixture> {
  return async () => {
    const dir = await tempDir('backend');
    return { backend: wrap(new LocalBackend(path.join(dir, 'repo'))), cleanup: () => removeDir(dir) };
  };
}

backendConformance('MemoryBackend', async () => ({ backend: new MemoryBackend(), cleanup: async () => undefined }));
backendConformance('LocalBackend', local());
backendConformance('stack(LocalBackend)', local((b) => stack(b, { retry: { sleep: noSleep } })));
// the CLI's stack: calls counted, and a metadata cache bound to a repository id (active for
// index and snapshot files; a LocalBackend is cached here only because `local` asks for it)
backendConformance(
  'stack(LocalBackend) with counting and a bound metadata cache',
  local((b) => {
    const s = stack(b, { count: true, cache: { dir: path.join(path.dirname(b.location), 'cache'), local: true }, retry: { sleep: noSleep } });
    findLayer(s, CacheBackend)!.bind('00112233445566778899aabbccddeeff');
    return s;
  }),
);
backendConformance('stack(MemoryBackend) with one connection', async () => ({ backend: stack(new MemoryBackend(), { connections: 1, retry: { sleep: noSleep } }), cleanup: async () => undefined }));

// A flaky store: a quarter of the calls fail before reaching it, and some more after it did the
// work (the reply was lost, so the retry meets a file already there). Retry absorbs all of them.
const flaky: FaultyBackend[] = [];
const flakyPlan = (seed: number): StackOptions => ({
  faults: {
    seed,
    rules: [
      { kind: 'transient', op: RETRIED_OPS, probability: 0.25 },
      { kind: 'transient', op: RETRIED_OPS, when: 'after', probability: 0.15 },
    ],
  },
  retry: { attempts: 30, sleep: noSleep },
});
let seed = 1;
backendConformance(
  'stack(faulty(LocalBackend)) with transient faults',
  local((b) => {
    const s = stack(b, flakyPlan(seed++));
    flaky.push(findLayer(s, FaultyBackend)!);
    return s;
  }),
);

it('the flaky store did inject faults before and after calls (the run above is not vacuous)', () => {
  const all = flaky.flatMap((f) => f.injected);
  assert.ok(all.filter((f) => f.when === 'before').length >= 50, `before: ${all.filter((f) => f.when === 'before').length}`);
  assert.ok(all.filter((f) => f.when === 'after').length >= 30, `after: ${all.filter((f) => f.when === 'after').length}`);
  for (const op of ['put', 'get', 'list', 'delete', 'stat', 'openWriter']) assert.ok(all.some((f) => f.op === op), `no fault on ${op}`);
  assert.ok(flaky.every((f) => unwrap(f) instanceof LocalBackend));
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
