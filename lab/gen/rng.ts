/**
 * Deterministic, seeded pseudo-random numbers for test-data generation.
 *
 * Not cryptographically meaningful: the only goals are (1) the same seed always
 * yields the same sequence, on every machine and Node version, and (2) bulk
 * random bytes are cheap enough to produce hundreds of MiB per second.
 *
 * Scalar values come from xoshiro128** (seeded through splitmix32). Bulk bytes
 * come from an AES-128-CTR keystream whose key and IV are drawn from the
 * xoshiro state, so `fill()` runs at AES-NI speed (GB/s) while staying fully
 * determined by the seed.
 */
import { createCipheriv } from 'node:crypto';

/** Plaintext for the CTR keystream: encrypting zeros yields the raw keystream. */
const ZEROS = Buffer.alloc(4 << 20);

/** One splitmix32 step: returns [output, nextState]. */
function splitmix32(state: number): [number, number] {
  const next = (state + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  z ^= z >>> 16;
  return [z >>> 0, next];
}

/** Two-digit lowercase hex for every byte value. */
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** 2^32 as a float, for splitting seeds and building doubles. */
const TWO32 = 4294967296;

export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /**
   * @param seed any finite number; its integer part (up to 2^53 in magnitude)
   *   is used, so distinct integer seeds give distinct streams.
   */
  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new RangeError(`Rng: seed must be finite, got ${seed}`);
    const s = Math.trunc(seed);
    const lo = s >>> 0;
    const hi = Math.floor(s / TWO32) >>> 0;
    // The low word seeds state words a/b and the high word c/d, so distinct
    // 53-bit seeds always give distinct states.
    const [a, st1] = splitmix32(lo);
    const [b] = splitmix32(st1);
    const [c, st2] = splitmix32(hi ^ 0x6a09e667);
    const [d] = splitmix32(st2);
    this.#a = a;
    this.#b = b;
    this.#c = c;
    this.#d = d;
    if ((this.#a | this.#b | this.#c | this.#d) === 0) this.#a = 1; // xoshiro must not be all-zero
    for (let i = 0; i < 8; i++) this.next(); // warm up
  }

  /** Next uniformly distributed unsigned 32-bit integer (xoshiro128**). */
  next(): number {
    const b = this.#b;
    const r = Math.imul(rotl(Math.imul(b, 5), 7), 9);
    const t = b << 9;
    this.#c ^= this.#a;
    this.#d ^= this.#b;
    this.#b ^= this.#c;
    this.#a ^= this.#d;
    this.#c ^= t;
    this.#d = rotl(this.#d, 11);
    return r >>> 0;
  }

  /** Uniform float in [0, 1) with 53 bits of precision. */
  float(): number {
    const hi = this.next() >>> 5; // 27 bits
    const lo = this.next() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [lo, hi] (both inclusive). */
  int(lo: number, hi: number): number {
    if (hi < lo) throw new RangeError(`Rng.int: empty range [${lo}, ${hi}]`);
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** A uniformly chosen element of a non-empty array. */
  pick<T>(arr: readonly T[]): T {
    if (arr.length === 0) throw new RangeError('Rng.pick: empty array');
    return arr[Math.floor(this.float() * arr.length)] as T;
  }

  /** An element chosen with probability proportional to its weight. */
  weighted<T>(items: readonly (readonly [T, number])[]): T {
    let total = 0;
    for (const [, w] of items) total += w;
    let x = this.float() * total;
    for (const [v, w] of items) {
      x -= w;
      if (x < 0) return v;
    }
    const last = items[items.length - 1];
    if (!last) throw new RangeError('Rng.weighted: empty list');
    return last[0];
  }

  /** In-place Fisher–Yates shuffle; returns `arr`. */
  shuffle<T>(arr: T[]): T[] {
    for (let i = arr.length - 1; i > 0; i--) {
      const j = Math.floor(this.float() * (i + 1));
      const tmp = arr[i] as T;
      arr[i] = arr[j] as T;
      arr[j] = tmp;
    }
    return arr;
  }

  /** A 53-bit seed drawn from this stream (for deriving independent child generators). */
  seed53(): number {
    return (this.next() & 0x1fffff) * TWO32 + this.next();
  }

  /** An independent generator derived from (and advancing) this one. */
  fork(): Rng {
    return new Rng(this.seed53());
  }

  /** `n` lowercase hex characters. */
  hex(n: number): string {
    let s = '';
    while (s.length < n) {
      const v = this.next();
      s += (HEX[v >>> 24] as string) + HEX[(v >>> 16) & 255] + HEX[(v >>> 8) & 255] + HEX[v & 255];
    }
    return s.length === n ? s : s.slice(0, n);
  }

  /**
   * Fill `buf` with pseudo-random bytes (AES-128-CTR keystream keyed from this
   * generator). Advances the scalar state by a fixed amount regardless of
   * `buf.length`, so later draws do not depend on how many bytes were filled.
   */
  fill<T extends Uint8Array>(buf: T): T {
    const cipher = this.#cipher();
    for (let off = 0; off < buf.length; off += ZEROS.length) {
      const n = Math.min(ZEROS.length, buf.length - off);
      buf.set(cipher.update(ZEROS.subarray(0, n)), off);
    }
    return buf;
  }

  /** A new Buffer of `n` pseudo-random bytes (same stream semantics as `fill`). */
  bytes(n: number): Buffer {
    if (n <= ZEROS.length) return this.#cipher().update(ZEROS.subarray(0, n)); // no extra copy
    return this.fill(Buffer.allocUnsafe(n));
  }

  #cipher() {
    const key = Buffer.allocUnsafe(16);
    const iv = Buffer.allocUnsafe(16);
    for (let i = 0; i < 16; i += 4) {
      key.writeUInt32LE(this.next(), i);
      iv.writeUInt32LE(this.next(), i);
    }
    return createCipheriv('aes-128-ctr', key, iv);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * Mix a seed with labels into a new 53-bit seed, e.g. `deriveSeed(seed, 'blob', 3)`.
 * Useful to give each generated file its own stream so that generation order
 * (and thus concurrency) never affects the output.
 */
export function deriveSeed(seed: number, ...labels: (string | number)[]): number {
  // Two independent 32-bit FNV-1a-style lanes over the seed and labels.
  let h1 = 0x811c9dc5 ^ (Math.trunc(seed) >>> 0);
  let h2 = 0x9e3779b9 ^ (Math.floor(Math.trunc(seed) / TWO32) >>> 0);
  const text = labels.map(String).join('\u0000');
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    h2 ^= h2 >>> 15;
  }
  // Finalise through the generator itself for good avalanche.
  const r = new Rng((h1 >>> 0) + (h2 & 0x1fffff) * TWO32);
  return r.seed53();
}
