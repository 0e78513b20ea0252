/**
 * testbed/consistency: does a backup of a live PostgreSQL volume restore to a database that
 * starts? The live `postgres` volume is backed up while orders are being written, each time by a
 * real `meshback run POLICY --config FILE` (bin/meshback, a repository in DIR/consistency/repo)
 * with a policy file generated for the method (DIR/consistency/policies/METHOD.yaml):
 *
 * - plain:           no preset, no hook: the live files (crash-inconsistent: files are read one
 *                    after another while the server writes them);
 * - checkpoint:      a pre hook `psql -c CHECKPOINT`, then the plain backup;
 * - postgres:        the postgres preset (pg_backup_start/stop on one session, pg_wal read after
 *                    the stop, backup_label in the snapshot);
 * - btrfs-snapshot:  the btrfs-snapshot preset (a read-only snapshot of the volume's subvolume is
 *                    read, recorded under the volume's path; the restored cluster is a crash
 *                    image); btrfs volumes only;
 * - fsfreeze:        the fsfreeze preset on the volume's mount (the filesystem takes no write
 *                    while the backup reads); btrfs volumes only (a directory volume is no mount);
 * - postgres+btrfs-snapshot: both presets (the snapshot is taken in backup mode; pg_wal comes
 *                    from the live volume after the stop); btrfs volumes only.
 *
 * With `checkpointsDuringBackup` (the default) a CHECKPOINT is also issued every 200 ms while the
 * backup reads, as happens on a large volume whose backup takes longer than checkpoint_timeout:
 * that is what makes a file-by-file copy inconsistent (pg_control can then name a checkpoint
 * whose WAL, or whose flushed pages, the copy does not hold).
 *
 * Each snapshot is restored with a plain `meshback restore` into a fresh directory
 * (DIR/consistency/work/METHOD-TRIAL) and a PostgreSQL server is started on it on a free port
 * (postmaster.pid is removed first when there is one: it names the live server on this host,
 * which on another node would be stale; the postgres preset leaves it out), then: does it start,
 * does amcheck pass (bt_index_check with heapallindexed on every index, verify_heapam), and are
 * the orders acknowledged before the backup began all there. The server is stopped and the
 * directory deleted after each trial.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UsageError, errMessage } from '../../src/errors/index.ts';
import { run } from '../../src/host/process.ts';
import { MESHBACK_BIN } from '../../src/host/self.ts';
import { pgData, volumeOf } from './components.ts';
import { postgresUser } from './deps.ts';
import { runLoad } from './load.ts';
import { PgSession, pgQuery } from './stores.ts';
import { freePort, groupAlive, logTail, procStat, sleep, spawnLogged, stopGroup, waitFor } from './procs.ts';
import { paths, readJournal } from './state.ts';
import type { TestbedState } from './state.ts';
import type { EventSink } from '../../src/events/index.ts';

export const CONSISTENCY_METHODS = ['plain', 'checkpoint', 'postgres', 'btrfs-snapshot', 'fsfreeze', 'postgres+btrfs-snapshot'] as const;
/** the methods that need the postgres volume to be a btrfs volume (a subvolume, a mount) */
const BTRFS_ONLY: readonly ConsistencyMethod[] = ['btrfs-snapshot', 'fsfreeze', 'postgres+btrfs-snapshot'];
export type ConsistencyMethod = (typeof CONSISTENCY_METHODS)[number];

export interface ConsistencyOptions {
  /** default: all (btrfs-snapshot, fsfreeze and postgres+btrfs-snapshot only on btrfs volumes) */
  methods?: ConsistencyMethod[];
  /** trials per method (default 1) */
  trials?: number;
  /** order writes per second during each backup (default 200) */
  rate?: number;
  /** a CHECKPOINT every 200 ms while the backup reads (default true) */
  checkpointsDuringBackup?: boolean;
  /** the meshback program (default bin/meshback of this checkout) */
  meshback?: string;
  /**
   * MiB of ballast: an UNLOGGED table of that size made once before the trials, which only makes
   * every backup read longer (as on a larger database), so that more checkpoints fall inside it
   */
  ballastMiB?: number;
  /**
   * a fresh repository for every trial, so that every backup reads the whole volume (as a first
   * backup does); by default the trials share one repository and a backup reads only the files
   * changed since the previous one (meshback skips files whose size, mtime, ctime and inode match)
   */
  fullBackups?: boolean;
  /** keep each restored directory (DIR/consistency/work/METHOD-TRIAL) for inspection */
  keepRestored?: boolean;
  /** extra environment for meshback (e.g. MESHBACK_TEST_SCRYPT_N in tests) */
  env?: Record<string, string>;
  /** the experiment's account, as typed events (`note`, op testbed) */
  events?: EventSink;
}

export interface ConsistencyTrial {
  method: ConsistencyMethod;
  trial: number;
  /** seconds the backup (with its hooks) took */
  backupSeconds: number;
  /** bytes the (first) backup read from the volume */
  bytesRead: number;
  snapshots: string[];
  /** orders acknowledged during the backup */
  writesDuringBackup: number;
  checkpointsDuringBackup: number;
  /** did a PostgreSQL server start on the restored directory and accept a query */
  started: boolean;
  /** how it started (crash recovery seconds) or why it did not (its log) */
  startMessage: string;
  amcheck: 'pass' | 'fail' | 'not run';
  amcheckMessage: string;
  /** orders acknowledged before the backup began (all must be there) */
  rowsExpected: number;
  rowsLost: number;
  /** started, amcheck passed, nothing lost */
  good: boolean;
}

export interface ConsistencySummary {
  method: ConsistencyMethod;
  trials: number;
  started: number;
  amcheckPassed: number;
  lossless: number;
  /** why the method was not run (a btrfs-only method on directory volumes) */
  skipped?: string;
}

export interface ConsistencyResult {
  volumeKind: string;
  fullBackups: boolean;
  pgVersion: number;
  ballastMiB: number;
  rate: number;
  checkpointsDuringBackup: boolean;
  trials: ConsistencyTrial[];
  summary: ConsistencySummary[];
}

interface Ctx {
  s: TestbedState;
  o: ConsistencyOptions;
  bin: string;
  env: Record<string, string>;
  work: string;
  log: (m: string) => void;
}

async function meshback(c: Ctx, args: string[]): Promise<string> {
  const r = await run([c.bin, ...args, '--json'], { env: c.env });
  return r.stdout;
}

/** The snapshot id and the bytes read, from meshback run --json (the run's report). */
function runSummary(stdout: string): { id: string; bytesRead: number } {
  for (const line of stdout.split('\n').reverse()) {
    if (!line.startsWith('{')) continue;
    const j = JSON.parse(line) as { message_type?: string; snapshot_id?: string; backup?: { bytes_read?: number } };
    if (j.message_type === 'summary' && typeof j.snapshot_id === 'string') return { id: j.snapshot_id, bytesRead: j.backup?.bytes_read ?? 0 };
  }
  throw new Error(`meshback run printed no snapshot id: ${stdout.slice(-300)}`);
}

/** The policy file of a method (YAML is a superset of JSON: written as JSON). */
export function consistencyPolicy(method: ConsistencyMethod, o: { volume: string; dataDir: string; mount?: string; port: number; pgBindir: string }): string {
  const pg = { type: 'postgres', 'data-dir': o.dataDir, host: '127.0.0.1', port: o.port, user: 'postgres' };
  const presets: Record<string, unknown>[] = [];
  const hooks: Record<string, unknown> = {};
  if (method === 'checkpoint') hooks['pre'] = [{ exec: [path.join(o.pgBindir, 'psql'), '-h', '127.0.0.1', '-p', String(o.port), '-U', 'postgres', '-d', 'postgres', '-c', 'CHECKPOINT'], timeout: '2m' }];
  if (method === 'postgres' || method === 'postgres+btrfs-snapshot') presets.push(pg);
  if (method === 'btrfs-snapshot' || method === 'postgres+btrfs-snapshot') presets.push({ type: 'btrfs-snapshot' });
  if (method === 'fsfreeze') presets.push({ type: 'fsfreeze', mount: o.mount, timeout: '5m' });
  const policy = { sources: [o.volume], tags: { 'testbed-consistency': method }, ...(Object.keys(hooks).length > 0 ? { hooks } : {}), ...(presets.length > 0 ? { presets } : {}) };
  return JSON.stringify({ version: 1, policies: { [policyName(method)]: policy } }, null, 2) + '\n';
}

const policyName = (m: ConsistencyMethod): string => `consistency-${m.replace('+', '-')}`;

/**
 * Makes an experiment's repository BASE/NAME and its password file BASE/password on first use;
 * returns the environment meshback runs with there (the caller's own repository and password left
 * out). The PostgreSQL and the Redis consistency experiments both use it.
 */
export async function ensureRepo(base: string, bin: string, extraEnv: Record<string, string>, name = 'repo'): Promise<Record<string, string>> {
  await fsp.mkdir(base, { recursive: true });
  const repo = path.join(base, name);
  const pw = path.join(base, 'password');
  if (!existsSync(pw)) await fsp.writeFile(pw, randomBytes(18).toString('base64') + '\n', { mode: 0o600 });
  const env: Record<string, string> = {};
  // the caller's own repository and password are not this experiment's
  const own = new Set(['MESHBACK_REPO', 'MESHBACK_PASSWORD', 'MESHBACK_PASSWORD_FILE']);
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !own.has(k)) env[k] = v;
  Object.assign(env, extraEnv, { MESHBACK_REPO: repo, MESHBACK_PASSWORD_FILE: pw });
  if (!existsSync(path.join(repo, 'config'))) await run([bin, 'init', '--json'], { env });
  return env;
}

/** Starts a throwaway server on a restored data directory; resolves when it answers or gave up. */
async function startRestored(data: string, logFile: string, bindir: string, timeoutMs: number): Promise<{ child?: ChildProcess; port: number; started: boolean; message: string }> {
  const port = await freePort();
  await fsp.rm(path.join(data, 'postmaster.pid'), { force: true });
  const user = postgresUser();
  const t0 = Date.now();
  const child = await spawnLogged(path.join(bindir, 'postgres'), ['-D', data, '-c', `port=${port}`, '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='], { logFile, ...(user !== undefined ? { user } : {}) });
  let exited = false;
  child.once('exit', () => (exited = true));
  const ok = await waitFor(
    async () => {
      if (exited) return false;
      try {
        await pgQuery(port, 'SELECT 1', { connectMs: 1000, timeoutMs: 5000 });
        return true;
      } catch {
        return undefined;
      }
    },
    timeoutMs,
    100,
  );
  if (ok === true) return { child, port, started: true, message: `started (crash recovery included) in ${((Date.now() - t0) / 1000).toFixed(2)} s` };
  const tail = await logTail(logFile, 4, 500);
  return { child, port, started: false, message: exited ? `did not start: ${tail}` : `did not answer within ${timeoutMs / 1000} s: ${tail}` };
}

async function stopRestored(child: ChildProcess | undefined): Promise<void> {
  if (child?.pid === undefined) return;
  const ref = { pid: child.pid, startTime: procStat(child.pid)?.startTime ?? -1 };
  if (groupAlive(ref)) await stopGroup(ref, 'SIGINT', 10_000);
}

async function checkRestored(port: number, tables: string[], expected: Map<string, Set<string>>): Promise<{ amcheck: 'pass' | 'fail'; amcheckMessage: string; lost: number }> {
  const conn = await PgSession.connect(port, 5000);
  const problems: string[] = [];
  let lost = 0;
  let indexes = 0;
  try {
    await conn.query('CREATE EXTENSION IF NOT EXISTS amcheck');
    for (const t of tables) {
      try {
        const ix = (await conn.query<{ relname: string }>('SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass', [t])).rows;
        for (const { relname: name } of ix) {
          indexes++;
          try {
            await conn.query('SELECT bt_index_check(index => $1::regclass, heapallindexed => true)', [name], 120_000);
          } catch (err) {
            problems.push(`index ${name}: ${errMessage(err)}`);
          }
        }
        const heap = await conn.query<{ blkno: string; offnum: number; msg: string }>('SELECT blkno, offnum, msg FROM verify_heapam($1::regclass) LIMIT 3', [t], 120_000);
        for (const { blkno, offnum, msg } of heap.rows) problems.push(`${t} block ${blkno} item ${offnum}: ${msg}`);
        const ids = new Set((await conn.query<{ id: string }>(`SELECT id FROM ${conn.client.escapeIdentifier(t)}`, undefined, 120_000)).rows.map((r) => r.id));
        for (const id of expected.get(t) ?? []) if (!ids.has(id)) lost++;
      } catch (err) {
        problems.push(`${t}: ${errMessage(err)}`);
        lost += expected.get(t)?.size ?? 0;
      }
    }
  } finally {
    await conn.close();
  }
  return { amcheck: problems.length === 0 ? 'pass' : 'fail', amcheckMessage: problems.length === 0 ? `bt_index_check (heapallindexed) on ${indexes} index(es) and verify_heapam: no problem` : problems.slice(0, 3).join('; '), lost };
}

async function trial(shared: Ctx, method: ConsistencyMethod, n: number): Promise<ConsistencyTrial> {
  const repoName = `repo-${method}-${n}`;
  const c: Ctx = shared.o.fullBackups === true ? { ...shared, env: await ensureRepo(path.join(shared.s.dir, 'consistency'), shared.bin, shared.o.env ?? {}, repoName) } : shared;
  try {
    return await trialIn(c, method, n);
  } finally {
    if (shared.o.fullBackups === true) await fsp.rm(path.join(shared.s.dir, 'consistency', repoName), { recursive: true, force: true });
  }
}

async function trialIn(c: Ctx, method: ConsistencyMethod, n: number): Promise<ConsistencyTrial> {
  const { s } = c;
  const vol = volumeOf(s, 'postgres');
  const tables = s.services.filter((x) => x.store === 'postgres').map((x) => x.name);
  const target = path.join(c.work, `${method}-${n}`);
  await fsp.rm(target, { recursive: true, force: true });
  await fsp.mkdir(target, { recursive: true, mode: 0o755 });
  const policyFile = path.join(c.s.dir, 'consistency', 'policies', `${policyName(method)}.yaml`);
  await fsp.mkdir(path.dirname(policyFile), { recursive: true });
  await fsp.writeFile(policyFile, consistencyPolicy(method, { volume: vol.path, dataDir: pgData(vol), ...(vol.mount !== undefined ? { mount: vol.mount } : {}), port: s.postgres.port, pgBindir: s.programs.pgBindir }));

  // writes go on before, during and after the backup
  const ac = new AbortController();
  const loading = runLoad(s, { rate: c.o.rate ?? 200, durationSeconds: 600, services: tables, readFraction: 0, signal: ac.signal });
  await sleep(1000);
  const tStart = Date.now();
  let checkpoints = 0;
  let reading = true;
  const checkpointer = (async () => {
    if (c.o.checkpointsDuringBackup === false) return;
    while (reading) {
      await pgQuery(s.postgres.port, 'CHECKPOINT').then(() => checkpoints++, () => undefined);
      await sleep(200);
    }
  })();
  const snapshots: string[] = [];
  let bytesRead: number | undefined;
  try {
    const b = runSummary(await meshback(c, ['run', policyName(method), '--config', policyFile]));
    snapshots.push(b.id);
    bytesRead = b.bytesRead;
  } finally {
    reading = false;
    await checkpointer;
    ac.abort();
  }
  const backupSeconds = (Date.now() - tStart) / 1000;
  const loadResult = await loading;

  // expected: every order acknowledged before the backup began
  const journal = await readJournal(s.dir);
  const expected = new Map<string, Set<string>>(tables.map((t) => [t, new Set(journal.filter((e) => e.service === t && e.t < tStart).map((e) => e.id))]));
  const rowsExpected = [...expected.values()].reduce((a, x) => a + x.size, 0);

  // a plain restore into a fresh directory: nothing is added by hand
  await meshback(c, ['restore', snapshots[0]!, '--target', target]);
  const data = path.join(target, 'pgdata');

  const logFile = path.join(paths(s.dir).logs, `consistency-${method}-${n}.log`);
  const srv = await startRestored(data, logFile, s.programs.pgBindir, 60_000);
  let result: ConsistencyTrial = {
    method,
    trial: n,
    backupSeconds: Math.round(backupSeconds * 100) / 100,
    bytesRead: bytesRead ?? 0,
    snapshots,
    writesDuringBackup: journal.filter((e) => tables.includes(e.service) && e.t >= tStart && e.t <= tStart + backupSeconds * 1000).length,
    checkpointsDuringBackup: checkpoints,
    started: srv.started,
    startMessage: srv.message,
    amcheck: 'not run',
    amcheckMessage: 'the server did not start',
    rowsExpected,
    rowsLost: rowsExpected,
    good: false,
  };
  try {
    if (srv.started) {
      const r = await checkRestored(srv.port, tables, expected);
      result = { ...result, amcheck: r.amcheck, amcheckMessage: r.amcheckMessage, rowsLost: r.lost };
    }
  } finally {
    await stopRestored(srv.child);
    if (c.o.keepRestored !== true) await fsp.rm(target, { recursive: true, force: true });
  }
  result.good = result.started && result.amcheck === 'pass' && result.rowsLost === 0;
  c.log(`${method} #${n}: ${result.started ? 'started' : 'DID NOT START'}, amcheck ${result.amcheck}, ${result.rowsLost} of ${result.rowsExpected} orders lost (backup read ${Math.round(result.bytesRead / 1048576)} MiB in ${result.backupSeconds} s; ${loadResult.acknowledged} written during the trial, ${checkpoints} checkpoints during the backup)`);
  return result;
}

export async function consistencyExperiment(s: TestbedState, o: ConsistencyOptions = {}): Promise<ConsistencyResult> {
  const trials = o.trials ?? 1;
  if (!Number.isInteger(trials) || trials < 1 || trials > 100) throw new UsageError('--trials must be an integer from 1 to 100');
  if (!s.services.some((x) => x.store === 'postgres')) throw new UsageError('the consistency experiment needs a PostgreSQL-backed service (orders)');
  const methods = o.methods ?? [...CONSISTENCY_METHODS];
  for (const m of methods) if (!CONSISTENCY_METHODS.includes(m)) throw new UsageError(`unknown method ${JSON.stringify(m)}: give ${CONSISTENCY_METHODS.join(', ')}`);
  const vol = volumeOf(s, 'postgres');
  if (vol.destroyed === true) throw new UsageError('the postgres volume was thrown away: restore it first');
  try {
    await pgQuery(s.postgres.port, 'SELECT 1', { connectMs: 3000, timeoutMs: 5000 });
  } catch (err) {
    throw new UsageError(`the testbed's PostgreSQL does not answer (${errMessage(err)}): start it with 'meshback testbed verify --dir ${s.dir}' (or 'up' after a 'down')`);
  }
  const bin = o.meshback ?? MESHBACK_BIN;
  const env = await ensureRepo(path.join(s.dir, 'consistency'), bin, o.env ?? {});
  const work = path.join(s.dir, 'consistency', 'work');
  await fsp.mkdir(work, { recursive: true, mode: 0o755 });
  const c: Ctx = { s, o, bin, env, work, log: (message: string): void => o.events?.({ type: 'note', op: 'testbed', message }) };
  const ballast = o.ballastMiB ?? 0;
  if (!(ballast >= 0 && ballast <= 64 * 1024)) throw new UsageError('--ballast must be from 0 to 64 GiB');
  if (ballast > 0) {
    c.log(`making ${ballast} MiB of ballast (an unlogged table)`);
    // about 330 bytes per row on disk
    const rows = Math.ceil((ballast * 1024 * 1024) / 330);
    await pgQuery(
      s.postgres.port,
      `DROP TABLE IF EXISTS testbed_ballast; CREATE UNLOGGED TABLE testbed_ballast AS SELECT g AS id, repeat(md5(g::text), 8) AS pad FROM generate_series(1, ${rows}) g; CHECKPOINT`,
      { timeoutMs: 30 * 60_000 },
    );
  }
  const out: ConsistencyTrial[] = [];
  const summary: ConsistencySummary[] = [];
  for (const m of methods) {
    if (BTRFS_ONLY.includes(m) && vol.kind !== 'btrfs') {
      summary.push({ method: m, trials: 0, started: 0, amcheckPassed: 0, lossless: 0, skipped: 'the postgres volume is a directory: start the testbed with --volumes btrfs' });
      continue;
    }
    const mine: ConsistencyTrial[] = [];
    for (let i = 1; i <= trials; i++) mine.push(await trial(c, m, i));
    out.push(...mine);
    summary.push({
      method: m,
      trials: mine.length,
      started: mine.filter((t) => t.started).length,
      amcheckPassed: mine.filter((t) => t.amcheck === 'pass').length,
      lossless: mine.filter((t) => t.started && t.rowsLost === 0).length,
    });
  }
  return { volumeKind: vol.kind, fullBackups: o.fullBackups === true, pgVersion: s.programs.pgVersion, ballastMiB: ballast, rate: o.rate ?? 200, checkpointsDuringBackup: o.checkpointsDuringBackup !== false, trials: out, summary };
}
