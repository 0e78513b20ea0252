/**
 * policy/anomaly: ransomware-like change in a policy's history (docs/advisor.md, "Anomalies").
 * Each backup (point) is compared with its series' robust baseline: the median and the MAD
 * (median absolute deviation, scaled by 1.4826 to estimate a standard deviation) of the previous
 * `window` non-thinned backups. Four kinds:
 *
 * - spike: bytes added per hour, or existing files rewritten per hour (files read less the growth
 *   of the file count), above median + k * MAD, above
 *   `minRatio` times the baseline's largest (a diurnal load's busy hours and daily jobs are part
 *   of its normal: the MAD of a mostly quiet week is small; alerted backups are left out of the
 *   baseline, so an attack does not raise the bar for the next one) and above an absolute floor (tiny volumes
 *   do not alarm); a bytes spike that is growth (new files, compressible, under 20% of the files read
 *   rewrites of existing ones: a release) is not an alert;
 * - incompressible: the new data's bytesStored / bytesAdded at or above `incompressible` (0.95)
 *   while the baseline's median was at or below `compressibleBaseline` (0.8), with at least
 *   `minIncompressibleBytes` added (encrypted data does not compress; logs and databases do);
 * - mass-delete: the file count drops by `deletePercent` of the previous count (and at least
 *   `deleteMinFiles`), or by `deleteFiles` whatever the size;
 * - mass-rewrite: files read (less the files the count grew by) reach `rewriteFraction` of the
 *   files, or files read spike (as above) while almost nothing new is stored (renames).
 *
 * A series needs `minBaseline` measured backups before an incompressible or rewrite alert, and
 * they must span `minBaselineHours` too before a spike alert (mass-delete needs only the previous
 * backup). Thresholds are options; their defaults and the
 * reasons are in docs/advisor.md. Pure functions: no I/O.
 */
import type { HistoryInput, HistoryPoint, PolicyHistory } from './history.ts';
import { historyOf, median } from './history.ts';

export type AnomalyKind = 'spike' | 'incompressible' | 'mass-delete' | 'mass-rewrite';

export interface AnomalyAlert {
  policy: string;
  kind: AnomalyKind;
  /** the snapshot the change showed in */
  snapshot: string;
  /** its time (ISO) */
  time: string;
  host: string;
  paths: string[];
  severity: 'warning' | 'critical';
  /** one line for people */
  message: string;
  /** the figures behind it */
  evidence: Record<string, number>;
}

export interface AnomalyOptions {
  /** hours of history in the baseline (default 168: a week, so daily jobs are part of it) */
  windowHours?: number;
  /** backups in the baseline at most (default 2016: a week of 5-minute backups) */
  window?: number;
  /** baseline backups needed before rate alerts (default 8) */
  minBaseline?: number;
  /** hours the baseline must span before rate alerts (default 48: a new policy learns two days) */
  minBaselineHours?: number;
  /** k of median + k * MAD (default 10) */
  k?: number;
  /** a spike is also above this many times the baseline's largest (default 3) */
  minRatio?: number;
  /** bytes added per hour below this never spike (default 64 MiB) */
  minBytesPerHour?: number;
  /** files read per hour below this never spike (default 1000) */
  minFilesPerHour?: number;
  /** stored/added at or above this is incompressible (default 0.95) */
  incompressible?: number;
  /** ... when the baseline's median was at or below this (default 0.8) */
  compressibleBaseline?: number;
  /** bytes added needed for an incompressible alert (default 64 MiB) */
  minIncompressibleBytes?: number;
  /** fraction of the files deleted (default 0.1) */
  deletePercent?: number;
  /** with at least this many files deleted (default 50) */
  deleteMinFiles?: number;
  /** files deleted that alarm whatever the size (default 10000) */
  deleteFiles?: number;
  /** fraction of the files rewritten at once (default 0.2) */
  rewriteFraction?: number;
  /** with at least this many files (default 100) */
  rewriteMinFiles?: number;
}

const D = {
  windowHours: 168,
  window: 2016,
  minBaseline: 8,
  minBaselineHours: 48,
  k: 10,
  minRatio: 3,
  minBytesPerHour: 64 * 2 ** 20,
  minFilesPerHour: 1000,
  incompressible: 0.95,
  compressibleBaseline: 0.8,
  minIncompressibleBytes: 64 * 2 ** 20,
  deletePercent: 0.1,
  deleteMinFiles: 50,
  deleteFiles: 10_000,
  rewriteFraction: 0.2,
  rewriteMinFiles: 100,
} satisfies Required<AnomalyOptions>;

export const ANOMALY_DEFAULTS: Readonly<Required<AnomalyOptions>> = D;

/** median and MAD-based sigma of xs */
function robust(xs: readonly number[]): { med: number; sigma: number; max: number } {
  const med = median(xs);
  return { med, sigma: 1.4826 * median(xs.map((x) => Math.abs(x - med))), max: xs.reduce((a, b) => Math.max(a, b), 0) };
}

const MiB = 2 ** 20;
const fmt = (b: number): string => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(1)} GiB` : `${(b / MiB).toFixed(1)} MiB`);

/** The alerts of every point of `history` (oldest first per series); `o` overrides thresholds. */
export function detectAnomalies(history: PolicyHistory, o: AnomalyOptions = {}): AnomalyAlert[] {
  const t = { ...D, ...o };
  const out: AnomalyAlert[] = [];
  for (const s of history.series) {
    const base: HistoryPoint[] = [];
    let prev: HistoryPoint | undefined;
    for (const p of s.points) {
      const alert = (kind: AnomalyKind, severity: AnomalyAlert['severity'], message: string, evidence: Record<string, number>): void => {
        out.push({ policy: history.policy, kind, snapshot: p.id, time: p.time, host: s.host, paths: s.paths, severity, message, evidence });
      };
      // mass deletion: against the previous backup only
      if (prev !== undefined && p.filesDelta !== undefined && p.filesDelta < 0) {
        const gone = -p.filesDelta;
        const frac = prev.files > 0 ? gone / prev.files : 0;
        if ((frac >= t.deletePercent && gone >= t.deleteMinFiles) || gone >= t.deleteFiles)
          alert('mass-delete', 'critical', `${gone} of ${prev.files} files (${(frac * 100).toFixed(0)}%) deleted since the previous backup`, { filesBefore: prev.files, filesAfter: p.files, deleted: gone, fraction: frac });
      }
      while (base.length > 0 && (base.length > t.window || p.at - base[0]!.at > t.windowHours * 3_600_000)) base.shift();
      const spans = base.length > 0 && (p.at - base[0]!.at) / 3_600_000 >= t.minBaselineHours;
      const before = out.length;
      if (base.length >= t.minBaseline && !p.thinned && p.bytesAddedPerHour !== undefined) {
        // the baseline's statistics only when the backup is above the absolute floor (most are not)
        const NONE = { med: 0, sigma: 0, max: 0 };
        const rb = p.bytesAddedPerHour > t.minBytesPerHour ? robust(base.map((b) => b.bytesAddedPerHour!)) : NONE;
        const limB = Math.max(rb.med + t.k * rb.sigma, rb.max * t.minRatio, t.minBytesPerHour);
        // files read less the files the count grew by: existing files rewritten (a release of new files is growth)
        const rw = (b: HistoryPoint): number => (b.filesRead - Math.max(0, b.filesDelta ?? 0)) / (b.intervalSeconds! / 3600);
        const rf = rw(p) > t.minFilesPerHour ? robust(base.map(rw)) : NONE;
        const limF = Math.max(rf.med + t.k * rf.sigma, rf.max * t.minRatio, t.minFilesPerHour);
        // rates need a baseline that spans minBaselineHours (a day's rhythm); fractions and compressibility do not
        const bytesSpike = spans && p.bytesAddedPerHour > limB;
        const filesSpike = spans && rw(p) > limF;
        const stored = p.compressibility ?? 0;
        // renames: many files read, their data already stored (almost nothing new)
        const renames = filesSpike && p.bytesAdded < 0.05 * Math.max(1, p.bytesRead);
        // growth: the new data came as new files (a release, a deploy), compressible like the baseline, with few existing files rewritten
        const fresh = Math.max(0, p.filesDelta ?? 0);
        const growth = bytesSpike && !filesSpike && fresh > 0 && p.filesRead - fresh < 0.2 * Math.max(1, p.filesRead) && stored < t.incompressible;
        if ((bytesSpike && !growth) || (filesSpike && !renames))
          alert('spike', 'warning', `change rate ${bytesSpike ? `${fmt(p.bytesAddedPerHour)}/h new data` : `${Math.round(rw(p))} existing files/h rewritten`} against a baseline of ${bytesSpike ? `${fmt(rb.med)}/h` : `${Math.round(rf.med)} files/h`}`, {
            bytesAddedPerHour: p.bytesAddedPerHour,
            baselineBytesPerHour: rb.med,
            baselineMaxBytesPerHour: rb.max,
            limitBytesPerHour: limB,
            filesRewrittenPerHour: rw(p),
            baselineFilesPerHour: rf.med,
            baselineMaxFilesPerHour: rf.max,
            limitFilesPerHour: limF,
          });
        const comp = stored >= t.incompressible && p.bytesAdded >= t.minIncompressibleBytes ? base.filter((b) => b.compressibility !== undefined).map((b) => b.compressibility!) : [];
        const baseComp = median(comp);
        if (comp.length >= t.minBaseline && stored >= t.incompressible && baseComp <= t.compressibleBaseline && p.bytesAdded >= t.minIncompressibleBytes)
          alert('incompressible', 'critical', `${fmt(p.bytesAdded)} of new data does not compress (stored/added ${stored.toFixed(2)}, baseline ${baseComp.toFixed(2)}): encrypted-looking`, { bytesAdded: p.bytesAdded, bytesStored: p.bytesStored, compressibility: stored, baselineCompressibility: baseComp });
        const rewritten = p.filesRead - Math.max(0, p.filesDelta ?? 0);
        const frac = prev !== undefined && prev.files > 0 ? rewritten / prev.files : 0;
        const rbase = frac >= t.rewriteFraction ? median(base.map((b) => b.filesRead / Math.max(1, b.files))) : 0;
        if ((frac >= t.rewriteFraction && rewritten >= t.rewriteMinFiles && frac > t.minRatio * rbase) || (renames && p.filesRead >= t.rewriteMinFiles))
          alert('mass-rewrite', 'warning', renames ? `${p.filesRead} files read with ${fmt(p.bytesAdded)} new data: a mass rename?` : `${rewritten} of ${prev?.files ?? 0} files (${(frac * 100).toFixed(0)}%) rewritten at once`, { filesRead: p.filesRead, rewritten, fraction: frac, baselineFraction: rbase, bytesAdded: p.bytesAdded });
      }
      // an alerted backup stays out of the baseline
      if (!p.thinned && p.bytesAddedPerHour !== undefined && out.length === before) base.push(p);
      prev = p;
    }
  }
  return out.sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
}

/** The alerts not acknowledged (`acknowledged`: snapshot ids). */
export function openAlerts(alerts: readonly AnomalyAlert[], acknowledged: ReadonlySet<string>): AnomalyAlert[] {
  return alerts.filter((a) => !acknowledged.has(a.snapshot));
}

/** The time of the oldest open alert: retention keeps its snapshot and every older one (undefined: no hold). */
export function holdBefore(open: readonly AnomalyAlert[]): string | undefined {
  let min: string | undefined;
  for (const a of open) if (min === undefined || Date.parse(a.time) < Date.parse(min)) min = a.time;
  return min;
}

/** What a run or `meshback advise` knows of a policy's anomalies. */
export interface AnomalyCheck {
  /** alerts not acknowledged, oldest first */
  open: AnomalyAlert[];
  /** alerts on `snapshot` (the run's new snapshot) */
  detected: AnomalyAlert[];
  /** the time of the oldest open alert: retention keeps its snapshot and every older one */
  holdBefore?: string;
}

/** Detects the anomalies of `policy` in `all` (a repository's snapshots) and sorts out the open ones and those of `snapshot`. */
export function checkAnomalies(all: readonly HistoryInput[], policy: string, acknowledged: ReadonlySet<string>, snapshot?: string, o: AnomalyOptions = {}): AnomalyCheck {
  const alerts = detectAnomalies(historyOf(all, policy), o);
  const open = openAlerts(alerts, acknowledged);
  const hold = holdBefore(open);
  return { open, detected: snapshot === undefined ? [] : alerts.filter((a) => a.snapshot === snapshot), ...(hold !== undefined ? { holdBefore: hold } : {}) };
}
