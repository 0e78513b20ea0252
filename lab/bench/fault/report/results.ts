/**
 * bench/fault/report/results: reading a saved results.json back for `meshback bench report DIR`.
 * Checks the identity and version (docs/bench-results-schema.md) and the shape the report relies
 * on, so that a wrong file gets a one-line message instead of a crash halfway through rendering.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { isErrno, NotFoundError, UsageError } from '../../../../src/errors/index.ts';
import { RESULTS_SCHEMA, RESULTS_VERSION } from '../types.ts';
import type { BenchResults } from '../types.ts';

const STATUSES = new Set(['ok', 'partial', 'failed', 'skipped']);

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/**
 * Parses and checks the text of a results file; `source` names it in messages. Throws UsageError
 * (not JSON, not a results file, another version, a malformed part).
 */
export function parseResults(text: string, source = 'results.json'): BenchResults {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${source} is not JSON (${(err instanceof Error ? err.message : String(err)).split('\n')[0]}): give the results.json that \`meshback bench run\` wrote`);
  }
  if (!isObject(j) || j['schema'] !== RESULTS_SCHEMA) {
    throw new UsageError(`${source} is not a meshback bench results file (its "schema" is ${isObject(j) ? JSON.stringify(j['schema']) ?? 'missing' : 'missing'}, not "${RESULTS_SCHEMA}")`);
  }
  if (j['version'] !== RESULTS_VERSION) {
    throw new UsageError(`${source} holds results version ${JSON.stringify(j['version'])}; this meshback reads version ${RESULTS_VERSION}: render it with the meshback version that wrote it`);
  }
  const bad = (what: string): never => {
    throw new UsageError(`${source} is malformed: ${what}; re-run \`meshback bench run\` or restore the file`);
  };
  for (const k of ['tools', 'scenarios', 'cells'] as const) if (!Array.isArray(j[k])) bad(`"${k}" is not a list`);
  for (const k of ['machine', 'options'] as const) if (!isObject(j[k])) bad(`"${k}" is not an object`);
  (j['cells'] as unknown[]).forEach((c, i) => {
    if (!isObject(c)) return bad(`cells[${i}] is not an object`);
    for (const k of ['tool', 'strategy', 'scenario'] as const) if (typeof c[k] !== 'string') bad(`cells[${i}].${k} is not a string`);
    if (!STATUSES.has(c['status'] as string)) bad(`cells[${i}].status is ${JSON.stringify(c['status'])}`);
    if (!Array.isArray(c['repeats'])) bad(`cells[${i}].repeats is not a list`);
    if (!isObject(c['summary'])) bad(`cells[${i}].summary is not an object`);
    (c['repeats'] as unknown[]).forEach((x, n) => {
      if (!isObject(x) || !Array.isArray(x['steps'])) bad(`cells[${i}].repeats[${n}] has no list of steps`);
    });
  });
  (j['tools'] as unknown[]).forEach((t, i) => {
    if (!isObject(t) || typeof t['name'] !== 'string') bad(`tools[${i}] has no name`);
  });
  (j['scenarios'] as unknown[]).forEach((s, i) => {
    if (!isObject(s) || typeof s['id'] !== 'string') bad(`scenarios[${i}] has no id`);
  });
  return j as unknown as BenchResults;
}

/**
 * Reads the results of a run: `where` is the run's output directory (holding results.json) or the
 * results file itself. Throws NotFoundError when there is none, UsageError when it is not valid.
 */
export async function readResults(where: string): Promise<BenchResults> {
  let file = where;
  try {
    if ((await fsp.stat(where)).isDirectory()) file = path.join(where, 'results.json');
    return parseResults(await fsp.readFile(file, 'utf8'), file);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) throw new NotFoundError(`no results at ${file}: give the --out directory of a \`meshback bench run\` (it holds results.json)`, { path: file });
    throw err;
  }
}
