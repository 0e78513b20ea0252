import { repairPacks } from '../../checker/repair.ts';
import type { RepairPacksResult } from '../../checker/repair.ts';
import { bool } from '../command.ts';
import type { Context } from '../context.ts';
import { openRepo } from '../context.ts';
import { EXIT } from '../exit.ts';
import { fmtBytes } from '../../util/units.ts';
import { resourceUsage } from '../resources.ts';

/**
 * `meshback repair packs [--dry-run] [PACK...]`: rebuilds damaged packs from their parity
 * files. Exit 0 when no pack is left damaged (a dry run: when every damaged pack can be
 * rebuilt), 4 when some pack cannot be rebuilt.
 */
export async function runRepairPacks(ctx: Context, v: Record<string, unknown>, packs: string[]): Promise<number> {
  // a repair replaces pack files: no other process may use the repository meanwhile
  const repo = await openRepo(ctx, { lock: 'exclusive', command: 'repair packs', cache: false });
  const dryRun = bool(v['dry-run']);
  const r = await repairPacks(repo, { packs, dryRun, events: ctx.out.sink });
  ctx.out.done();
  render(ctx, r);
  ctx.out.jsonOut({ message_type: 'summary', ...r, resources: resourceUsage() });
  return r.ok ? EXIT.OK : EXIT.INTEGRITY;
}

function render(ctx: Context, r: RepairPacksResult): void {
  const would = r.dryRun ? 'would be ' : '';
  ctx.out.info(`checked ${r.packsChecked} pack(s), read ${fmtBytes(r.bytesRead)}; ${r.intact} intact; parity: ${r.parity ?? 'none (repository created without --parity)'}${r.dryRun ? '; dry run: nothing is written' : ''}`);
  for (const d of r.damaged) {
    if (d.status === 'unrepairable') ctx.out.result(`pack ${d.pack} (${d.problem}): cannot be repaired: ${d.reason}`);
    else ctx.out.result(`pack ${d.pack} (${d.problem}): ${r.dryRun ? 'can be repaired' : 'repaired'} (${d.badDataBlocks} of ${d.dataBlocks} blocks rebuilt${d.badParityBlocks > 0 ? `, ${d.badParityBlocks} parity block(s) damaged` : ''})`);
  }
  if (r.parityRewritten.length > 0) {
    const missing = r.parityRewritten.filter((p) => p.was === 'missing').length;
    ctx.out.result(`parity files ${would}written again: ${r.parityRewritten.length} (${missing} missing, ${r.parityRewritten.length - missing} damaged)`);
  }
  if (r.orphanParity.length > 0) ctx.out.info(`${r.orphanParity.length} parity file(s) belong to no pack (harmless)`);
  const fixed = r.damaged.filter((d) => d.status !== 'unrepairable').length;
  const lost = r.damaged.length - fixed;
  if (r.damaged.length === 0) ctx.out.result('no damaged packs');
  else if (lost === 0) ctx.out.result(r.dryRun ? `all ${fixed} damaged pack(s) can be repaired: run 'meshback repair packs' without --dry-run` : `all ${fixed} damaged pack(s) repaired: 'meshback check --read-data' confirms it`);
  else {
    ctx.out.result(
      `${lost} pack(s) cannot be repaired${fixed > 0 ? ` (${fixed} ${r.dryRun ? 'can be' : 'were'} repaired)` : ''}: their data is lost; 'meshback check --read-data' lists the affected files; ` +
        `remove the packs from the index ('meshback repair index') and the lost files from the snapshots ('meshback repair snapshots'), then back the files up again`,
    );
  }
}
