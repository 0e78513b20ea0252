/**
 * The Backend conformance suite: the contract of backend.ts, as tests. A new backend (or a
 * stack of wrappers) runs it in one line from a test file:
 *
 *   backendConformance('S3Backend', async () => ({ backend: new S3Backend(cfg), cleanup: () => dropBucket(cfg) }));
 *
 * It imports node:test and node:assert, so only tests import this module: nothing in the CLI or
 * the library loads it.
 */
import { describe, it, after } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Backend, FileType, Handle } from './backend.ts';
import { MeshbackError, NotFoundError } from '../errors/index.ts';

export interface BackendFixture {
  backend: Backend;
  cleanup(): Promise<void>;
}

/** A content-addressed-looking name for test data. */
export function hexName(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** The names a backend lists for a file type. */
export async function names(b: Backend, type: FileType): Promise<string[]> {
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
export function backendConformance(name: string, factory: () => Promise<BackendFixture>, opts: { knownBugs?: Record<string, string> } = {}): void {
  const knownBugs = opts.knownBugs ?? {};
  describe(`Backend contract: ${name}`, () => {
    let fx: BackendFixture | undefined;
    let b: Backend;
    const fresh = async (): Promise<Backend> => {
      await fx?.cleanup();
      fx = await factory();
      await fx.backend.create();
      return fx.backend;
    };
    const test = (title: string, fn: (t: TestContext) => Promise<void>): void => {
      const bug = knownBugs[title];
      it(title, bug !== undefined ? { todo: bug } : {}, async (t) => {
        b = await fresh();
        await fn(t);
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

    test('put of parts stores their concatenation, and a re-put of the same bytes cut otherwise is a no-op', async () => {
      const h = { type: 'pack' as const, name: hexName('parts') };
      const whole = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 13) & 0xff));
      await b.put(h, [whole.subarray(0, 1), whole.subarray(1, 1000), Buffer.alloc(0), whole.subarray(1000)]);
      assert.deepEqual(await b.get(h), whole);
      await b.put(h, [whole.subarray(0, 2999), whole.subarray(2999)]);
      await b.put(h, whole);
      await assert.rejects(b.put(h, [whole.subarray(0, 1500), Buffer.alloc(1500)]), MeshbackError);
      assert.deepEqual(await b.get(h), whole);
    });

    test('a ranged get given a buffer returns exactly the requested bytes', async () => {
      const h = { type: 'pack' as const, name: hexName('into') };
      const data = Buffer.from(Array.from({ length: 777 }, (_, i) => (i * 31) & 0xff));
      await b.put(h, data);
      const into = Buffer.alloc(4096, 0xee);
      assert.deepEqual(await b.get(h, { offset: 100, length: 300 }, into), data.subarray(100, 400));
      assert.deepEqual(await b.get(h, { offset: 700, length: 77 }, into), data.subarray(700, 777));
    });

    test('a whole-file get given a buffer returns exactly the file, whether the buffer is larger, exactly its size, or smaller', async () => {
      const h = { type: 'pack' as const, name: hexName('into-whole') };
      const data = Buffer.from(Array.from({ length: 777 }, (_, i) => (i * 17 + 3) & 0xff));
      await b.put(h, data);
      for (const size of [4096, 777, 100]) assert.deepEqual(await b.get(h, undefined, Buffer.alloc(size, 0xee)), data, `a buffer of ${size} bytes`);
    });

    test('openWriter (optional) streams a file that is stored whole at commit, never overwrites, and abort leaves nothing', async (t) => {
      if (b.openWriter === undefined) {
        t.skip('this backend has no openWriter');
        return;
      }
      const parts = [Buffer.from('streamed '), Buffer.alloc(70_000, 3), Buffer.from(' end')];
      const whole = Buffer.concat(parts);
      const name = hexName('streamed');
      const w = await b.openWriter('pack');
      w.write(parts.slice(0, 2));
      await w.drain();
      assert.equal(w.queued, 0);
      w.write(parts.slice(2));
      assert.deepEqual(await names(b, 'pack'), [], 'nothing listed before commit');
      await w.commit(name);
      assert.deepEqual(await b.get({ type: 'pack', name }), whole);
      assert.deepEqual(await names(b, 'pack'), [name]);
      // the same bytes again under that name: a no-op (a retried upload)
      const again = await b.openWriter('pack');
      again.write([whole]);
      await again.commit(name);
      // other bytes under that name: refused, the original stays
      const other = await b.openWriter('pack');
      other.write([Buffer.from('other bytes')]);
      await assert.rejects(other.commit(name), MeshbackError);
      assert.deepEqual(await b.get({ type: 'pack', name }), whole);
      const gone = await b.openWriter('pack');
      gone.write([Buffer.from('given up')]);
      await gone.abort();
      assert.deepEqual(await names(b, 'pack'), [name], 'an aborted writer leaves nothing listed');
    });

    test('deleteSync (optional) removes a file at once; a missing file is not an error', async (t) => {
      if (b.deleteSync === undefined) {
        t.skip('this backend has no deleteSync');
        return;
      }
      const h = { type: 'lock' as const, name: hexName('sync-delete') };
      await b.put(h, Buffer.from('lock'));
      b.deleteSync(h);
      await assert.rejects(b.stat(h), isNotFound);
      b.deleteSync(h);
      assert.deepEqual(await names(b, 'lock'), []);
    });

    test('removeTemporary (optional) never removes a stored file', async (t) => {
      if (b.removeTemporary === undefined) {
        t.skip('this backend has no removeTemporary');
        return;
      }
      const stored: Handle[] = [
        { type: 'pack', name: hexName('keep-pack') },
        { type: 'index', name: hexName('keep-index') },
        { type: 'parity', name: hexName('keep-parity') },
        { type: 'config', name: 'config' },
      ];
      for (const h of stored) await b.put(h, Buffer.from(`kept ${h.type}`));
      const r = await b.removeTemporary(0);
      assert.equal(r.files, 0);
      for (const h of stored) assert.deepEqual(await b.get(h), Buffer.from(`kept ${h.type}`));
    });
  });
}
