/**
 * run: one run of one policy of a policy file (pre hooks, backup, post hooks, retention, prune,
 * report), what a Kubernetes CronJob or a systemd timer calls. The engine is src/policy; this
 * file resolves the repository and password (the policy's, else the file's defaults, else
 * --repo / MESHBACK_REPO and --password-file / MESHBACK_PASSWORD), prints the report, and exits
 * with the code of the failure that ended the run (a hook's: 14).
 */
import { MeshbackError, UsageError } from '../../errors/index.ts';
import type { EventSink } from '../../events/index.ts';
import { loadPolicyFile, policyNamed, runPolicy, takeRunLock } from '../../policy/index.ts';
import type { PhaseReport, Policy, RunOptions, RunReport } from '../../policy/index.ts';
import { openRepository } from '../../repository/open.ts';
import { fmtBytes } from '../../util/units.ts';
import { meshbackDir } from '../../util/dirs.ts';
import * as path from 'node:path';
import type { Command } from '../command.ts';
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
  usage: 'meshback run POLICY --config FILE [--dry-run] [--maintenance] [--state-dir DIR] [--json]',
  options: {
    config: { type: 'string', argument: 'FILE', description: 'the policy file (YAML; see docs/design.md, "Policies")' },
    'dry-run': { type: 'boolean', short: 'n', description: 'check the policy and the repository and show what retention would remove; run no hook, back up nothing, remove nothing' },
    'state-dir': STATE_DIR_OPTION,
    maintenance: { type: 'boolean', description: "a maintenance run: prune the policy's repository now, nothing else (what a timer in the policy's maintenance window calls; the server does it by itself)" },
  },
  async run(ctx, v, positionals) {
    const file = str(v['config']);
    if (file === undefined) throw new UsageError('run needs the policy file: meshback run POLICY --config FILE');
    if (positionals.length !== 1) throw new UsageError(`run takes one POLICY name${positionals.length > 1 ? `, not ${positionals.length}` : ''}: meshback run POLICY --config FILE`);
    const policy = policyNamed(await loadPolicyFile(file), positionals[0]!);
    const maintenance = bool(v['maintenance']);
    if (maintenance && !policy.prune) throw new UsageError(`policy ${policy.name} does not prune, so a maintenance run has nothing to do: give it prune: true or prune: {window: "01:00-05:00"}`);
    // one run of a policy at a time on this host (the server's runs included); a dry run changes nothing
    const lock = bool(v['dry-run']) ? undefined : await takeRunLock(stateDirOf(v), policy.name, 'meshback run', (m) => ctx.out.warn(m));
    const sink: EventSink = (e) => ctx.out.sink(e.type === 'note' && (e.op === 'hook' || (e.op === 'run' && e.subject !== undefined)) ? { ...e, message: `  ${e.subject ?? 'hook'}: ${e.message}` } : e);
    const { report, error } = await runPolicy(policy, { ...policyAccess(ctx, policy, ctx.g.retryLockMs ?? 0), dryRun: bool(v['dry-run']), maintenance, events: sink }).finally(() => lock?.release());
    ctx.out.done();
    printReport(ctx, report);
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

const MARK: Record<PhaseReport['outcome'], string> = { ok: 'ok', failed: 'FAILED', skipped: 'skipped', incomplete: 'INCOMPLETE' };

function printReport(ctx: Context, r: RunReport): void {
  ctx.out.result(`policy ${r.policy}${r.dryRun ? ' (dry run)' : ''}: ${r.ok ? 'ok' : `FAILED in ${r.failure?.phase ?? '?'}`} in ${r.durationSeconds.toFixed(2)} s`);
  for (const p of r.phases) {
    const t = p.durationSeconds !== undefined ? ` (${p.durationSeconds.toFixed(2)} s)` : '';
    let what = p.message !== undefined ? `: ${p.message}` : '';
    if (p.phase === 'backup' && r.snapshotId !== undefined && r.backup !== undefined) {
      what = `: snapshot ${r.snapshotId.slice(0, 8)}, ${r.backup.files} files, ${fmtBytes(r.backup.totalBytes)}, ${fmtBytes(r.backup.bytesAdded)} new`;
    }
    if (p.phase === 'retention' && r.retention !== undefined) what = r.dryRun ? `: would remove ${r.retention.wouldRemove}, keep ${r.retention.kept}` : `: removed ${r.retention.removed}, kept ${r.retention.kept}${r.retention.locked > 0 ? `, ${r.retention.locked} under object lock` : ''}`;
    if (p.phase === 'prune' && r.prune !== undefined) what = `: ${r.prune.packsDeleted} pack(s) deleted, ${fmtBytes(r.prune.bytesFreed)} freed`;
    if ((p.phase === 'pre' || p.phase === 'post' || p.phase === 'on-error') && p.outcome !== 'skipped') {
      const hs = r.hooks.filter((h) => h.phase === p.phase);
      what = `: ${hs.filter((h) => h.outcome === 'ok').length} of ${hs.length} hook(s) ok${p.message !== undefined ? `; ${p.message}` : ''}`;
    }
    ctx.out.result(`  ${p.phase.padEnd(10)}${MARK[p.outcome]}${t}${what}`);
  }
}

/** The report with snake_case keys (the --json convention of the other summaries). */
function snake(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(snake);
  if (x === null || typeof x !== 'object') return x;
  return Object.fromEntries(Object.entries(x).map(([k, val]) => [k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), snake(val)]));
}
