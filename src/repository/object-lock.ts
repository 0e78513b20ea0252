/**
 * repository/object-lock: immutable backups on a store with Object Lock (docs/design.md,
 * "Object Lock").
 *
 * Every file but lock files is written with a retention of `days` (the backend does that once
 * the repository's policy is set). A snapshot must stay immutable for `days` after it was made,
 * and so must everything it needs, including packs written long before it (deduplication): so
 * the retention a file needs is the latest, over the snapshots that use it, of the snapshot's end
 * + `days`. renewObjectLock() computes that for every file and extends the retentions that fall
 * short, to the need + `days`/2 (the slack: a file is extended at most about once per `days`/2,
 * not at every backup). backup (archiver) runs it for its new snapshot and prune (maintenance) for
 * every snapshot, through renewAfter(); `meshback lock renew` runs it for every snapshot.
 *
 * - packs (and their parity files): the snapshots whose trees reference a blob in them;
 * - snapshot files: their own snapshot;
 * - keys and the config: the newest snapshot's need (every snapshot needs them);
 * - index files are not renewed: they keep the retention they were written with. They are derived
 *   data (`meshback repair index` rebuilds them from the pack headers, which are protected), and
 *   an index file kept alive by renewal would pin every pack it lists, used or not, so prune could
 *   never remove an unused pack that shares an index file with a used one.
 *
 * lockedFiles() tells forget and prune which files they must not try to delete.
 */
import { BackendError, MeshbackError, UsageError, errMessage } from '../errors/index.ts';
import type { EventSink } from '../events/index.ts';
import { nullSink, reportOp } from '../events/index.ts';
import type { Repository } from './index.ts';
import type { Backend, FileRetention, FileType, Handle, ObjectLock, ObjectLockPolicy } from '../storage/backend.ts';
import { FILE_TYPES } from '../storage/backend.ts';
import { HOLE_PREFIX } from '../snapshot/tree.ts';
import { walkTree } from '../snapshot/walker.ts';
import { parallel } from '../util/parallel.ts';

const DAY_MS = 86_400_000;

/** What renewing uses of a repository. */
export type LockRepo = Pick<Repository, 'backend' | 'config' | 'index' | 'listSnapshots' | 'loadTree'>;

export interface RenewOptions {
  /** only what these snapshots (full ids) need; default every snapshot */
  snapshots?: readonly string[];
  /** report what would be extended, extend nothing */
  dryRun?: boolean;
  events?: EventSink;
}

export interface RenewResult {
  /** files whose retention was looked at */
  checked: number;
  /** retentions extended (or, in a dry run, that would be) */
  extended: number;
  /** by file type: checked and extended */
  byType: Partial<Record<FileType, { checked: number; extended: number }>>;
  /** the latest retention a file needs, ISO-8601 (undefined when there is no snapshot) */
  neededUntil?: string;
  /** the date extended retentions were set to at the latest */
  extendedTo?: string;
  /** files a snapshot needs that are missing from storage (check will name them) */
  missing: number;
  dryRun: boolean;
}

/** The repository's Object Lock and policy, or a UsageError when it has none. */
export function lockOf(repo: Pick<Repository, 'backend' | 'config'>): { ol: ObjectLock; policy: ObjectLockPolicy } {
  const policy = repo.config.objectLock;
  const ol = repo.backend.objectLock;
  if (policy === undefined) throw new UsageError(`the repository at ${repo.backend.location} has no Object Lock (it was not made with 'meshback init --object-lock DAYS'): there is no retention to renew`);
  if (ol === undefined) throw new UsageError(`the repository at ${repo.backend.location} was made with Object Lock, but its store cannot keep files immutable (a copy on another kind of store?): there is no retention to renew`);
  return { ol, policy };
}

/** renewObjectLock, between its op-start and summary events. */
export function renewObjectLock(repo: LockRepo, opts: RenewOptions = {}): Promise<RenewResult> {
  return reportOp(opts.events ?? nullSink, 'lock-renew', { snapshots: opts.snapshots?.length ?? 'all', dryRun: opts.dryRun === true }, () => runRenew(repo, opts));
}

async function runRenew(repo: LockRepo, opts: RenewOptions): Promise<RenewResult> {
  const { ol, policy } = lockOf(repo);
  const emit = opts.events ?? nullSink;
  const dryRun = opts.dryRun === true;
  const days = policy.days * DAY_MS;
  const slack = Math.ceil((policy.days * DAY_MS) / 2 / 1000) * 1000;
  const all = await repo.listSnapshots();
  const wanted = opts.snapshots !== undefined ? new Set(opts.snapshots) : undefined;
  // newest first: a tree reached from a newer snapshot already carries the later need
  const chosen = all.filter((s) => wanted === undefined || wanted.has(s.id)).reverse();
  const need = new Map<string, { h: Handle; until: number }>();
  const needs = (h: Handle, until: number): void => {
    const k = `${h.type}/${h.name}`;
    const cur = need.get(k);
    if (cur === undefined || cur.until < until) need.set(k, { h, until });
  };
  const index = repo.index;
  const packNeed = new Map<number, number>();
  const seenTrees = new Set<string>();
  let missing = 0;
  let latest = 0;
  for (const { id, snapshot } of chosen) {
    const until = Date.parse(snapshot.endTime ?? snapshot.time) + days;
    latest = Math.max(latest, until);
    needs({ type: 'snapshot', name: id }, until);
    const usePack = (idHex: string): boolean => {
      const e = index.entryOf(Buffer.from(idHex, 'hex'));
      if (e < 0) {
        missing++;
        return false;
      }
      const pn = index.packOf(e);
      if ((packNeed.get(pn) ?? 0) < until) packNeed.set(pn, until);
      return true;
    };
    usePack(snapshot.tree);
    await walkTree(
      repo,
      { tree: snapshot.tree },
      (n) => {
        if (n.type !== 'file' || n.content === undefined) return;
        for (const c of n.content) if (!c.startsWith(HOLE_PREFIX)) usePack(c);
      },
      {
        uniqueTrees: seenTrees,
        concurrency: 8,
        shouldLoad: (tid) => usePack(tid),
      },
    );
  }
  for (const [pn, until] of packNeed) {
    needs({ type: 'pack', name: index.packs[pn]! }, until);
    if (repo.config.parity !== undefined) needs({ type: 'parity', name: index.packs[pn]! }, until);
  }
  if (latest > 0) {
    needs({ type: 'config', name: 'config' }, latest);
    for await (const f of repo.backend.list('key')) needs({ type: 'key', name: f.name }, latest);
  }
  const res: RenewResult = { checked: 0, extended: 0, byType: {}, missing, dryRun, ...(latest > 0 ? { neededUntil: new Date(latest).toISOString() } : {}) };
  let extendedTo = 0;
  const todo = [...need.values()];
  await parallel(todo, 16, async ({ h, until }) => {
    let r: FileRetention;
    try {
      r = await ol.retention(h);
    } catch (err) {
      // a missing file is check's to report (a missing parity file is no loss at all)
      if ((err as { code?: string }).code !== 'NOT_FOUND') throw err;
      if (h.type !== 'parity') res.missing++;
      return;
    }
    const t = (res.byType[h.type] ??= { checked: 0, extended: 0 });
    t.checked++;
    res.checked++;
    if (r.until !== undefined && r.until.getTime() >= until) return;
    const to = new Date(until + slack);
    if (!dryRun) await ol.extend(h, to);
    t.extended++;
    res.extended++;
    extendedTo = Math.max(extendedTo, to.getTime());
    if (res.checked % 256 === 0) emit({ type: 'progress', op: 'lock-renew', files: res.checked, totalFiles: todo.length, bytes: 0, current: 'extending retentions' });
  });
  if (extendedTo > 0) res.extendedTo = new Date(extendedTo).toISOString();
  return res;
}

/**
 * The renewal an operation owes after it wrote (backup: `snapshots` = its new one) or rewrote
 * (prune: every snapshot, on a repository opened again) the repository; undefined when the
 * repository has no Object Lock. A failure says what was done (`what`) and what to run.
 */
export async function renewAfter(repo: LockRepo, what: string, opts: RenewOptions = {}): Promise<RenewResult | undefined> {
  // no policy, or a copy of a locked repository on a store that cannot lock: nothing to renew
  if (repo.config.objectLock === undefined || repo.backend.objectLock === undefined) return undefined;
  try {
    return await renewObjectLock(repo, opts);
  } catch (err) {
    const m = `${what}, but extending the Object Lock retention of the data it uses failed (${errMessage(err)}): run 'meshback lock renew'`;
    throw err instanceof MeshbackError && err.code !== 'BACKEND' ? new MeshbackError(err.code, m, { cause: err }) : new BackendError(m, { retryable: false, cause: err });
  }
}

/**
 * Of the given files, those under retention now: name -> until. forget and prune leave them in
 * place (a delete would be refused) and say until when. Empty when the repository has no Object
 * Lock. A missing file is not locked.
 */
export async function lockedFiles(repo: Pick<Repository, 'backend' | 'config'>, files: readonly Handle[]): Promise<Map<string, Date>> {
  const out = new Map<string, Date>();
  const ol = repo.backend.objectLock;
  if (repo.config.objectLock === undefined || ol === undefined || files.length === 0) return out;
  const now = Date.now();
  await parallel(files, 16, async (h) => {
    let r: FileRetention;
    try {
      r = await ol.retention(h);
    } catch (err) {
      if ((err as { code?: string }).code === 'NOT_FOUND') return;
      throw err;
    }
    if (r.until !== undefined && r.until.getTime() > now) out.set(h.name, r.until);
  });
  return out;
}

/** The latest of some dates, ISO-8601 (undefined for none). */
export function latestDate(dates: Iterable<Date>): string | undefined {
  let m = 0;
  for (const d of dates) m = Math.max(m, d.getTime());
  return m > 0 ? new Date(m).toISOString() : undefined;
}

export interface UndeleteResult {
  /** files found hidden behind delete markers, by type and name */
  hidden: { type: FileType; name: string; size: number; modified?: string; markers: number }[];
  /** of them, brought back (0 in a dry run) */
  restored: number;
  dryRun: boolean;
}

/**
 * `repair undelete`: brings back the repository's files that a delete without a version hid behind
 * a delete marker (their versions are still stored: under Object Lock they cannot be removed), by
 * removing the markers. Needs neither the password nor a lock, since a hidden config or key file
 * would stop the repository from opening; lock files are left hidden (they would come back stale).
 */
export async function undeleteFiles(backend: Backend, opts: { dryRun?: boolean; events?: EventSink } = {}): Promise<UndeleteResult> {
  return reportOp(opts.events ?? nullSink, 'repair', { undelete: true, dryRun: opts.dryRun === true }, async () => {
    const ol = backend.objectLock;
    if (ol === undefined) throw new UsageError(`repair undelete brings back files hidden by S3 delete markers; ${backend.location} is not on an S3 bucket, so nothing there can be hidden`);
    const emit = opts.events ?? nullSink;
    const res: UndeleteResult = { hidden: [], restored: 0, dryRun: opts.dryRun === true };
    for (const type of FILE_TYPES) {
      if (type === 'lock') continue;
      const found = await ol.hidden(type);
      for (const f of found) res.hidden.push({ type, name: f.name, size: f.size, ...(f.modified !== undefined ? { modified: f.modified.toISOString() } : {}), markers: f.markers.length });
      if (res.dryRun) continue;
      await parallel(found, 8, async (f) => {
        await ol.unhide(f);
        res.restored++;
        if (res.restored % 64 === 0) emit({ type: 'progress', op: 'repair', files: res.restored, bytes: 0, current: 'removing delete markers' });
      });
    }
    return res;
  });
}
