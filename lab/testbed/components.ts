/**
 * testbed/components: the processes of a testbed, what they keep on their volumes, and how they
 * are started (through the supervisor, see supervisor.ts), checked for readiness and stopped.
 *
 * A *container* is what the container-crash fault kills: a service (its app and its sidecar),
 * `postgres` or `redis`. A *component* is one process group: `postgres`, `redis`, `NAME-app`,
 * `NAME-sidecar`. Each container has one volume, named like it:
 *   NAME      nginx/nginx.conf, nginx/logs/{access,error}.log, nginx/nginx.pid, nginx/tmp/,
 *             metrics/nginx.prom, metrics/stub_status.log
 *   postgres  pgdata/ (initdb; postgresql.conf ends with the testbed's settings: port,
 *             listen_addresses = '127.0.0.1', no Unix socket)
 *   redis     redis.conf (relative paths), data/appendonlydir/ (appendonly yes)
 * Every path in a volume's configuration is relative (nginx runs with -p VOLUME/nginx/, Redis in
 * the volume as its working directory), so a volume restored elsewhere runs as it is.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, promises as fsp } from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MeshbackError, errMessage } from '../../src/errors/index.ts';
import { run } from '../../src/host/process.ts';
import { postgresUser, redisUser } from './deps.ts';
import type { UserIds } from './deps.ts';
import { groupAlive, httpRequest, isAlive, logTail, procStat, sleep, stopGroup, waitFor } from './procs.ts';
import type { ProcRef } from './procs.ts';
import { paths } from './state.ts';
import type { ProcRecord, ServiceConfig, ServiceSpec, Store, TestbedState, VolumeRecord } from './state.ts';
import { pgModule, pgQuery, redisOnce } from './stores.ts';

/** The services a testbed of N services has: the first N of these. */
export const SERVICE_CATALOG: readonly { name: string; store: Store }[] = [
  { name: 'orders', store: 'postgres' },
  { name: 'sessions', store: 'redis' },
  { name: 'payments', store: 'postgres' },
  { name: 'carts', store: 'redis' },
  { name: 'inventory', store: 'postgres' },
  { name: 'profiles', store: 'redis' },
  { name: 'shipments', store: 'postgres' },
  { name: 'tokens', store: 'redis' },
];

export type Role = 'postgres' | 'redis' | 'app' | 'sidecar';

export interface Component {
  name: string;
  role: Role;
  /** what a container crash of this name kills */
  container: string;
  /** the volume it keeps its state on */
  volume: string;
  service?: ServiceSpec;
}

/** Every component, in start order: stores first, then apps, then sidecars. */
export function components(s: TestbedState): Component[] {
  return [
    { name: 'postgres', role: 'postgres', container: 'postgres', volume: 'postgres' },
    { name: 'redis', role: 'redis', container: 'redis', volume: 'redis' },
    ...s.services.map((svc): Component => ({ name: `${svc.name}-app`, role: 'app', container: svc.name, volume: svc.name, service: svc })),
    ...s.services.map((svc): Component => ({ name: `${svc.name}-sidecar`, role: 'sidecar', container: svc.name, volume: svc.name, service: svc })),
  ];
}

export function containerNames(s: TestbedState): string[] {
  return [...s.services.map((x) => x.name), 'postgres', 'redis'];
}

export function volumeOf(s: TestbedState, name: string): VolumeRecord {
  const v = s.volumes.find((x) => x.name === name);
  if (v === undefined) throw new MeshbackError('INTERNAL', `the testbed has no volume ${name}`);
  return v;
}

export const pgData = (v: VolumeRecord): string => path.join(v.path, 'pgdata');

// ---------------------------------------------------------------------------------------------
// Volume contents

const pgSettings = (port: number): string =>
  [
    '',
    '# --- meshback testbed ---',
    "listen_addresses = '127.0.0.1'",
    `port = ${port}`,
    "unix_socket_directories = ''",
    'max_connections = 40',
    'shared_buffers = 16MB',
    'fsync = on',
    'synchronous_commit = on',
    'full_page_writes = on',
    'wal_level = replica',
    'max_wal_size = 128MB',
    'min_wal_size = 32MB',
    '# keep the WAL a low-level backup (pg_backup_start/stop) needs until its post-backup hook saves pg_wal:',
    '# without WAL archiving, checkpoints during the backup would recycle the segment it started in',
    'wal_keep_size = 64MB',
    'checkpoint_timeout = 5min',
    "log_line_prefix = '%m [%p] '",
    '',
  ].join('\n');

/** initdb into VOLUME/pgdata as the postgres user (when root), with the testbed's settings appended. */
export async function initPostgres(s: TestbedState, v: VolumeRecord): Promise<void> {
  const data = pgData(v);
  const user = postgresUser();
  await fsp.mkdir(data, { mode: 0o700 });
  if (user !== undefined) {
    await fsp.chown(data, user.uid, user.gid);
    const r = await runAs(user, 'test', ['-w', data], v.path);
    if (r.code !== 0) {
      throw new MeshbackError('USAGE', `the postgres user cannot reach ${data}: every directory above it must be searchable by others (chmod o+x), or choose a --dir under /tmp`);
    }
  }
  const log = path.join(paths(s.dir).logs, 'initdb.log');
  const r = await runAs(user, path.join(s.programs.pgBindir, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'], v.path, log);
  if (r.code !== 0) throw new MeshbackError('INTERNAL', `initdb failed (exit ${r.code}): ${await logTail(log)}`);
  await fsp.appendFile(path.join(data, 'postgresql.conf'), pgSettings(s.postgres.port));
}

/** Runs a program as `user` (undefined: as ourselves) to completion, output appended to `log`. */
async function runAs(user: UserIds | undefined, file: string, args: string[], cwd: string, log?: string): Promise<{ code: number | null }> {
  const fd = log !== undefined ? openSync(log, 'a') : 'ignore';
  try {
    return await new Promise((resolve, reject) => {
      const p = spawn(file, args, { cwd, env: baseEnv(), stdio: ['ignore', fd, fd], ...(user !== undefined ? { uid: user.uid, gid: user.gid } : {}) });
      p.on('error', reject);
      p.on('close', (code) => resolve({ code }));
    });
  } finally {
    if (typeof fd === 'number') closeSync(fd);
  }
}

function baseEnv(): Record<string, string> {
  return { PATH: process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin', LC_ALL: 'C', LANG: 'C', TZ: 'UTC', HOME: os.tmpdir() };
}

export async function writeRedisConf(s: TestbedState, v: VolumeRecord): Promise<void> {
  const conf = [
    '# Redis of the meshback testbed. Paths are relative to this volume (the working directory).',
    'bind 127.0.0.1',
    `port ${s.redis.port}`,
    'protected-mode yes',
    'daemonize no',
    'dir ./data',
    'appendonly yes',
    'appendfsync everysec',
    'appenddirname appendonlydir',
    'aof-load-truncated yes',
    'save ""',
    'loglevel notice',
    'logfile ""',
    '',
  ].join('\n');
  await fsp.writeFile(path.join(v.path, 'redis.conf'), conf);
  const data = path.join(v.path, 'data');
  await fsp.mkdir(data, { recursive: true, mode: 0o750 });
  const u = redisUser();
  if (u !== undefined) await fsp.chown(data, u.uid, u.gid);
}

export async function writeNginxConf(svc: ServiceSpec, v: VolumeRecord): Promise<void> {
  const root = path.join(v.path, 'nginx');
  for (const d of ['logs', 'tmp']) await fsp.mkdir(path.join(root, d), { recursive: true });
  await fsp.mkdir(path.join(v.path, 'metrics'), { recursive: true });
  const conf = `# nginx sidecar of the ${svc.name} service (meshback testbed).
# Paths are relative to the prefix, this directory: nginx -p VOLUME/nginx/ -c nginx.conf
worker_processes 1;
pid nginx.pid;
error_log logs/error.log warn;

events {
    worker_connections 512;
}

http {
    log_format timed '$remote_addr [$time_iso8601] "$request" $status $body_bytes_sent '
                     'rt=$request_time urt=$upstream_response_time';
    access_log logs/access.log timed;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    upstream ${svc.name}_app {
        server 127.0.0.1:${svc.appPort};
        keepalive 16;
    }

    server {
        listen 127.0.0.1:${svc.sidecarPort};

        location = /nginx_status {
            stub_status;
            access_log off;
            allow 127.0.0.1;
            deny all;
        }

        location / {
            proxy_pass http://${svc.name}_app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_read_timeout 15s;
        }
    }
}
`;
  await fsp.writeFile(path.join(root, 'nginx.conf'), conf);
}

export const nginxPrefix = (v: VolumeRecord): string => path.join(v.path, 'nginx') + '/';

/** `nginx -t` on a volume's configuration: ok, and nginx's own words. */
export async function nginxTest(nginx: string, v: VolumeRecord): Promise<{ ok: boolean; output: string }> {
  try {
    const r = await run([nginx, '-t', '-q', '-p', nginxPrefix(v), '-c', 'nginx.conf', '-e', 'logs/error.log']);
    return { ok: true, output: (r.stderr + r.stdout).trim() };
  } catch (err) {
    const msg = errMessage(err);
    const lines = msg.split(/\n| \| /).map((l) => l.trim()).filter((l) => /emerg|alert|crit|error|failed/i.test(l));
    return { ok: false, output: (lines[0] ?? msg.split('\n')[0]!).replace(/^nginx: /, '') };
  }
}

/** The orders-style table of a PostgreSQL-backed service, with its three B-tree indexes; `ident` quotes an identifier (pg's escapeIdentifier). */
export function schemaSql(s: TestbedState, ident: (name: string) => string): string {
  return s.services
    .filter((x) => x.store === 'postgres')
    .map(
      (x) =>
        `CREATE TABLE IF NOT EXISTS ${ident(x.name)} (id bigserial PRIMARY KEY, ref text NOT NULL UNIQUE, value text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());` +
        `CREATE INDEX IF NOT EXISTS ${ident(`${x.name}_created_at`)} ON ${ident(x.name)} (created_at);`,
    )
    .join('');
}

export async function createSchema(s: TestbedState): Promise<void> {
  if (!s.services.some((x) => x.store === 'postgres')) return;
  const { escapeIdentifier } = await pgModule();
  await pgQuery(s.postgres.port, schemaSql(s, escapeIdentifier));
}

// ---------------------------------------------------------------------------------------------
// The supervisor

function script(name: string): { file: string; args: string[] } {
  const js = import.meta.url.endsWith('.js');
  const file = fileURLToPath(new URL(`./${name}${js ? '.js' : '.ts'}`, import.meta.url));
  return { file: process.execPath, args: js ? [file] : ['--disable-warning=ExperimentalWarning', file] };
}

function supervisorSocket(dir: string): string {
  const p = path.join(paths(dir).run, 'supervisor.sock');
  if (Buffer.byteLength(p) < 100) return p;
  // Unix socket paths are limited to 107 bytes: a private directory under the temporary directory
  return path.join(os.tmpdir(), `meshback-testbed-${createHash('sha256').update(dir).digest('hex').slice(0, 16)}`, 'supervisor.sock');
}

function supervisorCall(socket: string, method: string, urlPath: string, body?: unknown, timeoutMs = 10_000): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request({ socketPath: socket, method, path: urlPath, timeout: timeoutMs, headers: payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {} }, (res) => {
      let s = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (s += d));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(s) as Record<string, unknown> });
        } catch {
          reject(new Error(`the supervisor answered ${res.statusCode}: ${s.slice(0, 200)}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`the supervisor did not answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

export function supervisorAlive(s: TestbedState): boolean {
  return s.supervisor !== undefined && isAlive(s.supervisor);
}

/** Starts the testbed's supervisor unless it runs; records it in the state. */
export async function ensureSupervisor(s: TestbedState, ttlMs: number): Promise<void> {
  if (s.supervisor !== undefined && isAlive(s.supervisor)) {
    const ok = await supervisorCall(s.supervisor.socket, 'GET', '/ping', undefined, 3000).then(() => true, () => false);
    if (ok) return;
    await stopGroup(s.supervisor, 'SIGKILL', 0);
  }
  const p = paths(s.dir);
  await fsp.mkdir(p.run, { recursive: true, mode: 0o700 });
  await fsp.mkdir(p.logs, { recursive: true });
  const socket = supervisorSocket(s.dir);
  await fsp.mkdir(path.dirname(socket), { recursive: true, mode: 0o700 });
  await fsp.chmod(path.dirname(socket), 0o700);
  const { file, args } = script('supervisor');
  const fd = openSync(path.join(p.logs, 'supervisor.log'), 'a');
  const child = spawn(file, [...args, '--dir', s.dir, '--socket', socket, '--ttl-ms', String(Math.min(ttlMs, 2 ** 31 - 1))], { detached: true, stdio: ['ignore', fd, fd], env: baseEnv() });
  closeSync(fd);
  child.unref();
  const pid = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('spawn', () => resolve(child.pid!));
  });
  const ref: ProcRef = { pid, startTime: procStat(pid)?.startTime ?? -1 };
  const up = await waitFor(() => supervisorCall(socket, 'GET', '/ping', undefined, 1000).then(() => true, () => (isAlive(ref) ? undefined : false)), 15_000, 100);
  if (up !== true) {
    await stopGroup(ref, 'SIGKILL', 0);
    throw new MeshbackError('INTERNAL', `the testbed supervisor did not start: ${await logTail(path.join(p.logs, 'supervisor.log'))}`);
  }
  s.supervisor = { ...ref, socket };
}

/** Stops the supervisor (it stops whatever it still runs first). */
export async function stopSupervisor(s: TestbedState, kill = false): Promise<void> {
  const sup = s.supervisor;
  if (sup === undefined) return;
  if (!kill && isAlive(sup)) await supervisorCall(sup.socket, 'POST', '/shutdown', undefined, 3000).catch(() => undefined);
  if (kill || !(await waitFor(() => (isAlive(sup) ? undefined : true), 10_000))) await stopGroup(sup, 'SIGKILL', 0);
  else await stopGroup(sup, 'SIGTERM', 2000);
  delete s.supervisor;
}

// ---------------------------------------------------------------------------------------------
// Starting, checking and stopping components

interface Launch {
  file: string;
  args: string[];
  cwd: string;
  user?: UserIds;
}

function launchOf(s: TestbedState, c: Component): Launch {
  const progs = s.programs;
  const v = volumeOf(s, c.volume);
  switch (c.role) {
    case 'postgres': {
      const u = postgresUser();
      return { file: path.join(progs.pgBindir, 'postgres'), args: ['-D', pgData(v)], cwd: v.path, ...(u !== undefined ? { user: u } : {}) };
    }
    case 'redis': {
      const u = redisUser();
      return { file: progs.redisServer, args: [path.join(v.path, 'redis.conf')], cwd: v.path, ...(u !== undefined ? { user: u } : {}) };
    }
    case 'app': {
      const svc = c.service!;
      const cfg: ServiceConfig = { name: svc.name, store: svc.store, port: svc.appPort, sidecarPort: svc.sidecarPort, volume: v.path, pgPort: s.postgres.port, redisPort: s.redis.port };
      const { file, args } = script('service');
      return { file, args: [...args, JSON.stringify(cfg)], cwd: s.dir };
    }
    case 'sidecar':
      return { file: progs.nginx, args: ['-p', nginxPrefix(v), '-c', 'nginx.conf', '-e', 'logs/error.log', '-g', 'daemon off;'], cwd: path.join(v.path, 'nginx') };
  }
}

export const componentLog = (s: TestbedState, c: Component): string => path.join(paths(s.dir).logs, `${c.name}.log`);

/** Is the component's process group running? */
export function running(s: TestbedState, c: Component): boolean {
  const r = s.procs[c.name];
  return r !== undefined && groupAlive(r);
}

export interface Readiness {
  state: 'ready' | 'exited' | 'timeout';
  /** the last probe's failure */
  last: string;
}

/** Probes the component until it answers, its process group ends, or `timeoutMs` passes. */
async function readiness(s: TestbedState, c: Component, rec: ProcRecord, timeoutMs: number): Promise<Readiness> {
  let last = '';
  const probe = async (): Promise<boolean | undefined> => {
    try {
      switch (c.role) {
        case 'postgres': {
          await pgQuery(s.postgres.port, 'SELECT 1', { connectMs: 2000, timeoutMs: 5000 });
          return true;
        }
        case 'redis': {
          const info = await redisOnce(s.redis.port, 'INFO persistence', { connectMs: 2000, timeoutMs: 5000 }, (r) => r.info('persistence'));
          if (/\bloading:1\b/.test(info)) throw new Error('still loading its data');
          return true;
        }
        case 'app': {
          // the app is up when it answers at all: 503 means its store is down, which the store's
          // own readiness and the traffic check through the sidecar report
          await httpRequest(c.service!.appPort, 'GET', '/health', undefined, 2000);
          return true;
        }
        case 'sidecar': {
          const r = await httpRequest(c.service!.sidecarPort, 'GET', '/nginx_status', undefined, 2000);
          if (r.status !== 200) throw new Error(`/nginx_status answered ${r.status}`);
          return true;
        }
      }
    } catch (err) {
      // a store's errors are one line and keep PostgreSQL's SQLSTATE (e.g. 57P03: starting up)
      last = errMessage(err);
      return groupAlive(rec) ? undefined : false;
    }
  };
  const ok = await waitFor(probe, timeoutMs, 100);
  return { state: ok === true ? 'ready' : ok === false ? 'exited' : 'timeout', last };
}

/** Starts one component through the supervisor and waits until it is ready; records it in the state. */
export async function startComponent(s: TestbedState, c: Component, timeoutMs = 60_000): Promise<ProcRecord> {
  if (s.supervisor === undefined) throw new MeshbackError('INTERNAL', 'the testbed supervisor is not running');
  const l = launchOf(s, c);
  const req = { component: c.name, file: l.file, args: l.args, cwd: l.cwd, env: baseEnv(), log: componentLog(s, c), ...(l.user !== undefined ? { uid: l.user.uid, gid: l.user.gid } : {}) };
  await fsp.appendFile(req.log, `--- ${new Date().toISOString()} starting ${c.name}: ${l.file} ${l.args.join(' ')}\n`);
  const r = await supervisorCall(s.supervisor.socket, 'POST', '/spawn', req);
  if (r.status !== 200) throw new MeshbackError('INTERNAL', `cannot start ${c.name}: ${String(r.json['error'] ?? r.status)}`);
  const rec: ProcRecord = { component: c.name, pid: Number(r.json['pid']), startTime: Number(r.json['startTime']), startedAt: Date.now() };
  s.procs[c.name] = rec;
  const ready = await readiness(s, c, rec, timeoutMs);
  if (ready.state === 'ready') return rec;
  const tail = await logTail(componentLog(s, c));
  await stopGroup(rec, 'SIGKILL', 0);
  delete s.procs[c.name];
  const why = ready.state === 'exited' ? 'exited' : `did not become ready within ${Math.round(timeoutMs / 1000)} s (${ready.last})`;
  throw new MeshbackError('INTERNAL', `${c.name} ${why}${tail !== '' ? `: ${tail}` : ''}; its log is ${componentLog(s, c)}`);
}

/**
 * Makes sure a component runs and answers, as a liveness probe would: one that is not running is
 * started; one that runs but exits while it is probed is started again; one that runs but does
 * not answer within `timeoutMs` is killed (SIGKILL) and started again. Throws when a start fails.
 */
export async function ensureComponent(s: TestbedState, c: Component, timeoutMs: number): Promise<{ action: 'none' | 'started' | 'restarted'; why: string }> {
  const rec = s.procs[c.name];
  if (rec === undefined || !groupAlive(rec)) {
    await startComponent(s, c, timeoutMs);
    return { action: 'started', why: 'it was not running' };
  }
  const r = await readiness(s, c, rec, timeoutMs);
  if (r.state === 'ready') return { action: 'none', why: '' };
  const why = r.state === 'exited' ? `it exited while being probed (${r.last})` : `it did not answer for ${Math.round(timeoutMs / 1000)} s (${r.last}): killed`;
  await stopComponent(s, c, 'kill');
  await startComponent(s, c, timeoutMs);
  return { action: 'restarted', why };
}

/** The signal that stops a component cleanly. */
const STOP_SIGNAL: Record<Role, NodeJS.Signals> = { postgres: 'SIGINT', redis: 'SIGTERM', app: 'SIGTERM', sidecar: 'SIGTERM' };

/** Stops a component: cleanly (then SIGKILL after `graceMs`), or at once with SIGKILL. */
export async function stopComponent(s: TestbedState, c: Component, how: 'clean' | 'kill', graceMs = 15_000): Promise<boolean> {
  const r = s.procs[c.name];
  if (r === undefined) return false;
  const was = groupAlive(r);
  await stopGroup(r, how === 'kill' ? 'SIGKILL' : STOP_SIGNAL[c.role], graceMs);
  // a SIGKILLed group's members may linger for a moment while the kernel tears them down
  for (let i = 0; i < 50 && groupAlive(r); i++) await sleep(20);
  delete s.procs[c.name];
  return was;
}
