/**
 * bench/fault/report/results: reading a saved results.json back for `meshback bench report DIR`.
 * Checks the identity and version, then the whole file against its schema (BenchResultsSchema in
 * ../types.ts; docs/schemas/bench-results.json), so that a wrong file gets a one-line message naming
 * the field instead of a crash halfway through rendering.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { isErrno, NotFoundError, UsageError } from '../../../../src/errors/index.ts';
import { BenchResultsSchema, resultsProblem } from '../types.ts';
import { checked, parseJson } from '../../../../src/util/schema.ts';
import type { BenchResults } from '../types.ts';

/**
 * Parses and checks the text of a results file; `source` names it in messages. Throws UsageError
 * (not JSON, not a results file, another version, a malformed part: the first field that is wrong).
 */
export function parseResults(text: string, source = 'results.json'): BenchResults {
  const j = parseJson(text, (m) => new UsageError(`${source} ${m}: give the results.json that \`meshback bench run\` wrote`));
  const problem = resultsProblem(j);
  if (problem !== undefined) throw new UsageError(`${source} ${problem}`);
  return checked(BenchResultsSchema, j, (m) => new UsageError(`${source} is malformed: ${m}`));
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
