import { UsageError } from '../../errors/index.ts';
import { restore } from '../../restorer/index.ts';
import type { Command } from '../command.ts';
import { bool, str, strs } from '../command.ts';
import { openRepo } from '../context.ts';
import { EXIT } from '../exit.ts';
import { fmtBytes } from '../../util/units.ts';
import { resourceUsage } from '../resources.ts';

export const restoreCommand: Command = {
  name: 'restore',
  summary: 'restore a snapshot into a directory, verified',
  usage: 'meshback restore SNAPSHOT|latest --target DIR [--include PATH]... [--verify]',
  options: {
    target: { type: 'string', argument: 'DIR', description: 'directory to restore into (created if missing; existing files in the way are replaced)' },
    include: { type: 'string', multiple: true, argument: 'PATH', description: "restore only this path of the snapshot (as 'meshback ls' shows it; repeatable)" },
    verify: { type: 'boolean', description: 'also sync and re-read every restored file and compare it with the snapshot' },
  },
  async run(ctx, v, positionals) {
    if (positionals.length !== 1) throw new UsageError('restore needs exactly one SNAPSHOT (an id or latest): meshback restore SNAPSHOT --target DIR');
    const target = str(v['target']);
    if (target === undefined || target === '') throw new UsageError('restore needs --target DIR');
    const repo = await openRepo(ctx, { lock: 'shared', command: 'restore' });
    const r = await restore(repo, { snapshot: positionals[0]!, target, includes: strs(v['include']), verify: bool(v['verify']), events: ctx.out.sink });
    ctx.out.done();
    ctx.out.result(`restored snapshot ${r.snapshotId.slice(0, 8)} to ${target}: ${r.files} files, ${r.dirs} dirs, ${r.symlinks} symlinks, ${fmtBytes(r.bytes)} in ${r.duration.toFixed(2)} s`);
    ctx.out.result(`verified: ${r.filesVerified} files, ${fmtBytes(r.bytesVerified)} (every chunk authenticated and re-hashed)${bool(v['verify']) ? `; re-read from disk and compared: ${r.filesReread} files, ${fmtBytes(r.bytesReread)}` : ''}`);
    if (r.damaged.length > 0) {
      ctx.out.result(`FAILED: ${r.damaged.length} file(s) could not be restored intact and were left out (no wrong bytes were written): ${r.damaged.slice(0, 10).join(', ')}${r.damaged.length > 10 ? ', ...' : ''}`);
      ctx.out.result("run 'meshback check --read-data' to see the damage; restore these files from an older snapshot");
    }
    ctx.out.jsonOut({ message_type: 'summary', ...r, resources: resourceUsage() });
    if (r.damaged.length > 0) return EXIT.INTEGRITY;
    if (r.errors.length > 0) return EXIT.INCOMPLETE;
    return EXIT.OK;
  },
};
