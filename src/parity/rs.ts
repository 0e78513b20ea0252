/**
 * Systematic Reed-Solomon erasure coding over GF(2^8).
 *
 * A stripe is k data shards and m parity shards of equal length. Parity shard j is
 * sum_i C[j][i] * data_i, where C is an m x k Cauchy matrix, C[j][i] = 1 / (x_j + y_i) with
 * x_j = k + j and y_i = i (k + m distinct field elements), with each column then scaled so that
 * row 0 is all ones (parity 0 is the plain XOR of the data). Every square submatrix of a Cauchy
 * matrix is invertible, and scaling columns keeps that true, so the code is MDS: any k of the
 * k + m shards determine the stripe, i.e. any m lost shards can be rebuilt, provided one knows
 * which ones are lost (erasures, not errors: callers find bad shards by their hashes).
 */
import { gfDiv, gfInv, invertMatrix, mulAddInto, wideTableFor } from './gf256.ts';

/** Field elements available for the Cauchy points: k + m must not exceed this. */
export const MAX_SHARDS = 256;
/** Wide (128 KiB) product tables are used when a codec has at most this many distinct coefficients. */
const MAX_WIDE_TABLES = 64;

export class ReedSolomon {
  readonly k: number;
  readonly m: number;
  /** matrix[j][i]: coefficient of data shard i in parity shard j */
  private readonly matrix: number[][];
  private readonly wide: (Uint16Array | undefined)[][];

  constructor(k: number, m: number) {
    if (!Number.isInteger(k) || !Number.isInteger(m) || k < 1 || m < 1 || k + m > MAX_SHARDS) {
      throw new RangeError(`Reed-Solomon over GF(2^8) needs 1 <= k, 1 <= m and k + m <= ${MAX_SHARDS} (got k=${k}, m=${m})`);
    }
    this.k = k;
    this.m = m;
    const cauchy = Array.from({ length: m }, (_, j) => Array.from({ length: k }, (_, i) => gfInv((k + j) ^ i)));
    this.matrix = cauchy.map((row) => row.map((c, i) => gfDiv(c, cauchy[0]![i]!)));
    const distinct = new Set(this.matrix.flat().filter((c) => c > 1));
    this.wide = this.matrix.map((row) => row.map((c) => (c > 1 && distinct.size <= MAX_WIDE_TABLES ? wideTableFor(c) : undefined)));
  }

  /** The coefficient of data shard i in parity shard j. */
  coefficient(j: number, i: number): number {
    return this.matrix[j]![i]!;
  }

  /**
   * Computes the m parity shards of one stripe into `parity` (each at least `len` bytes; the
   * first `len` are overwritten). data[i] may be shorter than `len`: the missing tail counts as
   * zeros (so a zero-length shard is an all-zero shard).
   */
  encode(data: readonly Uint8Array[], parity: readonly Uint8Array[], len: number): void {
    if (data.length !== this.k || parity.length !== this.m) throw new RangeError(`encode needs ${this.k} data and ${this.m} parity shards`);
    for (let j = 0; j < this.m; j++) {
      const out = parity[j]!;
      if (out.length < len) throw new RangeError(`parity shard ${j} is shorter than ${len} bytes`);
      out.fill(0, 0, len);
      const row = this.matrix[j]!;
      const wrow = this.wide[j]!;
      for (let i = 0; i < this.k; i++) {
        const d = data[i]!;
        mulAddInto(out, d, row[i]!, Math.min(len, d.length), wrow[i]);
      }
    }
  }

  /**
   * Rebuilds the lost shards of one stripe in place. `shards` holds the k data shards then the
   * m parity shards; a lost one is undefined. A present data shard may be shorter than `len`
   * (zeros after it); present parity shards must have at least `len` bytes. Each rebuilt shard
   * is a new `len`-byte array. Throws RangeError when more shards are lost than parity can
   * rebuild (more than m in all).
   */
  reconstruct(shards: (Uint8Array | undefined)[], len: number): void {
    const { k, m } = this;
    if (shards.length !== k + m) throw new RangeError(`reconstruct needs ${k + m} shards`);
    const lostData: number[] = [];
    const goodParity: number[] = [];
    let lostParity = 0;
    for (let i = 0; i < k; i++) if (shards[i] === undefined) lostData.push(i);
    for (let j = 0; j < m; j++) {
      const p = shards[k + j];
      if (p === undefined) lostParity++;
      else {
        if (p.length < len) throw new RangeError(`parity shard ${j} is shorter than ${len} bytes`);
        goodParity.push(j);
      }
    }
    if (lostData.length + lostParity > m) {
      throw new RangeError(`${lostData.length + lostParity} of ${k + m} shards are lost; ${m} parity shards can rebuild at most ${m}`);
    }
    const e = lostData.length;
    if (e > 0) {
      const rows = goodParity.slice(0, e);
      // syndromes: each chosen parity minus the contribution of the data shards we still have
      const syn = rows.map((j) => {
        const s = new Uint8Array(len);
        s.set(shards[k + j]!.subarray(0, len));
        for (let i = 0; i < k; i++) {
          const d = shards[i];
          if (d !== undefined) mulAddInto(s, d, this.matrix[j]![i]!, Math.min(len, d.length), this.wide[j]![i]);
        }
        return s;
      });
      const inv = invertMatrix(rows.map((j) => lostData.map((i) => this.matrix[j]![i]!)));
      for (let c = 0; c < e; c++) {
        const out = new Uint8Array(len);
        for (let r = 0; r < e; r++) mulAddInto(out, syn[r]!, inv[c]![r]!, len);
        shards[lostData[c]!] = out;
      }
    }
    if (lostParity > 0) {
      const data = shards.slice(0, k) as Uint8Array[];
      for (let j = 0; j < m; j++) {
        if (shards[k + j] !== undefined) continue;
        const out = new Uint8Array(len);
        const row = this.matrix[j]!;
        for (let i = 0; i < k; i++) mulAddInto(out, data[i]!, row[i]!, Math.min(len, data[i]!.length), this.wide[j]![i]);
        shards[k + j] = out;
      }
    }
  }
}

const codecs = new Map<string, ReedSolomon>();

/** A shared codec for (k, m): building one computes its matrix and product tables. */
export function codecFor(k: number, m: number): ReedSolomon {
  const key = `${k}+${m}`;
  let c = codecs.get(key);
  if (c === undefined) {
    c = new ReedSolomon(k, m);
    codecs.set(key, c);
  }
  return c;
}
