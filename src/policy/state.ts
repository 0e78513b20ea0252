/**
 * policy/state: the scheduler's small state file (`state.json` under the server's state
 * directory): per policy, the start, end and outcome of its last run. The scheduler reads it at
 * start to catch up a run missed during downtime (once), and writes it after every run start and
 * end, atomically (a temporary file in the same directory, then rename). A file that is damaged
 * or of another shape is reported (one line) and treated as empty: the state only decides
 * whether a catch-up run happens, never what is stored.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { errMessage, isErrno } from '../errors/index.ts';
import { isoDate, safeParse, v } from '../util/schema.ts';

export const PolicyStateSchema = v.strictObject({
  lastStart: v.optional(isoDate()),
  lastEnd: v.optional(isoDate()),
  outcome: v.optional(v.picklist(['running', 'ok', 'failed', 'interrupted'])),
  message: v.optional(v.string()),
  snapshotId: v.optional(v.string()),
});

export const SchedulerStateSchema = v.strictObject({
  version: v.literal(1),
  policies: v.record(v.string(), PolicyStateSchema),
});

export type PolicyState = v.InferOutput<typeof PolicyStateSchema>;
export type SchedulerState = v.InferOutput<typeof SchedulerStateSchema>;

export const emptyState = (): SchedulerState => ({ version: 1, policies: {} });

/** Reads the state file; a missing one is empty, a damaged one is empty and `warn` says why. */
export async function readState(file: string, warn: (message: string) => void): Promise<SchedulerState> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return emptyState();
    warn(`the scheduler state ${file} cannot be read (${errMessage(err)}): starting without it (a missed run is not caught up)`);
    return emptyState();
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    warn(`the scheduler state ${file} is damaged (${errMessage(err)}): starting without it (a missed run is not caught up); it is rewritten after the next run`);
    return emptyState();
  }
  const r = safeParse(SchedulerStateSchema, json);
  if (!r.success) {
    warn(`the scheduler state ${file} is not a state file of this version: starting without it (a missed run is not caught up); it is rewritten after the next run`);
    return emptyState();
  }
  return r.output;
}

let seq = 0;
/** Writes the state file atomically: a temporary file next to it, then rename. */
export async function writeState(file: string, state: SchedulerState): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${++seq}`;
  try {
    await fsp.writeFile(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}
