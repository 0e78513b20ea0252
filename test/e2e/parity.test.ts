/**
 * End-to-end: parity through the real CLI. init --parity, backup real files, damage a pack
 * (a flipped region, a zeroed block, a cut tail), check --read-data says it is repairable,
 * restore already works around it, repair packs rebuilds it byte for byte, restore is identical; damage beyond the parity is
 * reported (exit 4) and harms nothing else; repositories without parity keep working.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { compareTrees } from '../../lab/gen/compare.ts';
import { mb, rmrf, summary, tmpdir } from '../helpers/cli.ts';

async function makeTree(dir: string): Promise<void> {
  await fsp.mkdir(path.join(dir, 'envoy'), { recursive: true });
  await fsp.mkdir(path.join(dir, 'data'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'envoy/access.log'), '[2026-11-22T10:00:00Z] "GET /orders HTTP/1.1" 200 512 3 upstream=10.0.0.7:8080\n'.repeat(30000));
  // 5 MiB of incompressible bytes: the data pack is mostly this
  const rnd = Buffer.alloc(5 * 1024 * 1024);
  let x = 0x9e3779b9;
  for (let i = 0; i < rnd.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    rnd.writeUInt32LE(x >>> 0, i);
  }
  await fsp.writeFile(path.join(dir, 'data/volume.img'), rnd);
  await fsp.writeFile(path.join(dir, 'data/small.txt'), 'hello\n');
}

interface PackFiles {
  name: string;
  pack: string;
  parity: string;
  size: number;
}

/** Packs of a repository with their parity file paths, largest first. */
async function packFiles(repo: string): Promise<PackFiles[]> {
  const out: PackFiles[] = [];
  for (const d of await fsp.readdir(path.join(repo, 'data'))) {
    for (const f of await fsp.readdir(path.join(repo, 'data', d))) {
      if (f.startsWith('.')) continue;
      const pack = path.join(repo, 'data', d, f);
      out.push({ name: f, pack, parity: path.join(repo, 'parity', d, f), size: (await fsp.stat(pack)).size });
    }
  }
  return out.sort((a, b) => b.size - a.size);
}

/** Block size and stripe count from a parity file's header (docs/design.md, "Parity"). */
async function parityLayout(file: string): Promise<{ blockSize: number; stripes: number; dataBlocks: number }> {
  const h = (await fsp.readFile(file)).subarray(0, 80);
  assert.equal(h.subarray(0, 8).toString(), 'MBPARITY');
  return { blockSize: h.readUInt32LE(12), dataBlocks: h.readUInt32LE(24), stripes: h.readUInt32LE(28) };
}

async function patch(file: string, offset: number, bytes: Buffer): Promise<void> {
  const fh = await fsp.open(file, 'r+');
  try {
    await fh.write(bytes, 0, bytes.length, offset);
  } finally {
    await fh.close();
  }
}

const sha = async (f: string): Promise<string> => createHash('sha256').update(await fsp.readFile(f)).digest('hex');

describe('parity (init --parity, check, repair packs)', () => {
  let base: string;
  let src: string;
  let repo: string;
  let env: Record<string, string>;
  let data: PackFiles;
  let original: Buffer;
  let originalParity: Buffer;

  before(async () => {
    base = tmpdir('parity');
    src = path.join(base, 'src');
    repo = path.join(base, 'repo');
    env = { MESHBACK_REPO: repo, MESHBACK_PASSWORD: 'parity-pw' };
    await makeTree(src);
    const i = await mb(['init', '--parity', '--json'], { env });
    assert.equal(i.code, 0, i.stderr);
    assert.deepEqual(summary(i.stdout)['parity'], { name: 'rs-gf256-cauchy-v1', k: 16, m: 2, blockSize: 16384 });
    const b = await mb(['backup', src], { env });
    assert.equal(b.code, 0, b.stderr);
    data = (await packFiles(repo))[0]!;
    original = await fsp.readFile(data!.pack);
    originalParity = await fsp.readFile(data!.parity);
  });
  after(async () => {
    await rmrf(base);
  });

  const restoreAndCompare = async (name: string): Promise<void> => {
    const dst = path.join(base, `restore-${name}`);
    const r = await mb(['restore', 'latest', '--target', dst, '--verify'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await compareTrees(src, dst), []);
  };

  test('every pack has a parity file of about 2/16 of its size; a clean repository needs no repair', async () => {
    const all = await packFiles(repo);
    assert.ok(all.length >= 2, 'a data pack and a tree pack');
    for (const p of all) assert.ok((await fsp.stat(p.parity)).isFile(), p.parity);
    const ratio = originalParity.length / original.length;
    assert.ok(ratio > 0.125 && ratio < 0.13, `parity/pack = ${ratio}`);
    const r = await mb(['repair', 'packs', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const s = summary(r.stdout);
    assert.equal(s['ok'], true);
    assert.deepEqual(s['damaged'], []);
    assert.equal(s['intact'], all.length);
  });

  test('a flipped region and a zeroed block: check says repairable (exit 4), repair packs fixes it, check passes, restore is identical', async () => {
    const { blockSize } = await parityLayout(data.parity);
    await patch(data.pack, 100_000, Buffer.alloc(20_000, 0xee));
    await patch(data.pack, 40 * blockSize, Buffer.alloc(blockSize, 0));
    const c = await mb(['check', '--read-data'], { env });
    assert.equal(c.code, 4, c.stderr);
    assert.match(c.stdout, new RegExp(`pack ${data.name} is damaged: .*repairable from parity: run 'meshback repair packs'`));
    assert.match(c.stdout, /all 1 damaged pack\(s\) can be rebuilt from parity: run 'meshback repair packs'/);
    const cj = summary((await mb(['check', '--read-data', '--json'], { env })).stdout);
    assert.deepEqual(cj['repairablePacks'], [data.name]);

    // before the repair, restore already takes the damaged chunks from a copy rebuilt in memory
    const dst = path.join(base, 'restore-before-repair');
    const rb = await mb(['restore', 'latest', '--target', dst, '--verify', '--json'], { env });
    assert.equal(rb.code, 0, rb.stderr);
    assert.deepEqual(summary(rb.stdout)['rebuiltFromParity'], [data.name]);
    assert.match(rb.stdout, new RegExp(`"message_type":"warning","message":"pack ${data.name} is damaged: its chunks were rebuilt from its parity file`));
    assert.deepEqual(await compareTrees(src, dst), []);
    assert.ok(!(await fsp.readFile(data.pack)).equals(original), 'restore does not change the repository');

    const r = await mb(['repair', 'packs'], { env });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, new RegExp(`pack ${data.name} \\(damaged\\): repaired \\(\\d+ of \\d+ blocks rebuilt\\)`));
    assert.ok((await fsp.readFile(data.pack)).equals(original), 'byte-identical pack');
    assert.equal((await mb(['check', '--read-data'], { env })).code, 0);
    await restoreAndCompare('region');
  });

  test('a tail cut by less than m blocks is rebuilt (check without --read-data already sees the size)', async () => {
    const { blockSize } = await parityLayout(data.parity);
    await fsp.truncate(data.pack, original.length - Math.floor(1.5 * blockSize));
    const c = await mb(['check'], { env });
    assert.equal(c.code, 4);
    assert.match(c.stdout, /truncated or damaged/);
    const r = await mb(['repair', 'packs', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const s = summary(r.stdout);
    assert.deepEqual((s['damaged'] as { pack: string; problem: string; status: string }[]).map((d) => [d.pack, d.problem, d.status]), [[data.name, 'truncated', 'repaired']]);
    assert.ok((await fsp.readFile(data.pack)).equals(original));
    await restoreAndCompare('tail');
  });

  test('a lost parity file is written again, identical', async () => {
    await fsp.rm(data.parity);
    const c = await mb(['check'], { env });
    assert.equal(c.code, 0, 'an intact pack without parity is not an error');
    assert.match(c.stdout, /note: 1 pack\(s\) have no parity file .*run 'meshback repair packs' to rewrite them/);
    const r = await mb(['repair', 'packs'], { env });
    assert.equal(r.code, 0);
    assert.match(r.stdout, /parity files written again: 1 \(1 missing, 0 damaged\)/);
    assert.ok((await fsp.readFile(data.parity)).equals(originalParity));
  });

  test('damage beyond the parity: reported by name (exit 4), the pack and everything else left as they were', async () => {
    const { blockSize, stripes } = await parityLayout(data.parity);
    // three blocks of stripe 0 (blocks 0, S and 2S): one more than 16+2 can rebuild
    for (const b of [0, stripes, 2 * stripes]) await patch(data.pack, b * blockSize + 5, Buffer.from('XX'));
    const others = await packFiles(repo);
    const before = new Map<string, string>();
    for (const p of others) {
      before.set(p.pack, await sha(p.pack));
      before.set(p.parity, await sha(p.parity));
    }
    const c = await mb(['check', '--read-data'], { env });
    assert.equal(c.code, 4);
    assert.match(c.stdout, /not repairable from parity: 3 of its \d+ blocks are damaged/);
    const r = await mb(['repair', 'packs'], { env });
    assert.equal(r.code, 4, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`pack ${data.name} \\(damaged\\): cannot be repaired: .*stripes lost up to 3 blocks`));
    assert.match(r.stdout, /1 pack\(s\) cannot be repaired: their data is lost; 'meshback check --read-data' lists the affected files/);
    for (const [f, h] of before) assert.equal(await sha(f), h, `${f} unchanged`);
    // the other files still restore
    const dst = path.join(base, 'restore-partial');
    const rs = await mb(['restore', 'latest', '--target', dst], { env });
    assert.equal(rs.code, 4);
    assert.ok((await fsp.readFile(path.join(dst, 'envoy/access.log'))).equals(await fsp.readFile(path.join(src, 'envoy/access.log'))));
    // put the pack back for nothing else to depend on this test's damage
    await fsp.writeFile(data.pack, original);
  });

  test('init --parity 32+2 records its scheme; bad schemes are usage errors (exit 2)', async () => {
    const r32 = path.join(base, 'repo32');
    const i = await mb(['init', '--parity', '32+2', '--json'], { env: { ...env, MESHBACK_REPO: r32 } });
    assert.equal(i.code, 0, i.stderr);
    assert.deepEqual(summary(i.stdout)['parity'], { name: 'rs-gf256-cauchy-v1', k: 32, m: 2, blockSize: 16384 });
    const b = await mb(['backup', src], { env: { ...env, MESHBACK_REPO: r32 } });
    assert.equal(b.code, 0, b.stderr);
    const [p] = await packFiles(r32);
    const ratio = (await fsp.stat(p!.parity)).size / p!.size;
    assert.ok(ratio > 0.0625 && ratio < 0.066, `32+2: parity/pack = ${ratio}`);
    for (const bad of ['2+4', 'x', '16+0', '300+2']) {
      const r = await mb(['init', '--parity', bad], { env: { ...env, MESHBACK_REPO: path.join(base, `bad-${bad}`) } });
      assert.equal(r.code, 2, bad);
      assert.match(r.stderr, /^meshback: --parity .*\n$/);
    }
    const u = await mb(['repair', 'nothing'], { env });
    assert.equal(u.code, 2);
    assert.match(u.stderr, /repair needs a subcommand: 'repair packs \[PACK...\]', 'repair index', 'repair snapshots \[ID...\]' or 'repair undelete/);
  });

  test('a repository without parity: no parity files, check and repair packs work; a damaged pack is unrepairable (exit 4)', async () => {
    const plain = path.join(base, 'plain');
    const e = { ...env, MESHBACK_REPO: plain };
    assert.equal((await mb(['init'], { env: e })).code, 0);
    assert.equal((await mb(['backup', src], { env: e })).code, 0);
    assert.deepEqual(await fsp.readdir(path.join(plain, 'parity')), []);
    assert.equal((await mb(['check', '--read-data'], { env: e })).code, 0);
    const ok = await mb(['repair', 'packs'], { env: e });
    assert.equal(ok.code, 0);
    assert.match(ok.stdout, /no damaged packs/);
    const [p] = await packFiles(plain);
    await patch(p!.pack, 1000, Buffer.from('damage'));
    const c = await mb(['check', '--read-data'], { env: e });
    assert.equal(c.code, 4);
    assert.doesNotMatch(c.stdout, /repairable/);
    const r = await mb(['repair', 'packs'], { env: e });
    assert.equal(r.code, 4);
    assert.match(r.stdout, /cannot be repaired: it has no parity file \(the repository was created without --parity\)/);
  });
});
