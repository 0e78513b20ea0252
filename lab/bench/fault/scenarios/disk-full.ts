/**
 * Scenario disk-full: no space left, first on the restore target, then under the repository.
 *
 * (b) restore into a full disk (runs first, on the cell's own repository):
 *   1. backup ('backup'); the reference manifest is the volume as the backup saw it;
 *   2. a small loop-mounted ext4 filesystem (in ctx.work) is filled (fallocate) until only half
 *      the volume's apparent bytes are free; the latest backup is restored into it
 *      ('disk-full-restore': expected to fail);
 *   3. the restore is repeated into an empty directory with room ('restore') and verified.
 *   RTO: from the start of the failed restore to the end of the verification (rtoSeconds).
 *
 * (a) backup onto a full disk (a fresh repository on a small loop-mounted ext4 filesystem):
 *   1. init and a first backup of the volume there ('small-disk-init', 'small-disk-backup-1': fits);
 *   2. incompressible data (a quarter of the volume, 4 to 256 MiB) is added to the volume, and the
 *      filesystem is filled (fallocate) until only half of that is free, so that no tool can store
 *      the second backup, whether it deduplicates or copies everything;
 *   3. the second backup ('disk-full-backup': expected to fail);
 *   4. the filler is deleted, the tool's check runs ('check-after-disk-full', where it has one:
 *      did the failure leave the repository intact?), the backup runs again ('backup-after-free'),
 *      and the latest backup is restored into an empty directory ('restore-after-free') and
 *      verified against the volume as it was for the second backup.
 *   The time from the failed backup to that verification is in the notes.
 *
 * Detection (corruptionDetected): every failed step exited non-zero and its output names the lack
 * of space (ENOSPC, "no space left", ...); detectionMessage is that line. A step that exits 0 on
 * the full disk is noted (with what it left, for the restore: silent loss). integrity is the sum of
 * the two verifications (files counted twice: once per restore). The added data is removed from
 * the volume at the end; the filesystems are unmounted and their loop devices detached, also on
 * failure. Needs root (loop mounts): otherwise the repeat fails with the reason.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Rng, deriveSeed } from '../../../gen/rng.ts';
import { duBytes } from '../../measure.ts';
import { newContext } from '../../tools.ts';
import type { ToolContext } from '../../tools.ts';
import { LoopFs, MiB, compareManifests, describeIntegrity, lastLine, loopFsUnavailable, manifestBytes, measured, secondsSince, writeIncompressible } from '../inject.ts';
import { takeManifest } from '../../../faults/damage.ts';
import type { Ran } from '../inject.ts';
import type { Integrity, RepeatResult, Scenario, ScenarioContext, StepResult } from '../types.ts';

type Outcome = Omit<RepeatResult, 'repeat' | 'seed'>;

/** Output lines that say the disk is full, whatever the tool's wording. */
export const NO_SPACE = /no space|enospc|disk (is )?full|space left|not enough (free )?space|insufficient (free )?space|out of space|quota exceeded/i;

/** The directory the scenario adds its incompressible data to, inside the volume. */
export const ADDED_DIR = 'bench-disk-full';

/** The line of a failed step's output that names the lack of space, else its last line. */
function spaceLine(r: Ran): string {
  return r.output.split('\n').map((l) => l.trim()).find((l) => NO_SPACE.test(l)) ?? lastLine(r.output);
}

/** Backs up the volume into `tc` the way the strategy says (through a volume snapshot for 'snapshot'). */
async function backupInto(ctx: ScenarioContext, tc: ToolContext, name: string): Promise<Ran> {
  if (ctx.strategy !== 'snapshot') return measured(name, () => ctx.tool.backup(tc, ctx.volume.path));
  const snap = await ctx.volume.snapshot();
  try {
    return await measured(name, () => ctx.tool.backup(tc, snap.path));
  } finally {
    await snap.release();
  }
}

function sumIntegrity(a: Integrity, b: Integrity): Integrity {
  const out: Integrity = { files: a.files + b.files, matching: a.matching + b.matching, damaged: a.damaged + b.damaged, missing: a.missing + b.missing, extra: a.extra + b.extra };
  const ex: NonNullable<Integrity['examples']> = {};
  for (const k of ['damaged', 'missing', 'extra'] as const) {
    const list = [...(a.examples?.[k] ?? []), ...(b.examples?.[k] ?? [])].slice(0, 20);
    if (list.length > 0) ex[k] = list;
  }
  if (Object.keys(ex).length > 0) out.examples = ex;
  return out;
}

const complete = (i: Integrity): boolean => i.matching === i.files && i.extra === 0;

async function run(ctx: ScenarioContext): Promise<Outcome> {
  const steps: StepResult[] = [];
  const notes: string[] = [];
  const failed = (reason: string): Outcome => ({ status: 'failed', reason, steps, notes });
  const why = await loopFsUnavailable();
  if (why !== undefined) return failed(`disk-full ${why}`);
  const rng = new Rng(deriveSeed(ctx.seed, 'disk-full'));
  const targetFs = new LoopFs(ctx.work, 'disk-full-target');
  const repoFs = new LoopFs(ctx.work, 'disk-full-repo');
  const added = path.join(ctx.volume.path, ADDED_DIR);
  const detections: { part: string; detected: boolean; message: string }[] = [];
  try {
    // ---- (b) restore into a full disk ----
    ctx.log('backup');
    const b = await ctx.backup('backup');
    steps.push(b);
    if (b.exitCode !== 0) return failed(`the backup failed (exit ${b.exitCode}): ${b.message ?? 'no message'}`);
    const bytesStored = await ctx.tool.bytesStored(ctx.toolCtx);
    const reference = await takeManifest(ctx.volume.path);
    const apparent = manifestBytes(reference);
    const allocated = await duBytes(ctx.volume.path);

    await targetFs.mount(allocated + 64 * MiB);
    await targetFs.fill(Math.floor(apparent / 2));
    const smallTarget = path.join(targetFs.dir, 'target');
    await fsp.mkdir(smallTarget);
    ctx.log(`restore into a full disk (${(targetFs.free() / MiB).toFixed(1)} MiB free for ${(apparent / MiB).toFixed(1)} MiB)`);
    const tFaultB = performance.now();
    const rf = await measured('disk-full-restore', () => ctx.tool.restore(ctx.toolCtx, smallTarget));
    steps.push(rf.step);
    if (rf.step.exitCode !== 0) {
      const line = spaceLine(rf);
      detections.push({ part: 'restore', detected: NO_SPACE.test(line), message: line });
      notes.push(`restore into a full disk: exit ${rf.step.exitCode}: ${line}`);
    } else {
      const left = compareManifests(reference, await takeManifest(smallTarget)).integrity;
      detections.push({ part: 'restore', detected: false, message: 'restore exited 0' });
      notes.push(`restore into a full disk exited 0: ${describeIntegrity(left)}${complete(left) ? '' : ' (silent loss)'}`);
    }
    await targetFs.close();

    ctx.log('restore into a directory with room');
    const bigTarget = path.join(ctx.work, 'disk-full-restore');
    await fsp.rm(bigTarget, { recursive: true, force: true });
    await fsp.mkdir(bigTarget, { recursive: true });
    steps.push(await ctx.restore('restore', bigTarget));
    const integrityB = compareManifests(reference, await takeManifest(bigTarget)).integrity;
    const rtoB = secondsSince(tFaultB);
    await fsp.rm(bigTarget, { recursive: true, force: true });
    notes.push(`after the full restore target, restore with room: ${describeIntegrity(integrityB)}, ${rtoB} s from the failed restore`);

    // ---- (a) backup onto a full disk ----
    let extra = Math.min(256 * MiB, Math.max(4 * MiB, Math.round(apparent / 4)));
    const volFree = await ctx.volume.free();
    extra = Math.min(extra, Math.floor((volFree - 8 * MiB) / 2));
    if (extra < MiB) return failed(`the volume has only ${(volFree / MiB).toFixed(1)} MiB free: disk-full needs room to add data to it`);
    await repoFs.mount(2 * (allocated + extra) + 64 * MiB);
    const tc = await newContext(ctx.tool, path.join(repoFs.dir, 'ctx'), ctx.toolCtx.env);
    const init = await measured('small-disk-init', () => ctx.tool.init(tc));
    steps.push(init.step);
    if (init.step.exitCode !== 0) return failed(`init on the small filesystem failed (exit ${init.step.exitCode}): ${init.step.message ?? ''}`);
    ctx.log('first backup onto the small filesystem');
    const b1 = await backupInto(ctx, tc, 'small-disk-backup-1');
    steps.push(b1.step);
    if (b1.step.exitCode !== 0) return failed(`the first backup onto the small filesystem failed (exit ${b1.step.exitCode}): ${b1.step.message ?? ''}`);

    await writeIncompressible(path.join(added, 'added.bin'), extra, rng);
    const reference2 = await takeManifest(ctx.volume.path);
    await repoFs.fill(Math.floor(extra / 2));
    ctx.log(`backup onto a full disk (${(repoFs.free() / MiB).toFixed(1)} MiB free, ${(extra / MiB).toFixed(1)} MiB new incompressible data)`);
    const tFaultA = performance.now();
    const bf = await backupInto(ctx, tc, 'disk-full-backup');
    steps.push(bf.step);
    if (bf.step.exitCode !== 0) {
      const line = spaceLine(bf);
      detections.push({ part: 'backup', detected: NO_SPACE.test(line), message: line });
      notes.push(`backup onto a full disk: exit ${bf.step.exitCode}: ${line}`);
    } else {
      notes.push(`the backup onto a full disk exited 0 (${(repoFs.free() / MiB).toFixed(1)} MiB free after it): the space was enough or the tool did not say`);
      detections.push({ part: 'backup', detected: false, message: 'backup exited 0' });
    }
    await repoFs.unfill();

    if (ctx.tool.check !== undefined) {
      const check = ctx.tool.check.bind(ctx.tool);
      const c = await measured('check-after-disk-full', () => check(tc));
      steps.push(c.step);
      notes.push(c.step.exitCode === 0 ? 'the repository passed its check after the failed backup' : `the repository FAILED its check after the failed backup (exit ${c.step.exitCode}): ${c.step.message ?? ''}`);
    } else notes.push(`${ctx.tool.name} has no check: whether the failed backup left the repository intact is only seen in the restore`);
    ctx.log('backup again after freeing space');
    const ba = await backupInto(ctx, tc, 'backup-after-free');
    steps.push(ba.step);
    if (ba.step.exitCode !== 0) notes.push(`the backup after freeing space failed too (exit ${ba.step.exitCode}): ${ba.step.message ?? ''}`);
    const targetA = path.join(ctx.work, 'disk-full-restore-after-free');
    await fsp.rm(targetA, { recursive: true, force: true });
    await fsp.mkdir(targetA, { recursive: true });
    const ra = await measured('restore-after-free', () => ctx.tool.restore(tc, targetA));
    steps.push(ra.step);
    const integrityA = compareManifests(reference2, await takeManifest(targetA)).integrity;
    const rtoA = secondsSince(tFaultA);
    await fsp.rm(targetA, { recursive: true, force: true });
    notes.push(`after the full repository disk, backup and restore with room: ${describeIntegrity(integrityA)}, ${rtoA} s from the failed backup to the verified restore`);
    const bytesSmall = await ctx.tool.bytesStored(tc);
    notes.push(`repository on the small filesystem after the last backup: ${(bytesSmall / MiB).toFixed(1)} MiB`);

    const out: Outcome = { status: 'ok', steps, bytesStored, integrity: sumIntegrity(integrityA, integrityB), notes };
    // a step that exits 0 on a disk without room for its data did not say so: not detected
    out.corruptionDetected = detections.every((d) => d.detected);
    const said = detections.filter((d) => d.detected).map((d) => `${d.part}: ${d.message}`);
    if (said.length > 0) out.detectionMessage = said.join(' | ');
    if (complete(integrityB)) out.rtoSeconds = rtoB;
    return out;
  } finally {
    await fsp.rm(added, { recursive: true, force: true });
    await targetFs.close();
    await repoFs.close();
  }
}

export const diskFull: Scenario = {
  id: 'disk-full',
  title: 'Disk full',
  description:
    'A restore into a filesystem too small for the volume, then a backup onto a repository filesystem too full for the new data (small loop-mounted ext4); ' +
    'each failure\'s exit code and message are recorded, then the step is repeated with room, the repository checked, and the restore verified by SHA-256.',
  run,
};
