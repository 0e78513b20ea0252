process.env.MESHBACK_TEST_SCRYPT_N = '1024';

/**
 * The content store on a backend that runs out of space: once a pack write fails, the packs
 * still open are given up (their writers aborted, so no partial file stays behind), and
 * add()/flush() report the error. test/e2e/enospc.test.ts does the same on a real full disk.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { BlobWriter, FileType } from '../../src/storage/backend.ts';
import { MemoryBackend } from '../../src/storage/memory.ts';
import { BLOB_DATA, BLOB_TREE } from '../../src/content/index-table.ts';
import { MeshbackError, NoSpaceError } from '../../src/errors/index.ts';
import { Repository } from '../../src/repository/index.ts';
import { prngBytes } from './helpers.ts';

const KiB = 1024;

/** A memory backend whose streamed files share a byte budget; it tracks writers neither committed nor aborted. */
class SmallDisk extends MemoryBackend {
  free = Infinity;
  readonly unfinished = new Set<number>();
  private next = 0;

  async openWriter(type: FileType): Promise<BlobWriter> {
    const id = this.next++;
    this.unfinished.add(id);
    const parts: Uint8Array[] = [];
    let used = 0;
    let queued = 0;
    let chain: Promise<void> = Promise.resolve();
    return {
      write: (ps) => {
        const n = ps.reduce((a, p) => a + p.byteLength, 0);
        queued += n;
        chain = chain.then(async () => {
          await new Promise((r) => setImmediate(r));
          if (n > this.free) throw new NoSpaceError('the test disk');
          this.free -= n;
          used += n;
          parts.push(...ps);
          queued -= n;
        });
        chain.catch(() => undefined);
      },
      get queued() {
        return queued;
      },
      drain: () => chain,
      commit: async (name) => {
        try {
          await chain;
          await this.put({ type, name }, parts);
        } catch (err) {
          this.free += used; // like LocalBackend: a failed commit removes its temporary file
          throw err;
        } finally {
          this.unfinished.delete(id);
        }
      },
      abort: async () => {
        await chain.catch(() => undefined);
        if (this.unfinished.delete(id)) this.free += used;
      },
    };
  }
}

describe('ContentStore on a full disk', () => {
  it('gives up the open packs when a pack write fails: no writer is left unfinished, flush reports NO_SPACE, no index is written', async () => {
    const backend = new SmallDisk();
    const repo = await Repository.init(backend, 'pw', { packSize: 64 * KiB });
    backend.free = 100 * KiB;
    // a tree blob opens the tree pack's writer; it stays open while data packs fill the disk
    const tree = Buffer.from(JSON.stringify({ nodes: [] }));
    await repo.store.add(BLOB_TREE, repo.store.id(tree), tree);
    let failed: unknown;
    for (let i = 0; i < 40 && failed === undefined; i++) {
      const b = prngBytes(`nospace-${i}`, 20 * KiB);
      try {
        await repo.store.add(BLOB_DATA, repo.store.id(b), b);
      } catch (err) {
        failed = err;
      }
    }
    await assert.rejects(repo.store.flush(), (err: unknown) => err instanceof MeshbackError && err.code === 'NO_SPACE');
    if (failed !== undefined) assert.ok(failed instanceof MeshbackError && failed.code === 'NO_SPACE', String(failed));
    assert.deepEqual([...backend.unfinished], [], 'writers neither committed nor aborted (partial files left behind)');
    const indexes: string[] = [];
    for await (const f of backend.list('index')) indexes.push(f.name);
    assert.deepEqual(indexes, []);
    // what was committed is complete: a new session with room stores everything
    backend.free = Infinity;
    const again = await Repository.open(backend, 'pw');
    const b = prngBytes('nospace-0', 20 * KiB);
    assert.equal(await again.store.add(BLOB_DATA, again.store.id(b), b), true);
    await again.store.flush();
    assert.deepEqual(await again.store.load(again.store.id(b)), b);
  });
});
