/**
 * policy/advisor: the schedule a policy should have, from its measured history (docs/advisor.md,
 * "The model"). For each candidate interval (every 5m ... 24h, and the policy's own):
 *
 * - worst-case data loss = interval + the backup's duration at the busiest hour (a change made
 *   just after a backup started is in the next one, which ends interval + duration later); the
 *   RPO is met when that is at most (1 - margin) * rpo;
 * - the backup window at the busiest hour = fixed seconds + (bytes read per hour at the busiest
 *   hour of day * interval) / read throughput (both fitted on the measured durations);
 * - bytes stored per day = runs per day * fixed bytes per run (metadata a run writes even when
 *   nothing changed, fitted) + bytes added per day * stored per byte. Bytes added per day is
 *   taken as the measured rate * 24 h whatever the interval: an upper bound for longer
 *   intervals (a file rewritten twice between two backups is stored once);
 * - cost = bytes stored per day + runs per day * runOverheadBytes (what one run costs beyond its
 *   bytes, in byte-equivalents; default 0).
 *
 * The recommendation is the cheapest candidate that meets the RPO (ties: the longer interval),
 * or none, with a reason: no RPO target, no measured history (fewer than 3 backups measured
 * against a previous one, or less than an hour of them), or no candidate meets it.
 */
import type { HistoryRates, PolicyHistory } from './history.ts';
import type { Policy } from './load.ts';

export const CANDIDATES: readonly { text: string; seconds: number }[] = [
  ['5m', 300],
  ['10m', 600],
  ['15m', 900],
  ['30m', 1800],
  ['1h', 3600],
  ['2h', 7200],
  ['4h', 14_400],
  ['6h', 21_600],
  ['12h', 43_200],
  ['24h', 86_400],
].map(([t, s]) => ({ text: `every ${t as string}`, seconds: s as number }));

export interface ScheduleEstimate {
  schedule: string;
  intervalSeconds: number;
  /** the policy's current schedule */
  current: boolean;
  runsPerDay: number;
  /** interval + backup window at the busiest hour */
  worstLossSeconds: number;
  /** undefined: the policy has no RPO */
  rpoMet?: boolean;
  /** predicted duration of a backup at the busiest hour of day */
  windowSeconds: number;
  storedBytesPerDay: number;
  storedBytesPerMonth: number;
  cost: number;
}

export interface Advice {
  policy: string;
  currentSchedule?: string;
  rpoSeconds?: number;
  /** measured backups (non-thinned) and hours they cover, over all series */
  backups: number;
  hours: number;
  bytesAddedPerHour: number;
  bytesStoredPerHour: number;
  compressibility?: number;
  busiestHourUtc?: number;
  candidates: ScheduleEstimate[];
  /** undefined with `reason` */
  recommended?: string;
  reason: string;
}

export interface AdviseOptions {
  /** RPO margin: worst-case loss must be <= (1 - margin) * rpo (default 0.1) */
  margin?: number;
  /** byte-equivalent cost of one run beyond what it stores (default 0) */
  runOverheadBytes?: number;
  /** measured backups needed (default 3) */
  minBackups?: number;
  /** hours they must cover (default 1: runs seconds apart say nothing of a rate per hour) */
  minHours?: number;
}

/** The rates of all series summed (a policy's series run in the same schedule). */
function combined(h: PolicyHistory): HistoryRates | undefined {
  const rs = h.series.map((s) => s.rates).filter((r) => r.backups > 0);
  if (rs.length === 0) return undefined;
  const sum = (f: (r: HistoryRates) => number): number => rs.reduce((s, r) => s + f(r), 0);
  const prof = Array.from({ length: 24 }, (_, i) => sum((r) => r.hourProfile[i]!));
  const rprof = Array.from({ length: 24 }, (_, i) => sum((r) => r.readHourProfile[i]!));
  const added = sum((r) => r.bytesAddedPerHour);
  const stored = sum((r) => r.bytesStoredPerHour);
  const slowest = rs.reduce((a, b) => ((a.readBytesPerSecond ?? Infinity) <= (b.readBytesPerSecond ?? Infinity) ? a : b));
  return {
    backups: Math.min(...rs.map((r) => r.backups)),
    hours: Math.max(...rs.map((r) => r.hours)),
    bytesAddedPerHour: added,
    bytesStoredPerHour: stored,
    filesReadPerHour: sum((r) => r.filesReadPerHour),
    ...(added > 0 ? { compressibility: stored / added } : {}),
    storedFixedBytes: sum((r) => r.storedFixedBytes),
    storedPerByte: added > 0 ? sum((r) => r.storedPerByte * r.bytesAddedPerHour) / added : Math.max(...rs.map((r) => r.storedPerByte)),
    durationFixedSeconds: Math.max(...rs.map((r) => r.durationFixedSeconds)),
    ...(slowest.readBytesPerSecond !== undefined ? { readBytesPerSecond: slowest.readBytesPerSecond } : {}),
    durationMedianSeconds: Math.max(...rs.map((r) => r.durationMedianSeconds)),
    durationMaxSeconds: Math.max(...rs.map((r) => r.durationMaxSeconds)),
    intervalMedianSeconds: Math.max(...rs.map((r) => r.intervalMedianSeconds)),
    hourProfile: prof,
    readHourProfile: rprof,
  };
}

/** The predictions of one interval from measured rates. */
export function estimate(r: HistoryRates, intervalSeconds: number, rpoSeconds: number | undefined, o: AdviseOptions = {}): Omit<ScheduleEstimate, 'schedule' | 'current'> {
  const margin = o.margin ?? 0.1;
  const busiestRead = Math.max(...r.readHourProfile, 0);
  const window =
    r.readBytesPerSecond !== undefined
      ? r.durationFixedSeconds + (busiestRead * intervalSeconds) / 3600 / r.readBytesPerSecond
      : // durations do not grow with the data read: the largest measured
        r.durationMaxSeconds;
  const runsPerDay = 86_400 / intervalSeconds;
  const storedBytesPerDay = runsPerDay * r.storedFixedBytes + r.bytesAddedPerHour * 24 * r.storedPerByte;
  const worstLossSeconds = intervalSeconds + window;
  return {
    intervalSeconds,
    runsPerDay,
    worstLossSeconds,
    ...(rpoSeconds !== undefined ? { rpoMet: worstLossSeconds <= (1 - margin) * rpoSeconds } : {}),
    windowSeconds: window,
    storedBytesPerDay,
    storedBytesPerMonth: storedBytesPerDay * 30,
    cost: storedBytesPerDay + runsPerDay * (o.runOverheadBytes ?? 0),
  };
}

/** The interval of a policy's schedule (an `every` one's; a cron one's: the median measured interval). */
function currentInterval(policy: Policy, r: HistoryRates | undefined): number | undefined {
  const s = policy.schedule;
  if (s === undefined) return undefined;
  if (s.kind === 'every') return s.everyMs / 1000;
  return r !== undefined && r.intervalMedianSeconds > 0 ? r.intervalMedianSeconds : undefined;
}

/** Advice for `policy` from its history. */
export function advise(policy: Pick<Policy, 'name' | 'schedule' | 'rpoMs'>, history: PolicyHistory, o: AdviseOptions = {}): Advice {
  const r = combined(history);
  const rpoSeconds = policy.rpoMs !== undefined ? policy.rpoMs / 1000 : undefined;
  const base: Advice = {
    policy: policy.name,
    ...(policy.schedule !== undefined ? { currentSchedule: policy.schedule.text } : {}),
    ...(rpoSeconds !== undefined ? { rpoSeconds } : {}),
    backups: r?.backups ?? 0,
    hours: r?.hours ?? 0,
    bytesAddedPerHour: r?.bytesAddedPerHour ?? 0,
    bytesStoredPerHour: r?.bytesStoredPerHour ?? 0,
    candidates: [],
    reason: '',
  };
  if (r === undefined || r.backups < (o.minBackups ?? 3) || r.hours < (o.minHours ?? 1))
    return { ...base, reason: `no measured history: ${r?.backups ?? 0} backup(s) of policy ${policy.name} with a previous one to measure against, over ${(r?.hours ?? 0).toFixed(2)} h (${o.minBackups ?? 3} over ${o.minHours ?? 1} h needed): let it run on its schedule first` };
  if (r.compressibility !== undefined) base.compressibility = r.compressibility;
  const busiest = r.hourProfile.indexOf(Math.max(...r.hourProfile));
  if (busiest >= 0) base.busiestHourUtc = busiest;
  const cur = currentInterval(policy as Policy, r);
  const list = CANDIDATES.map((c) => ({ ...c, current: cur !== undefined && Math.abs(c.seconds - cur) < 1 }));
  if (cur !== undefined && !list.some((c) => c.current)) list.push({ text: policy.schedule!.text, seconds: cur, current: true });
  list.sort((a, b) => a.seconds - b.seconds);
  base.candidates = list.map((c) => ({ schedule: c.current ? policy.schedule!.text : c.text, current: c.current, ...estimate(r, c.seconds, rpoSeconds, o) }));
  if (rpoSeconds === undefined) return { ...base, reason: `policy ${policy.name} has no rpo: give it one (e.g. rpo: 1h) for a recommendation` };
  const ok = base.candidates.filter((c) => c.rpoMet === true);
  if (ok.length === 0) return { ...base, reason: `no schedule meets the RPO of ${rpoSeconds} s with a ${Math.round((o.margin ?? 0.1) * 100)}% margin: the backup itself takes ${Math.round(base.candidates[0]!.windowSeconds)} s at the busiest hour` };
  const best = ok.reduce((a, b) => (b.cost < a.cost || (b.cost === a.cost && b.intervalSeconds > a.intervalSeconds) ? b : a));
  return { ...base, recommended: best.schedule, reason: `the cheapest schedule whose worst-case loss (${Math.round(best.worstLossSeconds)} s) is within the RPO (${rpoSeconds} s) less a ${Math.round((o.margin ?? 0.1) * 100)}% margin` };
}
