/**
 * testbed/consistency-redis: does a backup of a live Redis volume restore to a Redis that loads
 * its data, with every session acknowledged before the backup began? The live `redis` volume
 * (redis.conf, data/appendonlydir/: appendonly yes) is backed up with `meshback run` of a
 * generated policy file (bin/meshback, a repository in DIR/consistency-redis/repo) while the
 * Redis-backed services take writes, by each method:
 *
 * - plain:       a policy without a preset: the live files read as they are;
 * - bgsave:      the redis preset with `mode: bgsave` (BGSAVE, wait for it): a dump.rdb in the
 *                snapshot, which this server (appendonly yes) does not load at start;
 * - aof-rewrite: the redis preset as a user writes it, without a mode: on this server that is
 *                aof-rewrite (BGREWRITEAOF, wait for it, automatic rewrites held off while the
 *                backup reads).
 *
 * With `frequentRewrites` (the default) the live Redis rewrites its AOF by itself as often as it
 * can during the trials (auto-aof-rewrite-percentage 1, auto-aof-rewrite-min-size 4kb; set back
 * at the end), as a busy server with a large AOF does: a rewrite replaces the manifest and
 * deletes the files it named, which is what can tear a file-by-file copy of appendonlydir/.
 *
 * Each snapshot is restored into a fresh directory (DIR/consistency-redis/work/METHOD-TRIAL) and
 * a redis-server is started there with the restored redis.conf on a free loopback port; then:
 * did it load its data (INFO persistence loading:0, and from which file, per its log), and are
 * the sessions acknowledged before `meshback run` began all there with their values (MGET of the
 * journal's keys). The server is stopped and the directory deleted after each trial.
 */
import type { ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UsageError, errMessage } from '../../src/errors/index.ts';
import { run, spawnCaptured } from '../../src/host/process.ts';
import { MESHBACK_BIN } from '../../src/host/self.ts';
import { parseInfo } from '../../src/policy/presets/redis.ts';
import type { EventSink } from '../../src/events/index.ts';
import { volumeOf } from './components.ts';
import { ensureRepo } from './consistency.ts';
import { redisUser } from './deps.ts';
import { runLoad } from './load.ts';
import { freePort, groupAlive, logTail, procStat, sleep, spawnLogged, stopGroup, waitFor } from './procs.ts';
import { paths, readJournal } from './state.ts';
import type { TestbedState } from './state.ts';
import { redisCall, redisClose, redisConnect, redisOnce } from './stores.ts';
import type { RedisClient } from './stores.ts';

export const REDIS_CONSISTENCY_METHODS = ['plain', 'bgsave', 'aof-rewrite'] as const;
export type RedisConsistencyMethod = (typeof REDIS_CONSISTENCY_METHODS)[number];

export interface RedisConsistencyOptions {
  /** default: all */
  methods?: RedisConsistencyMethod[];
  /** trials per method (default 1) */
  trials?: number;
  /** session writes per second during each backup (default 200) */
  rate?: number;
  /** automatic AOF rewrites as often as Redis makes them during the trials (default true) */
  frequentRewrites?: boolean;
  /** MiB of ballast keys (1 KiB values) written once before the trials, so that each backup and rewrite takes longer (default 0) */
  ballastMiB?: number;
  /** the meshback program (default bin/meshback of this checkout) */
  meshback?: string;
  /** keep each restored directory (DIR/consistency-redis/work/METHOD-TRIAL) for inspection */
  keepRestored?: boolean;
  /** extra environment for meshback (e.g. MESHBACK_TEST_SCRYPT_N in tests) */
  env?: Record<string, string>;
  /** the experiment's account, as typed events (`note`, op testbed) */
  events?: EventSink;
}

export interface RedisConsistencyTrial {
  method: RedisConsistencyMethod;
  trial: number;
  /** meshback run's exit code (0: ok) and, when it failed, its one line */
  exitCode: number | null;
  runMessage: string;
  /** seconds meshback run took (preset included) */
  runSeconds: number;
  /** seconds the preset's start took (absent without a preset) */
  presetSeconds?: number;
  snapshot?: string;
  /** sessions acknowledged while meshback run ran */
  writesDuringBackup: number;
  /** AOF rewrites the live Redis completed while the backup read (INFO aof_rewrites, sampled every 20 ms): the backup phase, or with a preset the time between the end of its start and the beginning of its finish */
  rewritesDuringBackup: number;
  /** an AOF rewrite was running at some moment of the backup phase */
  rewriteRunningDuringBackup: boolean;
  /** did a redis-server load the restored directory and answer */
  loaded: boolean;
  /** what it loaded from (its log) or why it did not load */
  loadMessage: string;
  /** DBSIZE of the restored server */
  keys: number;
  /** sessions acknowledged before meshback run began (all must be there) */
  keysExpected: number;
  keysLost: number;
  /** present with another value */
  keysChanged: number;
  /** sessions acknowledged during the run that the restore holds */
  duringPresent: number;
  /** loaded, and nothing lost or changed */
  lossless: boolean;
  /** meshback run succeeded (exit 0) and the restore is lossless */
  good: boolean;
}

export interface RedisConsistencySummary {
  method: RedisConsistencyMethod;
  trials: number;
  /** meshback run exited 0 */
  backedUp: number;
  loaded: number;
  /** loaded with every session acknowledged before the run */
  lossless: number;
  /** both: backed up and lossless */
  good: number;
}

export interface RedisConsistencyResult {
  redisVersion: string;
  volumeKind: string;
  rate: number;
  frequentRewrites: boolean;
  ballastMiB: number;
  trials: RedisConsistencyTrial[];
  summary: RedisConsistencySummary[];
}

interface Ctx {
  s: TestbedState;
  o: RedisConsistencyOptions;
  bin: string;
  env: Record<string, string>;
  base: string;
  config: string;
  work: string;
  redisServices: string[];
  log: (m: string) => void;
}

/** The policy file of the experiment: one policy per method, over the live redis volume. */
export function policyFile(volume: string, repo: string, password: string, port: number): string {
  const q = JSON.stringify;
  const policy = (name: string, presets: string): string => `  ${name}:\n    sources: [${q(volume)}]\n    tags: { testbed-consistency: ${name} }\n${presets}`;
  return [
    '# made by meshback testbed consistency-redis',
    'version: 1',
    `defaults: { repository: ${q(repo)}, password-file: ${q(password)} }`,
    'policies:',
    policy('plain', ''),
    policy('bgsave', `    presets: [ { type: redis, port: ${port}, mode: bgsave, timeout: 2m } ]\n`),
    policy('aof-rewrite', `    presets: [ { type: redis, port: ${port}, timeout: 2m } ]\n`),
  ].join('\n');
}

const info = async (port: number): Promise<Map<string, string>> => parseInfo(await redisOnce(port, 'INFO', { connectMs: 3000, timeoutMs: 10_000 }, (c) => c.info()));

const configGet = (port: number, key: string): Promise<string> =>
  redisOnce(port, `CONFIG GET ${key}`, {}, async (c) => {
    const r = (await c.configGet(key)) as Record<string, string>;
    return r[key] ?? '';
  });
const configSet = (port: number, key: string, value: string): Promise<void> => redisOnce(port, `CONFIG SET ${key}`, {}, async (c) => void (await c.configSet(key, value)));

/** Starts redis-server on a restored volume; resolves once it has loaded its data, or gave up. */
async function startRestored(dir: string, logFile: string, program: string, timeoutMs: number): Promise<{ child?: ChildProcess; port: number; loaded: boolean; message: string }> {
  const port = await freePort();
  const user = redisUser();
  const child = await spawnLogged(program, [path.join(dir, 'redis.conf'), '--port', String(port), '--bind', '127.0.0.1', '--daemonize', 'no'], { logFile, cwd: dir, ...(user !== undefined ? { user } : {}) });
  let exited = false;
  child.once('exit', () => (exited = true));
  const t0 = Date.now();
  const ok = await waitFor(
    async () => {
      if (exited) return false;
      try {
        const i = await info(port);
        return i.get('loading') === '0' ? true : undefined;
      } catch {
        return undefined;
      }
    },
    timeoutMs,
    100,
  );
  const log = await fsp.readFile(logFile, 'utf8').catch(() => '');
  if (ok === true) {
    const from = /DB loaded from (append only file|disk)[^\n]*/.exec(log)?.[0] ?? 'loaded (no "DB loaded" line in its log)';
    return { child, port, loaded: true, message: `${from.trim()}; answering after ${((Date.now() - t0) / 1000).toFixed(2)} s` };
  }
  // its last line says why (the warnings before it are about the host)
  const tail = (await logTail(logFile, 1, 300)).replace(/^\d+:[A-Z] [^#*]*[#*] /, '');
  return { child, port, loaded: false, message: exited ? `did not start: ${tail}` : `did not load within ${timeoutMs / 1000} s: ${tail}` };
}

async function stopRestored(child: ChildProcess | undefined): Promise<void> {
  if (child?.pid === undefined) return;
  const ref = { pid: child.pid, startTime: procStat(child.pid)?.startTime ?? -1 };
  if (groupAlive(ref)) await stopGroup(ref, 'SIGKILL', 5000);
}

/** MGET of `expected` keys: how many are missing, how many hold another value. */
async function lookUp(c: RedisClient, expected: Map<string, string>): Promise<{ lost: number; changed: number }> {
  const keys = [...expected.keys()];
  let lost = 0;
  let changed = 0;
  for (let i = 0; i < keys.length; i += 500) {
    const batch = keys.slice(i, i + 500);
    const vals = await redisCall(c, 'MGET', 30_000, (r) => r.mGet(batch));
    batch.forEach((k, j) => {
      const got = vals[j];
      if (got === null || got === undefined) lost++;
      else if (got !== expected.get(k)) changed++;
    });
  }
  return { lost, changed };
}

/** The last JSON summary line of `meshback run --json`. */
function runSummary(stdout: string): Record<string, unknown> | undefined {
  for (const line of stdout.split('\n').reverse()) {
    if (!line.startsWith('{')) continue;
    try {
      const j = JSON.parse(line) as Record<string, unknown>;
      if (j['message_type'] === 'summary') return j;
    } catch {
      /* not a summary */
    }
  }
  return undefined;
}

async function trial(c: Ctx, method: RedisConsistencyMethod, n: number): Promise<RedisConsistencyTrial> {
  const { s } = c;
  const target = path.join(c.work, `${method}-${n}`);
  await fsp.rm(target, { recursive: true, force: true });
  await fsp.mkdir(target, { recursive: true, mode: 0o755 });

  // writes go on before, during and after the backup
  const ac = new AbortController();
  const loading = runLoad(s, { rate: c.o.rate ?? 200, durationSeconds: 600, services: c.redisServices, readFraction: 0, signal: ac.signal });
  await sleep(1000);
  // the live server's AOF rewrites, sampled every 20 ms while meshback runs
  const samples: { t: number; rewrites: number; inProgress: boolean }[] = [];
  let sampling = true;
  const sampler = (async () => {
    const conn = await redisConnect(s.redis.port, 5000);
    try {
      while (sampling) {
        const i = parseInfo(await redisCall(conn, 'INFO persistence', 5000, (x) => x.info('persistence')));
        samples.push({ t: Date.now(), rewrites: Number(i.get('aof_rewrites') ?? 0), inProgress: i.get('aof_rewrite_in_progress') === '1' });
        await sleep(20);
      }
    } finally {
      redisClose(conn);
    }
  })();
  const tStart = Date.now();
  let r: Awaited<ReturnType<typeof spawnCaptured>>;
  try {
    r = await spawnCaptured(c.bin, ['run', method, '--config', c.config, '--json'], { env: c.env });
  } finally {
    ac.abort();
    sampling = false;
  }
  const tEnd = Date.now();
  await sampler;
  const loadResult = await loading;
  const sum = runSummary(r.stdout);
  // rewrites that ended while the backup read, and whether one ran then: with a preset, from the
  // end of its start() to the beginning of its finish() (the hold); without, the backup phase
  const phaseList = (sum?.['phases'] as { phase: string; outcome: string; started?: string; finished?: string }[] | undefined) ?? [];
  const backupPhase = phaseList.find((p) => p.phase === 'backup');
  const presetPhase = phaseList.find((p) => p.phase === 'preset' && p.outcome === 'ok');
  const held = (sum?.['presets'] as { held_seconds?: number; finish_seconds?: number }[] | undefined)?.[0];
  let b0 = backupPhase?.started !== undefined ? Date.parse(backupPhase.started) : tStart;
  let b1 = backupPhase?.finished !== undefined ? Date.parse(backupPhase.finished) : tEnd;
  if (presetPhase?.finished !== undefined && held?.held_seconds !== undefined) {
    b0 = Date.parse(presetPhase.finished);
    b1 = b0 + (held.held_seconds - (held.finish_seconds ?? 0)) * 1000;
  }
  const atStart = samples.filter((x) => x.t <= b0).at(-1) ?? samples[0];
  const atEnd = samples.filter((x) => x.t <= b1).at(-1) ?? samples.at(-1);
  const rewritesDuring = atStart !== undefined && atEnd !== undefined ? atEnd.rewrites - atStart.rewrites : 0;
  const rewriteRunning = samples.some((x) => x.t >= b0 && x.t <= b1 && x.inProgress);
  const snapshot = typeof sum?.['snapshot_id'] === 'string' ? sum['snapshot_id'] : undefined;
  const presets = sum?.['presets'] as { start_seconds?: number }[] | undefined;
  const runMessage = r.code === 0 ? 'ok' : (r.stderr.trim().split('\n').filter((l) => l.startsWith('meshback:')).at(-1) ?? r.stderr.trim().split('\n').at(-1) ?? '').slice(0, 300);

  // expected: every session acknowledged before meshback run began
  const journal = (await readJournal(s.dir)).filter((e) => c.redisServices.includes(e.service));
  const expected = new Map<string, string>(journal.filter((e) => e.t < tStart).map((e) => [e.id, e.value]));
  const during = new Map<string, string>(journal.filter((e) => e.t >= tStart && e.t <= tEnd).map((e) => [e.id, e.value]));

  let result: RedisConsistencyTrial = {
    method,
    trial: n,
    exitCode: r.code,
    runMessage,
    runSeconds: Math.round((tEnd - tStart) / 10) / 100,
    ...(presets?.[0]?.start_seconds !== undefined ? { presetSeconds: Math.round(presets[0].start_seconds * 100) / 100 } : {}),
    ...(snapshot !== undefined ? { snapshot } : {}),
    writesDuringBackup: during.size,
    rewritesDuringBackup: rewritesDuring,
    rewriteRunningDuringBackup: rewriteRunning,
    loaded: false,
    loadMessage: snapshot === undefined ? 'no snapshot was saved' : 'not started',
    keys: 0,
    keysExpected: expected.size,
    keysLost: expected.size,
    keysChanged: 0,
    duringPresent: 0,
    lossless: false,
    good: false,
  };
  if (snapshot !== undefined) {
    await run([c.bin, 'restore', snapshot, '--target', target, '--json'], { env: c.env });
    const logFile = path.join(paths(s.dir).logs, `consistency-redis-${method}-${n}.log`);
    await fsp.rm(logFile, { force: true });
    const srv = await startRestored(target, logFile, s.programs.redisServer, 60_000);
    result = { ...result, loaded: srv.loaded, loadMessage: srv.message };
    try {
      if (srv.loaded) {
        const conn = await redisConnect(srv.port, 5000);
        try {
          const size = await redisCall(conn, 'DBSIZE', 10_000, (x) => x.dbSize());
          const before = await lookUp(conn, expected);
          const dur = await lookUp(conn, during);
          result = { ...result, keys: Number(size), keysLost: before.lost, keysChanged: before.changed, duringPresent: during.size - dur.lost - dur.changed };
        } finally {
          redisClose(conn);
        }
      }
    } finally {
      await stopRestored(srv.child);
      if (c.o.keepRestored !== true) await fsp.rm(target, { recursive: true, force: true });
    }
  } else if (c.o.keepRestored !== true) await fsp.rm(target, { recursive: true, force: true });
  result.lossless = result.loaded && result.keysLost === 0 && result.keysChanged === 0;
  result.good = result.exitCode === 0 && result.lossless;
  c.log(
    `${method} #${n}: ${r.code === 0 ? 'backed up' : `meshback run exited ${r.code}: ${runMessage}`}; ${result.loaded ? 'loaded' : 'DID NOT LOAD'} (${result.loadMessage}); ${result.keysLost} of ${result.keysExpected} sessions lost, ${result.keysChanged} changed; run ${result.runSeconds} s with ${result.writesDuringBackup} writes, ${rewritesDuring} AOF rewrite(s) ended during its backup phase${rewriteRunning ? ' (one running during it)' : ''} (${loadResult.acknowledged} written during the trial)`,
  );
  return result;
}

/** Writes `mib` MiB of 1 KiB ballast values (testbed:ballast:N), pipelined. */
async function writeBallast(port: number, mib: number): Promise<void> {
  const c = await redisConnect(port, 5000);
  try {
    const value = 'x'.repeat(1024);
    const n = Math.ceil(mib * 1024);
    for (let i = 0; i < n; i += 1000) {
      const batch: Record<string, string> = {};
      for (let j = i; j < Math.min(n, i + 1000); j++) batch[`testbed:ballast:${j}`] = value;
      await redisCall(c, 'MSET', 60_000, (r) => r.mSet(batch));
    }
  } finally {
    redisClose(c);
  }
}

export async function redisConsistencyExperiment(s: TestbedState, o: RedisConsistencyOptions = {}): Promise<RedisConsistencyResult> {
  const trials = o.trials ?? 1;
  if (!Number.isInteger(trials) || trials < 1 || trials > 100) throw new UsageError('--trials must be an integer from 1 to 100');
  const redisServices = s.services.filter((x) => x.store === 'redis').map((x) => x.name);
  if (redisServices.length === 0) throw new UsageError('the Redis consistency experiment needs a Redis-backed service (sessions): start the testbed with --services 2 or more');
  const methods = o.methods ?? [...REDIS_CONSISTENCY_METHODS];
  for (const m of methods) if (!REDIS_CONSISTENCY_METHODS.includes(m)) throw new UsageError(`unknown method ${JSON.stringify(m)}: give ${REDIS_CONSISTENCY_METHODS.join(', ')}`);
  const ballast = o.ballastMiB ?? 0;
  if (!(ballast >= 0 && ballast <= 4096)) throw new UsageError('--ballast must be from 0 to 4 GiB');
  const vol = volumeOf(s, 'redis');
  if (vol.destroyed === true) throw new UsageError('the redis volume was thrown away: restore it first');
  let i0: Map<string, string>;
  try {
    i0 = await info(s.redis.port);
  } catch (err) {
    throw new UsageError(`the testbed's Redis does not answer (${errMessage(err)}): start it with 'meshback testbed verify --dir ${s.dir}' (or 'up' after a 'down')`);
  }
  const bin = o.meshback ?? MESHBACK_BIN;
  const base = path.join(s.dir, 'consistency-redis');
  const env = await ensureRepo(base, bin, o.env ?? {});
  const work = path.join(base, 'work');
  await fsp.mkdir(work, { recursive: true, mode: 0o755 });
  const config = path.join(base, 'policies.yaml');
  await fsp.writeFile(config, policyFile(vol.path, env['MESHBACK_REPO']!, env['MESHBACK_PASSWORD_FILE']!, s.redis.port));
  const c: Ctx = { s, o, bin, env, base, config, work, redisServices, log: (message: string): void => o.events?.({ type: 'note', op: 'testbed', message }) };
  if (ballast > 0) {
    c.log(`writing ${ballast} MiB of ballast keys`);
    await writeBallast(s.redis.port, ballast);
  }
  const frequent = o.frequentRewrites !== false;
  const saved = frequent ? { pct: await configGet(s.redis.port, 'auto-aof-rewrite-percentage'), min: await configGet(s.redis.port, 'auto-aof-rewrite-min-size') } : undefined;
  const out: RedisConsistencyTrial[] = [];
  const summary: RedisConsistencySummary[] = [];
  try {
    if (frequent) {
      await configSet(s.redis.port, 'auto-aof-rewrite-min-size', '4096');
      await configSet(s.redis.port, 'auto-aof-rewrite-percentage', '1');
    }
    for (const m of methods) {
      const mine: RedisConsistencyTrial[] = [];
      for (let i = 1; i <= trials; i++) mine.push(await trial(c, m, i));
      out.push(...mine);
      summary.push({ method: m, trials: mine.length, backedUp: mine.filter((t) => t.exitCode === 0).length, loaded: mine.filter((t) => t.loaded).length, lossless: mine.filter((t) => t.lossless).length, good: mine.filter((t) => t.good).length });
    }
  } finally {
    if (saved !== undefined) {
      await configSet(s.redis.port, 'auto-aof-rewrite-percentage', saved.pct).catch(() => undefined);
      await configSet(s.redis.port, 'auto-aof-rewrite-min-size', saved.min).catch(() => undefined);
    }
  }
  return { redisVersion: i0.get('redis_version') ?? '?', volumeKind: vol.kind, rate: o.rate ?? 200, frequentRewrites: frequent, ballastMiB: ballast, trials: out, summary };
}
