/**
 * Scenario repo-corruption: bit rot in the backup storage. Does the tool notice, what can it still
 * restore, and does it say so?
 *
 *   1. backup ('backup'); the reference manifest is the volume as the backup saw it;
 *   2. fault: 3 regions of 4 KiB per 64 MiB of stored data (at least one), at sector-aligned
 *      offsets drawn uniformly over the bytes of the repository's data files (pack or segment
 *      files under data/ for meshback, restic and borg; the archives for tar; the mirror files for
 *      rsync and cp), every byte XORed with a non-zero random byte, mtimes kept. The same fraction
 *      of stored bytes for every tool (so a tool that stores more is hit more often, as on a disk);
 *   3. the tool's full data check ('check', where it has one); for a tool that repairs
 *      (meshback-parity: `repair packs`, rebuilding damaged packs from parity) the repair
 *      ('repair', recorded as RepeatResult.repair: packs rebuilt and packs lost); then a full
 *      restore of the latest backup into an empty directory ('restore');
 *   4. integrity of the restored tree against the reference manifest.
 *
 * Detection (corruptionDetected): the check exited non-zero, or the restore exited non-zero or
 * warned (a message on a successful exit). detectionMessage is the check's last line, else the
 * restore's. A restore that exits 0 without a word yet produces damaged or missing files is
 * silent corruption, noted as such. rtoSeconds (fault to verified restore) is only set when the
 * restore reproduced every file: otherwise nothing was recovered in full.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Rng, deriveSeed } from '../../../gen/rng.ts';
import { MiB, ROT_PER_64MIB, compareManifests, describeIntegrity, hasParity, rotRepository, secondsSince, stepOf, toolMessage } from '../inject.ts';
import { takeManifest } from '../../../faults/damage.ts';
import type { RepairOutcome, RepeatResult, Scenario, ScenarioContext, StepResult } from '../types.ts';

type Outcome = Omit<RepeatResult, 'repeat' | 'seed'>;

/**
 * The outcome of `meshback repair packs --json` from its output (the last JSON line with
 * message_type "summary"), or undefined when there is none.
 */
export function repairOutcome(stdout: string, exitCode: number): RepairOutcome | undefined {
  const line = stdout.split('\n').reverse().find((l) => l.startsWith('{') && l.includes('"summary"'));
  if (line === undefined) return undefined;
  let j: { packsChecked?: unknown; damaged?: unknown; parityRewritten?: unknown };
  try {
    j = JSON.parse(line) as typeof j;
  } catch {
    return undefined;
  }
  const damaged = Array.isArray(j.damaged) ? (j.damaged as { status?: unknown }[]) : [];
  return {
    exitCode,
    packsChecked: typeof j.packsChecked === 'number' ? j.packsChecked : 0,
    packsDamaged: damaged.length,
    packsRepaired: damaged.filter((d) => d.status === 'repaired').length,
    packsLost: damaged.filter((d) => d.status !== 'repaired').length,
    parityRewritten: Array.isArray(j.parityRewritten) ? j.parityRewritten.length : 0,
  };
}

async function run(ctx: ScenarioContext): Promise<Outcome> {
  const rng = new Rng(deriveSeed(ctx.seed, 'repo-corruption'));
  const steps: StepResult[] = [];
  const notes: string[] = [];

  ctx.log('backup');
  const b = await ctx.backup('backup');
  steps.push(b);
  if (b.exitCode !== 0) return { status: 'failed', reason: `the backup failed (exit ${b.exitCode}): ${b.message ?? 'no message'}`, steps, notes };
  const bytesStored = await ctx.tool.bytesStored(ctx.toolCtx);
  const reference = await takeManifest(ctx.volume.path);

  ctx.log('injecting bit rot into the repository');
  const rot = ctx.tool.rot !== undefined ? await ctx.tool.rot(ctx.toolCtx, rng) : await rotRepository(ctx.tool.name, ctx.toolCtx.repo, rng);
  if (rot.regions.length === 0) return { status: 'failed', reason: `the repository ${ctx.toolCtx.repo} holds no data file to damage`, steps, notes };
  const hit = new Set(rot.regions.map((r) => r.file));
  notes.push(
    `bit rot: ${rot.regions.length} regions of 4 KiB (${ROT_PER_64MIB} per 64 MiB of ${(rot.dataBytes / MiB).toFixed(1)} MiB in ${rot.dataFiles} data files) in ${hit.size} files: ` +
      rot.regions.map((r) => `${r.file}@${r.offset}`).slice(0, 6).join(', ') + (rot.regions.length > 6 ? ', …' : ''),
  );
  const tFault = performance.now();

  let detected = false;
  let detectionMessage: string | undefined;
  if (ctx.check !== undefined) {
    ctx.log('check');
    const c = await ctx.check('check');
    steps.push(c);
    if (c.exitCode !== 0) {
      detected = true;
      detectionMessage = c.message ?? `check exited with status ${c.exitCode}`;
    } else notes.push('the check passed despite the damage');
  } else notes.push(`${ctx.tool.name} has no check: only the restore could tell`);

  let repair: RepairOutcome | undefined;
  if (ctx.tool.repair !== undefined) {
    ctx.log('repair');
    const rr = await ctx.tool.repair(ctx.toolCtx);
    const m = rr.measurement;
    repair = repairOutcome(rr.stdout, m.exitCode);
    steps.push(stepOf('repair', m, m.exitCode !== 0 ? toolMessage(rr.stdout) : undefined));
    if (repair === undefined) notes.push(`the repair (exit ${m.exitCode}) printed no summary`);
    else {
      notes.push(
        `repair: ${repair.packsRepaired} of ${repair.packsDamaged} damaged pack(s) rebuilt from parity` +
          (repair.packsLost > 0 ? `; ${repair.packsLost} could not be rebuilt (their data is lost)` : '') +
          (repair.parityRewritten > 0 ? `; ${repair.parityRewritten} damaged parity file(s) written again` : ''),
      );
    }
  }

  ctx.log('restore');
  const target = path.join(ctx.work, 'repo-corruption-restore');
  await fsp.rm(target, { recursive: true, force: true });
  await fsp.mkdir(target, { recursive: true });
  const r = await ctx.restore('restore', target);
  steps.push(r);
  const restoreSaid = r.exitCode !== 0 || r.message !== undefined;
  if (restoreSaid) {
    detected = true;
    detectionMessage ??= r.message ?? `restore exited with status ${r.exitCode}`;
    notes.push(`the restore ${r.exitCode !== 0 ? `failed (exit ${r.exitCode})` : 'warned'}: ${r.message ?? 'no message'}`);
  }
  const restored = await takeManifest(target);
  const { integrity } = compareManifests(reference, restored);
  const rto = secondsSince(tFault);
  await fsp.rm(target, { recursive: true, force: true });
  if (!restoreSaid && integrity.damaged + integrity.missing > 0) {
    notes.push(`silent corruption: ${integrity.damaged} damaged and ${integrity.missing} missing files restored with exit 0 and no warning`);
  }
  if (ctx.tool.name.startsWith('meshback')) {
    notes.push(
      (await hasParity(ctx.toolCtx.repo))
        ? 'the repository has parity (init --parity): repair packs rebuilds damaged packs from it'
        : 'the repository has no parity (the benchmark default); made with `meshback init --parity`, the restore would rebuild damaged packs',
    );
  }
  const out: Outcome = { status: 'ok', steps, bytesStored, integrity, corruptionDetected: detected, notes, ...(repair !== undefined ? { repair } : {}) };
  if (detectionMessage !== undefined) out.detectionMessage = detectionMessage;
  if (integrity.matching === integrity.files && integrity.extra === 0) out.rtoSeconds = rto;
  else notes.push(`no complete recovery from the damaged repository: ${describeIntegrity(integrity)}`);
  return out;
}

export const repoCorruption: Scenario = {
  id: 'repo-corruption',
  title: 'Corrupted repository',
  description:
    `After a backup, bit rot is injected into the backup storage (${ROT_PER_64MIB} random 4 KiB regions per 64 MiB of stored data files, at least one); ` +
    'the tool\'s check and a full restore show whether it notices, what it can still restore (compared by SHA-256) and whether it says so; ' +
    'meshback (parity) runs repair packs before the restore: what parity rebuilt and what stayed lost.',
  run,
};
