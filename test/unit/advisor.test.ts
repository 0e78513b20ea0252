/**
 * The history, the advisor and the anomaly detector on small hand-made histories (snapshot
 * summaries, not repositories): the edge cases. Pure functions: no stand-in is involved.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { advise, checkAnomalies, detectAnomalies, historyOf, scheduleOf } from '../../src/policy/index.ts';
import type { HistoryInput } from '../../src/policy/index.ts';

const MiB = 2 ** 20;
const T0 = Date.UTC(2026, 0, 1);

interface Step {
  files?: number;
  added?: number;
  stored?: number;
  read?: number;
  filesRead?: number;
  duration?: number;
  minutes?: number;
  parent?: boolean;
}

/** snapshots every `minutes` (default 60) with the given summaries */
function snaps(steps: Step[], policy = 'p'): HistoryInput[] {
  const out: HistoryInput[] = [];
  let t = T0;
  for (const [i, s] of steps.entries()) {
    const id = i.toString(16).padStart(64, '0');
    out.push({
      id,
      snapshot: {
        time: new Date(t).toISOString(),
        host: 'h',
        paths: ['/d'],
        tags: [`policy=${policy}`],
        ...(i > 0 && s.parent !== false ? { parent: out[i - 1]!.id } : {}),
        summary: { files: s.files ?? 1000, totalBytes: 1e9, bytesRead: s.read ?? (s.added ?? MiB) * 1.5, filesRead: s.filesRead ?? 10, bytesAdded: s.added ?? MiB, bytesStored: s.stored ?? (s.added ?? MiB) * 0.4 + 100_000, duration: s.duration ?? 2 },
      },
    });
    t += (s.minutes ?? 60) * 60_000;
  }
  return out;
}

const steady = (n: number): Step[] => Array.from({ length: n }, (_, i) => ({ added: (10 + (i % 5)) * MiB }));

test('history: intervals from the parent, thinned points, file deltas, compressibility, rates', () => {
  const h = historyOf([...snaps([{ added: 5 * MiB }, { added: 2 * MiB, files: 990 }, { added: 0, minutes: 30, parent: false }, { added: 4 * MiB }]), ...snaps([{}], 'other')], 'p');
  assert.equal(h.series.length, 1);
  const [a, b, c, d] = h.series[0]!.points;
  assert.equal(a!.intervalSeconds, undefined);
  assert.equal(b!.intervalSeconds, 3600);
  assert.equal(b!.filesDelta, -10);
  assert.equal(b!.thinned, false);
  assert.equal(c!.thinned, true, 'no parent: thinned');
  assert.equal(c!.compressibility, undefined, 'nothing added');
  assert.equal(d!.bytesAddedPerHour, 4 * MiB / 0.5);
  assert.ok(Math.abs(b!.compressibility! - (0.4 * 2 * MiB + 100_000) / (2 * MiB)) < 1e-9);
  // rates leave thinned points out: b (1 h, 2 MiB) and d (0.5 h, 4 MiB)
  assert.ok(Math.abs(h.series[0]!.rates.bytesAddedPerHour - (6 * MiB) / 1.5) < 1);
});

test('advise: no history, no rpo, the cheapest schedule that meets the rpo, none that can', () => {
  const pol = { name: 'p', schedule: scheduleOf('every 1h'), rpoMs: 3_600_000 };
  assert.match(advise(pol, historyOf([], 'p')).reason, /no measured history/);
  assert.equal(advise(pol, historyOf([], 'p')).recommended, undefined);
  const h = historyOf(snaps(steady(30)), 'p');
  const noRpo = advise({ name: 'p', schedule: scheduleOf('every 1h') }, h);
  assert.equal(noRpo.recommended, undefined);
  assert.match(noRpo.reason, /no rpo/);
  assert.ok(noRpo.candidates.every((c) => c.rpoMet === undefined));
  // rpo 1h with a 10% margin: 1h itself (60 min + window) does not fit, 30m does
  const a = advise(pol, h);
  assert.equal(a.recommended, 'every 30m');
  assert.equal(a.candidates.find((c) => c.current)!.schedule, 'every 1h');
  assert.equal(a.candidates.find((c) => c.current)!.rpoMet, false);
  // more frequent runs store more (the fixed bytes of each run)
  const c5 = a.candidates.find((c) => c.schedule === 'every 5m')!;
  const c30 = a.candidates.find((c) => c.schedule === 'every 30m')!;
  assert.ok(c5.storedBytesPerDay > c30.storedBytesPerDay);
  assert.ok(Math.abs(c30.storedBytesPerMonth - 30 * c30.storedBytesPerDay) < 1);
  // a backup that takes longer than the rpo: nothing meets it
  const slow = historyOf(snaps(steady(30).map((s) => ({ ...s, duration: 4000 }))), 'p');
  const none = advise(pol, slow);
  assert.equal(none.recommended, undefined);
  assert.match(none.reason, /no schedule meets the RPO/);
  // a schedule that is not a candidate is added as the current one
  const odd = advise({ name: 'p', schedule: scheduleOf('every 45m'), rpoMs: 86_400_000 }, h);
  assert.ok(odd.candidates.some((c) => c.current && c.schedule === 'every 45m'));
  assert.equal(odd.recommended, 'every 12h');
});

test('anomalies: a tiny volume does not alarm; incompressible needs a compressible baseline and enough bytes', () => {
  // tiny: 1 KiB -> 50 KiB, all incompressible: below every floor
  const tiny = snaps([...Array.from({ length: 60 }, () => ({ added: 1024, stored: 500 })), { added: 50 * 1024, stored: 51 * 1024 }]);
  assert.deepEqual(detectAnomalies(historyOf(tiny, 'p')), []);
  // 200 MiB of incompressible data after a compressible baseline: alerted (count baseline, no 48 h needed)
  const enc = snaps([...steady(10), { added: 200 * MiB, stored: 201 * MiB }]);
  assert.deepEqual(detectAnomalies(historyOf(enc, 'p')).map((a) => a.kind), ['incompressible']);
  // the same after an incompressible baseline (media files): not alerted as incompressible
  const media = snaps([...steady(10).map((s) => ({ ...s, stored: s.added! })), { added: 200 * MiB, stored: 201 * MiB }]);
  assert.deepEqual(detectAnomalies(historyOf(media, 'p')).map((a) => a.kind), []);
  // too few backups for a baseline: no incompressible alert
  assert.deepEqual(detectAnomalies(historyOf(snaps([...steady(3), { added: 200 * MiB, stored: 201 * MiB }]), 'p')), []);
});

test('anomalies: a spike needs two days of baseline; a mass delete needs only the previous backup', () => {
  const spike = { added: 2000 * MiB };
  assert.deepEqual(detectAnomalies(historyOf(snaps([...steady(20), spike]), 'p')).map((a) => a.kind), []);
  const alerts = detectAnomalies(historyOf(snaps([...steady(60), spike]), 'p'));
  assert.deepEqual(alerts.map((a) => a.kind), ['spike']);
  assert.equal(alerts[0]!.severity, 'warning');
  assert.ok(alerts[0]!.evidence['bytesAddedPerHour']! > alerts[0]!.evidence['limitBytesPerHour']!);
  // 15% of 1000 files deleted after one backup: alerted; 5%: not; 40 of 100 (below 50 files): not
  assert.deepEqual(detectAnomalies(historyOf(snaps([{}, { files: 850 }]), 'p')).map((a) => a.kind), ['mass-delete']);
  assert.deepEqual(detectAnomalies(historyOf(snaps([{}, { files: 950 }]), 'p')), []);
  assert.deepEqual(detectAnomalies(historyOf(snaps([{ files: 100 }, { files: 60 }]), 'p')), []);
});

test('anomalies: a mass rewrite and a mass rename', () => {
  const rewrite = detectAnomalies(historyOf(snaps([...steady(10), { filesRead: 400, added: 20 * MiB }]), 'p'));
  assert.deepEqual(rewrite.map((a) => a.kind), ['mass-rewrite']);
  assert.equal(rewrite[0]!.evidence['rewritten'], 400);
  // renames: many files read, nothing new stored (needs the spike baseline: 60 hourly backups)
  const renames = detectAnomalies(historyOf(snaps([...steady(60), { filesRead: 5000, added: 0, read: 500 * MiB }]), 'p'));
  assert.ok(renames.some((a) => a.kind === 'mass-rewrite' && /rename/.test(a.message)), JSON.stringify(renames));
  assert.ok(!renames.some((a) => a.kind === 'spike'), 'renames are not a spike');
});

test('checkAnomalies: acknowledged alerts are not open; the hold is the oldest open alert', () => {
  const s = snaps([{}, { files: 800 }, { files: 800 }, { files: 500 }]);
  const none = checkAnomalies(s, 'p', new Set());
  assert.equal(none.open.length, 2);
  assert.equal(none.holdBefore, s[1]!.snapshot.time);
  const one = checkAnomalies(s, 'p', new Set([s[1]!.id]), s[3]!.id);
  assert.equal(one.open.length, 1);
  assert.equal(one.holdBefore, s[3]!.snapshot.time);
  assert.deepEqual(one.detected.map((a) => a.snapshot), [s[3]!.id]);
  assert.equal(checkAnomalies(s, 'p', new Set([s[1]!.id, s[3]!.id])).holdBefore, undefined);
});

test('metrics: meshback_anomaly_open and meshback_anomalies_total from run reports', async () => {
  const { Metrics } = await import('../../src/server/metrics.ts');
  const m = new Metrics(undefined, { processMetrics: false });
  const s = snaps([{}, { files: 500 }]);
  const c = checkAnomalies(s, 'p', new Set(), s[1]!.id);
  const report = { policy: 'p', phases: [], anomalies: c } as unknown as import('../../src/policy/index.ts').RunReport;
  m.observe({ id: 'r1', kind: 'backup', policy: 'p', status: 'succeeded', startedAt: new Date().toISOString(), finishedAt: new Date().toISOString(), report });
  let text = await m.render();
  assert.match(text, /^meshback_anomaly_open\{policy="p"\} 1$/m);
  assert.match(text, /^meshback_anomalies_total\{policy="p",kind="mass-delete"\} 1$/m);
  // acknowledged: the next run finds nothing open; the counter keeps its count
  const closed = { ...report, anomalies: checkAnomalies(s, 'p', new Set([s[1]!.id])) } as typeof report;
  m.observe({ id: 'r2', kind: 'backup', policy: 'p', status: 'succeeded', startedAt: new Date().toISOString(), finishedAt: new Date().toISOString(), report: closed });
  text = await m.render();
  assert.match(text, /^meshback_anomaly_open\{policy="p"\} 0$/m);
  assert.match(text, /^meshback_anomalies_total\{policy="p",kind="mass-delete"\} 1$/m);
  // a one-shot process (a run's textfile) has the gauge and no counter
  const one = new Metrics(undefined, { processMetrics: false, oneShot: true });
  one.observe({ id: 'r3', kind: 'backup', policy: 'p', status: 'succeeded', report });
  const t1 = await one.render();
  assert.match(t1, /^meshback_anomaly_open\{policy="p"\} 1$/m);
  assert.doesNotMatch(t1, /meshback_anomalies_total/);
});
