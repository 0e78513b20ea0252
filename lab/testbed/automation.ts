/**
 * testbed/automation: `meshback server` running the testbed's two stateful services on schedule,
 * under load, the way issue 14's acceptance describes it:
 *
 * - a policy file with two policies, `orders` (the PostgreSQL volume, postgres preset) and
 *   `sessions` (the Redis volume, redis preset), each backed up `every EVERY` with an RPO target
 *   of twice that, and a restore drill every DRILL whose check starts the restored database
 *   (examples/drill-checks: amcheck on PostgreSQL; redis-server loading its AOF);
 * - `meshback server` started on it with the HTTP API on a free loopback port and a token, while
 *   the testbed's load writes orders and sessions for the whole run;
 * - after KILL_AFTER the server is SIGKILLed, left down for DOWN (so ticks are missed), and
 *   restarted on the same state directory: each policy must be caught up exactly once;
 * - a `meshback trigger orders --tag deploy=... --wait` must return the snapshot id of a snapshot
 *   carrying that tag;
 * - at the end `/metrics` is read and checked against the runs the API lists, and the server is
 *   stopped with SIGTERM (exit 0).
 *
 * The result is the run's record: every run and drill (outcome, duration, snapshot), per policy
 * the RPO ages (the largest gap between successful backups, and the newest snapshot's age at the
 * end), the drills' RTO, the catch-up count, the trigger's answer and the metrics read.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { MeshbackError, errMessage } from '../../src/errors/index.ts';
import { spawnCaptured } from '../../src/host/process.ts';
import { MESHBACK_BIN, ROOT } from '../../src/host/self.ts';
import { formatDuration, parseDuration } from '../../src/util/units.ts';
import { pgData, volumeOf } from './components.ts';
import { runLoad } from './load.ts';
import type { LoadResult } from './load.ts';
import type { TestbedState } from './state.ts';

export interface AutomationOptions {
  /** the backup schedule of both policies (default 1m) */
  every?: string;
  /** the drill schedule (default 3m) */
  drillEvery?: string;
  /** how long the server runs in all, not counting the downtime (default 10m) */
  duration?: string;
  /** when (server time) the server is SIGKILLed (default: 40% of the duration) */
  killAfter?: string;
  /** how long it stays down (default 2.5 x every: two missed ticks) */
  down?: string;
  /** load: writes per second, all services (default 50) */
  rate?: number;
  /** progress lines */
  onProgress?: (line: string) => void;
}

export interface AutomationRun {
  id: string;
  kind: 'backup' | 'drill';
  policy: string;
  reason: string;
  status: string;
  startedAt?: string;
  finishedAt?: string;
  durationSeconds?: number;
  snapshotId?: string;
  error?: { code: string; message: string };
  tags: Record<string, string>;
}

export interface AutomationPolicySummary {
  policy: string;
  backups: number;
  backupsOk: number;
  /** failed backups, leaving out those the deliberate SIGKILL cut (recorded INTERRUPTED at the restart) */
  backupsFailed: number;
  /** backups running when the server was SIGKILLed on purpose: INTERRUPTED, as they must be */
  backupsCutByKill: number;
  catchUps: number;
  drills: number;
  drillsOk: number;
  /** drills running when the server was SIGKILLed on purpose: INTERRUPTED, as they must be (the next drill empties what such a drill left in its target) */
  drillsCutByKill: number;
  /** the drills' RTO (restore + verify) in seconds, from the metrics of the last one and the drill runs' durations */
  drillSeconds: number[];
  /** the largest gap between two successful backups (seconds), and the RPO target */
  maxGapSeconds: number;
  /** the same, leaving out the gap that spans the server's deliberate outage (SIGKILL to restart) */
  maxGapServingSeconds: number;
  rpoTargetSeconds: number;
  /** the newest snapshot's age when the run ended (seconds) */
  finalAgeSeconds: number;
  /** the average backup duration (seconds) */
  meanBackupSeconds: number;
}

export interface AutomationResult {
  every: string;
  drillEvery: string;
  durationSeconds: number;
  downSeconds: number;
  policies: AutomationPolicySummary[];
  runs: AutomationRun[];
  /** catch-up runs at the restart, by policy: each must be exactly 1 */
  catchUp: Record<string, number>;
  trigger: { exitCode: number; snapshotId?: string; tagged: boolean; seconds: number; message?: string };
  /** values read from /metrics at the end, by series */
  metrics: Record<string, number>;
  /** the checks of the acceptance: each true when it held */
  checks: Record<string, boolean>;
  load: Pick<LoadResult, 'sent' | 'acknowledged' | 'writesFailed'> | undefined;
  serverExit: number | null;
}

const examples = path.join(ROOT, 'examples/drill-checks');

interface ServerProc {
  child: ChildProcess;
  events: Record<string, unknown>[];
  exited: Promise<number | null>;
  api: Promise<string>;
  log: string[];
}

function startServer(args: string[], logFile: string): ServerProc {
  const child = spawn(MESHBACK_BIN, ['server', '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
  const events: Record<string, unknown>[] = [];
  const log: string[] = [];
  let buf = '';
  let resolveApi: (url: string) => void = () => undefined;
  const api = new Promise<string>((res) => (resolveApi = res));
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const l of lines) {
      log.push(l);
      void fsp.appendFile(logFile, l + '\n');
      if (!l.startsWith('{')) continue;
      const e = JSON.parse(l) as Record<string, unknown>;
      events.push(e);
      if (e['event'] === 'start' && typeof e['api'] === 'string') resolveApi(e['api']);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => void fsp.appendFile(logFile, d));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  return { child, events, exited, api, log };
}

/** bin/meshback ARGS to completion, its exit code and output (never throws for a non-zero exit) */
const mb = (args: string[]) => spawnCaptured(MESHBACK_BIN, args, {});

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((res) => {
    const t = setTimeout(res, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      res();
    });
  });

/** Runs the experiment on a running testbed with an `orders` (PostgreSQL) and a `sessions` (Redis) service. */
export async function automationExperiment(s: TestbedState, o: AutomationOptions = {}): Promise<AutomationResult> {
  const progress = o.onProgress ?? (() => undefined);
  const every = o.every ?? '1m';
  const drillEvery = o.drillEvery ?? '3m';
  const everyMs = parseDuration(every, '--every');
  const durationMs = parseDuration(o.duration ?? '10m', '--duration');
  const killAfterMs = o.killAfter !== undefined ? parseDuration(o.killAfter, '--kill-after') : Math.round(durationMs * 0.4);
  const downMs = o.down !== undefined ? parseDuration(o.down, '--down') : Math.round(everyMs * 2.5);
  if (killAfterMs >= durationMs) throw new MeshbackError('USAGE', `--kill-after ${formatDuration(killAfterMs)} must be shorter than --duration ${formatDuration(durationMs)}`);
  if (!s.services.some((x) => x.name === 'orders') || !s.services.some((x) => x.name === 'sessions')) throw new MeshbackError('USAGE', 'the automation experiment needs the orders (PostgreSQL) and sessions (Redis) services: start the testbed with --services 2 or more');

  const base = path.join(s.dir, 'automation');
  await fsp.rm(base, { recursive: true, force: true });
  await fsp.mkdir(base, { recursive: true });
  await fsp.chmod(base, 0o755);
  const repo = path.join(base, 'repo');
  const pw = path.join(base, 'password');
  const token = path.join(base, 'token');
  const stateDir = path.join(base, 'state');
  const logFile = path.join(base, 'server.log');
  await fsp.writeFile(pw, randomBytes(16).toString('hex') + '\n', { mode: 0o600 });
  await fsp.writeFile(token, randomBytes(24).toString('hex') + '\n', { mode: 0o600 });
  const init = await mb(['init', '--repo', repo, '--password-file', pw]);
  if (init.code !== 0) throw new MeshbackError('INTERNAL', `meshback init failed: ${init.stderr.trim()}`);

  const pgVol = volumeOf(s, 'postgres');
  const redisVol = volumeOf(s, 'redis');
  const rpo = formatDuration(everyMs * 2);
  const q = (x: string) => JSON.stringify(x);
  const config = path.join(base, 'policies.yaml');
  await fsp.writeFile(
    config,
    `version: 1
defaults: { repository: ${q(repo)}, password-file: ${q(pw)} }
policies:
  orders:
    sources: [${q(pgVol.path)}]
    schedule: every ${every}
    rpo: ${rpo}
    retention: { keep-last: 50 }
    tags: { app: orders }
    presets:
      - { type: postgres, data-dir: ${q(pgData(pgVol))}, host: 127.0.0.1, port: ${s.postgres.port}, user: postgres }
    drill:
      schedule: every ${drillEvery}
      target: ${q(path.join(base, 'drills', 'orders'))}
      check: { exec: [${q(path.join(examples, 'postgres-amcheck.sh'))}, pgdata, ${q(s.programs.pgBindir)}, "SELECT count(*) FROM orders"], timeout: 5m }
  sessions:
    sources: [${q(redisVol.path)}]
    schedule: every ${every}
    rpo: ${rpo}
    retention: { keep-last: 50 }
    tags: { app: sessions }
    presets: [ { type: redis, port: ${s.redis.port} } ]
    drill:
      schedule: every ${drillEvery}
      target: ${q(path.join(base, 'drills', 'sessions'))}
      check: { exec: [${q(path.join(examples, 'redis-load.sh'))}, redis.conf, "1"], timeout: 5m }
`,
  );
  await fsp.mkdir(path.join(base, 'drills'), { mode: 0o755 });
  const serverArgs = ['--config', config, '--state-dir', stateDir, '--listen', '127.0.0.1:0', '--token-file', token, '--grace', '2m', '--max-runs', '3'];

  const t0 = Date.now();
  const stopLoad = new AbortController();
  const load = runLoad(s, { rate: o.rate ?? 50, durationSeconds: Math.ceil((durationMs + downMs) / 1000) + 30, signal: stopLoad.signal }).catch((err: unknown) => {
    progress(`load ended with an error: ${errMessage(err)}`);
    return undefined;
  });
  let first: ServerProc | undefined;
  let second: ServerProc | undefined;
  try {
    progress(`server started: every ${every}, drills every ${drillEvery}, SIGKILL after ${formatDuration(killAfterMs)}, down ${formatDuration(downMs)}, ${formatDuration(durationMs)} in all`);
    first = startServer(serverArgs, logFile);
    await Promise.race([first.api, first.exited.then((c) => Promise.reject(new MeshbackError('INTERNAL', `the server exited (${String(c)}) at start: see ${logFile}`)))]);
    await sleep(killAfterMs);
    first.child.kill('SIGKILL');
    await first.exited;
    const killedAt = Date.now();
    const restartAt = killedAt + downMs;
    progress(`server SIGKILLed after ${((killedAt - t0) / 1000).toFixed(0)} s; down for ${formatDuration(downMs)}`);
    await sleep(downMs);
    second = startServer(serverArgs, logFile);
    const url = await Promise.race([second.api, second.exited.then((c) => Promise.reject(new MeshbackError('INTERNAL', `the restarted server exited (${String(c)}): see ${logFile}`)))]);
    progress(`server restarted, API on ${url}`);
    const rest = durationMs - killAfterMs;
    // the trigger, halfway through the rest of the run
    await sleep(rest / 2);
    const deploy = `v1.4.${Math.floor(Date.now() / 1000) % 1000}`;
    const tt = Date.now();
    const tr = await mb(['trigger', 'orders', '--server', url, '--token-file', token, '--tag', `deploy=${deploy}`, '--wait', '--timeout', '5m', '--json']);
    const trSeconds = (Date.now() - tt) / 1000;
    const trSummary = tr.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).at(-1);
    const trigSnapshot = typeof trSummary?.['snapshot_id'] === 'string' ? trSummary['snapshot_id'] : undefined;
    let tagged = false;
    if (trigSnapshot !== undefined) {
      const snaps = await mb(['snapshots', '--json', '--repo', repo, '--password-file', pw, '--tag', `deploy=${deploy}`]);
      const list = JSON.parse(snaps.stdout.split('\n').find((l) => l.startsWith('[')) ?? '[]') as { id: string; tags: string[] }[];
      tagged = list.some((x) => x.id === trigSnapshot && x.tags.includes(`deploy=${deploy}`) && x.tags.includes('policy=orders'));
    }
    progress(`trigger --wait: exit ${tr.code}, snapshot ${trigSnapshot ?? '-'} (${trSeconds.toFixed(1)} s)`);
    await sleep(Math.max(0, rest / 2 - (Date.now() - tt)));

    // the record: the API's runs, then /metrics
    const auth = { authorization: `Bearer ${(await fsp.readFile(token, 'utf8')).trim()}` };
    const runsAnswer = await fetch(`${url}/v1/runs?limit=1000`, { headers: auth });
    const runs = ((await runsAnswer.json()) as AutomationRun[]).map((r) => ({ ...r, ...(r.startedAt !== undefined && r.finishedAt !== undefined ? { durationSeconds: (Date.parse(r.finishedAt) - Date.parse(r.startedAt)) / 1000 } : {}) })).reverse();
    const metricsText = await (await fetch(`${url}/metrics`, { headers: auth })).text();
    const metrics: Record<string, number> = {};
    for (const line of metricsText.split('\n')) {
      const m = /^(meshback_[a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
      if (m !== null) metrics[m[1]!] = Number(m[2]);
    }
    second.child.kill('SIGTERM');
    const serverExit = await second.exited;
    stopLoad.abort();
    const loadResult = await load;
    const end = Date.now();

    const catchUp: Record<string, number> = {};
    for (const p of ['orders', 'sessions']) catchUp[p] = second.events.filter((e) => e['event'] === 'run-start' && e['policy'] === p && e['reason'] === 'catch-up').length;
    const policies = ['orders', 'sessions'].map((p): AutomationPolicySummary => {
      const backups = runs.filter((r) => r.kind === 'backup' && r.policy === p && r.status !== 'running' && r.status !== 'queued');
      const ok = backups.filter((r) => r.status === 'succeeded');
      // a backup the deliberate SIGKILL cut is recorded INTERRUPTED by the restarted server: expected, not a failure
      const cut = backups.filter((r) => r.status === 'failed' && r.error?.code === 'INTERRUPTED' && (r.startedAt === undefined || Date.parse(r.startedAt) <= killedAt));
      const drills = runs.filter((r) => r.kind === 'drill' && r.policy === p && (r.status === 'succeeded' || r.status === 'failed'));
      const drillsCut = drills.filter((r) => r.status === 'failed' && r.error?.code === 'INTERRUPTED' && (r.startedAt === undefined || Date.parse(r.startedAt) <= killedAt));
      const times = ok.map((r) => Date.parse(r.finishedAt!)).sort((a, b) => a - b);
      let maxGap = times.length > 0 ? times[0]! - t0 : end - t0;
      let maxServing = maxGap;
      for (let i = 1; i < times.length; i++) {
        const gap = times[i]! - times[i - 1]!;
        maxGap = Math.max(maxGap, gap);
        if (!(times[i - 1]! <= killedAt && times[i]! >= restartAt)) maxServing = Math.max(maxServing, gap);
      }
      return {
        policy: p,
        backups: backups.length,
        backupsOk: ok.length,
        backupsFailed: backups.length - ok.length - cut.length,
        backupsCutByKill: cut.length,
        catchUps: runs.filter((r) => r.policy === p && r.kind === 'backup' && r.reason === 'catch-up').length,
        drills: drills.length,
        drillsOk: drills.filter((r) => r.status === 'succeeded').length,
        drillsCutByKill: drillsCut.length,
        drillSeconds: drills.map((r) => r.durationSeconds ?? 0),
        maxGapSeconds: maxGap / 1000,
        maxGapServingSeconds: maxServing / 1000,
        rpoTargetSeconds: (everyMs * 2) / 1000,
        finalAgeSeconds: times.length > 0 ? (end - times.at(-1)!) / 1000 : (end - t0) / 1000,
        meanBackupSeconds: ok.length > 0 ? ok.reduce((a, r) => a + (r.durationSeconds ?? 0), 0) / ok.length : 0,
      };
    });
    const metric = (name: string, policy: string): number | undefined => metrics[`${name}{policy="${policy}"}`];
    const checks: Record<string, boolean> = {
      'every backup succeeded (but those the deliberate SIGKILL cut)': policies.every((p) => p.backups > 0 && p.backupsFailed === 0),
      'while the server ran, no gap between successful backups exceeded the RPO target': policies.every((p) => p.maxGapServingSeconds <= p.rpoTargetSeconds),
      'a backup about every interval (at least 80% of the ticks ran)': policies.every((p) => p.backupsOk >= Math.floor(((durationMs / everyMs) * 0.8))),
      'every drill passed (but those the deliberate SIGKILL cut; at least one per policy)': policies.every((p) => p.drillsOk > 0 && p.drillsOk === p.drills - p.drillsCutByKill),
      'the restarted server caught each policy up exactly once': Object.values(catchUp).every((n) => n === 1),
      'the trigger returned a snapshot tagged with the deploy': tr.code === 0 && trigSnapshot !== undefined && tagged,
      '/metrics shows the last backup of each policy': policies.every((p) => {
        const last = runs.filter((r) => r.policy === p.policy && r.kind === 'backup' && r.status === 'succeeded').at(-1);
        const ts = metric('meshback_last_success_timestamp_seconds', p.policy);
        return last !== undefined && ts !== undefined && Math.abs(ts - Date.parse(last.finishedAt!) / 1000) < 5;
      }),
      '/metrics: no RPO exceeded at the end, drills passing': policies.every((p) => metric('meshback_rpo_exceeded', p.policy) === 0 && metric('meshback_drill_last_success', p.policy) === 1),
      'the server stopped on SIGTERM with exit 0': serverExit === 0,
    };
    progress(`done in ${((end - t0) / 1000).toFixed(0)} s; restart at +${((restartAt - t0) / 1000).toFixed(0)} s`);
    return {
      every,
      drillEvery,
      durationSeconds: durationMs / 1000,
      downSeconds: downMs / 1000,
      policies,
      runs,
      catchUp,
      trigger: { exitCode: tr.code ?? -1, ...(trigSnapshot !== undefined ? { snapshotId: trigSnapshot } : {}), tagged, seconds: trSeconds, ...(tr.code !== 0 ? { message: tr.stderr.trim() } : {}) },
      metrics: Object.fromEntries(Object.entries(metrics).filter(([k]) => /policy="(orders|sessions)"/.test(k))),
      checks,
      load: loadResult !== undefined ? { sent: loadResult.sent, acknowledged: loadResult.acknowledged, writesFailed: loadResult.writesFailed } : undefined,
      serverExit,
    };
  } finally {
    stopLoad.abort();
    for (const p of [first, second]) if (p !== undefined && p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await load;
  }
}
