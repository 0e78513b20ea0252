import { describeLock, fmtAge, listLocks, removeLocks } from '../../repository/lock.ts';
import type { LockEntry } from '../../repository/lock.ts';
import { UsageError } from '../../errors/index.ts';
import type { Command } from '../command.ts';
import { bool } from '../command.ts';
import { openRepo } from '../context.ts';
import { EXIT } from '../exit.ts';

function lockJson(e: LockEntry): Record<string, unknown> {
  return {
    id: e.name,
    short_id: e.name.slice(0, 8),
    stale: e.stale,
    ...(e.reason !== undefined ? { reason: e.reason } : {}),
    ...(e.damaged !== undefined ? { damaged: e.damaged } : {}),
    ...(e.ageMs !== undefined ? { age_seconds: Math.round(e.ageMs / 1000) } : {}),
    ...(e.info !== undefined ? { exclusive: e.info.exclusive, host: e.info.host, pid: e.info.pid, username: e.info.username, command: e.info.command, created: e.info.created, time: e.info.time } : {}),
  };
}

function status(e: LockEntry): string {
  if (e.stale) return `stale: ${e.reason ?? ''}`;
  return `live, refreshed ${fmtAge(e.ageMs ?? 0)} ago`;
}

export const unlockCommand: Command = {
  name: 'unlock',
  summary: 'remove stale repository locks (--remove-all: every lock), or list them',
  usage: 'meshback unlock [--remove-all | --list] [--json]',
  options: {
    'remove-all': { type: 'boolean', description: 'remove live locks too: only when their processes are known to be gone' },
    list: { type: 'boolean', description: 'list the locks and whether each is live or stale; remove nothing' },
  },
  async run(ctx, v, positionals) {
    if (positionals.length > 0) throw new UsageError(`unlock takes no arguments (got ${JSON.stringify(positionals[0])}): meshback unlock [--remove-all | --list]`);
    const all = bool(v['remove-all']);
    if (all && bool(v['list'])) throw new UsageError('unlock: give --remove-all or --list, not both');
    const repo = await openRepo(ctx, { lock: 'none', command: 'unlock', loadIndex: false });
    if (bool(v['list'])) {
      const locks = await listLocks(repo);
      if (ctx.out.json) {
        ctx.out.jsonOut(locks.map(lockJson));
        return EXIT.OK;
      }
      for (const e of locks) ctx.out.result(`${describeLock(e)}: ${status(e)}`);
      ctx.out.result(`${locks.length} lock(s), ${locks.filter((e) => e.stale).length} stale`);
      return EXIT.OK;
    }
    const { removed, kept } = await removeLocks(repo, { all });
    for (const e of removed) ctx.out.result(`removed ${describeLock(e)} (${status(e)})`);
    for (const e of kept) ctx.out.info(`left ${describeLock(e)} in place (${status(e)}); 'meshback unlock --remove-all' removes it if that process is gone`);
    ctx.out.result(`removed ${removed.length} ${all ? '' : 'stale '}lock(s)${kept.length > 0 ? `, ${kept.length} live lock(s) left` : ''}`);
    ctx.out.jsonOut({ message_type: 'summary', removed: removed.map(lockJson), kept: kept.map(lockJson) });
    return EXIT.OK;
  },
};
