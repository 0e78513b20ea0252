/**
 * server: the long-running scheduler. Runs each scheduled policy of a policy file on its
 * schedule through the same engine function as `meshback run` (runPolicy, repository access of
 * policyAccess), with the scheduling rules of src/policy/scheduler.ts: one run per policy at a
 * time (a tick during a run is skipped), at most --max-runs at once, a run missed during downtime
 * caught up once (the state file under --state-dir), lock conflicts between policies on one
 * repository waited out (--retry-lock, default 1h). SIGTERM/SIGINT: no new run starts, running
 * ones get --grace to end (exit 0); past it, or on a second signal, the process ends as an
 * interrupted `meshback run` does (locks removed, no snapshot saved, exit 130). SIGHUP reloads the
 * policy file (a bad one is a warning). Prints one line per run start and end (--json: one JSON
 * object per scheduler event).
 */
import * as path from 'node:path';
import { MeshbackError, UsageError } from '../../errors/index.ts';
import type { EventSink } from '../../events/index.ts';
import { Scheduler, inWindow, takeRunLock, loadPolicyFile, readState, runPolicy, windowStart, windowText, writeState } from '../../policy/index.ts';
import type { Policy, RunLock, ScheduledPolicy, SchedulerEvent } from '../../policy/index.ts';
import { parseDuration } from '../../util/units.ts';
import type { Command } from '../command.ts';
import { str } from '../command.ts';
import type { Context } from '../context.ts';
import { EXIT } from '../exit.ts';
import { exitInterrupted, setInterruptHandler } from '../signals.ts';
import type { Signal } from '../signals.ts';
import { STATE_DIR_OPTION, policyAccess, stateDirOf } from './run.ts';

const DEFAULT_GRACE = '5m';
const DEFAULT_MAX_RUNS = 2;
const DEFAULT_RETRY_LOCK_MS = 3600_000;

export const serverCommand: Command = {
  name: 'server',
  summary: 'run the policies of a policy file on their schedules until stopped (SIGTERM/SIGINT)',
  usage: 'meshback server --config FILE [--state-dir DIR] [--grace DURATION] [--max-runs N] [--json]',
  options: {
    config: { type: 'string', argument: 'FILE', description: 'the policy file (YAML; see docs/design.md, "Policies"); its policies with a schedule are run' },
    'state-dir': STATE_DIR_OPTION,
    grace: { type: 'string', argument: 'DURATION', description: `on SIGTERM/SIGINT, how long running policies get to finish before they are abandoned (exit 130) (default ${DEFAULT_GRACE})` },
    'max-runs': { type: 'string', argument: 'N', description: `policies run at once at most; a due policy beyond that waits (default ${DEFAULT_MAX_RUNS})` },
  },
  async run(ctx, v) {
    const file = str(v['config']);
    if (file === undefined) throw new UsageError('server needs the policy file: meshback server --config FILE');
    const graceMs = parseDuration(str(v['grace']) ?? DEFAULT_GRACE, '--grace', { zero: true });
    const maxText = str(v['max-runs']);
    const maxRuns = maxText === undefined ? DEFAULT_MAX_RUNS : Number(maxText);
    if (!Number.isSafeInteger(maxRuns) || maxRuns < 1) throw new UsageError(`--max-runs ${JSON.stringify(maxText)} is not a whole number of at least 1: give e.g. --max-runs 2`);
    const stateDir = stateDirOf(v);
    const stateFile = path.join(stateDir, 'state.json');
    const { all, scheduled } = await readScheduled(file);
    let byName = new Map(all.map((p) => [p.name, p]));
    const retryLockMs = ctx.g.retryLockMs ?? DEFAULT_RETRY_LOCK_MS;

    const phase = { starting: true };
    const print = printer(ctx, phase);
    ctx.out.result(`server: ${scheduled.length} scheduled ${scheduled.length === 1 ? 'policy' : 'policies'} of ${file}; at most ${maxRuns} run(s) at once; state ${stateFile}`);
    for (const p of all.filter((p) => p.schedule === undefined)) ctx.out.result(`  ${p.name}: no schedule, not run by the server${p.pruneWindow !== undefined ? ' (but pruned in its window)' : ''}`);
    for (const p of all.filter((p) => p.pruneWindow !== undefined)) ctx.out.result(`  ${p.name}: prunes in its maintenance window ${windowText(p.pruneWindow!)}, from its start`);
    ctx.out.jsonOut({ message_type: 'server', event: 'start', config: file, policies: scheduled.map((p) => ({ name: p.name, schedule: p.schedule.text })), max_runs: maxRuns, state_file: stateFile, grace_seconds: graceMs / 1000 });

    const scheduler = new Scheduler({
      policies: jobsOf(all),
      maxConcurrent: maxRuns,
      state: { read: () => readState(stateFile, (m) => ctx.out.warn(m)), write: (s) => writeState(stateFile, s) },
      onEvent: print,
      run: async (job) => {
        const [name, kind] = job.split('/') as [string, string | undefined];
        const policy = byName.get(name)!;
        // a run's own output stays out of the server's log, but for its warnings and unreadable files
        const sink: EventSink = (e) => {
          if (e.type === 'warning') ctx.out.sink({ ...e, message: `${name}: ${e.message}` });
          else if (e.type === 'item-error') ctx.out.sink({ type: 'warning', path: e.path, message: `${name}: cannot be read: ${e.message}` });
        };
        if (kind === 'prune' && !inWindow(policy.pruneWindow!, Date.now())) return { ok: true, message: `skipped: the maintenance window ${windowText(policy.pruneWindow!)} is over; prune runs at its next start` };
        // a backup run holds the policy's run lock, so a `meshback run` of it meanwhile is refused
        let lock: RunLock | undefined;
        if (kind === undefined) {
          try {
            lock = await takeRunLock(stateDir, name, 'meshback server', (m) => ctx.out.warn(m));
          } catch (err) {
            if (err instanceof MeshbackError) return { ok: false, code: err.code, message: err.message };
            throw err;
          }
        }
        const { report, error } = await runPolicy(policy, { ...policyAccess(ctx, policy, retryLockMs, sink), events: sink, maintenance: kind === 'prune' }).finally(() => lock?.release());
        return { ok: error === undefined, ...(error !== undefined ? { code: error.code, message: error.message } : {}), ...(report.snapshotId !== undefined ? { snapshotId: report.snapshotId } : {}) };
      },
    });

    // SIGHUP: read the file again; a bad file changes nothing
    const onHup = (): void => {
      readScheduled(file).then(
        (r) => {
          byName = new Map(r.all.map((p) => [p.name, p]));
          scheduler.reload(jobsOf(r.all));
          ctx.out.result(`${new Date().toISOString()} server: ${file} reloaded: ${r.scheduled.map((p) => `${p.name} (${p.schedule.text})`).join(', ')}`);
          ctx.out.jsonOut({ message_type: 'server', event: 'reload', policies: r.scheduled.map((p) => ({ name: p.name, schedule: p.schedule.text })) });
        },
        (err: unknown) => ctx.out.warn(`${file} was not reloaded (${err instanceof Error ? err.message : String(err)}): the server goes on with the policies it had; fix the file and send SIGHUP again`),
      );
    };
    process.on('SIGHUP', onHup);
    let stopSignal: (sig: Signal) => void = () => undefined;
    const stopped = new Promise<Signal>((res) => (stopSignal = res));
    let stopping = false;
    setInterruptHandler((sig) => {
      if (!stopping) {
        stopping = true;
        stopSignal(sig);
        return;
      }
      // a second signal: do not wait out the grace period
      exitInterrupted(`\nmeshback: interrupted again (${sig}): running policies abandoned; nothing already stored is lost; an unfinished snapshot was not saved\n`);
    });
    try {
      await scheduler.start();
      phase.starting = false;
      const sig = await stopped;
      ctx.out.result(`${new Date().toISOString()} server: ${sig} received`);
      const { abandoned } = await scheduler.stop(graceMs);
      if (abandoned.length > 0) {
        exitInterrupted(`meshback: server stopped: ${abandoned.join(', ')} did not finish within the grace period (--grace) and ${abandoned.length === 1 ? 'was' : 'were'} abandoned; nothing already stored is lost; an unfinished snapshot was not saved\n`);
        await new Promise(() => undefined); // exitInterrupted ends the process
      }
      return EXIT.OK;
    } catch (err) {
      throw err instanceof MeshbackError ? err : new MeshbackError('INTERNAL', String(err));
    } finally {
      process.off('SIGHUP', onHup);
      setInterruptHandler(undefined);
    }
  },
};

type ScheduledPolicyOf = Policy & { schedule: NonNullable<Policy['schedule']> };

/**
 * The scheduler's jobs of the policies: NAME for each policy's backup runs (on its schedule),
 * NAME/prune for a policy that prunes in a maintenance window (at the window's start).
 */
function jobsOf(all: Policy[]): ScheduledPolicy[] {
  return [
    ...all.filter((p): p is ScheduledPolicyOf => p.schedule !== undefined).map((p) => ({ name: p.name, schedule: p.schedule })),
    ...all.filter((p) => p.pruneWindow !== undefined).map((p) => ({ name: `${p.name}/prune`, schedule: windowStart(p.pruneWindow!) })),
  ];
}

/** The policy file's policies, and those with a schedule (at least one: else a UsageError). */
async function readScheduled(file: string): Promise<{ all: Policy[]; scheduled: ScheduledPolicyOf[] }> {
  const all = [...(await loadPolicyFile(file)).policies.values()];
  const scheduled = all.filter((p): p is ScheduledPolicyOf => p.schedule !== undefined);
  if (scheduled.length === 0 && !all.some((p) => p.pruneWindow !== undefined)) throw new UsageError(`no policy of ${file} has a schedule: give one a schedule (e.g. schedule: every 1h or schedule: cron: 0 2 * * *), or run it with 'meshback run POLICY --config ${file}'`);
  return { all, scheduled };
}

const REASON = { schedule: 'on schedule', 'catch-up': 'catch-up of a run missed while the server was down', 'first-run': 'first run, none recorded before' };

/** Prints scheduler events: one line per run start and end (--json: one object per event). */
function printer(ctx: Context, phase: { starting: boolean }): (e: SchedulerEvent) => void {
  return (e) => {
    if (e.type === 'warning') {
      ctx.out.warn(e.message);
      return;
    }
    const { type, ...rest } = e;
    ctx.out.jsonOut({ message_type: 'server', event: type, ...Object.fromEntries(Object.entries(rest).map(([k, val]) => [k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), val])) });
    switch (e.type) {
      case 'scheduled':
        // the first next-run time of each policy, not every re-arming
        if (phase.starting) ctx.out.result(`  ${e.policy}: next run ${e.next}`);
        return;
      case 'run-start':
        ctx.out.result(`${e.at} ${e.policy}: run started (${REASON[e.reason]})`);
        return;
      case 'run-end':
        ctx.out.result(`${e.at} ${e.policy}: ${e.ok ? 'ok' : `FAILED (${e.code ?? 'INTERNAL'})`} in ${e.durationSeconds.toFixed(2)} s${e.snapshotId !== undefined ? `, snapshot ${e.snapshotId.slice(0, 8)}` : ''}${!e.ok && e.message !== undefined ? `: ${e.message}` : ''}`);
        return;
      case 'clock-jump':
        ctx.out.result(`${e.at} server: the wall clock jumped ${e.jumpSeconds > 0 ? 'forward' : 'back'} by ${Math.abs(e.jumpSeconds)} s: schedules re-armed (a cron run whose time was skipped runs once now; one already made is not repeated)`);
        return;
      case 'tick-skipped':
        ctx.out.result(`${e.at} ${e.policy}: run skipped: ${e.reason}`);
        return;
      case 'waiting':
        ctx.out.result(`${e.at} ${e.policy}: due, waiting for a free slot (running: ${e.running.join(', ')})`);
        return;
      case 'stopping':
        ctx.out.result(`${e.at} server: stopping: no new runs${e.running.length > 0 ? `; waiting up to ${e.graceSeconds} s for ${e.running.join(', ')}` : ''}`);
        return;
      case 'stopped':
        ctx.out.result(`${e.at} server: stopped${e.abandoned.length > 0 ? `; abandoned ${e.abandoned.join(', ')}` : ''}`);
        return;
    }
  };
}
