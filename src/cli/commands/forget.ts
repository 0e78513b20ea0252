/**
 * forget: removes snapshots, either those a retention policy lets go (per group of host and
 * paths by default) or those named by id. Only snapshot files are deleted; the data they used
 * stays in the repository until it is pruned. The operation is src/maintenance/forget.ts, the
 * policy src/snapshot/retention.ts; this file parses the flags and prints the decisions.
 */
import * as path from 'node:path';
import { UsageError } from '../../errors/index.ts';
import { prune } from '../../maintenance/prune.ts';
import type { PruneResult } from '../../maintenance/prune.ts';
import type { SnapshotRef } from '../../snapshot/manifest.ts';
import { parseGroupBy } from '../../snapshot/retention.ts';
import { checkForgetOptions, forget } from '../../maintenance/forget.ts';
import type { ForgetOptions } from '../../maintenance/forget.ts';
import { parseDuration } from '../../util/units.ts';
import type { Decision, GroupKey, RetentionPolicy } from '../../snapshot/retention.ts';
import type { Command } from '../command.ts';
import { bool, str, strs } from '../command.ts';
import type { Context } from '../context.ts';
import { openRepo } from '../context.ts';
import { EXIT } from '../exit.ts';
import { reportRenewed } from './lock.ts';
import { reportPrune } from './prune.ts';

const COUNT_FLAGS = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;

function parseCount(flag: string, v: string): number {
  if (!/^(-1|[1-9]\d*)$/.test(v.trim()) || !Number.isSafeInteger(Number(v))) {
    throw new UsageError(`--keep-${flag} ${JSON.stringify(v)}: give a whole number >= 1, or -1 for unlimited`);
  }
  return Number(v);
}

function checkTags(flag: string, tags: string[]): void {
  for (const t of tags) if (!/^[^=\s]+=.*$/.test(t)) throw new UsageError(`${flag} ${JSON.stringify(t)} is not KEY=VALUE`);
}

/** Builds the policy from the --keep-* flags (undefined when none is given). */
function policyFrom(v: Record<string, unknown>, warnings: string[]): RetentionPolicy | undefined {
  const p: RetentionPolicy = {};
  let any = false;
  for (const f of COUNT_FLAGS) {
    const s = str(v[`keep-${f}`]);
    if (s !== undefined) {
      p[f] = parseCount(f, s);
      any = true;
    }
  }
  const within = str(v['keep-within']);
  if (within !== undefined) {
    p.within = parseDuration(within, '--keep-within');
    p.withinLabel = within;
    // restic reads m as months here: say what meshback reads
    if (/\d(\.\d+)?m(?![a-z])/.test(within)) warnings.push(`--keep-within ${within}: m is minutes (${Math.round(p.within / 60_000)} min in all); write mo for months (e.g. 6mo)`);
    any = true;
  }
  const tags = strs(v['keep-tag']);
  if (tags.length > 0) {
    checkTags('--keep-tag', tags);
    p.tags = tags;
    any = true;
  }
  return any ? p : undefined;
}

/** The policy as --json reports it: counts, `within` as given plus `within_ms`, tags. */
function policyJson(p: RetentionPolicy): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const f of COUNT_FLAGS) if (p[f] !== undefined) o[f] = p[f];
  if (p.within !== undefined) {
    o['within'] = p.withinLabel;
    o['within_ms'] = p.within;
  }
  if (p.tags !== undefined) o['tags'] = p.tags;
  return o;
}

interface Row {
  id: string;
  short_id: string;
  time: string;
  host: string;
  paths: string[];
  tags: string[];
  reasons: string[];
}

const row = (d: Decision<SnapshotRef>): Row => ({
  id: d.item.id,
  short_id: d.item.id.slice(0, 8),
  time: d.item.snapshot.time,
  host: d.item.snapshot.host,
  paths: d.item.snapshot.paths,
  tags: d.item.snapshot.tags,
  reasons: d.reasons,
});

function keyText(k: GroupKey): string {
  const parts: string[] = [];
  if (k.host !== undefined) parts.push(`host ${k.host}`);
  if (k.paths !== undefined) parts.push(`paths ${k.paths.join(' ')}`);
  if (k.tags !== undefined) parts.push(`tags ${k.tags.length > 0 ? k.tags.join(',') : '(none)'}`);
  return parts.length > 0 ? parts.join(', ') : 'all snapshots';
}

function printGroup(ctx: Context, key: GroupKey | undefined, keep: Row[], remove: Row[], dryRun: boolean): void {
  const verb = dryRun ? 'would remove' : 'remove';
  // newest first, as the policy walks them (unreadable times last)
  const t = (r: Row): number => {
    const ms = Date.parse(r.time);
    return Number.isNaN(ms) ? -Infinity : ms;
  };
  const rows = [...keep.map((r) => ({ r, action: 'keep' })), ...remove.map((r) => ({ r, action: verb }))].sort((a, b) => t(b.r) - t(a.r) || (a.r.id < b.r.id ? 1 : -1));
  if (key !== undefined) ctx.out.result(`${keyText(key)}: ${keep.length + remove.length} snapshot(s), keep ${keep.length}, ${verb} ${remove.length}`);
  const cells = rows.map(({ r, action }) => [r.short_id, r.time.replace('T', ' ').replace(/\.\d+Z$/, 'Z'), action, r.host, r.tags.join(','), r.reasons.join(', ')]);
  const head = ['ID', 'Time', 'Action', 'Host', 'Tags', 'Reasons'];
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const fmt = (c: string[]): string => '  ' + c.map((x, i) => (i === c.length - 1 ? x : x.padEnd(w[i]!))).join('  ');
  ctx.out.result(fmt(head));
  ctx.out.result(fmt(w.map((n) => '-'.repeat(n))));
  for (const c of cells) ctx.out.result(fmt(c));
  if (key !== undefined && keep.length === 0) ctx.out.result(`  note: no snapshot of this group is kept`);
}

export const forgetCommand: Command = {
  name: 'forget',
  summary: 'remove snapshots by retention policy (--keep-*) or by id',
  usage:
    'meshback forget [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N] [--keep-yearly N] [--keep-within DURATION] [--keep-tag KEY=VALUE]... [--group-by host,paths,tags] [--host NAME]... [--path PATH]... [--tag KEY=VALUE]... [--dry-run] [--prune] [--json]\n       meshback forget ID... [--dry-run] [--prune] [--json]',
  options: {
    'keep-last': { type: 'string', argument: 'N', description: 'keep the N newest snapshots of each group (--keep-last=-1: all)' },
    'keep-hourly': { type: 'string', argument: 'N', description: 'keep the newest snapshot of each of the N newest hours that have one (UTC; --keep-hourly=-1: every hour)' },
    'keep-daily': { type: 'string', argument: 'N', description: 'keep the newest snapshot of each of the N newest days that have one (UTC)' },
    'keep-weekly': { type: 'string', argument: 'N', description: 'same per ISO-8601 week (Monday to Sunday, UTC)' },
    'keep-monthly': { type: 'string', argument: 'N', description: 'same per calendar month (UTC)' },
    'keep-yearly': { type: 'string', argument: 'N', description: 'same per calendar year (UTC)' },
    'keep-within': { type: 'string', argument: 'DURATION', description: "keep snapshots made within DURATION before the group's newest one (e.g. 7d, 36h, 1y6mo; units s min h d w mo y)" },
    'keep-tag': { type: 'string', multiple: true, argument: 'KEY=VALUE', description: 'keep snapshots that carry this tag (repeatable: any of them)' },
    'group-by': { type: 'string', argument: 'FIELDS', description: "apply the policy per group of these fields: host, paths, tags, comma-separated (default host,paths; '' for one group)" },
    host: { type: 'string', multiple: true, argument: 'NAME', description: 'only consider snapshots of this host (repeatable: any of them)' },
    path: { type: 'string', multiple: true, argument: 'PATH', description: 'only consider snapshots that include this path (repeatable: all of them)' },
    tag: { type: 'string', multiple: true, argument: 'KEY=VALUE', description: 'only consider snapshots with this tag (repeatable: all of them)' },
    'dry-run': { type: 'boolean', short: 'n', description: 'show what would be removed; remove nothing' },
    prune: { type: 'boolean', description: "prune the repository afterwards (remove data no snapshot uses, as 'meshback prune' does)" },
  },
  async run(ctx, v, positionals) {
    const dryRun = bool(v['dry-run']);
    const warnings: string[] = [];
    const policy = policyFrom(v, warnings);
    for (const w of warnings) ctx.out.warn(w);
    const tags = strs(v['tag']);
    checkTags('--tag', tags);
    const groupByText = str(v['group-by']);
    const withPrune = bool(v['prune']);
    const opts: ForgetOptions = {
      ids: positionals,
      ...(policy !== undefined ? { policy } : {}),
      ...(groupByText !== undefined ? { groupBy: parseGroupBy(groupByText) } : {}),
      hosts: strs(v['host']),
      paths: strs(v['path']).map((p) => path.resolve(p)),
      tags,
      dryRun,
      events: ctx.out.sink,
    };
    checkForgetOptions(opts); // before the repository is opened

    // deleting snapshots (and pruning) takes the exclusive lock; a dry run only reads
    const repo = await openRepo(ctx, { lock: dryRun ? 'shared' : 'exclusive', command: withPrune ? 'forget --prune' : 'forget', loadIndex: withPrune && !dryRun });
    const r = await forget(repo, opts);
    if (r.mode === 'policy' && r.matched === 0) ctx.out.info('no snapshot matches: nothing to do');
    const groups = r.groups.map((g) => ({ ...(g.key !== undefined ? { key: g.key } : {}), keep: g.keep.map(row), remove: g.remove.map(row) }));
    for (const g of groups) printGroup(ctx, g.key, g.keep, g.remove, dryRun);
    if (dryRun) ctx.out.result(`dry run: would remove ${r.wouldRemove} snapshot(s) and keep ${r.kept}; nothing was removed`);
    else ctx.out.result(`removed ${r.removed} snapshot(s), kept ${r.kept}${r.removed > 0 && !withPrune ? '; the data only they used stays in the repository until it is pruned' : ''}`);
    if (r.locked.length > 0) {
      const last = r.locked[r.locked.length - 1]!;
      ctx.out.info(`object lock: ${r.locked.length} snapshot(s) to remove are under retention and ${dryRun ? 'would be' : 'were'} left in place (the first until ${r.locked[0]!.until}, the last until ${last.until}): run forget again after that`);
    }
    let pruned: PruneResult | undefined;
    if (withPrune && dryRun) ctx.out.info('--prune: prune runs after a real forget (its effect is not estimated in a dry run)');
    else if (withPrune) {
      pruned = await prune(repo, { events: ctx.out.sink });
      ctx.out.done();
      reportPrune(ctx, pruned, false);
      reportRenewed(ctx, pruned.objectLock);
    }
    ctx.out.jsonOut({
      message_type: 'summary',
      dry_run: dryRun,
      mode: r.mode,
      ...(policy !== undefined ? { policy: policyJson(policy), group_by: r.groupBy } : {}),
      groups: groups.map((g) => ({ key: g.key ?? {}, keep: g.keep, remove: g.remove })),
      kept: r.kept,
      removed: r.removed,
      would_remove: r.wouldRemove,
      locked: r.locked,
      pruned: pruned !== undefined,
      ...(pruned !== undefined ? { prune: pruned } : {}),
    });
    return EXIT.OK;
  },
};
