import { UsageError } from '../../errors/index.ts';
import { repairIndex, repairSnapshots } from '../../maintenance/repair.ts';
import { undeleteFiles } from '../../repository/object-lock.ts';
import type { Command } from '../command.ts';
import { bool } from '../command.ts';
import { backendFor, openRepo, repoLocation } from '../context.ts';
import { EXIT } from '../exit.ts';
import { fmtBytes } from '../../util/units.ts';
import { resourceUsage } from '../resources.ts';
import { runRepairPacks } from './repair-packs.ts';

const few = (xs: readonly string[], n = 10): string => xs.slice(0, n).join(', ') + (xs.length > n ? `, ... (${xs.length} in all)` : '');

export const repairCommand: Command = {
  name: 'repair',
  summary: 'rebuild damaged packs from parity, the index from the packs, snapshots without their lost data, or bring back files hidden by S3 delete markers',
  usage: 'meshback repair packs [PACK...] [--dry-run] | repair index [--dry-run] | repair snapshots [ID...] [--read-data] [--dry-run] | repair undelete [--dry-run]',
  options: {
    'read-data': { type: 'boolean', description: 'snapshots: also read, decrypt and re-hash every data blob (else: index entry, pack present and long enough)' },
    'dry-run': { type: 'boolean', description: 'only report what would change (packs: find damaged packs and test the repair, but write nothing)' },
  },
  async run(ctx, v, positionals) {
    const sub = positionals[0];
    if (sub === 'packs') return runRepairPacks(ctx, v, positionals.slice(1));
    if (sub !== 'index' && sub !== 'snapshots' && sub !== 'undelete') throw new UsageError("repair needs a subcommand: 'repair packs [PACK...]', 'repair index', 'repair snapshots [ID...]' or 'repair undelete'");
    const dryRun = bool(v['dry-run']);
    if (sub === 'undelete') {
      if (positionals.length > 1) throw new UsageError('repair undelete takes no arguments');
      // no password and no lock: a hidden config or key file would keep the repository from opening
      const r = await undeleteFiles(backendFor(repoLocation(ctx.g), ctx.out.sink), { dryRun, events: ctx.out.sink });
      ctx.out.done();
      for (const f of r.hidden.slice(0, 20)) ctx.out.info(`hidden: ${f.type === 'config' ? 'config' : `${f.type}/${f.name}`} (${fmtBytes(f.size)}${f.modified !== undefined ? `, written ${f.modified}` : ''}) behind ${f.markers} delete marker(s)`);
      if (r.hidden.length > 20) ctx.out.info(`... and ${r.hidden.length - 20} more`);
      ctx.out.result(r.hidden.length === 0 ? 'no file of the repository is hidden by a delete marker' : `${r.hidden.length} hidden file(s) ${dryRun ? 'would be brought back' : `brought back: ${r.restored}`}${dryRun ? '' : "; run 'meshback check' next"}`);
      ctx.out.jsonOut({ message_type: 'summary', ...r });
      return EXIT.OK;
    }
    if (sub === 'index') {
      if (positionals.length > 1) throw new UsageError('repair index takes no arguments');
      if (bool(v['read-data'])) throw new UsageError('--read-data applies to repair snapshots; repair index always reads every pack');
      // repair index deletes index files: no other process may use the repository meanwhile
      const repo = await openRepo(ctx, { lock: 'exclusive', command: 'repair index', cache: false });
      const r = await repairIndex(repo, { dryRun, events: ctx.out.sink });
      ctx.out.done();
      const would = dryRun ? 'would be ' : '';
      if (dryRun) ctx.out.result('dry run: nothing was changed');
      ctx.out.result(`read ${r.packs} pack(s) (${fmtBytes(r.bytesRead)}): ${r.packsIndexed} indexed with ${r.blobsIndexed} blobs`);
      ctx.out.result(`index files ${would}written: ${r.indexFilesWritten}, ${would}deleted: ${r.indexFilesDeleted} (of ${r.indexFiles}, ${r.damagedIndexFiles} damaged)`);
      for (const d of r.damagedPacks) ctx.out.result(`damaged: ${d.message}; left out of the index: its ${d.blobs ?? 'unknown number of'} blob(s) are lost`);
      for (const m of r.missingPacks) ctx.out.result(`missing: pack ${m.pack} is listed by the old index but not in storage: its ${m.blobs} blob(s) are lost`);
      if (r.blobsFound > 0) ctx.out.result(`${r.blobsFound} blob(s) that the old index did not list are indexed again`);
      const lost = r.blobsLost > 0 || r.damagedPacks.length > 0;
      if (lost) {
        ctx.out.result(`${r.blobsLost} blob(s) of the old index are lost${r.damagedPacks.length > 0 ? `, and the damaged packs' blobs` : ''}: run 'meshback repair snapshots' to drop the files that need them, then 'meshback check'`);
      } else ctx.out.result('no data was lost');
      ctx.out.jsonOut({ message_type: 'summary', ...r, resources: resourceUsage() });
      return lost ? EXIT.INTEGRITY : EXIT.OK;
    }
    const ids = positionals.slice(1);
    const readData = bool(v['read-data']);
    // repair snapshots deletes snapshot files: no other process may use the repository meanwhile
    const repo = await openRepo(ctx, { lock: 'exclusive', command: 'repair snapshots', cache: false });
    const r = await repairSnapshots(repo, { snapshots: ids, readData, dryRun, events: ctx.out.sink });
    ctx.out.done();
    if (dryRun) ctx.out.result('dry run: nothing was changed');
    for (const s of r.repaired) {
      const what = [`${s.droppedFiles.length} file(s)`, `${s.droppedDirs.length} director${s.droppedDirs.length === 1 ? 'y' : 'ies'}`].join(' and ');
      ctx.out.result(`snapshot ${s.original.slice(0, 8)} (${s.time}, ${s.host}, ${s.paths.join(' ')}): ${dryRun ? 'would drop' : 'dropped'} ${what}${s.id !== undefined ? `; replaced by snapshot ${s.id.slice(0, 8)} tagged repaired` : ''}`);
      if (s.droppedDirs.length > 0) ctx.out.result(`  directories: ${few(s.droppedDirs)}`);
      if (s.droppedFiles.length > 0) ctx.out.result(`  files: ${few(s.droppedFiles)}`);
    }
    for (const d of r.damagedSnapshots) ctx.out.result(`damaged: snapshot file ${d.id} cannot be read (${d.message}): it was left as it is; delete it from the repository's snapshots/ directory`);
    ctx.out.result(`${r.snapshots} snapshot(s) examined (${r.trees} trees, ${r.blobsChecked} data blobs ${readData ? 'read and re-hashed' : 'located'}): ${r.repaired.length} ${dryRun ? 'to repair' : 'repaired'}, ${r.unchanged} unchanged`);
    if (!readData && r.repaired.length === 0) ctx.out.info("damage inside pack files is found only with --read-data (as 'meshback check --read-data' finds it)");
    if (r.damagedPacks.length > 0) {
      ctx.out.result(`the lost data was in pack(s) ${few(r.damagedPacks, 5)}: ${dryRun ? 'after the repair, ' : ''}run 'meshback prune${r.damagedPacks.map((p) => ` --repack ${p.slice(0, 16)}`).join('')}' to copy their intact blobs out and delete them`);
    }
    ctx.out.jsonOut({ message_type: 'summary', ...r, resources: resourceUsage() });
    return r.damagedSnapshots.length > 0 ? EXIT.INTEGRITY : EXIT.OK;
  },
};
