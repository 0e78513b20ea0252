/**
 * The chunking thread (src/archiver/chunk-thread.ts, chunk-worker.ts): a real worker thread reading
 * real files. It must cut, hash and find holes exactly as the main thread's chunker does, hand its
 * few buffers round (a file larger than all of them together), keep files apart and in order,
 * report a read error with its code, and refuse work once closed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ChunkReadError, ChunkThread } from '../../src/archiver/chunk-thread.ts';
import { Chunker } from '../../src/chunker/fastcdc.ts';
import { prngBytes, removeDir, tempDir } from './helpers.ts';

const KiB = 1024;
const MIN_HOLE = 4096;
const chunker = new Chunker(randomBytes(32), { min: 4 * KiB, avg: 16 * KiB, max: 64 * KiB });
const idKey = randomBytes(32);

/** What the main thread's chunker makes of `data`: lengths (negative: a hole) and ids. */
function expected(data: Buffer): { lens: number[]; ids: string[] } {
  const lens: number[] = [];
  const ids: string[] = [];
  for (let pos = 0; pos < data.length; ) {
    const end = chunker.cut(data, pos, data.length);
    const c = data.subarray(pos, end);
    if (c.length >= MIN_HOLE && c.every((b) => b === 0)) lens.push(-c.length);
    else {
      lens.push(c.length);
      ids.push(createHmac('sha256', idKey).update(c).digest('hex'));
    }
    pos = end;
  }
  return { lens, ids };
}

/** Runs a file through the thread: its lengths, ids and bytes (copied out before each buffer goes back). */
async function viaThread(t: ChunkThread, file: string): Promise<{ lens: number[]; ids: string[]; bytes: Buffer; batches: number }> {
  const fh = await fsp.open(file, 'r');
  try {
    const lens: number[] = [];
    const ids: string[] = [];
    const parts: Buffer[] = [];
    let batches = 0;
    for await (const b of t.chunks(fh.fd)) {
      batches++;
      let off = 0;
      let k = 0;
      for (const l of b.lens) {
        lens.push(l);
        const n = Math.abs(l);
        if (l > 0) {
          ids.push(Buffer.from(b.ids.subarray(k * 32, (k + 1) * 32)).toString('hex'));
          k++;
        }
        parts.push(Buffer.from(b.buf.subarray(off, off + n)));
        off += n;
      }
      assert.equal(k * 32, b.ids.length, 'one id per chunk that is not a hole');
      t.give(b.slot);
    }
    return { lens, ids, bytes: Buffer.concat(parts), batches };
  } finally {
    await fh.close();
  }
}

test('the chunking thread cuts, hashes and finds holes as the main thread does, through 2 buffers for files of many', async () => {
  const dir = await tempDir('chunk-thread');
  const t = new ChunkThread(chunker, idKey, MIN_HOLE, 2);
  try {
    // 2 buffers of 128 KiB (twice the largest chunk) for files of up to 1.3 MiB: they go round
    const files: [string, Buffer][] = [
      ['a', Buffer.concat([prngBytes('a1', 300 * KiB), Buffer.alloc(200 * KiB), prngBytes('a2', 100 * KiB + 17)])],
      ['b', prngBytes('b', 1300 * KiB)],
      ['c', Buffer.alloc(0)],
      ['d', prngBytes('d', 3 * KiB)],
      ['e', Buffer.alloc(256 * KiB)],
    ];
    for (const [name, data] of files) await fsp.writeFile(path.join(dir, name), data);
    // two files at once: each gets its own chunks, in order
    const [a, b] = await Promise.all([viaThread(t, path.join(dir, 'a')), viaThread(t, path.join(dir, 'b'))]);
    for (const [name, got] of [['a', a], ['b', b]] as const) {
      const data = files.find(([n]) => n === name)![1];
      assert.deepEqual({ lens: got.lens, ids: got.ids }, expected(data), `file ${name}`);
      assert.ok(got.bytes.equals(data), `the bytes of ${name}`);
    }
    assert.ok(a.lens.some((l) => l < 0), 'a has a hole');
    assert.ok(b.batches > 2, `b came in more batches (${b.batches}) than there are buffers`);
    for (const name of ['c', 'd', 'e']) {
      const data = files.find(([n]) => n === name)![1];
      const got = await viaThread(t, path.join(dir, name));
      assert.deepEqual({ lens: got.lens, ids: got.ids }, expected(data), `file ${name}`);
    }
  } finally {
    await t.close();
    await removeDir(dir);
  }
});

test('the chunking thread: a read error comes back with its code, the next file is read; closed, it refuses work', async () => {
  const dir = await tempDir('chunk-thread-err');
  const t = new ChunkThread(chunker, idKey, MIN_HOLE, 2);
  try {
    // a directory opens, but read(2) on it fails with EISDIR
    const d = await fsp.open(dir, 'r');
    try {
      await assert.rejects(viaThread(t, dir), (err: unknown) => err instanceof ChunkReadError && err.code === 'EISDIR');
    } finally {
      await d.close();
    }
    const data = prngBytes('after', 200 * KiB);
    await fsp.writeFile(path.join(dir, 'f'), data);
    assert.ok((await viaThread(t, path.join(dir, 'f'))).bytes.equals(data), 'the thread goes on after an error');
  } finally {
    await t.close();
  }
  await assert.rejects(viaThread(t, path.join(dir, 'f')), /closed/);
  await removeDir(dir);
});
