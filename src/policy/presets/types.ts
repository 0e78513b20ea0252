/**
 * policy/presets/types: what a preset is (issue 14's shared contract). A preset makes a backup
 * application-consistent without hand-written hooks: runPolicy (src/policy/run.ts) calls each
 * preset's start() in list order after the pre hooks, then the backup reads, then finish() in
 * reverse order (before the post hooks).
 *
 * INTERIM (wip-redis): the subset of the seam the redis preset needs, until wip-presets' seam
 * (this file, index.ts and the run.ts integration) is merged; on merge take wip-presets' version.
 */
import type { EventSink } from '../../events/index.ts';
import type { v } from '../../util/schema.ts';

export interface PresetContext {
  policy: string;
  /** the policy's sources (absolute) */
  sources: string[];
  /** the run's context (MESHBACK_POLICY, MESHBACK_REPO, ...) */
  env: Record<string, string>;
  events: EventSink;
  signal: AbortSignal;
}

export interface PresetRun {
  /** the preset's type ('redis'), for reports */
  readonly name: string;
  /** after the pre hooks, before the backup reads; throws MeshbackError('HOOK', one-line message) on failure */
  start(): Promise<void>;
  /** after the backup read everything (ok true) or failed (ok false); always called once start() resolved; must undo start */
  finish(ok: boolean): Promise<void>;
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
