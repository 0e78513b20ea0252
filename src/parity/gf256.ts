/**
 * Arithmetic in GF(2^8), the field of 256 elements that Reed-Solomon coding works in, and the
 * bulk kernels that apply it to whole blocks.
 *
 * Elements are bytes. Addition is XOR. Multiplication is polynomial multiplication modulo the
 * primitive polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d), computed through log/exp tables with
 * the generator 2.
 *
 * The hot operation is dst ^= c * src over a block. It reads the source 4 bytes at a time as a
 * Uint32 and looks each byte (or each pair of bytes) up in a per-coefficient product table:
 * 256 bytes per coefficient (tableFor), or 65,536 Uint16 (128 KiB) per coefficient
 * (wideTableFor) for the few coefficients a codec uses all the time. Lanes stay in place, so
 * the result does not depend on the machine's byte order.
 */

export const POLY = 0x11d;

/** EXP[i] = 2^i, doubled so that EXP[LOG[a] + LOG[b]] needs no modulo. */
const EXP = new Uint8Array(512);
/** LOG[a] for a != 0; LOG[0] is unused. */
const LOG = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= POLY;
  }
  for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255]!;
}

/** The full multiplication table: MUL[a * 256 + b] = a * b. 64 KiB. */
const MUL = new Uint8Array(65536);
for (let a = 1; a < 256; a++) {
  const la = LOG[a]!;
  for (let b = 1; b < 256; b++) MUL[a * 256 + b] = EXP[la + LOG[b]!]!;
}

export function gfMul(a: number, b: number): number {
  return MUL[(a << 8) | b]!;
}

export function gfInv(a: number): number {
  if (a === 0) throw new RangeError('0 has no inverse in GF(2^8)');
  return EXP[255 - LOG[a]!]!;
}

export function gfDiv(a: number, b: number): number {
  return gfMul(a, gfInv(b));
}

/** The 256 products c * x, x = 0..255 (a view into the shared table; do not modify). */
export function tableFor(c: number): Uint8Array {
  return MUL.subarray(c << 8, (c << 8) + 256);
}

const wide = new Map<number, Uint16Array>();

/**
 * The 65,536 products of c with each pair of bytes (x | y << 8 -> c*x | c*y << 8), cached per
 * coefficient for the life of the process (128 KiB each, at most 254 of them).
 */
export function wideTableFor(c: number): Uint16Array {
  let t = wide.get(c);
  if (t === undefined) {
    const n = tableFor(c);
    t = new Uint16Array(65536);
    for (let hi = 0; hi < 256; hi++) {
      const h = n[hi]! << 8;
      const base = hi << 8;
      for (let lo = 0; lo < 256; lo++) t[base | lo] = h | n[lo]!;
    }
    wide.set(c, t);
  }
  return t;
}

/** dst[0..len) ^= src[0..len). */
export function xorInto(dst: Uint8Array, src: Uint8Array, len: number): void {
  let i = 0;
  if (((dst.byteOffset | src.byteOffset) & 3) === 0) {
    const n = len >>> 2;
    const d = new Uint32Array(dst.buffer, dst.byteOffset, n);
    const s = new Uint32Array(src.buffer, src.byteOffset, n);
    for (let w = 0; w < n; w++) d[w] = d[w]! ^ s[w]!;
    i = n << 2;
  }
  for (; i < len; i++) dst[i] = dst[i]! ^ src[i]!;
}

/**
 * dst[0..len) ^= c * src[0..len). Uses the wide table when `wideTable` is given (it must be
 * wideTableFor(c)), the 256-byte table otherwise.
 */
export function mulAddInto(dst: Uint8Array, src: Uint8Array, c: number, len: number, wideTable?: Uint16Array): void {
  if (c === 0) return;
  if (c === 1) {
    xorInto(dst, src, len);
    return;
  }
  const t = tableFor(c);
  let i = 0;
  if (((dst.byteOffset | src.byteOffset) & 3) === 0) {
    const n = len >>> 2;
    const d = new Uint32Array(dst.buffer, dst.byteOffset, n);
    const s = new Uint32Array(src.buffer, src.byteOffset, n);
    if (wideTable !== undefined) {
      for (let w = 0; w < n; w++) {
        const v = s[w]!;
        d[w] = d[w]! ^ (wideTable[v & 0xffff]! | (wideTable[v >>> 16]! << 16));
      }
    } else {
      for (let w = 0; w < n; w++) {
        const v = s[w]!;
        d[w] = d[w]! ^ (t[v & 255]! | (t[(v >>> 8) & 255]! << 8) | (t[(v >>> 16) & 255]! << 16) | (t[v >>> 24]! << 24));
      }
    }
    i = n << 2;
  }
  for (; i < len; i++) dst[i] = dst[i]! ^ t[src[i]!]!;
}

/**
 * Inverts a square matrix over GF(2^8) (rows of numbers) by Gauss-Jordan elimination.
 * Throws RangeError when it is singular.
 */
export function invertMatrix(a: readonly (readonly number[])[]): number[][] {
  const n = a.length;
  const m = a.map((row, r) => {
    if (row.length !== n) throw new RangeError('matrix is not square');
    return [...row, ...Array.from({ length: n }, (_, c) => (c === r ? 1 : 0))];
  });
  for (let col = 0; col < n; col++) {
    let pivot = col;
    while (pivot < n && m[pivot]![col] === 0) pivot++;
    if (pivot === n) throw new RangeError('matrix is singular');
    if (pivot !== col) [m[pivot], m[col]] = [m[col]!, m[pivot]!];
    const row = m[col]!;
    const inv = gfInv(row[col]!);
    for (let c = 0; c < 2 * n; c++) row[c] = gfMul(row[c]!, inv);
    for (let r = 0; r < n; r++) {
      if (r === col) continue;
      const f = m[r]![col]!;
      if (f === 0) continue;
      const other = m[r]!;
      for (let c = 0; c < 2 * n; c++) other[c] = other[c]! ^ gfMul(f, row[c]!);
    }
  }
  return m.map((row) => row.slice(n));
}
