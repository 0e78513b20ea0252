/**
 * policy/history: the measured history of a policy, from its snapshot manifests (tag
 * policy=NAME): one series per host and paths group (what forget groups by), oldest first, one
 * point per backup with what changed since the previous one (docs/advisor.md, "History").
 *
 * Every figure comes from the manifest's `summary` (src/snapshot/manifest.ts): bytes added (raw
 * bytes of new blobs), bytes stored (compressed and encrypted bytes written), files read (new or
 * changed files), the file count, the duration. The interval of a point is the time since its
 * parent snapshot when the parent is in the series, else since the previous point of the series;
 * a point whose parent is not the previous point (retention thinned the series in between, or it
 * had no parent) is `thinned`: its per-backup figures hold but its rates per hour do not, and
 * baselines leave it out.
 */
import type { SnapshotSummary } from '../snapshot/manifest.ts';

/** What history reads of a snapshot manifest (a SnapshotRef fits; so does a generated one). */
export interface HistoryInput {
  id: string;
  snapshot: {
    time: string;
    endTime?: string;
    host: string;
    paths: readonly string[];
    tags: readonly string[];
    parent?: string;
    summary: Pick<SnapshotSummary, 'files' | 'totalBytes' | 'bytesRead' | 'filesRead' | 'bytesAdded' | 'bytesStored' | 'duration'>;
  };
}

export interface HistoryPoint {
  id: string;
  time: string;
  /** ms since the epoch */
  at: number;
  /** seconds since the previous backup (its parent when known); undefined for the first */
  intervalSeconds?: number;
  /** the parent is not the previous point (or there is none): rates per hour do not hold */
  thinned: boolean;
  durationSeconds: number;
  files: number;
  /** files minus the previous point's (a drop: deletions); undefined for the first */
  filesDelta?: number;
  totalBytes: number;
  bytesRead: number;
  filesRead: number;
  bytesAdded: number;
  bytesStored: number;
  /** bytesStored / bytesAdded: near 1 or above, the new data does not compress (encrypted-looking); undefined when nothing was added */
  compressibility?: number;
  /** per hour of interval (undefined for the first point) */
  bytesAddedPerHour?: number;
  bytesStoredPerHour?: number;
  filesReadPerHour?: number;
}

export interface HistorySeries {
  host: string;
  paths: string[];
  points: HistoryPoint[];
}

/** Rates of a series over its non-thinned points. */
export interface HistoryRates {
  /** backups measured (non-thinned points) */
  backups: number;
  /** hours they cover */
  hours: number;
  bytesAddedPerHour: number;
  bytesStoredPerHour: number;
  filesReadPerHour: number;
  /** sum of bytes stored / sum of bytes added (undefined: nothing added) */
  compressibility?: number;
  /** bytes stored by a run that adds nothing (metadata: trees, the manifest, index) and per byte added: bytesStored ~ fixed + perByte * bytesAdded */
  storedFixedBytes: number;
  storedPerByte: number;
  /** duration ~ fixedSeconds + bytesRead / readBytesPerSecond */
  durationFixedSeconds: number;
  readBytesPerSecond?: number;
  /** the median and the largest duration measured */
  durationMedianSeconds: number;
  durationMaxSeconds: number;
  /** the median interval measured (seconds) */
  intervalMedianSeconds: number;
  /** mean bytes added per hour by hour of day (UTC, 0-23), over the intervals ending in that hour; 0 where nothing was measured */
  hourProfile: number[];
  /** mean bytes read per hour by hour of day (UTC) */
  readHourProfile: number[];
}

export interface PolicyHistory {
  policy: string;
  series: (HistorySeries & { rates: HistoryRates })[];
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** least squares y ~ a + b x, with a, b >= 0; falls back to a = 0, b = sum y / sum x */
function fit(xs: readonly number[], ys: readonly number[]): { a: number; b: number } {
  const n = xs.length;
  const sx = xs.reduce((s, x) => s + x, 0);
  const sy = ys.reduce((s, y) => s + y, 0);
  if (n === 0) return { a: 0, b: 0 };
  const mx = sx / n;
  const my = sy / n;
  let sxx = 0;
  let sxy = 0;
  for (let i = 0; i < n; i++) {
    sxx += (xs[i]! - mx) ** 2;
    sxy += (xs[i]! - mx) * (ys[i]! - my);
  }
  if (n < 3 || sxx === 0) return sx > 0 ? { a: 0, b: sy / sx } : { a: my, b: 0 };
  let b = sxy / sxx;
  let a = my - b * mx;
  if (b < 0) return { a: my, b: 0 };
  if (a < 0) {
    a = 0;
    b = sy / sx;
  }
  return { a, b };
}

/** The points of one series (inputs of one host and paths group), oldest first. */
export function seriesPoints(inputs: readonly HistoryInput[]): HistoryPoint[] {
  const sorted = [...inputs].sort((a, b) => Date.parse(a.snapshot.time) - Date.parse(b.snapshot.time));
  const byId = new Map(sorted.map((s) => [s.id, s]));
  const out: HistoryPoint[] = [];
  let prev: HistoryInput | undefined;
  for (const s of sorted) {
    const m = s.snapshot;
    const at = Date.parse(m.time);
    const parent = m.parent !== undefined ? byId.get(m.parent) : undefined;
    const since = parent ?? prev;
    const intervalSeconds = since !== undefined ? Math.max(1, (at - Date.parse(since.snapshot.time)) / 1000) : undefined;
    const thinned = prev === undefined || m.parent !== prev.id;
    const x = m.summary;
    const hours = intervalSeconds !== undefined ? intervalSeconds / 3600 : undefined;
    out.push({
      id: s.id,
      time: m.time,
      at,
      ...(intervalSeconds !== undefined ? { intervalSeconds } : {}),
      thinned,
      durationSeconds: x.duration,
      files: x.files,
      ...(prev !== undefined ? { filesDelta: x.files - prev.snapshot.summary.files } : {}),
      totalBytes: x.totalBytes,
      bytesRead: x.bytesRead,
      filesRead: x.filesRead,
      bytesAdded: x.bytesAdded,
      bytesStored: x.bytesStored,
      ...(x.bytesAdded > 0 ? { compressibility: x.bytesStored / x.bytesAdded } : {}),
      ...(hours !== undefined ? { bytesAddedPerHour: x.bytesAdded / hours, bytesStoredPerHour: x.bytesStored / hours, filesReadPerHour: x.filesRead / hours } : {}),
    });
    prev = s;
  }
  return out;
}

/** The rates of a series' points (non-thinned ones; the first point counts for its fixed costs only). */
export function ratesOf(points: readonly HistoryPoint[]): HistoryRates {
  const measured = points.filter((p) => !p.thinned && p.intervalSeconds !== undefined);
  const hours = measured.reduce((s, p) => s + p.intervalSeconds! / 3600, 0);
  const sum = (f: (p: HistoryPoint) => number): number => measured.reduce((s, p) => s + f(p), 0);
  const added = sum((p) => p.bytesAdded);
  const stored = sum((p) => p.bytesStored);
  const all = points.length > 1 ? points.slice(1) : points;
  const st = fit(
    all.map((p) => p.bytesAdded),
    all.map((p) => p.bytesStored),
  );
  const du = fit(
    all.map((p) => p.bytesRead),
    all.map((p) => p.durationSeconds),
  );
  const prof = new Array<number>(24).fill(0);
  const rprof = new Array<number>(24).fill(0);
  const n = new Array<number>(24).fill(0);
  for (const p of measured) {
    const h = new Date(p.at).getUTCHours();
    prof[h]! += p.bytesAddedPerHour!;
    rprof[h]! += p.bytesRead / (p.intervalSeconds! / 3600);
    n[h]!++;
  }
  const durations = all.map((p) => p.durationSeconds);
  return {
    backups: measured.length,
    hours,
    bytesAddedPerHour: hours > 0 ? added / hours : 0,
    bytesStoredPerHour: hours > 0 ? stored / hours : 0,
    filesReadPerHour: hours > 0 ? sum((p) => p.filesRead) / hours : 0,
    ...(added > 0 ? { compressibility: stored / added } : {}),
    storedFixedBytes: st.a,
    storedPerByte: st.b,
    durationFixedSeconds: du.a,
    ...(du.b > 0 ? { readBytesPerSecond: 1 / du.b } : {}),
    durationMedianSeconds: median(durations),
    durationMaxSeconds: durations.length > 0 ? Math.max(...durations) : 0,
    intervalMedianSeconds: median(measured.map((p) => p.intervalSeconds!)),
    hourProfile: prof.map((x, i) => (n[i]! > 0 ? x / n[i]! : 0)),
    readHourProfile: rprof.map((x, i) => (n[i]! > 0 ? x / n[i]! : 0)),
  };
}

/** The history of `policy`: its snapshots (tag policy=NAME) of `all`, one series per host and paths group. */
export function historyOf(all: readonly HistoryInput[], policy: string): PolicyHistory {
  const tag = `policy=${policy}`;
  const groups = new Map<string, HistoryInput[]>();
  for (const s of all) {
    if (!s.snapshot.tags.includes(tag)) continue;
    const key = JSON.stringify([s.snapshot.host, [...s.snapshot.paths].sort()]);
    const g = groups.get(key);
    if (g === undefined) groups.set(key, [s]);
    else g.push(s);
  }
  const series = [...groups.entries()].map(([key, inputs]) => {
    const [host, paths] = JSON.parse(key) as [string, string[]];
    const points = seriesPoints(inputs);
    return { host, paths, points, rates: ratesOf(points) };
  });
  return { policy, series };
}
