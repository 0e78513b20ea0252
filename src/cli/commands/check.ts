import { check } from '../../checker/index.ts';
import type { Command } from '../command.ts';
import { bool } from '../command.ts';
import { openRepo } from '../context.ts';
import { EXIT } from '../exit.ts';
import { fmtBytes } from '../../util/units.ts';
import { resourceUsage } from '../resources.ts';

export const checkCommand: Command = {
  name: 'check',
  summary: 'verify the repository structure, and with --read-data all stored data',
  usage: 'meshback check [--read-data]',
  options: {
    'read-data': { type: 'boolean', description: 'read, decrypt and re-hash every pack and blob' },
  },
  async run(ctx, v) {
    const repo = await openRepo(ctx, { lock: 'shared', command: 'check', cache: false });
    const readData = bool(v['read-data']);
    const r = await check(repo, { readData, events: ctx.out.sink });
    ctx.out.done();
    ctx.out.info(`checked ${r.snapshots} snapshots, ${r.trees} trees, ${r.packs} packs${readData ? `; read ${r.packsRead} packs (${fmtBytes(r.bytesRead)}), ${r.blobsChecked} blobs` : ''}`);
    const notIndexed = r.findings.some((f) => f.kind === 'index-damaged' || f.kind === 'blob-missing' || (f.kind === 'tree-damaged' && / is not in the index/.test(f.message)));
    if (r.unindexedPacks.length > 0) {
      if (notIndexed) ctx.out.result(`${r.unindexedPacks.length} pack(s) are not referenced by any index: they may hold the data found missing below`);
      else ctx.out.info(`${r.unindexedPacks.length} pack(s) are not referenced by any index (left by an interrupted backup; harmless; 'meshback prune' deletes them)`);
    }
    for (const f of r.findings) ctx.out.result(`error: ${f.message}`);
    if (r.damagedPacks.length > 0) ctx.out.result(`damaged packs: ${r.damagedPacks.join(', ')}`);
    if (r.repairablePacks.length > 0) {
      const all = r.repairablePacks.length === r.damagedPacks.length;
      ctx.out.result(`${all ? 'all' : `${r.repairablePacks.length} of the`} ${r.damagedPacks.length} damaged pack(s) can be rebuilt from parity: run 'meshback repair packs'`);
    }
    if (r.parityProblems.length > 0) {
      const missing = r.parityProblems.filter((p) => p.state === 'missing').length;
      const damaged = r.parityProblems.length - missing;
      ctx.out.result(`note: ${[missing > 0 ? `${missing} pack(s) have no parity file` : '', damaged > 0 ? `${damaged} parity file(s) are damaged` : ''].filter((x) => x !== '').join(' and ')} (the packs are intact but unprotected): run 'meshback repair packs' to rewrite them`);
    }
    for (const a of r.affected) {
      ctx.out.result(`snapshot ${a.snapshot.slice(0, 8)} (${a.time}) is affected: ${a.files.length} file(s): ${a.files.slice(0, 10).join(', ')}${a.files.length > 10 ? ', ...' : ''}`);
    }
    ctx.out.result(r.ok ? 'no errors were found' : `${r.findings.length} error(s) found: the repository is damaged`);
    if (!r.ok) {
      // in a bucket with versions (Object Lock) a "missing" file may only be hidden by a delete marker
      if (repo.backend.objectLock !== undefined && r.findings.some((f) => f.kind === 'pack-missing' || f.kind === 'index-damaged')) {
        ctx.out.result("first bring back files a delete may only have hidden (S3 versioning keeps them): 'meshback repair undelete', then 'meshback check' again");
      }
      // rebuilding the index may bring the missing data back: that comes before dropping files
      if (notIndexed && (r.unindexedPacks.length > 0 || r.findings.some((f) => f.kind === 'index-damaged'))) {
        ctx.out.result("first rebuild the index from the pack files with 'meshback repair index', then run 'meshback check' again");
      } else {
        const repack = r.damagedPacks.slice(0, 5).map((p) => ` --repack ${p.slice(0, 16)}`).join('');
        if (r.affected.length > 0) {
          ctx.out.result(`to keep the rest restorable: 'meshback repair snapshots${readData ? ' --read-data' : ''}' drops the affected files from their snapshots; then 'meshback prune${repack}' removes the damaged data`);
        } else if (r.damagedPacks.length > 0) {
          ctx.out.result(`no snapshot lost data: 'meshback prune${repack}' copies what is in use out of the damaged pack(s) and deletes them`);
        }
      }
    }
    ctx.out.jsonOut({ message_type: 'summary', ...r, resources: resourceUsage() });
    return r.ok ? EXIT.OK : EXIT.INTEGRITY;
  },
};
