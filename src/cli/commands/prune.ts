import { DEFAULT_MAX_UNUSED_PERCENT, parseMaxUnused, prune } from '../../maintenance/prune.ts';
import type { PruneResult } from '../../maintenance/prune.ts';
import type { Command } from '../command.ts';
import { bool, str, strs } from '../command.ts';
import { openRepo } from '../context.ts';
import type { Context } from '../context.ts';
import { EXIT } from '../exit.ts';
import { fmtBytes } from '../../util/units.ts';
import { resourceUsage } from '../resources.ts';
import { reportRenewed } from './lock.ts';

export const pruneCommand: Command = {
  name: 'prune',
  summary: 'remove data no snapshot references, repacking partly used packs',
  usage: 'meshback prune [--max-unused PERCENT|unlimited] [--repack PACK]... [--dry-run] [--json]',
  options: {
    'max-unused': { type: 'string', argument: 'PERCENT', description: `unused space left in kept packs, as % of the data in use (default ${DEFAULT_MAX_UNUSED_PERCENT}); 0 repacks every partly used pack, 100 or 'unlimited' never repacks` },
    repack: { type: 'string', multiple: true, argument: 'PACK', description: "also repack this pack (id or prefix), e.g. one whose damaged blob 'repair snapshots' made unused (repeatable)" },
    'dry-run': { type: 'boolean', description: 'only report what would be deleted, repacked and freed' },
  },
  async run(ctx, v) {
    const mu = str(v['max-unused']);
    const maxUnusedPercent = mu === undefined ? DEFAULT_MAX_UNUSED_PERCENT : parseMaxUnused(mu);
    const dryRun = bool(v['dry-run']);
    // prune deletes packs and index files: no other process may use the repository meanwhile
    const repo = await openRepo(ctx, { lock: 'exclusive', command: 'prune' });
    const r = await prune(repo, { maxUnusedPercent, repack: strs(v['repack']), dryRun, events: ctx.out.sink });
    ctx.out.done();
    reportPrune(ctx, r, dryRun);
    reportRenewed(ctx, r.objectLock);
    ctx.out.jsonOut({ message_type: 'summary', ...r, maxUnusedPercent: Number.isFinite(r.maxUnusedPercent) ? r.maxUnusedPercent : 'unlimited', resources: resourceUsage() });
    return EXIT.OK;
  },
};

/** The human lines of a prune result (used by prune and forget --prune). */
export function reportPrune(ctx: Context, r: PruneResult, dryRun: boolean): void {
  const would = dryRun ? 'would be ' : '';
  if (dryRun) ctx.out.result('dry run: nothing was changed');
  ctx.out.info(`${r.snapshots} snapshot(s), ${r.trees} trees: ${r.blobsUsed} of ${r.blobs} blobs in use (${fmtBytes(r.bytesUsed)})`);
  const parts = [`${r.packsUnused} unused`, `${r.packsRepacked} repacked`, `${r.packsUnindexed} not indexed`];
  ctx.out.result(`packs ${would}deleted: ${r.packsDeleted} (${parts.join(', ')})${r.packsMissing > 0 ? `; ${r.packsMissing} missing pack(s) ${would}dropped from the index` : ''}`);
  if (r.packsResized > 0) ctx.out.result(`${r.packsResized} pack(s) whose size differs from the index ${dryRun ? 'would have' : 'had'} their blobs in use copied out`);
  ctx.out.result(`blobs ${would}removed: ${r.blobsRemoved}; blobs ${would}repacked: ${r.blobsRepacked} into ${dryRun ? 'about ' : ''}${r.packsWritten} new pack(s)`);
  ctx.out.result(`index files ${would}written: ${r.indexFilesWritten}, ${would}deleted: ${r.indexFilesDeleted}`);
  ctx.out.result(
    `space: ${fmtBytes(r.bytesBefore)} before, ${dryRun ? 'about ' : ''}${fmtBytes(r.bytesAfter)} after; ${fmtBytes(r.bytesDeleted)} ${would}deleted, ${dryRun ? 'about ' : ''}${fmtBytes(r.bytesWritten)} ${would}written, ${fmtBytes(r.bytesFreed)} ${would}freed`,
  );
  const pct = r.bytesUsed > 0 ? ((100 * r.bytesUnusedAfter) / r.bytesUsed).toFixed(1) : '0.0';
  if (r.locked.packs + r.locked.indexes > 0) {
    ctx.out.result(`object lock: ${r.locked.packs} pack(s) and ${r.locked.indexes} index file(s) ${dryRun ? 'would be' : 'were'} kept because they are under retention (the last until ${r.locked.until ?? '?'}): a prune after that removes them`);
  }
  ctx.out.info(`unused space left in kept packs: ${fmtBytes(r.bytesUnusedAfter)} (${pct}% of the data in use; limit ${Number.isFinite(r.maxUnusedPercent) && r.maxUnusedPercent < 100 ? `${r.maxUnusedPercent}%` : 'unlimited'})`);
}
