/**
 * meshback testbed up|down|status|load|fault|verify|consistency: the service-mesh testbed of
 * lab/testbed/ from the command line. Every subcommand finds the testbed by --dir (default
 * ./meshback-testbed), so each can run from another process than the one that made it.
 */
import * as path from 'node:path';
import { UsageError } from '../../src/errors/index.ts';
import { CONSISTENCY_METHODS, FAULT_KINDS, MAX_SERVICES, openTestbed, startTestbed, stopTestbed } from '../testbed/index.ts';
import type { ConsistencyMethod, ConsistencyResult, FaultKind, StatusReport, VerifyReport } from '../testbed/index.ts';
import type { Command } from '../../src/cli/command.ts';
import { bool, str, strs } from '../../src/cli/command.ts';
import type { Context } from '../../src/cli/context.ts';
import { fmtBytes, parseDuration, parseSize } from '../../src/util/units.ts';
import { EXIT } from '../../src/cli/exit.ts';
import type { MeshEvent } from '../../src/events/index.ts';
import { REDIS_CONSISTENCY_OPTION, consistencyRedis } from './testbed-redis.ts';
import { AUTOMATION_OPTIONS, automation } from './testbed-automation.ts';

const SUBCOMMANDS = ['up', 'down', 'status', 'load', 'fault', 'verify', 'consistency', 'consistency-redis', 'automation'] as const;

function num(v: unknown, flag: string, dflt: number): number {
  const s = str(v);
  if (s === undefined) return dflt;
  const n = Number(s);
  if (s.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${flag} ${JSON.stringify(s)} is not a number`);
  return n;
}

function int(v: unknown, flag: string, dflt: number): number {
  const n = num(v, flag, dflt);
  if (!Number.isInteger(n)) throw new UsageError(`${flag} must be a whole number`);
  return n;
}

/** Seconds: a bare number, or a duration such as 30s, 2m. */
function seconds(v: unknown, flag: string, dflt: number): number {
  const s = str(v);
  return s === undefined ? dflt : parseDuration(s, flag) / 1000;
}

/** A moment: ISO 8601, or milliseconds since the epoch. */
function moment(v: unknown, flag: string): number | undefined {
  const s = str(v);
  if (s === undefined) return undefined;
  const t = /^\d+$/.test(s) ? Number(s) : Date.parse(s);
  if (!Number.isFinite(t)) throw new UsageError(`${flag} ${JSON.stringify(s)} is not a time: give ISO 8601 (2026-11-22T10:00:00Z) or milliseconds since the epoch`);
  return t;
}

const fmtS = (x: number | null): string => (x === null ? 'n/a' : `${x.toFixed(2)} s`);

function printStatus(ctx: Context, s: StatusReport): void {
  const o = ctx.out;
  o.result(`testbed ${s.dir}: ${s.up ? 'up' : s.stoppedAt !== null ? `down (stopped ${s.stoppedAt})` : 'partly down'}, ${s.volumeKind} volumes, made ${s.createdAt}`);
  o.result(`  supervisor: ${s.supervisor.running ? `running (pid ${s.supervisor.pid})` : 'not running'}; PostgreSQL ${s.postgres.version} on 127.0.0.1:${s.postgres.port}; Redis on 127.0.0.1:${s.redis.port}`);
  for (const svc of s.services) o.result(`  service ${svc.name.padEnd(10)} ${svc.store.padEnd(8)} sidecar 127.0.0.1:${svc.sidecarPort} -> app 127.0.0.1:${svc.appPort}  ${svc.healthy ? 'healthy' : `NOT HEALTHY: ${svc.message}`}`);
  for (const c of s.components) o.result(`  ${c.running ? 'running' : 'stopped'}  ${c.running ? `${c.name.padEnd(20)} pid ${c.pid} since ${c.startedAt}` : c.name}`);
  for (const v of s.volumes) {
    const state = v.destroyed ? 'THROWN AWAY' : !v.present ? 'MISSING' : `${v.freeBytes !== null ? fmtBytes(v.freeBytes) : '?'} free`;
    o.result(`  volume ${v.name.padEnd(10)} ${v.kind.padEnd(5)} ${v.path}${v.adopted ? ' (restored)' : ''}  ${state}`);
  }
  o.result(`  journal: ${s.journal.writes} acknowledged write(s)${s.journal.last !== null ? `, last at ${s.journal.last}` : ''}`);
  for (const f of s.faults) o.result(`  fault ${f.kind} at ${new Date(f.t).toISOString()}: ${f.targets.join(', ')}`);
}

function printVerify(ctx: Context, r: VerifyReport): void {
  const o = ctx.out;
  for (const c of r.checks) o.result(`  ${c.ok ? 'ok  ' : 'FAIL'}  ${c.name.padEnd(12)} ${c.target.padEnd(16)} ${c.message}`);
  for (const s of r.services) {
    const before = s.lostBeforeBackup !== null ? `, ${s.lostBeforeBackup} of them acknowledged before the backup` : '';
    const after = s.afterFault.acknowledged > 0 ? `; ${s.afterFault.acknowledged} after the fault, ${s.afterFault.lost} of those lost` : '';
    o.result(`  writes ${s.service.padEnd(10)} (${s.store}): ${s.acknowledged} acknowledged, ${s.lost} lost${s.changed > 0 ? ` (${s.changed} with another value)` : ''}${before}${after}; last surviving ${s.lastSurviving ?? 'none'}; RPO ${fmtS(s.rpoSeconds)}`);
  }
  const lb = r.lostBeforeBackup !== null ? ` (${r.lostBeforeBackup} acknowledged before the backup at ${r.backupTime})` : '';
  o.result(`writes: ${r.writesAcknowledged} acknowledged up to the fault, ${r.writesLost} lost${lb}`);
  o.result(`RPO: ${r.writesLost} write(s), ${fmtS(r.rpoSeconds)}; RTO: ${fmtS(r.rtoSeconds)}${r.faultTime !== null ? ` (from the ${r.faultKind ?? ''} fault at ${r.faultTime})` : ' (no fault recorded)'}`);
  o.result(r.ok ? `verify: OK, the services are healthy${r.lostBeforeBackup !== null ? ' and nothing acknowledged before the backup was lost' : ' and no acknowledged write was lost'}` : `verify: FAILED: ${!r.healthy ? `${r.checks.filter((c) => !c.ok).length} check(s) failed` : ''}${!r.healthy && r.writesLost > 0 ? '; ' : ''}${r.writesLost > 0 ? `${r.lostBeforeBackup ?? r.writesLost} acknowledged write(s) lost that had to survive` : ''}`);
}

function printConsistency(ctx: Context, r: ConsistencyResult): void {
  const o = ctx.out;
  o.result(`PostgreSQL ${r.pgVersion}, ${r.volumeKind} volume${r.ballastMiB > 0 ? `, ${r.ballastMiB} MiB of ballast` : ''}${r.fullBackups ? ', every backup a full one' : ''}, ${r.rate} order writes/s during each backup${r.checkpointsDuringBackup ? ', a CHECKPOINT every 200 ms while the backup reads' : ''}`);
  o.result('method                   trials  starts  amcheck passes  nothing lost');
  for (const s of r.summary) {
    if (s.skipped !== undefined) o.result(`${s.method.padEnd(24)} skipped: ${s.skipped}`);
    else o.result(`${s.method.padEnd(24)} ${String(s.trials).padStart(6)}  ${String(s.started).padStart(6)}  ${String(s.amcheckPassed).padStart(14)}  ${String(s.lossless).padStart(12)}`);
  }
  for (const t of r.trials.filter((x) => !x.good)) o.result(`  ${t.method} #${t.trial}: ${t.started ? `amcheck ${t.amcheck}: ${t.amcheckMessage}; ${t.rowsLost} of ${t.rowsExpected} orders lost` : t.startMessage}`);
}

export const testbedCommand: Command = {
  name: 'testbed',
  summary: 'a service-mesh testbed on 127.0.0.1 (nginx sidecars, PostgreSQL, Redis): load, faults, application-level verification',
  usage: [
    'meshback testbed up [--dir DIR] [--services N] [--volumes dir|btrfs] [--volume-size SIZE] [--ttl DURATION] [--fresh] [--no-install]',
    '       meshback testbed down [--dir DIR] [--purge]',
    '       meshback testbed status [--dir DIR]',
    '       meshback testbed load [--dir DIR] --rate R --duration S [--service NAME]... [--read-fraction F] [--concurrency N]',
    '       meshback testbed fault container-crash|node-outage|corrupt|disk-full [--dir DIR] [--service NAME]... [--seed N] [--release]',
    '       meshback testbed verify [--dir DIR] [--volumes DIR] [--volume NAME=PATH]... [--backup-time TIME] [--fault-time TIME] [--timeout DURATION]',
    '       meshback testbed consistency [--dir DIR] [--trials N] [--method NAME]... [--rate R] [--no-checkpoints] [--ballast SIZE] [--full]',
    '       meshback testbed consistency-redis [--dir DIR] [--trials N] [--method plain|bgsave|aof-rewrite]... [--rate R] [--no-frequent-rewrites] [--ballast SIZE]',
    '       meshback testbed automation [--dir DIR] [--every 1m] [--drill-every 3m] [--duration 10m] [--kill-after D] [--down D] [--rate R]',
  ].join('\n'),
  options: {
    dir: { type: 'string', argument: 'DIR', description: 'the testbed directory (default ./meshback-testbed)' },
    services: { type: 'string', argument: 'N', description: `up: microservices, 1 to ${MAX_SERVICES} (default 2: orders on PostgreSQL, sessions on Redis)` },
    volumes: { type: 'string', argument: 'KIND|DIR', description: 'up: dir (default) or btrfs (loop-mounted, needs root); verify: a directory of restored volumes, one subdirectory per volume name' },
    'volume-size': { type: 'string', argument: 'SIZE', description: 'up: size of each btrfs image (default 512MiB, sparse)' },
    ttl: { type: 'string', argument: 'DURATION', description: 'up: the testbed stops by itself after this (default 12h)' },
    fresh: { type: 'boolean', description: 'up: delete a stopped testbed in DIR and make a new one (default: start it again on its volumes)' },
    'no-install': { type: 'boolean', description: 'up: do not apt-get install missing packages (nginx, redis-server, postgresql, btrfs-progs) when root' },
    purge: { type: 'boolean', description: 'down: also delete the testbed directory' },
    rate: { type: 'string', argument: 'R', description: 'load: requests per second (all services together); consistency: order writes per second (default 200)' },
    duration: { type: 'string', argument: 'S', description: 'load: how long, in seconds or as a duration (30s, 2m); automation: the server time in all (default 10m)' },
    service: { type: 'string', multiple: true, argument: 'NAME', description: 'load: only this service; fault: the container (service, postgres or redis) or volume to hit (repeatable)' },
    'read-fraction': { type: 'string', argument: 'F', description: 'load: fraction of requests that read (default 0.2)' },
    concurrency: { type: 'string', argument: 'N', description: 'load: requests in flight at most (default 64)' },
    seed: { type: 'string', argument: 'N', description: 'fault corrupt: seed of the damage (default 1)' },
    release: { type: 'boolean', description: 'fault disk-full: give the space back (delete the filler of the last disk-full fault on that volume)' },
    volume: { type: 'string', multiple: true, argument: 'NAME=PATH', description: 'verify: one restored volume (repeatable)' },
    'backup-time': { type: 'string', argument: 'TIME', description: 'verify: when the backup restored was taken (ISO 8601 or ms since the epoch): writes acknowledged before it must survive' },
    'fault-time': { type: 'string', argument: 'TIME', description: 'verify: count RPO and RTO from this moment (default: the last fault recorded)' },
    timeout: { type: 'string', argument: 'DURATION', description: 'verify: how long each component may take to start and the services to answer (default 60s)' },
    trials: { type: 'string', argument: 'N', description: 'consistency: backups per method (default 3)' },
    method: { type: 'string', multiple: true, argument: 'NAME', description: `consistency: only this method (${CONSISTENCY_METHODS.join(', ')}); consistency-redis: plain, bgsave or aof-rewrite` },
    'no-checkpoints': { type: 'boolean', description: 'consistency: no CHECKPOINTs while the backup reads' },
    full: { type: 'boolean', description: 'consistency: a fresh repository per trial, so that every backup reads the whole volume' },
    ballast: { type: 'string', argument: 'SIZE', description: 'consistency: first add an unlogged table of SIZE to the database, so that each backup reads longer (default 0); consistency-redis: first write SIZE of 1 KiB keys' },
    ...REDIS_CONSISTENCY_OPTION,
    ...AUTOMATION_OPTIONS,
  },
  async run(ctx, v, positionals) {
    const sub = positionals[0];
    if (sub === undefined || !(SUBCOMMANDS as readonly string[]).includes(sub)) {
      throw new UsageError(`testbed needs a subcommand: ${SUBCOMMANDS.join(', ')} (see 'meshback testbed --help')`);
    }
    const dir = path.resolve(str(v['dir']) ?? 'meshback-testbed');
    const events = (e: MeshEvent): void => {
      if (e.type === 'note') ctx.out.info(`testbed: ${e.message}`);
    };
    const extra = positionals.slice(sub === 'fault' ? 2 : 1);
    if (extra.length > 0) throw new UsageError(`testbed ${sub}: unexpected argument ${JSON.stringify(extra[0])}`);

    switch (sub) {
      case 'up': {
        const kind = str(v['volumes']) ?? 'dir';
        if (kind !== 'dir' && kind !== 'btrfs') throw new UsageError(`--volumes ${JSON.stringify(kind)}: give dir or btrfs`);
        const tb = await startTestbed({
          dir,
          services: int(v['services'], '--services', 2),
          volumes: kind,
          volumeSizeBytes: parseSize(str(v['volume-size']) ?? '512MiB', '--volume-size'),
          ttlSeconds: seconds(v['ttl'], '--ttl', 12 * 3600),
          fresh: bool(v['fresh']),
          install: !bool(v['no-install']),
          events,
        });
        const s = await tb.status();
        if (ctx.out.json) ctx.out.jsonOut({ message_type: 'summary', ...s });
        else printStatus(ctx, s);
        return s.up ? EXIT.OK : EXIT.FATAL;
      }
      case 'down': {
        const r = await stopTestbed(dir, { purge: bool(v['purge']) });
        for (const p of r.problems) ctx.out.warn(p);
        ctx.out.result(`testbed ${dir}: stopped ${r.stopped.length > 0 ? r.stopped.join(', ') : 'nothing (nothing was running)'}${r.unmounted.length > 0 ? `; unmounted ${r.unmounted.length} volume(s)` : ''}${r.purged ? '; directory deleted' : ''}`);
        ctx.out.jsonOut({ message_type: 'summary', dir, ...r });
        return r.problems.length > 0 ? EXIT.FATAL : EXIT.OK;
      }
      case 'status': {
        const s = await (await openTestbed(dir)).status();
        if (ctx.out.json) ctx.out.jsonOut(s);
        else printStatus(ctx, s);
        return EXIT.OK;
      }
      case 'load': {
        if (str(v['rate']) === undefined || str(v['duration']) === undefined) throw new UsageError('testbed load needs --rate R and --duration S');
        const tb = await openTestbed(dir);
        const r = await tb.load({
          rate: num(v['rate'], '--rate', 0),
          durationSeconds: seconds(v['duration'], '--duration', 0),
          services: strs(v['service']),
          readFraction: num(v['read-fraction'], '--read-fraction', 0.2),
          concurrency: int(v['concurrency'], '--concurrency', 64),
          onProgress: (p) => ctx.out.info(`load: ${p.seconds.toFixed(0)} s, ${p.sent} sent, ${p.acknowledged} writes acknowledged, ${p.failed} failed`),
        });
        ctx.out.result(`load: ${r.sent} requests in ${r.seconds.toFixed(1)} s: ${r.acknowledged} writes acknowledged and journaled, ${r.writesFailed} writes failed, ${r.readsOk}/${r.reads} reads ok${r.skipped > 0 ? `, ${r.skipped} skipped (${int(v['concurrency'], '--concurrency', 64)} in flight)` : ''}; latency p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms`);
        for (const [name, s] of Object.entries(r.perService)) ctx.out.info(`  ${name}: ${s.acknowledged}/${s.writes} writes acknowledged, ${s.readsOk}/${s.reads} reads ok`);
        for (const e of r.errors) ctx.out.result(`  ${e.count} x ${e.message}`);
        ctx.out.jsonOut({ message_type: 'summary', ...r });
        return EXIT.OK;
      }
      case 'fault': {
        const kind = positionals[1];
        if (kind === undefined || !(FAULT_KINDS as readonly string[]).includes(kind)) throw new UsageError(`testbed fault needs a kind: ${FAULT_KINDS.join(', ')}`);
        const tb = await openTestbed(dir);
        const targets = strs(v['service']);
        if (bool(v['release'])) {
          if (kind !== 'disk-full') throw new UsageError('--release applies to fault disk-full only');
          const faults = (await tb.status()).faults.filter((f) => f.kind === 'disk-full' && f.filler !== undefined && (targets.length === 0 || targets.includes(f.targets[0]!)));
          const last = faults[faults.length - 1];
          if (last === undefined) throw new UsageError('no disk-full fault to release');
          await tb.releaseDiskFull(last);
          ctx.out.result(`released the disk-full fault on ${last.targets[0]}: deleted ${last.filler}`);
          ctx.out.jsonOut({ message_type: 'summary', released: last });
          return EXIT.OK;
        }
        const r = await tb.fault(kind as FaultKind, { targets, seed: int(v['seed'], '--seed', 1) });
        ctx.out.result(`fault ${r.kind} at ${new Date(r.t).toISOString()}`);
        for (const d of r.details) ctx.out.result(`  ${d}`);
        ctx.out.jsonOut({ message_type: 'summary', ...r, time: new Date(r.t).toISOString() });
        return EXIT.OK;
      }
      case 'verify': {
        const tb = await openTestbed(dir);
        const volumes: Record<string, string> = {};
        const vdir = str(v['volumes']);
        if (vdir !== undefined) Object.assign(volumes, tb.volumesIn(vdir));
        for (const kv of strs(v['volume'])) {
          const m = /^([^=]+)=(.+)$/.exec(kv);
          if (m === null) throw new UsageError(`--volume ${JSON.stringify(kv)} is not NAME=PATH`);
          volumes[m[1]!] = path.resolve(m[2]!);
        }
        const backupTime = moment(v['backup-time'], '--backup-time');
        const faultTime = moment(v['fault-time'], '--fault-time');
        const r = await tb.verify({
          ...(Object.keys(volumes).length > 0 ? { volumes } : {}),
          ...(backupTime !== undefined ? { backupTime } : {}),
          ...(faultTime !== undefined ? { faultTime } : {}),
          timeoutSeconds: seconds(v['timeout'], '--timeout', 60),
          events,
        });
        if (ctx.out.json) ctx.out.jsonOut({ message_type: 'summary', ...r });
        else printVerify(ctx, r);
        return r.ok ? EXIT.OK : EXIT.INTEGRITY;
      }
      case 'consistency': {
        const tb = await openTestbed(dir);
        const methods = strs(v['method']);
        for (const m of methods) if (!(CONSISTENCY_METHODS as readonly string[]).includes(m)) throw new UsageError(`--method ${JSON.stringify(m)}: give ${CONSISTENCY_METHODS.join(', ')}`);
        const r = await tb.consistency({
          trials: int(v['trials'], '--trials', 3),
          rate: num(v['rate'], '--rate', 200),
          checkpointsDuringBackup: !bool(v['no-checkpoints']),
          ballastMiB: parseSize(str(v['ballast']) ?? '0', '--ballast') / (1024 * 1024),
          fullBackups: bool(v['full']),
          ...(methods.length > 0 ? { methods: methods as ConsistencyMethod[] } : {}),
          events,
        });
        if (ctx.out.json) ctx.out.jsonOut({ message_type: 'summary', ...r });
        else printConsistency(ctx, r);
        return EXIT.OK;
      }
      case 'consistency-redis':
        return consistencyRedis(ctx, await openTestbed(dir), v, num, events);
      case 'automation':
        return automation(ctx, await openTestbed(dir), v, num);
    }
    return EXIT.USAGE;
  },
};
