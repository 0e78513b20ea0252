/**
 * policy/run: one run of one policy, what `meshback run` (and later the scheduler) calls:
 *
 *   pre hooks -> backup (sources, the policy's tags with policy=NAME, excludes; inside it the
 *   presets: started in order once the repository is open, finished in reverse order once the
 *   backup has read everything but their paths read last) -> post hooks -> retention (forget
 *   with the policy's keep rules, over the snapshots tagged policy=NAME) -> prune (when the
 *   policy asks) -> the report.
 *
 * A phase that fails ends the run: the phases after it are skipped and the on-error hooks run
 * (with MESHBACK_ERROR set); the report names the failure, which keeps its error code (a hook's
 * is HOOK). A backup that saved an incomplete snapshot (unreadable files) still runs the post
 * hooks but counts as a failure: retention is skipped (it must not let a complete snapshot go
 * for an incomplete one) and on-error runs. A failed post hook (e.g. pg_backup_stop) skips
 * retention for the same reason. The backup holds a shared lock, retention and prune an
 * exclusive one, each taken only for its phase. A dry run runs no hook and no backup: it opens the
 * repository without a lock and reports what retention would remove.
 *
 * A preset that fails (to start, or to finish after the backup read) is a failed phase `preset`
 * (code HOOK): no snapshot is saved, the presets started are finished (ok false), on-error runs.
 *
 * Anomalies (policy/anomaly.ts): after the backup, the policy's snapshots are checked for
 * ransomware-like change; while an alert is open (not acknowledged, `acknowledged`), retention
 * holds: neither the oldest open alert's snapshot nor any older one is forgotten, and the report
 * says so.
 *
 * The repository is opened through `open` (the CLI passes its storage stack and password);
 * the operations are the ones the commands use: archiver backup, maintenance forget and prune.
 */
import { backup } from '../archiver/index.ts';
import { MeshbackError, errMessage } from '../errors/index.ts';
import type { EventSink } from '../events/index.ts';
import { nullSink } from '../events/index.ts';
import { forget } from '../maintenance/forget.ts';
import type { ForgetResult } from '../maintenance/forget.ts';
import { prune } from '../maintenance/prune.ts';
import type { PruneResult } from '../maintenance/prune.ts';
import type { ExtraFile } from '../archiver/index.ts';
import type { Repository } from '../repository/index.ts';
import { localSource } from '../source/index.ts';
import type { Source } from '../source/index.ts';
import { hookError, runHook } from './hooks.ts';
import { createPresets, presetError, routeLast } from './presets/index.ts';
import type { PresetRun } from './presets/index.ts';
import type { HookPhase, HookResult } from './hooks.ts';
import type { Hook, Policy } from './load.ts';
import { inWindow, windowText } from './window.ts';
import { checkAnomalies } from './anomaly.ts';
import type { AnomalyCheck } from './anomaly.ts';

/** errors of the repository itself (not of one read): a run fails with them, the anomaly check does not hide them */
const REPOSITORY_ERRORS = new Set<string>(['REPO_NOT_FOUND', 'WRONG_PASSWORD', 'NO_PASSWORD', 'UNSUPPORTED_FORMAT']);

export type PhaseName = 'pre' | 'preset' | 'backup' | 'post' | 'retention' | 'prune' | 'on-error';
export type Outcome = 'ok' | 'failed' | 'skipped' | 'incomplete';

export interface PhaseReport {
  phase: PhaseName;
  outcome: Outcome;
  /** ISO times; absent for a skipped phase */
  started?: string;
  finished?: string;
  durationSeconds?: number;
  /** why it failed or was skipped */
  message?: string;
}

/** One preset's part of a run. */
export interface PresetReport {
  type: string;
  outcome: 'ok' | 'failed' | 'skipped';
  /** seconds its start() took */
  startSeconds?: number;
  /** seconds its finish() took */
  finishSeconds?: number;
  /** seconds from the end of its start() to the end of its finish(): how long the database was in backup mode, the filesystem frozen, the snapshot kept */
  heldSeconds?: number;
  /** why it failed or was skipped */
  message?: string;
}

export interface RunReport {
  policy: string;
  repository: string;
  dryRun: boolean;
  ok: boolean;
  started: string;
  finished: string;
  durationSeconds: number;
  phases: PhaseReport[];
  hooks: HookResult[];
  /** the policy's presets, in list order (absent when it has none) */
  presets?: PresetReport[];
  snapshotId?: string;
  backup?: { files: number; dirs: number; totalBytes: number; bytesRead: number; bytesAdded: number; bytesStored: number; errors: { path: string; message: string }[]; changedDuringRead: string[] };
  retention?: { kept: number; removed: number; wouldRemove: number; locked: number; removedIds: string[]; /** snapshots retention would remove that an open anomaly holds */ held?: number };
  /** the anomaly check after the backup (absent: not run, e.g. a maintenance run or a failed backup) */
  anomalies?: AnomalyCheck;
  /** what people should know that did not fail the run (an open anomaly holding retention) */
  warnings?: string[];
  prune?: PruneResult;
  /** the first failure: its error code and message */
  failure?: { phase: PhaseName; code: string; message: string };
}

export interface OpenedRepository {
  repo: Repository;
  close(): Promise<void>;
}

export interface RunOptions {
  /** opens the policy's repository with this lock (the front end's storage stack and password) */
  open(lock: 'none' | 'shared' | 'exclusive', command: string, loadIndex: boolean): Promise<OpenedRepository>;
  /** the repository location as hooks see it (MESHBACK_REPO) */
  repository: string;
  dryRun?: boolean;
  /** a maintenance run: prune only, now (what the server runs at the start of a policy's maintenance window) */
  maintenance?: boolean;
  /** the wall clock (ms), for the maintenance window (default Date.now) */
  now?: () => number;
  events?: EventSink;
  /** directories this process writes during a run besides the repository (the cache): the fsfreeze preset refuses to freeze theirs */
  writes?: string[];
  /** aborted when the run should stop (presets see it) */
  signal?: AbortSignal;
  /**
   * KEY=VALUE tags the snapshot gets beside the policy's (a triggered run's deploy tags); a key
   * the policy's tags already have is overridden; `policy` is meshback's and cannot be given.
   */
  tags?: string[];
  /** snapshot ids whose anomaly alerts were acknowledged (policy/acks.ts); absent: none */
  acknowledged?: ReadonlySet<string>;
}

/** The outcome of a run: its report, and the error that ended it (undefined when it succeeded). */
export interface RunOutcome {
  report: RunReport;
  error?: MeshbackError;
}

const PHASES: PhaseName[] = ['pre', 'preset', 'backup', 'post', 'retention', 'prune', 'on-error'];

/** Thrown out of the backup phase when the preset phase (inside it) failed; the error is the preset's. */
class PresetPhaseFailed extends Error {}

type BackupOptionsLike = import('../archiver/index.ts').BackupOptions;

class PhaseFailure extends Error {
  readonly error: MeshbackError;
  constructor(error: MeshbackError) {
    super(error.message);
    this.error = error;
  }
}

function asMeshbackError(err: unknown): MeshbackError {
  if (err instanceof PhaseFailure) return err.error;
  if (err instanceof MeshbackError) return err;
  return new MeshbackError('INTERNAL', errMessage(err), { cause: err });
}

/** The snapshot's tags: the policy's (policy=NAME first), those of `extra` replacing a policy tag of the same key; refuses a `policy` key or a malformed tag. */
export function runTags(policy: Policy, extra: readonly string[]): string[] {
  const key = (t: string): string => t.slice(0, t.indexOf('='));
  for (const t of extra) {
    if (!/^[^=\s]+=.*$/.test(t)) throw new MeshbackError('USAGE', `tag ${JSON.stringify(t)} is not KEY=VALUE`);
    if (key(t) === 'policy') throw new MeshbackError('USAGE', `tag ${JSON.stringify(t)}: the key policy is meshback's (policy=${policy.name}): use another key`);
  }
  const given = new Set(extra.map(key));
  return [...policy.tags.filter((t) => !given.has(key(t))), ...extra];
}

/** Runs `policy` once; never throws for a failed phase (the outcome carries the error). */
export async function runPolicy(policy: Policy, opts: RunOptions): Promise<RunOutcome> {
  const events = opts.events ?? nullSink;
  const dryRun = opts.dryRun === true;
  const t0 = performance.now();
  const started = new Date().toISOString();
  const phases = new Map<PhaseName, PhaseReport>();
  const hooks: HookResult[] = [];
  const report: Partial<RunReport> = {};
  let error: MeshbackError | undefined;
  let failedPhase: PhaseName | undefined;
  const env: Record<string, string> = { MESHBACK_POLICY: policy.name, MESHBACK_REPO: opts.repository };
  events({ type: 'op-start', op: 'run', at: started, detail: { policy: policy.name, sources: policy.sources, repository: opts.repository, dry_run: dryRun } });

  const skip = (phase: PhaseName, message: string): void => {
    phases.set(phase, { phase, outcome: 'skipped', message });
  };
  /** runs one phase, recording its times and outcome; a failure is recorded and ends the run */
  const phase = async (name: PhaseName, body: () => Promise<Outcome | void>): Promise<boolean> => {
    if (error !== undefined) {
      skip(name, `the ${failedPhase!} phase failed`);
      return false;
    }
    const s = new Date().toISOString();
    const p0 = performance.now();
    events({ type: 'phase', op: 'run', phase: name });
    const rec: PhaseReport = { phase: name, outcome: 'ok', started: s };
    phases.set(name, rec);
    try {
      const o = await body();
      if (o !== undefined) rec.outcome = o;
    } catch (err) {
      if (err instanceof PresetPhaseFailed && error !== undefined) {
        // the preset phase inside this one failed and recorded it
        rec.outcome = 'failed';
      } else {
        error = asMeshbackError(err);
        failedPhase = name;
        rec.outcome = 'failed';
        rec.message = error.message;
      }
    }
    rec.finished = new Date().toISOString();
    rec.durationSeconds = (performance.now() - p0) / 1000;
    return error === undefined;
  };
  const runHooks = async (ph: HookPhase, list: Hook[], stopOnFailure: boolean): Promise<HookResult | undefined> => {
    let failed: HookResult | undefined;
    for (const [i, h] of list.entries()) {
      const r = await runHook(h, ph, i + 1, env, events);
      hooks.push(r);
      if (r.outcome !== 'ok') {
        failed ??= r;
        if (stopOnFailure) break;
      }
    }
    return failed;
  };

  const maintenance = opts.maintenance === true;
  // prune runs after retention, or alone in a maintenance run; a policy with a window prunes only inside it
  const windowed = policy.pruneWindow !== undefined && !maintenance && !inWindow(policy.pruneWindow, (opts.now ?? Date.now)());
  const pruneNow = policy.prune && !dryRun && !windowed;
  if (maintenance) {
    for (const p of ['pre', 'preset', 'backup', 'post', 'retention'] as const) skip(p, 'maintenance run: prune only');
  } else if (dryRun) {
    skip('pre', 'dry run: no hook runs');
    skip('preset', 'dry run: no preset runs');
    skip('backup', 'dry run: nothing is backed up');
    skip('post', 'dry run: no hook runs');
  } else {
    if (policy.hooks.pre.length === 0) skip('pre', 'no pre hooks');
    else
      await phase('pre', async () => {
        const f = await runHooks('pre', policy.hooks.pre, true);
        if (f !== undefined) throw new PhaseFailure(hookError(f));
      });
    let incomplete: MeshbackError | undefined;
    const presets: PresetRun[] = createPresets(policy.presets ?? [], { policy: policy.name, sources: policy.sources, env, events, signal: opts.signal ?? new AbortController().signal, repository: opts.repository, ...(opts.writes !== undefined ? { writes: opts.writes } : {}) });
    const preports: PresetReport[] = presets.map((p) => ({ type: p.name, outcome: 'skipped', message: 'the run did not get to it' }));
    if (presets.length > 0) report.presets = preports;
    const startedAt = new Map<PresetRun, number>();
    const finished = new Set<PresetRun>();
    let presetFailure: MeshbackError | undefined;
    /** finishes the presets started and not finished, in reverse order; after a failure the rest get ok false; returns the first failure */
    const finishAll = async (ok: boolean): Promise<MeshbackError | undefined> => {
      let first: MeshbackError | undefined;
      for (let i = presets.length - 1; i >= 0; i--) {
        const p = presets[i]!;
        if (!startedAt.has(p) || finished.has(p)) continue;
        finished.add(p);
        const rep = preports[i]!;
        const t = performance.now();
        try {
          await p.finish(ok && first === undefined);
        } catch (err) {
          const e = presetError(p.name, err);
          first ??= e;
          rep.outcome = 'failed';
          rep.message = e.message;
        }
        rep.finishSeconds = (performance.now() - t) / 1000;
        rep.heldSeconds = (performance.now() - startedAt.get(p)!) / 1000;
      }
      return first;
    };
    await phase('backup', async () => {
      const o = await opts.open('shared', `run ${policy.name}`, true);
      try {
        let source: Source | undefined;
        let extra: Pick<BackupOptionsLike, 'omit' | 'last'> = {};
        if (presets.length > 0) {
          // the presets start once the repository is open (a locked repository fails before anything is frozen)
          const started = await phase('preset', async () => {
            for (const [i, p] of presets.entries()) {
              const t = performance.now();
              try {
                await p.start();
              } catch (err) {
                preports[i]!.outcome = 'failed';
                preports[i]!.message = presetError(p.name, err).message;
                preports[i]!.startSeconds = (performance.now() - t) / 1000;
                throw new PhaseFailure(presetError(p.name, err));
              }
              preports[i]!.outcome = 'ok';
              delete preports[i]!.message;
              preports[i]!.startSeconds = (performance.now() - t) / 1000;
              startedAt.set(p, performance.now());
            }
          });
          if (!started) throw new PresetPhaseFailed();
          const readLast = presets.flatMap((p) => p.readLast ?? []);
          source = routeLast(presets.reduce<Source>((s, p) => p.source?.(s) ?? s, localSource), localSource, readLast);
          extra = {
            omit: presets.flatMap((p) => p.omit ?? []),
            last: {
              paths: readLast,
              ready: async (): Promise<ExtraFile[]> => {
                const e = await finishAll(true);
                if (e !== undefined) {
                  presetFailure = e;
                  throw e;
                }
                return presets.flatMap((p) => p.extraFiles?.() ?? []);
              },
            },
          };
        }
        const r = await backup(o.repo, { paths: policy.sources, tags: runTags(policy, opts.tags ?? []), excludes: policy.exclude, events, ...(source !== undefined ? { source } : {}), ...extra });
        report.snapshotId = r.id;
        env['MESHBACK_SNAPSHOT_ID'] = r.id;
        const s = r.snapshot.summary;
        report.backup = { files: s.files, dirs: s.dirs, totalBytes: s.totalBytes, bytesRead: s.bytesRead, bytesAdded: s.bytesAdded, bytesStored: s.bytesStored, errors: r.errors, changedDuringRead: r.changedDuringRead };
        if (r.errors.length > 0) {
          incomplete = new MeshbackError('INCOMPLETE', `snapshot ${r.id.slice(0, 8)} of policy ${policy.name} is incomplete: ${r.errors.length} item(s) could not be read (the first: ${r.errors[0]!.path}: ${r.errors[0]!.message}); fix their permissions`);
          return 'incomplete';
        }
      } finally {
        // a backup that failed (or a preset that failed to start): undo what the presets did
        await finishAll(false);
        for (const p of presets) if (startedAt.has(p)) await p.close?.().catch(() => undefined);
        await o.close();
      }
    });
    // a preset's failure is the preset phase's, not the backup's
    if (error !== undefined && (failedPhase === 'preset' || error === presetFailure || phases.get('preset')?.outcome === 'failed')) {
      const b = phases.get('backup')!;
      if (presetFailure !== undefined && error === presetFailure) {
        const pr = phases.get('preset')!;
        pr.outcome = 'failed';
        pr.message = presetFailure.message;
        b.message = `no snapshot was saved: ${presetFailure.message}`;
      } else {
        b.outcome = 'skipped';
        b.message = 'the preset phase failed';
        delete b.started;
        delete b.finished;
        delete b.durationSeconds;
      }
      failedPhase = 'preset';
    }
    if (!phases.has('preset')) skip('preset', presets.length === 0 ? 'no presets' : `the ${failedPhase ?? 'backup'} phase failed`);
    if (error !== undefined) skip('post', `the ${failedPhase!} phase failed`);
    else if (policy.hooks.post.length === 0) skip('post', 'no post hooks');
    else
      await phase('post', async () => {
        const f = await runHooks('post', policy.hooks.post, true);
        if (f !== undefined) throw new PhaseFailure(hookError(f));
      });
    if (error === undefined && incomplete !== undefined) {
      error = incomplete;
      failedPhase = 'backup';
    }
  }

  // anomalies: the new snapshot against the policy's history, and the alerts still open
  const warnings: string[] = [];
  let unchecked = false;
  if (!maintenance && error === undefined) {
    try {
      const o = await opts.open('none', `run ${policy.name} (anomaly check)`, false);
      try {
        report.anomalies = checkAnomalies(await o.repo.listSnapshots(), policy.name, opts.acknowledged ?? new Set(), report.snapshotId);
      } finally {
        await o.close();
      }
    } catch (err) {
      const e = asMeshbackError(err);
      // no repository, a wrong password: retention meets the same error and fails the run with it (exit 10, 12)
      if (!REPOSITORY_ERRORS.has(e.code)) {
        unchecked = true;
        warnings.push(`the anomaly check of policy ${policy.name} could not read its snapshots (${e.message}): no alert was raised, and retention waits for a run whose check succeeds`);
      }
    }
    const open = report.anomalies?.open ?? [];
    if (open.length > 0)
      warnings.push(
        `${open.length} open anomal${open.length > 1 ? 'ies' : 'y'} (the oldest: ${open[0]!.kind} in snapshot ${open[0]!.snapshot.slice(0, 8)} at ${open[0]!.time}: ${open[0]!.message}): retention is held, neither that snapshot nor any older one is forgotten; look at meshback advise ${policy.name}, then acknowledge with meshback advise ${policy.name} --ack ${open[0]!.snapshot.slice(0, 8)}`,
      );
  }
  const hold = report.anomalies?.holdBefore;

  let forgot: ForgetResult | undefined;
  if (maintenance && policy.prune)
    await phase('prune', async () => {
      const o = await opts.open(dryRun ? 'none' : 'exclusive', `run ${policy.name} (maintenance)`, true);
      try {
        if (!dryRun) report.prune = await prune(o.repo, { events });
      } finally {
        await o.close();
      }
    });
  else if (maintenance) skip('retention', 'maintenance run: prune only');
  else if (error !== undefined) skip('retention', `the ${failedPhase!} phase failed`);
  else if (policy.retention === undefined) skip('retention', 'the policy has no retention rules');
  else if (unchecked) skip('retention', 'the anomaly check failed: an open anomaly may hold retention');
  else
    await phase('retention', async () => {
      const o = await opts.open(dryRun ? 'none' : 'exclusive', `run ${policy.name}`, pruneNow);
      try {
        // an open anomaly: decide without removing, then remove only what is newer than its snapshot
        // (the anomaly's own snapshot and those before it stay: the evidence, and the baseline it is detected against)
        forgot = await forget(o.repo, { policy: policy.retention!, tags: [`policy=${policy.name}`], dryRun: dryRun || hold !== undefined, events });
        let removedIds = forgot.groups.flatMap((g) => g.remove.map((d) => d.item.id)).filter((id) => !forgot!.locked.some((l) => l.id === id));
        if (hold === undefined) report.retention = { kept: forgot.kept, removed: forgot.removed, wouldRemove: forgot.wouldRemove, locked: forgot.locked.length, removedIds: dryRun ? [] : removedIds };
        else {
          const older = new Set(forgot.groups.flatMap((g) => g.remove).filter((d) => Date.parse(d.item.snapshot.time) <= Date.parse(hold)).map((d) => d.item.id));
          removedIds = removedIds.filter((id) => !older.has(id));
          const removed = !dryRun && removedIds.length > 0 ? (await forget(o.repo, { ids: removedIds, events })).removed : 0;
          report.retention = { kept: forgot.kept + older.size, removed, wouldRemove: dryRun ? removedIds.length : 0, locked: forgot.locked.length, removedIds: dryRun ? [] : removedIds, held: older.size };
        }
        if (pruneNow) {
          phases.set('prune', { phase: 'prune', outcome: 'ok', started: new Date().toISOString() });
          const p0 = performance.now();
          try {
            report.prune = await prune(o.repo, { events });
          } catch (err) {
            const rec = phases.get('prune')!;
            rec.outcome = 'failed';
            rec.finished = new Date().toISOString();
            rec.durationSeconds = (performance.now() - p0) / 1000;
            const e = asMeshbackError(err);
            rec.message = e.message;
            throw new PhaseFailure(e);
          }
          const rec = phases.get('prune')!;
          rec.finished = new Date().toISOString();
          rec.durationSeconds = (performance.now() - p0) / 1000;
        }
      } finally {
        await o.close();
      }
    });
  if (!phases.has('prune'))
    skip(
      'prune',
      !policy.prune
        ? 'the policy does not prune'
        : dryRun
          ? 'dry run: prune runs after a real retention'
          : error !== undefined
            ? `the ${failedPhase!} phase failed`
            : windowed
              ? `outside the maintenance window ${windowText(policy.pruneWindow!)}: the server prunes at its start (or run meshback run ${policy.name} --maintenance in it)`
              : 'no retention ran',
    );
  // a prune that failed inside the retention phase: the failure is prune's, retention itself succeeded
  if (!maintenance && phases.get('prune')?.outcome === 'failed') {
    const r = phases.get('retention')!;
    r.outcome = 'ok';
    delete r.message;
    failedPhase = 'prune';
  }

  if (dryRun) skip('on-error', 'dry run: no hook runs');
  else if (error !== undefined && policy.hooks.onError.length > 0) {
    const failure = error as MeshbackError;
    env['MESHBACK_ERROR'] = failure.message;
    env['MESHBACK_FAILED_PHASE'] = failedPhase!;
    const s = new Date().toISOString();
    const p0 = performance.now();
    const f = await runHooks('on-error', policy.hooks.onError, false);
    phases.set('on-error', { phase: 'on-error', outcome: f === undefined ? 'ok' : 'failed', started: s, finished: new Date().toISOString(), durationSeconds: (performance.now() - p0) / 1000, ...(f !== undefined ? { message: f.error ?? 'failed' } : {}) });
  } else skip('on-error', error !== undefined ? 'no on-error hooks' : 'nothing failed');

  const full: RunReport = {
    policy: policy.name,
    repository: opts.repository,
    dryRun,
    ok: error === undefined,
    started,
    finished: new Date().toISOString(),
    durationSeconds: (performance.now() - t0) / 1000,
    phases: PHASES.map((p) => phases.get(p)!),
    hooks,
    ...report,
    ...(warnings.length > 0 ? { warnings } : {}),
    ...(error !== undefined ? { failure: { phase: failedPhase!, code: (error as MeshbackError).code, message: (error as MeshbackError).message } } : {}),
  };
  events({ type: 'summary', op: 'run', ok: full.ok, durationSeconds: full.durationSeconds, result: full, ...(error !== undefined ? { error: (error as MeshbackError).message } : {}) });
  return { report: full, ...(error !== undefined ? { error } : {}) };
}
