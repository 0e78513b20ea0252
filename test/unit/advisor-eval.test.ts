/**
 * The Done-when of issue 16 on generated histories (lab/gen/histories.ts: snapshot summaries,
 * not real repositories, fed through src/policy/history.ts): over 20 seeds, every ransomware run
 * (30% of the files encrypted over an hour; backups hourly and every 15 minutes) and every mass
 * delete is alerted within two scheduled backups of its onset, with no alert before it; the
 * steady diurnal history and the deploy burst (hourly and every 15 minutes) raise no alert. And the
 * advisor's schedule meets a 30-minute RPO where an hourly cron does not, and stores less than
 * hourly for a 4-hour RPO.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { advisorEval, detection } from '../../lab/bench/advisor-eval.ts';

const SEEDS = 20;

test('ransomware and mass-delete runs are detected within two scheduled backups; steady and deploy histories raise no alarm (20 seeds)', () => {
  const rows = detection(SEEDS, [
    ['steady', 60],
    ['deploy', 60],
    ['steady', 15],
    ['deploy', 15],
    ['ransomware', 60],
    ['ransomware', 15],
    ['mass-delete', 60],
    ['mass-delete', 15],
  ]);
  for (const r of rows) {
    const what = `${r.scenario} every ${r.intervalMinutes}m`;
    assert.equal(r.runs, SEEDS, what);
    if (r.scenario === 'ransomware' || r.scenario === 'mass-delete') {
      assert.equal(r.anomalous, SEEDS, what);
      assert.equal(r.detected, SEEDS, `${what}: detected ${r.detected} of ${SEEDS} within two backups (${r.detectBackups.join(',')})`);
      assert.ok(Math.max(...r.detectBackups) <= 2, what);
    }
    assert.equal(r.falseAlerts, 0, `${what}: ${r.falseAlerts} false alarm(s) (${JSON.stringify(r.kinds)})`);
  }
  const ransom = rows.find((r) => r.scenario === 'ransomware' && r.intervalMinutes === 60)!;
  assert.ok((ransom.kinds['incompressible'] ?? 0) >= SEEDS, 'the encrypted data is flagged as incompressible');
  const del = rows.find((r) => r.scenario === 'mass-delete' && r.intervalMinutes === 60)!;
  assert.equal(del.kinds['mass-delete'], SEEDS);
});

test("the advisor's schedule against a fixed hourly cron (10 seeds)", () => {
  const [tight, loose] = advisorEval(10, ['30m', '4h']);
  // a 30-minute RPO: hourly misses it half of the time, the advice (every 15m) always meets it
  assert.ok(tight!.hourlyMet < 0.6, `hourly met ${tight!.hourlyMet}`);
  assert.ok(tight!.advisedMet > 0.999, `advised met ${tight!.advisedMet}`);
  assert.deepEqual(Object.keys(tight!.recommended), ['every 15m']);
  // a 4-hour RPO: both meet it, the advice stores less (fewer runs, less metadata)
  assert.ok(loose!.advisedMet > 0.999 && loose!.hourlyMet > 0.999);
  assert.ok(loose!.advisedBytes < loose!.hourlyBytes, `${loose!.advisedBytes} < ${loose!.hourlyBytes}`);
});
