/**
 * meshback against restic, borg, tar+zstd, rsync and cp -a on the same data, in one run:
 *   npm run bench:peers -- [--data DIR] [--size 2GiB] [--seed 1] [--tools meshback,restic,borg,tar,rsync,cp]
 *     [--repeat 3] [--work DIR] [--out DIR] [--small 250000,500000,1000000|none] [--small-tools meshback,restic]
 *     [--repeat-small 1] [--env KEY=VALUE]... [--no-install] [--no-postgres]
 * Progress goes to stderr; the Markdown report to stdout; results.json and results.md to --out.
 * Exit 0: every step succeeded; 1: some step failed (recorded in the results); 2: bad command line.
 * The engine is lab/bench/peers.ts.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_TOOLS, runPeers, unknownTools } from '../../lab/bench/peers.ts';
import { sizeOf } from '../../src/util/units.ts';
import { ROOT } from '../../src/host/self.ts';
import { UsageError } from '../../src/errors/index.ts';

const USAGE = `usage: npm run bench:peers -- [--data DIR] [--size 2GiB] [--seed 1] [--tools ${DEFAULT_TOOLS.join(',')}]
    [--repeat 3] [--work DIR] [--out DIR] [--small 250000,500000,1000000|none] [--small-tools meshback,restic]
    [--repeat-small 1] [--env KEY=VALUE]... [--no-install] [--no-postgres]`;

function usage(msg: string): never {
  process.stderr.write(`bench:peers: ${msg}\n`);
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      data: { type: 'string' },
      size: { type: 'string', default: '2GiB' },
      seed: { type: 'string', default: '1' },
      tools: { type: 'string', default: DEFAULT_TOOLS.join(',') },
      repeat: { type: 'string', default: '3' },
      work: { type: 'string', default: path.join(ROOT, 'bench-results/work') },
      out: { type: 'string' },
      small: { type: 'string', default: '250000,500000,1000000' },
      'small-tools': { type: 'string', default: 'meshback,restic' },
      'repeat-small': { type: 'string', default: '1' },
      env: { type: 'string', multiple: true, default: [] },
      'no-install': { type: 'boolean', default: false },
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

const list = (s: string) => s.split(',').map((x) => x.trim()).filter((x) => x !== '');
const posInt = (name: string, s: string): number => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) usage(`--${name} must be a positive integer, not ${JSON.stringify(s)}`);
  return n;
};
const tools = list(v.tools);
const smallTools = list(v['small-tools']);
if (tools.length === 0) usage('--tools is empty');
const unknown = unknownTools([...tools, ...smallTools]);
if (unknown.length > 0) usage(`unknown tool ${unknown.map((t) => JSON.stringify(t)).join(', ')}: choose from ${DEFAULT_TOOLS.join(',')}`);
const size = sizeOf(v.size);
if (size === undefined || size <= 0) usage(`--size ${JSON.stringify(v.size)} is not a size: use e.g. 512MiB or 2GiB`);
const seed = Number(v.seed);
if (!Number.isInteger(seed)) usage(`--seed must be an integer, not ${JSON.stringify(v.seed)}`);
const small = v.small === 'none' || v.small === '' ? [] : list(v.small).map((s) => posInt('small', s));
const extraEnv: Record<string, string> = {};
for (const kv of v.env) {
  const i = kv.indexOf('=');
  if (i <= 0) usage(`--env takes KEY=VALUE, not ${JSON.stringify(kv)}`);
  extraEnv[kv.slice(0, i)] = kv.slice(i + 1);
}
const stamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
const out = path.resolve(v.out ?? path.join(ROOT, `bench-results/peers-${stamp}`));

try {
  const res = await runPeers({
    tools: [...new Set(tools)],
    ...(v.data !== undefined ? { data: v.data } : {}),
    sizeText: v.size,
    size,
    seed,
    postgres: !v['no-postgres'],
    repeat: posInt('repeat', v.repeat),
    work: v.work,
    out,
    small,
    smallTools: [...new Set(smallTools)],
    repeatSmall: posInt('repeat-small', v['repeat-small']),
    env: extraEnv,
    install: !v['no-install'],
    events: (e) => {
      if (e.type === 'note' || e.type === 'warning') process.stderr.write(`bench:peers: ${e.message}\n`);
    },
  });
  process.stdout.write(readFileSync(path.join(out, 'results.md'), 'utf8'));
  process.stderr.write(`bench:peers: total ${res.totalSeconds.toFixed(1)} s; results in ${path.join(out, 'results.json')} and ${path.join(out, 'results.md')}\n`);
  process.exitCode = res.rows.every((r) => r.ok) ? 0 : 1;
} catch (err) {
  process.stderr.write(`bench:peers: ${err instanceof Error ? err.message : String(err)}\n`);
  // a wrong input (a malformed dataset.json of --data) is a usage error, as a bad flag is
  process.exitCode = err instanceof UsageError ? 2 : 1;
}
