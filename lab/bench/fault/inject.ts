/**
 * bench/fault/inject: the fault injectors of the volume-corruption, repo-corruption and disk-full
 * scenarios, and the few helpers those scenarios share (measured steps, tolerant manifests,
 * integrity, small loop-mounted filesystems).
 *
 * Every injector draws from an Rng the scenario derives from the repeat's seed, so the same seed
 * damages the same files at the same offsets (given the same data and the same tool version: a
 * repository's pack layout is the tool's, not ours).
 *
 * Vocabulary:
 * - *manifest*: every entry below a root by relative path, with type, size, SHA-256 (regular files)
 *   and link target (symlinks). Unlike testing/compare's manifest it survives unreadable files: a
 *   file that fails to read (EIO from a btrfs checksum error, say) is recorded with `error`.
 * - *integrity*: a manifest compared with a reference manifest, by path, type, size, SHA-256 and
 *   link target; directories are not counted (a missing directory shows as its missing files).
 */
import { promises as fsp, statfsSync } from 'node:fs';
import * as path from 'node:path';
import type { Rng } from '../../gen/rng.ts';
import { measure } from '../measure.ts';
import { CommandError, lastLines, run, which } from '../../../src/host/process.ts';
import type { Measurement } from '../../../src/host/process.ts';
import type { Integrity, StepResult } from './types.ts';
import { ROT_REGION, sameEntry, withWritable, xorRegion } from '../../faults/damage.ts';
import type { MEntry, Manifest } from '../../faults/damage.ts';

export const KiB = 1024;
export const MiB = 1024 * KiB;
/** Bit rot hits whole disk sectors: regions of this size at offsets aligned to it. */

// ---------------------------------------------------------------------------------------------
// Measured steps

/** The last non-empty line of `text` ('' when there is none). */
export function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines[lines.length - 1] ?? '';
}

/** Longest message kept from a tool's output. */
const MESSAGE_CHARS = 400;

const clip = (s: string): string => (s.length > MESSAGE_CHARS ? s.slice(0, MESSAGE_CHARS - 1) + '…' : s);

/**
 * A JSON summary line (meshback --json prints its failure account only there) in one line of
 * prose: its message or error field, else the first finding (check) or error (restore).
 */
function jsonAccount(line: string): string | undefined {
  if (!line.startsWith('{')) return undefined;
  let j: unknown;
  try {
    j = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof j !== 'object' || j === null) return undefined;
  const o = j as Record<string, unknown>;
  for (const k of ['message', 'error']) if (typeof o[k] === 'string') return o[k];
  const first = (k: string): Record<string, unknown> | undefined => {
    const a = o[k];
    return Array.isArray(a) && a.length > 0 && typeof a[0] === 'object' && a[0] !== null ? (a[0] as Record<string, unknown>) : undefined;
  };
  const count = (k: string): number => (o[k] as unknown[]).length;
  const f = first('findings');
  if (f !== undefined) return `${count('findings')} error(s) found, first: ${String(f['message'] ?? f['kind'] ?? '?')}`;
  const e = first('errors');
  if (e !== undefined) return `${count('errors')} file(s) not restored, first: ${e['path'] !== undefined ? `${String(e['path'])}: ` : ''}${String(e['message'] ?? '?')}`;
  return undefined;
}

/**
 * The tool's own one-line account of a failure in its output (at most 400 characters): the last
 * non-empty line, except that a Python traceback (borg's "Local Exception", followed by platform
 * lines) is skipped for the message printed before it, or else the exception line that ends it,
 * and that a JSON summary line is put in prose (see jsonAccount).
 */
export function toolMessage(output: string): string {
  const lines = output.split('\n').map((l) => l.trim());
  const tb = lines.findIndex((l) => l.startsWith('Traceback (most recent call last)'));
  let line: string;
  if (tb < 0) line = lastLine(output);
  else {
    line = lastLine(lines.slice(0, tb).join('\n'));
    if (line === '') line = lines.slice(tb + 1).find((l) => /^[\w.]+(Error|Exception)\b.*:/.test(l)) ?? lastLine(output);
  }
  return clip(jsonAccount(line) ?? line);
}

/** One measured command as a step, with the output of a failed command for the scenario to read. */
export interface Ran {
  step: StepResult;
  /** stderr (or stdout when stderr is empty) tail of a failed command; '' on success */
  output: string;
}

/** A Measurement as a StepResult. */
export function stepOf(name: string, m: Measurement, message?: string): StepResult {
  const s: StepResult = { name, wallSeconds: m.wallSeconds, cpuSeconds: m.cpuSeconds, peakRssBytes: m.maxRssBytes, exitCode: m.exitCode };
  if (message !== undefined && message !== '') s.message = message;
  return s;
}

/**
 * Runs one tool operation and returns its step; a command that exits non-zero is a step with
 * that exit code and its last output line as the message (not an exception). A command that
 * could not run at all (no measurement) still throws.
 */
export async function measured(name: string, op: () => Promise<Measurement>): Promise<Ran> {
  try {
    return { step: stepOf(name, await op()), output: '' };
  } catch (err) {
    if (err instanceof CommandError && err.measurement !== undefined) {
      const output = err.stderrTail.trim() !== '' ? err.stderrTail : err.stdoutTail;
      const m = err.measurement;
      // a command killed by a signal has no exit status: report it as the shell does (128 + n)
      const sig = err.signal !== null ? /(\d+)/.exec(err.signal) : null;
      const exitCode = m.exitCode !== 0 ? m.exitCode : sig !== null ? 128 + Number(sig[1]) : 1;
      return { step: stepOf(name, { ...m, exitCode }, toolMessage(output) || err.message.split('\n')[0]), output };
    }
    throw err;
  }
}

/** Seconds since `t0` (a performance.now() value), to 10 ms like GNU time. */
export function secondsSince(t0: number): number {
  return Math.round((performance.now() - t0) / 10) / 100;
}

// ---------------------------------------------------------------------------------------------
// Manifests and integrity

export interface Comparison {
  integrity: Integrity;
  damaged: MEntry[];
  missing: MEntry[];
  extra: MEntry[];
}

const EXAMPLES = 20;

/** Compares `actual` with `reference`; directories are not counted (see the module comment). */
export function compareManifests(reference: Manifest, actual: Manifest): Comparison {
  const damaged: MEntry[] = [];
  const missing: MEntry[] = [];
  const extra: MEntry[] = [];
  let files = 0;
  let matching = 0;
  for (const [key, ref] of reference) {
    if (ref.type === 'dir') continue;
    files++;
    const got = actual.get(key);
    if (got === undefined) missing.push(ref);
    else if (sameEntry(ref, got)) matching++;
    else damaged.push(ref);
  }
  for (const [key, got] of actual) if (got.type !== 'dir' && !reference.has(key)) extra.push(got);
  const integrity: Integrity = { files, matching, damaged: damaged.length, missing: missing.length, extra: extra.length };
  const examples: NonNullable<Integrity['examples']> = {};
  if (damaged.length > 0) examples.damaged = damaged.slice(0, EXAMPLES).map((e) => e.path);
  if (missing.length > 0) examples.missing = missing.slice(0, EXAMPLES).map((e) => e.path);
  if (extra.length > 0) examples.extra = extra.slice(0, EXAMPLES).map((e) => e.path);
  if (Object.keys(examples).length > 0) integrity.examples = examples;
  return { integrity, damaged, missing, extra };
}

/** Apparent bytes of the regular files of a manifest. */
export function manifestBytes(m: Manifest): number {
  let n = 0;
  for (const e of m.values()) if (e.type === 'file') n += e.size;
  return n;
}

/** "3 damaged, 1 missing of 120 files" */
export function describeIntegrity(i: Integrity): string {
  return `${i.matching} of ${i.files} files intact, ${i.damaged} damaged, ${i.missing} missing, ${i.extra} extra`;
}

// ---------------------------------------------------------------------------------------------
// Repository bit rot

export interface RotRegion {
  /** path relative to the repository */
  file: string;
  offset: number;
  length: number;
}

export interface RepoRot {
  /** the files rot could hit, and their bytes */
  dataFiles: number;
  dataBytes: number;
  regions: RotRegion[];
}

async function regularFiles(dir: string): Promise<{ rel: string; size: number }[]> {
  const out: { rel: string; size: number }[] = [];
  for (const e of await fsp.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const abs = path.join(e.parentPath, e.name);
    out.push({ rel: path.relative(dir, abs), size: (await fsp.stat(abs)).size });
  }
  return out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

/**
 * Where a repository tool keeps the backed-up data: pack or segment files under data/ (meshback,
 * restic, borg), and the parity files beside them for meshback with parity (they are stored bytes
 * too, and bit rot does not spare them); kopia's pack blobs under p/.
 */
const DATA_DIRS: Record<string, readonly string[]> = { meshback: ['data'], 'meshback-parity': ['data', 'parity'], restic: ['data'], borg: ['data'], kopia: ['p'] };

/**
 * The files of a repository that hold the backed-up data: DATA_DIRS for the repository tools,
 * every file otherwise (tar's archives, rsync's and cp's mirror files). Bit rot in index,
 * snapshot or key files is a different experiment.
 */
export async function repoDataFiles(toolName: string, repo: string): Promise<{ rel: string; size: number }[]> {
  const dirs = DATA_DIRS[toolName];
  const out: { rel: string; size: number }[] = [];
  for (const d of dirs ?? ['']) {
    const files = await regularFiles(path.join(repo, d)).catch((err: unknown) => {
      if (d !== '' && (err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    });
    for (const f of files) if (f.size > 0 && !path.basename(f.rel).startsWith('.')) out.push({ ...f, rel: path.join(d, f.rel) });
  }
  return out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

/** Regions per 64 MiB of stored data (at least one region). */
export const ROT_PER_64MIB = 3;

/**
 * Injects bit rot into a repository: ROT_PER_64MIB regions of 4 KiB per 64 MiB of data files
 * (rounded, at least 1), each at a sector-aligned offset drawn uniformly over all data bytes (so
 * a file is hit in proportion to its size; regions do not overlap), every byte of a region XORed
 * with a non-zero pseudo-random byte. A file smaller than a region is rotted whole. Modification
 * times and modes are kept.
 */
export async function rotRepository(toolName: string, repo: string, rng: Rng): Promise<RepoRot> {
  const files = await repoDataFiles(toolName, repo);
  const regions = pickRotRegions(files, rng);
  for (const r of regions) await withWritable(path.join(repo, r.file), (fh) => xorRegion(fh, r.offset, r.length, rng));
  return { dataFiles: files.length, dataBytes: files.reduce((s, f) => s + f.size, 0), regions };
}

/**
 * Where rot strikes `files` (a repository's data files or objects, in a stable order): ROT_PER_64MIB
 * sector-aligned 4 KiB regions per 64 MiB (at least one), drawn uniformly over their bytes.
 */
export function pickRotRegions(files: { rel: string; size: number }[], rng: Rng): RotRegion[] {
  const dataBytes = files.reduce((s, f) => s + f.size, 0);
  if (dataBytes === 0) return [];
  // sector slots: each file's sectors, laid end to end
  const slots = files.map((f) => Math.max(1, Math.ceil(f.size / ROT_REGION)));
  const totalSlots = slots.reduce((s, n) => s + n, 0);
  const count = Math.min(totalSlots, Math.max(1, Math.round((ROT_PER_64MIB * dataBytes) / (64 * MiB))));
  const picked = new Set<number>();
  while (picked.size < count) picked.add(rng.int(0, totalSlots - 1));
  const regions: RotRegion[] = [];
  for (const slot of [...picked].sort((a, b) => a - b)) {
    let s = slot;
    let i = 0;
    while (s >= slots[i]!) s -= slots[i++]!;
    const f = files[i]!;
    const offset = s * ROT_REGION;
    regions.push({ file: f.rel, offset, length: Math.min(ROT_REGION, f.size - offset) });
  }
  return regions;
}

/** Does the repository hold parity files (meshback `init --parity`)? */
export async function hasParity(repo: string): Promise<boolean> {
  try {
    return (await regularFiles(path.join(repo, 'parity'))).length > 0;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Data for the volume

/** Writes `bytes` of incompressible seeded data into `file` (created with its directory). */
export async function writeIncompressible(file: string, bytes: number, rng: Rng): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const fh = await fsp.open(file, 'w');
  try {
    for (let done = 0; done < bytes; done += 4 * MiB) await fh.write(rng.bytes(Math.min(4 * MiB, bytes - done)));
    await fh.sync();
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Small loop-mounted filesystems

/** Free bytes (for an unprivileged user: bavail) of the filesystem holding `dir`. */
export function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

/** Why loop-mounted ext4 filesystems cannot be made here (undefined when they can, as far as a cheap look tells). */
export async function loopFsUnavailable(): Promise<string | undefined> {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'needs root to loop-mount small ext4 filesystems (run the benchmark as root)';
  for (const bin of ['mkfs.ext4', 'mount', 'umount', 'losetup', 'fallocate', 'truncate']) {
    if ((await which(bin)) === undefined) return `${bin} is missing (Debian packages e2fsprogs, mount, util-linux, coreutils)`;
  }
  return undefined;
}

/**
 * A small ext4 filesystem in a sparse image file, loop-mounted at `dir`. `close()` unmounts it,
 * detaches whatever loop device still holds the image and deletes the image; it is safe to call
 * more than once and after a failed mount.
 */
export class LoopFs {
  readonly dir: string;
  readonly image: string;
  #mounted = false;
  #filler: string | undefined;

  constructor(parent: string, name: string) {
    this.dir = path.join(parent, name);
    this.image = path.join(parent, `${name}.img`);
  }

  /** -m 0: no blocks reserved for root (the benchmark runs as root and must meet the real limit). */
  async mount(sizeBytes: number): Promise<void> {
    const size = Math.ceil(sizeBytes / MiB) * MiB;
    await run(['truncate', '-s', String(size), this.image]);
    await run(['mkfs.ext4', '-q', '-F', '-m', '0', this.image]);
    await fsp.mkdir(this.dir, { recursive: true });
    await run(['mount', '-o', 'loop', this.image, this.dir]);
    this.#mounted = true;
  }

  free(): number {
    return freeBytes(this.dir);
  }

  /** Allocates (fallocate: no data written) a filler file so that about `leave` bytes stay free. */
  async fill(leave: number): Promise<void> {
    const want = this.free() - leave;
    if (want <= 0) return;
    this.#filler = path.join(this.dir, 'bench-filler');
    await run(['fallocate', '-l', String(Math.floor(want / (4 * KiB)) * 4 * KiB), this.#filler]);
  }

  /** Deletes the filler file. */
  async unfill(): Promise<void> {
    if (this.#filler !== undefined) await fsp.rm(this.#filler, { force: true });
    this.#filler = undefined;
  }

  async close(): Promise<void> {
    const errors: string[] = [];
    if (this.#mounted) {
      let done = false;
      for (let i = 0; i < 30 && !done; i++) {
        try {
          await run(['umount', this.dir]);
          done = true;
        } catch {
          // busy for a moment (a child process still exiting): wait, then detach it lazily
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      if (!done) {
        try {
          await run(['umount', '-l', this.dir]);
        } catch (err) {
          errors.push(err instanceof Error ? err.message : String(err));
        }
      }
      this.#mounted = false;
    }
    // mount -o loop sets autoclear; detach explicitly whatever is still attached to the image
    try {
      const { stdout } = await run(['losetup', '-j', this.image]);
      for (const l of stdout.split('\n')) {
        const dev = l.split(':')[0];
        if (dev !== undefined && dev.startsWith('/dev/')) await run(['losetup', '-d', dev]);
      }
    } catch {
      /* no losetup, or nothing attached */
    }
    await fsp.rm(this.image, { force: true });
    await fsp.rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
    if (errors.length > 0) throw new Error(`could not unmount ${this.dir}: ${lastLines(errors[0]!, 1, 300)}`);
  }
}

/** Runs `measure` on a shell pipeline; a helper for the scenario's own (non-tool) measured steps. */
export function measureShell(script: string, args: string[]): Promise<Measurement> {
  return measure(['bash', '-c', `set -o pipefail; ${script}`, 'bench-fault', ...args]).then((r) => r.measurement);
}
