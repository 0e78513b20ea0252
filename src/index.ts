/**
 * meshback's library API: the one typed entry to the engine, for its front ends (the CLI today,
 * the server and the Kubernetes agents next) and for programs that embed it. Everything here
 * reports through typed events (`events` option: op-start, phase, progress, item-error, warning,
 * summary) and typed errors (MeshbackError with a code; `exitCodeOf` gives the CLI's exit code),
 * and never prints.
 *
 *   const { repo, close } = await openRepository('/srv/backups', password, { lock: 'shared' });
 *   try {
 *     const r = await backup(repo, { paths: ['/var/lib/postgresql'], events: (e) => console.log(e) });
 *   } finally {
 *     await close();
 *   }
 */
import { reportOp } from './events/index.ts';
import type { EventSink } from './events/index.ts';
import { Repository } from './repository/index.ts';
import type { InitOptions } from './repository/index.ts';
import { openBackend } from './storage/registry.ts';
import type { OpenBackendOptions } from './storage/registry.ts';

// the vocabulary
export { MeshbackError, UsageError, NotFoundError, IntegrityError, BackendError, NoSpaceError } from './errors/index.ts';
export type { ErrorCode } from './errors/index.ts';
export { nullSink, reportOp } from './events/index.ts';
export type { EventSink, MeshEvent, OpName } from './events/index.ts';
export { parseDuration, formatDuration, parseSize, sizeOf, fmtBytes } from './util/units.ts';

// storage
export type { Backend, FileType, Handle, FileInfo } from './storage/backend.ts';
export { openBackend, registerBackend } from './storage/registry.ts';
export type { BackendCredentials, BackendFactory, OpenBackendOptions } from './storage/registry.ts';
export { stack } from './storage/stack.ts';

// repository, snapshots, trees
export { Repository } from './repository/index.ts';
export { openRepository } from './repository/open.ts';
export type { OpenRepository, OpenRepositoryOptions } from './repository/open.ts';
export type { InitOptions, RepoConfig } from './repository/index.ts';
export { acquireLock, listLocks } from './repository/lock.ts';
export type { Snapshot, SnapshotRef, SnapshotSummary } from './snapshot/manifest.ts';
export type { Node, Tree } from './snapshot/tree.ts';
export { walkTree, walkPair, foldTrees, childPath, displayPath } from './snapshot/walker.ts';
export type { TreeLoader, WalkOptions, WalkRoot } from './snapshot/walker.ts';
export { diffTrees } from './snapshot/diff.ts';
export type { DiffEntry, DiffCounts } from './snapshot/diff.ts';
export { applyPolicy, parseGroupBy, DEFAULT_GROUP_BY } from './snapshot/retention.ts';
export type { RetentionPolicy, GroupField, GroupKey, Decision } from './snapshot/retention.ts';

// seams
export { LocalSource, localSource } from './source/index.ts';
export type { Source } from './source/index.ts';
export { DirectoryTarget } from './target/index.ts';
export { CompareTarget } from './target/compare.ts';
export type { RestoreTarget } from './target/index.ts';
export { createVolume, openVolume, btrfsSupport } from './volumes/index.ts';
export type { Volume, VolumeSpec, PointInTime } from './volumes/index.ts';

// operations
export { backup } from './archiver/index.ts';
export type { BackupOptions, BackupResult, BackupRepo } from './archiver/index.ts';
export { restore } from './restorer/index.ts';
export type { RestoreOptions, RestoreResult, RestoreRepo } from './restorer/index.ts';
export { check } from './checker/index.ts';
export type { CheckOptions, CheckResult, CheckRepo } from './checker/index.ts';
export { repairPacks } from './checker/repair.ts';
export { forget } from './maintenance/forget.ts';
export type { ForgetOptions, ForgetResult, ForgetRepo } from './maintenance/forget.ts';
export { prune } from './maintenance/prune.ts';
export type { PruneOptions, PruneResult, PruneRepo } from './maintenance/prune.ts';
export { repairIndex, repairSnapshots } from './maintenance/repair.ts';
export { copy } from './copier/index.ts';
export type { CopyOptions, CopyResult, CopiedSnapshot, CopySource, CopyDest } from './copier/index.ts';
export type { RepairIndexResult, RepairSnapshotsResult, RepairRepo } from './maintenance/repair.ts';

/** Creates a repository at `location`. */
export async function initRepository(location: string, password: string, opts: InitOptions & { events?: EventSink; storage?: OpenBackendOptions } = {}): Promise<Repository> {
  const backend = openBackend(location, opts.storage ?? {});
  return reportOp(opts.events ?? (() => undefined), 'init', { location: backend.location }, () => Repository.init(backend, password, opts));
}
