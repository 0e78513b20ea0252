/**
 * lab/bench/advisor-eval: the evaluation of the anomaly detector and the advisor on generated
 * histories (lab/gen/histories.ts; docs/advisor.md, "Evaluation"). Run it to print the tables:
 *
 *   bin/node lab/bench/advisor-eval.ts [SEEDS]      (default 20 seeds per scenario)
 *
 * Detection: per scenario and backup interval, over seeds 1..SEEDS: the runs whose anomaly was
 * alerted within two scheduled backups of its onset (the first backup after the onset is 1), the
 * false alarms (any alert before the onset, or in a history without an anomaly), the backups
 * until detection. Advisor: a steady history measured hourly for a week is advised for an RPO;
 * the recommended schedule and a fixed hourly one are then sampled on the same workload (same
 * seed) for two weeks: the fraction of minutes in which the data lost by a disaster (the time
 * since the start of the newest finished backup) is within the RPO, and the bytes stored.
 */
import { generateHistory } from '../gen/histories.ts';
import type { GeneratedHistory, Scenario } from '../gen/histories.ts';
import { historyOf } from '../../src/policy/history.ts';
import { detectAnomalies } from '../../src/policy/anomaly.ts';
import type { AnomalyAlert } from '../../src/policy/anomaly.ts';
import { advise } from '../../src/policy/advisor.ts';
import { scheduleOf } from '../../src/policy/load.ts';

export interface DetectionRow {
  scenario: Scenario;
  intervalMinutes: number;
  runs: number;
  /** runs with an anomaly (ransomware, mass-delete) */
  anomalous: number;
  /** of those, alerted within two scheduled backups of the onset */
  detected: number;
  /** runs with an alert before the onset or without an anomaly */
  runsWithFalseAlarm: number;
  falseAlerts: number;
  /** backups from the onset to the first alert (1: the first backup after the onset) */
  detectBackups: number[];
  kinds: Record<string, number>;
}

/** alerts of one generated history, and the backups from its onset to the first alert at or after it */
export function judge(g: GeneratedHistory): { alerts: AnomalyAlert[]; falseAlerts: AnomalyAlert[]; detectAfter?: number } {
  const alerts = detectAnomalies(historyOf(g.snapshots, 'gen'));
  if (g.onsetMs === undefined) return { alerts, falseAlerts: alerts };
  const falseAlerts = alerts.filter((a) => Date.parse(a.time) < g.onsetMs!);
  const after = g.snapshots.filter((s) => Date.parse(s.snapshot.time) >= g.onsetMs!).map((s) => s.id);
  const first = alerts.find((a) => Date.parse(a.time) >= g.onsetMs!);
  return { alerts, falseAlerts, ...(first !== undefined ? { detectAfter: after.indexOf(first.snapshot) + 1 } : {}) };
}

export function detection(seeds: number, cases: readonly [Scenario, number][] = DETECTION_CASES): DetectionRow[] {
  return cases.map(([scenario, intervalMinutes]) => {
    const row: DetectionRow = { scenario, intervalMinutes, runs: 0, anomalous: 0, detected: 0, runsWithFalseAlarm: 0, falseAlerts: 0, detectBackups: [], kinds: {} };
    for (let seed = 1; seed <= seeds; seed++) {
      const g = generateHistory({ scenario, seed, intervalMinutes });
      const j = judge(g);
      row.runs++;
      if (g.onsetMs !== undefined) row.anomalous++;
      if (j.detectAfter !== undefined) {
        row.detectBackups.push(j.detectAfter);
        if (j.detectAfter <= 2) row.detected++;
      }
      if (j.falseAlerts.length > 0) row.runsWithFalseAlarm++;
      row.falseAlerts += j.falseAlerts.length;
      for (const a of j.alerts) row.kinds[a.kind] = (row.kinds[a.kind] ?? 0) + 1;
    }
    return row;
  });
}

export const DETECTION_CASES: readonly [Scenario, number][] = [
  ['steady', 60],
  ['deploy', 60],
  ['ransomware', 60],
  ['ransomware', 15],
  ['mass-delete', 60],
  ['mass-delete', 15],
  // outside the Done-when: the same deploy with 15-minute backups (see docs/advisor.md)
  ['steady', 15],
  ['deploy', 15],
];

export interface AdvisorRow {
  rpo: string;
  seeds: number;
  /** recommended schedules and how often */
  recommended: Record<string, number>;
  /** fraction of minutes within the RPO (mean over seeds) */
  advisedMet: number;
  hourlyMet: number;
  /** bytes stored in two weeks (mean over seeds) */
  advisedBytes: number;
  hourlyBytes: number;
}

/** fraction of the minutes of `g` (after its first backup finished) in which the data loss is within rpoSeconds */
export function rpoMetFraction(g: GeneratedHistory, rpoSeconds: number): number {
  const done = g.snapshots.map((s) => ({ start: Date.parse(s.snapshot.time), end: Date.parse(s.snapshot.endTime!) }));
  const t0 = done[0]!.end;
  const t1 = done[done.length - 1]!.end;
  let met = 0;
  let n = 0;
  let i = 0;
  for (let t = t0; t < t1; t += 60_000) {
    while (i + 1 < done.length && done[i + 1]!.end <= t) i++;
    n++;
    if (t - done[i]!.start <= rpoSeconds * 1000) met++;
  }
  return n > 0 ? met / n : 0;
}

export function advisorEval(seeds: number, rpos: readonly string[] = ['30m', '4h']): AdvisorRow[] {
  return rpos.map((rpo) => {
    const row: AdvisorRow = { rpo, seeds, recommended: {}, advisedMet: 0, hourlyMet: 0, advisedBytes: 0, hourlyBytes: 0 };
    const rpoMs = Number(/^(\d+)m$/.exec(rpo)?.[1] ?? 0) * 60_000 || Number(/^(\d+)h$/.exec(rpo)?.[1] ?? 0) * 3_600_000;
    for (let seed = 1; seed <= seeds; seed++) {
      // measured: a week of hourly backups
      const week = generateHistory({ scenario: 'steady', seed, intervalMinutes: 60, days: 7 });
      const a = advise({ name: 'gen', schedule: scheduleOf('every 1h'), rpoMs }, historyOf(week.snapshots, 'gen'));
      const rec = a.recommended ?? 'every 1h';
      row.recommended[rec] = (row.recommended[rec] ?? 0) + 1;
      const minutes = (scheduleOf(rec).kind === 'every' ? (scheduleOf(rec) as { everyMs: number }).everyMs : 3_600_000) / 60_000;
      const advised = generateHistory({ scenario: 'steady', seed, intervalMinutes: minutes });
      const hourly = generateHistory({ scenario: 'steady', seed, intervalMinutes: 60 });
      row.advisedMet += rpoMetFraction(advised, rpoMs / 1000) / seeds;
      row.hourlyMet += rpoMetFraction(hourly, rpoMs / 1000) / seeds;
      // the first backup (the whole volume) is the same for both: left out
      row.advisedBytes += advised.snapshots.slice(1).reduce((s, x) => s + x.snapshot.summary.bytesStored, 0) / seeds;
      row.hourlyBytes += hourly.snapshots.slice(1).reduce((s, x) => s + x.snapshot.summary.bytesStored, 0) / seeds;
    }
    return row;
  });
}

const med = (xs: number[]): number => (xs.length === 0 ? NaN : [...xs].sort((a, b) => a - b)[xs.length >> 1]!);
const GiB = 2 ** 30;

/** The two tables as Markdown. */
export function tables(seeds: number): string {
  const lines = ['| history | backups every | runs | detected within 2 backups | runs with a false alarm (alerts) | backups to detect (median / max) | alert kinds |', '|---|---|---|---|---|---|---|'];
  for (const r of detection(seeds)) {
    const det = r.anomalous > 0 ? `${r.detected}/${r.anomalous}` : '-';
    const ttd = r.detectBackups.length > 0 ? `${med(r.detectBackups)} / ${Math.max(...r.detectBackups)}` : '-';
    const kinds = Object.entries(r.kinds).map(([k, n]) => `${k} ${n}`).join(', ') || 'none';
    lines.push(`| ${r.scenario} | ${r.intervalMinutes}m | ${r.runs} | ${det} | ${r.runsWithFalseAlarm} (${r.falseAlerts}) | ${ttd} | ${kinds} |`);
  }
  lines.push('', '| RPO | advised schedule (seeds) | RPO met, advised | RPO met, hourly cron | bytes stored in 14 days, advised | hourly cron |', '|---|---|---|---|---|---|');
  for (const r of advisorEval(seeds)) {
    lines.push(`| ${r.rpo} | ${Object.entries(r.recommended).map(([k, n]) => `${k} (${n})`).join(', ')} | ${(r.advisedMet * 100).toFixed(1)}% | ${(r.hourlyMet * 100).toFixed(1)}% | ${(r.advisedBytes / GiB).toFixed(2)} GiB | ${(r.hourlyBytes / GiB).toFixed(2)} GiB |`);
  }
  return lines.join('\n');
}

if (import.meta.main) {
  const seeds = Number(process.argv[2] ?? 20);
  process.stdout.write(`${tables(seeds)}\n`);
}
