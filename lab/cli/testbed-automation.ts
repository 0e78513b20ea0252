/**
 * meshback testbed automation: `meshback server` on the testbed's orders (postgres preset) and
 * sessions (redis preset) under load, with drills, a SIGKILL and restart, a trigger and /metrics
 * (lab/testbed/automation.ts) from the command line: its options and its record.
 */
import type { AutomationResult, Testbed } from '../testbed/index.ts';
import { str } from '../../src/cli/command.ts';
import type { Context } from '../../src/cli/context.ts';
import { EXIT } from '../../src/cli/exit.ts';

export const AUTOMATION_OPTIONS = {
  every: { type: 'string', argument: 'DURATION', description: 'automation: the backup schedule of both policies (default 1m)' },
  'drill-every': { type: 'string', argument: 'DURATION', description: 'automation: the restore-drill schedule (default 3m)' },
  'kill-after': { type: 'string', argument: 'DURATION', description: 'automation: SIGKILL the server after this (default 40% of --duration)' },
  down: { type: 'string', argument: 'DURATION', description: 'automation: how long the killed server stays down (default 2.5 x --every)' },
} as const;

const f1 = (x: number): string => x.toFixed(1);

function printAutomation(ctx: Context, r: AutomationResult): void {
  const o = ctx.out;
  o.result(`meshback server, backups every ${r.every}, drills every ${r.drillEvery}, ${r.durationSeconds / 60} min of server time (+${r.downSeconds} s down after a SIGKILL), under load${r.load !== undefined ? ` (${r.load.acknowledged} writes acknowledged, ${r.load.writesFailed} failed)` : ''}`);
  o.result('policy    backups  ok  failed  catch-ups  mean s  drills  ok  drill s          max gap s (serving / with the outage)  RPO s  age at end s');
  for (const p of r.policies) {
    o.result(`${p.policy.padEnd(8)}  ${String(p.backups).padStart(7)}  ${String(p.backupsOk).padStart(2)}  ${String(p.backupsFailed).padStart(6)}  ${String(p.catchUps).padStart(9)}  ${f1(p.meanBackupSeconds).padStart(6)}  ${String(p.drills).padStart(6)}  ${String(p.drillsOk).padStart(2)}  ${p.drillSeconds.map(f1).join(', ').padEnd(15)}  ${`${f1(p.maxGapServingSeconds)} / ${f1(p.maxGapSeconds)}`.padStart(37)}  ${String(p.rpoTargetSeconds).padStart(5)}  ${f1(p.finalAgeSeconds).padStart(12)}`);
  }
  o.result(`trigger --wait: exit ${r.trigger.exitCode}, snapshot ${r.trigger.snapshotId ?? '-'}${r.trigger.tagged ? ' (tagged with the deploy)' : ''} in ${f1(r.trigger.seconds)} s${r.trigger.message !== undefined ? `: ${r.trigger.message}` : ''}`);
  o.result(`catch-up runs at the restart: ${Object.entries(r.catchUp).map(([k, n]) => `${k} ${n}`).join(', ')}`);
  o.result('/metrics at the end:');
  for (const [k, val] of Object.entries(r.metrics)) o.result(`  ${k} ${val}`);
  o.result('runs:');
  for (const x of r.runs) o.result(`  ${x.startedAt ?? '-'} ${x.policy.padEnd(8)} ${x.kind.padEnd(6)} ${x.reason.padEnd(9)} ${x.status.padEnd(9)} ${x.durationSeconds !== undefined ? `${f1(x.durationSeconds)} s` : ''}${x.snapshotId !== undefined ? ` ${x.snapshotId.slice(0, 8)}` : ''}${x.error !== undefined ? ` ${x.error.code}: ${x.error.message}` : ''}`);
  for (const [k, ok] of Object.entries(r.checks)) o.result(`${ok ? 'ok    ' : 'FAILED'} ${k}`);
}

export async function automation(ctx: Context, tb: Testbed, v: Record<string, unknown>, num: (v: unknown, flag: string, dflt: number) => number): Promise<number> {
  const r = await tb.automation({
    ...(str(v['every']) !== undefined ? { every: str(v['every'])! } : {}),
    ...(str(v['drill-every']) !== undefined ? { drillEvery: str(v['drill-every'])! } : {}),
    ...(str(v['duration']) !== undefined ? { duration: str(v['duration'])! } : {}),
    ...(str(v['kill-after']) !== undefined ? { killAfter: str(v['kill-after'])! } : {}),
    ...(str(v['down']) !== undefined ? { down: str(v['down'])! } : {}),
    rate: num(v['rate'], '--rate', 50),
    onProgress: (line) => ctx.out.info(`${new Date().toISOString()} ${line}`),
  });
  if (ctx.out.json) ctx.out.jsonOut({ message_type: 'summary', ...r });
  else printAutomation(ctx, r);
  return Object.values(r.checks).every(Boolean) ? EXIT.OK : EXIT.INTEGRITY;
}
