/**
 * meshback testbed consistency-redis: the Redis consistency experiment (lab/testbed/
 * consistency-redis.ts) from the command line: its options and its table.
 */
import { UsageError } from '../../src/errors/index.ts';
import { REDIS_CONSISTENCY_METHODS } from '../testbed/index.ts';
import type { RedisConsistencyMethod, RedisConsistencyResult, Testbed } from '../testbed/index.ts';
import { bool, str, strs } from '../../src/cli/command.ts';
import type { Context } from '../../src/cli/context.ts';
import { parseSize } from '../../src/util/units.ts';
import { EXIT } from '../../src/cli/exit.ts';
import type { EventSink } from '../../src/events/index.ts';

function printRedisConsistency(ctx: Context, r: RedisConsistencyResult): void {
  const o = ctx.out;
  o.result(`Redis ${r.redisVersion} (appendonly yes), ${r.volumeKind} volume${r.ballastMiB > 0 ? `, ${r.ballastMiB} MiB of ballast` : ''}, ${r.rate} session writes/s during each backup${r.frequentRewrites ? ', automatic AOF rewrites as often as Redis makes them' : ''}`);
  o.result('method        trials  backed up  loaded  nothing lost  both  AOF rewrites ended (running) while the backup read');
  for (const s of r.summary) {
    const mine = r.trials.filter((t) => t.method === s.method);
    const rw = `${mine.reduce((a, t) => a + t.rewritesDuringBackup, 0)} (${mine.filter((t) => t.rewriteRunningDuringBackup).length} trials)`;
    o.result(`${s.method.padEnd(12)}  ${String(s.trials).padStart(6)}  ${String(s.backedUp).padStart(9)}  ${String(s.loaded).padStart(6)}  ${String(s.lossless).padStart(12)}  ${String(s.good).padStart(4)}  ${rw.padStart(48)}`);
  }
  for (const t of r.trials.filter((x) => !x.good)) o.result(`  ${t.method} #${t.trial}: ${t.exitCode !== 0 ? `meshback run exited ${t.exitCode}: ${t.runMessage}; ` : ''}${t.loaded ? `${t.keysLost} of ${t.keysExpected} sessions lost, ${t.keysChanged} changed` : t.loadMessage}`);
}

export const REDIS_CONSISTENCY_OPTION = { 'no-frequent-rewrites': { type: 'boolean', description: 'consistency-redis: leave the live Redis\'s automatic AOF rewrite settings as they are' } } as const;

export async function consistencyRedis(ctx: Context, tb: Testbed, v: Record<string, unknown>, num: (v: unknown, flag: string, dflt: number) => number, events: EventSink): Promise<number> {
  const methods = strs(v['method']);
  for (const m of methods) if (!(REDIS_CONSISTENCY_METHODS as readonly string[]).includes(m)) throw new UsageError(`--method ${JSON.stringify(m)}: give ${REDIS_CONSISTENCY_METHODS.join(', ')}`);
  const trials = num(v['trials'], '--trials', 3);
  if (!Number.isInteger(trials)) throw new UsageError('--trials must be a whole number');
  const r = await tb.consistencyRedis({
    trials,
    rate: num(v['rate'], '--rate', 200),
    frequentRewrites: !bool(v['no-frequent-rewrites']),
    ballastMiB: parseSize(str(v['ballast']) ?? '0', '--ballast') / (1024 * 1024),
    ...(methods.length > 0 ? { methods: methods as RedisConsistencyMethod[] } : {}),
    events,
  });
  if (ctx.out.json) ctx.out.jsonOut({ message_type: 'summary', ...r });
  else printRedisConsistency(ctx, r);
  return EXIT.OK;
}
