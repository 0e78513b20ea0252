import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Rng, deriveSeed } from '../../lab/gen/rng.ts';
import { generateMeshVolume, generateTrickyTree, mutateVolume } from '../../lab/gen/gen.ts';
import type { GenStats } from '../../lab/gen/gen.ts';
import { compareTrees, displayPath, manifest } from '../../lab/gen/compare.ts';
import type { Entry } from '../../lab/gen/compare.ts';

/** GenStats as computed from a manifest. */
function statsOf(m: Map<string, Entry>): GenStats {
  const entries = [...m.values()];
  const inodes = new Map(entries.filter((e) => e.type === 'file').map((e) => [e.ino, e.size]));
  return {
    files: entries.filter((e) => e.type !== 'dir').length,
    dirs: entries.filter((e) => e.type === 'dir').length,
    bytes: [...inodes.values()].reduce((a, b) => a + b, 0),
  };
}

const MiB = 1024 * 1024;
const VOLUME = { size: 20 * MiB, seed: 7, smallFiles: 200 };
const TRICKY = { seed: 11, smallFiles: 200, sparseSize: 64 * MiB };
const ALL = { owner: true, mtime: true, dirMtime: true, sparse: true, hardlinks: true };

/** Run `edit` on a file, then restore its mtime with microsecond precision. */
async function keepingMtime(p: string, edit: () => Promise<unknown>): Promise<void> {
  const ns = (await fs.lstat(p, { bigint: true })).mtimeNs;
  await edit();
  const sec = Number(ns / 1000n) / 1e6;
  await fs.utimes(p, sec, sec);
}

let tmp = '';
let volStats: GenStats | undefined;
let trickyStats: GenStats | undefined;
const dir = (name: string) => path.join(tmp, name);

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'meshback-gen-'));
  // Generate the shared fixtures concurrently: vol-a/vol-b (same seed),
  // vol-c (other seed), tricky-a/tricky-b (same seed).
  [volStats, , , trickyStats] = await Promise.all([
    generateMeshVolume(dir('vol-a'), VOLUME),
    generateMeshVolume(dir('vol-b'), VOLUME),
    generateMeshVolume(dir('vol-c'), { ...VOLUME, seed: 8 }),
    generateTrickyTree(dir('tricky-a'), TRICKY),
    generateTrickyTree(dir('tricky-b'), TRICKY),
  ]);
});

after(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

test('rng is deterministic and seed-sensitive', () => {
  const a = new Rng(42);
  const b = new Rng(42);
  const c = new Rng(43);
  const sa = Array.from({ length: 8 }, () => a.next());
  assert.deepEqual(sa, Array.from({ length: 8 }, () => b.next()));
  assert.notDeepEqual(sa, Array.from({ length: 8 }, () => c.next()));
  assert.ok(a.bytes(4096).equals(b.fill(Buffer.alloc(4096))));
  for (let i = 0; i < 1000; i++) {
    const f = a.float();
    assert.ok(f >= 0 && f < 1);
    const n = a.int(-3, 3);
    assert.ok(Number.isInteger(n) && n >= -3 && n <= 3);
  }
  assert.notEqual(deriveSeed(1, 'blob', 1), deriveSeed(1, 'blob', 2));
  assert.equal(deriveSeed(1, 'blob', 1), deriveSeed(1, 'blob', 1));
});

test('displayPath escapes invalid UTF-8, control bytes and backslashes injectively', () => {
  assert.equal(displayPath(Buffer.from('café/日本語.txt')), 'café/日本語.txt');
  assert.equal(displayPath(Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x74])), 'f\\xff\\xfe.t');
  assert.equal(displayPath(Buffer.from('a\nb')), 'a\\x0ab');
  assert.equal(displayPath(Buffer.from('back\\xff')), 'back\\\\xff'); // literal text, not an escape
  assert.notEqual(displayPath(Buffer.from('back\\xff')), displayPath(Buffer.from([0x62, 0x61, 0x63, 0x6b, 0xff])));
  assert.equal(displayPath(Buffer.from([0xed, 0xa0, 0x80])), '\\xed\\xa0\\x80'); // surrogate
});

test('generateMeshVolume is deterministic (content, modes, owners, all mtimes)', async () => {
  assert.deepEqual(await compareTrees(dir('vol-a'), dir('vol-b'), ALL), []);
});

test('generateMeshVolume has the expected shape and size', async () => {
  const m = await manifest(dir('vol-a'));
  assert.deepEqual(statsOf(m), volStats);
  const files = [...m.values()].filter((e) => e.type === 'file');
  const bytes = files.reduce((s, e) => s + e.size, 0);
  assert.ok(Math.abs(bytes - VOLUME.size) < 0.05 * VOLUME.size, `total ${bytes} not ~${VOLUME.size}`);
  const has = (re: RegExp) => files.filter((e) => re.test(e.path));
  assert.ok(has(/^istio-proxy\/[a-z]+-\d+\/access\.log$/).length >= 3);
  assert.ok(has(/\/access\.log\.\d+\.gz$/).length >= 1);
  assert.ok(has(/\/config_dump\.json$/).length >= 3);
  assert.ok(has(/\.prom$/).length >= 3);
  assert.ok(has(/\.pem$/).length >= 9);
  assert.equal(has(/^cache\//).length, VOLUME.smallFiles);
  for (const e of has(/^cache\//)) assert.ok(e.size >= 1024 && e.size <= 8192);
  const blobBytes = has(/^data\//).reduce((s, e) => s + e.size, 0);
  assert.ok(blobBytes > 0.35 * bytes && blobBytes < 0.55 * bytes, `blob share ${blobBytes / bytes}`);
  // Realistic content: an Envoy access-log line and a parseable config dump.
  const log = await fs.readFile(path.join(dir('vol-a'), (has(/\/access\.log$/)[0] ?? assert.fail()).path), 'utf8');
  assert.match(log.slice(0, log.indexOf('\n')), /^\[\d{4}-\d\d-\d\dT[\d:.]+Z\] "[A-Z]+ \S+ HTTP\/[\d.]+" \d+ /);
  const dump = JSON.parse(await fs.readFile(path.join(dir('vol-a'), (has(/\/config_dump\.json$/)[0] ?? assert.fail()).path), 'utf8'));
  assert.ok(Array.isArray(dump.configs));
});

test('a different seed gives a different volume', async () => {
  const diffs = await compareTrees(dir('vol-a'), dir('vol-c'));
  assert.ok(diffs.length > 10, `only ${diffs.length} differences`);
});

test('generateTrickyTree is deterministic, incl. sparseness and hard links', async () => {
  assert.deepEqual(await compareTrees(dir('tricky-a'), dir('tricky-b'), ALL), []);
});

test('generateTrickyTree makes real holes, odd names, links, modes and owners', async () => {
  const m = await manifest(dir('tricky-a'));
  assert.deepEqual(statsOf(m), trickyStats);
  const get = (p: string) => m.get(p) ?? assert.fail(`missing ${p}`);

  const sparse = get('sparse/big-sparse.img');
  assert.equal(sparse.size, TRICKY.sparseSize);
  assert.ok(sparse.blocks * 512 < sparse.size / 8, `allocated ${sparse.blocks * 512} of ${sparse.size}`);
  assert.ok(sparse.blocks * 512 >= 3 * MiB); // the data islands are real
  const hole = get('sparse/all-hole.img');
  assert.ok(hole.size > 0 && hole.blocks === 0);

  // Invalid UTF-8 names exist on disk, and the raw bytes survive the walk.
  const bad = get('badnames/f\\xff\\xfe.t');
  assert.deepEqual([...bad.rel.subarray(-5)], [0x66, 0xff, 0xfe, 0x2e, 0x74]);
  const raw = (await fs.readdir(path.join(dir('tricky-a'), 'badnames'), { encoding: 'buffer' })) as Buffer[];
  assert.ok(raw.some((n) => n.equals(Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x74]))));
  assert.equal(get('badnames/dir\\x80\\x81/inner.txt').type, 'file');
  assert.equal(get('links/bad-utf8-target').linkTarget, 't\\xff.bin');

  get('unicode/café.txt');
  get('unicode/cafe\u0301.txt');
  get('unicode/日本語.txt');
  get('weird/line\\x0abreak.txt');
  get('weird/with spaces.txt');
  assert.equal(get('empty.txt').size, 0);
  assert.equal(get('empty-nested/a/b/c').type, 'dir');

  assert.equal(get('links/relative').linkTarget, 'target.txt');
  assert.equal(get('links/absolute').linkTarget, '/etc/hostname');
  assert.equal(get('links/dangling').type, 'symlink');
  assert.equal(get('links/to-dir').linkTarget, '../unicode');

  const h1 = get('hardlinks/original.bin');
  const h2 = get('hardlinks/sub/third-name.bin');
  assert.equal(h1.ino, h2.ino);
  assert.equal(h1.nlink, 3);

  assert.equal(get('modes/private.key').mode, 0o600);
  assert.equal(get('modes/group-read.conf').mode, 0o640);
  assert.equal(get('modes/run.sh').mode, 0o755);
  assert.equal(get('modes/setuid-helper').mode, 0o4755);
  assert.equal(get('modes/private-dir').mode, 0o700);
  if (process.getuid?.() === 0) {
    assert.deepEqual([get('owners/u1234.txt').uid, get('owners/u1234.txt').gid], [1234, 5678]);
    assert.deepEqual([get('owners/u4321.txt').uid, get('owners/u4321.txt').gid], [4321, 8765]);
    assert.equal(get('owners/setuid-1234').mode, 0o4750); // setuid survives the chown
  }
  assert.equal(get('times/pre-1970.txt').mtimeNs < 0n, true);
  assert.ok(get('large/chunky.bin').size > 8 * MiB);
  const [a, b] = [get('dedup/copy-a.bin'), get('dedup/copy-b.bin')];
  assert.ok(a.size > 4 * MiB && a.size === b.size && a.ino !== b.ino);
  assert.equal((await manifest(dir('tricky-a'), { hash: true })).get('dedup/copy-b.bin')?.sha256, (await manifest(dir('tricky-b'), { hash: true })).get('dedup/copy-a.bin')?.sha256);
  assert.ok(m.size > TRICKY.smallFiles + 50);
});

test('compareTrees detects every kind of difference', async () => {
  const src = dir('tricky-a');
  const dst = dir('tricky-b');
  const at = (p: string) => path.join(dst, p);

  // Flip one byte in place (same size, same mtime afterwards).
  await keepingMtime(at('dedup/near-copy.bin'), async () => {
    const fh = await fs.open(at('dedup/near-copy.bin'), 'r+');
    const one = Buffer.alloc(1);
    await fh.read(one, 0, 1, 1000);
    one[0] = (one[0] as number) ^ 0x80;
    await fh.write(one, 0, 1, 1000);
    await fh.close();
  });

  await fs.chmod(at('modes/run.sh'), 0o744);
  const t = (await fs.stat(at('links/target.txt'), { bigint: true })).mtimeNs;
  // Shift by 5 µs only: a millisecond-precision comparison would miss it.
  const shifted = Number(t / 1000n + 5n) / 1e6;
  await fs.utimes(at('links/target.txt'), shifted, shifted);
  await fs.unlink(at('unicode/日本語.txt'));
  await fs.unlink(at('links/relative'));
  await fs.symlink('elsewhere.txt', at('links/relative'));
  await fs.writeFile(at('extra-file'), 'x');
  await fs.truncate(at('many/d00/s0/f00000.dat'), 0);
  const badFile = Buffer.concat([Buffer.from(at('badnames')), Buffer.from([0x2f, 0x66, 0xff, 0xfe, 0x2e, 0x74])]);
  await fs.appendFile(badFile, 'more');

  const diffs = await compareTrees(src, dst, { sparse: true, hardlinks: true });
  const expect = (re: RegExp) => assert.ok(diffs.some((d) => re.test(d)), `no diff matching ${re}:\n${diffs.join('\n')}`);
  expect(/^content differs: dedup\/near-copy\.bin/);
  expect(/^mode differs: modes\/run\.sh: 0755 vs 0744/);
  expect(/^mtime differs: links\/target\.txt/);
  expect(/^missing in dst: unicode\/日本語\.txt/);
  expect(/^symlink target differs: links\/relative: target\.txt vs elsewhere\.txt/);
  expect(/^extra in dst: extra-file/);
  expect(/^size differs: many\/d00\/s0\/f00000\.dat/);
  expect(/^size differs: badnames\/f\\xff\\xfe\.t/);
  // Directory mtimes changed by the edits are only reported with dirMtime.
  assert.ok(!diffs.some((d) => /^mtime differs: (links|unicode)$/.test(d)));
  const withDirs = await compareTrees(src, dst, { dirMtime: true });
  assert.ok(withDirs.some((d) => /^mtime differs: unicode:/.test(d)));
});

test('compareTrees checks sparseness, hard links and owners', async () => {
  const src = dir('tricky-a');
  const copy = dir('tricky-copy');
  await generateTrickyTree(copy, TRICKY);
  assert.deepEqual(await compareTrees(src, copy, { sparse: true, hardlinks: true }), []);

  // Densify the sparse file, keeping content and mtime.
  const img = path.join(copy, 'sparse/big-sparse.img');
  await keepingMtime(img, async () => fs.writeFile(img, await fs.readFile(img)));
  // Break a hard link: same content, separate inode.
  const link = path.join(copy, 'hardlinks/second-name.bin');
  await keepingMtime(link, async () => {
    await fs.unlink(link);
    await fs.copyFile(path.join(copy, 'hardlinks/original.bin'), link);
  });
  if (process.getuid?.() === 0) await fs.chown(path.join(copy, 'empty.txt'), 1, 1);

  const diffs = await compareTrees(src, copy, { sparse: true, hardlinks: true });
  assert.ok(diffs.some((d) => d.startsWith('not sparse in dst: sparse/big-sparse.img')), diffs.join('\n'));
  assert.ok(diffs.some((d) => d.startsWith('hard link not preserved: hardlinks/original.bin')), diffs.join('\n'));
  if (process.getuid?.() === 0) assert.ok(diffs.includes('owner differs: empty.txt: 0:0 vs 1:1'), diffs.join('\n'));
  assert.deepEqual(await compareTrees(src, copy, { owner: false }), []);
});

test('mutateVolume changes about the requested share, deterministically', async () => {
  const a = dir('mut-a');
  const b = dir('mut-b');
  await Promise.all([generateMeshVolume(a, VOLUME), generateMeshVolume(b, VOLUME)]);
  const ra = await mutateVolume(a, { percent: 5, seed: 3 });
  const rb = await mutateVolume(b, { percent: 5, seed: 3 });
  assert.deepEqual(ra, rb);
  assert.deepEqual(await compareTrees(a, b, ALL), []);
  assert.ok(ra.changedBytes > 0.03 * VOLUME.size && ra.changedBytes < 0.08 * VOLUME.size, `changed ${ra.changedBytes}`);
  assert.ok(ra.added >= 1 && ra.deleted >= 1 && ra.modified >= 3);

  const diffs = await compareTrees(dir('vol-a'), a);
  assert.ok(diffs.some((d) => d.startsWith('missing in dst: ')));
  assert.ok(diffs.some((d) => d.startsWith('extra in dst: ')));
  assert.ok(diffs.some((d) => /^size differs: istio-proxy\/.*access\.log:/.test(d)));
  assert.ok(diffs.some((d) => /^content differs: data\//.test(d)));
  // In-place blob overwrites keep sizes; only content and mtime change.
  assert.ok(!diffs.some((d) => /^size differs: data\//.test(d)));
});
