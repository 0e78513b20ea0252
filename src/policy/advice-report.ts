/**
 * policy/advice-report: the advice and open anomalies of policies, read from their repositories
 * (each repository listed once, without a lock): what `meshback advise` prints and the server's
 * GET /v1/advice and GET /v1/anomalies answer (policy/advice-schema.ts).
 */
import { MeshbackError, errMessage } from '../errors/index.ts';
import type { SnapshotRef } from '../snapshot/manifest.ts';
import { advise } from './advisor.ts';
import type { AdviseOptions } from './advisor.ts';
import type { AdviceReport, AnomaliesReport, PolicyAdvice } from './advice-schema.ts';
import { checkAnomalies } from './anomaly.ts';
import { historyOf } from './history.ts';
import type { Policy } from './load.ts';
import type { OpenedRepository } from './run.ts';

export interface AdviceAccess {
  repository: string;
  open(): Promise<OpenedRepository>;
}

/** Advice and open anomalies of each of `policies`; a repository that cannot be read is an `error` of its policies. */
export async function adviceReport(policies: readonly Policy[], access: (p: Policy) => AdviceAccess, acknowledged: (policy: string) => ReadonlySet<string>, o: AdviseOptions = {}, now = new Date()): Promise<AdviceReport> {
  const byRepo = new Map<string, { a: AdviceAccess; snaps?: SnapshotRef[]; error?: { code: string; message: string } }>();
  const out: PolicyAdvice[] = [];
  for (const p of policies) {
    const a = access(p);
    let e = byRepo.get(a.repository);
    if (e === undefined) {
      e = { a };
      byRepo.set(a.repository, e);
      try {
        const r = await a.open();
        try {
          e.snaps = await r.repo.listSnapshots();
        } finally {
          await r.close();
        }
      } catch (err) {
        e.error = err instanceof MeshbackError ? { code: err.code, message: err.message } : { code: 'INTERNAL', message: errMessage(err) };
      }
    }
    if (e.snaps === undefined) {
      out.push({ policy: p.name, repository: a.repository, error: e.error! });
      continue;
    }
    const c = checkAnomalies(e.snaps, p.name, acknowledged(p.name));
    out.push({ policy: p.name, repository: a.repository, advice: advise(p, historyOf(e.snaps, p.name), o), anomalies: { open: c.open, ...(c.holdBefore !== undefined ? { holdBefore: c.holdBefore } : {}) } });
  }
  return { generated: now.toISOString(), policies: out };
}

/** The open anomalies of an advice report. */
export function anomaliesOf(r: AdviceReport): AnomaliesReport {
  return {
    generated: r.generated,
    open: r.policies.flatMap((p) => p.anomalies?.open ?? []).sort((a, b) => Date.parse(a.time) - Date.parse(b.time)),
    policies: r.policies.map((p) => ({ policy: p.policy, open: p.anomalies?.open.length ?? 0, ...(p.anomalies?.holdBefore !== undefined ? { holdBefore: p.anomalies.holdBefore } : {}), ...(p.error !== undefined ? { error: p.error } : {}) })),
  };
}
