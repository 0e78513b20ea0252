/**
 * `meshback bench run|report`: the fault-tolerance benchmark (engine: lab/bench/fault/).
 */
import { constants as fsc, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { sizeOf } from '../../src/util/units.ts';
import { ALL_STRATEGIES, DEFAULT_OUTAGE_SECONDS, DEFAULT_SNAPSHOT_TOOLS, DEFAULT_TOOLS, FAULT_TOOLS, runBench, validateNames } from '../bench/fault/runner.ts';
import { parseResults, writeReport } from '../bench/fault/report/index.ts';
import { SCENARIOS } from '../bench/fault/scenarios/index.ts';
import type { BenchResults, Cell, ScenarioId, Strategy } from '../bench/fault/types.ts';
import { MeshbackError, NotFoundError, UsageError, errMessage } from '../../src/errors/index.ts';
import type { Command } from '../../src/cli/command.ts';
import { bool, str, strs } from '../../src/cli/command.ts';
import type { Context } from '../../src/cli/context.ts';
import { EXIT } from '../../src/cli/exit.ts';

const USAGE = 'meshback bench run [--tools LIST] [--scenarios LIST] [--strategies LIST] [--snapshot-tools LIST] [--size SIZE] [--seed N] [--repeat N] [--outage-seconds N] [--env KEY=VALUE]... [--no-install] --out DIR | meshback bench report DIR';

const list = (s: string | undefined, dflt: readonly string[]): string[] => [...new Set((s ?? dflt.join(',')).split(',').map((x) => x.trim()).filter((x) => x !== ''))];

function intOption(name: string, v: string | undefined, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} ${JSON.stringify(v)} is not an integer${min > 0 ? ` of at least ${min}` : ''}: see 'meshback bench --help'`);
  return n;
}

const fmtS = (x: number | undefined): string => (x === undefined ? '-' : `${x.toFixed(2)} s`);

/** One human line for a cell. */
function cellLine(c: Cell): string {
  const head = `${c.scenario.padEnd(19)} ${`${c.tool}/${c.strategy}`.padEnd(22)} ${c.status.padEnd(8)}`;
  if (c.status === 'skipped') return `${head} ${c.reason ?? ''}`;
  const s = c.summary;
  const integrity = s.filesMatchingFraction !== undefined ? `${(s.filesMatchingFraction.median * 100).toFixed(1)}% files intact` : 'integrity -';
  // (an application-level cell counts writes, not bytes: its writes lost follow below)
  const lost = s.rpoBytesLost !== undefined ? ` (${(s.rpoBytesLost.median / 1024).toFixed(0)} KiB lost)` : s.appHealthyRate !== undefined ? '' : ' (-)';
  const rpo = s.rpoSeconds !== undefined ? `RPO ${fmtS(s.rpoSeconds.median)}${lost}` : 'RPO -';
  const failed = c.repeats.filter((r) => r.status === 'failed');
  const why = failed.length > 0 ? `; failed: ${failed[0]!.reason ?? ''}` : '';
  const app = s.appHealthyRate !== undefined ? `, service healthy ${Math.round(s.appHealthyRate * 100)}% of repeats, ${s.appWritesLost?.median ?? '-'} writes lost` : '';
  return `${head} backup ${fmtS(s.backupWallSeconds?.median)}, restore ${fmtS(s.restoreWallSeconds?.median)}, ${integrity}, ${rpo}, RTO ${fmtS(s.rtoSeconds?.median)}${app}${why}`;
}

async function runCmd(ctx: Context, v: Record<string, unknown>): Promise<number> {
  const out = str(v['out']);
  if (out === undefined) throw new UsageError("bench run needs --out DIR (where results.json and the report go): see 'meshback bench --help'");
  const tools = list(str(v['tools']), DEFAULT_TOOLS);
  const scenarios = list(str(v['scenarios']), SCENARIOS.map((s) => s.id));
  const strategies = list(str(v['strategies']), ALL_STRATEGIES);
  const snapshotTools = list(str(v['snapshot-tools']), DEFAULT_SNAPSHOT_TOOLS);
  if (tools.length === 0 || scenarios.length === 0 || strategies.length === 0) throw new UsageError('--tools, --scenarios and --strategies must not be empty');
  const bad = validateNames({ tools, scenarios, strategies, snapshotTools });
  if (bad !== undefined) throw new UsageError(bad);
  const sizeText = str(v['size']) ?? '256MiB';
  const sizeBytes = sizeOf(sizeText);
  if (sizeBytes === undefined || sizeBytes < 1024 * 1024) throw new UsageError(`--size ${JSON.stringify(sizeText)} is not a size of at least 1MiB: use e.g. 16MiB or 256MiB`);
  const seed = intOption('seed', str(v['seed']), 1, 0);
  const repeat = intOption('repeat', str(v['repeat']), 3, 1);
  const outageSeconds = intOption('outage-seconds', str(v['outage-seconds']), DEFAULT_OUTAGE_SECONDS, 1);
  const env: Record<string, string> = {};
  for (const kv of strs(v['env'])) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new UsageError(`--env takes KEY=VALUE, not ${JSON.stringify(kv)}`);
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const work = str(v['work']);
  const quiet = ctx.g.quiet;
  let results: BenchResults;
  try {
    // an --out that cannot be written is the user's to fix, before anything runs
    try {
      await fsp.mkdir(path.resolve(out), { recursive: true });
      await fsp.access(path.resolve(out), fsc.W_OK);
    } catch (err) {
      throw new UsageError(`--out ${out} cannot be used: ${errMessage(err).split('\n')[0]}: give a writable directory`);
    }
    results = await runBench({
      tools,
      scenarios: scenarios as ScenarioId[],
      strategies: strategies as Strategy[],
      snapshotTools,
      sizeBytes,
      seed,
      repeat,
      outageSeconds,
      out: path.resolve(out),
      ...(work !== undefined ? { work: path.resolve(work) } : {}),
      env,
      install: !bool(v['no-install']),
      events: (e) => {
        if (!quiet && e.type === 'note') process.stderr.write(`bench: ${e.subject !== undefined ? `${e.subject}: ` : ''}${e.message}\n`);
      },
    });
  } catch (err) {
    if (err instanceof MeshbackError) throw err;
    throw new MeshbackError('INTERNAL', `bench run stopped: ${errMessage(err).split('\n')[0]}; what was measured so far is in ${path.join(path.resolve(out), 'results.json')}`);
  }
  const file = path.join(path.resolve(out), 'results.json');
  ctx.out.result(`fault-tolerance benchmark: ${results.cells.length} cells (${results.options.repeat} repeat(s) each), ${results.startedAt} to ${results.finishedAt}`);
  for (const c of results.cells) ctx.out.result(cellLine(c));
  ctx.out.result(`results: ${file}; report: ${path.join(path.resolve(out), 'report.md')}, ${path.join(path.resolve(out), 'report.html')}`);
  ctx.out.jsonOut({
    message_type: 'summary',
    results: file,
    report: { markdown: path.join(path.resolve(out), 'report.md'), html: path.join(path.resolve(out), 'report.html') },
    cells: results.cells.map((c) => ({ scenario: c.scenario, tool: c.tool, strategy: c.strategy, volume: c.volume, status: c.status, ...(c.reason !== undefined ? { reason: c.reason } : {}), summary: c.summary })),
  });
  return EXIT.OK;
}

async function reportCmd(ctx: Context, dir: string | undefined): Promise<number> {
  if (dir === undefined) throw new UsageError("bench report needs the directory of a run: meshback bench report DIR");
  const file = path.join(path.resolve(dir), 'results.json');
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`${file} does not exist: give the --out directory of a 'meshback bench run'`);
    throw new MeshbackError('BACKEND', `cannot read ${file}: ${errMessage(err)}`);
  }
  const written = await writeReport(path.resolve(dir), parseResults(text, file));
  ctx.out.result(`report: ${written.markdown}, ${written.html}`);
  ctx.out.jsonOut({ message_type: 'summary', results: file, report: written });
  return EXIT.OK;
}

export const benchCommand: Command = {
  name: 'bench',
  summary: 'fault-tolerance benchmark: tools x strategies x failure scenarios, measured and reported (run | report DIR)',
  usage: USAGE,
  options: {
    out: { type: 'string', argument: 'DIR', description: 'run: where results.json, report.md and report.html go (required)' },
    tools: { type: 'string', argument: 'LIST', description: `run: tools, from ${FAULT_TOOLS.map((t) => t.name).join(',')} (default ${DEFAULT_TOOLS.join(',')}; meshback-parity runs in repo-corruption only)` },
    scenarios: { type: 'string', argument: 'LIST', description: `run: scenarios (default all: ${SCENARIOS.map((s) => s.id).join(',')})` },
    'outage-seconds': { type: 'string', argument: 'N', description: `run: s3-outage: seconds the object store stays unreachable (default ${DEFAULT_OUTAGE_SECONDS})` },
    strategies: { type: 'string', argument: 'LIST', description: `run: full-copy (tar, rsync, cp), incremental (meshback, restic, kopia, borg, velero), snapshot (btrfs snapshot, then back it up; root) (default all)` },
    'snapshot-tools': { type: 'string', argument: 'LIST', description: `run: the tools that run the snapshot strategy (default ${DEFAULT_SNAPSHOT_TOOLS.join(',')})` },
    size: { type: 'string', argument: 'SIZE', description: 'run: size of the generated volume data set (default 256MiB)' },
    seed: { type: 'string', argument: 'N', description: 'run: seed of the data sets, workloads and fault moments (default 1)' },
    repeat: { type: 'string', argument: 'N', description: 'run: repeats per cell (default 3); figures are medians with min-max' },
    work: { type: 'string', argument: 'DIR', description: 'run: where the scratch directory for volumes and repositories is made (default OUT; removed at the end)' },
    env: { type: 'string', multiple: true, argument: 'KEY=VALUE', description: 'run: extra environment for every tool (recorded: such a run is not representative)' },
    'no-install': { type: 'boolean', description: 'run: do not apt-get install missing peers or btrfs-progs (root only)' },
  },
  async run(ctx, v, positionals) {
    const [sub, ...rest] = positionals;
    if (sub === 'run') {
      if (rest.length > 0) throw new UsageError(`bench run takes no arguments (got ${JSON.stringify(rest[0])}): see 'meshback bench --help'`);
      return runCmd(ctx, v);
    }
    if (sub === 'report') {
      if (rest.length > 1) throw new UsageError(`bench report takes one directory (got ${rest.length}): meshback bench report DIR`);
      return reportCmd(ctx, rest[0]);
    }
    throw new UsageError(sub === undefined ? "bench needs a subcommand: 'meshback bench run ... --out DIR' or 'meshback bench report DIR'" : `unknown bench subcommand ${JSON.stringify(sub)}: use run or report`);
  },
};
