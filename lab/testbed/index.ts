/**
 * testbed: a small service mesh on 127.0.0.1, made of real components, for application-level
 * recovery tests: N Node HTTP microservices, each behind its own nginx sidecar, writing orders to
 * PostgreSQL and sessions to Redis (appendonly), every container's state on its own volume (a
 * directory or a loop-mounted btrfs filesystem). Everything is started and stopped by meshback
 * (through a per-testbed supervisor process) and recorded in the testbed directory, so that any
 * process can drive it: `meshback testbed up|down|status|load|fault|verify`, or this API:
 *
 *   const tb = await startTestbed({ dir, services: 2, volumes: 'btrfs' });
 *   await tb.load({ rate: 50, durationSeconds: 5 });          // journals acknowledged writes
 *   for (const v of tb.volumes()) ... back v.path up ...       // v.snapshot() for a point in time
 *   await tb.fault('node-outage');                             // or container-crash, corrupt, disk-full
 *   ... restore each volume into RESTORED/<v.name> ...
 *   const r = await tb.verify({ volumes: { orders: ..., postgres: ... }, backupTime });
 *   r.healthy, r.writesLost, r.rpoSeconds, r.rtoSeconds
 *   await tb.stop();
 *
 * See docs/design.md, "Testbed".
 */
import { existsSync, promises as fsp, readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { MeshbackError, NotFoundError, UsageError, errMessage } from '../../src/errors/index.ts';
import {
  SERVICE_CATALOG, components, createSchema, ensureSupervisor, initPostgres, running, startComponent, stopComponent, stopSupervisor, supervisorAlive,
  volumeOf, writeNginxConf, writeRedisConf,
} from './components.ts';
import { consistencyExperiment } from './consistency.ts';
import { automationExperiment } from './automation.ts';
import type { AutomationOptions, AutomationResult } from './automation.ts';
import type { ConsistencyOptions, ConsistencyResult } from './consistency.ts';
import { redisConsistencyExperiment } from './consistency-redis.ts';
import type { RedisConsistencyOptions, RedisConsistencyResult } from './consistency-redis.ts';
import { ensurePrograms } from './deps.ts';
import { injectFault, releaseDiskFull } from './faults.ts';
import type { FaultOptions } from './faults.ts';
import { runLoad } from './load.ts';
import type { LoadOptions, LoadResult } from './load.ts';
import { freePort, httpRequest } from './procs.ts';
import { MARKER, STATE_VERSION, isTestbedDir, paths, readFaults, readJournal, readState, updateState, writeState } from './state.ts';
import type { FaultKind, FaultRecord, ServiceSpec, TestbedState, VolumeKind, VolumeRecord } from './state.ts';
import { verifyTestbed } from './verify.ts';
import type { VerifyOptions, VerifyReport } from './verify.ts';
import { createVolume, isMountPoint, openVolume } from '../../src/volumes/index.ts';
import type { Volume } from '../../src/volumes/index.ts';
import type { EventSink } from '../../src/events/index.ts';

export type { FaultKind, FaultRecord, JournalEntry, ServiceSpec, TestbedState, VolumeKind } from './state.ts';
export { FAULT_KINDS } from './state.ts';
export type { LoadOptions, LoadResult } from './load.ts';
export type { Check, ServiceWrites, VerifyOptions, VerifyReport } from './verify.ts';
export type { FaultOptions } from './faults.ts';
export { CONSISTENCY_METHODS } from './consistency.ts';
export type { AutomationOptions, AutomationPolicySummary, AutomationResult, AutomationRun } from './automation.ts';
export type { ConsistencyMethod, ConsistencyOptions, ConsistencyResult, ConsistencySummary, ConsistencyTrial } from './consistency.ts';
export { REDIS_CONSISTENCY_METHODS } from './consistency-redis.ts';
export type { RedisConsistencyMethod, RedisConsistencyOptions, RedisConsistencyResult, RedisConsistencySummary, RedisConsistencyTrial } from './consistency-redis.ts';

const MiB = 1024 * 1024;
export const MAX_SERVICES = SERVICE_CATALOG.length;

export interface StartOptions {
  dir: string;
  /** microservices (default 2: orders on PostgreSQL, sessions on Redis; at most 8) */
  services?: number;
  /** volume kind (default 'dir') */
  volumes?: VolumeKind;
  /** btrfs image size in bytes (default 512 MiB, sparse) */
  volumeSizeBytes?: number;
  /** apt-get install missing Debian packages when root (default true) */
  install?: boolean;
  /** the supervisor stops everything by itself after this (default 12 h) */
  ttlSeconds?: number;
  /** remove a stopped testbed in `dir` first instead of starting it again */
  fresh?: boolean;
  /** what the testbed does, as typed events (`note`, op testbed) */
  events?: EventSink;
}

/** A volume of the testbed, usable as the benchmark's Volume. */
export interface TestbedVolume extends Pick<Volume, 'kind' | 'path' | 'image' | 'free' | 'snapshot' | 'destroy'> {
  /** the container it belongs to: a service, 'postgres' or 'redis' */
  name: string;
  /** the same as name (for callers that think in services) */
  service: string;
  adopted: boolean;
  destroyed: boolean;
}

export interface ComponentStatus {
  name: string;
  role: string;
  container: string;
  volume: string;
  running: boolean;
  pid: number | null;
  startedAt: string | null;
}

export interface ServiceStatus {
  name: string;
  store: string;
  appPort: number;
  sidecarPort: number;
  /** a request through the sidecar (GET /health) succeeded just now */
  healthy: boolean;
  message: string;
}

export interface VolumeStatus {
  name: string;
  kind: VolumeKind;
  path: string;
  image?: string;
  present: boolean;
  freeBytes: number | null;
  adopted: boolean;
  destroyed: boolean;
}

export interface StatusReport {
  dir: string;
  /** every component runs */
  up: boolean;
  createdAt: string;
  stoppedAt: string | null;
  volumeKind: VolumeKind;
  supervisor: { running: boolean; pid: number | null };
  postgres: { port: number; version: number };
  redis: { port: number };
  services: ServiceStatus[];
  components: ComponentStatus[];
  volumes: VolumeStatus[];
  journal: { writes: number; last: string | null };
  faults: FaultRecord[];
}

export interface DownReport {
  stopped: string[];
  unmounted: string[];
  problems: string[];
  purged: boolean;
}

const iso = (t: number | undefined): string | null => (t === undefined ? null : new Date(t).toISOString());

function volumeView(dir: string, v: VolumeRecord): TestbedVolume {
  return {
    name: v.name,
    service: v.name,
    kind: v.kind,
    path: v.path,
    ...(v.image !== undefined ? { image: v.image } : {}),
    adopted: v.adopted === true,
    destroyed: v.destroyed === true,
    free: () => openVolume(v).free(),
    snapshot: () => openVolume(v).snapshot(),
    destroy: async () => {
      await updateState(dir, async (s) => {
        const cur = s.volumes.find((x) => x.name === v.name);
        if (cur === undefined || cur.destroyed === true) return;
        await openVolume(cur).destroy();
        cur.destroyed = true;
      });
    },
  };
}

/** A running (or stopped) testbed, found by its directory. */
export class Testbed {
  readonly dir: string;
  #s: TestbedState;

  constructor(s: TestbedState) {
    this.dir = s.dir;
    this.#s = s;
  }

  /** The state as last read or written by this object. */
  get state(): TestbedState {
    return this.#s;
  }

  async refresh(): Promise<TestbedState> {
    this.#s = await readState(this.dir);
    return this.#s;
  }

  services(): ServiceSpec[] {
    return this.#s.services;
  }

  /** The volumes (one per container), as the state was last seen. */
  volumes(): TestbedVolume[] {
    return this.#s.volumes.map((v) => volumeView(this.dir, v));
  }

  /**
   * The one directory holding every volume (as NAME/ subdirectories), for a tool that backs up a
   * single tree: DIR/volumes while all volumes are the testbed's own directory volumes; undefined
   * otherwise (btrfs volumes, or volumes replaced by restored directories elsewhere).
   */
  volumesRoot(): string | undefined {
    const root = paths(this.dir).volumes;
    return this.#s.volumes.every((v) => v.kind === 'dir' && v.destroyed !== true && path.dirname(v.path) === root && path.basename(v.path) === v.name) ? root : undefined;
  }

  /** The subdirectories of `dir` named like this testbed's volumes (a restore of several volumes), for verify(). */
  volumesIn(dir: string): Record<string, string> {
    return volumesIn(dir, this.#s.volumes.map((v) => v.name));
  }

  async load(o: LoadOptions): Promise<LoadResult> {
    return runLoad(await this.refresh(), o);
  }

  async fault(kind: FaultKind, o: FaultOptions = {}): Promise<FaultRecord> {
    const r = await updateState(this.dir, (s) => {
      this.#s = s;
      return injectFault(s, kind, o);
    });
    return r;
  }

  /** Deletes a disk-full fault's filler file. */
  releaseDiskFull(rec: FaultRecord): Promise<void> {
    return releaseDiskFull(rec);
  }

  /**
   * Starts what is not running (on `volumes`, restored directories by volume name, when given)
   * and checks the testbed at application level; see verify.ts.
   */
  async verify(o: VerifyOptions | Record<string, string> = {}): Promise<VerifyReport> {
    const opts: VerifyOptions = isVolumeMap(o) ? { volumes: o } : o;
    return updateState(this.dir, (s) => {
      this.#s = s;
      return verifyTestbed(s, opts);
    });
  }

  async status(): Promise<StatusReport> {
    return statusOf(await this.refresh());
  }

  /** Backs the live PostgreSQL volume up with meshback by each method and restores each; see consistency.ts. */
  async consistency(o: ConsistencyOptions = {}): Promise<ConsistencyResult> {
    return consistencyExperiment(await this.refresh(), o);
  }

  /** Backs the live Redis volume up with `meshback run` without and with the redis preset, and restores each; see consistency-redis.ts. */
  async consistencyRedis(o: RedisConsistencyOptions = {}): Promise<RedisConsistencyResult> {
    return redisConsistencyExperiment(await this.refresh(), o);
  }

  /** `meshback server` on orders (postgres preset) and sessions (redis preset) under load, with drills, a SIGKILL and restart, a trigger and /metrics; see automation.ts. */
  async automation(o: AutomationOptions = {}): Promise<AutomationResult> {
    return automationExperiment(await this.refresh(), o);
  }

  /** `down`: stops every process cleanly, unmounts the btrfs volumes; `purge` also deletes the directory. */
  async stop(o: { purge?: boolean } = {}): Promise<DownReport> {
    return stopTestbed(this.dir, o);
  }
}

/** The subdirectories of `dir` named like one of `names`; UsageError when there are none. */
export function volumesIn(dir: string, names: string[]): Record<string, string> {
  const abs = path.resolve(dir);
  if (!existsSync(abs) || !statSync(abs).isDirectory()) throw new UsageError(`${dir} is not a directory of restored volumes`);
  const found: Record<string, string> = {};
  for (const e of readdirSync(abs)) if (names.includes(e) && statSync(path.join(abs, e)).isDirectory()) found[e] = path.join(abs, e);
  if (Object.keys(found).length === 0) throw new UsageError(`${dir} holds none of the testbed's volumes: expected subdirectories named ${names.join(', ')}`);
  return found;
}

function isVolumeMap(o: VerifyOptions | Record<string, string>): o is Record<string, string> {
  const vals = Object.values(o);
  return vals.length > 0 && vals.every((v) => typeof v === 'string');
}

/** Opens the testbed in `dir` (made by `up`). */
export async function openTestbed(dir: string): Promise<Testbed> {
  return new Testbed(await readState(path.resolve(dir)));
}

function anyRunning(s: TestbedState): boolean {
  return components(s).some((c) => running(s, c)) || supervisorAlive(s);
}

/** Starts every component that is not running, in order; records each as it starts. */
async function startAll(s: TestbedState, ttlMs: number, log: (m: string) => void): Promise<void> {
  await ensureSupervisor(s, ttlMs);
  for (const c of components(s)) {
    if (running(s, c)) continue;
    log(`starting ${c.name}`);
    await startComponent(s, c);
    if (c.role === 'postgres') await createSchema(s);
  }
}

/** `up`: makes a new testbed in o.dir and starts it (or starts a stopped one there again). */
export async function startTestbed(o: StartOptions): Promise<Testbed> {
  const dir = path.resolve(o.dir);
  const log = (message: string): void => o.events?.({ type: 'note', op: 'testbed', message });
  const n = o.services ?? 2;
  if (!Number.isInteger(n) || n < 1 || n > MAX_SERVICES) throw new UsageError(`--services ${n}: give 1 to ${MAX_SERVICES}`);
  const kind = o.volumes ?? 'dir';
  if (kind !== 'dir' && kind !== 'btrfs') throw new UsageError(`--volumes ${String(kind)}: give dir or btrfs`);
  const size = o.volumeSizeBytes ?? 512 * MiB;
  const ttlMs = (o.ttlSeconds ?? 12 * 3600) * 1000;
  if (!(ttlMs >= 60_000)) throw new UsageError('--ttl must be at least 1 minute');

  if (existsSync(dir)) {
    if (isTestbedDir(dir)) {
      const old = await readState(dir).catch(() => undefined);
      if (old !== undefined && anyRunning(old)) throw new UsageError(`a testbed is already up in ${dir}: stop it first with 'meshback testbed down --dir ${dir}'`);
      if (o.fresh === true || old === undefined) await stopTestbed(dir, { purge: true });
      else {
        log(`starting the stopped testbed in ${dir} again on its volumes`);
        await updateState(dir, async (s) => {
          for (const v of s.volumes) {
            if (v.destroyed === true) throw new NotFoundError(`volume ${v.name} was thrown away by a node outage: restore it and run 'meshback testbed verify --dir ${dir} --volumes DIR'`);
            await openVolume(v).attach();
          }
          delete s.stoppedAt;
          if (o.ttlSeconds !== undefined) s.ttlSeconds = o.ttlSeconds;
          await startAll(s, (s.ttlSeconds ?? 12 * 3600) * 1000, log);
        });
        return openTestbed(dir);
      }
    } else if ((await fsp.readdir(dir)).length > 0) {
      throw new UsageError(`${dir} exists and is not a testbed directory: choose a new or empty --dir`);
    }
  }

  const progs = await ensurePrograms({ volumes: kind, ...(o.install !== undefined ? { install: o.install } : {}), log });
  const p = paths(dir);
  await fsp.mkdir(dir, { recursive: true });
  // the postgres and redis users must reach their volumes
  await fsp.chmod(dir, 0o755);
  await fsp.writeFile(p.marker, 'made by meshback testbed up; meshback testbed down --purge deletes this directory\n');
  await fsp.mkdir(p.logs, { recursive: true });
  await fsp.mkdir(p.run, { recursive: true, mode: 0o700 });
  const used = new Set<number>();
  const port = async (): Promise<number> => {
    const x = await freePort(used);
    used.add(x);
    return x;
  };
  const services: ServiceSpec[] = [];
  for (const c of SERVICE_CATALOG.slice(0, n)) services.push({ name: c.name, store: c.store, appPort: await port(), sidecarPort: await port() });
  const state: TestbedState = {
    version: STATE_VERSION,
    dir,
    createdAt: Date.now(),
    volumeKind: kind,
    volumeSizeBytes: size,
    ttlSeconds: ttlMs / 1000,
    services,
    postgres: { port: await port() },
    redis: { port: await port() },
    programs: { nginx: progs.nginx, redisServer: progs.redisServer, pgBindir: progs.pgBindir, pgVersion: progs.pgVersion },
    volumes: [],
    procs: {},
  };
  await writeState(state);
  try {
    await updateState(dir, async (s) => {
      for (const name of [...services.map((x) => x.name), 'postgres', 'redis']) {
        log(`creating volume ${name} (${kind})`);
        const made = await createVolume({ kind, name, dir: kind === 'dir' ? path.join(paths(dir).volumes, name) : paths(dir).btrfs, sizeBytes: size });
        s.volumes.push({ name: made.name, kind: made.kind, path: made.path, ...(made.image !== undefined ? { image: made.image, mount: made.mount! } : {}) });
      }
      log(`initdb (PostgreSQL ${progs.pgVersion})`);
      await initPostgres(s, volumeOf(s, 'postgres'));
      await writeRedisConf(s, volumeOf(s, 'redis'));
      for (const svc of services) await writeNginxConf(svc, volumeOf(s, svc.name));
      await startAll(s, ttlMs, log);
    });
  } catch (err) {
    // leave nothing running and nothing mounted; the directory keeps the logs
    await stopTestbed(dir, {}).catch(() => undefined);
    if (err instanceof MeshbackError) throw err;
    throw new MeshbackError('INTERNAL', `the testbed did not come up: ${errMessage(err)}; logs are in ${p.logs}`);
  }
  return openTestbed(dir);
}

/** `down`: stops everything (cleanly, SIGKILL after a grace period), unmounts; `purge` deletes the directory. */
export async function stopTestbed(dir: string, o: { purge?: boolean } = {}): Promise<DownReport> {
  const abs = path.resolve(dir);
  const report: DownReport = { stopped: [], unmounted: [], problems: [], purged: false };
  if (!isTestbedDir(abs)) throw new NotFoundError(`no testbed in ${abs}: nothing to stop`);
  if (existsSync(paths(abs).state)) {
    await updateState(abs, async (s) => {
      // sidecars first (no new requests), then the apps, then the stores
      for (const c of components(s).reverse()) {
        if (await stopComponent(s, c, 'clean')) report.stopped.push(c.name);
      }
      if (s.supervisor !== undefined) {
        await stopSupervisor(s);
        report.stopped.push('supervisor');
      }
      for (const v of [...s.volumes, ...(s.retired ?? [])]) {
        if (v.kind !== 'btrfs' || v.mount === undefined) continue;
        const wasMounted = isMountPoint(v.mount);
        const problem = await openVolume(v).detach();
        if (problem !== undefined) report.problems.push(problem);
        if (wasMounted) report.unmounted.push(v.mount);
      }
      delete s.retired;
      s.stoppedAt = Date.now();
    });
  }
  if (o.purge === true) {
    const s = await readState(abs).catch(() => undefined);
    const still = [...(s?.volumes ?? []), ...(s?.retired ?? [])].filter((v) => v.mount !== undefined && isMountPoint(v.mount));
    if (still.length > 0) {
      report.problems.push(`not deleting ${abs}: ${still.map((v) => v.mount).join(', ')} still mounted`);
    } else {
      await fsp.rm(abs, { recursive: true, force: true });
      report.purged = true;
    }
  }
  return report;
}

async function statusOf(s: TestbedState): Promise<StatusReport> {
  const comps: ComponentStatus[] = components(s).map((c) => {
    const r = s.procs[c.name];
    const on = running(s, c);
    return { name: c.name, role: c.role, container: c.container, volume: c.volume, running: on, pid: on ? (r?.pid ?? null) : null, startedAt: on ? iso(r?.startedAt) : null };
  });
  const services: ServiceStatus[] = await Promise.all(
    s.services.map(async (svc) => {
      try {
        const r = await httpRequest(svc.sidecarPort, 'GET', '/health', undefined, 2000);
        return { name: svc.name, store: svc.store, appPort: svc.appPort, sidecarPort: svc.sidecarPort, healthy: r.status === 200, message: r.status === 200 ? 'GET /health through the sidecar: 200' : `GET /health through the sidecar: HTTP ${r.status} ${r.body.slice(0, 120)}` };
      } catch (err) {
        return { name: svc.name, store: svc.store, appPort: svc.appPort, sidecarPort: svc.sidecarPort, healthy: false, message: errMessage(err) };
      }
    }),
  );
  const volumes: VolumeStatus[] = await Promise.all(s.volumes.map(async (v) => {
    const present = v.destroyed !== true && existsSync(v.path);
    let free: number | null = null;
    if (present) {
      try {
        free = await openVolume(v).free();
      } catch {
        free = null;
      }
    }
    return { name: v.name, kind: v.kind, path: v.path, ...(v.image !== undefined ? { image: v.image } : {}), present, freeBytes: free, adopted: v.adopted === true, destroyed: v.destroyed === true };
  }));
  const journal = await readJournal(s.dir);
  const faults = await readFaults(s.dir);
  return {
    dir: s.dir,
    up: comps.every((c) => c.running),
    createdAt: new Date(s.createdAt).toISOString(),
    stoppedAt: iso(s.stoppedAt),
    volumeKind: s.volumeKind,
    supervisor: { running: supervisorAlive(s), pid: supervisorAlive(s) ? (s.supervisor?.pid ?? null) : null },
    postgres: { port: s.postgres.port, version: s.programs.pgVersion },
    redis: { port: s.redis.port },
    services,
    components: comps,
    volumes,
    journal: { writes: journal.length, last: iso(journal[journal.length - 1]?.t) },
    faults: faults.slice(-5),
  };
}

export { MARKER };
