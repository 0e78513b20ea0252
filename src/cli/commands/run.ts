/**
 * run: one run of one policy of a policy file (pre hooks, backup, post hooks, retention, prune,
 * report), what a Kubernetes CronJob or a systemd timer calls. The engine is src/policy; this
 * file resolves the repository and password (the policy's, else the file's defaults, else
 * --repo / MESHBACK_REPO and --password-file / MESHBACK_PASSWORD), prints the report, and exits
 * with the code of the failure that ended the run (a hook's: 14).
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MeshbackError, UsageError, errMessage } from '../../errors/index.ts';
import type { EventSink } from '../../events/index.ts';
import { ackedOf, loadPolicyFile, newestOfPolicy, policyNamed, readAcksForRun, runPolicy, takeRunLock } from '../../policy/index.ts';
import type { DrillReport, PhaseReport, Policy, RunOptions, RunReport } from '../../policy/index.ts';
import { openRepository } from '../../repository/open.ts';
import { Metrics, pushMetrics, writeTextfile } from '../../server/metrics.ts';
import { fmtBytes } from '../../util/units.ts';
import { meshbackDir } from '../../util/dirs.ts';
import type { Command, OptionSpec } from '../command.ts';
import { bool, str } from '../command.ts';
import type { Context } from '../context.ts';
import { backendFor, getPassword, repoLocation } from '../context.ts';
import { EXIT } from '../exit.ts';
import { resourceUsage } from '../resources.ts';

export const STATE_DIR_OPTION = {
  type: 'string',
  argument: 'DIR',
  description: "meshback's state on this host: the server's state.json (each policy's last run, to catch up a run missed while it was down) and the run locks (one run of a policy at a time) (default $XDG_STATE_HOME/meshback, else ~/.local/state/meshback)",
} as const;

/** --state-dir, else $XDG_STATE_HOME/meshback, else ~/.local/state/meshback (absolute) */
export function stateDirOf(v: Record<string, unknown>): string {
  return path.resolve(str(v['state-dir']) ?? meshbackDir('state'));
}

export const runCommand: Command = {
  name: 'run',
  summary: 'run one policy of a policy file once: hooks, backup, retention, prune, report',
  usage: 'meshback run POLICY --config FILE [--dry-run] [--maintenance] [--state-dir DIR] [--metrics-textfile FILE] [--pushgateway URL] [--json]',
  options: {
    config: { type: 'string', argument: 'FILE', description: 'the policy file (YAML; see docs/design.md, "Policies")' },
    'dry-run': { type: 'boolean', short: 'n', description: 'check the policy and the repository and show what retention would remove; run no hook, back up nothing, remove nothing' },
    'state-dir': STATE_DIR_OPTION,
    maintenance: { type: 'boolean', description: "a maintenance run: prune the policy's repository now, nothing else (what a timer in the policy's maintenance window calls; the server does it by itself)" },
    ...metricsOptions('run'),
  },
  async run(ctx, v, positionals) {
    const file = str(v['config']);
    if (file === undefined) throw new UsageError('run needs the policy file: meshback run POLICY --config FILE');
    if (positionals.length !== 1) throw new UsageError(`run takes one POLICY name${positionals.length > 1 ? `, not ${positionals.length}` : ''}: meshback run POLICY --config FILE`);
    const policy = policyNamed(await loadPolicyFile(file), positionals[0]!);
    await checkMetricsOptions(v);
    const maintenance = bool(v['maintenance']);
    if (maintenance && !policy.prune) throw new UsageError(`policy ${policy.name} does not prune, so a maintenance run has nothing to do: give it prune: true or prune: {window: "01:00-05:00"}`);
    // one run of a policy at a time on this host (the server's runs included); a dry run changes nothing
    const lock = bool(v['dry-run']) ? undefined : await takeRunLock(stateDirOf(v), policy.name, 'meshback run', (m) => ctx.out.warn(m));
    const sink: EventSink = (e) => ctx.out.sink(e.type === 'note' && (e.op === 'hook' || (e.op === 'run' && e.subject !== undefined)) ? { ...e, message: `  ${e.subject ?? 'hook'}: ${e.message}` } : e);
    const acknowledged = ackedOf(await readAcksForRun(stateDirOf(v), (m) => ctx.out.warn(m)), policy.name);
    const { report, error } = await runPolicy(policy, { ...policyAccess(ctx, policy, ctx.g.retryLockMs ?? 0), dryRun: bool(v['dry-run']), maintenance, events: sink, acknowledged }).finally(() => lock?.release());
    ctx.out.done();
    printReport(ctx, report);
    if (!report.dryRun) await publishMetrics(ctx, v, policy, { kind: 'backup', report, ...(error !== undefined ? { error } : {}) });
    ctx.out.jsonOut({ message_type: 'summary', ...(snake(report) as Record<string, unknown>), resources: resourceUsage() });
    if (error !== undefined) throw error instanceof MeshbackError ? error : new MeshbackError('INTERNAL', String(error));
    return EXIT.OK;
  },
};

/**
 * How a run of `policy` reaches its repository: the policy's location (else --repo /
 * MESHBACK_REPO), its password file (else --password-file / MESHBACK_PASSWORD, asked once), the
 * CLI's storage stack; a lock held by another run is waited for up to `retryLockMs`; the
 * repository's events (lock waits, stale locks) go to `events`. `meshback run` and `meshback
 * server` both run policies through this.
 */
export function policyAccess(ctx: Context, policy: Policy, retryLockMs: number, events: EventSink = ctx.out.sink): Pick<RunOptions, 'open' | 'repository' | 'writes'> {
  const location = policy.repository ?? repoLocation(ctx.g);
  const g = { ...ctx.g, ...(policy.passwordFile !== undefined ? { passwordFile: policy.passwordFile } : {}) };
  let password: string | undefined;
  const cache = ctx.g.cache;
  return {
    repository: location,
    // the metadata cache is written during a backup (the fsfreeze preset refuses to freeze it)
    ...(cache !== undefined && cache !== false ? { writes: [cache.dir] } : {}),
    open: (lock, command, loadIndex) =>
      openRepository(backendFor(location, ctx.out.sink, ctx.g.cache), async () => (password ??= await getPassword(g)), { lock, command, loadIndex, retryLockMs, events }),
  };
}

/** --metrics-textfile and --pushgateway of a command (`what`: run, drill). */
export function metricsOptions(what: 'run' | 'drill'): Record<string, OptionSpec> {
  return {
    'metrics-textfile': { type: 'string', argument: 'FILE', description: `write the ${what}'s metrics to FILE for node_exporter's textfile collector (atomically; name it *.prom in the collector's directory)` },
    pushgateway: { type: 'string', argument: 'URL', description: `push the ${what}'s metrics to the Prometheus Pushgateway at URL (job=meshback, instance=this host, policy=POLICY); a failed push is a warning` },
  };
}

/** Refuses metrics options that cannot work, before the run: a textfile in a missing directory, a Pushgateway URL that is not http(s). */
export async function checkMetricsOptions(v: Record<string, unknown>): Promise<void> {
  const file = str(v['metrics-textfile']);
  if (file !== undefined) {
    const dir = path.dirname(path.resolve(file));
    const st = await fsp.stat(dir).catch(() => undefined);
    if (st?.isDirectory() !== true) throw new UsageError(`--metrics-textfile ${file}: the directory ${dir} does not exist: give a file in node_exporter's textfile directory (--collector.textfile.directory)`);
  }
  const url = str(v['pushgateway']);
  if (url !== undefined) {
    let u: URL | undefined;
    try {
      u = new URL(url);
    } catch {
      u = undefined;
    }
    if (u === undefined || (u.protocol !== 'http:' && u.protocol !== 'https:')) throw new UsageError(`--pushgateway ${JSON.stringify(url)} is not an http(s) URL: give the Pushgateway's address, e.g. http://pushgateway:9091`);
  }
}

/**
 * The metrics of one run or drill, written to --metrics-textfile and pushed to --pushgateway when
 * asked (src/server/metrics.ts, one-shot: no counters, no scrape-time values). A failed backup run
 * still reports its policy's newest snapshot, read from the repository. A write or push that fails
 * is a warning: the run's outcome is the run's.
 */
export async function publishMetrics(
  ctx: Context,
  v: Record<string, unknown>,
  policy: Policy,
  o: { kind: 'backup'; report: RunReport; error?: MeshbackError } | { kind: 'drill'; report: DrillReport; error?: MeshbackError },
): Promise<void> {
  const file = str(v['metrics-textfile']);
  const url = str(v['pushgateway']);
  if (file === undefined && url === undefined) return;
  const m = new Metrics(undefined, { processMetrics: false, oneShot: true });
  // a drill's file holds the drill's series only: a run's and a drill's textfiles never repeat a series
  if (o.kind === 'backup') m.setPolicies([policy]);
  m.observe({ id: randomBytes(8).toString('hex'), kind: o.kind, policy: policy.name, status: o.error === undefined ? 'succeeded' : 'failed', startedAt: o.report.started, finishedAt: o.report.finished, ...(o.report.snapshotId !== undefined ? { snapshotId: o.report.snapshotId } : {}), report: o.report });
  if (o.kind === 'backup' && o.error !== undefined) {
    try {
      const r = await policyAccess(ctx, policy, 0).open('none', `run ${policy.name}`, false);
      try {
        const s = newestOfPolicy(await r.repo.listSnapshots(), policy.name);
        if (s !== undefined) m.setNewestSnapshot(policy.name, s.snapshot.time);
      } finally {
        await r.close();
      }
    } catch (err) {
      ctx.out.warn(`the newest snapshot of policy ${policy.name} could not be read for its metrics (${errMessage(err)}): meshback_last_snapshot_timestamp_seconds is left out`);
    }
  }
  const text = await m.render();
  if (file !== undefined) {
    try {
      await writeTextfile(path.resolve(file), text);
      ctx.out.info(`metrics written to ${file}`);
    } catch (err) {
      ctx.out.warn(`the metrics could not be written to ${file} (${errMessage(err)}): check the directory's permissions and space`);
    }
  }
  if (url !== undefined) {
    try {
      await pushMetrics(url, m.registry, 'meshback', { instance: os.hostname(), policy: policy.name });
      ctx.out.info(`metrics pushed to ${url}`);
    } catch (err) {
      ctx.out.warn(`the metrics could not be pushed to the Pushgateway at ${url} (${errMessage(err)}): the ${o.kind === 'drill' ? 'drill' : 'run'}'s outcome stands; check the URL and that the Pushgateway is up`);
    }
  }
}

const MARK: Record<PhaseReport['outcome'], string> = { ok: 'ok', failed: 'FAILED', skipped: 'skipped', incomplete: 'INCOMPLETE' };

function printReport(ctx: Context, r: RunReport): void {
  ctx.out.result(`policy ${r.policy}${r.dryRun ? ' (dry run)' : ''}: ${r.ok ? 'ok' : `FAILED in ${r.failure?.phase ?? '?'}`} in ${r.durationSeconds.toFixed(2)} s`);
  for (const p of r.phases) {
    const t = p.durationSeconds !== undefined ? ` (${p.durationSeconds.toFixed(2)} s)` : '';
    let what = p.message !== undefined ? `: ${p.message}` : '';
    if (p.phase === 'backup' && r.snapshotId !== undefined && r.backup !== undefined) {
      what = `: snapshot ${r.snapshotId.slice(0, 8)}, ${r.backup.files} files, ${fmtBytes(r.backup.totalBytes)}, ${fmtBytes(r.backup.bytesAdded)} new`;
    }
    if (p.phase === 'retention' && r.retention !== undefined) what = (r.dryRun ? `: would remove ${r.retention.wouldRemove}, keep ${r.retention.kept}` : `: removed ${r.retention.removed}, kept ${r.retention.kept}${r.retention.locked > 0 ? `, ${r.retention.locked} under object lock` : ''}`) + (r.retention.held !== undefined ? ` (${r.retention.held} held by an open anomaly)` : '');
    if (p.phase === 'prune' && r.prune !== undefined) what = `: ${r.prune.packsDeleted} pack(s) deleted, ${fmtBytes(r.prune.bytesFreed)} freed`;
    if ((p.phase === 'pre' || p.phase === 'post' || p.phase === 'on-error') && p.outcome !== 'skipped') {
      const hs = r.hooks.filter((h) => h.phase === p.phase);
      what = `: ${hs.filter((h) => h.outcome === 'ok').length} of ${hs.length} hook(s) ok${p.message !== undefined ? `; ${p.message}` : ''}`;
    }
    ctx.out.result(`  ${p.phase.padEnd(10)}${MARK[p.outcome]}${t}${what}`);
  }
  for (const a of r.anomalies?.detected ?? []) ctx.out.result(`  anomaly   ${a.severity.toUpperCase()} ${a.kind}: ${a.message}`);
  for (const w of r.warnings ?? []) ctx.out.result(`  warning   ${w}`);
}

/** The report with snake_case keys (the --json convention of the other summaries). */
export function snake(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(snake);
  if (x === null || typeof x !== 'object') return x;
  return Object.fromEntries(Object.entries(x).map(([k, val]) => [k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), snake(val)]));
}
