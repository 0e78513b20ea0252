/**
 * Benchmark datasets (`npm run bench:data`, scripts/bench/data.ts).
 *
 *  - generateDataset: DIR/mesh (generateMeshVolume, tens of thousands of small
 *    files at GiB sizes) + DIR/postgres (a real, cleanly stopped PostgreSQL
 *    cluster filled by `pgbench -i`) + DIR/dataset.json.
 *  - mutateDataset: a deterministic "day of changes": mutateVolume on the mesh
 *    part; on the postgres part a simulation of what a pgbench run writes
 *    (8 KiB relation pages overwritten and appended, WAL pages written after
 *    the current end of WAL), without starting a server.
 *  - generateSmallFiles: N tiny (50–200 byte) text files in a 3-level tree,
 *    written by a few worker threads with synchronous fs calls.
 *
 * Determinism: the mesh part and the small-files tree are byte-for-byte (and
 * mtime-for-mtime) identical for a seed. The PostgreSQL cluster is NOT: initdb
 * picks a random system identifier, the server stamps real times and
 * transaction ids, so only its shape and approximate size are reproducible.
 * Mutating a given tree is deterministic for a seed (also on a `cp -a` copy):
 * it depends only on relative paths, file contents, sizes and mtimes.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { UsageError } from '../../src/errors/index.ts';
import { walk } from './compare.ts';
import type { WalkItem } from './compare.ts';
import { generateMeshVolume, mutateVolume } from './gen.ts';
import type { GenStats, MutateResult } from './gen.ts';
import { Rng, deriveSeed } from './rng.ts';

export const GENERATOR = 'meshback-bench-data';
/** Bump when the output for a given (size, seed) changes. */
export const GENERATOR_VERSION = 1;

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
/** 2024-03-01T00:00:00Z in seconds (same base as gen.ts). */
const BASE_TIME = Date.UTC(2024, 2, 1) / 1000;
/** PostgreSQL block size. */
const PAGE = 8192;
/** PostgreSQL relation segment size (files never grow past it). */
const REL_SEGMENT = GiB;

export type Log = (line: string) => void;
const quiet: Log = () => {};

function withMicros(rng: Rng, sec: number): number {
  return Math.floor(sec) + rng.int(1, 999_999) / 1e6;
}

/** Create `dir` (and parents) or accept it if empty; refuse a non-empty one (UsageError: exit 2). */
export async function prepareEmptyDir(dir: string): Promise<void> {
  let names: string[] = [];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') throw new UsageError(`${dir} exists and is not a directory`);
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (names.length > 0) throw new UsageError(`${dir} is not empty: refusing to write into it (choose a new --out or remove it yourself)`);
  await fs.mkdir(dir, { recursive: true });
  await fs.chmod(dir, 0o755);
}

// ---------------------------------------------------------------------------
// Sizing
// ---------------------------------------------------------------------------

/** Small (1–8 KiB) mesh files for a dataset of `size` bytes: ~30000 at 2 GiB, at least 500. */
export function smallFilesFor(size: number): number {
  return Math.max(500, Math.round((30000 * size) / (2 * GiB)));
}

/** Bytes of a pgbench cluster per scale unit (pgbench_accounts + its index), measured on PG 15. */
export const PG_BYTES_PER_SCALE = 15 * MiB;
/** Fixed part of a fresh cluster: 3 databases' catalogs (~7.5 MB each) + one WAL segment + global/. */
export const PG_BASE_BYTES = 40 * MiB;

/** pgbench scale for a PostgreSQL part of about `bytes` bytes (at least 1). */
export function postgresScaleFor(bytes: number): number {
  return Math.max(1, Math.round((bytes - PG_BASE_BYTES) / PG_BYTES_PER_SCALE));
}

// ---------------------------------------------------------------------------
// PostgreSQL binaries and server
// ---------------------------------------------------------------------------

export interface PgBins {
  /** Major version (e.g. 15). */
  version: number;
  bindir: string;
  initdb: string;
  pgCtl: string;
  pgbench: string;
}

/**
 * Find the PostgreSQL server binaries: the newest /usr/lib/postgresql/<v>/bin
 * (Debian/Ubuntu layout), then $PATH. pgbench may live in that directory or in
 * /usr/bin. Returns null if initdb, pg_ctl, postgres or pgbench is missing.
 */
export function findPostgres(): PgBins | null {
  const candidates: string[] = [];
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base).filter((v) => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) candidates.push(path.join(base, v, 'bin'));
  }
  for (const d of (process.env['PATH'] ?? '').split(':')) if (d) candidates.push(d);
  const isExe = (p: string) => {
    try {
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  for (const bindir of candidates) {
    const initdb = path.join(bindir, 'initdb');
    const pgCtl = path.join(bindir, 'pg_ctl');
    if (!isExe(initdb) || !isExe(pgCtl) || !isExe(path.join(bindir, 'postgres'))) continue;
    const pgbench = [path.join(bindir, 'pgbench'), '/usr/bin/pgbench'].find(isExe);
    if (!pgbench) continue;
    const r = spawnSync(pgCtl, ['--version'], { encoding: 'utf8' });
    const m = /(\d+)(?:\.\d+)?/.exec(r.stdout ?? '');
    if (r.status !== 0 || !m) continue;
    return { version: Number(m[1]), bindir, initdb, pgCtl, pgbench };
  }
  return null;
}

const isRoot = () => process.getuid?.() === 0;

/**
 * The PostgreSQL binaries, installed with apt-get (package `postgresql`) when
 * missing and we are root. Not root and missing: throws one clear line.
 */
export function ensurePostgres(log: Log = quiet): PgBins {
  let bins = findPostgres();
  if (bins) return bins;
  if (!isRoot() || !existsSync('/usr/bin/apt-get')) {
    throw new Error("PostgreSQL is not installed: install the Debian package 'postgresql' (apt-get install postgresql), or pass --no-postgres");
  }
  log("postgres: installing the 'postgresql' package with apt-get ...");
  const r = spawnSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql'], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`apt-get install postgresql failed (exit ${r.status}); install the 'postgresql' package by hand or pass --no-postgres`);
  bins = findPostgres();
  if (!bins) throw new Error("the 'postgresql' package is installed but initdb/pg_ctl/pgbench were not found under /usr/lib/postgresql/*/bin");
  return bins;
}

interface RunResult {
  code: number | null;
  out: string;
}

/** Run a PostgreSQL tool, as the `postgres` OS user when we are root (root cannot run the server). */
function runPg(cmd: string, args: string[], cwd: string): Promise<RunResult> {
  const [file, argv] = isRoot() ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  return new Promise((resolve, reject) => {
    const child = spawn(file as string, argv as string[], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C', PGTZ: 'UTC', TZ: 'UTC' } });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.on('data', (c: Buffer) => chunks.push(c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out: Buffer.concat(chunks).toString('utf8') }));
  });
}

function lastLines(text: string, n = 3): string {
  return text.trim().split('\n').slice(-n).join(' | ');
}

async function initAndFill(dataDir: string, bins: PgBins, scale: number, log: Log): Promise<void> {
  await fs.chmod(dataDir, 0o700);
  const sockDir = await fs.mkdtemp(path.join(os.tmpdir(), 'mb-pg-'));
  const logFile = path.join(sockDir, 'server.log');
  let started = false;
  const stopNow = () => {
    if (!started) return;
    const args = [bins.pgCtl, '-D', dataDir, '-m', 'immediate', '-w', 'stop'];
    if (isRoot()) spawnSync('runuser', ['-u', 'postgres', '--', ...args], { stdio: 'ignore', cwd: sockDir });
    else spawnSync(args[0] as string, args.slice(1), { stdio: 'ignore', cwd: sockDir });
  };
  const onSignal = (sig: NodeJS.Signals) => {
    stopNow();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    if (isRoot()) {
      spawnSync('chown', ['postgres:', dataDir, sockDir]);
      if (spawnSync('runuser', ['-u', 'postgres', '--', 'test', '-w', dataDir]).status !== 0) {
        throw new Error(`the postgres OS user cannot write ${dataDir}: every parent directory must be searchable by others (chmod o+x), or choose an --out under /tmp`);
      }
    }
    log(`postgres ${bins.version}: initdb ${dataDir}`);
    let r = await runPg(bins.initdb, ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'], sockDir);
    if (r.code !== 0) throw new Error(`initdb failed (exit ${r.code}): ${lastLines(r.out)}`);
    const serverOpts = `-c listen_addresses='' -k ${sockDir} -c fsync=off -c synchronous_commit=off -c wal_level=minimal -c max_wal_senders=0 -c autovacuum=off`;
    started = true; // even a failed start may leave a server behind: always try to stop it
    r = await runPg(bins.pgCtl, ['-D', dataDir, '-l', logFile, '-w', '-t', '120', '-o', serverOpts, 'start'], sockDir);
    if (r.code !== 0) {
      const serverLog = await fs.readFile(logFile, 'utf8').catch(() => '');
      throw new Error(`pg_ctl start failed (exit ${r.code}): ${lastLines(serverLog || r.out)}`);
    }
    log(`postgres ${bins.version}: pgbench -i -s ${scale}`);
    r = await runPg(bins.pgbench, ['-i', '-s', String(scale), '-q', '-h', sockDir, '-U', 'postgres', 'postgres'], sockDir);
    if (r.code !== 0) throw new Error(`pgbench -i failed (exit ${r.code}): ${lastLines(r.out)}`);
    r = await runPg(bins.pgCtl, ['-D', dataDir, '-m', 'fast', '-w', '-t', '300', 'stop'], sockDir);
    if (r.code !== 0) throw new Error(`pg_ctl stop failed (exit ${r.code}): ${lastLines(r.out)}`);
    started = false;
  } finally {
    stopNow();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await fs.rm(sockDir, { recursive: true, force: true });
  }
}

export interface PostgresResult {
  version: number;
  scale: number;
  files: number;
  bytes: number;
  seconds: number;
}

/**
 * Create a PostgreSQL data directory at `dataDir` (must not exist or be empty)
 * and fill it with `pgbench -i -s <scale>`, then stop the server cleanly.
 * The server listens only on a Unix socket in a private temporary directory
 * (listen_addresses=''), runs with fsync=off and wal_level=minimal for speed
 * (settings given on the command line, so the cluster's own postgresql.conf is
 * initdb's default) and is always stopped, also on failure.
 */
export async function generatePostgres(dataDir: string, opts: { scale: number; bins?: PgBins; log?: Log }): Promise<PostgresResult> {
  const t0 = performance.now();
  const log = opts.log ?? quiet;
  const bins = opts.bins ?? ensurePostgres(log);
  const scale = Math.max(1, Math.round(opts.scale));
  if (isRoot() && spawnSync('id', ['-u', 'postgres']).status !== 0) throw new Error("the 'postgres' OS user does not exist (it comes with the 'postgresql' package); the server cannot run as root");
  await prepareEmptyDir(dataDir);
  try {
    await initAndFill(dataDir, bins, scale, log);
  } catch (err) {
    // dataDir was empty or absent: everything in it is ours. Leave it empty for a rerun.
    await fs.rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  const items = await walk(dataDir);
  let files = 0;
  let bytes = 0;
  for (const it of items) {
    if (it.st.isDirectory()) continue;
    files++;
    if (it.st.isFile()) bytes += Number(it.st.size);
  }
  return { version: bins.version, scale, files, bytes, seconds: (performance.now() - t0) / 1000 };
}

// ---------------------------------------------------------------------------
// generateDataset
// ---------------------------------------------------------------------------

export interface DatasetInfo {
  generator: string;
  generatorVersion: number;
  /** Requested size (bytes). */
  size: number;
  seed: number;
  /** Non-directory entries under mesh/ and postgres/. */
  files: number;
  /** Apparent bytes of the regular files under mesh/ and postgres/. */
  bytes: number;
  /** pgbench scale, or null without PostgreSQL. */
  postgresScale: number | null;
  generatedAt: string;
  mesh: GenStats & { smallFiles: number; deterministic: true };
  postgres: { version: number; scale: number; files: number; bytes: number; deterministic: false } | null;
  seconds: number;
}

/**
 * Generate a benchmark dataset in `out` (created; must be empty or absent):
 * mesh/ with ≈80% of `size` (100% without PostgreSQL), postgres/ with ≈20%,
 * and dataset.json (a DatasetInfo without `seconds`).
 */
export async function generateDataset(out: string, opts: { size: number; seed: number; postgres: boolean; log?: Log }): Promise<DatasetInfo> {
  const t0 = performance.now();
  const log = opts.log ?? quiet;
  const { size, seed } = opts;
  if (!(size > 0) || !Number.isFinite(size)) throw new UsageError('--size must be positive');
  if (!Number.isSafeInteger(seed)) throw new UsageError('--seed must be an integer');
  await prepareEmptyDir(out);
  const bins = opts.postgres ? ensurePostgres(log) : null;

  let pg: PostgresResult | null = null;
  if (bins) {
    // First: it is quick, and the likeliest to fail.
    pg = await generatePostgres(path.join(out, 'postgres'), { scale: postgresScaleFor(size * 0.2), bins, log });
    log(`postgres: scale ${pg.scale}, ${pg.files} files, ${pg.bytes} bytes in ${pg.seconds.toFixed(1)} s`);
  }
  const meshSize = Math.round(bins ? size * 0.8 : size);
  const smallFiles = smallFilesFor(size);
  log(`mesh: generating ${meshSize} bytes with ${smallFiles} small files`);
  const mesh = await generateMeshVolume(path.join(out, 'mesh'), { size: meshSize, seed, smallFiles });

  const info: DatasetInfo = {
    generator: GENERATOR,
    generatorVersion: GENERATOR_VERSION,
    size,
    seed,
    files: mesh.files + (pg?.files ?? 0),
    bytes: mesh.bytes + (pg?.bytes ?? 0),
    postgresScale: pg?.scale ?? null,
    generatedAt: new Date().toISOString(),
    mesh: { ...mesh, smallFiles, deterministic: true },
    postgres: pg ? { version: pg.version, scale: pg.scale, files: pg.files, bytes: pg.bytes, deterministic: false } : null,
    seconds: 0,
  };
  const { seconds: _omit, ...json } = info;
  const jsonPath = path.join(out, 'dataset.json');
  await fs.writeFile(jsonPath, JSON.stringify(json, null, 2) + '\n', { mode: 0o644 });
  const rootTime = BASE_TIME + new Rng(deriveSeed(seed, 'dataset-root')).int(0, 180 * 86400) + 31 * 86400;
  await fs.utimes(jsonPath, rootTime, rootTime);
  await fs.utimes(out, rootTime, rootTime);
  info.seconds = (performance.now() - t0) / 1000;
  return info;
}

// ---------------------------------------------------------------------------
// mutateDataset / mutatePostgres
// ---------------------------------------------------------------------------

export interface PostgresMutateResult {
  /** Bytes of relation pages overwritten + pages appended + WAL written. */
  changedBytes: number;
  pagesOverwritten: number;
  pagesAppended: number;
  walBytes: number;
  walSegmentsCreated: number;
  filesModified: number;
}

export interface DatasetMutateResult {
  percent: number;
  seed: number;
  /** Bytes (mesh + postgres) before the mutation. */
  totalBytes: number;
  changedBytes: number;
  mesh: MutateResult;
  postgres: PostgresMutateResult | null;
  seconds: number;
}

/**
 * Change about `percent`% of the bytes of a dataset made by generateDataset,
 * deterministically for a seed and a starting tree: `percent`% of mesh/ via
 * mutateVolume and `percent`% of postgres/ via mutatePostgres. Starts no server
 * and leaves dataset.json alone.
 */
export async function mutateDataset(dir: string, opts: { percent: number; seed: number }): Promise<DatasetMutateResult> {
  const t0 = performance.now();
  const { percent, seed } = opts;
  if (!(percent > 0 && percent <= 100)) throw new UsageError('--percent must be in (0, 100]');
  if (!Number.isSafeInteger(seed)) throw new UsageError('--seed must be an integer');
  const meshDir = path.join(dir, 'mesh');
  const pgDir = path.join(dir, 'postgres');
  if (!existsSync(meshDir)) throw new UsageError(`${dir} is not a dataset made by 'generate' (no mesh/ folder)`);
  const meshBytes = await treeBytes(meshDir);
  const mesh = await mutateVolume(meshDir, { percent, seed });
  let postgres: PostgresMutateResult | null = null;
  let pgBytes = 0;
  if (existsSync(path.join(pgDir, 'PG_VERSION'))) {
    pgBytes = await treeBytes(pgDir);
    postgres = await mutatePostgres(pgDir, { percent, seed });
  }
  return {
    percent,
    seed,
    totalBytes: meshBytes + pgBytes,
    changedBytes: mesh.changedBytes + (postgres?.changedBytes ?? 0),
    mesh,
    postgres,
    seconds: (performance.now() - t0) / 1000,
  };
}

async function treeBytes(dir: string): Promise<number> {
  let n = 0;
  for (const it of await walk(dir)) if (it.st.isFile()) n += Number(it.st.size);
  return n;
}

const WAL_NAME = /^[0-9A-F]{24}$/;
/** base/<db>/<relfilenode>[_fsm|_vm][.<segment>] */
const REL_FILE = /^base\/(\d+)\/(\d+)(_fsm|_vm)?(\.\d+)?$/;

interface WalPos {
  tli: number;
  segSize: number;
  magic: number;
  sysid: bigint;
  /** Byte position (LSN) of the first page after the end of WAL. */
  end: number;
}

const walName = (tli: number, segno: number, segSize: number): string => {
  const perId = 0x1_0000_0000 / segSize;
  const h = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');
  return h(tli) + h(Math.floor(segno / perId)) + h(segno % perId);
};

/**
 * Where the WAL ends, found the way PostgreSQL does: start at the page holding
 * the latest checkpoint (global/pg_control) and walk forward while page headers
 * carry the expected address. Null when pg_wal/ has no usable segment.
 */
async function findWalEnd(pgDir: string, walFiles: string[]): Promise<WalPos | null> {
  if (walFiles.length === 0) return null;
  const walDir = path.join(pgDir, 'pg_wal');
  const first = walFiles[0] as string;
  const head = Buffer.alloc(40);
  {
    const fh = await fs.open(path.join(walDir, first), 'r');
    await fh.read(head, 0, 40, 0);
    await fh.close();
  }
  const magic = head.readUInt16LE(0);
  let segSize = head.readUInt32LE(32);
  if (segSize < MiB || segSize > GiB || (segSize & (segSize - 1)) !== 0) segSize = 16 * MiB;
  let sysid = head.readBigUInt64LE(24);
  // pg_control (PG >= 11 layout): system_identifier @0, pg_control_version @8, checkPoint @32.
  let start = -1;
  try {
    const ctl = await fs.readFile(path.join(pgDir, 'global', 'pg_control'));
    if (ctl.length >= 40 && ctl.readUInt32LE(8) >= 1100) {
      start = Number(ctl.readBigUInt64LE(32));
      sysid = ctl.readBigUInt64LE(0);
    }
  } catch {
    // no pg_control: fall back to the oldest segment
  }
  const tli = parseInt(first.slice(0, 8), 16);
  const have = new Set(walFiles);
  if (start < 0 || !have.has(walName(tli, Math.floor(start / segSize), segSize))) {
    start = (parseInt(first.slice(8, 16), 16) * (0x1_0000_0000 / segSize) + parseInt(first.slice(16), 16)) * segSize;
  }
  let pos = Math.floor(start / PAGE) * PAGE;
  for (;;) {
    const segno = Math.floor(pos / segSize);
    const name = walName(tli, segno, segSize);
    if (!have.has(name)) break;
    const seg = await fs.readFile(path.join(walDir, name));
    let off = pos - segno * segSize;
    while (off + PAGE <= seg.length && seg.readUInt16LE(off) === magic && seg.readUInt32LE(off + 4) === tli && Number(seg.readBigUInt64LE(off + 8)) === segno * segSize + off) off += PAGE;
    pos = segno * segSize + off;
    if (off < segSize) break;
  }
  return { tli, segSize, magic, sysid, end: pos };
}

interface PlannedPage {
  item: WalkItem;
  page: number;
}

/**
 * Simulate the writes of a pgbench run on a stopped cluster, without a server:
 * about `percent`% of the bytes under `pgDir` are rewritten, split roughly
 * 50% overwritten relation pages (uniform over the pages of the largest
 * database, as pgbench's random account updates are), 15% new pages appended
 * to 1–3 relations (as pgbench_history grows), 35% WAL pages written in
 * place from the current end of WAL (found from pg_control's checkpoint and the
 * page headers, so successive mutations continue where the last one stopped).
 * Relation sizes stay multiples of 8192. When the existing segments are full, a
 * new segment (WAL pages, then zeros; counted as its full 16 MiB) is created
 * only if the remaining budget covers a whole one, at most one per call;
 * otherwise the WAL share goes to page overwrites. Modified files get
 * deterministic mtimes a few minutes after the newest one in the tree. Page and
 * WAL contents are synthetic (valid-looking headers, no valid checksums or
 * records): a realistic change pattern for a backup tool, not a cluster meant
 * to be started again.
 */
export async function mutatePostgres(pgDir: string, opts: { percent: number; seed: number }): Promise<PostgresMutateResult> {
  const rng = new Rng(deriveSeed(opts.seed, 'mutate-postgres'));
  const items = await walk(pgDir);
  let total = 0;
  let maxSec = 0;
  const dbBytes = new Map<string, number>();
  const rels: WalkItem[] = [];
  const walFiles: string[] = [];
  let walDirItem: WalkItem | undefined;
  for (const it of items) {
    const rel = it.rel.toString('latin1');
    maxSec = Math.max(maxSec, Number(it.st.mtimeNs / 1_000_000_000n));
    if (rel === 'pg_wal') walDirItem = it;
    if (!it.st.isFile()) continue;
    const size = Number(it.st.size);
    total += size;
    const m = REL_FILE.exec(rel);
    if (m && size % PAGE === 0) {
      rels.push(it);
      dbBytes.set(m[1] as string, (dbBytes.get(m[1] as string) ?? 0) + size);
    }
    if (rel.startsWith('pg_wal/') && WAL_NAME.test(rel.slice(7))) walFiles.push(rel.slice(7));
  }
  walFiles.sort();
  const result: PostgresMutateResult = { changedBytes: 0, pagesOverwritten: 0, pagesAppended: 0, walBytes: 0, walSegmentsCreated: 0, filesModified: 0 };
  const budget = Math.round((total * opts.percent) / 100);
  // The database the benchmark writes to: the biggest one (ties: lowest oid, by sorted walk order).
  let db = '';
  for (const [oid, n] of dbBytes) if (n > (dbBytes.get(db) ?? -1)) db = oid;
  const dbRels = rels.filter((it) => REL_FILE.exec(it.rel.toString('latin1'))?.[1] === db);
  const mainForks = dbRels.filter((it) => {
    const m = REL_FILE.exec(it.rel.toString('latin1'));
    return m && !m[3];
  });
  if (dbRels.length === 0) return result;

  // A few minutes after the newest mtime (the cluster's mtimes are real times, keep them plausible).
  const tMut = maxSec + 60 + rng.int(0, 600);
  const modified = new Map<string, Buffer>(); // rel (latin1) -> abs path
  const touch = (it: { rel: Buffer; abs: Buffer }) => modified.set(it.rel.toString('latin1'), it.abs);
  const wal = await findWalEnd(pgDir, walFiles);
  let lsn = wal ? wal.end : 0x0100_0000; // page LSNs: where our WAL goes

  // --- Budget split ------------------------------------------------------------
  let walBudget = wal ? Math.floor((budget * 0.35) / PAGE) * PAGE : 0;
  const appendBudget = budget * 0.15;
  // WAL plan: pages into existing segments, a new segment only when affordable.
  // len: bytes of WAL pages written at off; a created segment is zero-filled after them (as PostgreSQL does).
  const walWrites: { name: string; off: number; len: number; create: boolean; segno: number }[] = [];
  if (wal) {
    const have = new Set(walFiles);
    let pos = wal.end;
    let left = walBudget;
    let spent = 0;
    while (left >= PAGE) {
      const segno = Math.floor(pos / wal.segSize);
      const name = walName(wal.tli, segno, wal.segSize);
      const off = pos - segno * wal.segSize;
      if (have.has(name)) {
        const len = Math.min(left, wal.segSize - off);
        walWrites.push({ name, off, len, create: false, segno });
        pos += len;
        left -= len;
        spent += len;
      } else {
        // A new segment costs segSize; allowed when the whole remaining budget covers it.
        if (budget - spent - appendBudget < wal.segSize) break;
        walWrites.push({ name, off: 0, len: Math.min(left, wal.segSize), create: true, segno });
        spent += wal.segSize;
        break; // at most one new segment per mutation
      }
    }
    walBudget = spent;
  }
  const pageBudget = Math.max(PAGE, budget - walBudget - appendBudget);

  // --- Overwrite pages (distinct, uniform over the database's pages) --------------
  const starts: number[] = [];
  let totalPages = 0;
  for (const it of dbRels) {
    starts.push(totalPages);
    totalPages += Number(it.st.size) / PAGE;
  }
  const nPages = Math.min(totalPages, Math.max(1, Math.floor(pageBudget / PAGE)));
  const chosen = new Set<number>();
  if (nPages * 2 > totalPages) {
    for (const g of rng.shuffle(Array.from({ length: totalPages }, (_, i) => i)).slice(0, nPages)) chosen.add(g);
  } else {
    while (chosen.size < nPages) chosen.add(rng.int(0, totalPages - 1));
  }
  const planned: PlannedPage[] = [...chosen].sort((a, b) => a - b).map((g) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((starts[mid] as number) <= g) lo = mid;
      else hi = mid - 1;
    }
    return { item: dbRels[lo] as WalkItem, page: g - (starts[lo] as number) };
  });
  const images: Buffer[] = []; // modified pages, reused as full-page images in the WAL
  const nextLsn = () => {
    lsn += rng.int(64, 4096);
    return lsn;
  };
  for (let i = 0; i < planned.length; ) {
    const item = (planned[i] as PlannedPage).item;
    const fh = await fs.open(item.abs, 'r+');
    try {
      for (; i < planned.length && (planned[i] as PlannedPage).item === item; i++) {
        const off = (planned[i] as PlannedPage).page * PAGE;
        const page = Buffer.alloc(PAGE);
        await fh.read(page, 0, PAGE, off);
        touchPage(rng, page, nextLsn());
        await fh.write(page, 0, PAGE, off);
        if (images.length < 256) images.push(page);
        result.pagesOverwritten++;
      }
    } finally {
      await fh.close();
    }
    touch(item);
  }

  // --- Append pages to 1–3 relations ----------------------------------------------
  let nAppend = Math.floor(appendBudget / PAGE);
  const canGrow = mainForks.filter((it) => Number(it.st.size) + nAppend * PAGE <= REL_SEGMENT);
  if (nAppend > 0 && canGrow.length > 0) {
    const largest = dbRels.reduce((a, b) => (Number(b.st.size) > Number(a.st.size) ? b : a));
    const targets = rng.shuffle([...canGrow]).slice(0, rng.int(1, 3));
    for (const [k, item] of targets.entries()) {
      const n = k === targets.length - 1 ? nAppend : rng.int(0, nAppend);
      nAppend -= n;
      if (n === 0) continue;
      const size = Number(item.st.size);
      // Template pages: the relation's own, or (empty relation) the largest one's.
      const src = size > 0 ? item : largest;
      const srcPages = Number(src.st.size) / PAGE;
      const sfh = await fs.open(src.abs, 'r');
      const buf = Buffer.alloc(n * PAGE);
      for (let j = 0; j < n; j++) {
        const page = buf.subarray(j * PAGE, (j + 1) * PAGE);
        if (srcPages > 0) await sfh.read(page, 0, PAGE, rng.int(0, srcPages - 1) * PAGE);
        touchPage(rng, page, nextLsn());
      }
      await sfh.close();
      await fs.appendFile(item.abs, buf);
      result.pagesAppended += n;
      touch(item);
    }
  }

  // --- WAL --------------------------------------------------------------------------
  if (wal) {
    const walDir = path.join(pgDir, 'pg_wal');
    const owner = walDirItem ? { uid: Number(walDirItem.st.uid), gid: Number(walDirItem.st.gid) } : null;
    for (const w of walWrites) {
      const data = walPages(rng, wal, w.segno, w.off, w.len, images);
      const p = path.join(walDir, w.name);
      if (w.create) {
        await fs.writeFile(p, Buffer.concat([data, Buffer.alloc(wal.segSize - data.length)]), { mode: 0o600 });
        await fs.chmod(p, 0o600);
        if (owner && isRoot()) await fs.chown(p, owner.uid, owner.gid);
        result.walSegmentsCreated++;
      } else {
        const fh = await fs.open(p, 'r+');
        await fh.write(data, 0, data.length, w.off);
        await fh.close();
      }
      result.walBytes += w.create ? wal.segSize : data.length; // a new segment is segSize new bytes
      touch({ rel: Buffer.from(`pg_wal/${w.name}`), abs: Buffer.from(p) });
    }
  }

  result.changedBytes = (result.pagesOverwritten + result.pagesAppended) * PAGE + result.walBytes;
  result.filesModified = modified.size;
  // Deterministic metadata: modified files in path order, then pg_wal if it gained a file.
  const newTime = () => withMicros(rng, tMut + rng.int(0, 600));
  for (const rel of [...modified.keys()].sort()) {
    const t = newTime();
    await fs.utimes(modified.get(rel) as Buffer, t, t);
  }
  if (result.walSegmentsCreated > 0) {
    const t = newTime();
    await fs.utimes(path.join(pgDir, 'pg_wal'), t, t);
  }
  return result;
}

/**
 * Modify a relation page the way an UPDATE does: new pd_lsn, a new checksum
 * field, and a few 4-byte fields (xmin/xmax, balances) in the tuple area.
 */
function touchPage(rng: Rng, page: Buffer, lsn: number): void {
  page.writeUInt32LE(Math.floor(lsn / 0x1_0000_0000), 0); // pd_lsn.xlogid
  page.writeUInt32LE(lsn >>> 0, 4); // pd_lsn.xrecoff
  page.writeUInt16LE(rng.int(0, 0xffff), 8); // pd_checksum
  const upper = page.readUInt16LE(14);
  const special = page.readUInt16LE(16);
  const [lo, hi] = upper >= 24 && special <= PAGE && upper + 8 < special ? [upper, special - 4] : [24, PAGE - 4];
  const n = rng.int(8, 32);
  for (let i = 0; i < n; i++) page.writeUInt32LE(rng.next(), rng.int(lo, hi) & ~3);
}

/**
 * `len` bytes of WAL-like pages for segment `segno` from offset `off`: valid
 * page headers (magic, timeline, page address; long header on a segment's
 * first page) and records made of small random headers and full-page images.
 */
function walPages(rng: Rng, wal: WalPos, segno: number, off: number, len: number, images: Buffer[]): Buffer {
  const buf = rng.bytes(len); // record headers and data; headers and images are written over it
  for (let p = 0; p < len; p += PAGE) {
    const pageOff = off + p;
    const page = buf.subarray(p, p + PAGE);
    const long = pageOff === 0;
    page.writeUInt16LE(wal.magic, 0);
    page.writeUInt16LE((long ? 0x0002 : 0) | (rng.chance(0.5) ? 0x0001 : 0), 2); // XLP_LONG_HEADER, XLP_FIRST_IS_CONTRECORD
    page.writeUInt32LE(wal.tli, 4);
    page.writeBigUInt64LE(BigInt(segno * wal.segSize + pageOff), 8);
    page.writeUInt32LE(rng.int(0, PAGE), 16); // xlp_rem_len
    let q = 24;
    if (long) {
      page.writeBigUInt64LE(wal.sysid, 24);
      page.writeUInt32LE(wal.segSize, 32);
      page.writeUInt32LE(PAGE, 36);
      q = 40;
    }
    while (q < PAGE) {
      // A record: 24-byte header + block reference, then data or a full-page image slice.
      q += rng.int(24, 80);
      if (q >= PAGE) break;
      const n = Math.min(PAGE - q, rng.int(40, 3000));
      if (images.length > 0 && rng.chance(0.7)) {
        const img = rng.pick(images);
        const from = rng.int(0, PAGE - n);
        img.copy(page, q, from, from + n);
      }
      q = (q + n + 7) & ~7; // MAXALIGN
    }
  }
  return buf;
}

// ---------------------------------------------------------------------------
// generateSmallFiles
// ---------------------------------------------------------------------------

export interface SmallFilesStats {
  files: number;
  dirs: number;
  bytes: number;
  seconds: number;
}

/** Files per leaf directory, and leaf directories per top-level directory. */
const LEAF_FILES = 100;
const LEAVES_PER_TOP = 100;

/** Relative directory of leaf `leaf` (3 levels with the file names: top/leaf/file). */
function leafDir(leaf: number): string {
  return `p${String(Math.floor(leaf / LEAVES_PER_TOP)).padStart(3, '0')}/s${String(leaf % LEAVES_PER_TOP).padStart(2, '0')}`;
}

/** Deterministic mtime (seconds, µs fraction) of a small-files directory. */
function smallDirTime(seed: number, key: string): number {
  const r = new Rng(deriveSeed(seed, 'small-dir-mtime', key));
  return withMicros(r, BASE_TIME + r.int(0, 30 * 86400));
}

/**
 * Generate `files` files of 50–200 bytes (session JSON, metric lines, key/value
 * records, log lines) in `out` (created; must be empty or absent), laid out as
 * pNNN/sNN/<name> with 100 files per leaf and 100 leaves per top-level folder.
 * Contents, names, modes (0644/0755) and mtimes (files and directories) are
 * determined by the seed. Work is split by leaf folder over `workers` threads
 * (default: CPU count, at least 2, at most 4).
 */
export async function generateSmallFiles(out: string, opts: { files: number; seed: number; workers?: number }): Promise<SmallFilesStats> {
  const t0 = performance.now();
  const { files, seed } = opts;
  if (!Number.isSafeInteger(files) || files < 0) throw new UsageError('--files must be a non-negative integer');
  if (!Number.isSafeInteger(seed)) throw new UsageError('--seed must be an integer');
  await prepareEmptyDir(out);
  const leaves = Math.ceil(files / LEAF_FILES);
  const tops = Math.ceil(leaves / LEAVES_PER_TOP);
  const nWorkers = Math.max(1, Math.min(leaves, opts.workers ?? Math.min(4, Math.max(2, os.availableParallelism()))));
  const modeFix = (process.umask() & 0o755) !== 0; // the umask would strip bits of 0644/0755
  const moduleUrl = import.meta.url;
  // Top-level folders first (cheap, and the workers then need no recursive mkdir).
  for (let t = 0; t < tops; t++) {
    const d = path.join(out, `p${String(t).padStart(3, '0')}`);
    await fs.mkdir(d);
    await fs.chmod(d, 0o755);
  }
  const parts = await Promise.all(
    Array.from({ length: nWorkers }, (_, w) => {
      const data: SmallWorkerData = { out, seed, files, worker: w, workers: nWorkers, modeFix };
      return new Promise<{ files: number; bytes: number }>((resolve, reject) => {
        const code = `import(${JSON.stringify(moduleUrl)}).then((m) => m.smallFilesWorker(require('node:worker_threads').workerData)).then((r) => require('node:worker_threads').parentPort.postMessage(r))`;
        const worker = new Worker(code, { eval: true, workerData: data });
        let res: { files: number; bytes: number } | undefined;
        worker.on('message', (m: { files: number; bytes: number }) => (res = m));
        worker.on('error', reject);
        worker.on('exit', (c) => (c === 0 && res ? resolve(res) : reject(new Error(`small-files worker ${w} exited with code ${c}`))));
      });
    }),
  );
  for (let t = 0; t < tops; t++) {
    const key = `p${String(t).padStart(3, '0')}`;
    const tm = smallDirTime(seed, key);
    await fs.utimes(path.join(out, key), tm, tm);
  }
  const tr = smallDirTime(seed, '');
  await fs.utimes(out, tr, tr);
  return {
    files: parts.reduce((a, p) => a + p.files, 0),
    dirs: tops + leaves,
    bytes: parts.reduce((a, p) => a + p.bytes, 0),
    seconds: (performance.now() - t0) / 1000,
  };
}

export interface SmallWorkerData {
  out: string;
  seed: number;
  files: number;
  worker: number;
  workers: number;
  /** chmod every file/dir (the umask would change 0644/0755). */
  modeFix: boolean;
}

const SMALL_NS = ['default', 'shop', 'payments', 'identity', 'platform', 'team-a'];
const SMALL_APPS = ['frontend', 'cartservice', 'checkout', 'payment', 'auth', 'inventory', 'reviews', 'ratings'];
const SMALL_WORDS = 'mesh sidecar envoy proxy upstream route endpoint policy secret token session cache shard replica leader commit retry timeout'.split(' ');
const SMALL_KINDS = ['session', 'metric', 'kv', 'event'] as const;
const SMALL_EXT: Record<(typeof SMALL_KINDS)[number], string> = { session: 'json', metric: 'prom', kv: 'txt', event: 'log' };

/** One text record of a small file (not yet cut to size). */
function smallRecord(r: Rng, kind: (typeof SMALL_KINDS)[number], t: number): string {
  switch (kind) {
    case 'session':
      return `{"sid":"${r.hex(16)}","user":"u${r.int(1, 999999)}","ns":"${r.pick(SMALL_NS)}","exp":${t + r.int(60, 86400)},"ip":"10.244.${r.int(0, 31)}.${r.int(2, 254)}","roles":["${r.pick(SMALL_WORDS)}"]}\n`;
    case 'metric':
      return `istio_requests_total{app="${r.pick(SMALL_APPS)}",ns="${r.pick(SMALL_NS)}",code="${r.pick(['200', '200', '200', '404', '503'])}"} ${r.int(0, 9_999_999)} ${t * 1000 + r.int(0, 999)}\n`;
    case 'kv':
      return `${r.pick(SMALL_WORDS)}.${r.pick(SMALL_WORDS)}=${r.hex(r.int(4, 24))} rev=${r.int(1, 99999)}\n`;
    default:
      return `${new Date(t * 1000).toISOString()} ${r.pick(['INFO', 'INFO', 'WARN', 'DEBUG'])} ${r.pick(SMALL_APPS)} ${r.pick(SMALL_WORDS)} ${r.pick(SMALL_WORDS)} id=${r.hex(8)}\n`;
  }
}

/** Worker body: writes every leaf folder `leaf` with leaf % workers === worker. Exported for the worker bootstrap. */
export async function smallFilesWorker(d: SmallWorkerData): Promise<{ files: number; bytes: number }> {
  const { openSync, writeSync, futimesSync, fchmodSync, closeSync, mkdirSync, chmodSync, utimesSync } = await import('node:fs');
  const leaves = Math.ceil(d.files / LEAF_FILES);
  let files = 0;
  let bytes = 0;
  const buf = Buffer.allocUnsafe(512);
  for (let leaf = d.worker; leaf < leaves; leaf += d.workers) {
    const rel = leafDir(leaf);
    const dir = `${d.out}/${rel}`;
    mkdirSync(dir, { mode: 0o755 });
    if (d.modeFix) chmodSync(dir, 0o755);
    const r = new Rng(deriveSeed(d.seed, 'small-leaf', leaf));
    const base = BASE_TIME + r.int(0, 30 * 86400);
    const end = Math.min(d.files, (leaf + 1) * LEAF_FILES);
    for (let i = leaf * LEAF_FILES; i < end; i++) {
      const kind = SMALL_KINDS[r.int(0, SMALL_KINDS.length - 1)] as (typeof SMALL_KINDS)[number];
      const size = r.int(50, 200);
      const t = base + r.int(0, 86400);
      let n = 0;
      while (n < size) n += buf.write(smallRecord(r, kind, t), n, 'latin1');
      buf[size - 1] = 0x0a; // cut to size, ending with a newline
      const fd = openSync(`${dir}/${kind}-${String(i).padStart(7, '0')}.${SMALL_EXT[kind]}`, 'wx', 0o644);
      try {
        writeSync(fd, buf, 0, size);
        if (d.modeFix) fchmodSync(fd, 0o644);
        const mt = withMicros(r, t);
        futimesSync(fd, mt, mt);
      } finally {
        closeSync(fd);
      }
      files++;
      bytes += size;
    }
    const tm = smallDirTime(d.seed, rel);
    utimesSync(dir, tm, tm);
  }
  return { files, bytes };
}
