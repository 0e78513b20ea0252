/**
 * policy/acks: the anomalies people have acknowledged, in STATE_DIR/anomalies.json (the state
 * directory of `meshback run` and `meshback server`: --state-dir, else $XDG_STATE_HOME/meshback,
 * else ~/.local/state/meshback). An alert stays open, and holds its policy's retention, until
 * its snapshot is in this file: `meshback advise POLICY --ack SNAPSHOT` adds it (or edit the
 * file: the format is docs/schemas/anomaly-acks.json). Written atomically (temporary file, then
 * rename); a missing file is no acknowledgement.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UsageError, errMessage, isErrno } from '../errors/index.ts';
import { safeParse, v } from '../util/schema.ts';

export const AnomalyAcksSchema = v.pipe(
  v.strictObject({
    version: v.literal(1),
    acknowledged: v.array(
      v.strictObject({
        policy: v.pipe(v.string(), v.description('the policy of the alert')),
        snapshot: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/, 'must be a full snapshot id (64 hex digits)'), v.description('the snapshot the alert is about: every alert on it is acknowledged')),
        at: v.pipe(v.string(), v.description('when it was acknowledged (ISO 8601)')),
        by: v.optional(v.pipe(v.string(), v.description('who acknowledged it (the user name)'))),
      }),
    ),
  }),
  v.metadata({ title: 'meshback acknowledged anomalies', description: 'STATE_DIR/anomalies.json: the snapshots whose anomaly alerts were acknowledged (docs/advisor.md, "Acknowledging").' }),
);
export type AnomalyAcks = v.InferOutput<typeof AnomalyAcksSchema>;

export const acksFile = (stateDir: string): string => path.join(stateDir, 'anomalies.json');

/** The acknowledged snapshots of `stateDir` (an empty list when the file is missing); a damaged file is a UsageError. */
export async function readAcks(stateDir: string): Promise<AnomalyAcks> {
  const file = acksFile(stateDir);
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return { version: 1, acknowledged: [] };
    throw new UsageError(`${file} cannot be read (${errMessage(err)}): check its permissions`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new UsageError(`${file} is not JSON: fix it or remove it (open anomalies are then open again)`);
  }
  const r = safeParse(AnomalyAcksSchema, data);
  if (!r.success) throw new UsageError(`${file} is not an acknowledgement file (docs/schemas/anomaly-acks.json): fix it or remove it`);
  return r.output;
}

/** readAcks for a run: a file that cannot be read is a warning (every alert stays open: retention stays held), not a failed backup. */
export async function readAcksForRun(stateDir: string, warn: (message: string) => void): Promise<AnomalyAcks> {
  try {
    return await readAcks(stateDir);
  } catch (err) {
    warn(`${errMessage(err)}; until then every anomaly alert counts as open`);
    return { version: 1, acknowledged: [] };
  }
}

/** The acknowledged snapshot ids of `policy` (all policies when undefined). */
export function ackedOf(acks: AnomalyAcks, policy?: string): Set<string> {
  return new Set(acks.acknowledged.filter((a) => policy === undefined || a.policy === policy).map((a) => a.snapshot));
}

/** Adds acknowledgements (atomically). */
export async function addAcks(stateDir: string, entries: AnomalyAcks['acknowledged']): Promise<void> {
  const cur = await readAcks(stateDir);
  for (const e of entries) if (!cur.acknowledged.some((a) => a.policy === e.policy && a.snapshot === e.snapshot)) cur.acknowledged.push(e);
  await fsp.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const file = acksFile(stateDir);
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    await fsp.writeFile(tmp, JSON.stringify(cur, null, 2) + '\n', { mode: 0o600 });
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}
