/** util/buffer-pool: the archiver's ring of chunk memory. */
import { describe, it, test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferRing, ByteArena } from '../../src/util/buffer-pool.ts';

test('pieces come from the ring in order, wrap around once the oldest are given back, and never overlap a held piece', () => {
  const ring = new BufferRing(100);
  const a = ring.take(40);
  const b = ring.take(40);
  assert.equal(a.buffer, b.buffer);
  assert.equal(b.byteOffset, 40);
  // 20 bytes left at the end, none at the start (a is held): a piece of 30 is made outside
  const c = ring.take(30);
  assert.notEqual(c.buffer, a.buffer);
  assert.equal(ring.stats.outside, 1);
  ring.give(c); // outside the ring: ignored
  ring.give(a);
  const d = ring.take(30); // wraps: [0, 30) is free now
  assert.equal(d.buffer, a.buffer);
  assert.equal(d.byteOffset, 0);
  // wrapped: room only between the tail (30) and the head (b at 40)
  assert.notEqual(ring.take(20).buffer, a.buffer);
  const e = ring.take(10);
  assert.equal(e.byteOffset, 30);
  // out of order: e given back before b: the head stays at b
  ring.give(e);
  ring.give(e); // twice: ignored
  assert.notEqual(ring.take(5).buffer, a.buffer, 'nothing free between the tail and the held b');
  ring.give(b);
  ring.give(d);
  // all given back: the ring starts over
  const f = ring.take(100);
  assert.equal(f.buffer, a.buffer);
  assert.equal(f.byteOffset, 0);
});

test('a random workload of takes and out-of-order gives: held pieces never overlap, and most come from the ring', () => {
  const ring = new BufferRing(64 * 1024);
  const held: Buffer[] = [];
  let seed = 7;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let i = 0; i < 20_000; i++) {
    if (held.length < 8 && rnd(3) !== 0) {
      const b = ring.take(1 + rnd(8 * 1024));
      b.fill(i & 0xff);
      held.push(b);
    } else if (held.length > 0) {
      // mostly the oldest first, sometimes another
      const j = rnd(4) === 0 ? rnd(held.length) : 0;
      const [b] = held.splice(j, 1);
      assert.ok(b!.every((x) => x === b![0]), 'a held piece was overwritten by another');
      ring.give(b!);
    }
  }
  assert.ok(ring.stats.outside < ring.stats.taken / 10, JSON.stringify(ring.stats));
});

describe('ByteArena', () => {
  it('keeps copies back to back in blocks of its own, and large ones apart', () => {
    const arena = new ByteArena(1024);
    const a = Buffer.from('dir/one');
    const ka = arena.copy(a);
    a.fill(0); // the caller reuses its buffer: the copy is unchanged
    const kb = arena.copy(Buffer.from('dir/two'));
    assert.equal(ka.toString(), 'dir/one');
    assert.equal(kb.toString(), 'dir/two');
    assert.equal(ka.buffer, kb.buffer, 'small copies share a block');
    assert.equal(ka.buffer.byteLength, 1024, 'the block is the arena’s own, not a slab of the shared pool');
    const big = arena.copy(Buffer.alloc(600, 7));
    assert.notEqual(big.buffer, ka.buffer);
    assert.equal(big.buffer.byteLength, 600);
    const many = Array.from({ length: 300 }, (_, i) => arena.copy(Buffer.from(`path/${i}`)));
    assert.deepEqual(many.map((b) => b.toString()), Array.from({ length: 300 }, (_, i) => `path/${i}`));
  });
});
