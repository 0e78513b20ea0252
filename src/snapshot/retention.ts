/**
 * retention: which snapshots a retention policy keeps and which it lets go. Pure: no I/O, no
 * clock; the CLI (`meshback forget`) loads the manifests, calls `applyPolicy` and deletes.
 *
 * Semantics (docs/design.md, "Retention (forget)"):
 * - Snapshots are split into groups (by host, paths and/or tags); every rule applies within each
 *   group on its own, and each group's counts start afresh.
 * - In a group, snapshots are walked newest first (time descending, then id descending).
 * - `last N`: the N newest are kept.
 * - `hourly/daily/weekly/monthly/yearly N`: a snapshot is kept when its bucket (UTC hour, UTC
 *   day, ISO-8601 week, UTC month, UTC year) differs from the bucket of the snapshot that rule
 *   kept last and the rule has kept fewer than N; so the newest snapshot of each of the N newest
 *   buckets that hold a snapshot is kept. Empty buckets do not count.
 * - `within D`: kept when its time is no earlier than the group's newest snapshot time minus D.
 *   Relative to the newest snapshot, not the clock, so a policy run after backups stopped never
 *   lets the last ones go.
 * - `tags`: kept when it carries any of the listed tags.
 * - A count of -1 means unlimited. A snapshot is kept if any rule keeps it; every rule that
 *   keeps it is listed as a reason.
 */
import { UsageError } from '../errors/index.ts';
import { formatDuration } from '../util/units.ts';

/** The part of a snapshot manifest that retention looks at. */
export interface RetentionSnapshot {
  time: string;
  host: string;
  paths: readonly string[];
  tags: readonly string[];
}

export interface RetentionItem {
  id: string;
  snapshot: RetentionSnapshot;
}

/** Counts: a whole number >= 1, or -1 for unlimited. Undefined: the rule is not used. */
export interface RetentionPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
  /** milliseconds */
  within?: number;
  /** how `within` is written in reasons (default: formatDuration(within)) */
  withinLabel?: string;
  /** KEY=VALUE tags; a snapshot carrying any of them is kept */
  tags?: readonly string[];
}

export type GroupField = 'host' | 'paths' | 'tags';

export const GROUP_FIELDS: readonly GroupField[] = ['host', 'paths', 'tags'];
export const DEFAULT_GROUP_BY: readonly GroupField[] = ['host', 'paths'];

/** The values the group's snapshots share; only the fields grouped by are present. */
export interface GroupKey {
  host?: string;
  paths?: string[];
  tags?: string[];
}

export interface Decision<T extends RetentionItem> {
  item: T;
  /** keep: the rules that keep it; remove: why it goes */
  reasons: string[];
}

export interface GroupResult<T extends RetentionItem> {
  key: GroupKey;
  /** newest first (snapshots with an unreadable time last) */
  keep: Decision<T>[];
  /** newest first */
  remove: Decision<T>[];
}

/** The reason given for a snapshot that no rule keeps. */
export const NO_RULE_REASON = 'no keep rule matched';
/** The reason given for a snapshot whose time cannot be read (it is always kept). */
export const BAD_TIME_REASON = 'time unreadable (kept for safety)';

const BUCKET_RULES = ['hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
type BucketRule = (typeof BUCKET_RULES)[number];
const COUNT_RULES = ['last', ...BUCKET_RULES] as const;

/** True when the policy has at least one keep rule. */
export function hasKeepRule(p: RetentionPolicy): boolean {
  return COUNT_RULES.some((r) => p[r] !== undefined) || p.within !== undefined || (p.tags !== undefined && p.tags.length > 0);
}

/** Throws UsageError for counts that are not >= 1 or -1, a non-positive `within`, or no rule at all. */
export function validatePolicy(p: RetentionPolicy): void {
  for (const r of COUNT_RULES) {
    const n = p[r];
    if (n !== undefined && !(Number.isSafeInteger(n) && (n >= 1 || n === -1))) {
      throw new UsageError(`--keep-${r} ${n}: give a whole number >= 1, or -1 for unlimited`);
    }
  }
  if (p.within !== undefined && !(Number.isFinite(p.within) && p.within > 0)) throw new UsageError('--keep-within must be a positive duration such as 7d');
  if (!hasKeepRule(p)) {
    throw new UsageError('no keep rule given: pass at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --keep-within, --keep-tag (or snapshot ids to forget)');
  }
}

/** Parses a --group-by value: a comma-separated subset of host, paths, tags; '' means one group. */
export function parseGroupBy(s: string): GroupField[] {
  const t = s.trim();
  if (t === '') return [];
  const out: GroupField[] = [];
  for (const part of t.split(',').map((x) => x.trim())) {
    if (!(GROUP_FIELDS as readonly string[]).includes(part)) {
      throw new UsageError(`--group-by ${JSON.stringify(s)}: ${JSON.stringify(part)} is not one of host, paths, tags (comma-separated; '' for one group)`);
    }
    if (!out.includes(part as GroupField)) out.push(part as GroupField);
  }
  // a fixed order, so "paths,host" and "host,paths" give the same groups and keys
  return GROUP_FIELDS.filter((f) => out.includes(f));
}

// ---- buckets (UTC)

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** ISO-8601 week of a UTC date: weeks start on Monday, week 1 holds the year's first Thursday. */
export function isoWeek(d: Date): { year: number; week: number } {
  const day = (d.getUTCDay() + 6) % 7; // Monday 0 .. Sunday 6
  const thursday = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - day + 3);
  const year = new Date(thursday).getUTCFullYear();
  const week = 1 + Math.floor((thursday - Date.UTC(year, 0, 1)) / (7 * 86_400_000));
  return { year, week };
}

/** The bucket label of a time for a rule, e.g. daily -> 2026-11-20, weekly -> 2026-W47. */
export function bucketOf(rule: BucketRule, ms: number): string {
  const d = new Date(ms);
  const y = pad(d.getUTCFullYear(), 4);
  switch (rule) {
    case 'hourly':
      return `${y}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}`;
    case 'daily':
      return `${y}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
    case 'weekly': {
      const w = isoWeek(d);
      return `${pad(w.year, 4)}-W${pad(w.week)}`;
    }
    case 'monthly':
      return `${y}-${pad(d.getUTCMonth() + 1)}`;
    case 'yearly':
      return y;
  }
}

// ---- grouping and the policy

function groupKeyOf(s: RetentionSnapshot, by: readonly GroupField[]): GroupKey {
  const k: GroupKey = {};
  if (by.includes('host')) k.host = s.host;
  if (by.includes('paths')) k.paths = [...s.paths].sort();
  if (by.includes('tags')) k.tags = [...s.tags].sort();
  return k;
}

/** Splits snapshots into groups by the given fields; groups are ordered by host, paths, tags. */
export function groupSnapshots<T extends RetentionItem>(items: readonly T[], by: readonly GroupField[]): { key: GroupKey; items: T[] }[] {
  const groups = new Map<string, { key: GroupKey; items: T[] }>();
  for (const it of items) {
    const key = groupKeyOf(it.snapshot, by);
    const k = JSON.stringify([key.host ?? null, key.paths ?? null, key.tags ?? null]);
    let g = groups.get(k);
    if (g === undefined) groups.set(k, (g = { key, items: [] }));
    g.items.push(it);
  }
  return [...groups.values()].sort((a, b) => compareKeys(a.key, b.key));
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
function compareLists(a: readonly string[] | undefined, b: readonly string[] | undefined): number {
  const x = a ?? [];
  const y = b ?? [];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const c = cmp(x[i]!, y[i]!);
    if (c !== 0) return c;
  }
  return x.length - y.length;
}
/** Groups are listed by host, then paths, then tags (each list compared element by element). */
function compareKeys(a: GroupKey, b: GroupKey): number {
  return cmp(a.host ?? '', b.host ?? '') || compareLists(a.paths, b.paths) || compareLists(a.tags, b.tags);
}

/** Applies the policy to one group's snapshots (any order); see the module comment. */
export function applyToGroup<T extends RetentionItem>(items: readonly T[], p: RetentionPolicy): { keep: Decision<T>[]; remove: Decision<T>[] } {
  const timed = items.map((item) => ({ item, ms: Date.parse(item.snapshot.time) }));
  const keep: Decision<T>[] = [];
  const remove: Decision<T>[] = [];
  const list = timed.filter((t) => !Number.isNaN(t.ms)).sort((a, b) => b.ms - a.ms || (a.item.id < b.item.id ? 1 : a.item.id > b.item.id ? -1 : 0));
  const newest = list[0]?.ms;
  const left: Record<BucketRule, number> = { hourly: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 };
  const lastBucket: Record<BucketRule, string | undefined> = { hourly: undefined, daily: undefined, weekly: undefined, monthly: undefined, yearly: undefined };
  for (const r of BUCKET_RULES) left[r] = p[r] ?? 0;
  const tags = p.tags ?? [];
  const withinLabel = p.within !== undefined ? (p.withinLabel ?? formatDuration(p.within)) : '';
  list.forEach(({ item, ms }, i) => {
    const reasons: string[] = [];
    if (p.last !== undefined && (p.last === -1 || i < p.last)) reasons.push('last');
    for (const r of BUCKET_RULES) {
      if (left[r] === 0) continue;
      const b = bucketOf(r, ms);
      if (b === lastBucket[r]) continue;
      lastBucket[r] = b;
      if (left[r] > 0) left[r]--;
      reasons.push(`${r} ${b}`);
    }
    if (p.within !== undefined && newest !== undefined && ms >= newest - p.within) reasons.push(`within ${withinLabel}`);
    for (const t of tags) if (item.snapshot.tags.includes(t)) reasons.push(`tag ${t}`);
    if (reasons.length > 0) keep.push({ item, reasons });
    else remove.push({ item, reasons: [NO_RULE_REASON] });
  });
  // unreadable times cannot be placed in time: never let them go
  for (const t of timed) if (Number.isNaN(t.ms)) keep.push({ item: t.item, reasons: [BAD_TIME_REASON] });
  return { keep, remove };
}

/** Groups the snapshots and applies the policy to each group. The policy is validated first. */
export function applyPolicy<T extends RetentionItem>(items: readonly T[], p: RetentionPolicy, groupBy: readonly GroupField[] = DEFAULT_GROUP_BY): GroupResult<T>[] {
  validatePolicy(p);
  return groupSnapshots(items, groupBy).map((g) => ({ key: g.key, ...applyToGroup(g.items, p) }));
}
