/**
 * The application-level scenarios (app-container-crash, app-node-outage): the same tool, strategy
 * and repository as every other cell, but what is protected is a running service mesh, the
 * testbed of lab/testbed (docs/design.md, "Testbed"), and recovery is judged as a service: does
 * it start on the restored volumes, pass its own checks, serve, and hold the acknowledged writes.
 *
 *   setup     a fresh testbed in the repeat's work directory: 2 services (orders -> PostgreSQL,
 *             sessions -> Redis), each behind its own nginx sidecar, every container's state on
 *             its own volume: directories for the tools' own strategies, loop-mounted btrfs for
 *             the snapshot strategy. The repeat's data set (--size) is copied onto the orders
 *             volume as the service's static content (static/), so that backup and restore carry
 *             the run's size and the restore gets a file-level integrity verdict too.
 *   load      40 requests/s through the sidecars for 3 s, every acknowledged write journaled
 *             outside the volumes (testbed load); then the load goes on, at the same rate, while
 *   backup-1  0.3-0.8 s later (seeded) the tool backs up every volume in one run, live: the
 *             directory holding them all (Testbed.volumesRoot()), or for the snapshot strategy a
 *             read-only btrfs snapshot of each volume, the snapshots bind-mounted side by side
 *   fault     1.5-2.5 s (seeded) after the backup, still under load (the spec's fault); the load
 *             stops
 *   recovery  the tool restores its latest backup into a fresh directory; the volumes the fault
 *             took (container crash: those of the crashed containers; node outage: all) are
 *             replaced by the restored ones and the testbed's verify starts what is not running
 *   verify    Testbed.verify: nginx -t, every component starts and answers, traffic through
 *             every sidecar, PostgreSQL amcheck, Redis data loaded, every acknowledged write
 *             looked up; the static content against the data set's manifest (integrity)
 *   RPO       the testbed's: writes lost, and the fault minus the last surviving write (seconds)
 *   RTO       the testbed's: the fault to the first successful request through every sidecar
 *             after recovery (the restore included), less the time injecting the fault took
 *             (killing, deleting the volumes: instantaneous in a real outage; a busy disk can
 *             stretch the deletion to seconds, which would be charged to the tool of the moment)
 *
 * The testbed is always stopped (and its directory deleted) before the repeat ends.
 */
import { promises as fsp, statSync } from 'node:fs';
import * as path from 'node:path';
import { Rng, deriveSeed } from '../../../gen/rng.ts';
import { startTestbed } from '../../../testbed/index.ts';
import type { FaultKind, LoadResult, Testbed, TestbedVolume, VerifyReport } from '../../../testbed/index.ts';
import { isRoot } from '../../../../src/host/packages.ts';
import { run } from '../../../../src/host/process.ts';
import { hashedManifest, integrityOf, sleep, stepFailure, stepSucceeded } from '../common.ts';
import type { PointInTime } from '../../../../src/volumes/index.ts';
import type { AppRecovery, RepeatResult, Scenario, ScenarioContext, ScenarioId, StepResult, Volume } from '../types.ts';

const MiB = 1024 * 1024;
/** requests per second through the sidecars (all services together) */
export const APP_RATE = 40;
const WARMUP_SECONDS = 3;
/** the load during the backup and up to the fault is stopped at the fault; this only bounds it */
const LOAD_CAP_SECONDS = 300;
/** how long verify waits for each component and for the services to answer */
const VERIFY_TIMEOUT_SECONDS = 30;
/** where the data set goes on the orders volume */
export const STATIC_DIR = 'static';

export interface AppScenarioSpec {
  id: ScenarioId;
  title: string;
  description: string;
  fault: Extract<FaultKind, 'container-crash' | 'node-outage'>;
  /** containers the fault hits (container crash); their volumes are the ones restored */
  targets?: string[];
}

/** A Scenario running `spec` on the testbed. */
export function appScenario(spec: AppScenarioSpec): Scenario {
  return {
    id: spec.id,
    title: spec.title,
    description: spec.description,
    run: (ctx) => runApp(ctx, spec),
  };
}

/**
 * As root, PostgreSQL and Redis run as their own users: every directory above the testbed must be
 * searchable by others. Throws a one-line error naming the first that is not.
 */
function checkReachable(dir: string): void {
  if (!isRoot()) return;
  for (let d = path.dirname(dir); ; d = path.dirname(d)) {
    const mode = statSync(d).mode;
    if ((mode & 0o001) === 0) {
      throw new Error(`the testbed's PostgreSQL and Redis run as their own users and cannot reach ${dir}: ${d} is not searchable by other users (mode ${(mode & 0o777).toString(8)}); give --work a directory they can enter, e.g. under /tmp`);
    }
    if (path.dirname(d) === d) return;
  }
}

/** Unmounts a bind mount (retrying while busy, lazily at last) and removes its mount point. */
async function unbind(mount: string): Promise<void> {
  let last = '';
  for (let i = 0; i < 20; i++) {
    try {
      await run(['umount', mount]);
      await fsp.rmdir(mount);
      return;
    } catch (err) {
      last = (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
      await sleep(100);
    }
  }
  await run(['umount', '-l', mount]).catch(() => undefined);
  await fsp.rmdir(mount).catch(() => undefined);
  throw new Error(`${mount} stayed busy (${last}): detached lazily`);
}

/**
 * The snapshot strategy's view of the testbed: a read-only btrfs snapshot of every volume, each
 * bind-mounted at VIEW/NAME, so that the tool backs them all up in one run from one path (the
 * same path every time, as restic and borg restore by it). Each volume is a point in time of its
 * own (the snapshots are taken one after another, not across volumes at once): what a CSI
 * VolumeSnapshot per PVC gives. release() unmounts and deletes them.
 */
async function snapshotView(volumes: TestbedVolume[], view: string): Promise<PointInTime> {
  await fsp.mkdir(view, { recursive: true, mode: 0o755 });
  const taken: { mount?: string; release(): Promise<void> }[] = [];
  const release = async (): Promise<void> => {
    const problems: string[] = [];
    for (const t of taken.splice(0).reverse()) {
      if (t.mount !== undefined) await unbind(t.mount).catch((err: unknown) => void problems.push(err instanceof Error ? err.message : String(err)));
      await t.release().catch((err: unknown) => void problems.push(err instanceof Error ? err.message : String(err)));
    }
    if (problems.length > 0) throw new Error(problems.join('; '));
  };
  try {
    for (const v of volumes) {
      const snap = await v.snapshot();
      const entry: { mount?: string; release(): Promise<void> } = { release: snap.release };
      taken.push(entry);
      const mount = path.join(view, v.name);
      await fsp.mkdir(mount);
      await run(['mount', '--bind', snap.path, mount]);
      entry.mount = mount;
    }
  } catch (err) {
    await release().catch(() => undefined);
    throw err;
  }
  return { path: view, atomic: true, release };
}

const firstLine = (err: unknown): string => (err instanceof Error ? err.message : String(err)).split('\n')[0]!;

/** The testbed's verification as the results' AppRecovery. */
export function appRecovery(v: VerifyReport): AppRecovery {
  return {
    healthy: v.healthy,
    checks: v.checks.map((c) => ({ name: `${c.name} ${c.target}`, ok: c.ok, detail: c.message })),
    writesAcknowledged: v.writesAcknowledged,
    writesLost: v.writesLost,
    lostBeforeBackup: v.lostBeforeBackup ?? 0,
  };
}

const STORE_NAMES: Record<string, string> = { postgres: 'PostgreSQL', redis: 'Redis' };

/** Footnotes: the load and what each service lost (one line), durable data lost, the checks that failed. */
function verifyNotes(v: VerifyReport, loads: LoadResult[], restored: string[]): string[] {
  const notes: string[] = [];
  const sent = loads.reduce((a, l) => a + l.sent, 0);
  const failed = loads.reduce((a, l) => a + l.writesFailed, 0);
  const services = v.services.map((s) => `${s.service} (${STORE_NAMES[s.store] ?? s.store}): ${s.acknowledged} acknowledged, ${s.lost} lost${s.lost > 0 && s.rpoSeconds !== null ? ` (RPO ${s.rpoSeconds.toFixed(2)} s)` : ''}`);
  notes.push(`load: ${sent} requests at ${APP_RATE}/s through the sidecars${failed > 0 ? `, ${failed} write(s) failed (from the fault on)` : ''}; up to the fault ${services.join('; ')}`);
  notes.push(`restored with the tool and handed to the testbed: volume${restored.length > 1 ? 's' : ''} ${restored.join(', ')}`);
  for (const s of v.services) {
    if ((s.lostBeforeBackup ?? 0) > 0) notes.push(`${s.service}: ${s.lostBeforeBackup} write(s) acknowledged before the backup started are lost: the backup or the restore lost durable data`);
  }
  for (const c of v.checks.filter((x) => !x.ok)) notes.push(`check failed: ${c.name} ${c.target}: ${c.message}`);
  return notes;
}

async function runApp(ctx: ScenarioContext, spec: AppScenarioSpec): Promise<Omit<RepeatResult, 'repeat' | 'seed'>> {
  const rng = new Rng(deriveSeed(ctx.seed, spec.id));
  const steps: StepResult[] = [];
  const kind = ctx.strategy === 'snapshot' ? 'btrfs' : 'dir';
  const base = path.join(ctx.work, 'app');
  await fsp.mkdir(base, { recursive: true });
  await fsp.chmod(base, 0o755);
  checkReachable(base);
  const stopLoad = new AbortController();
  let background: Promise<LoadResult> | undefined;
  let tb: Testbed | undefined;
  try {
    const t0 = performance.now();
    tb = await startTestbed({
      dir: path.join(base, 'testbed'),
      services: 2,
      volumes: kind,
      // the orders volume also holds the data set
      volumeSizeBytes: Math.max(512 * MiB, 2 * ctx.sizeBytes + 256 * MiB),
      install: ctx.install ?? true,
      ttlSeconds: 1800,
    });
    const orders = tb.volumes().find((v) => v.name === 'orders');
    if (orders === undefined) throw new Error('the testbed has no orders volume');
    await fsp.mkdir(path.join(orders.path, STATIC_DIR), { mode: 0o755 });
    await run(['cp', '-a', `${ctx.volume.path}/.`, path.join(orders.path, STATIC_DIR)]);
    const reference = await hashedManifest(ctx.volume.path);
    ctx.log(`testbed up (${tb.volumes().length} ${kind} volumes, ${tb.services().map((s) => `${s.name} -> ${s.store}`).join(', ')}) in ${((performance.now() - t0) / 1000).toFixed(1)} s; data set on orders/${STATIC_DIR}`);

    const warm = await tb.load({ rate: APP_RATE, durationSeconds: WARMUP_SECONDS });
    if (warm.acknowledged === 0) throw new Error(`the testbed acknowledged no write under load: ${warm.errors[0]?.message ?? 'no answer'}`);
    background = tb.load({ rate: APP_RATE, durationSeconds: LOAD_CAP_SECONDS, signal: stopLoad.signal });
    // a failure of the background load surfaces when it is awaited, not as an unhandled rejection
    void background.catch(() => undefined);
    await sleep(rng.int(300, 800));

    let source: Pick<Volume, 'path' | 'snapshot'>;
    if (kind === 'dir') {
      const root = tb.volumesRoot();
      if (root === undefined) throw new Error('the testbed volumes are not in one directory');
      source = { path: root, snapshot: async () => ({ path: root, atomic: false, release: async () => undefined }) };
    } else {
      const view = path.join(base, 'snapshot-view');
      const volumes = tb.volumes();
      source = { path: view, snapshot: () => snapshotView(volumes, view) };
    }
    const b = await ctx.backup('backup-1', { source });
    steps.push(b);
    if (!stepSucceeded(b)) throw new Error(stepFailure(b));

    await sleep(rng.int(1500, 2500));
    const fault = await tb.fault(spec.fault, spec.targets !== undefined ? { targets: spec.targets } : {});
    const injected = Date.now();
    stopLoad.abort();
    const during = await background;
    background = undefined;
    ctx.log(`fault: ${spec.fault}${spec.targets !== undefined ? ` of ${spec.targets.join(', ')}` : ''} under load (${fault.details.length} action(s): ${fault.details[0] ?? ''}${fault.details.length > 1 ? ', ...' : ''}); injected in ${((injected - fault.t) / 1000).toFixed(2)} s, load drained ${((Date.now() - injected) / 1000).toFixed(2)} s later`);

    const target = path.join(base, 'restored');
    await fsp.mkdir(target, { mode: 0o755 });
    const r = await ctx.restore('restore', target);
    steps.push(r);
    if (!stepSucceeded(r)) return { status: 'failed', reason: stepFailure(r), steps, corruptionDetected: null };

    // the volumes the fault took; one the restore did not bring back is given empty, as it came back
    const names = spec.targets ?? tb.volumes().map((v) => v.name);
    const notes: string[] = [];
    const volumes: Record<string, string> = {};
    for (const n of names) {
      const dir = path.join(target, n);
      const there = await fsp.stat(dir).then((s) => s.isDirectory(), () => false);
      if (!there) {
        notes.push(`the restore brought back no volume ${n}: the testbed was given an empty directory for it`);
        await fsp.mkdir(dir, { recursive: true, mode: 0o755 });
      }
      volumes[n] = dir;
    }
    const v = await tb.verify({ volumes, backupTime: b.startedAt!, timeoutSeconds: VERIFY_TIMEOUT_SECONDS });
    ctx.log(`verify: ${v.healthy ? 'healthy' : `NOT healthy (${v.checks.filter((c) => !c.ok).map((c) => `${c.name} ${c.target}`).join(', ')})`}; ${v.writesAcknowledged} writes acknowledged, ${v.writesLost} lost, ${v.lostBeforeBackup ?? 0} before the backup; RPO ${v.rpoSeconds ?? '-'} s, first request served ${v.rtoSeconds ?? '-'} s after the fault`);
    const staticDir = path.join(volumes['orders'] ?? path.join(target, 'orders'), STATIC_DIR);
    const integrity = await integrityOf(reference, staticDir);
    notes.push(...verifyNotes(v, [warm, during], Object.keys(volumes)));
    // RTO counts from the moment the fault has struck: injecting it (the kills and, for a node
    // outage, deleting the volumes: instantaneous in a real outage) took `injection` seconds that a
    // busy disk can stretch, which would be charged to whichever tool ran then
    const injection = (injected - fault.t) / 1000;
    notes.push(`injecting the fault took ${injection.toFixed(2)} s (killing${spec.fault === 'node-outage' ? ' and deleting the volumes' : ''}): not counted in the RTO`);
    const rtoSeconds = v.rtoSeconds !== null ? Math.max(0, Math.round((v.rtoSeconds - injection) * 1000) / 1000) : undefined;
    notes.push(`integrity: the data set copied onto the orders volume (${STATIC_DIR}/), restored with it`);
    return {
      status: 'ok',
      steps,
      integrity,
      corruptionDetected: null,
      ...(v.rpoSeconds !== null ? { rpo: { seconds: v.rpoSeconds, bytesLost: 0, writesLost: v.writesLost } } : {}),
      ...(rtoSeconds !== undefined ? { rtoSeconds } : {}),
      notes,
      app: appRecovery(v),
    };
  } finally {
    stopLoad.abort();
    await background?.catch(() => undefined);
    if (tb !== undefined) {
      try {
        const down = await tb.stop({ purge: true });
        for (const p of down.problems) ctx.log(`testbed down: ${p}`);
      } catch (err) {
        ctx.log(`testbed down failed: ${firstLine(err)}`);
      }
    }
  }
}
