/**
 * Round trip of a generated mesh-like volume through the real CLI, with measurements:
 *   bin/node scripts/roundtrip.ts [--size 1GiB] [--seed 1] [--dir DIR]
 * Generates the volume, backs it up, backs it up again with no change, restores it (default
 * verification), restores again with --verify, compares bytes and metadata, runs
 * check --read-data, and prints wall time, CPU time and peak RSS of each step.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { parseSize } from '../src/util/units.ts';
import { compareTrees } from '../lab/gen/compare.ts';
import { generateMeshVolume } from '../lab/gen/gen.ts';

const { values } = parseArgs({ options: { size: { type: 'string', default: '1GiB' }, seed: { type: 'string', default: '1' }, dir: { type: 'string', default: '/tmp/meshback-roundtrip' } } });
const size = parseSize(values.size!, '--size');
const dir = path.resolve(values.dir!);
const vol = path.join(dir, `volume-${values.size}-${values.seed}`);
const repo = path.join(dir, 'repo');
const dst = path.join(dir, 'restored');
const bin = path.resolve(import.meta.dirname, '../bin/meshback');
const env = { ...process.env, MESHBACK_REPO: repo, MESHBACK_PASSWORD: 'roundtrip' };

interface Res { wallSeconds: number; cpuSeconds: number; maxRssBytes: number }
const rows: [string, Res, string][] = [];
function run(label: string, args: string[]): Record<string, unknown> {
  const t0 = performance.now();
  const r = spawnSync(bin, [...args, '--json'], { env, encoding: 'utf8', maxBuffer: 1 << 30 });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${label}: exit ${r.status}\n${r.stderr}\n${r.stdout.slice(-3000)}`);
  const s = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).reverse().find((j) => j['message_type'] === 'summary') ?? {};
  const res = s['resources'] as Res;
  rows.push([label, { ...res, wallSeconds: wall }, '']);
  return s;
}

await fsp.mkdir(dir, { recursive: true });
if (!existsSync(vol)) {
  console.log(`generating ${values.size} volume at ${vol} ...`);
  const st = await generateMeshVolume(vol, { size, seed: Number(values.seed) });
  console.log(`  ${st.files} files, ${st.dirs} dirs, ${st.bytes} bytes`);
}
await fsp.rm(repo, { recursive: true, force: true });
await fsp.rm(dst, { recursive: true, force: true });
spawnSync('sync');
spawnSync(bin, ['init'], { env, stdio: 'inherit' });
const b1 = run('first backup', ['backup', vol]);
const b2 = run('backup, no change', ['backup', vol]);
const s1 = b1['summary'] as Record<string, number>;
const s2 = b2['summary'] as Record<string, number>;
rows[0]![2] = `${s1['files']} files, ${(s1['bytesRead']! / 2 ** 20).toFixed(0)} MiB read, ${(s1['bytesStored']! / 2 ** 20).toFixed(0)} MiB stored`;
rows[1]![2] = `${s2['filesRead']} files read, ${s2['bytesRead']} bytes read`;
const r1 = run('restore (default verification)', ['restore', 'latest', '--target', dst]);
rows[2]![2] = `${r1['filesVerified']} files verified`;
const diffs = await compareTrees(vol, dst, { owner: true, mtime: true, dirMtime: true });
await fsp.rm(dst, { recursive: true, force: true });
const r2 = run('restore --verify', ['restore', 'latest', '--target', dst, '--verify']);
rows[3]![2] = `${r2['filesReread']} files re-read and compared`;
const c = run('check --read-data', ['check', '--read-data']);
rows[4]![2] = c['ok'] === true ? 'no errors' : 'ERRORS';

console.log(`\nround trip of ${values.size} (seed ${values.seed}), node ${process.versions.node}, ${(await import('node:os')).availableParallelism()} cores`);
console.log('| step | wall s | CPU s | peak RSS MiB | notes |');
console.log('|---|---:|---:|---:|---|');
for (const [l, r, n] of rows) console.log(`| ${l} | ${r.wallSeconds.toFixed(2)} | ${r.cpuSeconds.toFixed(2)} | ${(r.maxRssBytes / 2 ** 20).toFixed(0)} | ${n} |`);
console.log(`\nrestored tree vs source (bytes, modes, owners, mtimes incl. dirs): ${diffs.length === 0 ? 'identical' : `${diffs.length} differences:\n` + diffs.slice(0, 20).join('\n')}`);
process.exitCode = diffs.length === 0 && c['ok'] === true && s2['filesRead'] === 0 ? 0 : 1;
