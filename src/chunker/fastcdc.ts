/**
 * chunker: content-defined chunking with a gear rolling hash (FastCDC-style, with
 * normalised chunking: a stricter mask before the average size, a looser one after).
 *
 * Parameter set "fastcdc-gear32-v1": 32-bit gear hash h = (h << 1) + GEAR[byte]; a cut is
 * made after byte i when the top `bits` bits of h are zero. The gear table is derived from a
 * secret per-repository seed (AES-256-CTR keystream), so chunk boundaries do not leak
 * content to someone who knows the algorithm but not the seed.
 */
import { createCipheriv } from 'node:crypto';

export const CHUNKER_NAME = 'fastcdc-gear32-v1';

export interface ChunkerParams {
  readonly min: number;
  readonly avg: number;
  readonly max: number;
}

export const DEFAULT_CHUNKER: ChunkerParams = { min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 };

export function gearTable(seed: Uint8Array): Uint32Array {
  const c = createCipheriv('aes-256-ctr', seed, Buffer.alloc(16));
  const ks = c.update(Buffer.alloc(256 * 4));
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) t[i] = ks.readUInt32LE(i * 4);
  return t;
}

function topMask(bits: number): number {
  return (0xffffffff << (32 - bits)) >>> 0;
}

export class Chunker {
  /** the gear table (derived from the seed; a chunker made from it cuts the same) */
  readonly gear: Uint32Array;
  readonly params: ChunkerParams;
  private readonly maskS: number;
  private readonly maskL: number;

  constructor(seed: Uint8Array, params: ChunkerParams = DEFAULT_CHUNKER, gear?: Uint32Array) {
    if (!(params.min > 64 && params.min < params.avg && params.avg < params.max)) throw new Error(`invalid chunker parameters ${JSON.stringify(params)}`);
    this.gear = gear ?? gearTable(seed);
    this.params = params;
    const bits = Math.round(Math.log2(params.avg - params.min));
    this.maskS = topMask(bits + 2);
    this.maskL = topMask(Math.max(1, bits - 2));
  }

  /** A chunker with the gear table of another (the chunking thread gets the table, not the seed). */
  static withGear(gear: Uint32Array, params: ChunkerParams): Chunker {
    if (gear.length !== 256) throw new Error('a gear table has 256 entries');
    return new Chunker(new Uint8Array(0), params, gear);
  }

  /**
   * Returns the end (exclusive) of the chunk that starts at `start` in buf[start, end).
   * The caller MUST pass at least `max` bytes unless the data ends at `end` (eof).
   */
  cut(buf: Uint8Array, start: number, end: number): number {
    const { min, avg, max } = this.params;
    const n = end - start;
    if (n <= min) return end;
    const gear = this.gear;
    const maskS = this.maskS;
    const maskL = this.maskL;
    let h = 0;
    let i = start + min;
    const a = Math.min(start + avg, end);
    for (; i < a; i++) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & maskS) === 0) return i + 1;
    }
    const b = Math.min(start + max, end);
    for (; i < b; i++) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & maskL) === 0) return i + 1;
    }
    return b;
  }
}
