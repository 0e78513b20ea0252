/**
 * maintenance/forget: removes snapshots, either those a retention policy lets go (per group of
 * host and paths by default) or those named by id. Only snapshot files are deleted; the data
 * they used stays in the repository until it is pruned. The policy itself is
 * src/snapshot/retention.ts; this is the operation that applies it to a repository.
 */
import { UsageError } from '../errors/index.ts';
import type { EventSink } from '../events/index.ts';
import { nullSink, reportOp } from '../events/index.ts';
import type { Repository } from '../repository/index.ts';
import type { SnapshotRef } from '../snapshot/manifest.ts';
import { DEFAULT_GROUP_BY, applyPolicy } from '../snapshot/retention.ts';
import type { Decision, GroupField, GroupKey, RetentionPolicy } from '../snapshot/retention.ts';
import { parallel } from '../util/parallel.ts';
import { lockedFiles } from '../repository/object-lock.ts';

/** What forget uses of a repository. */
export type ForgetRepo = Pick<Repository, 'listSnapshots' | 'findSnapshot' | 'removeSnapshot' | 'backend' | 'config'>;

/** The reason given for a snapshot named by id. */
export const BY_ID_REASON = 'given by id';

export interface ForgetOptions {
  /** forget these snapshots (ids or unique prefixes); or else apply `policy` */
  ids?: string[];
  policy?: RetentionPolicy;
  /** the policy applies per group of these fields (default host, paths) */
  groupBy?: readonly GroupField[];
  /** only snapshots of one of these hosts, that include every one of these paths, that carry every one of these tags */
  hosts?: string[];
  paths?: string[];
  tags?: string[];
  dryRun?: boolean;
  events?: EventSink;
}

export interface ForgetGroup {
  /** undefined when forgetting by id */
  key?: GroupKey;
  keep: Decision<SnapshotRef>[];
  remove: Decision<SnapshotRef>[];
}

export interface ForgetResult {
  mode: 'ids' | 'policy';
  groupBy?: readonly GroupField[];
  /** snapshots the selection (hosts, paths, tags) matched */
  matched: number;
  groups: ForgetGroup[];
  kept: number;
  removed: number;
  /** in a dry run: what would have been removed */
  wouldRemove: number;
  /** snapshots to remove that Object Lock keeps: left in place, with the date their retention ends */
  locked: { id: string; until: string }[];
  dryRun: boolean;
}

/**
 * Decides, then (unless dryRun) removes. Ids are all resolved before anything is removed: one
 * unknown id changes nothing. The caller holds the exclusive lock for a real run.
 */
/** Refuses options that do not make one forget (ids with rules, neither); callers may check before opening a repository. */
export function checkForgetOptions(opts: ForgetOptions): void {
  const ids = opts.ids ?? [];
  const selecting = (opts.hosts?.length ?? 0) > 0 || (opts.paths?.length ?? 0) > 0 || (opts.tags?.length ?? 0) > 0 || opts.groupBy !== undefined;
  if (ids.length > 0 && opts.policy !== undefined) throw new UsageError('forget takes either snapshot ids or --keep-* rules, not both: run it twice');
  if (ids.length > 0 && selecting) throw new UsageError('--host, --path, --tag and --group-by select snapshots for a --keep-* policy; with snapshot ids they are not used: leave them out');
  if (ids.length === 0 && opts.policy === undefined) {
    throw new UsageError('no keep rule given: pass at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --keep-within, --keep-tag, or the ids of the snapshots to forget');
  }
}

/** forget, between its op-start and summary events. */
export function forget(repo: ForgetRepo, opts: ForgetOptions): Promise<ForgetResult> {
  return reportOp(opts.events ?? nullSink, 'forget', { ids: opts.ids ?? [], dryRun: opts.dryRun === true }, () => runForget(repo, opts));
}

async function runForget(repo: ForgetRepo, opts: ForgetOptions): Promise<ForgetResult> {
  checkForgetOptions(opts);
  const emit = opts.events ?? nullSink;
  const ids = opts.ids ?? [];
  const dryRun = opts.dryRun === true;
  const all = await repo.listSnapshots();
  let groups: ForgetGroup[];
  let matched: number;
  let groupBy: readonly GroupField[] | undefined;
  if (ids.length > 0) {
    const found = new Set<string>();
    for (const ref of ids) found.add((await repo.findSnapshot(ref, undefined, all)).id);
    const remove = all.filter((s) => found.has(s.id)).reverse().map((item) => ({ item, reasons: [BY_ID_REASON] }));
    groups = [{ keep: [], remove }];
    matched = remove.length;
  } else {
    const hosts = opts.hosts ?? [];
    const paths = opts.paths ?? [];
    const tags = opts.tags ?? [];
    const selected = all.filter((s) => (hosts.length === 0 || hosts.includes(s.snapshot.host)) && paths.every((p) => s.snapshot.paths.includes(p)) && tags.every((t) => s.snapshot.tags.includes(t)));
    groupBy = opts.groupBy ?? [...DEFAULT_GROUP_BY];
    groups = applyPolicy(selected, opts.policy!, groupBy).map((g) => ({ key: g.key, keep: g.keep, remove: g.remove }));
    matched = selected.length;
  }
  const chosen = groups.flatMap((g) => g.remove.map((d) => d.item.id));
  // a snapshot file under Object Lock retention cannot be deleted yet: it is left in place
  const lockedUntil = await lockedFiles(repo, chosen.map((name) => ({ type: 'snapshot' as const, name })));
  const toRemove = chosen.filter((id) => !lockedUntil.has(id));
  const locked = [...lockedUntil].map(([id, until]) => ({ id, until: until.toISOString() })).sort((a, b) => (a.until < b.until ? -1 : 1));
  const kept = groups.reduce((n, g) => n + g.keep.length, 0);
  let removed = 0;
  if (!dryRun) {
    await parallel(toRemove, 8, async (id) => {
      await repo.removeSnapshot(id);
      removed++;
      emit({ type: 'progress', op: 'forget', files: removed, bytes: 0, totalFiles: toRemove.length });
    });
  }
  return { mode: ids.length > 0 ? 'ids' : 'policy', ...(groupBy !== undefined ? { groupBy } : {}), matched, groups, kept, removed, wouldRemove: dryRun ? toRemove.length : 0, locked, dryRun };
}
