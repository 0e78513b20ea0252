import { UsageError } from '../../errors/index.ts';
import { renewObjectLock } from '../../repository/object-lock.ts';
import type { RenewResult } from '../../repository/object-lock.ts';
import type { Command } from '../command.ts';
import { bool } from '../command.ts';
import { openRepo } from '../context.ts';
import type { Context } from '../context.ts';
import { EXIT } from '../exit.ts';

export const lockCommand: Command = {
  name: 'lock',
  summary: 'Object Lock (immutable backups): extend the retention of what kept snapshots use',
  usage: 'meshback lock renew [--dry-run] [--json]',
  options: {
    'dry-run': { type: 'boolean', short: 'n', description: 'report the retentions that fall short; extend nothing' },
  },
  async run(ctx, v, positionals) {
    const sub = positionals[0];
    if (sub !== 'renew') throw new UsageError(`lock needs a subcommand: renew (extends the Object Lock retention of every file the snapshots use)${sub !== undefined ? `; ${JSON.stringify(sub)} is not one` : ''}`);
    const dryRun = bool(v['dry-run']);
    const repo = await openRepo(ctx, { lock: 'shared', command: 'lock renew' });
    const r = await renewObjectLock(repo, { dryRun, events: ctx.out.sink });
    ctx.out.done();
    reportRenew(ctx, r);
    ctx.out.jsonOut({ message_type: 'summary', ...r });
    return r.missing > 0 ? EXIT.INTEGRITY : EXIT.OK;
  },
};

function reportRenew(ctx: Context, r: RenewResult): void {
  const by = Object.entries(r.byType).map(([t, c]) => `${c.extended} of ${c.checked} ${t}`).join(', ');
  if (r.checked === 0) ctx.out.result('object lock: no snapshot, nothing to renew');
  else ctx.out.result(`object lock: ${r.dryRun ? 'would extend' : 'extended'} ${r.extended} of ${r.checked} retention(s)${r.extendedTo !== undefined ? ` to ${r.extendedTo} at the latest` : ''} (${by}); the snapshots need them until ${r.neededUntil}`);
  if (r.missing > 0) ctx.out.warn(`${r.missing} file(s) the snapshots use are missing from storage: run 'meshback check'`);
}

/** The line about what a backup or prune extended (the engine renews; nothing when nothing was extended). */
export function reportRenewed(ctx: Context, r: RenewResult | undefined): void {
  if (r !== undefined && r.extended > 0) ctx.out.info(`object lock: extended ${r.extended} of ${r.checked} retention(s) to ${r.extendedTo} at the latest`);
}
