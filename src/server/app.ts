/**
 * server/app: the HTTP API of `meshback server` (hono), what the dashboard and CI/CD pipelines
 * use. JSON in and out (schemas: server/schemas.ts, docs/schemas/api-*.json; the API: docs/api.md):
 *
 *   GET  /healthz                      liveness (no token)
 *   GET  /metrics                      Prometheus text (src/server/metrics.ts; no token on loopback)
 *   GET  /v1/policies                  the policies: schedule, next run, RPO, last run
 *   GET  /v1/runs?policy=&kind=&status=&limit=   run records, newest first
 *   POST /v1/runs                      {"policy":"orders","tags":{"deploy":"v1.4.2"}} -> 202 {id,status,policy,url}
 *   GET  /v1/runs/ID                   one run record
 *   GET  /v1/runs/ID/events            text/event-stream: the run's status changes and typed events (from its start)
 *   GET  /v1/events                    text/event-stream: every run's
 *   GET  /v1/snapshots?policy=         the policies' snapshots in their repositories
 *   GET  /v1/drills?policy=&limit=     run records of kind drill
 *
 * Errors are `{"error":{"code","message"}}`, the message one line saying what to do. With a token
 * configured every /v1 route needs `Authorization: Bearer TOKEN` (compared as SHA-256 digests with
 * crypto.timingSafeEqual); failed authentications are limited per client (then 429 with
 * Retry-After), and so are triggers. The app knows nothing of the CLI: what it serves comes
 * through ApiOptions (the policies, the trigger, the snapshot listing, metrics).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { Hono } from 'hono';
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { streamSSE } from 'hono/streaming';
import type { SSEStreamingApi } from 'hono/streaming';
import type { HttpBindings } from '@hono/node-server';
import { errMessage } from '../errors/index.ts';
import { issueText, parseJson, safeParse } from '../util/schema.ts';
import { registerAdviceRoutes } from './advice-routes.ts';
import type { AdviceSource } from './advice-routes.ts';
import { RateLimiter } from './rate.ts';
import { addUiRoutes } from './ui-routes.ts';
import type { UiOptions } from './ui-routes.ts';
import type { RegistryChange, RunRegistry } from './runs.ts';
import { RUN_ID, RUN_KINDS, RUN_STATUSES, TriggerRequestSchema } from './schemas.ts';
import type { PolicyInfo, RunKind, RunRecord, RunStatus, SnapshotRow } from './schemas.ts';

/** What a trigger came to: a record (started or queued), or a refusal. */
export type TriggerOutcome = { ok: true; record: RunRecord } | { ok: false; status: 404 | 409 | 503; code: 'NOT_FOUND' | 'BUSY' | 'STOPPING'; message: string; run?: string };

/** The Prometheus registry's rendering (src/server/metrics.ts of the drills work: Metrics). */
export interface MetricsSource {
  render(): Promise<string>;
  contentType: string;
}

export interface ApiOptions {
  registry: RunRegistry;
  /** the policies, in the file's order */
  policies(): PolicyInfo[];
  /** starts (or queues) a run of `policy` with `tags`, recorded in the registry, reason trigger; `client` is the caller's address (for the log) */
  trigger(policy: string, tags: Record<string, string>, client: string): TriggerOutcome;
  /** the snapshots of the policies (of `policy` only when given), newest first; throws a MeshbackError when a repository cannot be read */
  snapshots(policy?: string): Promise<SnapshotRow[]>;
  /** the names of the jobs running now */
  running(): string[];
  metrics?: MetricsSource;
  /** GET /v1/advice and /v1/anomalies (server/advice-routes.ts); absent: 404 */
  advice?: AdviceSource;
  /** the bearer token (undefined: none needed) */
  token?: string;
  /** the server listens on a loopback address only: /metrics needs no token */
  loopback: boolean;
  version: string;
  /** triggers per minute and client (default 10) */
  triggersPerMinute?: number;
  /** failed authentications per minute and client before 429 (default 10) */
  authFailuresPerMinute?: number;
  now?(): number;
  /** the web dashboard and its routes (server/ui-routes.ts); without it the API alone */
  ui?: UiOptions;
}

type Env = { Bindings: HttpBindings };

const KEEPALIVE_MS = 15_000;
/** changes waiting for a slow SSE client beyond this: the stream is ended (the client reconnects) */
const MAX_PENDING = 5000;

/** `{error:{code,message}}` */
function fail(c: Context<Env>, status: 400 | 401 | 404 | 409 | 413 | 429 | 500 | 503, code: string, message: string, extra: Record<string, string> = {}): Response {
  return c.json({ error: { code, message, ...extra } }, status);
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** the client's address (the socket's peer: no proxy header is trusted) */
function client(c: Context<Env>): string {
  return c.env?.incoming?.socket?.remoteAddress ?? 'unknown';
}

/** a record without its report (lists) */
function bare(r: RunRecord): RunRecord {
  const { report: _report, ...rest } = r;
  return rest;
}

/** a record as SSE sends it: without the report until it has finished */
function sseRecord(r: RunRecord): RunRecord {
  return r.status === 'succeeded' || r.status === 'failed' ? r : bare(r);
}

const finished = (r: RunRecord): boolean => r.status === 'succeeded' || r.status === 'failed';

export interface Api {
  app: Hono<Env>;
  /** ends every open event stream (the server is stopping) */
  closeStreams(): void;
}

export function createApi(o: ApiOptions): Api {
  const app = new Hono<Env>();
  const now = o.now ?? (() => Date.now());
  const t0 = now();
  const tokenDigest = o.token !== undefined ? digest(o.token) : undefined;
  const authFailures = new RateLimiter(o.authFailuresPerMinute ?? 10, 60_000, { now });
  const triggers = new RateLimiter(o.triggersPerMinute ?? 10, 60_000, { now });
  const streams = new Set<() => void>();

  /** undefined when the request may go on; else the answer (401, or 429 after too many failures) */
  const authorize = (c: Context<Env>): Response | undefined => {
    if (tokenDigest === undefined) return undefined;
    const who = client(c);
    const wait = authFailures.wait(who);
    if (wait > 0) {
      c.header('Retry-After', String(wait));
      return fail(c, 429, 'RATE_LIMITED', `too many failed authentications from ${who}: wait ${wait} s, and check the token (--token-file)`);
    }
    const h = c.req.header('authorization') ?? '';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
    if (m !== null && timingSafeEqual(digest(m[1]!), tokenDigest)) return undefined;
    authFailures.take(who);
    c.header('WWW-Authenticate', 'Bearer realm="meshback"');
    return fail(c, 401, 'UNAUTHORIZED', m === null ? 'this server needs a token: send Authorization: Bearer TOKEN' : 'the token is wrong: use the one in the server\'s --token-file');
  };

  app.onError((err, c) => fail(c, 500, 'INTERNAL', `the server failed: ${errMessage(err).split('\n')[0]}`));
  app.notFound((c) => fail(c, 404, 'NOT_FOUND', `no such route: ${c.req.method} ${c.req.path} (the API: /v1/policies, /v1/runs, /v1/advice, /v1/anomalies, /v1/snapshots, /v1/drills, /v1/events, /healthz, /metrics)`));

  app.get('/healthz', (c) => c.json({ ok: true as const, version: o.version, uptimeSeconds: (now() - t0) / 1000, running: o.running() }));

  app.get('/metrics', async (c) => {
    if (o.metrics === undefined) return fail(c, 404, 'NOT_FOUND', 'this server has no metrics yet');
    if (!o.loopback) {
      const denied = authorize(c);
      if (denied !== undefined) return denied;
    }
    return c.body(await o.metrics.render(), 200, { 'Content-Type': o.metrics.contentType });
  });

  app.use('/v1/*', async (c, next) => {
    const denied = authorize(c);
    if (denied !== undefined) return denied;
    await next();
  });

  app.get('/v1/policies', (c) => c.json(o.policies()));
  if (o.advice !== undefined) registerAdviceRoutes(app, o.advice);

  if (o.ui !== undefined) addUiRoutes(app, o.ui, fail, o.version);

  /** ?limit= as a whole number from 1 to 1000 (default 100), or a 400 answer */
  const limitOf = (c: Context<Env>): number | Response => {
    const l = c.req.query('limit');
    if (l === undefined) return 100;
    if (!/^\d{1,4}$/.test(l) || Number(l) < 1 || Number(l) > 1000) return fail(c, 400, 'BAD_REQUEST', `limit=${JSON.stringify(l)} is not a whole number from 1 to 1000`);
    return Number(l);
  };

  app.get('/v1/runs', (c) => {
    const limit = limitOf(c);
    if (limit instanceof Response) return limit;
    const kind = c.req.query('kind');
    const status = c.req.query('status');
    if (kind !== undefined && !(RUN_KINDS as readonly string[]).includes(kind)) return fail(c, 400, 'BAD_REQUEST', `kind=${JSON.stringify(kind)} is not one of ${RUN_KINDS.join(', ')}`);
    if (status !== undefined && !(RUN_STATUSES as readonly string[]).includes(status)) return fail(c, 400, 'BAD_REQUEST', `status=${JSON.stringify(status)} is not one of ${RUN_STATUSES.join(', ')}`);
    const policy = c.req.query('policy');
    return c.json(o.registry.list({ limit, ...(policy !== undefined ? { policy } : {}), ...(kind !== undefined ? { kind: kind as RunKind } : {}), ...(status !== undefined ? { status: status as RunStatus } : {}) }).map(bare));
  });

  app.get('/v1/drills', (c) => {
    const limit = limitOf(c);
    if (limit instanceof Response) return limit;
    const policy = c.req.query('policy');
    return c.json(o.registry.list({ kind: 'drill', limit, ...(policy !== undefined ? { policy } : {}) }).map(bare));
  });

  const noRun = (c: Context<Env>, id: string): Response => fail(c, 404, 'NOT_FOUND', RUN_ID.test(id) ? `no run ${id} on this server (the last 1000 are kept): list them with GET /v1/runs` : `${JSON.stringify(id)} is not a run id (16 hex digits)`);

  app.get('/v1/runs/:id', (c) => {
    const r = o.registry.get(c.req.param('id'));
    return r === undefined ? noRun(c, c.req.param('id')) : c.json(r);
  });

  app.post(
    '/v1/runs',
    bodyLimit({ maxSize: 16 * 1024, onError: (c) => fail(c as Context<Env>, 413, 'BAD_REQUEST', 'the request body is larger than 16 KiB: send {"policy":"NAME","tags":{"KEY":"VALUE"}}') }),
    async (c) => {
      const who = client(c);
      const wait = triggers.take(who);
      if (wait > 0) {
        c.header('Retry-After', String(wait));
        return fail(c, 429, 'RATE_LIMITED', `too many triggers from ${who} (at most ${o.triggersPerMinute ?? 10} a minute): try again in ${wait} s`);
      }
      let body: unknown;
      try {
        body = parseJson(await c.req.text(), (m) => new Error(m));
      } catch (err) {
        return fail(c, 400, 'BAD_REQUEST', `the request body ${errMessage(err)}: send {"policy":"NAME","tags":{"KEY":"VALUE"}}`);
      }
      const r = safeParse(TriggerRequestSchema, body);
      if (!r.success) return fail(c, 400, 'BAD_REQUEST', `the request body is not a trigger: ${issueText(r.issues)}; send {"policy":"NAME","tags":{"KEY":"VALUE"}}`);
      const t = o.trigger(r.output.policy, r.output.tags ?? {}, who);
      if (!t.ok) return fail(c, t.status, t.code, t.message, t.run !== undefined ? { run: t.run } : {});
      const url = `/v1/runs/${t.record.id}`;
      c.header('Location', url);
      return c.json({ id: t.record.id, status: t.record.status === 'queued' ? ('queued' as const) : ('running' as const), policy: t.record.policy, url }, 202);
    },
  );

  app.get('/v1/snapshots', async (c) => {
    const policy = c.req.query('policy');
    if (policy !== undefined && !o.policies().some((p) => p.name === policy)) return fail(c, 404, 'NOT_FOUND', `no policy ${JSON.stringify(policy)} in the server's policy file: list them with GET /v1/policies`);
    try {
      return c.json(await o.snapshots(policy));
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      return fail(c, 503, typeof code === 'string' ? code : 'INTERNAL', `the snapshots cannot be listed: ${errMessage(err).split('\n')[0]}`);
    }
  });

  /**
   * An event stream: what `initial` gives (read once subscribed, so nothing falls between), then
   * the registry's changes that `relevant` keeps, until `done` says so (or `initial` said the
   * stream ends with it), the client goes, or the server stops.
   */
  const eventStream = (c: Context<Env>, initial: () => { first: RegistryChange[]; end: boolean }, relevant: (ch: RegistryChange) => boolean, done: (ch: RegistryChange) => boolean): Response =>
    streamSSE(c, async (stream: SSEStreamingApi) => {
      const pending: RegistryChange[] = [];
      let wake: (() => void) | undefined;
      let closed = false;
      const stop = (): void => {
        closed = true;
        wake?.();
      };
      const unsubscribe = o.registry.subscribe((ch) => {
        if (!relevant(ch)) return;
        pending.push(ch);
        if (pending.length > MAX_PENDING) closed = true;
        wake?.();
      });
      streams.add(stop);
      stream.onAbort(stop);
      const lastSeq = new Map<string, number>();
      const send = async (ch: RegistryChange): Promise<void> => {
        if (ch.type === 'run') await stream.writeSSE({ event: 'run', data: JSON.stringify(sseRecord(ch.record)) });
        else {
          if (ch.seq <= (lastSeq.get(ch.runId) ?? 0)) return; // already sent from the buffer
          lastSeq.set(ch.runId, ch.seq);
          await stream.writeSSE({ event: 'event', id: `${ch.runId}:${ch.seq}`, data: JSON.stringify({ run: ch.runId, seq: ch.seq, event: ch.event }) });
        }
      };
      try {
        const { first, end } = initial();
        for (const ch of first) await send(ch);
        if (end) return;
        while (!closed) {
          if (pending.length === 0) {
            let timer: ReturnType<typeof setTimeout> | undefined;
            await new Promise<void>((res) => {
              wake = res;
              timer = setTimeout(res, KEEPALIVE_MS);
            });
            clearTimeout(timer);
            wake = undefined;
            if (closed) break;
            if (pending.length === 0) {
              await stream.write(': keepalive\n\n');
              continue;
            }
          }
          const ch = pending.shift()!;
          await send(ch);
          if (done(ch)) break;
        }
      } finally {
        unsubscribe();
        streams.delete(stop);
      }
    });

  app.get('/v1/runs/:id/events', (c) => {
    const id = c.req.param('id');
    if (o.registry.get(id) === undefined) return noRun(c, id);
    return eventStream(
      c,
      () => {
        // a run going: its record, its buffered events, then what comes; a finished one: its buffered events, then its record (the end)
        const r = o.registry.get(id)!;
        const evs = o.registry.eventsOf(id).map((b): RegistryChange => ({ type: 'event', runId: id, seq: b.seq, event: b.event }));
        return finished(r) ? { first: [...evs, { type: 'run', record: r }], end: true } : { first: [{ type: 'run', record: r }, ...evs], end: false };
      },
      (ch) => (ch.type === 'run' ? ch.record.id === id : ch.runId === id),
      (ch) => ch.type === 'run' && finished(ch.record),
    );
  });

  app.get('/v1/events', (c) =>
    eventStream(
      c,
      () => ({ first: [...o.registry.list({ status: 'queued' }), ...o.registry.list({ status: 'running' })].reverse().map((record): RegistryChange => ({ type: 'run', record })), end: false }),
      () => true,
      () => false,
    ),
  );

  return {
    app,
    closeStreams() {
      for (const s of [...streams]) s();
    },
  };
}
