/**
 * Throughput of the parity code on this machine (see docs/design.md, "Parity").
 *
 *   bin/node scripts/bench/parity.ts [--mib 16] [--schemes 16+2,32+2,16+4] [--blocks 4096,16384,65536] [--json]
 *
 * For each scheme and block size: encode a pack of random bytes into its parity file, and
 * repair that pack with m whole blocks lost in every stripe (the worst repairable case).
 * Reports MiB of pack per second (best of 3 runs): the whole parity file (Reed-Solomon plus
 * the per-block SHA-256), the Reed-Solomon code alone, and the repair; and the parity file's
 * size relative to the pack.
 */
import { randomFillSync } from 'node:crypto';
import { parseArgs } from 'node:util';
import { PARITY_SCHEME_NAME, codecFor, encodeParityFile, layoutFor, parityFileSize, repairFromParity, sha256Hex } from '../../src/parity/index.ts';

const { values: v } = parseArgs({
  options: { mib: { type: 'string' }, schemes: { type: 'string' }, blocks: { type: 'string' }, json: { type: 'boolean' } },
});
const mib = Number(v.mib ?? 16);
const schemes = (v.schemes ?? '16+2,32+2,16+4').split(',').map((s) => s.split('+').map(Number) as [number, number]);
const blocks = (v.blocks ?? '4096,16384,65536').split(',').map(Number);

const pack = Buffer.allocUnsafe(Math.round(mib * 1024 * 1024) + 12345);
randomFillSync(pack);
const name = sha256Hex(pack);

function best(fn: () => void): number {
  let ms = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    fn();
    ms = Math.min(ms, performance.now() - t0);
  }
  return ms;
}

const rows: Record<string, unknown>[] = [];
for (const [k, m] of schemes) {
  for (const blockSize of blocks) {
    const scheme = { name: PARITY_SCHEME_NAME, k, m, blockSize };
    let file: Buffer = Buffer.alloc(0);
    const encMs = best(() => {
      file = encodeParityFile(pack, name, scheme);
    });
    const l = layoutFor(pack.length, scheme);
    const rs = codecFor(k, m);
    const out = Array.from({ length: m }, () => new Uint8Array(l.blockSize));
    const rsMs = best(() => {
      for (let s = 0; s < l.stripes; s++) {
        const data = Array.from({ length: k }, (_, p) => {
          const b = p * l.stripes + s;
          return b < l.dataBlocks ? pack.subarray(b * l.blockSize, Math.min(pack.length, (b + 1) * l.blockSize)) : new Uint8Array(0);
        });
        rs.encode(data, out, l.blockSize);
      }
    });
    if (file.length !== parityFileSize(l)) throw new Error('size mismatch');
    // damage m data blocks of every stripe: positions 0..m-1
    const damaged = Buffer.from(pack);
    for (let s = 0; s < l.stripes; s++) for (let p = 0; p < m; p++) {
      const b = p * l.stripes + s;
      if (b < l.dataBlocks) damaged.fill(0xa5, b * l.blockSize, Math.min(pack.length, (b + 1) * l.blockSize));
    }
    let status = '';
    const repMs = best(() => {
      status = repairFromParity(damaged, file, name).status;
    });
    if (status !== 'repaired') throw new Error(`repair failed: ${status}`);
    const row = { scheme: `${k}+${m}`, blockSize, packMiB: +(pack.length / 1048576).toFixed(2), parityPercent: +((100 * file.length) / pack.length).toFixed(2), encodeMiBps: Math.round(pack.length / 1048576 / (encMs / 1000)), rsMiBps: Math.round(pack.length / 1048576 / (rsMs / 1000)), repairMiBps: Math.round(pack.length / 1048576 / (repMs / 1000)) };
    rows.push(row);
    if (v.json !== true) console.log(`${row.scheme.padEnd(6)} B=${String(blockSize).padEnd(6)} parity ${String(row.parityPercent).padStart(6)}% of the pack   parity file ${String(row.encodeMiBps).padStart(5)} MiB/s (Reed-Solomon alone ${String(row.rsMiBps).padStart(5)})   repair (m lost per stripe) ${String(row.repairMiBps).padStart(5)} MiB/s`);
  }
}
if (v.json === true) console.log(JSON.stringify(rows));
