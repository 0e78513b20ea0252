/**
 * End-to-end: `meshback bench run --tools velero` for real (the Velero lab of
 * lab/bench/velero-tool.ts: MinIO, the test control plane, the Velero server and its node agents)
 * on an 8 MiB data set, one repeat, in container-crash, node-outage and repo-corruption: every cell
 * measured (wall, CPU, peak RSS of the server and agents, bytes in the bucket, integrity, RPO,
 * RTO), the bit rot in the bucket detected, the scenarios that do not apply skipped with the
 * reason, and nothing left mounted or running.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { checkResults } from '../../lab/bench/fault/runner.ts';
import type { BenchResults } from '../../lab/bench/fault/types.ts';
import { mb, rmrf, tmpdir } from '../helpers/cli.ts';

const skip = process.getuid?.() === 0 ? false : 'needs root (the Velero lab bind-mounts pod volumes)';

test('bench run --tools velero: container-crash, node-outage and repo-corruption measured; disk-full not applicable, with the reason', { skip, timeout: 900_000 }, async () => {
  const out = tmpdir('bench-velero');
  try {
    const r = await mb(['bench', 'run', '--tools', 'velero', '--scenarios', 'container-crash,node-outage,repo-corruption,disk-full', '--size', '8MiB', '--repeat', '1', '--no-install', '--out', out], { timeoutMs: 840_000 });
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(await fsp.readFile(path.join(out, 'results.json'), 'utf8')) as unknown;
    assert.equal(checkResults(json), undefined);
    const res = json as BenchResults;
    const cell = (s: string) => res.cells.find((c) => c.scenario === s && c.tool === 'velero')!;
    for (const s of ['container-crash', 'node-outage']) {
      const c = cell(s);
      assert.equal(c.status, 'ok', `${s}: ${JSON.stringify(c.repeats.map((x) => x.reason))}`);
      const rep = c.repeats[0]!;
      assert.equal(rep.integrity!.matching, rep.integrity!.files, `${s}: ${JSON.stringify(rep.integrity)}`);
      assert.ok(rep.rpo !== undefined && rep.rtoSeconds !== undefined && rep.rtoSeconds > 0, s);
      assert.ok((rep.bytesStored ?? 0) > 1024 * 1024, `${s}: ${rep.bytesStored} bytes in the bucket`);
      const b1 = rep.steps.find((x) => x.name === 'backup-1')!;
      // the server and the node agents were measured, not only the CLI that waits for them
      assert.ok(b1.peakRssBytes > 100 * 1024 * 1024 && b1.cpuSeconds > 0.2, JSON.stringify(b1));
    }
    const rot = cell('repo-corruption').repeats[0]!;
    assert.equal(rot.status, 'ok', rot.reason ?? '');
    assert.equal(rot.corruptionDetected, true, JSON.stringify(rot.notes));
    assert.match(rot.detectionMessage ?? '', /PartiallyFailed|Failed/);
    const full = cell('disk-full');
    assert.equal(full.status, 'skipped');
    assert.match(full.reason ?? '', /not applicable: Velero keeps its repository in the object store/);
    assert.match(await fsp.readFile(path.join(out, 'report.md'), 'utf8'), /Velero \(fs-backup, kopia\)/);
    assert.ok(!(await fsp.readFile('/proc/self/mounts', 'utf8')).includes('meshback-bench-velero'), 'a pod volume is still mounted');
  } finally {
    await rmrf(out);
  }
});
