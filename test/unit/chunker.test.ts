import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Chunker, DEFAULT_CHUNKER, gearTable } from '../../src/chunker/fastcdc.ts';
import type { ChunkerParams } from '../../src/chunker/fastcdc.ts';
import { prngBytes } from './helpers.ts';

const MiB = 1024 * 1024;
const SEED_A = Buffer.alloc(32, 0xa1);
const SEED_B = Buffer.alloc(32, 0xb2);
const SMALL: ChunkerParams = { min: 2048, avg: 8192, max: 32768 };

/** Chunk ends (exclusive) of the whole buffer, chunked in one pass. */
function cuts(c: Chunker, buf: Uint8Array): number[] {
  const ends: number[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const end = c.cut(buf, pos, buf.length);
    assert.ok(end > pos && end <= buf.length, `cut ${end} out of range after ${pos}`);
    ends.push(end);
    pos = end;
  }
  return ends;
}

/** Chunk ends as the worker produces them: a window of 2*max refilled as it drains. */
function streamingCuts(c: Chunker, data: Uint8Array): number[] {
  const max = c.params.max;
  const buf = Buffer.alloc(2 * max);
  const ends: number[] = [];
  let consumed = 0; // data offset of buf[0]
  let read = 0;
  let fill = 0;
  let eof = false;
  while (!eof || fill > 0) {
    while (!eof && fill < buf.length) {
      const n = Math.min(buf.length - fill, data.length - read, 777_777); // short reads
      buf.set(data.subarray(read, read + n), fill);
      read += n;
      fill += n;
      if (n === 0) eof = true;
    }
    let pos = 0;
    while (fill - pos >= max || (eof && pos < fill)) {
      const end = c.cut(buf, pos, fill);
      ends.push(consumed + end);
      pos = end;
    }
    buf.copyWithin(0, pos, fill);
    fill -= pos;
    consumed += pos;
  }
  return ends;
}

function lengths(ends: number[]): number[] {
  return ends.map((e, i) => e - (i === 0 ? 0 : ends[i - 1]!));
}

function chunkHashes(buf: Uint8Array, ends: number[]): string[] {
  return ends.map((e, i) => createHash('sha256').update(buf.subarray(i === 0 ? 0 : ends[i - 1]!, e)).digest('hex'));
}

describe('FastCDC chunker', () => {
  let big: Buffer; // 40 MiB of pseudo-random data
  let bigCuts: number[];
  before(() => {
    big = prngBytes('chunker-40MiB', 40 * MiB);
    bigCuts = cuts(new Chunker(SEED_A), big);
  });

  it('is deterministic: same seed, params and data give the same cuts', () => {
    assert.deepEqual(cuts(new Chunker(Buffer.from(SEED_A)), big), bigCuts);
    const small = prngBytes('det', 300_000);
    assert.deepEqual(cuts(new Chunker(SEED_A, SMALL), small), cuts(new Chunker(SEED_A, SMALL), Buffer.from(small)));
  });

  it('keeps every chunk within [min, max] except the last, and the chunks concatenate to the input', () => {
    const check = (c: Chunker, buf: Buffer): void => {
      const ends = cuts(c, buf);
      const lens = lengths(ends);
      for (let i = 0; i < lens.length - 1; i++) {
        assert.ok(lens[i]! >= c.params.min && lens[i]! <= c.params.max, `chunk ${i} has ${lens[i]} bytes`);
      }
      assert.ok(lens[lens.length - 1]! <= c.params.max);
      const parts = ends.map((e, i) => buf.subarray(i === 0 ? 0 : ends[i - 1]!, e));
      assert.ok(Buffer.concat(parts).equals(buf));
    };
    check(new Chunker(SEED_A), big);
    // small params, with long zero runs (no content cut possible: max-sized chunks)
    const mixed = Buffer.concat([prngBytes('m1', 100_000), Buffer.alloc(200_000), prngBytes('m2', 50_001), Buffer.alloc(70_000, 0xff)]);
    check(new Chunker(SEED_A, SMALL), mixed);
    const lens = lengths(cuts(new Chunker(SEED_A, SMALL), mixed));
    assert.ok(lens.filter((l) => l === SMALL.max).length >= 4, 'zero runs are cut at max');
  });

  it('handles inputs shorter than min and exactly at the limits', () => {
    const c = new Chunker(SEED_A, SMALL);
    assert.deepEqual(cuts(c, Buffer.alloc(0)), []);
    assert.deepEqual(cuts(c, prngBytes('tiny', 100)), [100]);
    assert.deepEqual(cuts(c, prngBytes('min', SMALL.min)), [SMALL.min]);
    const z = Buffer.alloc(SMALL.max * 3);
    assert.deepEqual(cuts(c, z), [SMALL.max, 2 * SMALL.max, 3 * SMALL.max]);
  });

  it('gives the same cuts when fed through a 2*max window as in one pass', () => {
    const c = new Chunker(SEED_A, SMALL);
    const data = Buffer.concat([prngBytes('win', 1_000_000), Buffer.alloc(100_000), prngBytes('win2', 123_457)]);
    assert.deepEqual(streamingCuts(c, data), cuts(c, data));
    assert.deepEqual(streamingCuts(new Chunker(SEED_A), big.subarray(0, 20 * MiB)), cuts(new Chunker(SEED_A), big.subarray(0, 20 * MiB)));
  });

  it('cuts are content-defined: a small insertion near the start leaves most later chunks unchanged', () => {
    const edited = Buffer.concat([big.subarray(0, 1000), Buffer.from('hello'), big.subarray(1000)]);
    const editedCuts = cuts(new Chunker(SEED_A), edited);
    // offsets relative to the end are unaffected by the insertion
    const fromEnd = new Set(bigCuts.map((e) => big.length - e));
    const shared = editedCuts.filter((e) => fromEnd.has(edited.length - e)).length;
    assert.ok(shared / bigCuts.length > 0.8, `only ${shared} of ${bigCuts.length} boundaries survived`);
    const h1 = new Set(chunkHashes(big, bigCuts));
    const sameChunks = chunkHashes(edited, editedCuts).filter((h) => h1.has(h)).length;
    assert.ok(sameChunks / bigCuts.length > 0.8, `only ${sameChunks} of ${bigCuts.length} chunks are shared`);
    assert.ok(sameChunks < bigCuts.length, 'the edited chunk must differ');
  });

  it('a deletion in the middle only disturbs the chunks around it', () => {
    const mid = 20 * MiB;
    const edited = Buffer.concat([big.subarray(0, mid), big.subarray(mid + 3)]);
    const h1 = new Set(chunkHashes(big, bigCuts));
    const editedCuts = cuts(new Chunker(SEED_A), edited);
    const same = chunkHashes(edited, editedCuts).filter((h) => h1.has(h)).length;
    assert.ok(same >= bigCuts.length - 3, `${same} of ${bigCuts.length} chunks shared`);
  });

  it('different seeds give different gear tables and different boundaries', () => {
    assert.notDeepEqual(gearTable(SEED_A), gearTable(SEED_B));
    assert.deepEqual(gearTable(SEED_A), gearTable(Buffer.from(SEED_A)));
    const other = cuts(new Chunker(SEED_B), big);
    assert.notDeepEqual(other, bigCuts);
    const a = new Set(bigCuts.slice(0, -1));
    const shared = other.slice(0, -1).filter((e) => a.has(e)).length;
    assert.ok(shared / bigCuts.length < 0.5, `${shared} of ${bigCuts.length} boundaries coincide across seeds`);
  });

  it('averages between 0.6 and 1.6 MiB per chunk on random data with the default parameters', () => {
    assert.deepEqual(DEFAULT_CHUNKER, { min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 });
    const avg = big.length / bigCuts.length;
    assert.ok(avg >= 0.6 * MiB && avg <= 1.6 * MiB, `average chunk ${(avg / MiB).toFixed(2)} MiB`);
    // normalised chunking: sizes are not pinned to min or max
    const lens = lengths(bigCuts).slice(0, -1);
    assert.ok(lens.some((l) => l < DEFAULT_CHUNKER.avg) && lens.some((l) => l > DEFAULT_CHUNKER.avg));
    assert.ok(lens.every((l) => l < DEFAULT_CHUNKER.max), 'random data never reaches max');
  });

  it('rejects invalid parameters', () => {
    assert.throws(() => new Chunker(SEED_A, { min: 64, avg: 128, max: 256 }));
    assert.throws(() => new Chunker(SEED_A, { min: 4096, avg: 4096, max: 8192 }));
    assert.throws(() => new Chunker(SEED_A, { min: 4096, avg: 8192, max: 8192 }));
  });
});
