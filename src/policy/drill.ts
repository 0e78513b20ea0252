/**
 * policy/drill: a restore drill of a policy, what `meshback drill POLICY` and the server's
 * `NAME/drill` job run. A backup nobody restored is a hope: the drill proves the newest one.
 *
 *   newest snapshot tagged policy=NAME -> restore it, verified, into a scratch directory ->
 *   the drill's check hook on the restored data -> delete the scratch directory -> the report.
 *
 * The restore is the restorer's with `verify` (src/restorer): every chunk authenticated and
 * re-hashed before it is written, every file synced, read back and compared with the snapshot;
 * there is no second verifier here. The RTO is the wall time of that restore and verification.
 * The repository is held with a shared lock for the restore only (a backup of the same policy may
 * run meanwhile; a prune waits): the check runs after it is released. The scratch directory is
 * the drill's `target` (absent or empty; never one of the policy's sources) or a new directory
 * under the scratch directory the front end gives (mode 0700: restored data is the backup's, not
 * for other users); it is deleted afterwards, also after a failure unless `keep-on-failure`, and
 * when the process exits in the middle (interrupted). A given target is marked while a drill uses
 * it (writeMarker): what a killed drill left there is emptied by the next drill.
 *
 * A failed drill is an alert: its error is one line that says which snapshot, what failed and
 * what to do, with the code of what failed (INTEGRITY: damaged or missing data; HOOK: the check;
 * NOT_FOUND: no snapshot; anything else the restore's own).
 */
import { promises as fsp, readdirSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { IntegrityError, MeshbackError, NotFoundError, UsageError, errMessage, isErrno } from '../errors/index.ts';
import type { EventSink } from '../events/index.ts';
import { nullSink } from '../events/index.ts';
import { restore } from '../restorer/index.ts';
import type { RestoreResult } from '../restorer/index.ts';
import type { SnapshotRef } from '../snapshot/manifest.ts';
import { processExists } from '../host/process.ts';
import { runHook } from './hooks.ts';
import type { HookResult } from './hooks.ts';
import { overlap } from './load.ts';
import { int, parseJson, safeParse, v } from '../util/schema.ts';
import type { Policy } from './load.ts';
import type { RunOptions } from './run.ts';

export interface DrillReport {
  policy: string;
  repository: string;
  /** the snapshot restored (absent when there was none) */
  snapshotId?: string;
  /** its time (when its backup started) */
  snapshotTime?: string;
  ok: boolean;
  started: string;
  finished: string;
  /** recovery time: the wall time of the restore and its verification */
  rtoSeconds: number;
  restoredFiles: number;
  restoredBytes: number;
  /** every restored file was read back and matched the snapshot, and nothing was left out as damaged */
  verified: boolean;
  /** the check hook's result (absent: no check, or the restore failed first) */
  check?: HookResult;
  /** where it was restored */
  restoreDir?: string;
  /** the restored data was kept (a failure with keep-on-failure) */
  kept?: boolean;
  /** files left out as damaged or missing (the first 20) */
  damaged?: string[];
  /** items that could not be made but hold no data (device nodes without root...) */
  warnings?: string[];
  failure?: { code: string; message: string };
}

export interface DrillOptions extends Pick<RunOptions, 'open' | 'repository'> {
  /** where a drill without a `target` makes its directory (created 0700 if missing) */
  scratchDir: string;
  events?: EventSink;
}

/** The newest snapshot tagged policy=NAME of `all` (oldest first, as listSnapshots returns), or undefined. */
export function newestOfPolicy(all: readonly SnapshotRef[], policy: string): SnapshotRef | undefined {
  const tag = `policy=${policy}`;
  for (let i = all.length - 1; i >= 0; i--) if (all[i]!.snapshot.tags.includes(tag)) return all[i];
  return undefined;
}

function asMeshbackError(err: unknown): MeshbackError {
  return err instanceof MeshbackError ? err : new MeshbackError('INTERNAL', errMessage(err), { cause: err });
}

/** The drill's directory: `target` checked (absent or empty, apart from the sources), else a new one under scratchDir. */
async function scratchFor(policy: Policy, scratchDir: string, events: EventSink): Promise<{ dir: string; created: boolean }> {
  const target = policy.drill?.target;
  const dir = target ?? path.resolve(scratchDir);
  for (const s of policy.sources) {
    const o = overlap(dir, s);
    // a scratch directory holding a source (`--scratch-dir /`) is fine: the drill makes its own directory in it
    if (o !== undefined && (target !== undefined || o !== 'contains')) {
      throw new UsageError(`the drill's ${target !== undefined ? 'target' : 'scratch directory'} ${dir} ${o} the source ${s} of policy ${policy.name}: a drill restores there and deletes what it restored; give a directory apart from the sources`);
    }
  }
  if (target === undefined) {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    return { dir: await fsp.mkdtemp(path.join(dir, `drill-${policy.name}-`)), created: true };
  }
  let names: string[];
  try {
    names = await fsp.readdir(target);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) {
      await fsp.mkdir(target, { recursive: true, mode: 0o700 });
      await writeMarker(target, policy.name);
      return { dir: target, created: true };
    }
    if (isErrno(err, 'ENOTDIR')) throw new MeshbackError('TARGET', `the drill target ${target} of policy ${policy.name} is not a directory: set drill.target to an empty directory (or one that does not exist)`);
    throw new MeshbackError('TARGET', `the drill target ${target} of policy ${policy.name} cannot be read (${errMessage(err)}): fix its permissions or set another drill.target`);
  }
  if (names.length > 0) {
    const stale = await staleDrill(target);
    if (stale === undefined) throw new MeshbackError('TARGET', `the drill target ${target} of policy ${policy.name} is not empty (${names.length} entries; the data of a drill kept after a failure?): look at it, empty it and run the drill again`);
    // what a killed drill restored (its marker is there and its process is gone): emptied, as that drill would have
    await removeScratch(target, false);
    events({ type: 'warning', message: `drill of policy ${policy.name}: the target ${target} held the data of a drill that did not finish (process ${stale.pid}, started ${stale.started}, killed?): emptied` });
  }
  await writeMarker(target, policy.name);
  return { dir: target, created: false };
}

/**
 * A drill that restores into a given target marks it in a file beside it (its parent directory),
 * named after it, holding the drill's process id; the marker goes when the drill has removed its
 * data, and also when keep-on-failure keeps the data on purpose. A target that is not empty and
 * whose marker names a process that is no longer running (SIGKILL, a crash, a node lost) holds
 * only what that drill restored. Where the marker cannot be written (a parent without write
 * permission), a later drill finds the target not empty and stops, as without it.
 */
const MarkerSchema = v.object({ pid: int(1), policy: v.string(), started: v.string() });

const markerOf = (target: string): string => path.join(path.dirname(target), `.${path.basename(target)}.meshback-drill`);

async function writeMarker(target: string, policy: string): Promise<void> {
  await fsp.writeFile(markerOf(target), JSON.stringify({ pid: process.pid, policy, started: new Date().toISOString() }) + '\n', { mode: 0o600 }).catch(() => undefined);
}

function removeMarker(target: string): Promise<void> {
  return fsp.rm(markerOf(target), { force: true }).catch(() => undefined);
}

/** The marker of a target if the drill it names is gone: its process is not running, or it is this process and runs no drill there. */
async function staleDrill(target: string): Promise<{ pid: number; started: string } | undefined> {
  let r: ReturnType<typeof safeParse<typeof MarkerSchema>>;
  try {
    r = safeParse(MarkerSchema, parseJson(await fsp.readFile(markerOf(target), 'utf8'), (m) => new Error(m)));
  } catch {
    return undefined; // no marker, or not one of ours: the target stays as it is
  }
  if (!r.success) return undefined;
  const { pid, started } = r.output;
  if (pid === process.pid) return active.has(target) ? undefined : { pid, started };
  // running: perhaps that drill, still going
  return processExists(pid) ? undefined : { pid, started };
}

/** The scratch directories of drills going on: removed if this process exits first (interrupted), like a hook's process group is ended. */
const active = new Map<string, boolean>();
let exitHook = false;
function track(dir: string, created: boolean): void {
  active.set(dir, created);
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const [d, made] of active) {
      try {
        if (made) rmSync(d, { recursive: true, force: true });
        else for (const n of readdirSync(d)) rmSync(path.join(d, n), { recursive: true, force: true });
        rmSync(markerOf(d), { force: true });
      } catch {
        // left behind: the next drill with this target says it is not empty
      }
    }
  });
}

/** Removes what the drill restored: the directory (made by the drill) or its contents (a given empty target). */
async function removeScratch(dir: string, created: boolean): Promise<void> {
  const rm = async (): Promise<void> => {
    if (created) await fsp.rm(dir, { recursive: true, force: true });
    else for (const n of await fsp.readdir(dir)) await fsp.rm(path.join(dir, n), { recursive: true, force: true });
  };
  try {
    await rm();
  } catch (err) {
    if (!isErrno(err, 'EACCES') && !isErrno(err, 'EPERM')) throw err;
    // restored directories without write permission (a snapshot's 0555 directory, not as root): opened up, then removed
    await openUp(dir);
    await rm();
  }
}

async function openUp(dir: string): Promise<void> {
  const stack = [dir];
  for (let n = 0; stack.length > 0 && n < 10_000_000; n++) {
    const d = stack.pop()!;
    await fsp.chmod(d, 0o700).catch(() => undefined);
    const entries = await fsp.readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) if (e.isDirectory()) stack.push(path.join(d, e.name));
  }
}

/** Runs one drill of `policy`; never throws for a failed drill (the outcome carries the error). */
export async function runDrill(policy: Policy, opts: DrillOptions): Promise<{ report: DrillReport; error?: MeshbackError }> {
  const events = opts.events ?? nullSink;
  const started = new Date().toISOString();
  const t0 = performance.now();
  const report: DrillReport = { policy: policy.name, repository: opts.repository, ok: false, started, finished: started, rtoSeconds: 0, restoredFiles: 0, restoredBytes: 0, verified: false };
  events({ type: 'op-start', op: 'drill', at: started, detail: { policy: policy.name, repository: opts.repository, ...(policy.drill?.target !== undefined ? { target: policy.drill.target } : {}) } });
  let error: MeshbackError | undefined;
  let scratch: { dir: string; created: boolean } | undefined;
  let snap: SnapshotRef | undefined;
  const short = (): string => `snapshot ${snap!.id.slice(0, 8)} (${snap!.snapshot.time})`;
  try {
    // the snapshot and the restore, under a shared lock
    events({ type: 'phase', op: 'drill', phase: 'restore' });
    const o = await opts.open('shared', `drill ${policy.name}`, true);
    let r: RestoreResult;
    try {
      snap = newestOfPolicy(await o.repo.listSnapshots(), policy.name);
      if (snap === undefined) throw new NotFoundError(`policy ${policy.name} has no snapshot in ${opts.repository} to drill (a drill restores the newest snapshot tagged policy=${policy.name}): run the policy first (meshback run ${policy.name} --config FILE)`, { policy: policy.name });
      report.snapshotId = snap.id;
      report.snapshotTime = snap.snapshot.time;
      scratch = await scratchFor(policy, opts.scratchDir, events);
      track(scratch.dir, scratch.created);
      report.restoreDir = scratch.dir;
      const r0 = performance.now();
      try {
        r = await restore(o.repo, { snapshot: snap.id, target: scratch.dir, verify: true, events });
      } catch (err) {
        const e = asMeshbackError(err);
        throw new MeshbackError(e.code, `drill of policy ${policy.name} failed: ${short()} could not be restored: ${e.message}`, { cause: e, data: e.data });
      } finally {
        report.rtoSeconds = (performance.now() - r0) / 1000;
      }
    } finally {
      await o.close();
    }
    report.restoredFiles = r.files;
    report.restoredBytes = r.bytes;
    const warnings = r.errors.filter((e) => !r.damaged.includes(e.path));
    if (warnings.length > 0) report.warnings = warnings.slice(0, 20).map((e) => `${e.path}: ${e.message}`);
    if (r.damaged.length > 0) {
      report.damaged = r.damaged.slice(0, 20);
      throw new IntegrityError(
        `drill of policy ${policy.name} failed: ${short()} cannot be restored intact: ${r.damaged.length} file(s) damaged or missing in the repository (the first: ${r.damaged[0]!}); run 'meshback check --read-data' to find the damage, repair it ('meshback repair packs', 'repair snapshots') and back the policy up again`,
        { policy: policy.name, snapshot: snap!.id, damaged: r.damaged.length },
      );
    }
    report.verified = r.filesReread === r.files - r.hardlinks;
    // the check, on the verified data, without the repository lock
    const check = policy.drill?.check;
    if (check !== undefined) {
      events({ type: 'phase', op: 'drill', phase: 'check' });
      const env = { MESHBACK_POLICY: policy.name, MESHBACK_REPO: opts.repository, MESHBACK_SNAPSHOT_ID: snap!.id, MESHBACK_RESTORE_DIR: scratch!.dir };
      report.check = await runHook(check, 'check', 1, env, events);
      if (report.check.outcome !== 'ok') {
        throw new MeshbackError('HOOK', `drill of policy ${policy.name} failed: ${short()} was restored and verified, but its check failed: ${report.check.error ?? 'failed'}; the backup may not be usable: fix what the check found (the backup's consistency, e.g. a preset for a database) or the check`, {
          data: { policy: policy.name, snapshot: snap!.id, exit_code: report.check.exitCode },
        });
      }
    }
  } catch (err) {
    error = asMeshbackError(err);
  }
  if (scratch !== undefined) {
    active.delete(scratch.dir);
    if (error !== undefined && policy.drill?.keepOnFailure === true) {
      report.kept = true;
      events({ type: 'warning', message: `drill of policy ${policy.name}: the restored data is kept in ${scratch.dir} (keep-on-failure): delete it when done` });
    } else {
      try {
        await removeScratch(scratch.dir, scratch.created);
      } catch (err) {
        events({ type: 'warning', message: `drill of policy ${policy.name}: the restored data in ${scratch.dir} could not be deleted (${errMessage(err)}): delete it by hand` });
      }
    }
    // kept or not, the data left (if any) is no longer a killed drill's: the next drill stops at it
    if (policy.drill?.target !== undefined) await removeMarker(scratch.dir);
  }
  report.ok = error === undefined;
  report.finished = new Date().toISOString();
  if (error !== undefined) report.failure = { code: error.code, message: error.message };
  events({ type: 'summary', op: 'drill', ok: report.ok, durationSeconds: (performance.now() - t0) / 1000, result: report, ...(error !== undefined ? { error: error.message } : {}) });
  return { report, ...(error !== undefined ? { error } : {}) };
}
