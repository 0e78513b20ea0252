/**
 * Scenario s3-outage: the object store becomes unreachable in the middle of a backup, then comes
 * back. Does the backup ride it out (retries), or fail with one line; is the repository still
 * sound afterwards, and how long until the change is protected again?
 *
 *   setup     the repository is in MinIO (lab/testenv), reached through a toxiproxy proxy (the
 *             runner's object store, ScenarioContext.s3); backup-1 of the quiescent volume
 *   change    new incompressible files, half the data set's size (at least 8 MiB), under
 *             s3-outage-new/: backup-2 has that much to upload; the reference is the volume now
 *   fault     backup-2 starts; a seeded 10-25% of backup-1's wall time later (at least 0.2 s) the
 *             proxy is disabled (new connections refused, open ones cut) for --outage-seconds,
 *             then enabled again
 *   recovery  backup-2 ends by itself (finished after retries, or failed); if it failed, the
 *             operator's rerun, backup-3, once the store is back
 *   verify    the tool's check (a note: does the repository check clean after the outage), then a
 *             full restore of the latest backup, compared with the reference by SHA-256
 *   RPO       seconds from the start of the last backup that completed by itself (backup-2 when it
 *             rode out the outage, else backup-1) to the outage; bytesLost: bytes of the reference
 *             the restore did not bring back; writesLost 0 (no workload runs here)
 *   RTO       seconds from the store's return to the end of the verified restore of the changed
 *             data: what remained of backup-2 (or the rerun), then restore and verification
 *             (the check, a diagnostic, is not counted)
 *
 * Tools that cannot keep a repository on S3 (borg, tar, rsync, cp) are "not applicable".
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Rng, deriveSeed } from '../../../gen/rng.ts';
import { hashedManifest, integrityClean, integrityOf, sleep, stepFailure, stepSucceeded } from '../common.ts';
import { MiB, describeIntegrity, secondsSince, writeIncompressible } from '../inject.ts';
import type { Outage, RepeatResult, Scenario, ScenarioContext, StepResult } from '../types.ts';

type Outcome = Omit<RepeatResult, 'repeat' | 'seed'>;

/** Where the change backup-2 carries is written, inside the volume. */
export const NEW_DIR = 's3-outage-new';

/** The new data for backup-2: half the data set (at least 8 MiB), in files of up to 16 MiB. */
export function changeBytes(sizeBytes: number): number {
  return Math.max(8 * MiB, Math.round(sizeBytes / 2));
}

/** When the outage begins, seconds after backup-2 starts: 10-25% of backup-1's wall time, at least 0.2 s. */
export function outageDelaySeconds(backup1WallSeconds: number, rng: Rng): number {
  return Math.max(0.2, backup1WallSeconds * (0.1 + 0.15 * rng.float()));
}

async function run(ctx: ScenarioContext): Promise<Outcome> {
  const s3 = ctx.s3;
  if (s3 === undefined) throw new Error("s3-outage needs the runner's object store (ScenarioContext.s3)");
  const rng = new Rng(deriveSeed(ctx.seed, 's3-outage'));
  const steps: StepResult[] = [];
  const notes: string[] = [];

  ctx.log('backup-1');
  const b1 = await ctx.backup('backup-1');
  steps.push(b1);
  if (!stepSucceeded(b1)) return { status: 'failed', reason: `backup-1, before any fault, failed: ${stepFailure(b1)}`, steps, notes };

  const total = changeBytes(ctx.sizeBytes);
  for (let i = 0, done = 0; done < total; i++) {
    const n = Math.min(16 * MiB, total - done);
    await writeIncompressible(path.join(ctx.volume.path, NEW_DIR, `new-${i}.bin`), n, rng);
    done += n;
  }
  const reference = await hashedManifest(ctx.volume.path);
  const delay = outageDelaySeconds(b1.wallSeconds, rng);

  ctx.log(`backup-2; the object store goes down ${delay.toFixed(2)} s into it, for ${s3.outageSeconds} s`);
  let b2Ended: number | undefined;
  const running = ctx.backup('backup-2').then((s) => {
    b2Ended = performance.now();
    return s;
  });
  await sleep(delay * 1000);
  const hit = b2Ended === undefined;
  const faultAt = Date.now();
  let tUp: number;
  try {
    await s3.down();
    await sleep(s3.outageSeconds * 1000);
  } finally {
    await s3.up();
    tUp = performance.now();
  }
  const b2 = await running;
  steps.push(b2);
  const finished = stepSucceeded(b2);
  const outage: Outage = {
    startedAfterSeconds: delay,
    seconds: s3.outageSeconds,
    how: s3.how,
    hit,
    backup: finished ? 'finished' : 'failed',
    exitCode: b2.exitCode,
    ...(b2.message !== undefined ? { message: b2.message } : {}),
    rerun: false,
  };
  if (!hit) notes.push(`backup-2 finished (${b2.wallSeconds.toFixed(2)} s) before the outage began (${delay.toFixed(2)} s in): not interrupted; use a larger --size`);
  else if (finished) notes.push(`backup-2 rode out the ${s3.outageSeconds} s outage and finished (exit ${b2.exitCode}) in ${b2.wallSeconds.toFixed(2)} s`);
  else notes.push(`backup-2 failed during the outage: exit ${b2.exitCode}${b2.message !== undefined ? `: ${b2.message}` : ''}`);

  // when the change is protected again: backup-2's end, or the operator's rerun's
  let protectedAt = b2Ended ?? performance.now();
  let last = finished ? b2 : b1;
  if (!finished) {
    ctx.log('backup-3 (the rerun after the store came back)');
    const b3 = await ctx.backup('backup-3');
    steps.push(b3);
    protectedAt = performance.now();
    outage.rerun = true;
    outage.rerunOk = stepSucceeded(b3);
    if (!stepSucceeded(b3)) return { status: 'failed', reason: `the rerun after the outage failed too: ${stepFailure(b3)}`, steps, outage, notes };
    notes.push(`the rerun (backup-3) after the outage finished in ${b3.wallSeconds.toFixed(2)} s`);
  }
  const toProtection = Math.max(0, (protectedAt - tUp) / 1000);

  if (ctx.check !== undefined) {
    ctx.log('check');
    const c = await ctx.check('check');
    steps.push(c);
    notes.push(stepSucceeded(c) ? 'the repository checks clean after the outage' : `the check after the outage did not pass: ${stepFailure(c)}`);
  } else notes.push(`${ctx.tool.name} has no check`);

  ctx.log('restore');
  const target = path.join(ctx.work, 's3-outage-restore');
  await fsp.rm(target, { recursive: true, force: true });
  await fsp.mkdir(target, { recursive: true });
  const t0 = performance.now();
  const r = await ctx.restore('restore', target);
  steps.push(r);
  if (!stepSucceeded(r)) return { status: 'failed', reason: stepFailure(r), steps, outage, notes, corruptionDetected: null };
  const integrity = await integrityOf(reference, target);
  const restoreAndVerify = secondsSince(t0);
  let bytesLost = 0;
  if (!integrityClean(integrity)) {
    const got = await hashedManifest(target);
    for (const [p, want] of reference) if (want.type === 'file' && got.get(p)?.sha256 !== want.sha256) bytesLost += want.size;
  }
  await fsp.rm(target, { recursive: true, force: true });
  if (!hit) last = b2;
  const out: Outcome = {
    status: 'ok',
    steps,
    integrity,
    corruptionDetected: null,
    rpo: { seconds: Math.max(0, (faultAt - (last.startedAt ?? faultAt)) / 1000), bytesLost, writesLost: 0 },
    outage,
    notes,
  };
  if (integrityClean(integrity)) out.rtoSeconds = toProtection + restoreAndVerify;
  else notes.push(`the restore after the outage is not complete: ${describeIntegrity(integrity)}`);
  return out;
}

export const s3Outage: Scenario = {
  id: 's3-outage',
  title: 'Object store outage during a backup',
  description:
    'The repository is in S3 (MinIO through toxiproxy). In the middle of a backup that uploads new data the object store becomes unreachable for a while, then comes back: ' +
    'does the backup finish after retries or fail with one line, does the repository still check clean, and is the restored data whole?',
  storage: 's3',
  applies(tool) {
    return tool.s3 === true ? true : `not applicable: ${tool.label} cannot keep its repository in S3`;
  },
  run,
};
