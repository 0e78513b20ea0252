/**
 * lab/gen/histories: synthetic backup histories for the advisor and the anomaly detector
 * (docs/advisor.md, "Evaluation"). NOT real repositories: what is generated is the list of
 * snapshot manifests' fields that src/policy/history.ts reads (time, parent, tags, summary), fed
 * through historyOf like a repository's snapshots. Seeded: the same seed gives the same history.
 *
 * The volume: 50,000 files, 20 GiB, new data compressing to about 0.35. Its change is a process
 * in minutes, independent of the backup schedule, so one seed sampled every 15 minutes or every
 * hour is the same workload: a diurnal rate (peak 200 MiB/h at 14:00 UTC, 15% of it at night) with
 * per-hour log-normal noise (sigma 0.35), small creations and deletions each hour, a daily log
 * rotation (1% of the files replaced at midnight). Scenarios add to it:
 * - deploy: a release of 1,000-3,000 new files, 2-4 times the peak hour's bytes (compressible
 *   0.45), written in ten minutes; the previous release (as many files) deleted 90 minutes later;
 * - ransomware: 30% of the files encrypted in place over one hour (incompressible), from a
 *   random minute of days 8-13;
 * - mass-delete: 20-60% of the files deleted at once.
 * Each backup reads its changed files whole (bytes read = 1.5 x changed bytes), takes 3 s + bytes
 * read at 150 MiB/s, and stores 2 MiB of metadata plus the new data compressed.
 */
import type { HistoryInput } from '../../src/policy/history.ts';
import { Rng } from './rng.ts';

export type Scenario = 'steady' | 'deploy' | 'ransomware' | 'mass-delete';

export interface GeneratedHistory {
  scenario: Scenario;
  seed: number;
  intervalMinutes: number;
  snapshots: HistoryInput[];
  /** when the anomaly began (ms; ransomware and mass-delete only) */
  onsetMs?: number;
}

export interface HistoryGenOptions {
  scenario: Scenario;
  seed: number;
  /** minutes between backups (default 60) */
  intervalMinutes?: number;
  /** days (default 14) */
  days?: number;
  /** the policy tag's name (default gen) */
  policy?: string;
}

const MiB = 2 ** 20;
export const GEN = { files: 50_000, bytes: 20 * 2 ** 30, peakPerHour: 200 * MiB, night: 0.15, comp: 0.35, fixedStored: 2 * MiB, readRate: 150 * MiB, fixedSeconds: 3 };
const START = Date.UTC(2026, 0, 5);

function gauss(r: Rng): number {
  const u = Math.max(1e-12, r.float());
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r.float());
}

/** per-minute change: bytes (compressible), bytes (incompressible), files changed, files created, files deleted */
interface Minute {
  bytes: number;
  encBytes: number;
  changed: number;
  created: number;
  deleted: number;
  comp: number;
}

/** The change process of a scenario, minute by minute (the schedule does not enter it). */
export function changeProcess(scenario: Scenario, seed: number, days = 14): { minutes: Minute[]; onsetMs?: number } {
  const r = new Rng(seed * 7919 + 17);
  const n = days * 1440;
  const hours = days * 24;
  const noise = Array.from({ length: hours }, () => Math.exp(0.35 * gauss(r)));
  const fileBytes = GEN.bytes / GEN.files;
  const minutes: Minute[] = [];
  for (let m = 0; m < n; m++) {
    const h = Math.floor(m / 60);
    const hod = h % 24;
    const diurnal = GEN.night + (1 - GEN.night) * Math.max(0, Math.cos(((hod - 14) / 24) * 2 * Math.PI)) ** 1.5;
    const bytes = (GEN.peakPerHour * diurnal * noise[h]!) / 60;
    const created = r.chance(0.3) ? 1 : 0;
    const deleted = r.chance(0.28) ? 1 : 0;
    minutes.push({ bytes, encBytes: 0, changed: bytes / MiB, created, deleted, comp: GEN.comp });
  }
  // daily log rotation at midnight: 1% of the files replaced
  for (let d = 1; d < days; d++) {
    const x = minutes[d * 1440]!;
    x.deleted += GEN.files * 0.01;
    x.created += GEN.files * 0.01;
    x.bytes += GEN.files * 0.01 * 4096;
  }
  let onsetMs: number | undefined;
  const at = (): number => (8 + r.int(0, 5)) * 1440 + r.int(0, 1439);
  if (scenario === 'deploy') {
    const m = at();
    const count = r.int(1000, 3000);
    const bytes = GEN.peakPerHour * (2 + 2 * r.float());
    for (let i = 0; i < 10; i++) {
      const x = minutes[m + i]!;
      x.bytes += bytes / 10;
      x.created += count / 10;
      x.comp = 0.45;
    }
    if (m + 90 < n) minutes[m + 90]!.deleted += count;
  } else if (scenario === 'ransomware') {
    const m = at();
    onsetMs = START + m * 60_000;
    const count = GEN.files * 0.3;
    for (let i = 0; i < 60 && m + i < n; i++) {
      const x = minutes[m + i]!;
      x.encBytes += (count / 60) * fileBytes;
      x.changed += count / 60;
    }
  } else if (scenario === 'mass-delete') {
    const m = at();
    onsetMs = START + m * 60_000;
    minutes[m]!.deleted += GEN.files * (0.2 + 0.4 * r.float());
  }
  return { minutes, ...(onsetMs !== undefined ? { onsetMs } : {}) };
}

/** Samples the change process of `o.scenario` with backups every `intervalMinutes`. */
export function generateHistory(o: HistoryGenOptions): GeneratedHistory {
  const interval = o.intervalMinutes ?? 60;
  const days = o.days ?? 14;
  const { minutes, onsetMs } = changeProcess(o.scenario, o.seed, days);
  const jr = new Rng(o.seed * 31 + interval);
  const snapshots: HistoryInput[] = [];
  let files = GEN.files;
  let total = GEN.bytes;
  let prev: string | undefined;
  const fileBytes = GEN.bytes / GEN.files;
  for (let k = 0, m0 = 0; m0 < minutes.length; k++, m0 += interval) {
    const slice = minutes.slice(k === 0 ? 0 : m0 - interval, m0 === 0 ? 1 : m0);
    let bytes = 0;
    let enc = 0;
    let changed = 0;
    let created = 0;
    let deleted = 0;
    let compBytes = 0;
    for (const x of k === 0 ? [] : slice) {
      bytes += x.bytes;
      enc += x.encBytes;
      changed += x.changed;
      created += x.created;
      deleted += x.deleted;
      compBytes += x.bytes * x.comp;
    }
    const dFiles = Math.round(created) - Math.round(deleted);
    files += dFiles;
    total = Math.max(0, total + dFiles * fileBytes);
    const first = k === 0;
    const bytesAdded = Math.round(first ? total * 1 : bytes + enc);
    const stored = Math.round(GEN.fixedStored + (first ? total * GEN.comp : compBytes + enc * 1.002));
    const bytesRead = Math.round(first ? total : 1.5 * bytes + enc);
    const filesRead = Math.round(first ? files : changed + created);
    const time = START + m0 * 60_000 + jr.int(0, 20_000);
    const duration = GEN.fixedSeconds + bytesRead / GEN.readRate;
    const id = `${o.scenario}-${o.seed}-${interval}m-${String(k).padStart(5, '0')}`;
    snapshots.push({
      id,
      snapshot: {
        time: new Date(time).toISOString(),
        endTime: new Date(time + duration * 1000).toISOString(),
        host: 'node-1',
        paths: ['/data'],
        tags: [`policy=${o.policy ?? 'gen'}`],
        ...(prev !== undefined ? { parent: prev } : {}),
        summary: { files, totalBytes: Math.round(total), bytesRead, filesRead, bytesAdded, bytesStored: stored, duration },
      },
    });
    prev = id;
  }
  return { scenario: o.scenario, seed: o.seed, intervalMinutes: interval, snapshots, ...(onsetMs !== undefined ? { onsetMs } : {}) };
}
