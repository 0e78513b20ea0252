/**
 * bench/fault/runner: the fault-tolerance benchmark's matrix (the engine of `meshback bench run`).
 *
 *   for each scenario, each repeat:        one data set (generateMeshVolume, seed from --seed,
 *                                          the scenario and the repeat), the same for every tool
 *     for each tool x strategy (a cell):   a fresh volume holding that data set (a directory, or a
 *                                          loop-mounted btrfs volume for the snapshot strategy),
 *                                          a fresh tool context + init, then scenario.run(ctx)
 *
 * Tools run one after another inside a repeat, so machine drift hits all of them alike. Every
 * step a scenario takes through ctx.backup/restore/check is measured by the tool adapters (GNU
 * time: wall, CPU, peak RSS) and printed as one progress line. A scenario that throws fails
 * that repeat only (one-line reason, the steps measured so far kept); a tool whose binary is
 * missing and cannot be installed, or a strategy that cannot run here (btrfs needs root and loop
 * devices), makes its cells 'skipped' with the reason. results.json is rewritten (atomically)
 * after every repeat, so a crash keeps what was measured; at the end the report is rendered.
 *
 * Nothing here prints: the run reports through typed events (src/events: op-start, phase, note
 * per step and repeat, warning, summary) that the CLI renders.
 */
import { promises as fsp, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { generateMeshVolume } from '../../gen/gen.ts';
import { deriveSeed } from '../../gen/rng.ts';
import { ensureGnuTime, flush } from '../measure.ts';
import { aptInstall } from '../../../src/host/packages.ts';
import { CommandError, run } from '../../../src/host/process.ts';
import { toolMessage } from './inject.ts';
import type { Measurement } from '../../../src/host/process.ts';
import { TOOLS, archiveName, newContext, s3DeletePrefix } from '../tools.ts';
import type { S3Target } from '../tools.ts';
import { startS3, startToxiproxy } from '../../testenv/index.ts';
import type { S3Env, ToxiproxyEnv } from '../../testenv/index.ts';
import { randomBytes } from 'node:crypto';
import { ROOT } from '../../../src/host/self.ts';
import type { Tool, ToolContext } from '../tools.ts';
import { stopVeleroLab, unmountVeleroLabSync, velero } from '../velero-tool.ts';
import { writeReport } from './report/index.ts';
import { SCENARIOS } from './scenarios/index.ts';
import { RESULTS_SCHEMA, RESULTS_VERSION, resultsProblem } from './types.ts';
import type {
  BenchResults,
  Cell,
  CellSummary,
  RepeatResult,
  Scenario,
  ScenarioContext,
  ScenarioId,
  Spread,
  StepResult,
  Strategy,
  ToolEntry,
  Volume,
} from './types.ts';
import { btrfsSupport, createVolume, unmountAllSync } from '../../../src/volumes/index.ts';
import { killWriters } from './workload.ts';
import { nullSink, reportOp } from '../../../src/events/index.ts';
import type { EventSink } from '../../../src/events/index.ts';

/** The tools of the fault benchmark: the peers of bench/tools.ts, and Velero itself (a lab of its own: bench/velero-tool.ts). */
export const FAULT_TOOLS: readonly Tool[] = [...TOOLS, velero];

export function toolByName(name: string): Tool | undefined {
  return FAULT_TOOLS.find((t) => t.name === name);
}

export const DEFAULT_TOOLS = ['meshback', 'meshback-parity', 'restic', 'kopia', 'borg', 'rsync', 'tar'] as const;

/** How long the object store stays unreachable in s3-outage (--outage-seconds). */
export const DEFAULT_OUTAGE_SECONDS = 10;
export const DEFAULT_SNAPSHOT_TOOLS = ['meshback', 'restic'] as const;
export const ALL_STRATEGIES: readonly Strategy[] = ['full-copy', 'incremental', 'snapshot'];

/** The strategy a tool implements itself. */
export function ownStrategy(tool: string): Strategy {
  return toolByName(tool)?.incremental === true ? 'incremental' : 'full-copy';
}

export const TOOL_NOTES: Record<string, string> = {
  restic: "restic is the engine under Stash and Velero's file-system backup",
  'restic-debian': "restic is the engine under Stash and Velero's file-system backup",
  kopia: "kopia is the data mover of Velero (file-system backup and CSI data movement) and of Kasten K10",
  'kopia-default': "kopia is the data mover of Velero (file-system backup and CSI data movement) and of Kasten K10",
  velero: "Velero itself: a file-system backup by its node agent's kopia uploader, driven through the Velero API on the test control plane (lab/testenv/velero.ts)",
};

export interface BenchOptions {
  tools: string[];
  scenarios: ScenarioId[];
  /** which strategies run: a tool's own (full-copy or incremental) when listed; snapshot for snapshotTools */
  strategies: Strategy[];
  snapshotTools: string[];
  sizeBytes: number;
  seed: number;
  repeat: number;
  /** results.json and the report go here */
  out: string;
  /** volumes, repositories and restores go in a fresh directory made inside this one (default OUT); it is removed at the end */
  work?: string;
  /** extra environment for every tool command; inherited MESHBACK_* variables are not passed on */
  env?: Record<string, string>;
  /** apt-get install missing peers and btrfs-progs when root (default true) */
  install?: boolean;
  meshbackVersion?: string;
  /** the run's account as typed events (see src/events) */
  events?: EventSink;
  /** the scenarios to draw from (default the registry) */
  registry?: readonly Scenario[];
  /** s3-outage: seconds the object store is unreachable (default DEFAULT_OUTAGE_SECONDS) */
  outageSeconds?: number;
}

/** Names that are not known tools, scenarios or strategies: the CLI turns them into a usage error. */
export function validateNames(o: { tools: string[]; scenarios: string[]; strategies: string[]; snapshotTools: string[] }, registry: readonly Scenario[] = SCENARIOS): string | undefined {
  const badTools = [...o.tools, ...o.snapshotTools].filter((t) => toolByName(t) === undefined);
  if (badTools.length > 0) return `unknown tool ${badTools.map((t) => JSON.stringify(t)).join(', ')}: choose from ${FAULT_TOOLS.map((t) => t.name).join(',')}`;
  const badScenarios = o.scenarios.filter((s) => !registry.some((r) => r.id === s));
  if (badScenarios.length > 0) return `unknown scenario ${badScenarios.map((s) => JSON.stringify(s)).join(', ')}: choose from ${registry.map((r) => r.id).join(',')}`;
  const badStrategies = o.strategies.filter((s) => !ALL_STRATEGIES.includes(s as Strategy));
  if (badStrategies.length > 0) return `unknown strategy ${badStrategies.map((s) => JSON.stringify(s)).join(', ')}: choose from ${ALL_STRATEGIES.join(',')}`;
  return undefined;
}

const oneLine = (s: string): string => s.replace(/\s+/g, ' ').trim();
const errText = (err: unknown): string => oneLine(err instanceof Error ? err.message : String(err)).slice(0, 600);

/**
 * A backup that ended with the tool's warning status was stored: bring the adapter's bookkeeping
 * up to date as its backup() does on success (tools.ts: tar's archive-N.tar.zst, borg's b-N).
 */
async function recordWarnedBackup(tool: Tool, ctx: ToolContext, src: string): Promise<boolean> {
  // names are numbered by attempt (tools.ts): the attempt that just ended
  const n = ctx.attempts ?? ctx.backups + 1;
  if (tool.name === 'tar') {
    const name = archiveName(n);
    try {
      await fsp.access(path.join(ctx.repo, name));
    } catch {
      return false;
    }
    ctx.lastBackup = name;
  } else if (tool.name === 'borg') ctx.lastBackup = `b-${n}`;
  ctx.backups++;
  ctx.lastSource = src;
  return true;
}

function stepFrom(name: string, m: Measurement, startedAt: number): StepResult {
  return { name, wallSeconds: m.wallSeconds, cpuSeconds: m.cpuSeconds, peakRssBytes: m.maxRssBytes, exitCode: m.exitCode, startedAt };
}

/** A StepResult for a command that failed (or could not run): its measurement when there is one. */
function failedStep(name: string, err: unknown, startedAt: number, wallFallback: number): StepResult {
  if (err instanceof CommandError) {
    const m = err.measurement;
    const exitCode = err.signal !== null ? 128 + (Number(/\d+/.exec(err.signal)?.[0] ?? 9) || 9) : (err.exitCode ?? 1);
    const tail = err.stderrTail.trim() !== '' ? err.stderrTail : err.stdoutTail;
    const message = err.signal !== null ? `killed by ${err.signal}` : tail.trim() !== '' ? toolMessage(tail) : errText(err);
    return { name, wallSeconds: m?.wallSeconds ?? wallFallback, cpuSeconds: m?.cpuSeconds ?? 0, peakRssBytes: m?.maxRssBytes ?? 0, exitCode, message, startedAt };
  }
  // the runner's own bookkeeping around the tool failed (e.g. the restored tree is not where the tool said)
  return { name, wallSeconds: wallFallback, cpuSeconds: 0, peakRssBytes: 0, exitCode: -1, message: errText(err), startedAt };
}

// ---------------------------------------------------------------------------------------------
// summaries

export function spread(xs: number[]): Spread | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, n: s.length };
}

const ok = (s: StepResult): boolean => s.exitCode === 0 || s.warning === true;

/**
 * A cell's summary over its ok repeats. Per repeat, the backup figures are those of its first
 * successful step named backup* (the full first backup of the data set, for the built-in
 * scenarios), the restore figures those of its first successful restore* step.
 */
export function summarize(repeats: RepeatResult[]): CellSummary {
  const good = repeats.filter((r) => r.status === 'ok');
  const first = (prefix: string) => good.map((r) => r.steps.find((s) => s.name.startsWith(prefix) && ok(s))).filter((s): s is StepResult => s !== undefined);
  const backups = first('backup');
  const restores = first('restore');
  const nums = (f: (r: RepeatResult) => number | undefined) => good.map(f).filter((x): x is number => x !== undefined && Number.isFinite(x));
  const out: CellSummary = {};
  const put = <K extends keyof CellSummary>(k: K, v: CellSummary[K] | undefined) => {
    if (v !== undefined) out[k] = v;
  };
  put('backupWallSeconds', spread(backups.map((s) => s.wallSeconds)));
  put('backupCpuSeconds', spread(backups.map((s) => s.cpuSeconds)));
  put('backupPeakRssBytes', spread(backups.map((s) => s.peakRssBytes)));
  put('restoreWallSeconds', spread(restores.map((s) => s.wallSeconds)));
  put('restoreCpuSeconds', spread(restores.map((s) => s.cpuSeconds)));
  put('restorePeakRssBytes', spread(restores.map((s) => s.peakRssBytes)));
  put('bytesStored', spread(nums((r) => r.bytesStored)));
  put('filesMatchingFraction', spread(nums((r) => (r.integrity !== undefined && r.integrity.files > 0 ? r.integrity.matching / r.integrity.files : undefined))));
  put('filesDamaged', spread(nums((r) => r.integrity?.damaged)));
  put('filesMissing', spread(nums((r) => r.integrity?.missing)));
  const det = good.filter((r) => r.corruptionDetected === true || r.corruptionDetected === false);
  if (det.length > 0) out.detectionRate = det.filter((r) => r.corruptionDetected === true).length / det.length;
  put('rpoSeconds', spread(nums((r) => r.rpo?.seconds)));
  // the application-level scenarios count writes, not bytes (their bytesLost is 0, not measured)
  put('rpoBytesLost', spread(nums((r) => (r.app === undefined ? r.rpo?.bytesLost : undefined))));
  put('rtoSeconds', spread(nums((r) => r.rtoSeconds)));
  const app = good.filter((r) => r.app !== undefined);
  if (app.length > 0) out.appHealthyRate = app.filter((r) => r.app!.healthy).length / app.length;
  put('appWritesLost', spread(nums((r) => r.app?.writesLost)));
  return out;
}

/** A cell's status and reason from its repeats so far (a repeat not run yet counts as not run). */
function settleCell(c: Cell, repeats: number): void {
  if (c.status === 'skipped') return;
  const okN = c.repeats.filter((r) => r.status === 'ok').length;
  const missing = repeats - c.repeats.length;
  c.status = okN === repeats ? 'ok' : okN === 0 ? 'failed' : 'partial';
  if (missing > 0) c.reason = `${missing} of ${repeats} repeat(s) not run: the benchmark stopped before them`;
  else if (okN < repeats) c.reason = `${repeats - okN} of ${repeats} repeat(s) failed: ${c.repeats.find((r) => r.status === 'failed')?.reason ?? ''}`;
  else delete c.reason;
}

// ---------------------------------------------------------------------------------------------

/** The base environment of the tools: ours, without meshback's own variables, plus `extra`. */
function toolEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('MESHBACK_')) env[k] = v;
  return { ...env, ...extra };
}

async function machineInfo(): Promise<BenchResults['machine']> {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    memoryBytes: os.totalmem(),
    kernel: os.release(),
    node: process.versions.node,
    hostname: os.hostname(),
  };
}

async function packageVersion(): Promise<string> {
  try {
    return String((JSON.parse(await fsp.readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown');
  } catch {
    return 'unknown';
  }
}

/** Write `results` as OUT/results.json, atomically (a crash leaves the previous version). */
export async function writeResults(out: string, results: BenchResults): Promise<string> {
  await fsp.mkdir(out, { recursive: true });
  const file = path.join(out, 'results.json');
  const tmp = `${file}.tmp-${process.pid}`;
  await fsp.writeFile(tmp, JSON.stringify(results, null, 2) + '\n');
  await fsp.rename(tmp, file);
  return file;
}

interface Resolved {
  tool: Tool;
  entry: ToolEntry;
}

async function resolveTools(names: string[], install: boolean, log: (l: string, subject?: string) => void): Promise<Resolved[]> {
  const tools = names.map((n) => toolByName(n)!);
  const missing: Tool[] = [];
  for (const t of tools) if (!(await t.available())) missing.push(t);
  const packages = [...new Set(missing.flatMap((t) => t.packages))];
  let installErr: string | undefined;
  if (packages.length > 0) {
    if (install) {
      log(`installing missing Debian packages: ${packages.join(' ')}`, 'install');
      installErr = await aptInstall(packages);
    } else installErr = 'installation is off (--no-install)';
  }
  const out: Resolved[] = [];
  for (const t of tools) {
    const entry: ToolEntry = { name: t.name, version: '', label: t.label, encryption: t.encryption, strategy: ownStrategy(t.name), ...(TOOL_NOTES[t.name] !== undefined ? { note: TOOL_NOTES[t.name] } : {}) };
    if (!(await t.available())) {
      entry.unavailable =
        t.unavailableReason !== undefined
          ? t.unavailableReason()
          : t.name === 'meshback'
          ? `${t.binaries.join(' ')} or its Node.js runtime is missing: run npm ci`
          : `${t.binaries.join(', ')} not found on PATH (Debian package ${t.packages.join(' ')})${installErr !== undefined ? `: ${oneLine(installErr).slice(0, 300)}` : ''}`;
      log(`${t.name}: unavailable: ${entry.unavailable}`);
    } else {
      try {
        entry.version = await t.version();
      } catch (err) {
        entry.version = `unknown (${errText(err).slice(0, 120)})`;
      }
    }
    out.push({ tool: t, entry });
  }
  return out;
}

interface Plan {
  resolved: Resolved;
  strategy: Strategy;
  cell: Cell;
  scenario: Scenario;
}

export function runBench(o: BenchOptions): Promise<BenchResults> {
  const emit = o.events ?? nullSink;
  return reportOp(emit, 'bench', { tools: o.tools, scenarios: o.scenarios, strategies: o.strategies, sizeBytes: o.sizeBytes, repeat: o.repeat }, () => runBenchOps(o, emit));
}

async function runBenchOps(o: BenchOptions, emit: EventSink): Promise<BenchResults> {
  const log = (message: string, subject?: string): void => emit({ type: 'note', op: 'bench', ...(subject !== undefined ? { subject } : {}), message });
  const registry = o.registry ?? SCENARIOS;
  const bad = validateNames({ tools: o.tools, scenarios: o.scenarios, strategies: o.strategies, snapshotTools: o.snapshotTools }, registry);
  if (bad !== undefined) throw new Error(bad);
  const out = path.resolve(o.out);
  const workBase = path.resolve(o.work ?? out);
  const install = o.install ?? true;
  const env = toolEnv(o.env ?? {});
  await ensureGnuTime();
  await fsp.mkdir(out, { recursive: true });
  await fsp.mkdir(workBase, { recursive: true });
  const work = await fsp.mkdtemp(path.join(workBase, 'meshback-bench-work-'));
  // searchable (not listable) by other users: the testbed of the app-* scenarios runs PostgreSQL
  // and Redis as their own users (when root), on volumes inside it
  await fsp.chmod(work, 0o711);
  // an interrupted run (SIGINT/SIGTERM end in process.exit) leaves no mount and no scratch behind
  const onExit = (): void => {
    unmountVeleroLabSync();
    unmountAllSync();
    rmSync(work, { recursive: true, force: true });
  };
  process.on('exit', onExit);

  const resolved = await resolveTools(o.tools, install, log);
  const scenarios = o.scenarios.map((id) => registry.find((s) => s.id === id)!);
  const snapshotTools = o.strategies.includes('snapshot') ? o.tools.filter((t) => o.snapshotTools.includes(t)) : [];
  let btrfs: true | string = true;
  if (snapshotTools.length > 0) {
    btrfs = await btrfsSupport(path.join(work, 'btrfs-probe'), install);
    if (btrfs !== true) log(`snapshot strategy: ${btrfs}`);
  }

  const results: BenchResults = {
    schema: RESULTS_SCHEMA,
    version: RESULTS_VERSION,
    meshbackVersion: o.meshbackVersion ?? (await packageVersion()),
    startedAt: new Date().toISOString(),
    finishedAt: '',
    machine: await machineInfo(),
    options: {
      tools: o.tools,
      scenarios: o.scenarios,
      strategies: o.strategies,
      sizeBytes: o.sizeBytes,
      seed: o.seed,
      repeat: o.repeat,
      ...(snapshotTools.length > 0 ? { snapshotTools } : {}),
      ...(Object.keys(o.env ?? {}).length > 0 ? { extraEnv: o.env } : {}),
      ...(scenarios.some((s) => s.storage === 's3') ? { outageSeconds: o.outageSeconds ?? DEFAULT_OUTAGE_SECONDS } : {}),
    },
    tools: resolved.map((r) => r.entry),
    scenarios: scenarios.map((s) => ({ id: s.id, title: s.title, description: s.description })),
    cells: [],
  };
  if (btrfs !== true) results.notes = [`snapshot strategy not run: ${btrfs}`];

  // the matrix, in report order: scenario, tool, strategy
  const plans: Plan[] = [];
  for (const scenario of scenarios) {
    for (const r of resolved) {
      // a variant made for some scenarios only (meshback-parity: where the repository is damaged) gets no cell elsewhere
      if (r.tool.onlyScenarios !== undefined && !r.tool.onlyScenarios.includes(scenario.id)) continue;
      const strategies: Strategy[] = [];
      if (o.strategies.includes(ownStrategy(r.tool.name))) strategies.push(ownStrategy(r.tool.name));
      if (snapshotTools.includes(r.tool.name)) strategies.push('snapshot');
      for (const strategy of strategies) {
        const cell: Cell = { tool: r.tool.name, strategy, volume: strategy === 'snapshot' ? 'btrfs' : 'dir', scenario: scenario.id, status: 'ok', repeats: [], summary: {} };
        const na = r.tool.notApplicable?.[scenario.id];
        const applies = na !== undefined ? `not applicable: ${na}` : (scenario.applies?.(r.tool, strategy) ?? true);
        if (r.entry.unavailable !== undefined) Object.assign(cell, { status: 'skipped', reason: `${r.tool.name} is unavailable: ${r.entry.unavailable}` });
        else if (strategy === 'snapshot' && btrfs !== true) Object.assign(cell, { status: 'skipped', reason: btrfs });
        else if (applies !== true) Object.assign(cell, { status: 'skipped', reason: applies });
        plans.push({ resolved: r, strategy, cell, scenario });
        results.cells.push(cell);
      }
    }
  }
  const save = async () => {
    for (const c of results.cells) {
      settleCell(c, o.repeat);
      c.summary = summarize(c.repeats);
    }
    results.finishedAt = new Date().toISOString();
    await writeResults(out, results);
  };
  await save();

  // the object store of the s3 scenarios: one MinIO behind one toxiproxy proxy for the run
  let s3lab: S3Lab | undefined;
  if (plans.some((p) => p.cell.status !== 'skipped' && p.scenario.storage === 's3')) {
    try {
      s3lab = await startS3Lab(o.outageSeconds ?? DEFAULT_OUTAGE_SECONDS);
      log(`object store for the s3 scenarios: MinIO at ${s3lab.s3.endpoint}, reached through toxiproxy at ${s3lab.endpoint}`);
    } catch (err) {
      for (const p of plans) if (p.cell.status !== 'skipped' && p.scenario.storage === 's3') Object.assign(p.cell, { status: 'skipped', reason: `MinIO or toxiproxy (lab/testenv) could not start: ${errText(err).slice(0, 300)}` });
    }
  }
  const runnable = plans.filter((p) => p.cell.status !== 'skipped');
  const total = runnable.length * o.repeat;
  let done = 0;
  for (const p of plans) if (p.cell.status === 'skipped') log(`${p.scenario.id} ${p.cell.tool}/${p.strategy}: skipped: ${p.cell.reason ?? ''}`);
  try {
    for (const scenario of scenarios) {
      const cells = runnable.filter((p) => p.scenario === scenario);
      if (cells.length === 0) continue;
      for (let rep = 1; rep <= o.repeat; rep++) {
        const seed = deriveSeed(o.seed, scenario.id, rep);
        const dataset = path.join(work, 'dataset');
        await fsp.rm(dataset, { recursive: true, force: true });
        const t0 = performance.now();
        const stats = await generateMeshVolume(dataset, { size: o.sizeBytes, seed });
        log(`${scenario.id} repeat ${rep}: data set ${stats.files} files, ${(stats.bytes / 1048576).toFixed(1)} MiB (seed ${seed}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
        for (const p of cells) {
          done++;
          const tag = `[${done}/${total}] ${scenario.id} ${p.cell.tool}/${p.strategy} repeat ${rep}`;
          const rr = await runRepeat(p, { rep, seed, dataset, work: path.join(work, 'run'), env, sizeBytes: o.sizeBytes, install, log: (l) => log(l, tag), ...(s3lab !== undefined ? { s3lab } : {}) });
          p.cell.repeats.push(rr);
          log(`${rr.status}${rr.reason !== undefined ? `: ${rr.reason}` : ''}${rr.rtoSeconds !== undefined ? `; RTO ${rr.rtoSeconds.toFixed(2)} s` : ''}${rr.rpo !== undefined ? `; RPO ${rr.rpo.seconds.toFixed(2)} s, ${rr.rpo.writesLost} writes lost` : ''}${rr.app !== undefined ? `; service ${rr.app.healthy ? 'healthy' : 'NOT healthy'} after recovery` : ''}`, tag);
          await save();
        }
        await fsp.rm(dataset, { recursive: true, force: true });
      }
    }
  } finally {
    await save();
    await s3lab?.stop().catch(() => {});
    await stopVeleroLab();
    await fsp.rm(work, { recursive: true, force: true }).catch(() => {});
    process.off('exit', onExit);
  }
  await writeReport(out, results);
  return results;
}

/** MinIO (lab/testenv) and a toxiproxy proxy in front of it: the object store of the s3 scenarios. */
interface S3Lab {
  s3: S3Env;
  proxy: ToxiproxyEnv;
  /** http://127.0.0.1:PORT of the proxy: where the tools send their requests */
  endpoint: string;
  outageSeconds: number;
  /** a fresh prefix in the bucket, reached through the proxy */
  target(label: string): S3Target;
  down(): Promise<void>;
  up(): Promise<void>;
  stop(): Promise<void>;
}

const PROXY = 'minio';

async function startS3Lab(outageSeconds: number): Promise<S3Lab> {
  const quiet = (): void => {};
  const s3 = await startS3({ log: quiet });
  let proxy: ToxiproxyEnv;
  try {
    proxy = await startToxiproxy({ log: quiet });
  } catch (err) {
    await s3.stop();
    throw err;
  }
  const stop = async (): Promise<void> => {
    await proxy.stop().catch(() => {});
    await s3.stop();
  };
  try {
    const listen = await proxy.createProxy(PROXY, new URL(s3.endpoint).host);
    const endpoint = `http://${listen}`;
    return {
      s3,
      proxy,
      endpoint,
      outageSeconds,
      target: (label) => ({ endpoint, bucket: s3.bucket, prefix: `bench/${label.replace(/[^\w.-]/g, '_')}-${randomBytes(4).toString('hex')}`, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, region: s3.region }),
      down: () => proxy.setEnabled(PROXY, false),
      up: () => proxy.setEnabled(PROXY, true),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

interface RepeatEnv {
  rep: number;
  seed: number;
  dataset: string;
  work: string;
  env: Record<string, string>;
  sizeBytes: number;
  install: boolean;
  log: (line: string) => void;
  s3lab?: S3Lab;
}

/** The image size for a data set of `dataBytes`: room for the data, the workload and a restore. */
export function btrfsImageBytes(dataBytes: number): number {
  const MiB = 1024 * 1024;
  return Math.max(256 * MiB, Math.ceil((2 * dataBytes + 128 * MiB) / MiB) * MiB);
}

/** One repeat of one cell: fresh volume and repository, the scenario, cleanup. Never throws. */
async function runRepeat(p: Plan, e: RepeatEnv): Promise<RepeatResult> {
  const { tool } = p.resolved;
  const steps: StepResult[] = [];
  const volumes: Volume[] = [];
  let bytesStored: number | undefined;
  const kind = p.cell.volume;
  const imageBytes = btrfsImageBytes(e.sizeBytes);
  const base: Pick<RepeatResult, 'repeat' | 'seed'> = { repeat: e.rep, seed: e.seed };
  let s3Target: S3Target | undefined;
  try {
    await fsp.rm(e.work, { recursive: true, force: true });
    await fsp.mkdir(path.join(e.work, 'scratch'), { recursive: true });
    const volume = await createVolume({ kind, name: 'data', dir: path.join(e.work, 'volume', ...(kind === 'dir' ? ['data'] : [])), sizeBytes: imageBytes, fresh: true, unmountOnExit: true });
    volumes.push(volume);
    await run(['cp', '-a', `${e.dataset}/.`, volume.path]);
    if (p.scenario.storage === 's3') {
      if (e.s3lab === undefined) throw new Error('the object store of the s3 scenarios is not running');
      s3Target = e.s3lab.target(`${p.scenario.id}-${tool.name}-r${e.rep}`);
      await e.s3lab.up();
    }
    const toolCtx = await newContext(tool, path.join(e.work, 'tool'), e.env, s3Target);
    try {
      await tool.init(toolCtx);
    } catch (err) {
      return { ...base, status: 'failed', reason: `init failed: ${failedStep('init', err, Date.now(), 0).message ?? ''}`, steps };
    }
    await flush();
    const record = (s: StepResult): StepResult => {
      steps.push(s);
      e.log(`${s.name}: ${s.wallSeconds.toFixed(2)} s wall, ${s.cpuSeconds.toFixed(2)} s CPU, ${(s.peakRssBytes / 1048576).toFixed(0)} MiB peak RSS${s.exitCode !== 0 ? `, exit ${s.exitCode}${s.warning === true ? ' (warning, stored)' : ''}: ${s.message ?? ''}` : ''}`);
      return s;
    };
    let fresh = 0;
    const ctx: ScenarioContext = {
      tool,
      strategy: p.strategy,
      toolCtx,
      volume,
      work: path.join(e.work, 'scratch'),
      seed: e.seed,
      sizeBytes: e.sizeBytes,
      install: e.install,
      log: e.log,
      ...(s3Target !== undefined && e.s3lab !== undefined
        ? { s3: { down: e.s3lab.down, up: e.s3lab.up, how: 'toxiproxy proxy in front of MinIO disabled (new connections refused, open ones cut), then enabled again', outageSeconds: e.s3lab.outageSeconds } }
        : {}),
      async backup(name, opts) {
        const startedAt = Date.now();
        const t0 = performance.now();
        const from = opts?.source ?? volume;
        let src = from.path;
        let release: (() => Promise<void>) | undefined;
        let snapshotSeconds: number | undefined;
        let step: StepResult;
        try {
          if (p.strategy === 'snapshot') {
            const s0 = performance.now();
            const snap = await from.snapshot();
            snapshotSeconds = (performance.now() - s0) / 1000;
            src = snap.path;
            release = snap.release;
          }
          try {
            step = stepFrom(name, await tool.backup(toolCtx, src), startedAt);
          } catch (err) {
            step = failedStep(name, err, startedAt, (performance.now() - t0) / 1000);
            if (err instanceof CommandError && err.signal === null && err.exitCode === tool.warningExit && (await recordWarnedBackup(tool, toolCtx, src))) step.warning = true;
          }
          if (snapshotSeconds !== undefined) step.snapshotSeconds = snapshotSeconds;
          if (ok(step) && opts?.view !== undefined) await opts.view(src);
          if (ok(step) && opts?.hold !== undefined) {
            // the scenario holds the view until its promise settles; release then, in the background
            const held = Promise.resolve().then(() => opts.hold!(src));
            const rel = release;
            const s = step;
            release = undefined;
            void held.catch(() => {}).then(async () => {
              if (rel === undefined) return;
              const r0 = performance.now();
              await rel().catch(() => {});
              s.snapshotSeconds = (s.snapshotSeconds ?? 0) + (performance.now() - r0) / 1000;
            });
          }
        } catch (err) {
          step = failedStep(name, err, startedAt, (performance.now() - t0) / 1000);
          if (snapshotSeconds !== undefined) step.snapshotSeconds = snapshotSeconds;
        } finally {
          if (release !== undefined) {
            const r0 = performance.now();
            await release().catch(() => {});
            if (snapshotSeconds !== undefined) snapshotSeconds += (performance.now() - r0) / 1000;
          }
        }
        if (snapshotSeconds !== undefined) step.snapshotSeconds = snapshotSeconds;
        if (ok(step)) bytesStored = await tool.bytesStored(toolCtx).catch(() => bytesStored);
        return record(step);
      },
      async restore(name, target) {
        const startedAt = Date.now();
        const t0 = performance.now();
        await fsp.mkdir(target, { recursive: true });
        try {
          return record(stepFrom(name, await tool.restore(toolCtx, target), startedAt));
        } catch (err) {
          return record(failedStep(name, err, startedAt, (performance.now() - t0) / 1000));
        }
      },
      ...(tool.check !== undefined
        ? {
            async check(name: string) {
              const startedAt = Date.now();
              const t0 = performance.now();
              try {
                return record(stepFrom(name, await tool.check!(toolCtx), startedAt));
              } catch (err) {
                return record(failedStep(name, err, startedAt, (performance.now() - t0) / 1000));
              }
            },
          }
        : {}),
      async newVolume(label) {
        const vdir = path.join(e.work, `volume-${++fresh}-${label.replace(/[^\w.-]/g, '_')}`);
        const v = await createVolume({ kind, name: 'data', dir: kind === 'dir' ? path.join(vdir, 'data') : vdir, sizeBytes: imageBytes, fresh: true, unmountOnExit: true });
        volumes.push(v);
        return v;
      },
    };
    let res: Omit<RepeatResult, 'repeat' | 'seed'>;
    try {
      res = await p.scenario.run(ctx);
    } catch (err) {
      return { ...base, status: 'failed', reason: errText(err), steps, ...(bytesStored !== undefined ? { bytesStored } : {}) };
    }
    return {
      ...base,
      ...res,
      steps: res.steps.length > 0 ? res.steps : steps,
      ...(res.bytesStored === undefined && bytesStored !== undefined ? { bytesStored } : {}),
    };
  } catch (err) {
    return { ...base, status: 'failed', reason: `setup failed: ${errText(err)}`, steps };
  } finally {
    killWriters();
    if (s3Target !== undefined) {
      // the store back, and this repeat's objects gone (the bucket is shared by the run)
      await e.s3lab?.up().catch(() => {});
      await s3DeletePrefix({ ...s3Target, endpoint: e.s3lab?.s3.endpoint ?? s3Target.endpoint }).catch(() => {});
    }
    for (const v of volumes) await v.destroy().catch(() => {});
    await fsp.rm(e.work, { recursive: true, force: true }).catch(() => {});
  }
}

/**
 * Is `json` a results file this version reads? Returns the reason it is not (one line, about "it"),
 * or undefined: the schema name, the version, then every field (BenchResultsSchema in types.ts).
 */
export function checkResults(json: unknown): string | undefined {
  const p = resultsProblem(json);
  return p === undefined ? undefined : `it ${p}`;
}
