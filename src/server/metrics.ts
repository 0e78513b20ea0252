/**
 * server/metrics: the Prometheus metrics of meshback's runs and drills (prom-client), for the
 * server's GET /metrics and for `meshback run|drill --metrics-textfile/--pushgateway`.
 *
 * The front end feeds it: setPolicies() with the policy file's policies (their RPO targets; a
 * policy no longer in the file loses its series), observe() with each run record as it changes
 * (only finished runs count; a record seen twice counts once), setNewestSnapshot() with the
 * newest snapshot of a policy read from its repository (loadNewestSnapshots does it at server
 * start, so a restarted server reports the age of what is stored, not of what it ran).
 * Per-policy values are kept here and written into the gauges at scrape time; the snapshot age
 * and whether the RPO is exceeded are computed then. Names and meanings: docs/design.md,
 * "Metrics"; the table there is the contract with dashboards and alerting rules.
 *
 * A one-shot process (`meshback run` writing a textfile or pushing) has no counters (a counter of
 * a process that ran once means nothing to Prometheus) and no values that depend on the time of
 * the scrape: alert on `time() - meshback_last_snapshot_timestamp_seconds` instead.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Counter, Gauge, Pushgateway, Registry, collectDefaultMetrics } from 'prom-client';
import { errMessage } from '../errors/index.ts';
import { newestOfPolicy } from '../policy/index.ts';
import type { DrillReport, OpenedRepository, Policy, RunReport } from '../policy/index.ts';

/**
 * A run the server made, as the run registry (src/server/runs.ts) records it: the shared contract
 * of issue 14. Metrics reads only the fields of ObservedRun.
 */
export interface RunRecord {
  id: string;
  kind: 'backup' | 'drill';
  policy: string;
  reason: 'schedule' | 'catch-up' | 'first-run' | 'trigger';
  tags: Record<string, string>;
  status: 'queued' | 'running' | 'succeeded' | 'failed';
  queuedAt: string;
  startedAt?: string;
  finishedAt?: string;
  snapshotId?: string;
  error?: { code: string; message: string };
  report?: RunReport | DrillReport;
}

export type ObservedRun = Pick<RunRecord, 'id' | 'kind' | 'policy' | 'status' | 'startedAt' | 'finishedAt' | 'snapshotId' | 'report'>;

export interface MetricsOptions {
  /** prom-client's default process metrics (CPU, memory, event loop, handles); default true */
  processMetrics?: boolean;
  /** one run of a short-lived process: no counters, no values computed at scrape time */
  oneShot?: boolean;
  /** the clock, for tests (ms since the epoch) */
  now?: () => number;
}

interface PolicyValues {
  lastSuccess?: number;
  lastRunAt?: number;
  lastRunOk?: boolean;
  lastDuration?: number;
  bytesAdded?: number;
  files?: number;
  errors?: number;
  /** ms since the epoch */
  newestSnapshot?: number;
  drillOk?: boolean;
  drillRto?: number;
  drillAt?: number;
  /** an anomaly of the policy is open (policy/anomaly.ts), as its last run found */
  anomalyOpen?: boolean;
}

/** the most finished run ids remembered, so that a record observed again is not counted again */
const SEEN_MAX = 10_000;

const sec = (iso: string | undefined): number | undefined => {
  if (iso === undefined) return undefined;
  const t = Date.parse(iso);
  return Number.isFinite(t) ? t / 1000 : undefined;
};

function isDrillReport(r: RunReport | DrillReport | undefined): r is DrillReport {
  return r !== undefined && 'rtoSeconds' in r;
}

export class Metrics {
  readonly registry: Registry;
  readonly contentType: string;
  private readonly values = new Map<string, PolicyValues>();
  /** the policies of the policy file (undefined until setPolicies: every observed policy is shown) */
  private policies: Map<string, Policy> | undefined;
  private readonly seen = new Set<string>();
  private readonly runs: Counter<'policy' | 'kind' | 'outcome'> | undefined;
  private readonly anomalies: Counter<'policy' | 'kind'> | undefined;
  private readonly now: () => number;

  constructor(registry: Registry = new Registry(), opts: MetricsOptions = {}) {
    this.registry = registry;
    this.contentType = registry.contentType;
    this.now = opts.now ?? Date.now;
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry });
    const regs = [registry];
    // a gauge per policy whose value is read from the policy's values when scraped
    const gauge = (name: string, help: string, value: (v: PolicyValues, p: string, nowMs: number) => number | undefined): void => {
      // eslint-disable-next-line @typescript-eslint/no-this-alias
      const self = this;
      new Gauge({
        name,
        help,
        labelNames: ['policy'],
        registers: regs,
        collect() {
          this.reset();
          const nowMs = self.now();
          for (const p of self.shown()) {
            const x = value(self.values.get(p) ?? {}, p, nowMs);
            if (x !== undefined && Number.isFinite(x)) this.set({ policy: p }, x);
          }
        },
      });
    };
    gauge('meshback_last_success_timestamp_seconds', 'When the last successful backup run of the policy ended (Unix time)', (v) => v.lastSuccess);
    gauge('meshback_last_run_timestamp_seconds', 'When the last backup run of the policy ended, whatever its outcome (Unix time)', (v) => v.lastRunAt);
    gauge('meshback_last_run_success', 'Whether the last backup run of the policy succeeded (1) or failed (0)', (v) => (v.lastRunOk === undefined ? undefined : v.lastRunOk ? 1 : 0));
    gauge('meshback_last_run_duration_seconds', 'How long the last backup run of the policy took (hooks, backup, retention, prune)', (v) => v.lastDuration);
    gauge('meshback_last_bytes_added', 'Bytes of new data the last backup of the policy added to the repository (before compression)', (v) => v.bytesAdded);
    gauge('meshback_last_files', 'Files in the snapshot of the last backup of the policy', (v) => v.files);
    gauge('meshback_last_errors', 'Items the last backup of the policy could not read (its snapshot is incomplete when above 0)', (v) => v.errors);
    gauge('meshback_last_snapshot_timestamp_seconds', 'Time of the newest snapshot of the policy (Unix time; its backup start)', (v) => (v.newestSnapshot === undefined ? undefined : v.newestSnapshot / 1000));
    gauge('meshback_rpo_target_seconds', 'The recovery point objective of the policy (rpo in the policy file)', (_v, p) => this.rpoSeconds(p));
    gauge('meshback_drill_last_success', 'Whether the last restore drill of the policy passed (1) or failed (0)', (v) => (v.drillOk === undefined ? undefined : v.drillOk ? 1 : 0));
    gauge('meshback_drill_rto_seconds', 'Recovery time of the last restore drill of the policy: its restore and verification wall time', (v) => v.drillRto);
    gauge('meshback_drill_last_timestamp_seconds', 'When the last restore drill of the policy ended (Unix time)', (v) => v.drillAt);
    gauge('meshback_anomaly_open', 'Whether an anomaly alert of the policy (ransomware-like change) is open, holding its retention (1), or not (0), as its last backup run found', (v) => (v.anomalyOpen === undefined ? undefined : v.anomalyOpen ? 1 : 0));
    if (opts.oneShot !== true) {
      gauge('meshback_snapshot_age_seconds', 'Age of the newest snapshot of the policy at scrape time', (v, _p, nowMs) => (v.newestSnapshot === undefined ? undefined : Math.max(0, (nowMs - v.newestSnapshot) / 1000)));
      gauge('meshback_rpo_exceeded', 'Whether the newest snapshot of the policy is older than its RPO target, or there is none (1), or not (0); policies with an rpo only', (v, p, nowMs) => {
        const rpo = this.rpoSeconds(p);
        if (rpo === undefined) return undefined;
        return v.newestSnapshot === undefined || (nowMs - v.newestSnapshot) / 1000 > rpo ? 1 : 0;
      });
      this.runs = new Counter({ name: 'meshback_runs_total', help: 'Finished runs, by policy, kind (backup, drill) and outcome (succeeded, failed)', labelNames: ['policy', 'kind', 'outcome'], registers: regs });
      this.anomalies = new Counter({ name: 'meshback_anomalies_total', help: "Anomaly alerts raised on a run's new snapshot, by policy and kind (spike, incompressible, mass-delete, mass-rewrite)", labelNames: ['policy', 'kind'], registers: regs });
    }
  }

  private rpoSeconds(policy: string): number | undefined {
    const ms = this.policies?.get(policy)?.rpoMs;
    return ms === undefined ? undefined : ms / 1000;
  }

  /** the policies that get series: the policy file's, or every observed one before setPolicies */
  private shown(): string[] {
    return this.policies !== undefined ? [...this.policies.keys()] : [...this.values.keys()];
  }

  private of(policy: string): PolicyValues {
    let v = this.values.get(policy);
    if (v === undefined) this.values.set(policy, (v = {}));
    return v;
  }

  /** The policy file's policies (at start and after a reload): their RPO targets; others lose their series. */
  setPolicies(policies: Policy[]): void {
    this.policies = new Map(policies.map((p) => [p.name, p]));
  }

  /** The newest snapshot of `policy` is from `time` (kept when newer than what is known). */
  setNewestSnapshot(policy: string, time: string | Date): void {
    const t = typeof time === 'string' ? Date.parse(time) : time.getTime();
    if (!Number.isFinite(t)) return;
    const v = this.of(policy);
    if (v.newestSnapshot === undefined || t > v.newestSnapshot) v.newestSnapshot = t;
  }

  /** A run record as it changes: a finished one (succeeded, failed) updates the policy's values once. */
  observe(record: ObservedRun): void {
    if (record.status !== 'succeeded' && record.status !== 'failed') return;
    if (this.seen.has(record.id)) return;
    this.seen.add(record.id);
    if (this.seen.size > SEEN_MAX) this.seen.delete(this.seen.values().next().value!);
    const ok = record.status === 'succeeded';
    this.runs?.inc({ policy: record.policy, kind: record.kind, outcome: record.status });
    const v = this.of(record.policy);
    const end = sec(record.finishedAt) ?? this.now() / 1000;
    const r = record.report;
    if (record.kind === 'drill') {
      v.drillOk = ok;
      v.drillAt = end;
      if (isDrillReport(r) && r.snapshotId !== undefined) v.drillRto = r.rtoSeconds;
      return;
    }
    v.lastRunOk = ok;
    v.lastRunAt = end;
    const start = sec(record.startedAt);
    const run = r !== undefined && !isDrillReport(r) ? r : undefined;
    const duration = run?.durationSeconds ?? (start !== undefined ? end - start : undefined);
    if (duration !== undefined) v.lastDuration = duration;
    if (run?.anomalies !== undefined) {
      v.anomalyOpen = run.anomalies.open.length > 0;
      for (const a of run.anomalies.detected) this.anomalies?.inc({ policy: record.policy, kind: a.kind });
    }
    if (run?.backup !== undefined) {
      v.bytesAdded = run.backup.bytesAdded;
      v.files = run.backup.files;
      v.errors = run.backup.errors.length;
    }
    if (ok) {
      v.lastSuccess = end;
      // the snapshot's time is its backup's start
      const snapAt = run?.phases.find((p) => p.phase === 'backup')?.started ?? record.startedAt;
      if ((record.snapshotId ?? run?.snapshotId) !== undefined && snapAt !== undefined) this.setNewestSnapshot(record.policy, snapAt);
    }
  }

  /** The metrics in the Prometheus text format (version 0.0.4; contentType); families without a sample are left out. */
  async render(): Promise<string> {
    const text = await this.registry.metrics();
    return text
      .split(/\n(?=# HELP )/)
      .filter((block) => block.split('\n').some((l) => l !== '' && !l.startsWith('#')))
      .map((b) => b.replace(/\n*$/, '\n'))
      .join('\n');
  }
}

/**
 * Reads the newest snapshot of each policy from its repository (each repository listed once,
 * without a lock) into `metrics`. Returns one line per repository that could not be read (the
 * server goes on: its runs will set the values).
 */
export async function loadNewestSnapshots(metrics: Metrics, policies: Policy[], open: (p: Policy) => { repository: string; open: () => Promise<OpenedRepository> }): Promise<string[]> {
  const byRepo = new Map<string, { open: () => Promise<OpenedRepository>; policies: Policy[] }>();
  for (const p of policies) {
    const a = open(p);
    const e = byRepo.get(a.repository);
    if (e === undefined) byRepo.set(a.repository, { open: a.open, policies: [p] });
    else e.policies.push(p);
  }
  const problems: string[] = [];
  for (const [repo, e] of byRepo) {
    try {
      const o = await e.open();
      try {
        const all = await o.repo.listSnapshots();
        for (const p of e.policies) {
          const s = newestOfPolicy(all, p.name);
          if (s !== undefined) metrics.setNewestSnapshot(p.name, s.snapshot.time);
        }
      } finally {
        await o.close();
      }
    } catch (err) {
      problems.push(`the snapshots of ${repo} could not be read for the metrics (${errMessage(err)}): the snapshot age of ${e.policies.map((p) => p.name).join(', ')} is known after their next run`);
    }
  }
  return problems;
}

let seq = 0;
/**
 * Writes `text` to `file` for node_exporter's textfile collector: atomically (a temporary file in
 * the same directory, then rename), so the collector never reads half a file. The temporary name
 * does not end in .prom, so the collector ignores it.
 */
export async function writeTextfile(file: string, text: string): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${++seq}`);
  try {
    await fsp.writeFile(tmp, text, { mode: 0o644 });
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Pushes the registry's metrics to a Prometheus Pushgateway at `url` (PUT: the group's metrics
 * are replaced) under job=`job` and the grouping labels (instance, policy).
 */
export async function pushMetrics(url: string, registry: Registry, job: string, groupings: Record<string, string>, timeoutMs = 10_000): Promise<void> {
  const gw = new Pushgateway(url, { timeout: timeoutMs }, registry);
  await gw.push({ jobName: job, groupings });
}
