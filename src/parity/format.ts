/**
 * Parity files: Reed-Solomon parity of one pack, so that a pack with damaged regions can be
 * rebuilt byte for byte (see docs/design.md, "Parity").
 *
 * Layout of a pack of L bytes under scheme k+m with block size Bmax:
 *   S0 = ceil(ceil(L / Bmax) / k); B = ceil(L / (k * S0)) rounded up to 64 (B <= Bmax; small
 *   packs get small blocks, and the last stripe is nearly full, so parity is about m/k of L)
 *   n = ceil(L / B) data blocks; block i is pack[i*B, min(L, (i+1)*B)), zero-padded to B
 *   S = ceil(n / k) stripes; block i belongs to stripe i mod S at position floor(i / S),
 *   positions with no block (i >= n) are all-zero virtual blocks.
 * Interleaving puts consecutive blocks in different stripes, so one contiguous damaged
 * region of up to m*S - 1 blocks (about m/k of the pack, e.g. a lost tail) costs each stripe
 * at most m blocks and is repairable.
 *
 * Parity file (all integers little-endian):
 *   Header (80 bytes):
 *     0   8  magic "MBPARITY"
 *     8   1  version = 1
 *     9   1  k
 *     10  1  m
 *     11  1  code = 1: Reed-Solomon over GF(2^8) mod 0x11d, normalised Cauchy matrix (rs.ts)
 *     12  4  B
 *     16  8  L
 *     24  4  n
 *     28  4  S
 *     32  32 SHA-256 of the pack (its name)
 *     64  16 first 16 bytes of SHA-256(bytes 0..63)
 *   Hash table: 16 bytes per block, the first 16 bytes of the block's SHA-256 (data blocks
 *     over their real bytes, without padding): data blocks 0..n-1, then parity blocks in
 *     parity order.
 *   Parity blocks: S*m blocks of B bytes, parity j of stripe s at index j*S + s.
 *   Trailer: a copy of the 80-byte header.
 *
 * Nothing here is secret (parity of ciphertext reveals nothing the ciphertext does not) and
 * nothing is sealed: the hashes only locate damage, and a rebuilt pack is accepted only when
 * its SHA-256 equals the pack's name, so a damaged or forged parity file can make a repair
 * fail but never make it produce wrong bytes. Encoding is deterministic: the same pack and
 * scheme always give the same parity file.
 */
import { createHash } from 'node:crypto';
import { codecFor, MAX_SHARDS } from './rs.ts';

export const PARITY_SCHEME_NAME = 'rs-gf256-cauchy-v1';

/** A parity scheme as recorded in the repository config. */
export interface ParityScheme {
  name: typeof PARITY_SCHEME_NAME;
  /** data blocks per stripe */
  k: number;
  /** parity blocks per stripe: up to m damaged blocks per stripe are repairable */
  m: number;
  /** largest block size in bytes (small packs use smaller blocks) */
  blockSize: number;
}

export const DEFAULT_PARITY: ParityScheme = { name: PARITY_SCHEME_NAME, k: 16, m: 2, blockSize: 16 * 1024 };

const MAGIC = Buffer.from('MBPARITY');
const VERSION = 1;
const CODE_RS_CAUCHY = 1;
export const PARITY_HEADER_LEN = 80;
const HASH_LEN = 16;
const ALIGN = 64;
const MAX_BLOCK = 16 * 1024 * 1024;

/** Why a scheme is unusable, or undefined when it is valid. */
export function schemeProblem(s: { k: number; m: number; blockSize: number }): string | undefined {
  if (!Number.isInteger(s.k) || !Number.isInteger(s.m) || s.k < 1 || s.m < 1) return 'K and M must be positive integers';
  if (s.k + s.m > MAX_SHARDS - 1) return `K+M must be at most ${MAX_SHARDS - 1}`;
  if (s.m > s.k) return 'M must not exceed K (more parity than data: keep a second copy of the repository instead)';
  if (!Number.isInteger(s.blockSize) || s.blockSize < ALIGN || s.blockSize > MAX_BLOCK || s.blockSize % ALIGN !== 0) {
    return `the block size must be a multiple of ${ALIGN} between ${ALIGN} and ${MAX_BLOCK} bytes`;
  }
  return undefined;
}

/** Parses "K+M" (e.g. "16+2") into a scheme with the default block size; throws RangeError. */
export function parseParityScheme(text: string): ParityScheme {
  const m = /^\s*(\d{1,3})\s*\+\s*(\d{1,3})\s*$/.exec(text);
  if (m === null) throw new RangeError(`${JSON.stringify(text)} is not K+M (data blocks + parity blocks per stripe, e.g. 16+2)`);
  const s: ParityScheme = { name: PARITY_SCHEME_NAME, k: Number(m[1]), m: Number(m[2]), blockSize: DEFAULT_PARITY.blockSize };
  const p = schemeProblem(s);
  if (p !== undefined) throw new RangeError(`parity ${s.k}+${s.m}: ${p}`);
  return s;
}

export function schemeString(s: { k: number; m: number }): string {
  return `${s.k}+${s.m}`;
}

export interface ParityLayout {
  k: number;
  m: number;
  /** block size of this pack */
  blockSize: number;
  packLength: number;
  dataBlocks: number;
  stripes: number;
}

export function layoutFor(packLength: number, scheme: { k: number; m: number; blockSize: number }): ParityLayout {
  const { k, m } = scheme;
  if (packLength === 0) return { k, m, blockSize: ALIGN, packLength, dataBlocks: 0, stripes: 0 };
  // as many stripes as blocks of the full size need, then the smallest aligned block size that
  // still fits the pack in them: the last stripe is (nearly) full, so parity is about m/k
  const stripes = Math.ceil(Math.ceil(packLength / scheme.blockSize) / k);
  const blockSize = Math.ceil(Math.ceil(packLength / (k * stripes)) / ALIGN) * ALIGN;
  const dataBlocks = Math.ceil(packLength / blockSize);
  return { k, m, blockSize, packLength, dataBlocks, stripes: Math.ceil(dataBlocks / k) };
}

/** Size of the parity file of a pack of this layout. */
export function parityFileSize(l: ParityLayout): number {
  const parityBlocks = l.stripes * l.m;
  return PARITY_HEADER_LEN + HASH_LEN * (l.dataBlocks + parityBlocks) + parityBlocks * l.blockSize + PARITY_HEADER_LEN;
}

function tableOffset(): number {
  return PARITY_HEADER_LEN;
}
function parityOffset(l: ParityLayout): number {
  return PARITY_HEADER_LEN + HASH_LEN * (l.dataBlocks + l.stripes * l.m);
}

function hash16(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest().subarray(0, HASH_LEN);
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function dataBlock(pack: Uint8Array, l: ParityLayout, i: number): Uint8Array {
  const start = i * l.blockSize;
  return pack.subarray(start, Math.min(l.packLength, start + l.blockSize));
}

const EMPTY = new Uint8Array(0);

function encodeHeader(l: ParityLayout, name: string): Buffer {
  const h = Buffer.alloc(PARITY_HEADER_LEN);
  MAGIC.copy(h, 0);
  h[8] = VERSION;
  h[9] = l.k;
  h[10] = l.m;
  h[11] = CODE_RS_CAUCHY;
  h.writeUInt32LE(l.blockSize, 12);
  h.writeBigUInt64LE(BigInt(l.packLength), 16);
  h.writeUInt32LE(l.dataBlocks, 24);
  h.writeUInt32LE(l.stripes, 28);
  Buffer.from(name, 'hex').copy(h, 32);
  hash16(h.subarray(0, 64)).copy(h, 64);
  return h;
}

/**
 * The parity file of a pack. The caller MUST have checked that SHA-256(pack) = name: parity
 * computed over damaged bytes would rebuild the damage.
 */
export function encodeParityFile(pack: Uint8Array, name: string, scheme: { k: number; m: number; blockSize: number }): Buffer {
  const l = layoutFor(pack.length, scheme);
  const file = Buffer.alloc(parityFileSize(l));
  encodeHeader(l, name).copy(file, 0);
  const rs = codecFor(l.k, l.m);
  const B = l.blockSize;
  const pOff = parityOffset(l);
  const data: Uint8Array[] = new Array<Uint8Array>(l.k);
  const parity: Uint8Array[] = new Array<Uint8Array>(l.m);
  for (let s = 0; s < l.stripes; s++) {
    for (let p = 0; p < l.k; p++) {
      const b = p * l.stripes + s;
      data[p] = b < l.dataBlocks ? dataBlock(pack, l, b) : EMPTY;
    }
    for (let j = 0; j < l.m; j++) {
      const at = pOff + (j * l.stripes + s) * B;
      parity[j] = file.subarray(at, at + B);
    }
    rs.encode(data, parity, B);
  }
  let t = tableOffset();
  for (let i = 0; i < l.dataBlocks; i++, t += HASH_LEN) hash16(dataBlock(pack, l, i)).copy(file, t);
  for (let q = 0; q < l.stripes * l.m; q++, t += HASH_LEN) hash16(file.subarray(pOff + q * B, pOff + (q + 1) * B)).copy(file, t);
  file.copy(file, file.length - PARITY_HEADER_LEN, 0, PARITY_HEADER_LEN);
  return file;
}

export interface ParityHeader extends ParityLayout {
  /** the pack this file protects (hex SHA-256) */
  pack: string;
  /** true when the header was read from the trailer copy because the first copy is damaged */
  fromTrailer: boolean;
}

function decodeHeaderAt(file: Uint8Array, at: number): Omit<ParityHeader, 'fromTrailer'> | undefined {
  if (at < 0 || at + PARITY_HEADER_LEN > file.length) return undefined;
  const h = Buffer.from(file.buffer, file.byteOffset + at, PARITY_HEADER_LEN);
  if (!h.subarray(0, 8).equals(MAGIC) || h[8] !== VERSION || h[11] !== CODE_RS_CAUCHY) return undefined;
  if (!hash16(h.subarray(0, 64)).equals(h.subarray(64, 80))) return undefined;
  const k = h[9]!;
  const m = h[10]!;
  const blockSize = h.readUInt32LE(12);
  const big = h.readBigUInt64LE(16);
  if (big > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  const packLength = Number(big);
  const l: ParityLayout = { k, m, blockSize, packLength, dataBlocks: h.readUInt32LE(24), stripes: h.readUInt32LE(28) };
  if (k < 1 || m < 1 || k + m > MAX_SHARDS || blockSize < 1 || blockSize > MAX_BLOCK) return undefined;
  if (l.dataBlocks !== Math.ceil(packLength / blockSize) || l.stripes !== Math.ceil(l.dataBlocks / k)) return undefined;
  return { ...l, pack: h.subarray(32, 64).toString('hex') };
}

/** Reads a parity file's header: the first copy, else the trailer copy at the end of the file. */
export function decodeParityHeader(file: Uint8Array): ParityHeader | undefined {
  const first = decodeHeaderAt(file, 0);
  if (first !== undefined) return { ...first, fromTrailer: false };
  const last = decodeHeaderAt(file, file.length - PARITY_HEADER_LEN);
  if (last !== undefined) return { ...last, fromTrailer: true };
  return undefined;
}

export type RepairStatus = 'intact' | 'repaired' | 'unrepairable';

export interface RepairOutcome {
  status: RepairStatus;
  /** the rebuilt pack, verified: SHA-256(data) = name (status 'repaired' only) */
  data?: Buffer;
  /** why it cannot be repaired (status 'unrepairable') */
  reason?: string;
  /** data blocks found damaged or missing */
  badDataBlocks: number;
  /** parity blocks found damaged or missing */
  badParityBlocks: number;
  /** stripes that lost more blocks than their parity can rebuild */
  lostStripes: number;
  dataBlocks: number;
  stripes: number;
}

/**
 * Rebuilds a damaged pack from its parity file. `pack` is what storage holds (possibly
 * truncated, extended or damaged; undefined when the file is gone), `name` its name (the
 * SHA-256 of its intact bytes). Blocks whose hash differs from the table are erasures; each
 * stripe with at most m of them is rebuilt. The result is returned only if the whole rebuilt
 * pack hashes to `name`.
 */
export function repairFromParity(pack: Uint8Array | undefined, parityFile: Uint8Array | undefined, name: string): RepairOutcome {
  const none = { badDataBlocks: 0, badParityBlocks: 0, lostStripes: 0, dataBlocks: 0, stripes: 0 };
  if (parityFile === undefined) return { status: 'unrepairable', reason: 'it has no parity file', ...none };
  const h = decodeParityHeader(parityFile);
  if (h === undefined) return { status: 'unrepairable', reason: 'its parity file is damaged (both copies of its header are unreadable)', ...none };
  if (h.pack !== name) return { status: 'unrepairable', reason: `its parity file protects another pack (${h.pack})`, ...none };
  if (pack !== undefined && pack.length === h.packLength && sha256Hex(pack) === name) {
    return { status: 'intact', ...none, dataBlocks: h.dataBlocks, stripes: h.stripes };
  }
  const B = h.blockSize;
  const S = h.stripes;
  const pOff = parityOffset(h);
  const tableEntry = (q: number): Uint8Array | undefined => {
    const at = tableOffset() + q * HASH_LEN;
    return at + HASH_LEN <= parityFile.length ? parityFile.subarray(at, at + HASH_LEN) : undefined;
  };
  const src = pack ?? EMPTY;
  const goodData = new Uint8Array(h.dataBlocks);
  let badDataBlocks = 0;
  for (let i = 0; i < h.dataBlocks; i++) {
    const start = i * B;
    const end = Math.min(h.packLength, start + B);
    const want = tableEntry(i);
    const ok = end <= src.length && want !== undefined && hash16(src.subarray(start, end)).equals(want);
    goodData[i] = ok ? 1 : 0;
    if (!ok) badDataBlocks++;
  }
  const parityBlock = (q: number): Uint8Array | undefined => {
    const at = pOff + q * B;
    if (at + B > parityFile.length) return undefined;
    const blk = parityFile.subarray(at, at + B);
    const want = tableEntry(h.dataBlocks + q);
    return want !== undefined && hash16(blk).equals(want) ? blk : undefined;
  };
  const out = Buffer.alloc(h.packLength);
  Buffer.from(src.buffer, src.byteOffset, src.length).copy(out, 0, 0, Math.min(src.length, h.packLength));
  const rs = codecFor(h.k, h.m);
  let badParityBlocks = 0;
  let lostStripes = 0;
  let worst = 0;
  for (let s = 0; s < S; s++) {
    const shards: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(h.k + h.m);
    let lost = 0;
    for (let p = 0; p < h.k; p++) {
      const b = p * S + s;
      if (b >= h.dataBlocks) shards[p] = EMPTY;
      else if (goodData[b] === 1) shards[p] = out.subarray(b * B, Math.min(h.packLength, (b + 1) * B));
      else {
        shards[p] = undefined;
        lost++;
      }
    }
    for (let j = 0; j < h.m; j++) {
      const blk = parityBlock(j * S + s);
      if (blk === undefined) badParityBlocks++;
      shards[h.k + j] = blk;
    }
    if (lost === 0) continue;
    const lostHere = lost + shards.slice(h.k).filter((x) => x === undefined).length;
    if (lostHere > h.m) {
      lostStripes++;
      worst = Math.max(worst, lostHere);
      continue;
    }
    rs.reconstruct(shards, B);
    for (let p = 0; p < h.k; p++) {
      const b = p * S + s;
      if (b < h.dataBlocks && goodData[b] === 0) {
        const start = b * B;
        out.set(shards[p]!.subarray(0, Math.min(h.packLength, start + B) - start), start);
      }
    }
  }
  const stats = { badDataBlocks, badParityBlocks, lostStripes, dataBlocks: h.dataBlocks, stripes: S };
  if (lostStripes > 0) {
    return {
      status: 'unrepairable',
      reason: `${badDataBlocks} of its ${h.dataBlocks} blocks are damaged and ${lostStripes} of ${S} stripes lost up to ${worst} blocks (pack and parity); parity ${h.k}+${h.m} rebuilds at most ${h.m} per stripe`,
      ...stats,
    };
  }
  if (sha256Hex(out) !== name) {
    return { status: 'unrepairable', reason: 'the rebuilt pack does not match its name: its parity file is inconsistent', ...stats };
  }
  return { status: 'repaired', data: out, ...stats };
}
