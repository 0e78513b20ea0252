/**
 * server/ui-routes: the web dashboard's files and the routes only it needs, added to the API of
 * server/app (createApi calls addUiRoutes when ApiOptions.ui is given):
 *
 *   GET  /, /ui/FILE                    the dashboard (static files of src/server/ui; no token: they hold no data)
 *   GET  /v1/ui                         {mode: "server"|"repo", version, reports}: what the page shows
 *   GET  /v1/snapshots/ID/diff?against=ID   what changed from snapshot `against` to ID (diffTrees; at most 1000 entries)
 *   GET  /v1/repository                 per repository what is cheap to know: packs, index and parity files, snapshots, last check
 *   POST /v1/check                      a check of one repository ({location, readData}), in the background; its result is lastCheck
 *   POST /v1/restores                  {snapshot, target, include?} -> 202 {id,url}: a verified restore into an empty or new directory
 *   GET  /v1/restores, /v1/restores/ID  the restores of this process and their results (polled by the page)
 *   GET  /v1/reports, /v1/reports/NAME  the fault-benchmark reports (*.html, *.json) of --reports DIR
 *
 * The repositories come through UiOptions.repositories (the front end's storage stack and
 * password); a restore takes the shared lock, a diff and the listing none.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Context, Hono } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import { errMessage } from '../errors/index.ts';
import { check, diffTrees, restore } from '../index.ts';
import type { DiffEntry, Repository, RestoreResult } from '../index.ts';
import { parseJson } from '../util/schema.ts';

type Env = { Bindings: HttpBindings };
export type Fail = (c: Context<Env>, status: 400 | 401 | 404 | 409 | 413 | 429 | 500 | 503, code: string, message: string) => Response;

/** One repository the dashboard may read: its location and how to open it (closed after each use). */
/** A check this server ran (POST /v1/check): what GET /v1/repository shows as lastCheck. */
export interface CheckRecord {
  location: string;
  readData: boolean;
  status: 'running' | 'done' | 'failed';
  /** when it started */
  at: string;
  finishedAt?: string;
  ok?: boolean;
  errors?: number;
  damagedPacks?: string[];
  repairablePacks?: string[];
  parityProblems?: number;
  packsRead?: number;
  findings?: string[];
  error?: string;
}

export interface RepoAccess {
  location: string;
  open(lock: 'none' | 'shared', command: string): Promise<{ repo: Repository; close(): Promise<void> }>;
}

export interface UiOptions {
  /** server: policies, runs and triggers; repo: one repository's snapshots (meshback ui --repo) */
  mode: 'server' | 'repo';
  /** the repositories, each once */
  repositories(): RepoAccess[];
  /** the location of the repository that holds snapshot `id` (a full id), or undefined */
  repositoryOf(id: string): Promise<string | undefined>;
  /** --reports DIR: the fault-benchmark reports listed and served */
  reportsDir?: string;
  /** the folder of the dashboard's files (default: ./ui beside this module, in src/ and in dist/) */
  assetsDir?: string;
  now?(): number;
}

export const DIFF_LIMIT = 1000;
const RESTORES_KEPT = 100;
const CONTENT_TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.json': 'application/json', '.png': 'image/png' };
const HEX = /^[0-9a-f]{64}$/;

export interface RestoreRecord {
  id: string;
  snapshot: string;
  target: string;
  include: string[];
  status: 'running' | 'succeeded' | 'failed';
  startedAt: string;
  finishedAt?: string;
  result?: RestoreResult;
  error?: { code: string; message: string };
}

/** the dashboard's files, read once */
function assets(dir: string): Map<string, { body: Buffer; type: string }> {
  const m = new Map<string, { body: Buffer; type: string }>();
  for (const name of readdirSync(dir)) {
    const type = CONTENT_TYPES[path.extname(name)];
    if (type !== undefined && statSync(path.join(dir, name)).isFile()) m.set(name, { body: readFileSync(path.join(dir, name)), type });
  }
  return m;
}

export function addUiRoutes(app: Hono<Env>, u: UiOptions, fail: Fail, version: string): void {
  const now = u.now ?? (() => Date.now());
  const files = assets(u.assetsDir ?? path.join(import.meta.dirname, 'ui'));
  const serve = (c: Context<Env>, name: string): Response => {
    const f = files.get(name);
    if (f === undefined) return fail(c, 404, 'NOT_FOUND', `no dashboard file ${name}`);
    // nothing of the page comes from elsewhere: the browser is told so
    return c.body(new Uint8Array(f.body), 200, { 'Content-Type': f.type, 'Cache-Control': 'no-cache', 'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'", 'X-Content-Type-Options': 'nosniff' });
  };
  app.get('/', (c) => serve(c, 'index.html'));
  app.get('/ui/:file', (c) => serve(c, c.req.param('file')));

  app.get('/v1/ui', (c) => c.json({ mode: u.mode, version, reports: u.reportsDir !== undefined }));

  const byLocation = (loc: string): RepoAccess | undefined => u.repositories().find((r) => r.location === loc);

  app.get('/v1/snapshots/:id/diff', async (c) => {
    const id = c.req.param('id');
    const against = c.req.query('against');
    if (!HEX.test(id) || against === undefined || !HEX.test(against)) return fail(c, 400, 'BAD_REQUEST', 'give two full snapshot ids: GET /v1/snapshots/ID/diff?against=OLDER_ID (64 hex digits each)');
    const loc = await u.repositoryOf(id);
    const access = loc !== undefined ? byLocation(loc) : undefined;
    if (access === undefined) return fail(c, 404, 'NOT_FOUND', `no snapshot ${id.slice(0, 8)} in this server's repositories: list them with GET /v1/snapshots`);
    if ((await u.repositoryOf(against)) !== loc) return fail(c, 404, 'NOT_FOUND', `no snapshot ${against.slice(0, 8)} in the repository of ${id.slice(0, 8)}: compare snapshots of one repository`);
    const { repo, close } = await access.open('none', 'server diff');
    try {
      const a = await repo.findSnapshot(against);
      const b = await repo.findSnapshot(id);
      const va = await repo.rootView(a.snapshot);
      const vb = await repo.rootView(b.snapshot);
      const changes: DiffEntry[] = [];
      const counts = await diffTrees(repo, va.nodes, vb.nodes, (e) => {
        if (changes.length < DIFF_LIMIT) changes.push(e);
      });
      const total = counts.added + counts.removed + counts.modified + counts.type_changed + counts.metadata;
      return c.json({ from: a.id, to: b.id, ...counts, changes, truncated: total > changes.length });
    } finally {
      await close();
    }
  });

  // the last check of each repository this process ran (POST /v1/check), kept in memory
  const checks = new Map<string, CheckRecord>();
  app.post('/v1/check', async (c) => {
    let body: { location?: unknown; readData?: unknown };
    try {
      body = (await c.req.json()) as typeof body;
    } catch {
      return c.json({ error: { code: 'BAD_REQUEST', message: 'the body must be JSON: {"location":"...","readData":true|false}' } }, 400);
    }
    const repos = u.repositories();
    const r = typeof body.location === 'string' ? repos.find((x) => x.location === body.location) : repos.length === 1 ? repos[0] : undefined;
    if (r === undefined) return c.json({ error: { code: 'NOT_FOUND', message: `no repository ${JSON.stringify(body.location ?? '')} on this server: give "location" as GET /v1/repository lists it` } }, 404);
    if (checks.get(r.location)?.status === 'running') return c.json({ error: { code: 'BUSY', message: `a check of ${r.location} is running: wait for it (GET /v1/repository shows it)` } }, 409);
    const rec: CheckRecord = { location: r.location, readData: body.readData === true, status: 'running', at: new Date(now()).toISOString() };
    checks.set(r.location, rec);
    void (async () => {
      try {
        const { repo, close } = await r.open('shared', `server check${rec.readData ? ' --read-data' : ''}`);
        try {
          const res = await check(repo, { readData: rec.readData });
          Object.assign(rec, { status: 'done', ok: res.ok, errors: res.findings.length, damagedPacks: res.damagedPacks, repairablePacks: res.repairablePacks, parityProblems: res.parityProblems.length, packsRead: res.packsRead, findings: res.findings.slice(0, 20).map((f) => f.message) });
        } finally {
          await close();
        }
      } catch (err) {
        Object.assign(rec, { status: 'failed', ok: false, error: errMessage(err).split('\n')[0] });
      }
      rec.finishedAt = new Date(now()).toISOString();
    })();
    return c.json(rec, 202);
  });

  app.get('/v1/repository', async (c) => {
    const out = [];
    for (const r of u.repositories()) {
      try {
        const { repo, close } = await r.open('none', 'server repository');
        try {
          const count = async (t: 'pack' | 'index' | 'parity' | 'snapshot' | 'lock'): Promise<{ files: number; bytes: number }> => {
            let files = 0;
            let bytes = 0;
            for await (const f of repo.backend.list(t)) {
              files++;
              bytes += f.size;
            }
            return { files, bytes };
          };
          const [packs, index, parity, snapshots, locks] = [await count('pack'), await count('index'), await count('parity'), await count('snapshot'), await count('lock')];
          out.push({ location: r.location, ok: true, id: repo.config.id, packs, index, parity: { ...parity, configured: repo.config.parity !== undefined }, snapshots: snapshots.files, locks: locks.files, lastCheck: checks.get(r.location) ?? null });
        } finally {
          await close();
        }
      } catch (err) {
        out.push({ location: r.location, ok: false, error: errMessage(err).split('\n')[0] });
      }
    }
    return c.json(out);
  });

  const restores = new Map<string, RestoreRecord>();
  let seq = 0;
  app.post('/v1/restores', async (c) => {
    let body: { snapshot?: unknown; target?: unknown; include?: unknown };
    try {
      body = parseJson((await c.req.text()).slice(0, 16 * 1024), (m) => new Error(m)) as typeof body;
    } catch (err) {
      return fail(c, 400, 'BAD_REQUEST', `the request body ${errMessage(err)}: send {"snapshot":"ID","target":"/an/empty/dir"}`);
    }
    const { snapshot, target } = body ?? {};
    const include = body?.include ?? [];
    if (typeof snapshot !== 'string' || !HEX.test(snapshot)) return fail(c, 400, 'BAD_REQUEST', 'snapshot must be a full snapshot id (64 hex digits): take it from GET /v1/snapshots');
    if (typeof target !== 'string' || !path.isAbsolute(target) || target.includes('\0')) return fail(c, 400, 'BAD_REQUEST', 'target must be an absolute directory path on the server host');
    if (!Array.isArray(include) || !include.every((x) => typeof x === 'string')) return fail(c, 400, 'BAD_REQUEST', 'include must be a list of paths of the snapshot');
    const st = await fsp.stat(target).catch(() => undefined);
    if (st !== undefined && !st.isDirectory()) return fail(c, 409, 'TARGET_NOT_EMPTY', `${target} exists and is not a directory: restore into an empty or new directory`);
    if (st !== undefined && (await fsp.readdir(target)).length > 0) return fail(c, 409, 'TARGET_NOT_EMPTY', `${target} is not empty: restore into an empty or new directory (nothing is overwritten from the dashboard)`);
    if ([...restores.values()].some((r) => r.status === 'running' && r.target === path.resolve(target))) return fail(c, 409, 'BUSY', `a restore into ${target} is running: wait for it`);
    const loc = await u.repositoryOf(snapshot);
    const access = loc !== undefined ? byLocation(loc) : undefined;
    if (access === undefined) return fail(c, 404, 'NOT_FOUND', `no snapshot ${snapshot.slice(0, 8)} in this server's repositories: list them with GET /v1/snapshots`);
    const id = `${now().toString(16)}${(seq++).toString(16).padStart(4, '0')}`.slice(-16).padStart(16, '0');
    const rec: RestoreRecord = { id, snapshot, target: path.resolve(target), include: include as string[], status: 'running', startedAt: new Date(now()).toISOString() };
    restores.set(id, rec);
    for (const old of [...restores.keys()].slice(0, Math.max(0, restores.size - RESTORES_KEPT))) restores.delete(old);
    void (async () => {
      try {
        const { repo, close } = await access.open('shared', 'server restore');
        try {
          const r = await restore(repo, { snapshot, target: rec.target, includes: rec.include, verify: true });
          rec.result = r;
          rec.status = r.damaged.length === 0 && r.errors.length === 0 ? 'succeeded' : 'failed';
          if (rec.status === 'failed') rec.error = { code: r.damaged.length > 0 ? 'INTEGRITY' : 'INCOMPLETE', message: `${r.damaged.length} damaged, ${r.errors.length} not restored: run meshback check --read-data` };
        } finally {
          await close();
        }
      } catch (err) {
        rec.status = 'failed';
        rec.error = { code: String((err as { code?: unknown }).code ?? 'INTERNAL'), message: errMessage(err).split('\n')[0]! };
      }
      rec.finishedAt = new Date(now()).toISOString();
    })();
    c.header('Location', `/v1/restores/${id}`);
    return c.json({ id, status: 'running', url: `/v1/restores/${id}` }, 202);
  });
  app.get('/v1/restores', (c) => c.json([...restores.values()].reverse()));
  app.get('/v1/restores/:id', (c) => {
    const r = restores.get(c.req.param('id'));
    return r === undefined ? fail(c, 404, 'NOT_FOUND', `no restore ${c.req.param('id')} in this server process: list them with GET /v1/restores`) : c.json(r);
  });

  const reports = (): { name: string; bytes: number; modified: string }[] => {
    if (u.reportsDir === undefined) return [];
    let names: string[];
    try {
      names = readdirSync(u.reportsDir);
    } catch {
      return [];
    }
    return names
      .filter((n) => /^[\w.-]+\.(html|json)$/.test(n))
      .flatMap((n) => {
        const st = statSync(path.join(u.reportsDir!, n), { throwIfNoEntry: false });
        return st?.isFile() === true ? [{ name: n, bytes: st.size, modified: st.mtime.toISOString() }] : [];
      })
      .sort((a, b) => (a.modified < b.modified ? 1 : -1));
  };
  app.get('/v1/reports', (c) => c.json(reports()));
  app.get('/v1/reports/:name', async (c) => {
    const name = c.req.param('name');
    if (!reports().some((r) => r.name === name)) return fail(c, 404, 'NOT_FOUND', `no report ${name} in --reports: list them with GET /v1/reports`);
    const body = await fsp.readFile(path.join(u.reportsDir!, name));
    return c.body(new Uint8Array(body), 200, { 'Content-Type': CONTENT_TYPES[path.extname(name)]!, 'Content-Security-Policy': "default-src 'self' 'unsafe-inline' data:; connect-src 'none'" });
  });
}
