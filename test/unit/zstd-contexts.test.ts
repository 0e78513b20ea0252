/** content/zstd: kept zstd contexts give the same frames as node:zlib's one-shot calls, one call at a time or many. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { ZstdContexts } from '../../src/content/zstd.ts';

function blob(i: number): Buffer {
  const n = 1 + ((i * 7919) % (3 * 1024 * 1024));
  const b = Buffer.alloc(n, i & 0xff);
  // part random (incompressible), part repetitive: outputs of very different sizes, some larger than one output piece
  randomBytes(Math.floor(n / (1 + (i % 4)))).copy(b);
  return b;
}

test('compress then decompress, 4 at a time on 2 kept contexts: every frame is whole and its own', async () => {
  const z = new ZstdContexts(3, 2);
  const blobs = Array.from({ length: 60 }, (_, i) => blob(i));
  let next = 0;
  const worker = async () => {
    while (next < blobs.length) {
      const b = blobs[next++]!;
      const c = await z.compress(b);
      // a frame node:zlib's one-shot decompressor reads alone
      assert.ok(zlib.zstdDecompressSync(c).equals(b));
      assert.ok((await z.decompress(c, b.length)).equals(b));
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  z.close();
});

test('a damaged or cut frame fails, and the context that read it is not used again', async () => {
  const z = new ZstdContexts(3, 1);
  const b = blob(5);
  const c = await z.compress(b);
  await assert.rejects(z.decompress(c.subarray(0, c.length >> 1), b.length));
  const bad = Buffer.from(c);
  bad.fill(0x55, 0, 8);
  await assert.rejects(z.decompress(bad, b.length));
  await assert.rejects(z.decompress(c, b.length + 1), /decompressed to \d+ bytes, not \d+/);
  // the next frame decodes on a fresh context
  assert.ok((await z.decompress(c, b.length)).equals(b));
  const b6 = blob(6);
  assert.ok((await z.decompress(await z.compress(b6), b6.length)).equals(b6));
  z.close();
});
