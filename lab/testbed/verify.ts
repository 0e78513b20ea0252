/**
 * testbed/verify: recovery checked at application level.
 *
 * Given restored volumes (directories handed over by name: they replace the testbed's volumes of
 * those names) or none (in place, after a restart), verify starts every component that is not
 * running on the volumes and checks, each as a named check:
 *   nginx-config   `nginx -t` accepts the service's restored nginx.conf
 *   start          a component that was not running starts, one that runs but does not answer
 *                  is restarted (a liveness probe), and answers (PostgreSQL: SELECT 1; Redis: its
 *                  data loaded; app: /health; nginx: stub_status)
 *   traffic        a request through the sidecar (GET /health: nginx -> app -> store) succeeds
 *   stub-status    the sidecar's stub_status answers with its counters
 *   schema         each PostgreSQL-backed service's table exists
 *   amcheck        CREATE EXTENSION amcheck; bt_index_check(heapallindexed) on every index of
 *                  the table and verify_heapam on the table find nothing
 *   redis-data     Redis has loaded its data (loading:0, aof_enabled:1) and answers DBSIZE
 *   read-back      the store can be read for the comparison below
 * then compares the journal of acknowledged writes with what the stores hold: a write is lost
 * when its id is absent or holds another value (after a restore, PostgreSQL hands out again the
 * order ids of orders the restore lost). A healthy verification writes the writes it found lost
 * off (DIR/writeoffs.jsonl): they belong to its incident, and later verifications do not count
 * them again.
 *
 * Definitions (times are the journal's acknowledgement times and the fault's record):
 * - writes acknowledged: journal entries acknowledged up to the fault (all, without a fault);
 * - writes lost: those of them the recovered stores do not hold;
 * - lost before backup: those lost that were acknowledged before `backupTime` (a backup taken
 *   then must hold them: anything here is a failed backup or restore, not RPO);
 * - RPO in seconds, per service: 0 without loss, else the fault time minus the acknowledgement
 *   time of the service's last write that survived (the testbed's creation when none did); the
 *   report's figure is the largest over the services;
 * - RTO: from the fault to the moment every service has answered a request through its sidecar.
 */
import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { UsageError, errMessage } from '../../src/errors/index.ts';
import { components, ensureComponent, ensureSupervisor, nginxTest, pgData, running, stopComponent, volumeOf } from './components.ts';
import { httpRequest, waitFor } from './procs.ts';
import { appendLine, appendLines, paths, readFaults, readJournal, readWriteOffs, writeOffKey } from './state.ts';
import type { JournalEntry, Store, TestbedState, WriteOff } from './state.ts';
import { PgSession, redisCall, redisClose, redisConnect } from './stores.ts';
import type { RedisClient } from './stores.ts';
import { openVolume } from '../../src/volumes/index.ts';
import type { EventSink } from '../../src/events/index.ts';

export interface VerifyOptions {
  /** restored volumes by name (a service, 'postgres', 'redis'): absolute directories that replace the current ones */
  volumes?: Record<string, string>;
  /** ms since the epoch: writes acknowledged before it must all survive */
  backupTime?: number;
  /** ms since the epoch: the fault RPO and RTO count from (default: the last recorded fault) */
  faultTime?: number;
  /** how long each component may take to start, and the services to answer (default 60 s) */
  timeoutSeconds?: number;
  /** supervisor time to live when verify has to start one (default: the testbed's, from up --ttl) */
  ttlSeconds?: number;
  /** what verify does, as typed events (`note`, op testbed) */
  events?: EventSink;
}

export interface Check {
  name: 'nginx-config' | 'start' | 'traffic' | 'stub-status' | 'schema' | 'amcheck' | 'redis-data' | 'read-back' | 'volume';
  /** the component, service, volume or table checked */
  target: string;
  ok: boolean;
  message: string;
}

export interface ServiceWrites {
  service: string;
  store: Store;
  /** acknowledged up to the fault */
  acknowledged: number;
  present: number;
  lost: number;
  /** of the lost: present but with another value */
  changed: number;
  /** of the lost: acknowledged before backupTime (null without one) */
  lostBeforeBackup: number | null;
  /** acknowledged after the fault (load that went on), and of those lost */
  afterFault: { acknowledged: number; lost: number };
  /** ISO time of the last acknowledged write that survived (up to the fault) */
  lastSurviving: string | null;
  /** ISO time of the first lost write */
  firstLost: string | null;
  rpoSeconds: number | null;
  /** ISO time of the first successful request through the sidecar during this verification */
  firstSuccess: string | null;
}

export interface VerifyReport {
  /** every check passed */
  healthy: boolean;
  /** healthy, and no acknowledged write lost that had to survive (before backupTime, or any without one) */
  ok: boolean;
  checks: Check[];
  writesAcknowledged: number;
  writesLost: number;
  lostBeforeBackup: number | null;
  rpoSeconds: number | null;
  rtoSeconds: number | null;
  faultTime: string | null;
  faultKind: string | null;
  backupTime: string | null;
  verifiedAt: string;
  /** seconds this verification took */
  seconds: number;
  services: ServiceWrites[];
  /** volumes verified: name -> path */
  volumes: Record<string, string>;
}

/** A body or log excerpt as one line of at most 200 characters (HTML tags dropped). */
const oneLine = (text: string): string => text.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 200);

const iso = (t: number | undefined | null): string | null => (t === undefined || t === null ? null : new Date(t).toISOString());
const secs = (ms: number): number => Math.round(ms) / 1000;

/** Replaces volumes by restored directories (stopping what still runs on the old ones). */
async function adopt(s: TestbedState, restored: Record<string, string>, checks: Check[]): Promise<void> {
  for (const [name, dir] of Object.entries(restored)) {
    const v = s.volumes.find((x) => x.name === name);
    if (v === undefined) throw new UsageError(`no volume ${JSON.stringify(name)} in this testbed: the volumes are ${s.volumes.map((x) => x.name).join(', ')}`);
    const abs = path.resolve(dir);
    if (!existsSync(abs) || !statSync(abs).isDirectory()) throw new UsageError(`the restored volume ${abs} is not a directory`);
    for (const c of components(s).filter((x) => x.volume === name)) {
      if (running(s, c)) await stopComponent(s, c, 'kill');
    }
    if (v.kind === 'btrfs' && v.destroyed !== true) {
      const problem = await openVolume(v).detach();
      if (problem !== undefined) checks.push({ name: 'volume', target: name, ok: true, message: `the replaced btrfs volume: ${problem}` });
    }
    if (v.kind === 'btrfs') (s.retired ??= []).push({ ...v });
    Object.assign(v, { kind: 'dir', path: abs, adopted: true });
    delete v.image;
    delete v.mount;
    delete v.destroyed;
  }
}

async function pgChecks(s: TestbedState, checks: Check[]): Promise<Map<string, Map<string, string> | undefined>> {
  const held = new Map<string, Map<string, string> | undefined>();
  const tables = s.services.filter((x) => x.store === 'postgres');
  if (tables.length === 0) return held;
  let conn: PgSession;
  try {
    conn = await PgSession.connect(s.postgres.port, 5000);
  } catch (err) {
    for (const t of tables) {
      checks.push({ name: 'read-back', target: t.name, ok: false, message: `PostgreSQL is not reachable: ${errMessage(err)}` });
      held.set(t.name, undefined);
    }
    return held;
  }
  try {
    let amcheck = true;
    try {
      await conn.query('CREATE EXTENSION IF NOT EXISTS amcheck');
    } catch (err) {
      amcheck = false;
      for (const t of tables) checks.push({ name: 'amcheck', target: t.name, ok: false, message: `CREATE EXTENSION amcheck failed: ${errMessage(err)}` });
    }
    for (const t of tables) {
      const exists = await conn.query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [t.name]).then((r) => r.rows[0]?.exists === true, () => false);
      checks.push({ name: 'schema', target: t.name, ok: exists, message: exists ? `table ${t.name} exists` : `table ${t.name} is missing` });
      if (!exists) {
        held.set(t.name, undefined);
        continue;
      }
      if (amcheck) {
        const problems: string[] = [];
        let indexes: string[] = [];
        try {
          indexes = (await conn.query<{ relname: string }>('SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass ORDER BY 1', [t.name])).rows.map((r) => r.relname);
          for (const ix of indexes) {
            try {
              await conn.query('SELECT bt_index_check(index => $1::regclass, heapallindexed => true)', [ix], 120_000);
            } catch (err) {
              problems.push(`index ${ix}: ${errMessage(err)}`);
            }
          }
          const heap = await conn.query<{ blkno: string; offnum: number; msg: string }>('SELECT blkno, offnum, msg FROM verify_heapam($1::regclass) LIMIT 5', [t.name], 120_000);
          for (const { blkno, offnum, msg } of heap.rows) problems.push(`heap block ${blkno} item ${offnum}: ${msg}`);
        } catch (err) {
          problems.push(errMessage(err));
        }
        checks.push({
          name: 'amcheck',
          target: t.name,
          ok: problems.length === 0,
          message: problems.length === 0 ? `bt_index_check (heapallindexed) passed on ${indexes.length} index(es) (${indexes.join(', ')}); verify_heapam found nothing` : problems.slice(0, 3).join('; '),
        });
      }
      try {
        const r = await conn.query<{ id: string; value: string | null }>(`SELECT id, value FROM ${conn.client.escapeIdentifier(t.name)}`, undefined, 120_000);
        const m = new Map<string, string>();
        for (const { id, value } of r.rows) m.set(id, value ?? '');
        held.set(t.name, m);
        checks.push({ name: 'read-back', target: t.name, ok: true, message: `${m.size} row(s) read` });
      } catch (err) {
        held.set(t.name, undefined);
        checks.push({ name: 'read-back', target: t.name, ok: false, message: `cannot read table ${t.name}: ${errMessage(err)}` });
      }
    }
  } finally {
    await conn.close();
  }
  return held;
}

async function redisChecks(s: TestbedState, journal: JournalEntry[], checks: Check[]): Promise<Map<string, Map<string, string | null> | undefined>> {
  const held = new Map<string, Map<string, string | null> | undefined>();
  const svcs = s.services.filter((x) => x.store === 'redis');
  let conn: RedisClient;
  try {
    conn = await redisConnect(s.redis.port, 5000);
  } catch (err) {
    checks.push({ name: 'redis-data', target: 'redis', ok: false, message: `Redis is not reachable: ${errMessage(err)}` });
    for (const x of svcs) held.set(x.name, undefined);
    return held;
  }
  try {
    const info = await redisCall(conn, 'INFO persistence', 10_000, (r) => r.info('persistence'));
    const size = await redisCall(conn, 'DBSIZE', 10_000, (r) => r.dbSize());
    const loading = /\bloading:1\b/.test(info);
    const aof = /\baof_enabled:1\b/.test(info);
    const ok = !loading && aof;
    checks.push({ name: 'redis-data', target: 'redis', ok, message: ok ? `data loaded from the append-only file: DBSIZE ${size}` : `${loading ? 'still loading its data' : 'appendonly is off'} (DBSIZE ${size})` });
    for (const x of svcs) {
      const keys = journal.filter((e) => e.service === x.name).map((e) => e.id);
      const m = new Map<string, string | null>();
      try {
        for (let i = 0; i < keys.length; i += 500) {
          const batch = keys.slice(i, i + 500);
          const vals = await redisCall(conn, 'MGET', 30_000, (r) => r.mGet(batch));
          batch.forEach((k, j) => m.set(k, vals[j] ?? null));
        }
        held.set(x.name, m);
        checks.push({ name: 'read-back', target: x.name, ok: true, message: `${keys.length} key(s) looked up` });
      } catch (err) {
        held.set(x.name, undefined);
        checks.push({ name: 'read-back', target: x.name, ok: false, message: `cannot read the ${x.name} keys: ${errMessage(err)}` });
      }
    }
  } finally {
    redisClose(conn);
  }
  return held;
}

export async function verifyTestbed(s: TestbedState, o: VerifyOptions = {}): Promise<VerifyReport> {
  const t0 = Date.now();
  const log = (message: string): void => o.events?.({ type: 'note', op: 'testbed', message });
  const timeoutMs = (o.timeoutSeconds ?? 60) * 1000;
  const checks: Check[] = [];
  if (o.volumes !== undefined) await adopt(s, o.volumes, checks);

  const unusable = new Set<string>();
  for (const v of s.volumes) {
    if (v.destroyed === true) {
      unusable.add(v.name);
      checks.push({ name: 'volume', target: v.name, ok: false, message: `volume ${v.name} was thrown away by a node outage and no restored copy was given (--volumes DIR/${v.name})` });
      continue;
    }
    try {
      await openVolume(v).attach();
    } catch (err) {
      unusable.add(v.name);
      checks.push({ name: 'volume', target: v.name, ok: false, message: errMessage(err) });
    }
  }
  await ensureSupervisor(s, (o.ttlSeconds ?? s.ttlSeconds ?? 12 * 3600) * 1000);

  // nginx -t on each restored configuration before anything starts on it
  const badConfig = new Set<string>();
  for (const svc of s.services) {
    if (unusable.has(svc.name)) continue;
    const v = volumeOf(s, svc.name);
    if (!existsSync(path.join(v.path, 'nginx', 'nginx.conf'))) {
      badConfig.add(svc.name);
      checks.push({ name: 'nginx-config', target: svc.name, ok: false, message: `${path.join(v.path, 'nginx', 'nginx.conf')} is missing` });
      continue;
    }
    const t = await nginxTest(s.programs.nginx, v);
    if (!t.ok) badConfig.add(svc.name);
    checks.push({ name: 'nginx-config', target: svc.name, ok: t.ok, message: t.ok ? 'nginx -t accepts the configuration' : t.output });
  }

  // start what is not running; restart what runs but does not answer (as a liveness probe would)
  const failed = new Set<string>();
  for (const c of components(s)) {
    if (unusable.has(c.volume)) {
      failed.add(c.name);
      continue;
    }
    const isRunning = running(s, c);
    if (!isRunning && c.role === 'sidecar' && badConfig.has(c.container)) {
      failed.add(c.name);
      checks.push({ name: 'start', target: c.name, ok: false, message: 'not started: nginx -t rejects its configuration' });
      continue;
    }
    if (!isRunning && c.role === 'postgres' && !existsSync(path.join(pgData(volumeOf(s, 'postgres')), 'PG_VERSION'))) {
      failed.add(c.name);
      checks.push({ name: 'start', target: c.name, ok: false, message: `not started: ${pgData(volumeOf(s, 'postgres'))} holds no PostgreSQL cluster (PG_VERSION missing)` });
      continue;
    }
    if (!isRunning) log(`starting ${c.name}`);
    const ts = Date.now();
    try {
      const r = await ensureComponent(s, c, timeoutMs);
      if (r.action !== 'none') checks.push({ name: 'start', target: c.name, ok: true, message: `${r.action} (${r.why}); answering after ${secs(Date.now() - ts)} s` });
    } catch (err) {
      failed.add(c.name);
      checks.push({ name: 'start', target: c.name, ok: false, message: errMessage(err) });
    }
  }

  // traffic through every sidecar: the first success is the end of the outage
  const firstSuccess = new Map<string, number>();
  await Promise.all(
    s.services.map(async (svc) => {
      let last = '';
      // one attempt only when a component on the request's path did not start
      const onPath = [`${svc.name}-sidecar`, `${svc.name}-app`, svc.store];
      const deadline = onPath.some((n) => failed.has(n)) ? 0 : timeoutMs;
      const ok = await waitFor(
        async () => {
          try {
            const r = await httpRequest(svc.sidecarPort, 'GET', '/health', undefined, 3000);
            if (r.status === 200) return Date.now();
            last = `HTTP ${r.status}: ${oneLine(r.body)}`;
          } catch (err) {
            last = errMessage(err);
          }
          return undefined;
        },
        deadline,
        100,
      );
      if (ok !== undefined) firstSuccess.set(svc.name, ok);
      checks.push({ name: 'traffic', target: svc.name, ok: ok !== undefined, message: ok !== undefined ? `GET /health through the sidecar on 127.0.0.1:${svc.sidecarPort} succeeded` : `no successful request through the sidecar within ${Math.round(deadline / 1000)} s: ${last}` });
      if (ok !== undefined) {
        const st = await httpRequest(svc.sidecarPort, 'GET', '/nginx_status', undefined, 3000).catch((e: unknown) => ({ status: 0, body: errMessage(e) }));
        const m = /server accepts handled requests\s+(\d+)\s+(\d+)\s+(\d+)/.exec(st.body);
        checks.push({ name: 'stub-status', target: svc.name, ok: st.status === 200 && m !== null, message: m !== null ? `stub_status: ${m[3]} requests handled since start` : `stub_status answered ${st.status}: ${oneLine(st.body)}` });
      }
    }),
  );

  // the stores' own checks and the comparison with the journal (less the writes an earlier
  // incident lost: its verification reported them, and after a restore their ids may be reused)
  const writtenOff = new Set((await readWriteOffs(s.dir)).map(writeOffKey));
  const journal = (await readJournal(s.dir)).filter((e) => !writtenOff.has(writeOffKey(e)));
  const lostNow: JournalEntry[] = [];
  const faults = await readFaults(s.dir);
  const lastFault = faults[faults.length - 1];
  const faultTime = o.faultTime ?? lastFault?.t;
  const pgHeld = await pgChecks(s, checks);
  const redisHeld = s.services.some((x) => x.store === 'redis') ? await redisChecks(s, journal, checks) : new Map<string, Map<string, string | null> | undefined>();

  const services: ServiceWrites[] = [];
  for (const svc of s.services) {
    const entries = journal.filter((e) => e.service === svc.name);
    const held = svc.store === 'postgres' ? pgHeld.get(svc.name) : redisHeld.get(svc.name);
    let acknowledged = 0;
    let present = 0;
    let lost = 0;
    let changed = 0;
    let lostBeforeBackup = 0;
    const after = { acknowledged: 0, lost: 0 };
    let lastSurviving: number | undefined;
    let firstLost: number | undefined;
    for (const e of entries) {
      const v = held?.get(e.id);
      const survived = v !== undefined && v !== null && v === e.value;
      if (!survived) lostNow.push(e);
      if (faultTime !== undefined && e.t > faultTime) {
        after.acknowledged++;
        if (!survived) after.lost++;
        continue;
      }
      acknowledged++;
      if (survived) {
        present++;
        if (lastSurviving === undefined || e.t > lastSurviving) lastSurviving = e.t;
      } else {
        lost++;
        if (v !== undefined && v !== null) changed++;
        if (o.backupTime !== undefined && e.t < o.backupTime) lostBeforeBackup++;
        if (firstLost === undefined || e.t < firstLost) firstLost = e.t;
      }
    }
    let rpo: number | null = null;
    if (faultTime !== undefined) rpo = lost === 0 ? 0 : secs(faultTime - (lastSurviving ?? s.createdAt));
    const fs = firstSuccess.get(svc.name);
    services.push({
      service: svc.name,
      store: svc.store,
      acknowledged,
      present,
      lost,
      changed,
      lostBeforeBackup: o.backupTime !== undefined ? lostBeforeBackup : null,
      afterFault: after,
      lastSurviving: iso(lastSurviving),
      firstLost: iso(firstLost),
      rpoSeconds: rpo,
      firstSuccess: iso(fs),
    });
  }

  const healthy = checks.every((c) => c.ok);
  const writesLost = services.reduce((a, x) => a + x.lost, 0);
  const lostBeforeBackup = o.backupTime !== undefined ? services.reduce((a, x) => a + (x.lostBeforeBackup ?? 0), 0) : null;
  const rpos = services.map((x) => x.rpoSeconds).filter((x): x is number => x !== null);
  const allUp = s.services.every((x) => firstSuccess.has(x.name));
  const recovered = allUp ? Math.max(...s.services.map((x) => firstSuccess.get(x.name)!)) : undefined;
  const report: VerifyReport = {
    healthy,
    ok: healthy && (lostBeforeBackup !== null ? lostBeforeBackup === 0 : writesLost === 0),
    checks,
    writesAcknowledged: services.reduce((a, x) => a + x.acknowledged, 0),
    writesLost,
    lostBeforeBackup,
    rpoSeconds: rpos.length > 0 ? Math.max(...rpos) : null,
    rtoSeconds: faultTime !== undefined && recovered !== undefined ? secs(recovered - faultTime) : null,
    faultTime: iso(faultTime),
    faultKind: o.faultTime === undefined ? (lastFault?.kind ?? null) : null,
    backupTime: iso(o.backupTime),
    verifiedAt: new Date().toISOString(),
    seconds: secs(Date.now() - t0),
    services,
    volumes: Object.fromEntries(s.volumes.map((v) => [v.name, v.path])),
  };
  await appendLine(paths(s.dir).verify, report);
  if (healthy) {
    const offs: WriteOff[] = lostNow.map((e) => ({ service: e.service, id: e.id, value: e.value, t: e.t, verifiedAt: report.verifiedAt }));
    await appendLines(paths(s.dir).writeoffs, offs);
  }
  return report;
}
