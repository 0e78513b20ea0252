/**
 * End-to-end: the real CLI on a generated tree of edge cases (large sparse file, thousands
 * of small files, unicode and invalid-UTF-8 names, symlinks, hard links, empty dirs, modes,
 * owners, mtimes): backup, no-change backup, restore, byte-for-byte and
 * metadata-for-metadata comparison, check --read-data.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { compareTrees } from '../../lab/gen/compare.ts';
import { generateTrickyTree } from '../../lab/gen/gen.ts';
import { mb, rmrf, summary, tmpdir } from '../helpers/cli.ts';

test('tricky tree: backup, no-change backup, restore identical, check --read-data', async () => {
  const base = tmpdir('rt');
  const src = path.join(base, 'src');
  const repo = path.join(base, 'repo');
  const dst = path.join(base, 'dst');
  const env = { MESHBACK_REPO: repo, MESHBACK_PASSWORD: 'correct horse' };
  try {
    await generateTrickyTree(src, { seed: 7, smallFiles: 3000, sparseSize: 256 * 1024 * 1024 });
    assert.equal((await mb(['init'], { env })).code, 0);

    const b1 = await mb(['backup', src, '--json', '--tag', 'env=test', '--host', 'node-a'], { env });
    assert.equal(b1.code, 0, b1.stderr);
    const s1 = summary(b1.stdout);
    const sum1 = s1['summary'] as Record<string, number>;
    assert.ok(sum1['files']! > 3000, `files ${sum1['files']}`);
    // the 256 MiB sparse file's holes are not stored as data
    assert.ok(sum1['bytesStored']! < 200 * 1024 * 1024, `stored ${sum1['bytesStored']}`);

    const b2 = await mb(['backup', src, '--json', '--host', 'node-a'], { env });
    assert.equal(b2.code, 0, b2.stderr);
    const sum2 = summary(b2.stdout)['summary'] as Record<string, number>;
    assert.equal(sum2['filesRead'], 0, 'a backup after no change must read no file');
    assert.equal(sum2['bytesRead'], 0);
    assert.equal(sum2['filesUnchanged'], sum2['files']);
    assert.equal(sum2['files'], sum1['files']);

    const r = await mb(['restore', 'latest', '--target', dst, '--verify', '--json'], { env });
    assert.equal(r.code, 0, r.stderr + r.stdout.slice(-2000));
    const rs = summary(r.stdout);
    assert.ok((rs['filesVerified'] as number) > 3000);
    assert.ok((rs['filesReread'] as number) > 3000);

    const diffs = await compareTrees(src, dst, { owner: true, mtime: true, dirMtime: true, sparse: true, hardlinks: true });
    assert.deepEqual(diffs, []);

    const c = await mb(['check', '--read-data'], { env });
    assert.equal(c.code, 0, c.stdout + c.stderr);
    assert.match(c.stdout, /no errors were found/);

    const ls = await mb(['ls', 'latest', '--json'], { env });
    assert.equal(ls.code, 0);
    const entries = JSON.parse(ls.stdout.trim()) as { path: string }[];
    assert.ok(entries.length > 3000);
  } finally {
    await rmrf(base);
  }
});
