/**
 * Pack and index file formats (see docs/design.md, "Pack Format" and "Index").
 *
 * Pack:   Blob_1 || ... || Blob_n || Seal(Header) || HeaderLength (uint32 LE)
 *         Blob_i = Seal(Kind || Payload), Kind 0 = raw, 1 = zstd
 *         Header = n x (Type u8 || Id [32] || Length u32 LE || RawLength u32 LE)
 * Index:  Seal("MBIX" || Version u8 || PackCount u32 || PackCount x PackRecord)
 *         PackRecord = PackId [32] || PackSize u32 || EntryCount u32 || EntryCount x
 *                      (Type u8 || Id [32] || Offset u32 || Length u32 || RawLength u32)
 * File names of packs and indexes are the SHA-256 of the file's bytes, in hex.
 */
import { createHash } from 'node:crypto';
import { ID_LEN, open, seal } from '../crypto/index.ts';
import { IntegrityError } from '../errors/index.ts';
import type { BlobType } from './index-table.ts';

export const HEADER_ENTRY_LEN = 1 + ID_LEN + 4 + 4;
/** bytes of one entry of an index file's pack record */
const INDEX_ENTRY_LEN = 1 + ID_LEN + 12;
export const KIND_RAW = 0;
export const KIND_ZSTD = 1;

export interface PackEntry {
  type: BlobType;
  id: Buffer;
  offset: number;
  length: number;
  rawLength: number;
}

export function sha256hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * The entries of a pack being written, kept in their index-record layout (INDEX_ENTRY_LEN bytes
 * each: type, id, offset, length, raw length) in blocks of their own: no object and no Buffer per
 * entry. An open pack of tiny files holds tens of thousands of entries; as objects with their
 * ids they cost about 160 bytes of heap each (measured: 48 MiB for the 300,000 entries of the
 * open and the uploading pack of a backup of 1,000,000 small files), here 45.
 */
export class PackEntryLog {
  private readonly blocks: Buffer[] = [];
  private count = 0;
  /** entries per block */
  static readonly BLOCK = 4096;

  get length(): number {
    return this.count;
  }

  add(type: BlobType, id: Uint8Array, offset: number, length: number, rawLength: number): void {
    const i = this.count % PackEntryLog.BLOCK;
    if (i === 0) this.blocks.push(Buffer.allocUnsafeSlow(PackEntryLog.BLOCK * INDEX_ENTRY_LEN));
    const b = this.blocks[this.blocks.length - 1]!;
    const o = i * INDEX_ENTRY_LEN;
    b[o] = type;
    b.set(id.subarray(0, ID_LEN), o + 1);
    b.writeUInt32LE(offset, o + 1 + ID_LEN);
    b.writeUInt32LE(length, o + 5 + ID_LEN);
    b.writeUInt32LE(rawLength, o + 9 + ID_LEN);
    this.count++;
  }

  /** The type of the first entry (packs hold blobs of one type), or undefined when empty. */
  firstType(): BlobType | undefined {
    return this.count === 0 ? undefined : (this.blocks[0]![0] as BlobType);
  }

  /** Calls fn for each entry; id is a view into the log, valid while the log is. */
  forEach(fn: (type: BlobType, id: Buffer, offset: number, length: number, rawLength: number) => void): void {
    for (let e = 0; e < this.count; e++) {
      const b = this.blocks[Math.floor(e / PackEntryLog.BLOCK)]!;
      const o = (e % PackEntryLog.BLOCK) * INDEX_ENTRY_LEN;
      fn(b[o] as BlobType, b.subarray(o + 1, o + 1 + ID_LEN), b.readUInt32LE(o + 1 + ID_LEN), b.readUInt32LE(o + 5 + ID_LEN), b.readUInt32LE(o + 9 + ID_LEN));
    }
  }

  /** The sealed pack header of the entries (see the format above), with its length appended. */
  header(encKey: Buffer): Buffer {
    const h = Buffer.allocUnsafe(this.count * HEADER_ENTRY_LEN);
    let o = 0;
    this.forEach((type, id, _offset, length, rawLength) => {
      h[o] = type;
      id.copy(h, o + 1);
      h.writeUInt32LE(length, o + 1 + ID_LEN);
      h.writeUInt32LE(rawLength, o + 5 + ID_LEN);
      o += HEADER_ENTRY_LEN;
    });
    const sealed = seal(encKey, h);
    const tail = Buffer.allocUnsafe(4);
    tail.writeUInt32LE(sealed.length, 0);
    return Buffer.concat([sealed, tail]);
  }

  /** The pack's record of an index file (as encodeIndexRecord): pack id, size, entry count, entries. */
  indexRecord(packId: string, size: number): Buffer {
    const b = Buffer.allocUnsafeSlow(ID_LEN + 8 + this.count * INDEX_ENTRY_LEN);
    Buffer.from(packId, 'hex').copy(b, 0);
    b.writeUInt32LE(size, ID_LEN);
    b.writeUInt32LE(this.count, ID_LEN + 4);
    let o = ID_LEN + 8;
    let left = this.count;
    for (const block of this.blocks) {
      const n = Math.min(left, PackEntryLog.BLOCK);
      block.copy(b, o, 0, n * INDEX_ENTRY_LEN);
      o += n * INDEX_ENTRY_LEN;
      left -= n;
    }
    return b;
  }

  /** Drops the entries (their blocks go with them). */
  clear(): void {
    this.blocks.length = 0;
    this.count = 0;
  }
}

/** The sealed header of a pack holding `entries` (PackEntryLog.header). */
export function encodePackHeader(encKey: Buffer, entries: readonly PackEntry[]): Buffer {
  const log = new PackEntryLog();
  for (const e of entries) log.add(e.type, e.id, e.offset, e.length, e.rawLength);
  return log.header(encKey);
}

/** Parses the header at the end of a whole pack file; throws IntegrityError naming the pack. */
export function decodePackHeader(encKey: Buffer, pack: Buffer, name: string): PackEntry[] {
  if (pack.length < 4) throw new IntegrityError(`pack ${name} is truncated (${pack.length} bytes)`, { pack: name });
  const hlen = pack.readUInt32LE(pack.length - 4);
  if (hlen + 4 > pack.length) throw new IntegrityError(`pack ${name} has an invalid header length: it is truncated or damaged`, { pack: name });
  const h = open(encKey, pack.subarray(pack.length - 4 - hlen, pack.length - 4), `header of pack ${name}`);
  if (h.length % HEADER_ENTRY_LEN !== 0) throw new IntegrityError(`header of pack ${name} is malformed`, { pack: name });
  const entries: PackEntry[] = [];
  let offset = 0;
  for (let o = 0; o < h.length; o += HEADER_ENTRY_LEN) {
    const length = h.readUInt32LE(o + 1 + ID_LEN);
    // ids are views into the opened header (a buffer of its own): no allocation per entry
    entries.push({ type: h[o] as BlobType, id: h.subarray(o + 1, o + 1 + ID_LEN), offset, length, rawLength: h.readUInt32LE(o + 5 + ID_LEN) });
    offset += length;
  }
  if (offset !== pack.length - 4 - hlen) throw new IntegrityError(`pack ${name}: blob lengths in its header do not add up to its size`, { pack: name });
  return entries;
}

export interface IndexPack {
  id: string;
  size: number;
  entries: PackEntry[];
}

const INDEX_MAGIC = Buffer.from('MBIX');

/** One pack's record of an index file: pack id, size, entry count, entries (PackEntryLog.indexRecord). */
export function encodeIndexRecord(p: IndexPack): Buffer {
  const log = new PackEntryLog();
  for (const e of p.entries) log.add(e.type, e.id, e.offset, e.length, e.rawLength);
  return log.indexRecord(p.id, p.size);
}

/** A sealed index file made of pack records (encodeIndexRecord). */
export function encodeIndexRecords(encKey: Buffer, records: readonly Uint8Array[]): Buffer {
  const head = Buffer.allocUnsafe(9);
  INDEX_MAGIC.copy(head, 0);
  head[4] = 1;
  head.writeUInt32LE(records.length, 5);
  return seal(encKey, Buffer.concat([head, ...records]));
}

export function encodeIndex(encKey: Buffer, packs: readonly IndexPack[]): Buffer {
  return encodeIndexRecords(encKey, packs.map(encodeIndexRecord));
}

/** Calls `onPack` for each pack record of a sealed index file. */
export function decodeIndex(encKey: Buffer, file: Buffer, name: string, onPack: (id: string, size: number, entries: PackEntry[]) => void): void {
  const b = open(encKey, file, `index file ${name}`);
  if (b.length < 9 || !b.subarray(0, 4).equals(INDEX_MAGIC)) throw new IntegrityError(`index file ${name} is malformed`, { index: name });
  if (b[4] !== 1) throw new IntegrityError(`index file ${name} has unsupported version ${b[4]}`, { index: name });
  const count = b.readUInt32LE(5);
  let o = 9;
  for (let i = 0; i < count; i++) {
    if (o + ID_LEN + 8 > b.length) throw new IntegrityError(`index file ${name} is truncated`, { index: name });
    const id = b.subarray(o, o + ID_LEN).toString('hex');
    const size = b.readUInt32LE(o + ID_LEN);
    const n = b.readUInt32LE(o + ID_LEN + 4);
    o += ID_LEN + 8;
    if (o + n * INDEX_ENTRY_LEN > b.length) throw new IntegrityError(`index file ${name} is truncated`, { index: name });
    const entries: PackEntry[] = [];
    for (let j = 0; j < n; j++) {
      entries.push({
        type: b[o] as BlobType,
        id: b.subarray(o + 1, o + 1 + ID_LEN),
        offset: b.readUInt32LE(o + 1 + ID_LEN),
        length: b.readUInt32LE(o + 5 + ID_LEN),
        rawLength: b.readUInt32LE(o + 9 + ID_LEN),
      });
      o += INDEX_ENTRY_LEN;
    }
    onPack(id, size, entries);
  }
}
