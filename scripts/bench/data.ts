/**
 * Benchmark datasets (npm run bench:data -- ...). See lab/gen/bench-data.ts.
 *
 *   bin/node scripts/bench/data.ts generate --size 2GiB --seed 1 --out DIR [--no-postgres] [--json]
 *   bin/node scripts/bench/data.ts mutate --percent 2 --seed 2 DIR [--json]
 *   bin/node scripts/bench/data.ts small --files 1000000 --seed 1 --out DIR [--workers N] [--json]
 *
 * Prints one summary line on stdout (or one JSON object with --json); progress goes to stderr.
 * Exit codes: 0 ok, 1 failure, 2 usage error (including a non-empty --out).
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseSize } from '../../src/util/units.ts';
import { UsageError } from '../../src/errors/index.ts';
import { generateDataset, generateSmallFiles, mutateDataset } from '../../lab/gen/bench-data.ts';

const USAGE = `usage:
  bin/node scripts/bench/data.ts generate --size SIZE --seed N --out DIR [--no-postgres] [--json]
      DIR/mesh (≈80% of SIZE, 100% with --no-postgres), DIR/postgres (a stopped PostgreSQL
      cluster filled by pgbench -i, ≈20%), DIR/dataset.json. DIR must be empty or absent.
  bin/node scripts/bench/data.ts mutate --percent P --seed N DIR [--json]
      change about P% of the bytes of a generated dataset, deterministically (no server started)
  bin/node scripts/bench/data.ts small --files N --seed N --out DIR [--workers N] [--json]
      N files of 50-200 bytes in DIR/pNNN/sNN/ (100 files per folder)
SIZE: e.g. 24MiB, 2GiB, 1.5G (binary units; KB/MB/GB are decimal).
Everything is deterministic for a seed except the PostgreSQL cluster's bytes.`;

const { values: v, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        size: { type: 'string' },
        seed: { type: 'string' },
        out: { type: 'string' },
        percent: { type: 'string' },
        files: { type: 'string' },
        workers: { type: 'string' },
        'no-postgres': { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    console.error(`bench:data: ${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
})();

const log = (line: string) => process.stderr.write(`bench:data: ${line}\n`);
const int = (name: string, s: string | undefined, dflt?: number): number => {
  if (s === undefined) {
    if (dflt === undefined) throw new UsageError(`--${name} is required`);
    return dflt;
  }
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new UsageError(`--${name} must be an integer, got ${JSON.stringify(s)}`);
  return n;
};
const need = (name: string, s: string | undefined): string => {
  if (s === undefined || s === '') throw new UsageError(`--${name} is required`);
  return s;
};
const print = (line: string, obj: object) => console.log(v.json ? JSON.stringify(obj) : line);

async function main(): Promise<void> {
  const [cmd, ...rest] = positionals;
  if (v.help || cmd === 'help') {
    console.log(USAGE);
    return;
  }
  if (cmd === 'generate') {
    if (rest.length) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])}`);
    const out = path.resolve(need('out', v.out));
    const size = parseSize(need('size', v.size), '--size');
    const info = await generateDataset(out, { size, seed: int('seed', v.seed, 1), postgres: !v['no-postgres'], log });
    const pg = info.postgres ? `, postgres scale ${info.postgres.scale}: ${info.postgres.files} files, ${info.postgres.bytes} bytes` : ', no postgres';
    print(`generated ${out}: ${info.files} files, ${info.bytes} bytes (mesh ${info.mesh.files} files, ${info.mesh.bytes} bytes${pg}) in ${info.seconds.toFixed(1)} s`, { out, ...info });
  } else if (cmd === 'mutate') {
    if (rest.length !== 1) throw new UsageError('mutate takes exactly one DIR');
    const dir = path.resolve(rest[0] as string);
    const percent = Number(need('percent', v.percent));
    if (!Number.isFinite(percent)) throw new UsageError('--percent must be a number');
    const r = await mutateDataset(dir, { percent, seed: int('seed', v.seed) });
    const m = r.mesh;
    const pg = r.postgres
      ? `; postgres ${r.postgres.changedBytes} bytes: ${r.postgres.pagesOverwritten} pages overwritten, ${r.postgres.pagesAppended} appended, ${r.postgres.walBytes} WAL bytes, ${r.postgres.walSegmentsCreated} new WAL segments`
      : '';
    print(
      `mutated ${dir}: changed ${r.changedBytes} of ${r.totalBytes} bytes (${((100 * r.changedBytes) / Math.max(1, r.totalBytes)).toFixed(2)}%; mesh ${m.changedBytes} bytes: ${m.modified} modified, ${m.added} added, ${m.deleted} deleted${pg}) in ${r.seconds.toFixed(1)} s`,
      { dir, ...r },
    );
  } else if (cmd === 'small') {
    if (rest.length) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])}`);
    const out = path.resolve(need('out', v.out));
    const files = int('files', v.files, 1_000_000);
    const workers = v.workers === undefined ? undefined : int('workers', v.workers);
    const s = await generateSmallFiles(out, { files, seed: int('seed', v.seed, 1), ...(workers ? { workers } : {}) });
    print(`generated ${out}: ${s.files} files, ${s.dirs} dirs, ${s.bytes} bytes in ${s.seconds.toFixed(1)} s`, { out, ...s });
  } else {
    throw new UsageError(cmd === undefined ? 'missing command' : `unknown command ${JSON.stringify(cmd)}`);
  }
}

try {
  await main();
} catch (err) {
  const usage = err instanceof UsageError;
  console.error(`bench:data: ${(err as Error).message}${usage && /command|argument|required/.test((err as Error).message) ? `\n${USAGE}` : ''}`);
  process.exit(usage ? 2 : 1);
}
