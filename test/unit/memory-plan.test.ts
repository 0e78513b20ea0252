/**
 * The memory limit meshback sizes itself to: read from cgroup v2 (memory.max) and v1
 * (memory.limit_in_bytes) trees laid out as the kernel lays them out (here in a temp directory),
 * and the plan's windows for a limit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { cgroupMemoryLimit } from '../../src/host/memory.ts';
import { MIN_LIMIT, RESERVE, planMemory } from '../../src/util/memory.ts';
import { mb, rmrf, tmpdir } from '../helpers/cli.ts';

const MiB = 1024 * 1024;

function tree(files: Record<string, string>): string {
  const root = tmpdir('cgroup');
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
    writeFileSync(path.join(root, f), text);
  }
  return root;
}

test('cgroup v2: memory.max of the process cgroup, the smallest on the path up; "max" is no limit', async () => {
  const root = tree({
    'proc-cgroup': '0::/kubepods.slice/pod1/ctr\n',
    'sys/memory.max': 'max\n',
    'sys/kubepods.slice/memory.max': String(8 * 1024 * MiB),
    'sys/kubepods.slice/pod1/memory.max': String(512 * MiB),
    'sys/kubepods.slice/pod1/ctr/memory.max': 'max\n',
  });
  try {
    const l = cgroupMemoryLimit(path.join(root, 'sys'), path.join(root, 'proc-cgroup'));
    assert.deepEqual(l, { bytes: 512 * MiB, file: path.join(root, 'sys/kubepods.slice/pod1/memory.max') });
  } finally {
    await rmrf(root);
  }
});

test('cgroup v2 in a container (cgroup namespace): the path is "/", the mount root holds the limit', async () => {
  const root = tree({ 'proc-cgroup': '0::/\n', 'sys/memory.max': String(256 * MiB) });
  try {
    assert.equal(cgroupMemoryLimit(path.join(root, 'sys'), path.join(root, 'proc-cgroup'))?.bytes, 256 * MiB);
  } finally {
    await rmrf(root);
  }
});

test('cgroup v1: memory.limit_in_bytes of the memory controller; 2^63 rounded to a page is no limit', async () => {
  const root = tree({
    'proc-cgroup': '9:name=systemd:/\n4:memory:/job/step\n1:cpu,cpuacct:/job\n0::/\n',
    'sys/memory/memory.limit_in_bytes': '9223372036854771712\n',
    'sys/memory/job/memory.limit_in_bytes': '9223372036854771712\n',
    'sys/memory/job/step/memory.limit_in_bytes': String(300 * MiB),
  });
  try {
    const l = cgroupMemoryLimit(path.join(root, 'sys'), path.join(root, 'proc-cgroup'));
    assert.deepEqual(l, { bytes: 300 * MiB, file: path.join(root, 'sys/memory/job/step/memory.limit_in_bytes') });
  } finally {
    await rmrf(root);
  }
  const none = tree({ 'proc-cgroup': '4:memory:/a\n', 'sys/memory/memory.limit_in_bytes': '9223372036854771712\n' });
  try {
    assert.equal(cgroupMemoryLimit(path.join(none, 'sys'), path.join(none, 'proc-cgroup')), undefined, 'the path /a does not exist under the mount; its root says no limit');
  } finally {
    await rmrf(none);
  }
});

test('no cgroup file at all: no limit', () => {
  assert.equal(cgroupMemoryLimit('/nonexistent-sys', '/nonexistent-proc-cgroup'), undefined);
});

test('the plan: defaults without a limit or from 1 GiB; under it the windows share what the reserve leaves', () => {
  const free = planMemory(undefined);
  assert.equal(free.windowBytes, 32 * MiB);
  assert.equal(free.compressors, 4);
  assert.equal(free.roomyHeap, true);
  assert.deepEqual({ ...planMemory(2048 * MiB), limitBytes: undefined, source: 'none' }, free);
  const p = planMemory(256 * MiB);
  assert.equal(p.roomyHeap, false);
  // room = 256 - 160 = 96 MiB
  assert.equal(RESERVE, 160 * MiB);
  assert.deepEqual(
    { w: p.windowBytes / MiB, lanes: p.lanes, c: p.compressors, range: p.rangeBytes / MiB, packs: p.packsAtOnce, batch: p.batchBytes / MiB },
    { w: 12, lanes: 1, c: 2, range: 6, packs: 1, batch: 16 },
  );
  // every window grows with the limit, up to the defaults
  let prev = planMemory(MIN_LIMIT);
  for (let l = MIN_LIMIT; l < 1024 * MiB; l += 32 * MiB) {
    const q = planMemory(l);
    for (const k of ['windowBytes', 'lanes', 'compressors', 'rangeBytes', 'packsAtOnce', 'batchBytes'] as const) {
      assert.ok(q[k] >= prev[k] && q[k] <= free[k], `${k} at ${l / MiB} MiB`);
    }
    prev = q;
  }
});

test('--max-memory: too small or not a size is a usage error (exit 2) with one line', async () => {
  const small = await mb(['check', '--max-memory', '100MiB', '--repo', '/nonexistent']);
  assert.equal(small.code, 2);
  assert.equal(small.stderr, 'meshback: --max-memory 100MiB is below the 192 MiB meshback needs to run: give at least 192 MiB\n');
  const bad = await mb(['check', '--repo', '/nonexistent'], { env: { MESHBACK_MAX_MEMORY: 'lots' } });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^meshback: MESHBACK_MAX_MEMORY .*lots.*\n$/);
});
