/**
 * meshback inside a real memory cgroup (v1 here: memory.limit_in_bytes; v2: memory.max), as a data
 * mover runs under its pod's limit: backup, restore (compared by SHA-256), check --read-data, copy
 * and prune of a dataset larger than the limit all succeed with no OOM kill, and meshback found
 * the limit in its cgroup by itself (its --json summary names it). Runs the bench:memory engine
 * (lab/bench/memory.ts) on a small dataset; needs root and a memory cgroup controller.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { runMemoryBench, MEMORY_OPS } from '../../lab/bench/memory.ts';
import { cgroupVersion } from '../../lab/bench/memlimit.ts';
import { DATA_SCRIPT } from '../../lab/bench/peers.ts';
import { isRoot } from '../../src/host/packages.ts';
import { rmrf, runProcess, tmpdir } from '../helpers/cli.ts';

const MiB = 1024 * 1024;

test('a 256 MiB memory cgroup: backup, restore, check --read-data, copy and prune of 320 MiB succeed, no OOM kill, the limit read from the cgroup', { timeout: 300_000 }, async (t) => {
  if (!isRoot() || cgroupVersion() === undefined) {
    t.skip('needs root and a memory cgroup controller');
    return;
  }
  if (!existsSync(DATA_SCRIPT)) {
    t.skip('scripts/bench/data.ts is not there');
    return;
  }
  const base = tmpdir('memory-limit');
  try {
    const data = path.join(base, 'data');
    const g = await runProcess(path.join(path.dirname(DATA_SCRIPT), '../../bin/node'), [DATA_SCRIPT, 'generate', '--size', '320MiB', '--seed', '7', '--out', data, '--no-postgres']);
    assert.equal(g.code, 0, g.stderr);
    const out = path.join(base, 'out');
    const res = await runMemoryBench({ datasets: [{ name: 'mesh 320MiB', dir: data }], limitBytes: 256 * MiB, work: path.join(base, 'work'), out });
    for (const op of MEMORY_OPS) {
      for (const limit of ['unlimited', 256 * MiB] as const) {
        const row = res.rows.find((r) => r.op === op && r.limit === limit);
        assert.ok(row?.ok === true, `${op} (${limit}): ${row?.error ?? 'no row'}`);
        assert.equal(row.oomKills, 0);
        assert.ok(row.maxRssBytes! > 0 && row.cgroupPeakBytes! > 0);
      }
      const limited = res.rows.find((r) => r.op === op && r.limit !== 'unlimited')!;
      assert.ok(limited.cgroupPeakBytes! <= 256 * MiB, `${op}: the cgroup's peak ${limited.cgroupPeakBytes} is within its limit`);
      // meshback read the limit from its cgroup: nothing told it
      if (op !== 'prune') assert.equal(limited.limitSeenBytes, 256 * MiB, `${op}: meshback sized itself to its cgroup's limit`);
      assert.equal(res.rows.find((r) => r.op === op && r.limit === 'unlimited')!.limitSeenBytes, undefined, `${op}: no limit seen outside one`);
    }
    const md = await fsp.readFile(path.join(out, 'results.md'), 'utf8');
    assert.match(md, /^# meshback inside a 256 MiB memory limit/);
    assert.match(md, /\| mesh 320MiB \| backup \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| 0 \| 256 \| [\d.]+x \| \*\*PASS\*\* \|/);
  } finally {
    await rmrf(base);
  }
});
