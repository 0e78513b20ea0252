/**
 * bench/fault/common: helpers every scenario uses: step outcomes, integrity against a reference
 * manifest, bounded waits.
 */
import { manifest } from '../../gen/compare.ts';
import type { Entry } from '../../gen/compare.ts';
import type { Integrity, StepResult } from './types.ts';

/** A reference manifest: display path -> entry (see testing/compare.ts manifest, with hashes). */
export type Manifest = Map<string, Entry>;

/**
 * Did the step do its job? Exit 0, or the tool's warning status for a backup that was stored
 * although the tool reported a problem (StepResult.warning: tar 1 "file changed as we read it",
 * borg 1, restic 3 and meshback 3 "incomplete snapshot").
 */
export function stepSucceeded(s: StepResult): boolean {
  return s.exitCode === 0 || s.warning === true;
}

/** A one-line account of a failed step, for a RepeatResult reason or note. */
export function stepFailure(s: StepResult): string {
  return `${s.name} exited with status ${s.exitCode}${s.message !== undefined ? `: ${s.message}` : ''}`;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** The manifest (with SHA-256 of every file) of `dir`, without the entries `exclude` names. */
export async function hashedManifest(dir: string, exclude?: (path: string) => boolean): Promise<Manifest> {
  const m = await manifest(dir, { hash: true });
  if (exclude !== undefined) for (const k of [...m.keys()]) if (exclude(k)) m.delete(k);
  return m;
}

/** Paths below `dir` (a relative display path prefix) and `dir` itself. */
export function under(dir: string): (path: string) => boolean {
  return (p) => p === dir || p.startsWith(`${dir}/`);
}

const EXAMPLES = 20;

/**
 * Compare the tree at `dir` with `reference` by path, type, size and SHA-256 (files), link
 * target (symlinks); directories count only by their presence. `files` counts the reference's
 * non-directory entries; `extra` the tree's non-directory entries the reference lacks. Entries
 * `exclude` names are left out on both sides.
 */
export async function integrityOf(reference: Manifest, dir: string, exclude?: (path: string) => boolean): Promise<Integrity> {
  const got = await hashedManifest(dir, exclude);
  const r: Integrity = { files: 0, matching: 0, damaged: 0, missing: 0, extra: 0 };
  const damaged: string[] = [];
  const missing: string[] = [];
  const extra: string[] = [];
  for (const [key, want] of reference) {
    if (exclude?.(key) === true || want.type === 'dir') continue;
    r.files++;
    const have = got.get(key);
    if (have === undefined) {
      r.missing++;
      if (missing.length < EXAMPLES) missing.push(key);
      continue;
    }
    const same =
      have.type === want.type &&
      (want.type !== 'file' || (have.size === want.size && have.sha256 === want.sha256)) &&
      (want.type !== 'symlink' || (have.linkTargetRaw?.equals(want.linkTargetRaw ?? Buffer.alloc(0)) ?? false));
    if (same) r.matching++;
    else {
      r.damaged++;
      if (damaged.length < EXAMPLES) damaged.push(key);
    }
  }
  for (const [key, have] of got) {
    if (have.type === 'dir' || reference.has(key)) continue;
    r.extra++;
    if (extra.length < EXAMPLES) extra.push(key);
  }
  if (damaged.length + missing.length + extra.length > 0) {
    r.examples = { ...(damaged.length > 0 ? { damaged } : {}), ...(missing.length > 0 ? { missing } : {}), ...(extra.length > 0 ? { extra } : {}) };
  }
  return r;
}

/** Is every file of the reference back, intact, and nothing more? */
export const integrityClean = (i: Integrity): boolean => i.matching === i.files && i.extra === 0;
