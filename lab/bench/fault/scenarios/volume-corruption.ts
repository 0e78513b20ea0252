/**
 * Scenario volume-corruption: the live volume rots after a good backup; the damage is found by
 * comparing the volume with the backup, and the damaged files are restored from it.
 *
 *   1. backup ('backup'); the reference manifest is taken of the volume as the backup saw it
 *      (nothing writes the volume during this scenario);
 *   2. fault: about 5% of the regular files (at least 3) are damaged, a third each: bytes flipped
 *      (size and mtime kept), truncated, deleted; on a btrfs volume with an image, as many more
 *      files (of 8 KiB or more) get 4 KiB of garbage written over one of their data blocks in the
 *      block image, so that reading them fails with EIO (btrfs data checksums);
 *   3. detection: the latest backup is restored into a scratch directory ('restore') and compared
 *      with the live volume by path, type, size and SHA-256 (unreadable files count as damaged).
 *      No tool here compares a live volume with a backup without taking a new backup (which would
 *      make the damage the latest backup), so the benchmark finds the damage, the same way for
 *      every tool, and corruptionDetected is null;
 *   4. recovery: the damaged and missing files are copied from the scratch restore into the live
 *      volume ('repair-volume': tar | tar, replacing each damaged file), and the volume is
 *      verified against the reference manifest (integrity);
 *   rtoSeconds: from the end of the fault to the end of that verification.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Rng, deriveSeed } from '../../../gen/rng.ts';
import { compareManifests, describeIntegrity, measured, measureShell, secondsSince } from '../inject.ts';
import { corruptFiles, damageImage, takeManifest } from '../../../faults/damage.ts';
import type { MEntry } from '../../../faults/damage.ts';
import type { RepeatResult, Scenario, ScenarioContext, StepResult } from '../types.ts';

/** Fraction of the regular files damaged on the live volume (bytes flipped, truncated, deleted). */
export const VOLUME_DAMAGE_FRACTION = 0.05;

type Outcome = Omit<RepeatResult, 'repeat' | 'seed'>;

async function run(ctx: ScenarioContext): Promise<Outcome> {
  const rng = new Rng(deriveSeed(ctx.seed, 'volume-corruption'));
  const steps: StepResult[] = [];
  const notes: string[] = [];
  const failed = (reason: string): Outcome => ({ status: 'failed', reason, steps, notes });

  ctx.log('backup');
  const b = await ctx.backup('backup');
  steps.push(b);
  if (b.exitCode !== 0) return failed(`the backup failed (exit ${b.exitCode}): ${b.message ?? 'no message'}`);
  const bytesStored = await ctx.tool.bytesStored(ctx.toolCtx);
  const reference = await takeManifest(ctx.volume.path);

  ctx.log('corrupting the live volume');
  const files = await corruptFiles(ctx.volume.path, reference, rng, VOLUME_DAMAGE_FRACTION);
  const injected = files.flipped.length + files.truncated.length + files.deleted.length;
  notes.push(`injected on the live volume: ${files.flipped.length} files with flipped bytes, ${files.truncated.length} truncated, ${files.deleted.length} deleted`);
  let unreadable = 0;
  if (ctx.volume.kind === 'btrfs' && ctx.volume.image !== undefined) {
    const taken = new Set([...files.flipped, ...files.truncated, ...files.deleted]);
    const img = await damageImage(ctx.volume.path, ctx.volume.image, reference, rng, Math.max(1, Math.round(injected / 3)), taken);
    unreadable = img.unreadable.length;
    notes.push(`block image: 4 KiB of garbage over a data block of ${img.files.length} files; ${img.unreadable.length} of them now fail to read (EIO: btrfs data checksum)`);
    if (img.shortfall !== undefined) notes.push(img.shortfall);
  } else if (ctx.volume.kind === 'btrfs') {
    notes.push('btrfs volume without an image path: the block image was not damaged');
  }
  const tFault = performance.now();

  ctx.log('restoring the backup into a scratch directory to find the damage');
  const scratch = path.join(ctx.work, 'volume-corruption-restore');
  await fsp.rm(scratch, { recursive: true, force: true });
  await fsp.mkdir(scratch, { recursive: true });
  const r = await ctx.restore('restore', scratch);
  steps.push(r);
  const restored = await takeManifest(scratch);
  const live = await takeManifest(ctx.volume.path);
  // what differs on the live volume from the backup: the damage as the benchmark finds it
  const found = compareManifests(restored, live);
  const bad: MEntry[] = [...found.damaged, ...found.missing];
  const eio = [...live.values()].filter((e) => e.error !== undefined).length;
  notes.push(`found by comparing the live volume with the restored backup: ${found.damaged.length} damaged (${eio} unreadable), ${found.missing.length} missing, of ${injected + unreadable} injected`);
  notes.push('corruption detected by the benchmark (restore into a scratch directory, then SHA-256 comparison with the live volume), not by the tool: no tool compares a live volume with a backup without taking a new one');
  if (r.exitCode !== 0) notes.push(`the scratch restore failed (exit ${r.exitCode}): ${r.message ?? 'no message'}; damage to files it did not restore cannot be repaired`);

  ctx.log(`restoring ${bad.length} damaged files into the volume`);
  if (bad.length > 0) {
    const list = path.join(ctx.work, 'volume-corruption-files');
    await fsp.writeFile(list, Buffer.concat(bad.flatMap((e) => [e.rel, Buffer.from([0])])));
    const repair = await measured('repair-volume', () =>
      measureShell('tar -C "$1" --null --no-recursion -T "$2" --numeric-owner -cf - | tar -C "$3" --numeric-owner -p -xf -', [scratch, list, ctx.volume.path]),
    );
    steps.push(repair.step);
    await fsp.rm(list, { force: true });
  }
  const after = await takeManifest(ctx.volume.path);
  const verify = compareManifests(reference, after);
  const rto = secondsSince(tFault);
  await fsp.rm(scratch, { recursive: true, force: true });
  const out: Outcome = { status: 'ok', steps, bytesStored, integrity: verify.integrity, corruptionDetected: null, notes };
  if (verify.integrity.matching === verify.integrity.files && verify.integrity.extra === 0) out.rtoSeconds = rto;
  else notes.push(`the volume was not fully recovered: ${describeIntegrity(verify.integrity)}`);
  return out;
}

export const volumeCorruption: Scenario = {
  id: 'volume-corruption',
  title: 'Corrupted volume',
  description:
    'After a good backup, 5% of the live files get bytes flipped, are truncated or deleted (and, on btrfs, data blocks of the block image are overwritten so reads fail with EIO); ' +
    'the latest backup is restored into a scratch directory and compared with the volume by SHA-256, and the damaged files are copied back and verified.',
  run,
};
