/**
 * meshback against restic and kopia on one MinIO over loopback (issue 13):
 *   npm run bench:s3 -- [--size 2GiB] [--data DIR] [--seed 1] [--tools meshback,restic,kopia] [--work DIR] [--out DIR]
 *     [--env KEY=VALUE]... [--no-postgres]
 * Progress goes to stderr; the Markdown report to stdout; results.json and results.md to --out.
 * Exit 0: every step succeeded; 1: some step failed (recorded in the results); 2: bad command line.
 * The engine is lab/bench/s3.ts (dataset, measurement and tables shared with bench:peers).
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { S3_TOOLS, runS3Bench } from '../../lab/bench/s3.ts';
import { unknownTools } from '../../lab/bench/peers.ts';
import { sizeOf } from '../../src/util/units.ts';
import { ROOT } from '../../src/host/self.ts';
import { UsageError } from '../../src/errors/index.ts';

const USAGE = `usage: npm run bench:s3 -- [--size 2GiB] [--data DIR] [--seed 1] [--tools ${S3_TOOLS.join(',')}] [--work DIR] [--out DIR]
    [--env KEY=VALUE]... [--no-postgres]`;

function usage(msg: string): never {
  process.stderr.write(`bench:s3: ${msg}\n`);
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      data: { type: 'string' },
      size: { type: 'string', default: '2GiB' },
      seed: { type: 'string', default: '1' },
      tools: { type: 'string', default: S3_TOOLS.join(',') },
      work: { type: 'string', default: path.join(ROOT, 'bench-results/work-s3') },
      out: { type: 'string' },
      env: { type: 'string', multiple: true, default: [] },
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
const tools = [...new Set(v.tools.split(',').map((x) => x.trim()).filter((x) => x !== ''))];
if (tools.length === 0) usage('--tools is empty');
const unknown = unknownTools(tools);
if (unknown.length > 0) usage(`unknown tool ${unknown.map((t) => JSON.stringify(t)).join(', ')}: choose from ${S3_TOOLS.join(',')}`);
const size = sizeOf(v.size);
if (size === undefined || size <= 0) usage(`--size ${JSON.stringify(v.size)} is not a size: use e.g. 200MiB or 2GiB`);
const seed = Number(v.seed);
if (!Number.isInteger(seed)) usage(`--seed must be an integer, not ${JSON.stringify(v.seed)}`);
const extraEnv: Record<string, string> = {};
for (const kv of v.env) {
  const i = kv.indexOf('=');
  if (i <= 0) usage(`--env takes KEY=VALUE, not ${JSON.stringify(kv)}`);
  extraEnv[kv.slice(0, i)] = kv.slice(i + 1);
}
const stamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
const out = path.resolve(v.out ?? path.join(ROOT, `bench-results/s3-${stamp}`));

try {
  const res = await runS3Bench({
    tools,
    ...(v.data !== undefined ? { data: v.data } : {}),
    sizeText: v.size,
    size,
    seed,
    postgres: !v['no-postgres'],
    work: v.work,
    out,
    env: extraEnv,
    events: (e) => {
      if (e.type === 'note' || e.type === 'warning') process.stderr.write(`bench:s3: ${e.message}\n`);
    },
  });
  process.stdout.write(readFileSync(path.join(out, 'results.md'), 'utf8'));
  process.stderr.write(`bench:s3: total ${res.totalSeconds.toFixed(1)} s; results in ${path.join(out, 'results.json')} and ${path.join(out, 'results.md')}\n`);
  process.exitCode = res.rows.every((r) => r.ok) ? 0 : 1;
} catch (err) {
  process.stderr.write(`bench:s3: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = err instanceof UsageError ? 2 : 1;
}
