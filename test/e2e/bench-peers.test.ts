/**
 * End-to-end: `npm run bench:peers` (scripts/bench/peers.ts) on a tiny generated dataset with
 * every tool whose binary is here: results.json parses, every tool's restore is valid,
 * results.md has the meshback/restic ratio table; bad input exits 2 with one line; a restore
 * with wrong data is caught by the comparison.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { DATA_SCRIPT, compareRestore } from '../../lab/bench/peers.ts';
import type { Results } from '../../lab/bench/peers.ts';
import { TOOLS } from '../../lab/bench/tools.ts';
import { ROOT, rmrf, runProcess, tmpdir } from '../helpers/cli.ts';
import type { RunResult } from '../helpers/cli.ts';

const NODE = path.join(ROOT, 'bin/node');
const SCRIPT = path.join(ROOT, 'scripts/bench/peers.ts');

function runNode(args: string[], env: Record<string, string | undefined> = {}): Promise<RunResult> {
  return runProcess(NODE, args, env);
}

test('bench:peers: unknown tool is one clear line and exit 2', async () => {
  const r = await runNode([SCRIPT, '--tools', 'meshback,zfs', '--small', 'none']);
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /unknown tool "zfs"/);
});

test('bench:peers: a restore with wrong data or a wrong mode is caught', async () => {
  const base = tmpdir('bench-cmp');
  try {
    const a = path.join(base, 'a');
    const b = path.join(base, 'b');
    await fsp.mkdir(path.join(a, 'd'), { recursive: true });
    await fsp.writeFile(path.join(a, 'd', 'f'), 'hello world');
    await fsp.writeFile(path.join(a, 'g'), 'same');
    await fsp.symlink('d/f', path.join(a, 'l'));
    await fsp.cp(a, b, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    assert.deepEqual((await compareRestore(a, b)).content, []);
    await fsp.writeFile(path.join(b, 'd', 'f'), 'hello World'); // same size, other bytes
    await fsp.chmod(path.join(b, 'g'), 0o600);
    await fsp.writeFile(path.join(b, 'extra'), '');
    const diff = await compareRestore(a, b);
    assert.deepEqual(diff.content.map((d) => d.split(':')[0]).sort(), ['content differs', 'extra', 'mode differs']);
    assert.ok(diff.metadata.some((d) => d.startsWith('mtime differs: d/f')), diff.metadata.join('\n'));
  } finally {
    await rmrf(base);
  }
});

test('bench:peers: all tools end to end on a 16 MiB dataset', { timeout: 120_000 }, async (t) => {
  if (!existsSync(DATA_SCRIPT)) {
    t.skip(`${path.relative(ROOT, DATA_SCRIPT)} (the dataset generator and mutator) is not there`);
    return;
  }
  const tools: string[] = [];
  for (const tool of TOOLS) {
    if (await tool.available()) tools.push(tool.name);
    else t.diagnostic(`skipping ${tool.name}: ${tool.binaries.join(', ')} missing (Debian package ${tool.packages.join(' ') || 'n/a'})`);
  }
  assert.ok(tools.includes('meshback'), 'meshback itself must be runnable');
  const base = tmpdir('bench-peers');
  try {
    const data = path.join(base, 'data');
    const g = await runNode([DATA_SCRIPT, 'generate', '--size', '16MiB', '--seed', '1', '--out', data, '--no-postgres']);
    assert.equal(g.code, 0, g.stderr);
    const out = path.join(base, 'out');
    const r = await runNode([
      SCRIPT, '--data', data, '--size', '16MiB', '--repeat', '1', '--tools', tools.join(','), '--work', path.join(base, 'work'),
      '--out', out, '--small', 'none', '--no-install', '--env', 'MESHBACK_TEST_SCRYPT_N=1024',
    ]);
    assert.equal(r.code, 0, `exit ${r.code}\n${r.stderr.slice(-4000)}`);
    const res = JSON.parse(await fsp.readFile(path.join(out, 'results.json'), 'utf8')) as Results;
    assert.equal(res.version, 1);
    assert.equal(res.repeats, 1);
    assert.deepEqual(res.tools.map((x) => x.name), tools);
    assert.ok(res.tools.every((x) => x.available && x.version !== ''));
    assert.equal(res.tools.find((x) => x.name === 'meshback')!.encryption, true);
    for (const name of tools) {
      const restore = res.rows.filter((row) => row.tool === name && row.op === 'restore');
      assert.equal(restore.length, 1, `${name}: one restore row`);
      assert.ok(restore[0]!.ok, `${name} restore: ${restore[0]!.error ?? ''}`);
      for (const op of ['backup-first', 'backup-nochange', 'backup-2pct'] as const) {
        const row = res.rows.find((x) => x.tool === name && x.op === op)!;
        assert.ok(row.ok, `${name} ${op}: ${row.error ?? ''}`);
        assert.ok(row.bytesStored! > 0 && row.wallSeconds! >= 0 && row.maxRssBytes! > 0, `${name} ${op}: ${JSON.stringify(row)}`);
      }
    }
    assert.ok(res.rows.every((x) => x.ok), JSON.stringify(res.rows.filter((x) => !x.ok)));
    assert.equal(res.summary.filter((s) => s.op === 'restore').length, tools.length);
    const md = await fsp.readFile(path.join(out, 'results.md'), 'utf8');
    assert.match(md, /## meshback \/ the best peer/);
    assert.match(md, /\| metric \| meshback \| best peer \| ratio \| target \| result \|/);
    assert.match(md, /\| first backup, wall \|/);
    assert.match(md, /MESHBACK_TEST_SCRYPT_N=1024. Not a representative run/);
    if (tools.includes('restic')) assert.match(md, /\| first backup, wall \| [\d.]+ s \| [\d.]+ s \((restic|restic-debian|kopia|kopia-default|borg)\) \| [\d.]+ \| ≤ 0.8 \| \*\*(PASS|MISS)\*\* \|/);
    if (tools.includes('restic')) assert.match(md, /\| check with full data read, wall \| [\d.]+ s \| [\d.]+ s \(\S+\) \| [\d.]+ \| ≤ 1 \| \*\*(PASS|MISS)\*\* \|/);
    assert.equal(r.stdout, md, 'the report is printed');
  } finally {
    await rmrf(base);
  }
});
