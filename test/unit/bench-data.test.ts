import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { compareTrees, manifest } from '../../lab/gen/compare.ts';
import type { Entry } from '../../lab/gen/compare.ts';
import { findPostgres, generateDataset, generatePostgres, generateSmallFiles, mutateDataset, mutatePostgres, smallFilesFor, postgresScaleFor } from '../../lab/gen/bench-data.ts';
import type { DatasetInfo } from '../../lab/gen/bench-data.ts';

const MiB = 1024 * 1024;
const SIZE = 24 * MiB;
const ALL = { owner: true, mtime: true, dirMtime: true };
const SCRIPT = path.resolve(import.meta.dirname, '../../scripts/bench/data.ts');

let tmp = '';
const dir = (name: string) => path.join(tmp, name);
let infoA: DatasetInfo | undefined;

/** dataset.json without the one field that legitimately differs between runs. */
async function datasetJson(d: string): Promise<Record<string, unknown>> {
  const j = JSON.parse(await fs.readFile(path.join(d, 'dataset.json'), 'utf8')) as Record<string, unknown>;
  delete j['generatedAt'];
  return j;
}

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'meshback-bench-data-'));
  await fs.chmod(tmp, 0o755); // the postgres OS user must reach the data dir
  [infoA] = await Promise.all([
    generateDataset(dir('a'), { size: SIZE, seed: 1, postgres: false }),
    generateDataset(dir('b'), { size: SIZE, seed: 1, postgres: false }),
    generateDataset(dir('c'), { size: SIZE, seed: 2, postgres: false }),
  ]);
});

after(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

test('sizing: small files scale with size, pgbench scale is at least 1', () => {
  assert.equal(smallFilesFor(24 * MiB), 500);
  assert.ok(Math.abs(smallFilesFor(2048 * MiB) - 30000) < 100);
  assert.equal(postgresScaleFor(1), 1);
  const s = postgresScaleFor(0.2 * 2048 * MiB);
  assert.ok(s >= 20 && s <= 30, `scale ${s}`);
});

test('generate --no-postgres: deterministic for a seed, different for another seed', async () => {
  const info = infoA!;
  assert.equal(info.postgres, null);
  assert.equal(info.postgresScale, null);
  assert.ok(info.files >= 500, `${info.files} files`);
  assert.ok(info.bytes > SIZE * 0.9 && info.bytes < SIZE * 1.1, `${info.bytes} bytes`);
  // Everything but dataset.json's generatedAt is identical (content, modes, file and dir mtimes).
  const mesh = (d: string) => path.join(dir(d), 'mesh');
  assert.deepEqual(await compareTrees(mesh('a'), mesh('b'), ALL), []);
  assert.deepEqual(await datasetJson(dir('a')), await datasetJson(dir('b')));
  assert.deepEqual([...(await manifest(dir('a'))).keys()], [...(await manifest(dir('b'))).keys()]);
  assert.notEqual((await compareTrees(mesh('a'), mesh('c'), ALL)).length, 0);
  // The small-file cache has at least 500 files of 1-8 KiB.
  const m = await manifest(path.join(dir('a'), 'mesh', 'cache'));
  const small = [...m.values()].filter((e) => e.type === 'file' && e.size >= 1024 && e.size <= 8192);
  assert.ok(small.length >= 500, `${small.length} small files`);
});

test('mutate: same seed on two copies gives identical trees, about the requested percent', async () => {
  execFileSync('cp', ['-a', dir('b'), dir('b1')]);
  execFileSync('cp', ['-a', dir('b'), dir('b2')]);
  const [r1, r2] = await Promise.all([mutateDataset(dir('b1'), { percent: 2, seed: 2 }), mutateDataset(dir('b2'), { percent: 2, seed: 2 })]);
  assert.deepEqual({ ...r1, seconds: 0 }, { ...r2, seconds: 0 });
  assert.deepEqual(await compareTrees(dir('b1'), dir('b2'), ALL), []);
  const pct = (100 * r1.changedBytes) / r1.totalBytes;
  assert.ok(pct >= 1 && pct <= 4, `changed ${pct.toFixed(2)}%`);
  assert.notEqual((await compareTrees(dir('b'), dir('b1'), ALL)).length, 0);
  await assert.rejects(mutateDataset(tmp, { percent: 2, seed: 1 }), /not a dataset/);
});

test('generate refuses a non-empty directory with exit code 2', async () => {
  const r = spawnSync(process.execPath, [SCRIPT, 'generate', '--size', '1MiB', '--seed', '1', '--out', dir('a'), '--no-postgres'], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /not empty/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
});

test('small: count, size range, nesting, determinism', async () => {
  const N = 5000;
  const [s1] = await Promise.all([generateSmallFiles(dir('s1'), { files: N, seed: 1 }), generateSmallFiles(dir('s2'), { files: N, seed: 1, workers: 3 })]);
  assert.equal(s1.files, N);
  const m = await manifest(dir('s1'));
  const files = [...m.values()].filter((e: Entry) => e.type === 'file');
  assert.equal(files.length, N);
  assert.equal(s1.bytes, files.reduce((a, e) => a + e.size, 0));
  for (const e of files) {
    assert.ok(e.size >= 50 && e.size <= 200, `${e.path}: ${e.size} bytes`);
    assert.equal(e.path.split('/').length, 3, e.path);
    assert.equal(e.mode, 0o644);
  }
  // ~100 entries per leaf folder.
  const perDir = new Map<string, number>();
  for (const e of files) perDir.set(path.dirname(e.path), (perDir.get(path.dirname(e.path)) ?? 0) + 1);
  assert.equal(perDir.size, N / 100);
  assert.ok([...perDir.values()].every((n) => n === 100));
  // Text-like content, and the same tree for the same seed whatever the worker count.
  const sample = await fs.readFile(path.join(dir('s1'), files[0]!.path), 'latin1');
  assert.match(sample, /^[\x20-\x7e\n]+$/);
  assert.deepEqual(await compareTrees(dir('s1'), dir('s2'), ALL), []);
});

const pg = findPostgres();
test('postgres: a real pgbench cluster at scale 1, mutated without a server', { skip: pg ? false : 'PostgreSQL binaries not found (Debian package postgresql: /usr/lib/postgresql/*/bin)' }, async () => {
  const data = dir('pg');
  const r = await generatePostgres(data, { scale: 1, bins: pg! });
  assert.equal(r.scale, 1);
  assert.ok(r.bytes > 15 * MiB, `${r.bytes} bytes`);
  for (const p of ['PG_VERSION', 'base', 'global/pg_control', 'pg_wal']) assert.ok(existsSync(path.join(data, p)), p);
  assert.ok(!existsSync(path.join(data, 'postmaster.pid')), 'server stopped');
  const ctl = spawnSync(path.join(pg!.bindir, 'pg_controldata'), [data], { encoding: 'utf8' });
  if (ctl.status === 0) assert.match(ctl.stdout, /cluster state:\s+shut down/);

  const relSizes = async (d: string) => {
    const m = await manifest(d);
    return new Map([...m.values()].filter((e) => e.type === 'file' && /^base\/\d+\/\d+(_fsm|_vm)?(\.\d+)?$/.test(e.path)).map((e) => [e.path, e.size]));
  };
  const before = await relSizes(data);
  execFileSync('cp', ['-a', data, dir('pg2')]);
  const [m1, m2] = await Promise.all([mutatePostgres(data, { percent: 5, seed: 9 }), mutatePostgres(dir('pg2'), { percent: 5, seed: 9 })]);
  assert.deepEqual(m1, m2);
  assert.deepEqual(await compareTrees(data, dir('pg2'), ALL), []);
  assert.ok(m1.pagesOverwritten > 0 && m1.pagesAppended > 0 && m1.walBytes > 0, JSON.stringify(m1));
  const pct = (100 * m1.changedBytes) / r.bytes;
  assert.ok(pct >= 2.5 && pct <= 10, `changed ${pct.toFixed(2)}%`);
  const after = await relSizes(data);
  assert.deepEqual([...after.keys()], [...before.keys()], 'same relation files');
  let grown = 0;
  for (const [p, size] of after) {
    assert.equal(size % 8192, 0, `${p}: ${size}`);
    if (size > before.get(p)!) grown++;
  }
  assert.ok(grown >= 1);
});
