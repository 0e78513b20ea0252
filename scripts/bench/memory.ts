/**
 * meshback's backup, restore, check --read-data, copy and prune inside a memory cgroup (issue 17):
 *   npm run bench:memory -- [--data DIR] [--size 2GiB] [--seed 1] [--small 1000000|none] [--limit 256MiB]
 *     [--work DIR] [--out DIR] [--no-postgres]
 * Each step runs with no limit and inside the limit; meshback finds the limit in its cgroup.
 * Progress goes to stderr; the Markdown report to stdout; results.json and results.md to --out.
 * Exit 0: every step succeeded; 1: some step failed (recorded in the results); 2: bad command line.
 * Needs root and a memory cgroup controller (v1 or v2). The engine is lab/bench/memory.ts.
 */
import { readFileSync } from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { runMemoryBench } from '../../lab/bench/memory.ts';
import { dataScriptProvider, prepareDataset } from '../../lab/bench/peers.ts';
import { sizeOf } from '../../src/util/units.ts';
import { ROOT } from '../../src/host/self.ts';

const USAGE = `usage: npm run bench:memory -- [--data DIR] [--size 2GiB] [--seed 1] [--small 1000000|none] [--limit 256MiB]
    [--work DIR] [--out DIR] [--no-postgres]`;

function usage(msg: string): never {
  process.stderr.write(`bench:memory: ${msg}\n`);
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      data: { type: 'string' },
      size: { type: 'string', default: '2GiB' },
      seed: { type: 'string', default: '1' },
      small: { type: 'string', default: '1000000' },
      limit: { type: 'string', default: '256MiB' },
      work: { type: 'string', default: path.join(ROOT, 'bench-results/work') },
      out: { type: 'string' },
      'no-postgres': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: false,
    strict: true,
  });
} catch (err) {
  usage(`${(err instanceof Error ? err.message : String(err)).split('\n')[0]}; see --help`);
}
const v = parsed.values;
if (v.help) {
  process.stdout.write(USAGE + '\n');
  process.exit(0);
}
const size = sizeOf(v.size);
if (size === undefined || size <= 0) usage(`--size ${JSON.stringify(v.size)} is not a size: use e.g. 512MiB or 2GiB`);
const limit = sizeOf(v.limit);
if (limit === undefined || limit < 64 * 1024 * 1024) usage(`--limit ${JSON.stringify(v.limit)} is not a size of at least 64MiB: use e.g. 256MiB`);
const seed = Number(v.seed);
if (!Number.isInteger(seed)) usage(`--seed must be an integer, not ${JSON.stringify(v.seed)}`);
const small = v.small === 'none' ? 0 : Number(v.small);
if (!Number.isInteger(small) || small < 0) usage(`--small must be a number of files or none, not ${JSON.stringify(v.small)}`);
const stamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
const out = path.resolve(v.out ?? path.join(ROOT, `bench-results/memory-${stamp}`));
const work = path.resolve(v.work);
const note = (m: string) => process.stderr.write(`bench:memory: ${m}\n`);

try {
  const data = dataScriptProvider();
  const { dir } = await prepareDataset({ ...(v.data !== undefined ? { data: v.data } : {}), sizeText: v.size, size, seed, postgres: !v['no-postgres'] }, data, work, note);
  const datasets = [{ name: path.basename(dir) === 'data' ? `dataset ${v.size}` : path.basename(dir), dir }];
  if (small > 0) {
    // the same tree bench:peers' small-files mode makes and reuses (WORK/small-N, marked by WORK/small-N.json)
    const sdir = path.join(work, `small-${small}`);
    const marker = JSON.parse(await fsp.readFile(`${sdir}.json`, 'utf8').catch(() => '{}')) as { files?: number; seed?: number };
    if (marker.files !== small || marker.seed !== seed) {
      note(`generating ${small} small files in ${sdir} ...`);
      await fsp.rm(sdir, { recursive: true, force: true });
      await data.small(sdir, small, seed);
      await fsp.writeFile(`${sdir}.json`, JSON.stringify({ files: small, seed, generator: data.name }) + '\n');
    }
    datasets.push({ name: `${small.toLocaleString('en-US')} small files`, dir: sdir });
  }
  const res = await runMemoryBench({ datasets, limitBytes: limit, work: path.join(work, 'memory-runs'), out, events: (e) => e.type === 'note' && note(e.message) });
  process.stdout.write(readFileSync(path.join(out, 'results.md'), 'utf8'));
  note(`results in ${path.join(out, 'results.json')} and ${path.join(out, 'results.md')}`);
  process.exitCode = res.rows.every((r) => r.ok) ? 0 : 1;
} catch (err) {
  note(err instanceof Error ? err.message : String(err));
  process.exitCode = 1;
}
