/**
 * advise: per policy of a policy file, the schedule its measured history calls for (the cheapest
 * that meets its RPO), the predicted backup window and storage growth, and its open anomaly
 * alerts (src/policy/advisor.ts, anomaly.ts; docs/advisor.md). The repositories are reached as
 * `meshback run` reaches them (policyAccess), read without a lock. `--ack SNAPSHOT` acknowledges
 * the alerts of that snapshot (STATE_DIR/anomalies.json): they no longer hold retention. Exit 0
 * (also with open alerts: they are in the output and in meshback_anomaly_open); 5 for an unknown
 * policy or an --ack that matches no open alert.
 */
import * as os from 'node:os';
import { NotFoundError, UsageError } from '../../errors/index.ts';
import { ackedOf, addAcks, adviceReport, loadPolicyFile, policyNamed, readAcks } from '../../policy/index.ts';
import type { AdviceReport, Policy } from '../../policy/index.ts';
import { fmtBytes } from '../../util/units.ts';
import type { Command } from '../command.ts';
import { str } from '../command.ts';
import type { Context } from '../context.ts';
import { EXIT } from '../exit.ts';
import { STATE_DIR_OPTION, policyAccess, stateDirOf } from './run.ts';

const dur = (s: number): string => (s >= 3600 ? `${(s / 3600).toFixed(s % 3600 === 0 ? 0 : 1)}h` : s >= 60 ? `${Math.round(s / 60)}m` : `${Math.round(s)}s`);

/** The advice report of `policies` as `meshback advise` and the server make it. */
export async function adviceFor(ctx: Context, policies: readonly Policy[], stateDir: string): Promise<AdviceReport> {
  const acks = await readAcks(stateDir);
  return adviceReport(
    policies,
    (p) => {
      const a = policyAccess(ctx, p, 0, () => undefined);
      return { repository: a.repository, open: () => a.open('none', `advise ${p.name}`, false) };
    },
    (name) => ackedOf(acks, name),
  );
}

export const adviseCommand: Command = {
  name: 'advise',
  summary: 'recommend each policy\'s schedule from its measured history, predict window and storage growth, show anomaly alerts',
  usage: 'meshback advise [POLICY] --config FILE [--ack SNAPSHOT] [--state-dir DIR] [--json]',
  options: {
    config: { type: 'string', argument: 'FILE', description: 'the policy file (YAML; see docs/design.md, "Policies")' },
    ack: { type: 'string', argument: 'SNAPSHOT', description: 'acknowledge the open anomaly alerts of SNAPSHOT (an id or its prefix): they stop holding retention (written to STATE_DIR/anomalies.json)' },
    'state-dir': STATE_DIR_OPTION,
  },
  async run(ctx, v, positionals) {
    const file = str(v['config']);
    if (file === undefined) throw new UsageError('advise needs the policy file: meshback advise [POLICY] --config FILE');
    if (positionals.length > 1) throw new UsageError(`advise takes at most one POLICY name, not ${positionals.length}: meshback advise [POLICY] --config FILE`);
    const pf = await loadPolicyFile(file);
    const policies = positionals.length === 1 ? [policyNamed(pf, positionals[0]!)] : [...pf.policies.values()];
    const stateDir = stateDirOf(v);
    let report = await adviceFor(ctx, policies, stateDir);
    const ack = str(v['ack']);
    if (ack !== undefined) {
      if (!/^[0-9a-f]{4,64}$/.test(ack)) throw new UsageError(`--ack ${JSON.stringify(ack)} is not a snapshot id: give the id (or its first 8 hex digits) an alert names`);
      const hits = report.policies.flatMap((p) => p.anomalies?.open ?? []).filter((a) => a.snapshot.startsWith(ack));
      const ids = new Set(hits.map((a) => `${a.policy} ${a.snapshot}`));
      if (ids.size === 0) throw new NotFoundError(`no open anomaly alert is about a snapshot ${ack}: meshback advise${positionals.length === 1 ? ` ${positionals[0]}` : ''} --config ${file} lists the open ones`);
      if (new Set(hits.map((a) => a.snapshot)).size > 1) throw new UsageError(`--ack ${ack} matches the alerts of several snapshots: give more of the id`);
      await addAcks(stateDir, [...ids].map((x) => ({ policy: x.split(' ')[0]!, snapshot: x.split(' ')[1]!, at: new Date().toISOString(), by: os.userInfo().username })));
      ctx.out.result(`acknowledged ${hits.length} alert(s) of snapshot ${hits[0]!.snapshot.slice(0, 8)} (policy ${hits[0]!.policy}): retention is no longer held for them`);
      report = await adviceFor(ctx, policies, stateDir);
    }
    printAdvice(ctx, report);
    ctx.out.jsonOut({ message_type: 'summary', ...report });
    return EXIT.OK;
  },
};

function printAdvice(ctx: Context, r: AdviceReport): void {
  for (const p of r.policies) {
    if (p.error !== undefined) {
      ctx.out.result(`policy ${p.policy}: the repository ${p.repository} could not be read: ${p.error.message}`);
      continue;
    }
    const a = p.advice!;
    ctx.out.result(`policy ${p.policy}: schedule ${a.currentSchedule ?? '(none)'}, rpo ${a.rpoSeconds !== undefined ? dur(a.rpoSeconds) : '(none)'}; measured ${a.backups} backup(s) over ${a.hours.toFixed(1)} h: ${fmtBytes(a.bytesAddedPerHour)}/h new, ${fmtBytes(a.bytesStoredPerHour)}/h stored${a.compressibility !== undefined ? ` (stored/new ${a.compressibility.toFixed(2)})` : ''}${a.busiestHourUtc !== undefined ? `, busiest hour ${String(a.busiestHourUtc).padStart(2, '0')}:00 UTC` : ''}`);
    if (a.candidates.length > 0) {
      ctx.out.result(`  ${'schedule'.padEnd(16)}${'worst loss'.padStart(11)}${'RPO'.padStart(5)}${'window'.padStart(9)}${'stored/day'.padStart(12)}${'stored/month'.padStart(14)}`);
      for (const c of a.candidates) {
        const mark = (c.schedule === a.recommended ? '*' : ' ') + (c.current ? '>' : ' ');
        ctx.out.result(`${mark}${c.schedule.padEnd(16)}${dur(c.worstLossSeconds).padStart(11)}${(c.rpoMet === undefined ? '-' : c.rpoMet ? 'ok' : 'no').padStart(5)}${dur(c.windowSeconds).padStart(9)}${fmtBytes(c.storedBytesPerDay).padStart(12)}${fmtBytes(c.storedBytesPerMonth).padStart(14)}`);
      }
    }
    ctx.out.result(`  ${a.recommended !== undefined ? `recommended: ${a.recommended} (* above; > is the current one): ${a.reason}` : a.reason}`);
    for (const al of p.anomalies?.open ?? []) ctx.out.result(`  ANOMALY ${al.severity} ${al.kind} in snapshot ${al.snapshot.slice(0, 8)} (${al.time}): ${al.message}`);
    if (p.anomalies?.holdBefore !== undefined) ctx.out.result(`  retention is held: no snapshot of ${p.anomalies.holdBefore} or older is forgotten until the alerts are acknowledged (meshback advise ${p.policy} --ack SNAPSHOT)`);
  }
}
