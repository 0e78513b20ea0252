/**
 * server: the long-running scheduler. Runs each scheduled policy of a policy file on its
 * schedule through the same engine function as `meshback run` (runPolicy, repository access of
 * policyAccess), with the scheduling rules of src/policy/scheduler.ts: one run per policy at a
 * time (a tick during a run is skipped), at most --max-runs at once, a run missed during downtime
 * caught up once (the state file under --state-dir), lock conflicts between policies on one
 * repository waited out (--retry-lock, default 1h). SIGTERM/SIGINT: no new run starts, running
 * ones get --grace to end (exit 0); past it, or on a second signal, the process ends as an
 * interrupted `meshback run` does (locks removed, no snapshot saved, exit 130). SIGHUP reloads the
 * policy file (a bad one is a warning). A policy's drill.schedule is the scheduler job NAME/drill
 * (runDrill; scratch directories under STATE_DIR/drills). Prints one line per run start and end
 * (--json: one JSON object per scheduler event).
 *
 * The HTTP API (src/server: --listen, default 127.0.0.1:8439; --listen none for none): every
 * backup run and drill is a record of the run registry (STATE_DIR/runs.jsonl) with its typed
 * events; POST /v1/runs triggers a run of a policy now (Scheduler.runNow: the same
 * one-run-per-policy rule), tagged with the trigger's tags. A policy without a schedule is then run
 * only when triggered. Bound to an address that is not loopback, the API needs --token-file and
 * --tls-cert/--tls-key. GET /metrics serves the Metrics of src/server/metrics.ts, fed the registry.
 */
import { readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { MeshbackError, NotFoundError, UsageError, errMessage } from '../../errors/index.ts';
import type { EventSink } from '../../events/index.ts';
import { Scheduler, ackedOf, anomaliesOf, inWindow, loadPolicyFile, readState, runDrill, readAcksForRun, runPolicy, takeRunLock, windowStart, windowText, writeState } from '../../policy/index.ts';
import type { OpenedRepository, Policy, RunInfo, RunLock, RunResult, ScheduledPolicy, SchedulerEvent } from '../../policy/index.ts';
import { DEFAULT_LISTEN, Metrics, RunRegistry, createApi, isLoopback, listen, loadNewestSnapshots, newRunId, parseListen } from '../../server/index.ts';
import type { Listening, PolicyInfo, RepoAccess, RunRecord, SnapshotRow, TriggerOutcome, UiOptions } from '../../server/index.ts';
import { parseDuration } from '../../util/units.ts';
import type { Command } from '../command.ts';
import { str } from '../command.ts';
import type { Context } from '../context.ts';
import { repoLocation } from '../context.ts';
import { EXIT } from '../exit.ts';
import { VERSION } from '../version.ts';
import { exitInterrupted, setInterruptHandler } from '../signals.ts';
import type { Signal } from '../signals.ts';
import { defaultScratchDir } from './drill.ts';
import { STATE_DIR_OPTION, policyAccess, stateDirOf } from './run.ts';
import { adviceFor } from './advise.ts';

const DEFAULT_GRACE = '5m';
const DEFAULT_MAX_RUNS = 2;
const DEFAULT_RETRY_LOCK_MS = 3600_000;

export const serverCommand: Command = {
  name: 'server',
  summary: 'run the policies of a policy file on their schedules until stopped (SIGTERM/SIGINT)',
  usage: 'meshback server --config FILE [--state-dir DIR] [--grace DURATION] [--max-runs N] [--listen HOST:PORT|none] [--token-file FILE] [--tls-cert FILE --tls-key FILE] [--reports DIR] [--json]',
  options: {
    config: { type: 'string', argument: 'FILE', description: 'the policy file (YAML; see docs/design.md, "Policies"); its policies with a schedule are run' },
    'state-dir': STATE_DIR_OPTION,
    grace: { type: 'string', argument: 'DURATION', description: `on SIGTERM/SIGINT, how long running policies get to finish before they are abandoned (exit 130) (default ${DEFAULT_GRACE})` },
    'max-runs': { type: 'string', argument: 'N', description: `policies run at once at most; a due policy beyond that waits (default ${DEFAULT_MAX_RUNS})` },
    listen: { type: 'string', argument: 'HOST:PORT', description: `where the HTTP API listens (default ${DEFAULT_LISTEN}; port 0: any free port; none: no API); an address that is not loopback needs --token-file and --tls-cert/--tls-key` },
    'token-file': { type: 'string', argument: 'FILE', description: 'the API needs Authorization: Bearer TOKEN, the token being the content of FILE (at least 16 characters; e.g. openssl rand -hex 32 > FILE)' },
    'tls-cert': { type: 'string', argument: 'FILE', description: 'serve the API over HTTPS with this PEM certificate (chain) (with --tls-key)' },
    'tls-key': { type: 'string', argument: 'FILE', description: "the PEM private key of --tls-cert" },
    reports: { type: 'string', argument: 'DIR', description: 'the dashboard lists and serves the fault-benchmark reports (*.html, *.json) of DIR (e.g. bench-results)' },
  },
  async run(ctx, v) {
    const file = str(v['config']);
    if (file === undefined) throw new UsageError('server needs the policy file: meshback server --config FILE');
    const graceMs = parseDuration(str(v['grace']) ?? DEFAULT_GRACE, '--grace', { zero: true });
    const maxText = str(v['max-runs']);
    const maxRuns = maxText === undefined ? DEFAULT_MAX_RUNS : Number(maxText);
    if (!Number.isSafeInteger(maxRuns) || maxRuns < 1) throw new UsageError(`--max-runs ${JSON.stringify(maxText)} is not a whole number of at least 1: give e.g. --max-runs 2`);
    const stateDir = stateDirOf(v);
    const stateFile = path.join(stateDir, 'state.json');
    const api = apiSettings(v, (m) => ctx.out.warn(m));
    const triggerable = api.addr !== undefined;
    const { all, scheduled, drills } = await readScheduled(file, triggerable);
    let byName = new Map(all.map((p) => [p.name, p]));
    let order = all.map((p) => p.name);
    const scratchDir = defaultScratchDir(stateDir);
    const retryLockMs = ctx.g.retryLockMs ?? DEFAULT_RETRY_LOCK_MS;
    const registry = new RunRegistry({ file: path.join(stateDir, 'runs.jsonl'), warn: (m) => ctx.out.warn(m) });

    const phase = { starting: true };
    const print = printer(ctx, phase);

    /** one backup run of policy `name`, recorded in the registry (a triggered run's record exists already when it was queued) */
    const runBackup = async (name: string, info: RunInfo): Promise<RunResult> => {
      const policy = byName.get(name);
      const id = info.extra?.runId;
      const rec = (id !== undefined ? registry.get(id) : undefined) ?? registry.create({ kind: 'backup', policy: name, reason: info.reason, tags: info.extra?.tags ?? {}, ...(id !== undefined ? { id } : {}) });
      registry.start(rec.id);
      // a run's own output stays out of the server's log, but for its warnings and unreadable files; all of it goes to the registry (the API's events)
      const sink: EventSink = (e) => {
        registry.event(rec.id, e);
        if (e.type === 'warning') ctx.out.sink({ ...e, message: `${name}: ${e.message}` });
        else if (e.type === 'item-error') ctx.out.sink({ type: 'warning', path: e.path, message: `${name}: cannot be read: ${e.message}` });
      };
      let lock: RunLock | undefined;
      try {
        if (policy === undefined) throw new MeshbackError('NOT_FOUND', `policy ${name} is no longer in ${file}`);
        // a backup run holds the policy's run lock, so a `meshback run` of it meanwhile is refused
        lock = await takeRunLock(stateDir, name, 'meshback server', (m) => ctx.out.warn(m));
        const tags = Object.entries(info.extra?.tags ?? {}).map(([k, val]) => `${k}=${val}`);
        const acknowledged = ackedOf(await readAcksForRun(stateDir, (m) => ctx.out.warn(`${name}: ${m}`)), policy.name);
        const { report, error } = await runPolicy(policy, { ...policyAccess(ctx, policy, retryLockMs, sink), events: sink, tags, acknowledged });
        for (const w of report.warnings ?? []) ctx.out.warn(`${name}: ${w}`);
        registry.finish(rec.id, { ok: error === undefined, report, ...(report.snapshotId !== undefined ? { snapshotId: report.snapshotId } : {}), ...(error !== undefined ? { error: { code: error.code, message: error.message } } : {}) });
        return { ok: error === undefined, ...(error !== undefined ? { code: error.code, message: error.message } : {}), ...(report.snapshotId !== undefined ? { snapshotId: report.snapshotId } : {}) };
      } catch (err) {
        const e = err instanceof MeshbackError ? err : new MeshbackError('INTERNAL', errMessage(err));
        registry.finish(rec.id, { ok: false, error: { code: e.code, message: e.message } });
        return { ok: false, code: e.code, message: e.message };
      } finally {
        await lock?.release();
      }
    };

    /** NAME/drill: a restore drill of the policy, recorded in the registry (kind drill) */
    const runDrillJob = async (name: string, info: RunInfo): Promise<RunResult> => {
      const policy = byName.get(name);
      const rec = registry.create({ kind: 'drill', policy: name, reason: info.reason });
      registry.start(rec.id);
      const sink: EventSink = (e) => {
        registry.event(rec.id, e);
        if (e.type === 'warning') ctx.out.sink({ ...e, message: `${name}: ${e.message}` });
        else if (e.type === 'item-error') ctx.out.sink({ type: 'warning', path: e.path, message: `${name}: ${e.message}` });
      };
      try {
        if (policy === undefined) throw new MeshbackError('NOT_FOUND', `policy ${name} is no longer in ${file}`);
        const { report, error } = await runDrill(policy, { ...policyAccess(ctx, policy, retryLockMs, sink), scratchDir, events: sink });
        registry.finish(rec.id, { ok: error === undefined, report, ...(report.snapshotId !== undefined ? { snapshotId: report.snapshotId } : {}), ...(error !== undefined ? { error: { code: error.code, message: error.message } } : {}) });
        return { ok: error === undefined, ...(error !== undefined ? { code: error.code, message: error.message } : {}), ...(report.snapshotId !== undefined ? { snapshotId: report.snapshotId } : {}) };
      } catch (err) {
        const e = err instanceof MeshbackError ? err : new MeshbackError('INTERNAL', errMessage(err));
        registry.finish(rec.id, { ok: false, error: { code: e.code, message: e.message } });
        return { ok: false, code: e.code, message: e.message };
      }
    };

    /** NAME/prune: a prune in the policy's maintenance window (not a run record: the registry records backups and drills) */
    const runPrune = async (name: string): Promise<RunResult> => {
      const policy = byName.get(name)!;
      const sink: EventSink = (e) => {
        if (e.type === 'warning') ctx.out.sink({ ...e, message: `${name}: ${e.message}` });
      };
      if (!inWindow(policy.pruneWindow!, Date.now())) return { ok: true, message: `skipped: the maintenance window ${windowText(policy.pruneWindow!)} is over; prune runs at its next start` };
      const { report, error } = await runPolicy(policy, { ...policyAccess(ctx, policy, retryLockMs, sink), events: sink, maintenance: true });
      return { ok: error === undefined, ...(error !== undefined ? { code: error.code, message: error.message } : {}), ...(report.snapshotId !== undefined ? { snapshotId: report.snapshotId } : {}) };
    };

    const scheduler = new Scheduler({
      policies: jobsOf(all, triggerable),
      maxConcurrent: maxRuns,
      state: { read: () => readState(stateFile, (m) => ctx.out.warn(m)), write: (s) => writeState(stateFile, s) },
      onEvent: print,
      // jobs: NAME (backups), NAME/prune (the maintenance window), NAME/drill (restore drills; may
      // run while the policy's backup runs: a restore takes a shared lock; two drills of one policy never)
      run: (job, info) => {
        const [name, kind] = job.split('/') as [string, 'prune' | 'drill' | undefined];
        if (kind === 'prune') return runPrune(name);
        if (kind === 'drill') return runDrillJob(name, info);
        return runBackup(name, info);
      },
    });

    const trigger = (name: string, tags: Record<string, string>, client: string): TriggerOutcome => {
      const t = triggerRun(name, tags);
      // the log says who asked, for every trigger (accepted or refused)
      const at = new Date().toISOString();
      const tagText = Object.entries(tags).map(([k, val]) => `${k}=${val}`).join(',');
      ctx.out.result(`${at} ${name}: trigger from ${client}${tagText !== '' ? ` (${tagText})` : ''}: ${t.ok ? `run ${t.record.id} ${t.record.status}` : `refused (${t.status} ${t.code})`}`);
      ctx.out.jsonOut({ message_type: 'server', event: 'trigger', policy: name, at, client, tags, ...(t.ok ? { run: t.record.id, status: t.record.status } : { refused: t.status, code: t.code }) });
      return t;
    };
    const triggerRun = (name: string, tags: Record<string, string>): TriggerOutcome => {
      if (!byName.has(name)) return { ok: false, status: 404, code: 'NOT_FOUND', message: `no policy ${name} in ${file}: list them with GET /v1/policies` };
      const id = newRunId();
      const ans = scheduler.runNow(name, { tags, runId: id });
      if (!ans.accepted) {
        if (ans.refusal === 'busy') {
          const going = registry.active(name);
          return { ok: false, status: 409, code: 'BUSY', message: `${going !== undefined ? `run ${going.id} of ${name} is ${going.status}${going.startedAt !== undefined ? ` since ${going.startedAt}` : ''}` : `${name} is running`}: one run of a policy at a time; wait for it to end (GET /v1/runs/ID) and trigger again`, ...(going !== undefined ? { run: going.id } : {}) };
        }
        if (ans.refusal === 'unknown') return { ok: false, status: 404, code: 'NOT_FOUND', message: `${name} is not run by this server: ${ans.reason ?? ''}` };
        return { ok: false, status: 503, code: 'STOPPING', message: `${ans.reason ?? 'the server is stopping'}: trigger again once it runs` };
      }
      // started: the run callback made the record; queued: it waits for a free slot
      return { ok: true, record: registry.get(id) ?? registry.create({ id, kind: 'backup', policy: name, reason: 'trigger', tags }) };
    };

    let listening: Listening | undefined;
    // GET /metrics: fed every change of a record, and the records read back at start (below)
    const metrics = triggerable ? new Metrics() : undefined;
    metrics?.setPolicies(all);
    registry.subscribe((c) => {
      if (c.type === 'run') metrics?.observe(c.record);
    });
    const snapshots = snapshotLister(ctx, () => order.flatMap((n) => (byName.has(n) ? [byName.get(n)!] : [])));
    const apiServer = createApi({
      registry,
      version: VERSION,
      loopback: api.addr !== undefined && isLoopback(api.addr.host),
      ...(api.token !== undefined ? { token: api.token } : {}),
      policies: () => order.flatMap((n) => (byName.has(n) ? [policyInfo(ctx, byName.get(n)!, scheduler.nextRuns()[n], registry)] : [])),
      trigger,
      running: () => scheduler.running(),
      snapshots,
      advice: {
        advice: (name) => {
          const ps = order.flatMap((n) => (byName.has(n) ? [byName.get(n)!] : []));
          if (name !== undefined && !byName.has(name)) throw new NotFoundError(`policy ${JSON.stringify(name)} is not in ${file}: GET /v1/policies lists them`);
          return adviceFor(ctx, name !== undefined ? [byName.get(name)!] : ps, stateDir);
        },
        anomalies: async () => anomaliesOf(await adviceFor(ctx, order.flatMap((n) => (byName.has(n) ? [byName.get(n)!] : [])), stateDir)),
      },
      ...(metrics !== undefined ? { metrics } : {}),
      ui: dashboard(
        'server',
        () => {
          const seen = new Map<string, RepoAccess>();
          for (const n of order) {
            const p = byName.get(n);
            if (p === undefined) continue;
            const a = policyAccess(ctx, p, 0, () => undefined);
            if (!seen.has(a.repository)) seen.set(a.repository, { location: a.repository, open: (lock, command) => a.open(lock, command, true) });
          }
          return [...seen.values()];
        },
        () => snapshots(),
        str(v['reports']),
      ),
    });
    // the runs of earlier servers, read before the API answers; they are changed (a run a killed
    // server left going is recorded interrupted) only once the port was free: a second server
    // started by mistake on this state directory must not touch the running one's runs
    await registry.load();
    if (api.addr !== undefined) listening = await listen(apiServer.app.fetch, api.addr, api.tls);
    registry.recover();
    if (metrics !== undefined) {
      for (const r of registry.list().reverse()) metrics.observe(r);
      // the age of what is stored, not of what this server ran: read in the background (a slow repository delays no run)
      void loadNewestSnapshots(metrics, all, (p) => {
        const a = policyAccess(ctx, p, 0, () => undefined);
        return { repository: a.repository, open: () => a.open('none', 'server metrics', false) };
      }).then((problems) => problems.forEach((m) => ctx.out.warn(m)));
    }

    ctx.out.result(`server: ${scheduled.length} scheduled ${scheduled.length === 1 ? 'policy' : 'policies'} of ${file}; at most ${maxRuns} run(s) at once; state ${stateFile}`);
    ctx.out.result(listening !== undefined ? `  API on ${listening.url} (${api.token !== undefined ? 'token required' : 'no token: loopback only'})` : '  no API (--listen none)');
    for (const p of all.filter((p) => p.schedule === undefined)) ctx.out.result(`  ${p.name}: no schedule, ${listening !== undefined ? 'run only when triggered (POST /v1/runs)' : 'not run by the server'}${p.pruneWindow !== undefined ? ' (but pruned in its window)' : ''}`);
    for (const p of all.filter((p) => p.pruneWindow !== undefined)) ctx.out.result(`  ${p.name}: prunes in its maintenance window ${windowText(p.pruneWindow!)}, from its start`);
    for (const p of drills) ctx.out.result(`  ${p.name}: restore drill ${p.drill.schedule.text} (job ${drillJob(p.name)})`);
    ctx.out.jsonOut({ message_type: 'server', event: 'start', config: file, policies: scheduled.map((p) => ({ name: p.name, schedule: p.schedule.text })), drills: drills.map((p) => ({ name: drillJob(p.name), schedule: p.drill.schedule.text })), max_runs: maxRuns, state_file: stateFile, grace_seconds: graceMs / 1000, api: listening?.url ?? null, token: api.token !== undefined });

    // SIGHUP: read the file again; a bad file changes nothing
    const onHup = (): void => {
      readScheduled(file, api.addr !== undefined).then(
        (r) => {
          byName = new Map(r.all.map((p) => [p.name, p]));
          order = r.all.map((p) => p.name);
          const jobs = jobsOf(r.all, triggerable);
          scheduler.reload(jobs);
          metrics?.setPolicies(r.all);
          // a queued run of a removed policy was dropped by the scheduler: it will not start
          for (const q of registry.list({ status: 'queued' })) if (!byName.has(q.policy)) registry.finish(q.id, { ok: false, error: { code: 'NOT_FOUND', message: `policy ${q.policy} was removed from ${file} before the run started` } });
          ctx.out.result(`${new Date().toISOString()} server: ${file} reloaded: ${jobs.map((p) => `${p.name} (${p.schedule?.text ?? 'when triggered'})`).join(', ')}`);
          ctx.out.jsonOut({ message_type: 'server', event: 'reload', policies: r.scheduled.map((p) => ({ name: p.name, schedule: p.schedule.text })) });
        },
        (err: unknown) => ctx.out.warn(`${file} was not reloaded (${err instanceof Error ? err.message : String(err)}): the server goes on with the policies it had; fix the file and send SIGHUP again`),
      );
    };
    process.on('SIGHUP', onHup);
    let stopSignal: (sig: Signal) => void = () => undefined;
    const stopped = new Promise<Signal>((res) => (stopSignal = res));
    let stopping = false;
    setInterruptHandler((sig) => {
      if (!stopping) {
        stopping = true;
        stopSignal(sig);
        return;
      }
      // a second signal: do not wait out the grace period
      exitInterrupted(`\nmeshback: interrupted again (${sig}): running policies abandoned; nothing already stored is lost; an unfinished snapshot was not saved\n`);
    });
    try {
      await scheduler.start();
      phase.starting = false;
      const sig = await stopped;
      ctx.out.result(`${new Date().toISOString()} server: ${sig} received`);
      const { abandoned } = await scheduler.stop(graceMs);
      registry.failQueued('the server stopped before the run started');
      for (const r of registry.list({ status: 'running' })) registry.finish(r.id, { ok: false, error: { code: 'INTERRUPTED', message: 'the server stopped and the run did not end within the grace period (--grace): it was abandoned; nothing already stored is lost' } });
      apiServer.closeStreams();
      await listening?.close();
      await registry.flush();
      if (abandoned.length > 0) {
        exitInterrupted(`meshback: server stopped: ${abandoned.join(', ')} did not finish within the grace period (--grace) and ${abandoned.length === 1 ? 'was' : 'were'} abandoned; nothing already stored is lost; an unfinished snapshot was not saved\n`);
        await new Promise(() => undefined); // exitInterrupted ends the process
      }
      return EXIT.OK;
    } catch (err) {
      throw err instanceof MeshbackError ? err : new MeshbackError('INTERNAL', String(err));
    } finally {
      process.off('SIGHUP', onHup);
      setInterruptHandler(undefined);
      apiServer.closeStreams();
      await listening?.close();
    }
  },
};

type ScheduledPolicyOf = Policy & { schedule: NonNullable<Policy['schedule']> };
type DrilledPolicy = Policy & { drill: { schedule: NonNullable<NonNullable<Policy['drill']>['schedule']> } };

const DRILL_SUFFIX = '/drill';
/** The scheduler job of a policy's restore drill. */
export const drillJob = (policy: string): string => `${policy}${DRILL_SUFFIX}`;

/**
 * The scheduler's jobs of the policies: NAME for each policy's backup runs (on its schedule; with
 * the API, a policy without a schedule too: a job without a timer, run when triggered), NAME/prune
 * for a policy that prunes in a maintenance window (at the window's start), NAME/drill for a
 * scheduled restore drill (waiting for its first tick: at start the first backup may not exist).
 */
function jobsOf(all: Policy[], triggerable: boolean): ScheduledPolicy[] {
  return [
    ...all.filter((p) => triggerable || p.schedule !== undefined).map((p): ScheduledPolicy => ({ name: p.name, ...(p.schedule !== undefined ? { schedule: p.schedule } : {}) })),
    ...all.filter((p) => p.pruneWindow !== undefined).map((p): ScheduledPolicy => ({ name: `${p.name}/prune`, schedule: windowStart(p.pruneWindow!) })),
    ...all.filter((p): p is DrilledPolicy => p.drill?.schedule !== undefined).map((p): ScheduledPolicy => ({ name: drillJob(p.name), schedule: p.drill.schedule, waitFirst: true })),
  ];
}

/** The policy file's policies, those with a schedule and those with a drill schedule (at least one job, unless the API's triggers run something: else a UsageError). */
async function readScheduled(file: string, triggerable: boolean): Promise<{ all: Policy[]; scheduled: ScheduledPolicyOf[]; drills: DrilledPolicy[] }> {
  const all = [...(await loadPolicyFile(file)).policies.values()];
  const scheduled = all.filter((p): p is ScheduledPolicyOf => p.schedule !== undefined);
  const drills = all.filter((p): p is DrilledPolicy => p.drill?.schedule !== undefined);
  if (scheduled.length === 0 && drills.length === 0 && !triggerable && !all.some((p) => p.pruneWindow !== undefined)) throw new UsageError(`no policy of ${file} has a schedule: give one a schedule (e.g. schedule: every 1h or schedule: cron: 0 2 * * *), or run it with 'meshback run POLICY --config ${file}' (or serve the API to trigger it: --listen)`);
  return { all, scheduled, drills };
}

/** --listen, --token-file, --tls-cert/--tls-key, checked: a non-loopback address needs a token and TLS. */
export function apiSettings(v: Record<string, unknown>, warn: (m: string) => void, defaultListen = DEFAULT_LISTEN): { addr?: ReturnType<typeof parseListen>; token?: string; tls?: { cert: Buffer; key: Buffer } } {
  const text = str(v['listen']) ?? defaultListen;
  const addr = parseListen(text);
  const tokenFile = str(v['token-file']);
  const cert = str(v['tls-cert']);
  const key = str(v['tls-key']);
  if (addr === undefined) {
    if (tokenFile !== undefined || cert !== undefined || key !== undefined) throw new UsageError('--token-file, --tls-cert and --tls-key are for the API, and --listen none serves none: leave them out, or give --listen HOST:PORT');
    return {};
  }
  if ((cert === undefined) !== (key === undefined)) throw new UsageError(`${cert === undefined ? '--tls-key' : '--tls-cert'} needs ${cert === undefined ? '--tls-cert' : '--tls-key'}: give the certificate and its private key together`);
  const read = (f: string, flag: string): Buffer => {
    try {
      return readFileSync(f);
    } catch (err) {
      throw new UsageError(`cannot read ${flag} ${f}: ${errMessage(err)}`);
    }
  };
  let token: string | undefined;
  if (tokenFile !== undefined) {
    token = read(tokenFile, '--token-file').toString('utf8').trim();
    if (token.length < 16 || /\s/.test(token)) throw new UsageError(`--token-file ${tokenFile} must hold one token of at least 16 characters without white space: make one with 'openssl rand -hex 32 > ${tokenFile}'`);
    if ((statSync(tokenFile).mode & 0o077) !== 0) warn(`--token-file ${tokenFile} can be read by other users: make it private (chmod 600 ${tokenFile})`);
  }
  const tls = cert !== undefined && key !== undefined ? { cert: read(cert, '--tls-cert'), key: read(key, '--tls-key') } : undefined;
  if (!isLoopback(addr.host) && (token === undefined || tls === undefined)) {
    throw new UsageError(`--listen ${text} is not a loopback address: the API there needs a token and TLS: give --token-file FILE and --tls-cert FILE --tls-key FILE (missing: ${[token === undefined ? '--token-file' : '', tls === undefined ? '--tls-cert/--tls-key' : ''].filter((x) => x !== '').join(' and ')}), or listen on ${DEFAULT_LISTEN}`);
  }
  return { addr, ...(token !== undefined ? { token } : {}), ...(tls !== undefined ? { tls } : {}) };
}

/**
 * The dashboard's options (server/ui-routes.ts), for `meshback server` and `meshback ui`: the
 * repositories, the repository of a snapshot (from the listing), the reports folder.
 */
export function dashboard(mode: 'server' | 'repo', repositories: () => RepoAccess[], list: () => Promise<SnapshotRow[]>, reportsDir: string | undefined): UiOptions {
  if (reportsDir !== undefined && !statSync(reportsDir, { throwIfNoEntry: false })?.isDirectory()) throw new UsageError(`--reports ${reportsDir} is not a directory: give the folder of the benchmark's reports (e.g. bench-results)`);
  return {
    mode,
    repositories,
    repositoryOf: async (id) => (await list()).find((r) => r.id === id)?.repository,
    ...(reportsDir !== undefined ? { reportsDir: path.resolve(reportsDir) } : {}),
  };
}

/** A policy as GET /v1/policies shows it. */
function policyInfo(ctx: Context, p: Policy, next: number | undefined, registry: RunRegistry): PolicyInfo {
  let repository: string;
  try {
    repository = p.repository ?? repoLocation(ctx.g);
  } catch {
    repository = '(none: --repo or MESHBACK_REPO is not set)';
  }
  const runs = registry.list({ policy: p.name, kind: 'backup' });
  const last = runs.find((r) => r.status === 'succeeded' || r.status === 'failed');
  const lastOk = runs.find((r) => r.status === 'succeeded');
  const active = registry.active(p.name);
  const bare = (r: RunRecord): RunRecord => {
    const { report: _report, ...rest } = r;
    return rest;
  };
  return {
    name: p.name,
    repository,
    ...(p.schedule !== undefined ? { schedule: p.schedule.text } : {}),
    ...(next !== undefined ? { nextRun: new Date(next).toISOString() } : {}),
    ...(p.rpoMs !== undefined ? { rpoSeconds: p.rpoMs / 1000 } : {}),
    ...(p.drill?.schedule !== undefined ? { drillSchedule: p.drill.schedule.text } : {}),
    tags: p.tags,
    ...(active !== undefined ? { running: active.id } : {}),
    ...(last !== undefined ? { lastRun: bare(last) } : {}),
    ...(lastOk?.finishedAt !== undefined ? { lastSuccess: lastOk.finishedAt } : {}),
  };
}

/**
 * GET /v1/snapshots: the snapshots tagged policy=NAME of the policies, each repository listed once
 * per request (opened without a lock, kept open for the next request; a failed open is tried
 * again next time).
 */
function snapshotLister(ctx: Context, policies: () => Policy[]): (only?: string) => Promise<SnapshotRow[]> {
  const opened = new Map<string, Promise<OpenedRepository>>();
  return async (only) => {
    const ps = policies().filter((p) => only === undefined || p.name === only);
    const byRepo = new Map<string, Policy[]>();
    for (const p of ps) {
      const access = policyAccess(ctx, p, 0, () => undefined);
      const list = byRepo.get(access.repository) ?? [];
      list.push(p);
      byRepo.set(access.repository, list);
      if (!opened.has(access.repository)) {
        const o = access.open('none', 'server api', false);
        opened.set(access.repository, o);
        o.catch(() => opened.delete(access.repository));
      }
    }
    const rows: SnapshotRow[] = [];
    for (const [repository, list] of byRepo) {
      const { repo } = await opened.get(repository)!;
      const names = new Set(list.map((p) => p.name));
      for (const s of await repo.listSnapshots()) {
        const tag = s.snapshot.tags.find((t) => t.startsWith('policy='));
        const policy = tag?.slice('policy='.length);
        if (policy !== undefined && names.has(policy)) rows.push({ id: s.id, repository, policy, snapshot: s.snapshot });
      }
    }
    return rows.sort((a, b) => (a.snapshot.time < b.snapshot.time ? 1 : a.snapshot.time > b.snapshot.time ? -1 : 0));
  };
}

const REASON = { schedule: 'on schedule', 'catch-up': 'catch-up of a run missed while the server was down', 'first-run': 'first run, none recorded before', trigger: 'a trigger, POST /v1/runs' };

/** Prints scheduler events: one line per run start and end (--json: one object per event). */
function printer(ctx: Context, phase: { starting: boolean }): (e: SchedulerEvent) => void {
  return (e) => {
    if (e.type === 'warning') {
      ctx.out.warn(e.message);
      return;
    }
    const { type, ...rest } = e;
    ctx.out.jsonOut({ message_type: 'server', event: type, ...Object.fromEntries(Object.entries(rest).map(([k, val]) => [k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), val])) });
    switch (e.type) {
      case 'scheduled':
        // the first next-run time of each policy, not every re-arming
        if (phase.starting) ctx.out.result(`  ${e.policy}: next run ${e.next}`);
        return;
      case 'run-start':
        ctx.out.result(`${e.at} ${e.policy}: ${e.policy.endsWith(DRILL_SUFFIX) ? 'drill' : 'run'} started (${REASON[e.reason]})`);
        return;
      case 'run-end':
        ctx.out.result(`${e.at} ${e.policy}: ${e.ok ? 'ok' : `FAILED (${e.code ?? 'INTERNAL'})`} in ${e.durationSeconds.toFixed(2)} s${e.snapshotId !== undefined ? `, snapshot ${e.snapshotId.slice(0, 8)}` : ''}${!e.ok && e.message !== undefined ? `: ${e.message}` : ''}`);
        return;
      case 'clock-jump':
        ctx.out.result(`${e.at} server: the wall clock jumped ${e.jumpSeconds > 0 ? 'forward' : 'back'} by ${Math.abs(e.jumpSeconds)} s: schedules re-armed (a cron run whose time was skipped runs once now; one already made is not repeated)`);
        return;
      case 'tick-skipped':
        ctx.out.result(`${e.at} ${e.policy}: run skipped: ${e.reason}`);
        return;
      case 'waiting':
        ctx.out.result(`${e.at} ${e.policy}: due, waiting for a free slot (running: ${e.running.join(', ')})`);
        return;
      case 'stopping':
        ctx.out.result(`${e.at} server: stopping: no new runs${e.running.length > 0 ? `; waiting up to ${e.graceSeconds} s for ${e.running.join(', ')}` : ''}`);
        return;
      case 'stopped':
        ctx.out.result(`${e.at} server: stopped${e.abandoned.length > 0 ? `; abandoned ${e.abandoned.join(', ')}` : ''}`);
        return;
    }
  };
}
