/**
 * bench/memory: meshback's data-path commands inside a memory cgroup, as a data mover runs under
 * its pod's memory limit (the runner behind `npm run bench:memory`).
 *
 * For each dataset (the bench:peers 2 GiB dataset, a tree of N small files) and each mode (no
 * limit; a hard limit such as 256 MiB), on a fresh repository, it measures one after another:
 * `backup` of the dataset, `restore latest` into an empty directory (then compared with the
 * dataset by path, type, size, mode and SHA-256, not timed), `check --read-data`, `copy` of every
 * snapshot into a second repository, and `prune` after a second backup that leaves out about half
 * the files (`--exclude '*[13579]'`... a name pattern) and a `forget --keep-last 1` (both not
 * timed), so that prune has packs to repack. meshback finds the limit itself (its cgroup's), as it
 * would in a pod: nothing tells it the limit. A step killed by the kernel counts as an OOM kill.
 *
 * Nothing here prints: progress goes out as typed events; results are returned and written as
 * results.json and results.md.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MESHBACK_BIN } from '../../src/host/self.ts';
import { run } from '../../src/host/process.ts';
import { nullSink, reportOp } from '../../src/events/index.ts';
import type { EventSink } from '../../src/events/index.ts';
import { errText, fmtDuration, fmtMiB, fmtS, toolEnv, treeStats } from './peers.ts';
import { ensureGnuTime, flush } from './measure.ts';
import { cgroupVersion, runLimited } from './memlimit.ts';

export const MEMORY_OPS = ['backup', 'restore', 'check', 'copy', 'prune'] as const;
export type MemoryOp = (typeof MEMORY_OPS)[number];

export interface MemoryBenchOptions {
  /** name -> directory of each dataset */
  datasets: { name: string; dir: string }[];
  /** the hard limit in bytes */
  limitBytes: number;
  work: string;
  out: string;
  events?: EventSink;
}

export interface MemoryRow {
  dataset: string;
  /** 'unlimited' or the limit in bytes */
  limit: 'unlimited' | number;
  op: MemoryOp;
  ok: boolean;
  wallSeconds?: number;
  cpuSeconds?: number;
  maxRssBytes?: number;
  cgroupPeakBytes?: number;
  oomKills: number;
  error?: string;
  /** the limit meshback said it sized its windows to (its --json summary's memory.limitBytes) */
  limitSeenBytes?: number;
}

/** memory.limitBytes of the summary line of a --json run, if any. */
export function limitSeen(stdout: string): number | undefined {
  for (const line of stdout.split('\n').reverse()) {
    if (!line.startsWith('{')) continue;
    try {
      const j = JSON.parse(line) as { message_type?: string; memory?: { limitBytes?: unknown } };
      if (j.message_type === 'summary') return typeof j.memory?.limitBytes === 'number' ? j.memory.limitBytes : undefined;
    } catch {
      // not a JSON line
    }
  }
  return undefined;
}

export interface MemoryResults {
  version: 1;
  startedAt: string;
  totalSeconds: number;
  machine: { cpus: number; memGiB: number; kernel: string; node: string; cgroup: number | undefined };
  limitBytes: number;
  datasets: { name: string; dir: string; files: number; bytes: number }[];
  rows: MemoryRow[];
}

const PASSWORD = 'meshback-bench-memory';

export function runMemoryBench(opts: MemoryBenchOptions): Promise<MemoryResults> {
  const emit = opts.events ?? nullSink;
  return reportOp(emit, 'bench-memory', { limitBytes: opts.limitBytes }, () => runOps(opts, emit));
}

async function runOps(opts: MemoryBenchOptions, emit: EventSink): Promise<MemoryResults> {
  const log = (message: string): void => emit({ type: 'note', op: 'bench-memory', message });
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  await ensureGnuTime();
  if (cgroupVersion() === undefined) throw new Error('no memory cgroup controller is mounted here: the memory-limit benchmark needs one (and root)');
  await fsp.mkdir(opts.out, { recursive: true });
  const { env: base } = toolEnv({});
  const rows: MemoryRow[] = [];
  const datasets: MemoryResults['datasets'] = [];
  for (const ds of opts.datasets) {
    const t = await treeStats(ds.dir);
    datasets.push({ name: ds.name, dir: ds.dir, files: t.files, bytes: t.bytes });
    for (const limit of ['unlimited', opts.limitBytes] as const) {
      const dir = path.join(opts.work, `${ds.name}-${limit === 'unlimited' ? 'unlimited' : 'limited'}`);
      await fsp.rm(dir, { recursive: true, force: true });
      await fsp.mkdir(dir, { recursive: true });
      const repo = path.join(dir, 'repo');
      const copyRepo = path.join(dir, 'copy');
      const target = path.join(dir, 'restore');
      const env = { ...base, MESHBACK_REPO: repo, MESHBACK_PASSWORD: PASSWORD, MESHBACK_FROM_PASSWORD: PASSWORD, MESHBACK_CACHE_DIR: path.join(dir, 'cache') };
      const mb = (args: string[]) => run([MESHBACK_BIN, ...args, '-q'], { env });
      let blocked: string | undefined;
      const step = async (op: MemoryOp, args: string[], after?: (row: MemoryRow) => Promise<void>) => {
        const row: MemoryRow = { dataset: ds.name, limit, op, ok: false, oomKills: 0 };
        if (blocked !== undefined) {
          row.error = `not run: ${blocked}`;
        } else {
          await flush();
          const r = await runLimited([MESHBACK_BIN, ...args, '--json', '-q'], limit === 'unlimited' ? undefined : limit, { env });
          Object.assign(row, {
            ok: r.ok,
            oomKills: r.oomKills,
            ...(r.measurement !== undefined ? { wallSeconds: r.measurement.wallSeconds, cpuSeconds: r.measurement.cpuSeconds, maxRssBytes: r.measurement.maxRssBytes } : {}),
            ...(r.cgroupPeakBytes !== undefined ? { cgroupPeakBytes: r.cgroupPeakBytes } : {}),
            ...(r.error !== undefined ? { error: r.error } : {}),
          });
          const seen = limitSeen(r.stdout);
          if (seen !== undefined) row.limitSeenBytes = seen;
          if (row.ok && after !== undefined) await after(row);
          if (!row.ok && op === 'backup') blocked = 'the backup failed';
        }
        rows.push(row);
        const where = `${ds.name}, ${limit === 'unlimited' ? 'no limit' : `${fmtMiB(limit)} MiB limit`}, ${op}`;
        log(row.ok ? `${where}: ${fmtS(row.wallSeconds!)} s wall, ${fmtS(row.cpuSeconds!)} s CPU, ${fmtMiB(row.maxRssBytes!)} MiB peak RSS, cgroup peak ${row.cgroupPeakBytes !== undefined ? fmtMiB(row.cgroupPeakBytes) : '?'} MiB` : `${where}: FAILED: ${row.error ?? ''}`);
      };
      try {
        await mb(['init']);
        await mb(['init', '--repo', copyRepo]);
        await step('backup', ['backup', ds.dir]);
        await fsp.mkdir(target);
        await step('restore', ['restore', 'latest', '--target', target], async (row) => {
          const diff = await compareTrees(ds.dir, target);
          if (diff.length > 0) {
            row.ok = false;
            row.error = `restored data differ from the dataset (${diff.length} differences): ${diff.slice(0, 3).join('; ')}`;
          }
        });
        await fsp.rm(target, { recursive: true, force: true });
        await step('check', ['check', '--read-data']);
        await step('copy', ['copy', '--from-repo', repo, '--repo', copyRepo]);
        if (blocked === undefined) {
          // a second snapshot without about half the files, the first forgotten: prune repacks
          await mb(['backup', ds.dir, '--exclude', '*[13579]', '--exclude', '*[13579].*']);
          await mb(['forget', '--keep-last', '1']);
        }
        await step('prune', ['prune']);
      } catch (err) {
        rows.push({ dataset: ds.name, limit, op: 'backup', ok: false, oomKills: 0, error: `setup failed: ${errText(err)}` });
      } finally {
        await fsp.rm(dir, { recursive: true, force: true });
      }
    }
  }
  const results: MemoryResults = {
    version: 1,
    startedAt,
    totalSeconds: (performance.now() - t0) / 1000,
    machine: { cpus: os.availableParallelism(), memGiB: os.totalmem() / 1024 ** 3, kernel: os.release(), node: process.versions.node, cgroup: cgroupVersion() },
    limitBytes: opts.limitBytes,
    datasets,
    rows,
  };
  await fsp.writeFile(path.join(opts.out, 'results.json'), JSON.stringify(results, null, 2) + '\n');
  await fsp.writeFile(path.join(opts.out, 'results.md'), renderMemory(results));
  return results;
}

/**
 * The differences between two trees by path, type, size, mode, symlink target and content: the
 * listing of each (GNU find) and a byte-by-byte comparison of every file (GNU diff -r): for a million
 * small files it takes a minute where hashing every file from Node took ten.
 */
export async function compareTrees(a: string, b: string): Promise<string[]> {
  // listings into files beside nothing else: a million lines would not fit a captured stdout
  const script = [
    // a directory's size is its file system's business, not the tree's
    'list() { (cd "$1" && find . -mindepth 1 \\( -type d -printf "%P\\t%y\\t%m\\n" \\) -o -printf "%P\\t%y\\t%m\\t%s\\t%l\\n" | LC_ALL=C sort) > "$2"; }',
    't=$(mktemp -d); trap \'rm -rf "$t"\' EXIT',
    'list "$1" "$t/a" & list "$2" "$t/b" & wait',
    'LC_ALL=C comm -3 "$t/a" "$t/b" | head -20 | cut -c1-200',
    'diff -rq --no-dereference "$1" "$2" | head -20 | cut -c1-300',
    'exit 0',
  ].join('\n');
  const r = await run(['bash', '-c', script, 'compare', a, b]);
  return r.stdout.split('\n').filter((l) => l.trim() !== '').map((l) => l.replace(/\t/g, ' '));
}

export function renderMemory(res: MemoryResults): string {
  const m = res.machine;
  const lim = `${fmtMiB(res.limitBytes)} MiB`;
  const L: string[] = [`# meshback inside a ${lim} memory limit`, ''];
  L.push(`${res.startedAt} · ${m.cpus} CPUs · ${m.memGiB.toFixed(1)} GiB RAM · Linux ${m.kernel} · node ${m.node} · cgroup v${m.cgroup ?? '?'} · total run time ${fmtDuration(res.totalSeconds)}`, '');
  for (const d of res.datasets) L.push(`- ${d.name}: \`${d.dir}\`, ${d.files.toLocaleString('en-US')} files, ${fmtMiB(d.bytes)} MiB`);
  L.push('', `| dataset | operation | no limit: wall s | peak RSS MiB | ${lim}: wall s | peak RSS MiB | cgroup peak MiB | OOM kills | limit meshback saw MiB | slowdown | result |`, '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const d of res.datasets) {
    for (const op of MEMORY_OPS) {
      const free = res.rows.find((r) => r.dataset === d.name && r.op === op && r.limit === 'unlimited');
      const lim2 = res.rows.find((r) => r.dataset === d.name && r.op === op && r.limit !== 'unlimited');
      if (free === undefined && lim2 === undefined) continue;
      const w = (r?: MemoryRow) => (r?.ok === true ? fmtS(r.wallSeconds!) : '—');
      const rss = (r?: MemoryRow) => (r?.ok === true ? fmtMiB(r.maxRssBytes!) : '—');
      const slow = free?.ok === true && lim2?.ok === true && free.wallSeconds! > 0 ? `${(lim2.wallSeconds! / free.wallSeconds!).toFixed(2)}x` : '—';
      const result = lim2 === undefined ? 'not run' : lim2.ok ? '**PASS**' : `**FAIL**: ${(lim2.error ?? '').replace(/\|/g, '\\|').slice(0, 160)}`;
      L.push(`| ${d.name} | ${op} | ${w(free)} | ${rss(free)} | ${w(lim2)} | ${rss(lim2)} | ${lim2?.cgroupPeakBytes !== undefined ? fmtMiB(lim2.cgroupPeakBytes) : '—'} | ${lim2?.oomKills ?? '—'} | ${lim2?.limitSeenBytes !== undefined ? fmtMiB(lim2.limitSeenBytes) : '—'} | ${slow} | ${result} |`);
    }
  }
  L.push(
    '',
    '- Each step under GNU time in its own memory cgroup (a hard limit, or none); meshback reads the limit from its cgroup as in a pod. Peak RSS is ru_maxrss (resident pages, including the mapped Node.js binary); the cgroup peak also counts page cache, which the kernel reclaims before it kills.',
    '- restore is valid only if the restored tree equals the dataset by path, type, size, mode, symlink target (GNU find) and content of every file (GNU diff -r), compared after the step, not timed.',
    '- prune runs after a second backup without the files whose names end in an odd digit and `forget --keep-last 1` (not timed), so that it repacks.',
  );
  return L.join('\n') + '\n';
}
