import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { BLOB_DATA, BLOB_TREE, ChunkIndex } from '../../src/content/index-table.ts';
import type { BlobType } from '../../src/content/index-table.ts';
import { prngBytes } from './helpers.ts';

const N = 200_000;
const PACKS = 37;

function idAt(ids: Buffer, i: number): Buffer {
  return ids.subarray(i * 32, i * 32 + 32);
}

/** The expected fields of entry i. */
function fields(i: number): { type: BlobType; pack: number; offset: number; length: number; rawLength: number } {
  return {
    type: i % 3 === 0 ? BLOB_TREE : BLOB_DATA,
    pack: i % PACKS,
    offset: (i * 2654435761) >>> 0, // spreads over the whole u32 range
    length: (i * 7 + 29) >>> 0,
    rawLength: i === 5 ? 0xffffffff : (i * 11) >>> 0,
  };
}

describe('ChunkIndex', () => {
  let idx: ChunkIndex;
  let ids: Buffer;
  let packNames: string[];
  before(() => {
    ids = prngBytes('index-ids', N * 32);
    idx = new ChunkIndex(); // default capacity 1024: must grow many times
    packNames = Array.from({ length: PACKS }, (_, p) => p.toString(16).padStart(64, '0'));
    for (const [p, name] of packNames.entries()) assert.equal(idx.packNumber(name, 1000 + p), p);
    for (let i = 0; i < N; i++) {
      const f = fields(i);
      assert.equal(idx.add(idAt(ids, i), f.type, f.pack, f.offset, f.length, f.rawLength), true);
    }
  });

  it('holds all 200k entries and finds each with has() and lookup()', () => {
    assert.equal(idx.size, N);
    for (let i = 0; i < N; i++) {
      const id = Buffer.from(idAt(ids, i)); // a copy: lookup is by value
      assert.equal(idx.has(id), true);
      const e = idx.lookup(id);
      const f = fields(i);
      assert.ok(e !== undefined, `entry ${i} missing`);
      if (e.type !== f.type || e.pack !== packNames[f.pack] || e.offset !== f.offset || e.length !== f.length || e.rawLength !== f.rawLength) {
        assert.fail(`entry ${i}: got ${JSON.stringify(e)}, want ${JSON.stringify({ ...f, pack: packNames[f.pack] })}`);
      }
    }
  });

  it('round-trips fields through entryOf/packOf/rawLengthOf', () => {
    for (const i of [0, 1, 5, 1023, 1024, 65535, N - 1]) {
      const e = idx.entryOf(idAt(ids, i));
      assert.ok(e >= 0);
      assert.equal(idx.packOf(e), fields(i).pack);
      assert.equal(idx.rawLengthOf(e), fields(i).rawLength);
    }
    assert.equal(idx.lookup(idAt(ids, 5))!.rawLength, 0xffffffff, 'u32 max survives');
  });

  it('returns undefined / false / -1 for unknown ids', () => {
    const unknown = prngBytes('index-unknown', 1000 * 32);
    for (let i = 0; i < 1000; i++) {
      const id = idAt(unknown, i);
      assert.equal(idx.has(id), false);
      assert.equal(idx.lookup(id), undefined);
      assert.equal(idx.entryOf(id), -1);
    }
    // an id that differs from a stored one only in its last byte
    const near = Buffer.from(idAt(ids, 42));
    near[31] = near[31]! ^ 1;
    assert.equal(idx.has(near), false);
  });

  it('rejects duplicates without changing the stored entry', () => {
    const before = idx.lookup(idAt(ids, 7));
    assert.equal(idx.add(Buffer.from(idAt(ids, 7)), BLOB_DATA, 0, 1, 2, 3), false);
    assert.equal(idx.add(idAt(ids, N - 1), BLOB_DATA, 0, 1, 2, 3), false);
    assert.equal(idx.size, N);
    assert.deepEqual(idx.lookup(idAt(ids, 7)), before);
  });

  it('forEach visits every entry exactly once with its fields', () => {
    const seen = new Set<string>();
    let bad = 0;
    idx.forEach((id, type, packNo, offset, length, rawLength) => {
      const hex = Buffer.from(id).toString('hex');
      assert.equal(id.length, 32);
      seen.add(hex);
      const e = idx.lookup(id);
      if (e === undefined || e.type !== type || e.pack !== packNames[packNo] || e.offset !== offset || e.length !== length || e.rawLength !== rawLength) bad++;
    });
    assert.equal(bad, 0);
    assert.equal(seen.size, N);
    for (let i = 0; i < N; i += 997) assert.ok(seen.has(idAt(ids, i).toString('hex')));
  });

  it('uses under 80 bytes of memory per entry at 200k entries', () => {
    const per = idx.memoryBytes / idx.size;
    assert.ok(per < 80, `${per.toFixed(1)} bytes per entry`);
    // and the accounting is not fictitious: at least the ids and the fields are counted
    assert.ok(per >= 32 + 1 + 16, `${per.toFixed(1)} bytes per entry is less than the data it holds`);
  });

  it('keeps packs numbered once, with their sizes', () => {
    assert.equal(idx.packNumber(packNames[3]!, 999999), 3, 'a known pack keeps its number');
    assert.equal(idx.packSizes[3], 1003, 'and its first recorded size');
    assert.equal(idx.hasPack(packNames[3]!), true);
    assert.equal(idx.hasPack('f'.repeat(64)), false);
    assert.equal(idx.packs.length, PACKS);
  });
});

describe('ChunkIndex with colliding hash slots', () => {
  it('finds ids that share their first bytes (same home slot), across growth', () => {
    const idx = new ChunkIndex(4);
    const ids: Buffer[] = [];
    for (let i = 0; i < 300; i++) {
      const id = Buffer.alloc(32, 0xab); // same first 4 bytes for all: one long probe chain
      id.writeUInt32BE(i, 28);
      ids.push(id);
      assert.equal(idx.add(id, BLOB_DATA, 0, i, i + 1, i + 2), true);
    }
    for (let i = 0; i < 300; i++) assert.equal(idx.lookup(ids[i]!)?.offset, i, `id ${i}`);
    const absent = Buffer.alloc(32, 0xab);
    absent.writeUInt32BE(300, 28);
    assert.equal(idx.has(absent), false);
    assert.equal(idx.add(ids[150]!, BLOB_TREE, 0, 0, 0, 0), false);
    assert.equal(idx.size, 300);
  });

  it('grows in place and then past its reserve, keeping every entry', () => {
    const idx = new ChunkIndex(4, 40_000);
    const N = 100_000; // past the reserve: the arrays move to larger buffers once
    const ids = Array.from({ length: N }, (_, i) => prngBytes(`grow-${i}`, 32));
    for (let i = 0; i < N; i++) {
      assert.equal(idx.add(ids[i]!, i % 2 === 0 ? BLOB_DATA : BLOB_TREE, i % 5, i, i + 1, i + 2), true);
      if (i === 30_000) assert.equal(idx.lookup(ids[7]!)?.rawLength, 9, 'in place');
    }
    for (let i = 0; i < N; i += 7) {
      const e = idx.lookup(ids[i]!);
      assert.deepEqual([e?.offset, e?.length, e?.rawLength, e?.type], [i, i + 1, i + 2, i % 2 === 0 ? BLOB_DATA : BLOB_TREE], `entry ${i}`);
    }
    assert.equal(idx.size, N);
    assert.ok(idx.memoryBytes / N < 80, `${(idx.memoryBytes / N).toFixed(1)} bytes per entry`);
  });

  it('finds ids given in hex, and nothing for malformed hex', () => {
    const idx = new ChunkIndex(4);
    const id = prngBytes('hex-id', 32);
    idx.add(id, BLOB_DATA, 0, 7, 1, 1);
    assert.equal(idx.offsetOf(idx.entryOfHex(id.toString('hex'))), 7);
    assert.equal(idx.hasHex(id.toString('hex')), true);
    assert.equal(idx.hasHex(prngBytes('other', 32).toString('hex')), false);
    assert.equal(idx.entryOfHex(id.toString('hex').slice(0, 62)), -1, 'too short');
    assert.equal(idx.entryOfHex(`${id.toString('hex').slice(0, 62)}zz`), -1, 'not hex');
  });

  it('groups entry numbers by pack, in the order they were added', () => {
    const idx = new ChunkIndex(4);
    const packs = [idx.packNumber('a'.repeat(64), 10), idx.packNumber('b'.repeat(64), 20), idx.packNumber('c'.repeat(64), 30)];
    const want: number[][] = [[], [], []];
    for (let i = 0; i < 1000; i++) {
      const p = i % 7 === 0 ? 0 : 2; // pack 1 holds nothing
      idx.add(prngBytes(`bp-${i}`, 32), BLOB_DATA, packs[p]!, i, 1, 1);
      want[p]!.push(i);
    }
    const { start, order } = idx.entriesByPack();
    assert.deepEqual([...start], [0, want[0]!.length, want[0]!.length, 1000]);
    for (let p = 0; p < 3; p++) assert.deepEqual([...order.subarray(start[p]!, start[p + 1]!)].map((e) => idx.offsetOf(e)), want[p], `pack ${p}`);
  });

  it('copies the id on add (a caller reusing its buffer does not corrupt the index)', () => {
    const idx = new ChunkIndex();
    const buf = Buffer.alloc(32, 1);
    idx.add(buf, BLOB_DATA, 0, 10, 20, 30);
    buf.fill(2);
    assert.equal(idx.has(Buffer.alloc(32, 1)), true);
    assert.equal(idx.has(Buffer.alloc(32, 2)), false);
  });
});
