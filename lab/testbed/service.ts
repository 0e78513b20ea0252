/**
 * testbed/service: one microservice of the testbed, a small HTTP app that listens on
 * 127.0.0.1 behind its nginx sidecar and keeps its records in PostgreSQL (one table named after
 * the service: orders) or Redis (keys prefixed with the service name: sessions).
 *
 *   GET  /health        200 when the store answers (SELECT 1 / PING), else 503
 *   POST /NAME          {"ref": "...", "value": "..."} -> 201 {"id": ...}: an order row is
 *                       committed (synchronous_commit on) or a session key set (appendonly)
 *                       before the answer; that answer is the acknowledgement the load
 *                       generator journals
 *   GET  /NAME/ID       200 {"id", "value"} or 404
 *
 * Every 2 s it snapshots its sidecar's stub_status into the service's volume:
 * metrics/nginx.prom (Prometheus text, replaced atomically) and one line appended to
 * metrics/stub_status.log (rotated to .1 at 1 MiB).
 *
 * Run as: node service.ts '<json ServiceConfig>'
 */
import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import type { Pool, QueryResultRow } from 'pg';
import type { ServiceConfig } from './state.ts';
import type { RedisClient } from './stores.ts';
import { readBody } from './http.ts';

const cfg = JSON.parse(process.argv[2] ?? '{}') as ServiceConfig;
const log = (line: string): void => {
  process.stderr.write(`${new Date().toISOString()} ${cfg.name}: ${line}\n`);
};

// --- store access -----------------------------------------------------------------------------

// The store's client library (pg or node-redis) is imported once the service listens, in the
// background (node-redis takes a few tenths of a second): requests that come first wait for it.
const stores = import('./stores.ts');
const preload = (): void => void (cfg.store === 'postgres' ? pgPool() : stores.then((st) => st.redisModule())).catch(() => undefined);

const POOL = 4;
const QUEUE_MAX = 256;

/**
 * PostgreSQL: a pg.Pool of 4 connections. Taking a connection (a new one or a free one) waits at
 * most 5 s, a query 10 s (a connection whose query timed out is dropped); a broken connection is
 * dropped and replaced on demand.
 */
let pool: Pool | undefined;
/** the service's table, quoted (pg's escapeIdentifier) */
let table = '';
async function pgPool(): Promise<Pool> {
  if (pool !== undefined) return pool;
  const { pgConfig, pgModule } = await stores;
  const pg = await pgModule();
  if (pool !== undefined) return pool;
  table = pg.escapeIdentifier(cfg.name);
  pool = new pg.Pool({ ...pgConfig(cfg.pgPort, 5000), max: POOL, query_timeout: 10_000, statement_timeout: 10_000 });
  // an idle connection lost (the server crashed or restarts): the pool drops it
  pool.on('error', (err) => log(`PostgreSQL connection lost: ${err.message.split('\n')[0]}`));
  return pool;
}

/** Runs a prepared statement (`name`) made by `sql(table)`. */
async function pgRows<R extends QueryResultRow>(name: string, sql: (table: string) => string, values: unknown[]): Promise<R[]> {
  const p = await pgPool();
  const text = sql(table);
  if (p.waitingCount >= QUEUE_MAX) throw new Error('too many requests waiting for the database');
  try {
    return (await p.query<R>({ name, text, values })).rows;
  } catch (err) {
    const { pgError } = await stores;
    throw await pgError(err, text, 10_000);
  }
}

/** Redis: one connection, made again on demand once it is lost (the client does not reconnect by itself). */
let redis: RedisClient | undefined;
let redisConnecting: Promise<RedisClient> | undefined;
async function redisCall<T>(command: string, timeoutMs: number, run: (c: RedisClient) => Promise<T>): Promise<T> {
  const st = await stores;
  if (redis === undefined || !redis.isReady) {
    if (redis !== undefined) st.redisClose(redis);
    redis = undefined;
    redisConnecting ??= st.redisConnect(cfg.redisPort, 3000).finally(() => (redisConnecting = undefined));
    redis = await redisConnecting;
  }
  return st.redisCall(redis, command, timeoutMs, run);
}

async function health(): Promise<void> {
  if (cfg.store === 'postgres') await pgRows('health', () => 'SELECT 1', []);
  else if ((await redisCall('PING', 3000, (c) => c.ping())) !== 'PONG') throw new Error('Redis did not answer PONG');
}

async function create(ref: string, value: string): Promise<string> {
  if (cfg.store === 'postgres') {
    const rows = await pgRows<{ id: string }>('create', (t) => `INSERT INTO ${t} (ref, value) VALUES ($1, $2) RETURNING id`, [ref, value]);
    return rows[0]!.id;
  }
  const key = `${cfg.name}:${randomUUID()}`;
  const r = await redisCall('SET', 5000, (c) => c.set(key, value));
  if (r !== 'OK') throw new Error(`Redis answered ${JSON.stringify(r)} to SET`);
  return key;
}

async function read(id: string): Promise<string | undefined> {
  if (cfg.store === 'postgres') {
    if (!/^\d{1,18}$/.test(id)) return undefined;
    const rows = await pgRows<{ value: string }>('read', (t) => `SELECT value FROM ${t} WHERE id = $1`, [id]);
    return rows[0]?.value;
  }
  const v = await redisCall('GET', 5000, (c) => c.get(id));
  return typeof v === 'string' ? v : undefined;
}

// --- HTTP -------------------------------------------------------------------------------------


const VALUE = /^[\x20-\x7e]{1,512}$/;
const REF = /^[\w-]{1,64}$/;

async function handle(req: http.IncomingMessage): Promise<{ status: number; body: unknown }> {
  const url = req.url ?? '/';
  if (req.method === 'GET' && url === '/health') {
    await health();
    return { status: 200, body: { ok: true, service: cfg.name, store: cfg.store } };
  }
  const base = `/${cfg.name}`;
  if (req.method === 'POST' && url === base) {
    let body: { ref?: unknown; value?: unknown };
    try {
      body = JSON.parse(await readBody(req, 64 * 1024)) as typeof body;
    } catch {
      return { status: 400, body: { error: 'the body must be JSON' } };
    }
    if (typeof body.value !== 'string' || !VALUE.test(body.value)) return { status: 400, body: { error: 'value: 1 to 512 printable ASCII characters' } };
    const ref = typeof body.ref === 'string' && REF.test(body.ref) ? body.ref : randomUUID();
    const id = await create(ref, body.value);
    return { status: 201, body: { id, ref } };
  }
  if (req.method === 'GET' && url.startsWith(base + '/')) {
    const id = decodeURIComponent(url.slice(base.length + 1));
    const value = await read(id);
    return value === undefined ? { status: 404, body: { error: 'not found' } } : { status: 200, body: { id, value } };
  }
  return { status: 404, body: { error: `no route ${req.method} ${url}` } };
}

const server = http.createServer((req, res) => {
  handle(req).then(
    (r) => {
      res.writeHead(r.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(r.body));
    },
    (err: unknown) => {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: err instanceof Error ? err.message : String(err) }));
    },
  );
});
server.keepAliveTimeout = 30_000;

// --- metrics snapshots ------------------------------------------------------------------------

const metricsDir = path.join(cfg.volume, 'metrics');
const HISTORY_MAX = 1024 * 1024;

function fetchStatus(): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: cfg.sidecarPort, path: '/nginx_status', agent: false, timeout: 1500 }, (res) => {
      let s = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (s += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(s) : reject(new Error(`stub_status answered ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error('stub_status did not answer')));
    req.on('error', reject);
  });
}

/** stub_status text -> Prometheus exposition format. */
function toProm(status: string, t: number): string | undefined {
  const m = /Active connections:\s*(\d+)\s+server accepts handled requests\s+(\d+)\s+(\d+)\s+(\d+)\s+Reading:\s*(\d+)\s+Writing:\s*(\d+)\s+Waiting:\s*(\d+)/.exec(status);
  if (m === null) return undefined;
  const lab = `{service="${cfg.name}"}`;
  return [
    `# snapshot of the ${cfg.name} sidecar's stub_status at ${new Date(t).toISOString()}`,
    `nginx_connections_active${lab} ${m[1]}`,
    `nginx_connections_accepted_total${lab} ${m[2]}`,
    `nginx_connections_handled_total${lab} ${m[3]}`,
    `nginx_http_requests_total${lab} ${m[4]}`,
    `nginx_connections_reading${lab} ${m[5]}`,
    `nginx_connections_writing${lab} ${m[6]}`,
    `nginx_connections_waiting${lab} ${m[7]}`,
    '',
  ].join('\n');
}

let snapshotting = false;
async function snapshotMetrics(): Promise<void> {
  if (snapshotting) return;
  snapshotting = true;
  try {
    const t = Date.now();
    const prom = toProm(await fetchStatus(), t);
    if (prom === undefined) return;
    await fsp.mkdir(metricsDir, { recursive: true });
    const tmp = path.join(metricsDir, `.nginx.prom.tmp-${process.pid}`);
    await fsp.writeFile(tmp, prom);
    await fsp.rename(tmp, path.join(metricsDir, 'nginx.prom'));
    const hist = path.join(metricsDir, 'stub_status.log');
    const size = await fsp.stat(hist).then((s) => s.size, () => 0);
    if (size > HISTORY_MAX) await fsp.rename(hist, hist + '.1');
    const line = prom.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => l.split(' ')[1]).join(' ');
    await fsp.appendFile(hist, `${new Date(t).toISOString()} ${line}\n`);
  } catch {
    // the sidecar is down or the volume is gone for the moment: the next tick tries again
  } finally {
    snapshotting = false;
  }
}

const metricsTimer = setInterval(() => void snapshotMetrics(), 2000);

// --- lifecycle --------------------------------------------------------------------------------

server.on('error', (err) => {
  log(`cannot listen on 127.0.0.1:${cfg.port}: ${err.message}`);
  process.exit(1);
});
server.listen(cfg.port, '127.0.0.1', () => {
  log(`listening on 127.0.0.1:${cfg.port}, store ${cfg.store}`);
  preload();
});

function stop(sig: string): void {
  log(`${sig}: stopping`);
  clearInterval(metricsTimer);
  server.close();
  server.closeAllConnections();
  void pool?.end().catch(() => undefined);
  if (redis !== undefined) void stores.then((st) => st.redisClose(redis!));
  setTimeout(() => process.exit(0), 200).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
