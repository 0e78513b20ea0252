/**
 * drill: one restore drill of a policy now (src/policy/drill.ts), what a Kubernetes CronJob or a
 * systemd timer calls: the newest snapshot of the policy restored into a scratch directory,
 * every byte verified against the snapshot, the drill's check run on it, the RTO reported, the
 * scratch directory deleted. Exit 0 when it passed; a failed drill is one line (which snapshot,
 * what failed, what to do) and the code of what failed (4 damaged data, 14 the check, 5 no
 * snapshot...). The repository is reached as `meshback run` reaches it (policyAccess).
 */
import * as path from 'node:path';
import { UsageError } from '../../errors/index.ts';
import type { EventSink } from '../../events/index.ts';
import { loadPolicyFile, policyNamed, runDrill } from '../../policy/index.ts';
import type { DrillReport } from '../../policy/index.ts';
import { meshbackDir } from '../../util/dirs.ts';
import { fmtBytes } from '../../util/units.ts';
import type { Command } from '../command.ts';
import { str } from '../command.ts';
import type { Context } from '../context.ts';
import { EXIT } from '../exit.ts';
import { resourceUsage } from '../resources.ts';
import { checkMetricsOptions, metricsOptions, policyAccess, publishMetrics, snake } from './run.ts';

/** Where drills without a `target` restore: DIR/drills under the state directory ($XDG_STATE_HOME/meshback, else ~/.local/state/meshback). */
export function defaultScratchDir(stateDir = meshbackDir('state')): string {
  return path.join(stateDir, 'drills');
}

export const drillCommand: Command = {
  name: 'drill',
  summary: "restore drill of a policy now: restore its newest snapshot, verify every byte, run the drill's check",
  usage: 'meshback drill POLICY --config FILE [--scratch-dir DIR] [--metrics-textfile FILE] [--pushgateway URL] [--json]',
  options: {
    config: { type: 'string', argument: 'FILE', description: 'the policy file (YAML; see docs/design.md, "Policies")' },
    'scratch-dir': { type: 'string', argument: 'DIR', description: 'where a drill without drill.target restores (in a new directory, deleted afterwards; default $XDG_STATE_HOME/meshback/drills, else ~/.local/state/meshback/drills)' },
    ...metricsOptions('drill'),
  },
  async run(ctx, v, positionals) {
    const file = str(v['config']);
    if (file === undefined) throw new UsageError('drill needs the policy file: meshback drill POLICY --config FILE');
    if (positionals.length !== 1) throw new UsageError(`drill takes one POLICY name${positionals.length > 1 ? `, not ${positionals.length}` : ''}: meshback drill POLICY --config FILE`);
    const policy = policyNamed(await loadPolicyFile(file), positionals[0]!);
    await checkMetricsOptions(v);
    const scratch = str(v['scratch-dir']);
    if (scratch === '') throw new UsageError('--scratch-dir is empty: give a directory');
    const sink: EventSink = (e) => ctx.out.sink(e.type === 'note' && e.op === 'hook' ? { ...e, message: `  ${e.subject ?? 'hook'}: ${e.message}` } : e);
    const access = policyAccess(ctx, policy, ctx.g.retryLockMs ?? 0);
    const { report, error } = await runDrill(policy, { ...access, scratchDir: path.resolve(scratch ?? defaultScratchDir()), events: sink });
    ctx.out.done();
    printReport(ctx, report);
    await publishMetrics(ctx, v, policy, { kind: 'drill', report, ...(error !== undefined ? { error } : {}) });
    ctx.out.jsonOut({ message_type: 'summary', ...(snake(report) as Record<string, unknown>), resources: resourceUsage() });
    if (error !== undefined) throw error;
    return EXIT.OK;
  },
};

function printReport(ctx: Context, r: DrillReport): void {
  const snap = r.snapshotId !== undefined ? `snapshot ${r.snapshotId.slice(0, 8)} (${r.snapshotTime ?? '?'})` : 'no snapshot';
  ctx.out.result(`drill of policy ${r.policy}: ${r.ok ? 'ok' : 'FAILED'}: ${snap}`);
  if (r.snapshotId !== undefined && r.restoreDir !== undefined) {
    ctx.out.result(`  restore   ${r.damaged === undefined && r.verified ? 'ok' : 'FAILED'}: ${r.restoredFiles} files, ${fmtBytes(r.restoredBytes)} restored to ${r.restoreDir}${r.verified ? ', every file read back and compared with the snapshot' : ''}; RTO ${r.rtoSeconds.toFixed(2)} s`);
  }
  for (const w of r.warnings ?? []) ctx.out.result(`  warning   ${w}`);
  if (r.check !== undefined) ctx.out.result(`  check     ${r.check.outcome === 'ok' ? 'ok' : 'FAILED'} (${r.check.durationSeconds.toFixed(2)} s)${r.check.error !== undefined ? `: ${r.check.error}` : ''}`);
  if (r.kept === true) ctx.out.result(`  the restored data is kept in ${r.restoreDir ?? '?'} (keep-on-failure)`);
}
