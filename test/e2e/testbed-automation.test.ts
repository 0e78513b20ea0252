/**
 * End-to-end: issue 14's acceptance in small (meshback testbed automation): `meshback server` on
 * the testbed's orders (PostgreSQL, postgres preset) and sessions (Redis, redis preset) under load,
 * backups every 10 s, restore drills whose checks start the restored database (amcheck) and load
 * the restored Redis, the server SIGKILLed and restarted (each policy caught up exactly once), a
 * `meshback trigger --wait` that returns the snapshot tagged with the deploy, /metrics matching
 * the runs, and SIGTERM ending it with exit 0. The full-size run (every minute for 10 minutes) is
 * `meshback testbed automation` (its record is in docs/automation.md).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { isRoot } from '../../src/host/packages.ts';
import type { AutomationResult } from '../../lab/testbed/index.ts';
import { ensurePrograms } from '../../lab/testbed/deps.ts';
import { mb, rmrf, summary, tmpdir } from '../helpers/cli.ts';

const missing = await ensurePrograms({ volumes: 'dir', install: isRoot() }).then(
  () => undefined,
  (err: unknown) => `testbed programs unavailable: ${err instanceof Error ? err.message : String(err)}`,
);

describe('testbed automation: the server on a live PostgreSQL and Redis under load', { skip: missing }, () => {
  const base = tmpdir('testbed-automation');
  const dir = path.join(base, 'bed');
  after(async () => {
    await mb(['testbed', 'down', '--dir', dir]);
    await rmrf(base);
  });

  test('scheduled backups with presets, drills, a SIGKILL and restart, a trigger, /metrics', { timeout: 6 * 60_000 }, async (t) => {
    await fsp.chmod(base, 0o755);
    const up = await mb(['testbed', 'up', '--dir', dir, '--services', '2', '--quiet']);
    assert.equal(up.code, 0, up.stderr);
    const r = await mb(['testbed', 'automation', '--dir', dir, '--every', '10s', '--drill-every', '25s', '--duration', '70s', '--kill-after', '30s', '--down', '25s', '--rate', '30', '--json'], { timeoutMs: 5 * 60_000 });
    const res = summary(r.stdout) as unknown as AutomationResult;
    for (const p of res.policies) t.diagnostic(`${p.policy}: ${p.backupsOk}/${p.backups} backups ok, ${p.catchUps} catch-up, ${p.drillsOk}/${p.drills} drills ok, max gap ${p.maxGapSeconds.toFixed(1)} s (RPO ${p.rpoTargetSeconds} s)`);
    for (const [k, ok] of Object.entries(res.checks)) t.diagnostic(`${ok ? 'ok' : 'FAILED'}: ${k}`);
    for (const x of res.runs.filter((x) => x.status === 'failed')) t.diagnostic(`failed: ${x.policy} ${x.kind}: ${x.error?.code}: ${x.error?.message}`);
    assert.equal(r.code, 0, r.stderr.slice(-2000));
    assert.ok(Object.values(res.checks).every(Boolean), JSON.stringify(res.checks));
    assert.deepEqual(res.catchUp, { orders: 1, sessions: 1 });
    assert.match(res.trigger.snapshotId ?? '', /^[0-9a-f]{64}$/);
    assert.ok(res.metrics['meshback_drill_last_success{policy="orders"}'] === 1);
  });
});
