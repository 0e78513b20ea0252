/**
 * policy/presets/types: what a preset is (the seam every preset type implements; issue 14's
 * shared contract). A preset makes a backup application-consistent without hand-written hooks:
 * runPolicy (src/policy/run.ts) calls each preset's start() in list order after the pre hooks,
 * then the backup reads, then finish() in reverse order (before the post hooks).
 */
import type { ExtraFile } from '../../archiver/index.ts';
import type { EventSink } from '../../events/index.ts';
import type { Source } from '../../source/index.ts';
import type { v } from '../../util/schema.ts';

export interface PresetContext {
  policy: string;
  /** the policy's sources (absolute) */
  sources: string[];
  /** the run's context (MESHBACK_POLICY, MESHBACK_REPO, ...) */
  env: Record<string, string>;
  events: EventSink;
  signal: AbortSignal;
  /** the repository location (a path, file:, s3:) when known (fsfreeze refuses to freeze the filesystem holding it) */
  repository?: string;
  /** directories this process writes during the backup (cache, temp): fsfreeze refuses to freeze theirs */
  writes?: string[];
}

export interface PresetRun {
  /** the preset's type ('postgres'), for reports */
  readonly name: string;
  /** after the pre hooks, before the backup reads; throws MeshbackError('HOOK', one-line message) on failure */
  start(): Promise<void>;
  /**
   * after the backup read everything (ok true) or failed (ok false); always called once start()
   * resolved; must undo start (unfreeze, delete the btrfs snapshot, end the backup mode). With ok
   * true it runs after the walk and before the paths of `readLast` are read and the snapshot is
   * saved: a failure then fails the run with no snapshot.
   */
  finish(ok: boolean): Promise<void>;

  // optional members: runPolicy uses them when present
  /** wraps the Source the backup reads through (btrfs-snapshot: reads a snapshot, records the original paths) */
  source?(inner: Source): Source;
  /** absolute paths the backup leaves out (postgres: postmaster.pid) */
  readonly omit?: string[];
  /** absolute paths under the sources read after every preset's finish(true), from the live filesystem (postgres: pg_wal) */
  readonly readLast?: string[];
  /** files to add to the snapshot, asked for after finish(true) (postgres: backup_label); each in the directory above a path of readLast */
  extraFiles?(): ExtraFile[];
  /** called once when the backup ended (also its paths read last), whatever happened, after finish (postgres: ends its session) */
  close?(): Promise<void>;
}

/** A problem found while a policy file is read: `sub` is the field path below the preset. */
export type PresetFail = (sub: PropertyKey[], problem: string) => Error;

/** What resolving a preset's options needs: the policy file's folder, the policy's sources (absolute). */
export interface ResolveContext {
  dir: string;
  sources: string[];
  fail: PresetFail;
}

/** One preset type: its options' schema (a strict object with `type`), how they resolve, how it runs. */
export interface PresetType<S extends v.GenericSchema = v.GenericSchema> {
  type: string;
  schema: S;
  /** checks and resolves the options read from a file (relative paths made absolute); throws `fail(...)` */
  resolve?(cfg: v.InferOutput<S>, r: ResolveContext): v.InferOutput<S>;
  create(cfg: v.InferOutput<S>, ctx: PresetContext): PresetRun;
}

/** Declares a preset type (keeps its options' type tied to its schema). */
export function presetType<S extends v.GenericSchema>(t: PresetType<S>): PresetType<S> {
  return t;
}
