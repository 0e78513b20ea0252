/**
 * src/server/metrics.ts: run records in, Prometheus text out. Finished backup runs set the
 * policy's last-run values and the newest snapshot (its backup's start); failed ones count and
 * leave the last success alone; a record seen twice counts once; the snapshot age and the RPO
 * verdict are computed at scrape time (a clock the test moves); drills set the drill values;
 * setPolicies drops a removed policy's series; the newest snapshots are read from a real
 * repository at start (loadNewestSnapshots); the output parses as the text format.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { backup, initRepository, openRepository } from '../../src/index.ts';
import type { DrillReport, Policy, RunReport } from '../../src/policy/index.ts';
import { Metrics, loadNewestSnapshots, writeTextfile } from '../../src/server/metrics.ts';
import type { ObservedRun } from '../../src/server/metrics.ts';
import { parseExposition } from '../helpers/prom.ts';

process.env['MESHBACK_TEST_SCRYPT_N'] = '1024';
const T0 = Date.parse('2026-12-06T10:00:00.000Z');
const iso = (ms: number): string => new Date(ms).toISOString();

const policy = (name: string, rpoMs?: number): Policy => ({ name, sources: ['/srv'], prune: false, tags: [`policy=${name}`], exclude: [], hooks: { pre: [], post: [], onError: [] }, ...(rpoMs !== undefined ? { rpoMs } : {}) });

function runReport(p: string, start: number, seconds: number, ok: boolean, backup?: { files: number; bytesAdded: number; errors: number }): RunReport {
  return {
    policy: p,
    repository: '/repo',
    dryRun: false,
    ok,
    started: iso(start),
    finished: iso(start + seconds * 1000),
    durationSeconds: seconds,
    phases: [{ phase: 'backup', outcome: ok ? 'ok' : 'failed', started: iso(start + 1000), finished: iso(start + seconds * 1000) }],
    hooks: [],
    ...(backup !== undefined
      ? {
          snapshotId: 'ab'.repeat(32),
          backup: { files: backup.files, dirs: 1, totalBytes: 1, bytesRead: 1, bytesAdded: backup.bytesAdded, bytesStored: 1, errors: Array.from({ length: backup.errors }, (_, i) => ({ path: `/f${i}`, message: 'EACCES' })), changedDuringRead: [] },
        }
      : {}),
  };
}

const backupRecord = (id: string, p: string, start: number, seconds: number, ok: boolean, b?: { files: number; bytesAdded: number; errors: number }): ObservedRun => ({
  id,
  kind: 'backup',
  policy: p,
  status: ok ? 'succeeded' : 'failed',
  startedAt: iso(start),
  finishedAt: iso(start + seconds * 1000),
  ...(ok && b !== undefined ? { snapshotId: 'ab'.repeat(32) } : {}),
  report: runReport(p, start, seconds, ok, b),
});

test('backup runs: last success, duration, bytes, files, errors, runs by outcome; age and RPO at scrape time', async () => {
  let now = T0;
  const m = new Metrics(undefined, { now: () => now, processMetrics: false });
  m.setPolicies([policy('orders', 3600_000), policy('sessions', 600_000), policy('logs')]);
  // queued and running records change nothing
  m.observe({ id: 'r1', kind: 'backup', policy: 'orders', status: 'queued' });
  m.observe({ id: 'r1', kind: 'backup', policy: 'orders', status: 'running', startedAt: iso(T0) });
  m.observe(backupRecord('r1', 'orders', T0, 42, true, { files: 120, bytesAdded: 5_000_000, errors: 0 }));
  m.observe(backupRecord('r1', 'orders', T0, 42, true, { files: 120, bytesAdded: 5_000_000, errors: 0 })); // seen again: not counted again
  now = T0 + 10 * 60_000;
  m.observe(backupRecord('r2', 'orders', now, 3, false));
  now = T0 + 30 * 60_000;
  let e = parseExposition(await m.render());
  const o = { policy: 'orders' };
  assert.equal(e.value('meshback_last_success_timestamp_seconds', o), (T0 + 42_000) / 1000);
  assert.equal(e.value('meshback_last_run_success', o), 0);
  assert.equal(e.value('meshback_last_run_timestamp_seconds', o), (T0 + 10 * 60_000 + 3000) / 1000);
  assert.equal(e.value('meshback_last_run_duration_seconds', o), 3);
  assert.equal(e.value('meshback_last_bytes_added', o), 5_000_000, 'a failed run without a backup leaves the last backup figures');
  assert.equal(e.value('meshback_last_files', o), 120);
  assert.equal(e.value('meshback_last_errors', o), 0);
  assert.equal(e.value('meshback_runs_total', { policy: 'orders', kind: 'backup', outcome: 'succeeded' }), 1);
  assert.equal(e.value('meshback_runs_total', { policy: 'orders', kind: 'backup', outcome: 'failed' }), 1);
  // the snapshot is from its backup's start (T0 + 1 s); the age is now minus that
  assert.equal(e.value('meshback_last_snapshot_timestamp_seconds', o), (T0 + 1000) / 1000);
  assert.equal(e.value('meshback_snapshot_age_seconds', o), 30 * 60 - 1);
  assert.equal(e.value('meshback_rpo_target_seconds', o), 3600);
  assert.equal(e.value('meshback_rpo_exceeded', o), 0);
  // sessions has an RPO and no snapshot at all: exceeded; logs has no RPO: no verdict
  assert.equal(e.value('meshback_rpo_exceeded', { policy: 'sessions' }), 1);
  assert.equal(e.value('meshback_snapshot_age_seconds', { policy: 'sessions' }), undefined);
  assert.equal(e.value('meshback_rpo_exceeded', { policy: 'logs' }), undefined);
  assert.equal(e.types.get('meshback_runs_total'), 'counter');
  assert.equal(e.types.get('meshback_snapshot_age_seconds'), 'gauge');

  // time passes past the RPO: exceeded, with no new observation
  now = T0 + 61 * 60_000;
  e = parseExposition(await m.render());
  assert.equal(e.value('meshback_rpo_exceeded', o), 1);
  assert.equal(e.value('meshback_snapshot_age_seconds', o), 61 * 60 - 1);

  // an incomplete backup (items unreadable) fails, and says how many
  m.observe(backupRecord('r3', 'sessions', now, 5, false, { files: 9, bytesAdded: 10, errors: 2 }));
  e = parseExposition(await m.render());
  assert.equal(e.value('meshback_last_errors', { policy: 'sessions' }), 2);
  assert.equal(e.value('meshback_last_success_timestamp_seconds', { policy: 'sessions' }), undefined);
});

test('drills: last result, RTO, time; runs by kind; a removed policy loses its series', async () => {
  const m = new Metrics(undefined, { processMetrics: false, now: () => T0 });
  m.setPolicies([policy('orders'), policy('gone')]);
  const drill = (id: string, p: string, ok: boolean, rto: number, snapshot = true): ObservedRun => {
    const report: DrillReport = { policy: p, repository: '/repo', ok, started: iso(T0), finished: iso(T0 + 9000), rtoSeconds: rto, restoredFiles: 3, restoredBytes: 100, verified: ok, ...(snapshot ? { snapshotId: 'cd'.repeat(32) } : {}) };
    return { id, kind: 'drill', policy: p, status: ok ? 'succeeded' : 'failed', startedAt: iso(T0), finishedAt: iso(T0 + 9000), report };
  };
  m.observe(drill('d1', 'orders', true, 7.5));
  m.observe(drill('d2', 'gone', false, 0, false));
  let e = parseExposition(await m.render());
  assert.equal(e.value('meshback_drill_last_success', { policy: 'orders' }), 1);
  assert.equal(e.value('meshback_drill_rto_seconds', { policy: 'orders' }), 7.5);
  assert.equal(e.value('meshback_drill_last_timestamp_seconds', { policy: 'orders' }), (T0 + 9000) / 1000);
  assert.equal(e.value('meshback_drill_last_success', { policy: 'gone' }), 0);
  assert.equal(e.value('meshback_drill_rto_seconds', { policy: 'gone' }), undefined, 'no snapshot was restored: no RTO');
  assert.equal(e.value('meshback_runs_total', { policy: 'orders', kind: 'drill', outcome: 'succeeded' }), 1);
  // a drill is no backup: the backup values stay empty
  assert.equal(e.value('meshback_last_run_success', { policy: 'orders' }), undefined);
  m.observe(drill('d3', 'orders', false, 2));
  m.setPolicies([policy('orders')]);
  e = parseExposition(await m.render());
  assert.equal(e.value('meshback_drill_last_success', { policy: 'orders' }), 0);
  assert.equal(e.value('meshback_drill_rto_seconds', { policy: 'orders' }), 2);
  assert.equal(e.value('meshback_drill_last_success', { policy: 'gone' }), undefined);
});

test('process metrics by default; one-shot: no counters, no scrape-time values, empty families left out', async () => {
  const full = parseExposition(await new Metrics().render());
  assert.ok(full.types.has('process_cpu_user_seconds_total'), [...full.types.keys()].join(' '));
  assert.ok(full.types.has('nodejs_eventloop_lag_seconds'));
  const m = new Metrics(undefined, { processMetrics: false, oneShot: true });
  m.setPolicies([policy('orders', 3600_000)]);
  m.observe(backupRecord('x', 'orders', T0, 4, true, { files: 1, bytesAdded: 2, errors: 0 }));
  const text = await m.render();
  const e = parseExposition(text);
  assert.equal(e.types.has('meshback_runs_total'), false);
  assert.equal(e.types.has('meshback_snapshot_age_seconds'), false);
  assert.equal(e.types.has('meshback_rpo_exceeded'), false);
  assert.equal(e.types.has('meshback_drill_last_success'), false, 'a family without a sample is not written');
  assert.equal(e.value('meshback_rpo_target_seconds', { policy: 'orders' }), 3600);
  assert.equal(e.value('meshback_last_snapshot_timestamp_seconds', { policy: 'orders' }), (T0 + 1000) / 1000);
  assert.ok(!text.includes('process_'));
});

test('loadNewestSnapshots: the newest snapshot of each policy from a real repository; an unreadable one is a line, not a failure', async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'meshback-metrics-'));
  try {
    await fsp.mkdir(path.join(dir, 'data'));
    await fsp.writeFile(path.join(dir, 'data/f'), 'x');
    const location = path.join(dir, 'repo');
    await initRepository(location, 'pw');
    const times: string[] = [];
    const { repo, close } = await openRepository(location, 'pw', { lock: 'shared' });
    try {
      for (const tags of [['policy=orders'], ['policy=orders'], ['policy=other']]) times.push((await backup(repo, { paths: [path.join(dir, 'data')], tags })).snapshot.time);
    } finally {
      await close();
    }
    const m = new Metrics(undefined, { processMetrics: false, now: () => Date.parse(times[2]!) + 5000 });
    const policies = [policy('orders', 60_000), policy('none', 60_000), policy('elsewhere')];
    m.setPolicies(policies);
    const problems = await loadNewestSnapshots(m, policies, (p) => {
      const loc = p.name === 'elsewhere' ? path.join(dir, 'no-repo') : location;
      return { repository: loc, open: () => openRepository(loc, 'pw', { lock: 'none' }) };
    });
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^the snapshots of .*no-repo could not be read for the metrics \(.*\): the snapshot age of elsewhere is known after their next run$/);
    const e = parseExposition(await m.render());
    assert.equal(e.value('meshback_last_snapshot_timestamp_seconds', { policy: 'orders' }), Date.parse(times[1]!) / 1000);
    assert.equal(e.value('meshback_snapshot_age_seconds', { policy: 'orders' }), (Date.parse(times[2]!) + 5000 - Date.parse(times[1]!)) / 1000);
    assert.equal(e.value('meshback_rpo_exceeded', { policy: 'orders' }), 0);
    assert.equal(e.value('meshback_rpo_exceeded', { policy: 'none' }), 1);
    // a textfile: written whole under its name, no temporary file left
    const file = path.join(dir, 'meshback.prom');
    await writeTextfile(file, await m.render());
    assert.equal(parseExposition(await fsp.readFile(file, 'utf8')).value('meshback_rpo_exceeded', { policy: 'none' }), 1);
    assert.deepEqual((await fsp.readdir(dir)).sort(), ['data', 'meshback.prom', 'repo']);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});
