import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { newMasterKey, seal } from '../../src/crypto/index.ts';
import { IntegrityError } from '../../src/errors/index.ts';
import { BLOB_DATA, BLOB_TREE } from '../../src/content/index-table.ts';
import { HEADER_ENTRY_LEN, PackEntryLog, decodeIndex, decodePackHeader, encodeIndex, encodeIndexRecord, encodePackHeader, sha256hex } from '../../src/content/pack.ts';
import type { IndexPack, PackEntry } from '../../src/content/pack.ts';
import { flipped, prngBytes } from './helpers.ts';

const key = newMasterKey().encKey;

/** A pack file as the store writes it: sealed blobs, then the header and its length. */
function makePack(sizes: number[]): { pack: Buffer; entries: PackEntry[] } {
  const parts: Buffer[] = [];
  const entries: PackEntry[] = [];
  let offset = 0;
  for (const [i, n] of sizes.entries()) {
    const blob = seal(key, prngBytes(`blob-${i}`, n));
    entries.push({ type: i % 2 === 0 ? BLOB_DATA : BLOB_TREE, id: prngBytes(`id-${i}`, 32), offset, length: blob.length, rawLength: n + 1000 });
    parts.push(blob);
    offset += blob.length;
  }
  parts.push(encodePackHeader(key, entries));
  return { pack: Buffer.concat(parts), entries };
}

const isIntegrity = (err: unknown): boolean => err instanceof IntegrityError && err.code === 'INTEGRITY';
const namesPack = (name: string) => (err: unknown): boolean => isIntegrity(err) && (err as Error).message.includes(name);

describe('pack header', () => {
  it('round trips entries, recomputing offsets from lengths', () => {
    const { pack, entries } = makePack([10, 0, 5000, 123, 1]);
    const got = decodePackHeader(key, pack, 'p1');
    assert.deepEqual(got, entries);
  });

  it('round trips an empty pack', () => {
    const pack = encodePackHeader(key, []);
    assert.deepEqual(decodePackHeader(key, pack, 'empty'), []);
  });

  it('is encrypted: blob ids do not appear in the clear', () => {
    const { pack, entries } = makePack([100, 200]);
    for (const e of entries) assert.equal(pack.includes(e.id), false);
    const tail = pack.readUInt32LE(pack.length - 4);
    assert.equal(tail, 2 * HEADER_ENTRY_LEN + 28, 'the tail holds the sealed header length');
  });

  it('raises IntegrityError naming the pack for every truncation', () => {
    const { pack } = makePack([300, 40, 77]);
    for (const n of [0, 1, 3, 4, 10, 100, pack.length - 100, pack.length - 5, pack.length - 4, pack.length - 1]) {
      assert.throws(() => decodePackHeader(key, pack.subarray(0, n), 'trunc-pack'), isIntegrity, `first ${n} bytes`);
    }
    // a pack that lost bytes at its start: the header is intact but no longer adds up
    assert.throws(() => decodePackHeader(key, pack.subarray(7), 'front-cut'), namesPack('front-cut'));
    // a pack with bytes appended
    assert.throws(() => decodePackHeader(key, Buffer.concat([pack, Buffer.alloc(3)]), 'grown'), isIntegrity);
  });

  it('raises IntegrityError when any byte of the header or its length is flipped', () => {
    const { pack } = makePack([64, 64]);
    const hlen = pack.readUInt32LE(pack.length - 4);
    const start = pack.length - 4 - hlen;
    for (let i = start; i < pack.length; i++) {
      assert.throws(() => decodePackHeader(key, flipped(pack, i), 'flip-pack'), isIntegrity, `byte ${i - start} of the header area`);
    }
    assert.throws(() => decodePackHeader(key, flipped(pack, start + 20), 'flip-pack'), namesPack('flip-pack'));
  });

  it('raises IntegrityError under the wrong key, or when the header lists more data than the pack holds', () => {
    const { pack, entries } = makePack([50, 60]);
    assert.throws(() => decodePackHeader(newMasterKey().encKey, pack, 'other-key'), namesPack('other-key'));
    const lying = Buffer.concat([pack.subarray(0, entries[1]!.offset + entries[1]!.length), encodePackHeader(key, [...entries, { ...entries[0]!, id: prngBytes('extra', 32) }])]);
    assert.throws(() => decodePackHeader(key, lying, 'lying'), namesPack('lying'));
  });

  it('an entry log past one block gives the header and the index record the entries give', () => {
    const entries: PackEntry[] = [];
    const log = new PackEntryLog();
    let offset = 0;
    for (let i = 0; i < PackEntryLog.BLOCK + 3; i++) {
      const e: PackEntry = { type: i === 0 ? BLOB_TREE : BLOB_DATA, id: prngBytes(`id${i}`, 32), offset, length: 40 + (i % 7), rawLength: 100 + i };
      entries.push(e);
      log.add(e.type, e.id, e.offset, e.length, e.rawLength);
      offset += e.length;
    }
    assert.equal(log.length, entries.length);
    assert.equal(log.firstType(), BLOB_TREE);
    assert.deepEqual(log.indexRecord('ab'.repeat(32), offset + 10), encodeIndexRecord({ id: 'ab'.repeat(32), size: offset + 10, entries }));
    const seen: PackEntry[] = [];
    log.forEach((type, id, o, length, rawLength) => seen.push({ type, id: Buffer.from(id), offset: o, length, rawLength }));
    assert.deepEqual(seen, entries);
    const header = log.header(key);
    const pack = Buffer.concat([Buffer.alloc(offset), header]);
    assert.deepEqual(decodePackHeader(key, pack, 'logged').map((e) => e.rawLength), entries.map((e) => e.rawLength));
    log.clear();
    assert.equal(log.length, 0);
    assert.equal(log.firstType(), undefined);
  });

  it('sha256hex is the hex SHA-256', () => {
    assert.equal(sha256hex(Buffer.from('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

describe('index file', () => {
  const packs: IndexPack[] = [
    { id: 'aa'.repeat(32), size: 123456, entries: makePack([10, 20, 30]).entries },
    { id: 'bb'.repeat(32), size: 0xfffffff0, entries: [] },
    { id: '0123456789abcdef'.repeat(4), size: 42, entries: makePack([1]).entries },
  ];

  const decodeAll = (file: Buffer, name = 'idx'): IndexPack[] => {
    const out: IndexPack[] = [];
    decodeIndex(key, file, name, (id, size, entries) => out.push({ id, size, entries: entries.map((e) => ({ ...e, id: Buffer.from(e.id) })) }));
    return out;
  };

  it('round trips pack records and their entries', () => {
    assert.deepEqual(decodeAll(encodeIndex(key, packs)), packs);
    assert.deepEqual(decodeAll(encodeIndex(key, [])), []);
  });

  it('is encrypted: pack ids do not appear in the clear', () => {
    const file = encodeIndex(key, packs);
    assert.equal(file.includes(Buffer.from(packs[0]!.id, 'hex')), false);
  });

  it('raises IntegrityError for any flipped byte and for truncation', () => {
    const file = encodeIndex(key, packs.slice(2));
    for (let i = 0; i < file.length; i++) {
      assert.throws(() => decodeAll(flipped(file, i)), isIntegrity, `byte ${i}`);
    }
    for (const n of [0, 10, file.length - 1]) assert.throws(() => decodeAll(file.subarray(0, n)), isIntegrity, `first ${n} bytes`);
    assert.throws(() => decodeAll(flipped(file, 0), 'named-index'), (err: unknown) => isIntegrity(err) && (err as Error).message.includes('named-index'));
  });

  it('raises IntegrityError for authentic but malformed content', () => {
    const plain = (b: Buffer): Buffer => seal(key, b);
    const hdr = (count: number): Buffer => {
      const b = Buffer.alloc(9);
      b.write('MBIX', 0);
      b[4] = 1;
      b.writeUInt32LE(count, 5);
      return b;
    };
    assert.throws(() => decodeAll(plain(Buffer.from('MBI'))), isIntegrity, 'too short');
    assert.throws(() => decodeAll(plain(Buffer.concat([Buffer.from('XBIX'), hdr(0).subarray(4)]))), isIntegrity, 'bad magic');
    const v2 = hdr(0);
    v2[4] = 2;
    assert.throws(() => decodeAll(plain(v2)), isIntegrity, 'unknown version');
    assert.throws(() => decodeAll(plain(hdr(1))), isIntegrity, 'count says 1, no record');
    const rec = Buffer.alloc(40);
    rec.writeUInt32LE(5, 36); // 5 entries announced, none present
    assert.throws(() => decodeAll(plain(Buffer.concat([hdr(1), rec]))), isIntegrity, 'entries missing');
  });
});
