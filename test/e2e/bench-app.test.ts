/**
 * End-to-end: `meshback bench run` with the application-level scenarios (app-container-crash,
 * app-node-outage) for real: meshback and restic back up a running testbed (nginx sidecars,
 * PostgreSQL, Redis) under load, the fault strikes, the tool restores, and the testbed's verify
 * judges the service. Every cell must come back healthy with no write lost that was acknowledged
 * before the backup started, with RPO and RTO measured; the report gains the application-level
 * table; no testbed process outlives the run. As root: the snapshot strategy (btrfs volumes, the
 * snapshots bind-mounted side by side and backed up in one run, nothing left mounted), and a work
 * directory PostgreSQL cannot reach fails the repeat with a one-line reason.
 *
 * Needs nginx, redis-server and PostgreSQL (.ci/run installs them) and restic: skipped, saying
 * why, when they are missing and cannot be installed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { checkResults } from '../../lab/bench/fault/runner.ts';
import type { BenchResults } from '../../lab/bench/fault/types.ts';
import { isRoot } from '../../src/host/packages.ts';
import { which } from '../../src/host/process.ts';
import { ensurePrograms } from '../../lab/testbed/deps.ts';
import { mb, rmrf, tmpdir } from '../helpers/cli.ts';

const missing = await ensurePrograms({ volumes: 'dir', install: isRoot() }).then(
  () => undefined,
  (err: unknown) => `testbed programs unavailable: ${err instanceof Error ? err.message : String(err)}`,
);
const FAST = ['--env', 'MESHBACK_TEST_SCRYPT_N=1024'];

async function results(out: string): Promise<BenchResults> {
  const json = JSON.parse(await fsp.readFile(path.join(out, 'results.json'), 'utf8')) as unknown;
  assert.equal(checkResults(json), undefined);
  return json as BenchResults;
}

/** Processes whose command line mentions `dir` (a testbed component left running). */
function processesUnder(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(dir)) found.push(`${pid}: ${cmd.trim()}`);
    } catch {
      /* gone */
    }
  }
  return found;
}

test('bench run: app scenarios with meshback and restic; services healthy after restore, nothing lost before the backup, RPO and RTO', { skip: missing, timeout: 240_000 }, async (t) => {
  if ((await which('restic')) === undefined) {
    t.skip('restic is not installed (Debian package restic; .ci/run installs it)');
    return;
  }
  const base = tmpdir('bench-app');
  try {
    // the testbed's PostgreSQL and Redis (their own users when root) must reach the work directory
    await fsp.chmod(base, 0o755);
    const out = path.join(base, 'out');
    const t0 = Date.now();
    const r = await mb(['bench', 'run', '--tools', 'meshback,restic', '--scenarios', 'app-container-crash,app-node-outage', '--strategies', 'incremental', '--size', '16MiB', '--repeat', '1', '--out', out, ...FAST]);
    assert.equal(r.code, 0, `exit ${r.code}\n${r.stderr.slice(-4000)}`);
    t.diagnostic(`bench run took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.match(r.stderr, /app-container-crash meshback\/incremental repeat 1: testbed up \(4 dir volumes, orders -> postgres, sessions -> redis\)/);
    assert.match(r.stderr, /app-node-outage restic\/incremental repeat 1: verify: healthy; \d+ writes acknowledged/);
    const res = await results(out);
    const combos = res.cells.map((c) => `${c.scenario} ${c.tool}/${c.strategy}/${c.volume}`).sort();
    assert.deepEqual(combos, ['app-container-crash meshback/incremental/dir', 'app-container-crash restic/incremental/dir', 'app-node-outage meshback/incremental/dir', 'app-node-outage restic/incremental/dir']);
    for (const c of res.cells) {
      const where = `${c.scenario} ${c.tool}`;
      assert.equal(c.status, 'ok', `${where}: ${JSON.stringify(c.repeats.map((x) => x.reason))}`);
      const x = c.repeats[0]!;
      const app = x.app;
      assert.ok(app !== undefined, where);
      assert.equal(app.healthy, true, `${where}: ${JSON.stringify(app.checks.filter((ch) => !ch.ok))}`);
      assert.equal(app.lostBeforeBackup, 0, where);
      assert.ok(app.writesAcknowledged >= 100, `${where}: ${app.writesAcknowledged} acknowledged`);
      // the load went on after the backup: what it wrote to the restored stores is lost
      assert.ok(app.writesLost > 0 && app.writesLost < app.writesAcknowledged, `${where}: ${app.writesLost} lost`);
      for (const name of ['nginx-config orders', 'traffic orders', 'traffic sessions', 'amcheck orders', 'redis-data redis', 'read-back orders']) {
        assert.ok(app.checks.some((ch) => ch.name === name && ch.ok), `${where}: check ${name}`);
      }
      assert.ok(x.rpo !== undefined && x.rpo.seconds > 0 && x.rpo.seconds < 30 && x.rpo.writesLost === app.writesLost && x.rpo.bytesLost === 0, `${where}: ${JSON.stringify(x.rpo)}`);
      assert.ok(x.rtoSeconds !== undefined && x.rtoSeconds > 0 && x.rtoSeconds < 60, `${where}: RTO ${x.rtoSeconds}`);
      // the time the fault injection took (kills, deleting volumes) is reported and left out of the RTO
      assert.ok(x.notes!.some((n) => /^injecting the fault took \d+\.\d\d s \(killing( and deleting the volumes)?\): not counted in the RTO$/.test(n)), `${where}: ${JSON.stringify(x.notes)}`);
      // the data set came back with the orders volume, file for file
      assert.ok(x.integrity !== undefined && x.integrity.files > 10 && x.integrity.matching === x.integrity.files && x.integrity.extra === 0, `${where}: ${JSON.stringify(x.integrity)}`);
      assert.deepEqual(x.steps.map((s) => s.name), ['backup-1', 'restore'], where);
      assert.ok(x.steps.every((s) => s.exitCode === 0 || s.warning === true), where);
      assert.equal(c.summary.appHealthyRate, 1, where);
      assert.equal(c.summary.appWritesLost?.median, app.writesLost, where);
      assert.ok(c.summary.backupWallSeconds !== undefined && c.summary.restoreWallSeconds !== undefined && c.summary.rtoSeconds !== undefined, where);
      if (c.scenario === 'app-container-crash') {
        // Redis and the sessions service were not hit: their writes all survive
        assert.ok(x.notes!.some((n) => /^load: \d+ requests at 40\/s through the sidecars.*; up to the fault orders \(PostgreSQL\): \d+ acknowledged, [1-9]\d* lost \(RPO [\d.]+ s\); sessions \(Redis\): \d+ acknowledged, 0 lost$/.test(n)), `${where}: ${JSON.stringify(x.notes)}`);
        assert.ok(x.notes!.includes('restored with the tool and handed to the testbed: volumes orders, postgres'), where);
      } else {
        assert.ok(x.notes!.includes('restored with the tool and handed to the testbed: volumes orders, sessions, postgres, redis'), `${where}: ${JSON.stringify(x.notes)}`);
      }
    }
    const md = await fsp.readFile(path.join(out, 'report.md'), 'utf8');
    assert.match(md, /## Application-level recovery/);
    for (const tool of ['meshback', 'restic']) {
      for (const s of ['app-container-crash', 'app-node-outage']) assert.match(md, new RegExp(`^\\| ${tool} \\| incremental \\| ${s} \\| yes \\| \\d+ / \\d+ \\| 0 \\| [\\d.]+ \\| [\\d.]+ \\| none \\|$`, 'm'));
    }
    assert.match(await fsp.readFile(path.join(out, 'report.html'), 'utf8'), /<h2 id="app">Application-level recovery<\/h2>/);
    // every testbed was stopped
    assert.deepEqual(processesUnder(base), []);
  } finally {
    await rmrf(base);
  }
});

test('bench run: app-node-outage with the snapshot strategy: btrfs volumes backed up from bind-mounted snapshots', { skip: missing ?? (isRoot() ? undefined : 'needs root: btrfs volumes are loop-mounted'), timeout: 120_000 }, async (t) => {
  if ((await which('mkfs.btrfs')) === undefined) {
    t.skip('btrfs-progs is not installed (.ci/run installs it)');
    return;
  }
  const base = tmpdir('bench-app-btrfs');
  try {
    await fsp.chmod(base, 0o755);
    const out = path.join(base, 'out');
    const r = await mb(['bench', 'run', '--tools', 'meshback', '--snapshot-tools', 'meshback', '--scenarios', 'app-node-outage', '--strategies', 'snapshot', '--size', '8MiB', '--repeat', '1', '--out', out, ...FAST]);
    assert.equal(r.code, 0, `exit ${r.code}\n${r.stderr.slice(-4000)}`);
    assert.match(r.stderr, /testbed up \(4 btrfs volumes/);
    const [c] = (await results(out)).cells;
    assert.equal(c!.status, 'ok', JSON.stringify(c!.repeats.map((x) => x.reason)));
    assert.equal(`${c!.tool}/${c!.strategy}/${c!.volume}`, 'meshback/snapshot/btrfs');
    const x = c!.repeats[0]!;
    assert.equal(x.app!.healthy, true, JSON.stringify(x.app!.checks.filter((ch) => !ch.ok)));
    assert.equal(x.app!.lostBeforeBackup, 0);
    assert.ok(x.app!.writesLost > 0 && x.rtoSeconds! > 0 && x.rpo!.seconds > 0);
    assert.equal(x.integrity!.matching, x.integrity!.files);
    // the backup read the snapshots (their making and deleting timed apart)
    const b = x.steps.find((s) => s.name === 'backup-1')!;
    assert.ok(b.exitCode === 0 && b.snapshotSeconds !== undefined && b.snapshotSeconds > 0, JSON.stringify(b));
    assert.ok(x.notes!.includes('restored with the tool and handed to the testbed: volumes orders, sessions, postgres, redis'));
    // no bind mount, snapshot or volume left mounted, no testbed process left
    const mounts = await fsp.readFile('/proc/self/mounts', 'utf8');
    assert.ok(!mounts.includes(base), `still mounted:\n${mounts}`);
    assert.deepEqual(processesUnder(base), []);
  } finally {
    await rmrf(base);
  }
});

test('bench run: as root, a work directory the testbed users cannot reach fails the repeat with one line', { skip: missing ?? (isRoot() ? undefined : 'only root runs PostgreSQL and Redis as other users'), timeout: 60_000 }, async () => {
  const base = tmpdir('bench-app-perm'); // mkdtemp: mode 0700
  try {
    const out = path.join(base, 'out');
    const r = await mb(['bench', 'run', '--tools', 'meshback', '--scenarios', 'app-container-crash', '--strategies', 'incremental', '--size', '1MiB', '--repeat', '1', '--out', out, ...FAST]);
    assert.equal(r.code, 0, r.stderr);
    const c = (await results(out)).cells[0]!;
    assert.equal(c.status, 'failed');
    assert.match(c.reason ?? '', new RegExp(`cannot reach .*: ${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not searchable by other users \\(mode 700\\); give --work a directory they can enter`));
    assert.doesNotMatch(c.reason ?? '', /\n/);
  } finally {
    await rmrf(base);
  }
});
