/**
 * The parity module: GF(2^8) arithmetic, the Reed-Solomon code (every erasure pattern up to m
 * for small codes, clean failure beyond m), and the parity file of a pack (round trip, repair
 * of damaged, truncated and extended packs, damaged and forged parity files).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gfDiv, gfInv, gfMul, invertMatrix, mulAddInto, wideTableFor, xorInto } from '../../src/parity/gf256.ts';
import { ReedSolomon } from '../../src/parity/rs.ts';
import {
  DEFAULT_PARITY,
  PARITY_SCHEME_NAME,
  decodeParityHeader,
  encodeParityFile,
  layoutFor,
  parityFileSize,
  parseParityScheme,
  repairFromParity,
  sha256Hex,
} from '../../src/parity/format.ts';
import type { ParityScheme } from '../../src/parity/format.ts';
import { prngBytes } from './helpers.ts';

/** Carry-less multiplication reduced by 0x11d, bit by bit: the reference for the tables. */
function slowMul(a: number, b: number): number {
  let r = 0;
  for (let i = 0; i < 8; i++) if (b & (1 << i)) r ^= a << i;
  for (let bit = 15; bit >= 8; bit--) if (r & (1 << bit)) r ^= 0x11d << (bit - 8);
  return r;
}

function* subsets(n: number, size: number, start = 0, acc: number[] = []): Generator<number[]> {
  if (acc.length === size) {
    yield [...acc];
    return;
  }
  for (let i = start; i < n; i++) {
    acc.push(i);
    yield* subsets(n, size, i + 1, acc);
    acc.pop();
  }
}

describe('GF(2^8)', () => {
  it('multiplication tables agree with carry-less multiplication for all 65,536 pairs; every non-zero element has an inverse', () => {
    for (let a = 0; a < 256; a++) for (let b = 0; b < 256; b++) assert.equal(gfMul(a, b), slowMul(a, b), `${a}*${b}`);
    for (let a = 1; a < 256; a++) {
      assert.equal(gfMul(a, gfInv(a)), 1, `inverse of ${a}`);
      assert.equal(gfDiv(gfMul(a, 77), a), 77);
    }
    assert.throws(() => gfInv(0), RangeError);
  });

  it('block kernels match byte-by-byte multiplication, aligned or not, wide table or not, any length', () => {
    const src = prngBytes('kernel-src', 1031 + 8);
    for (const c of [0, 1, 2, 0x53, 0xff]) {
      for (const [dOff, sOff, len] of [[0, 0, 1024], [0, 0, 1031], [1, 0, 1000], [0, 3, 999], [2, 2, 5], [0, 0, 0]] as const) {
        const base = prngBytes(`kernel-dst-${c}`, 1040);
        const want = Buffer.from(base);
        for (let i = 0; i < len; i++) want[dOff + i] = want[dOff + i]! ^ gfMul(c, src[sOff + i]!);
        const a = Buffer.from(base);
        mulAddInto(a.subarray(dOff), src.subarray(sOff), c, len);
        assert.ok(a.equals(want), `c=${c} ${dOff}/${sOff}/${len}`);
        if (c > 1) {
          const w = Buffer.from(base);
          mulAddInto(w.subarray(dOff), src.subarray(sOff), c, len, wideTableFor(c));
          assert.ok(w.equals(want), `wide c=${c} ${dOff}/${sOff}/${len}`);
        }
      }
    }
    const x = Buffer.from(prngBytes('x', 37));
    const y = prngBytes('y', 37);
    const want = Buffer.from(x.map((v, i) => v ^ y[i]!));
    xorInto(x.subarray(1), y.subarray(1), 36);
    assert.ok(x.subarray(1).equals(want.subarray(1)));
  });

  it('inverts matrices (A * inv(A) = I) and refuses singular ones', () => {
    const rnd = prngBytes('matrices', 4096);
    let r = 0;
    for (let n = 1; n <= 6; n++) {
      for (let t = 0; t < 20; t++) {
        const a = Array.from({ length: n }, () => Array.from({ length: n }, () => rnd[r++ % rnd.length]!));
        let inv: number[][];
        try {
          inv = invertMatrix(a);
        } catch {
          continue; // a random matrix may be singular
        }
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < n; j++) {
            let s = 0;
            for (let x = 0; x < n; x++) s ^= gfMul(a[i]![x]!, inv[x]![j]!);
            assert.equal(s, i === j ? 1 : 0);
          }
        }
      }
    }
    assert.throws(() => invertMatrix([[1, 2], [1, 2]]), /singular/);
    assert.throws(() => invertMatrix([[0, 0], [0, 5]]), /singular/);
  });
});

describe('Reed-Solomon', () => {
  it('rebuilds every pattern of up to m lost shards, for small codes, with short (zero-padded) data shards', () => {
    const len = 67; // not a multiple of 4: exercises the byte tail
    for (const [k, m] of [[1, 1], [2, 1], [3, 2], [4, 3], [5, 2], [6, 4], [10, 3]] as const) {
      const rs = new ReedSolomon(k, m);
      // the last data shard is short and one (when k > 2) is empty: both count as zero-padded
      const data = Array.from({ length: k }, (_, i) => prngBytes(`rs-${k}-${m}-${i}`, i === k - 1 ? 40 : i === 1 && k > 2 ? 0 : len));
      const parity = Array.from({ length: m }, () => new Uint8Array(len));
      rs.encode(data, parity, len);
      const full = data.map((d) => Buffer.concat([d, Buffer.alloc(len - d.length)]));
      let patterns = 0;
      for (let lost = 1; lost <= m; lost++) {
        for (const gone of subsets(k + m, lost)) {
          const shards: (Uint8Array | undefined)[] = [...data, ...parity.map((p) => Buffer.from(p))];
          for (const g of gone) shards[g] = undefined;
          rs.reconstruct(shards, len);
          for (let i = 0; i < k; i++) assert.ok(Buffer.from(shards[i]!).equals(gone.includes(i) ? full[i]! : data[i]!), `k=${k} m=${m} lost ${gone} data ${i}`);
          for (const g of gone) {
            const want = g < k ? full[g]! : Buffer.from(parity[g - k]!);
            assert.ok(Buffer.from(shards[g]!).equals(want), `k=${k} m=${m} lost ${gone}: shard ${g}`);
          }
          patterns++;
        }
      }
      assert.ok(patterns > 0);
    }
  });

  it('parity 0 is the XOR of the data (normalised Cauchy matrix)', () => {
    const rs = new ReedSolomon(5, 2);
    const data = Array.from({ length: 5 }, (_, i) => prngBytes(`xor-${i}`, 64));
    const parity = [new Uint8Array(64), new Uint8Array(64)];
    rs.encode(data, parity, 64);
    const x = Buffer.alloc(64);
    for (const d of data) for (let i = 0; i < 64; i++) x[i] = x[i]! ^ d[i]!;
    assert.ok(x.equals(Buffer.from(parity[0]!)));
    for (let i = 0; i < 5; i++) assert.equal(rs.coefficient(0, i), 1);
  });

  it('fails cleanly with more than m lost shards, leaving the shards untouched', () => {
    const rs = new ReedSolomon(4, 2);
    const data = Array.from({ length: 4 }, (_, i) => prngBytes(`beyond-${i}`, 32));
    const parity = [new Uint8Array(32), new Uint8Array(32)];
    rs.encode(data, parity, 32);
    for (const gone of subsets(6, 3)) {
      const shards: (Uint8Array | undefined)[] = [...data, ...parity];
      for (const g of gone) shards[g] = undefined;
      const before = [...shards];
      assert.throws(() => rs.reconstruct(shards, 32), (err: unknown) => err instanceof RangeError && /3 of 6 shards are lost; 2 parity shards can rebuild at most 2/.test(err.message));
      assert.deepEqual(shards, before);
    }
  });

  it('refuses codes that GF(2^8) cannot hold', () => {
    assert.throws(() => new ReedSolomon(0, 2), RangeError);
    assert.throws(() => new ReedSolomon(4, 0), RangeError);
    assert.throws(() => new ReedSolomon(250, 7), RangeError);
    assert.doesNotThrow(() => new ReedSolomon(250, 6));
  });
});

const SMALL: ParityScheme = { name: PARITY_SCHEME_NAME, k: 8, m: 2, blockSize: 1024 };

function damage(b: Buffer, from: number, to: number): void {
  for (let i = from; i < Math.min(to, b.length); i++) b[i] = b[i]! ^ 0x5a;
}

describe('parity files', () => {
  const pack = prngBytes('pack', 100_000 + 77);
  const name = sha256Hex(pack);
  const file = encodeParityFile(pack, name, SMALL);
  const l = layoutFor(pack.length, SMALL);

  it('parses K+M and refuses bad schemes', () => {
    assert.deepEqual(parseParityScheme('32+2'), { ...DEFAULT_PARITY, k: 32, m: 2 });
    assert.deepEqual(parseParityScheme(' 16 + 4 '), { ...DEFAULT_PARITY, k: 16, m: 4 });
    for (const bad of ['', '16', '16+', '+2', 'x+y', '16-2', '0+2', '16+0', '2+4', '250+6', '1000+1']) assert.throws(() => parseParityScheme(bad), RangeError, bad);
  });

  it('lays out small packs with small blocks and large ones with the full block size', () => {
    assert.deepEqual(layoutFor(3000, DEFAULT_PARITY), { k: 16, m: 2, blockSize: 192, packLength: 3000, dataBlocks: 16, stripes: 1 });
    const big = layoutFor(16 * 1024 * 1024 + 1, DEFAULT_PARITY);
    assert.equal(big.blockSize, 16192, 'shrunk from 16384 so that 65 stripes are (nearly) full');
    assert.equal(big.dataBlocks, 1037);
    assert.equal(big.stripes, 65);
    assert.deepEqual(layoutFor(16 * 1024 * 1024, DEFAULT_PARITY), { k: 16, m: 2, blockSize: 16384, packLength: 16 * 1024 * 1024, dataBlocks: 1024, stripes: 64 });
    assert.deepEqual(layoutFor(0, DEFAULT_PARITY), { k: 16, m: 2, blockSize: 64, packLength: 0, dataBlocks: 0, stripes: 0 });
    assert.equal(l.blockSize, 1024);
    assert.equal(l.dataBlocks, 98);
    assert.equal(l.stripes, 13);
  });

  it('round trip: deterministic, of the computed size, header readable, an intact pack needs nothing', () => {
    assert.equal(file.length, parityFileSize(l));
    assert.ok(encodeParityFile(pack, name, SMALL).equals(file), 'same pack and scheme, same bytes');
    const h = decodeParityHeader(file)!;
    assert.equal(h.pack, name);
    assert.equal(h.fromTrailer, false);
    assert.deepEqual({ k: h.k, m: h.m, blockSize: h.blockSize, packLength: h.packLength, dataBlocks: h.dataBlocks, stripes: h.stripes }, l);
    const r = repairFromParity(pack, file, name);
    assert.equal(r.status, 'intact');
    assert.equal(r.data, undefined);
    const empty = Buffer.alloc(0);
    const ef = encodeParityFile(empty, sha256Hex(empty), SMALL);
    assert.equal(repairFromParity(empty, ef, sha256Hex(empty)).status, 'intact');
  });

  it('repairs any contiguous damaged region of up to m*S - 1 blocks, wherever it starts', () => {
    const B = l.blockSize;
    const maxBurst = (l.m * l.stripes - 1) * B;
    for (const start of [0, 1, 500, B - 1, 7 * B + 3, 40 * B, pack.length - maxBurst]) {
      const bad = Buffer.from(pack);
      damage(bad, start, start + maxBurst);
      const r = repairFromParity(bad, file, name);
      assert.equal(r.status, 'repaired', `burst at ${start}: ${r.reason}`);
      assert.ok(r.data!.equals(pack), `burst at ${start}`);
      assert.equal(r.lostStripes, 0);
    }
  });

  it('repairs scattered single-byte damage, a zeroed block, and blocks hit in both pack and parity', () => {
    const bad = Buffer.from(pack);
    for (const i of [5, 3000, 50_000, 99_999, pack.length - 1]) bad[i] = bad[i]! ^ 1;
    bad.fill(0, 20 * 1024, 21 * 1024);
    const r = repairFromParity(bad, file, name);
    assert.equal(r.status, 'repaired', r.reason ?? '');
    assert.ok(r.data!.equals(pack));
    assert.equal(r.badDataBlocks, 5);
    // stripe 0: data block 0 damaged in the pack, its parity 0 damaged in the parity file
    const bad2 = Buffer.from(pack);
    bad2[0] = bad2[0]! ^ 1;
    const pf = Buffer.from(file);
    const pOff = pf.length - 80 - l.stripes * l.m * l.blockSize;
    pf[pOff + 10] = pf[pOff + 10]! ^ 1;
    const r2 = repairFromParity(bad2, pf, name);
    assert.equal(r2.status, 'repaired', r2.reason ?? '');
    assert.ok(r2.data!.equals(pack));
    assert.equal(r2.badParityBlocks, 1);
  });

  it('repairs a truncated pack (tail lost) and a pack with bytes appended', () => {
    const cut = (l.m * l.stripes - 1) * l.blockSize;
    const r = repairFromParity(pack.subarray(0, pack.length - cut), file, name);
    assert.equal(r.status, 'repaired', r.reason ?? '');
    assert.ok(r.data!.equals(pack));
    const r2 = repairFromParity(Buffer.concat([pack, Buffer.from('garbage')]), file, name);
    assert.equal(r2.status, 'repaired', r2.reason ?? '');
    assert.ok(r2.data!.equals(pack));
  });

  it('reports damage beyond m blocks in a stripe as unrepairable', () => {
    const bad = Buffer.from(pack);
    // blocks 0, S, 2S are all in stripe 0
    for (const b of [0, l.stripes, 2 * l.stripes]) bad[b * l.blockSize + 1] = bad[b * l.blockSize + 1]! ^ 1;
    const r = repairFromParity(bad, file, name);
    assert.equal(r.status, 'unrepairable');
    assert.equal(r.data, undefined);
    assert.equal(r.lostStripes, 1);
    assert.match(r.reason!, /3 of its 98 blocks are damaged and 1 of 13 stripes lost up to 3 blocks .*rebuilds at most 2 per stripe/);
    assert.equal(repairFromParity(undefined, file, name).status, 'unrepairable', 'a missing pack (k > m)');
    assert.equal(repairFromParity(pack.subarray(0, pack.length - l.m * l.stripes * l.blockSize), file, name).status, 'unrepairable', 'a tail of m*S blocks');
  });

  it('uses the trailer copy of a damaged header; fails cleanly when the parity file is unusable or belongs elsewhere', () => {
    const bad = Buffer.from(pack);
    bad[10] = bad[10]! ^ 1;
    const pf = Buffer.from(file);
    pf[12] = pf[12]! ^ 1; // block size field of the first header copy
    assert.equal(decodeParityHeader(pf)!.fromTrailer, true);
    const r = repairFromParity(bad, pf, name);
    assert.equal(r.status, 'repaired', r.reason ?? '');
    assert.ok(r.data!.equals(pack));
    const both = Buffer.from(pf);
    both[both.length - 70] = both[both.length - 70]! ^ 1;
    assert.equal(decodeParityHeader(both), undefined);
    assert.match(repairFromParity(bad, both, name).reason!, /both copies of its header are unreadable/);
    assert.match(repairFromParity(bad, undefined, name).reason!, /no parity file/);
    const other = prngBytes('other pack', 5000);
    assert.match(repairFromParity(bad, encodeParityFile(other, sha256Hex(other), SMALL), name).reason!, /protects another pack/);
  });

  it('a damaged hash table entry costs one erasure; a truncated parity file still repairs what it covers', () => {
    const bad = Buffer.from(pack);
    bad[3] = bad[3]! ^ 1; // block 0, stripe 0
    const pf = Buffer.from(file);
    pf[80 + 16 * l.stripes] = pf[80 + 16 * l.stripes]! ^ 1; // table entry of block S, also stripe 0
    const r = repairFromParity(bad, pf, name);
    assert.equal(r.status, 'repaired', r.reason ?? '');
    assert.ok(r.data!.equals(pack));
    assert.equal(r.badDataBlocks, 2);
    // the parity file loses its trailer and the last parity blocks (parity 1 of the last stripes)
    const short = file.subarray(0, file.length - 80 - 3 * l.blockSize);
    const r2 = repairFromParity(bad, short, name);
    assert.equal(r2.status, 'repaired', r2.reason ?? '');
    assert.ok(r2.data!.equals(pack));
  });

  it('a forged parity file with consistent hashes makes the repair fail, never return wrong bytes', () => {
    const bad = Buffer.from(pack);
    bad.fill(0, 0, 1024);
    const forged = Buffer.from(file);
    const l2 = l;
    const pOff = forged.length - 80 - l2.stripes * l2.m * l2.blockSize;
    forged[pOff] = forged[pOff]! ^ 0xff; // parity 0 of stripe 0
    // and re-hash it, as a forger would
    const h = Buffer.from(sha256Hex(forged.subarray(pOff, pOff + l2.blockSize)), 'hex').subarray(0, 16);
    h.copy(forged, 80 + 16 * l2.dataBlocks);
    const r = repairFromParity(bad, forged, name);
    assert.equal(r.status, 'unrepairable');
    assert.equal(r.data, undefined);
    assert.match(r.reason!, /does not match its name/);
  });

  it('repairs packs encoded with the default scheme and with 32+2, at full block size', () => {
    const big = prngBytes('big pack', 1024 * 1024 + 999);
    const bigName = sha256Hex(big);
    for (const scheme of [DEFAULT_PARITY, parseParityScheme('32+2')]) {
      const pf = encodeParityFile(big, bigName, scheme);
      const bl = layoutFor(big.length, scheme);
      assert.ok(bl.blockSize <= 16384 && bl.stripes === Math.ceil(Math.ceil(big.length / 16384) / scheme.k));
      const bad = Buffer.from(big);
      damage(bad, 100_000, 100_000 + (bl.m * bl.stripes - 1) * bl.blockSize);
      const r = repairFromParity(bad, pf, bigName);
      assert.equal(r.status, 'repaired', r.reason ?? '');
      assert.ok(r.data!.equals(big));
      assert.ok(pf.length / big.length < (scheme.m / scheme.k) * 1.01 + 0.003, `space ${pf.length / big.length}`);
    }
  });
});
