/**
 * layers: the folder graph of src/ and lab/ (who imports whom, by relative import), checked for
 * cycles and for folders without a level; run by `npm run lint` beside eslint's per-import layer
 * rule (eslint.config.js). `--graph` prints the folders by level with what each imports.
 *   bin/node scripts/layers.ts [--graph]
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
// @ts-expect-error: eslint.config.js is plain JavaScript without types
import { LAYERS, folderOf } from '../eslint.config.js';

const root = path.resolve(import.meta.dirname, '..');
const levels = LAYERS as Record<string, number>;
const folderOfRel = folderOf as (rel: string) => string | undefined;
const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g;

const edges = new Map<string, Map<string, string>>(); // from -> to -> an example file
const problems: string[] = [];

function walk(dir: string): void {
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (name.endsWith('.ts')) scan(p);
  }
}

function scan(file: string): void {
  const from = folderOfRel(path.relative(root, file))!;
  if (levels[from] === undefined) problems.push(`folder ${from} has no level (${path.relative(root, file)}): add it to LAYERS in eslint.config.js`);
  if (!edges.has(from)) edges.set(from, new Map());
  for (const m of readFileSync(file, 'utf8').matchAll(IMPORT)) {
    const spec = m[1] ?? m[2]!;
    const to = folderOfRel(path.relative(root, path.resolve(path.dirname(file), spec)));
    if (to !== undefined && to !== from && !edges.get(from)!.has(to)) edges.get(from)!.set(to, path.relative(root, file));
  }
}

for (const t of ['src', 'lab']) walk(path.join(root, t));

// cycles: depth-first search, reporting each cycle once by its path
const state = new Map<string, 'open' | 'done'>();
const stack: string[] = [];
const cycles = new Set<string>();
function dfs(n: string): void {
  state.set(n, 'open');
  stack.push(n);
  for (const to of edges.get(n)?.keys() ?? []) {
    if (state.get(to) === 'open') {
      const cyc = [...stack.slice(stack.indexOf(to)), to];
      cycles.add(cyc.map((f, i) => (i < cyc.length - 1 ? `${f} (${edges.get(f)!.get(cyc[i + 1]!)})` : f)).join(' -> '));
    } else if (state.get(to) === undefined) dfs(to);
  }
  stack.pop();
  state.set(n, 'done');
}
for (const n of [...edges.keys()].sort()) if (state.get(n) === undefined) dfs(n);
for (const c of cycles) problems.push(`folder cycle: ${c}`);

if (process.argv.includes('--graph')) {
  const byLevel = [...edges.keys()].sort((a, b) => (levels[a] ?? 99) - (levels[b] ?? 99) || a.localeCompare(b));
  for (const f of byLevel) process.stdout.write(`${String(levels[f] ?? '?').padStart(2)}  ${f.padEnd(18)} -> ${[...edges.get(f)!.keys()].sort().join(', ') || '(nothing)'}\n`);
}
for (const p of problems) process.stderr.write(`layers: ${p}\n`);
process.exitCode = problems.length > 0 ? 1 : 0;
