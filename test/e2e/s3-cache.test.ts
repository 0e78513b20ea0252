/**
 * End-to-end: the metadata cache and the request counts of the real CLI on MinIO, behind a
 * counting HTTP proxy of this test's own (every request MinIO got, by kind and by key prefix).
 *
 * - The counts each command reports (the stderr line, the --json summary's `requests`) equal what
 *   the proxy saw, kind by kind.
 * - With a warm cache, `snapshots`, `ls` and `diff` GET no index, snapshot or pack object, and an
 *   incremental backup GETs no pack (its parent's trees are local).
 * - With the cache deleted they download again and give the same output; a damaged cached file
 *   is detected, fetched again and repaired.
 * Tree: 1,000 files, 50 MB, in 20 directories. The figures are printed as test diagnostics.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { startS3, type S3Env } from '../../lab/testenv/index.ts';
import { mb, rmrf, summary, tmpdir } from '../helpers/cli.ts';

const KINDS = ['PUT', 'GET', 'HEAD', 'LIST', 'DELETE', 'COPY', 'OTHER'] as const;
type Kind = (typeof KINDS)[number];
type Counts = Record<Kind, number>;
const zero = (): Counts => ({ PUT: 0, GET: 0, HEAD: 0, LIST: 0, DELETE: 0, COPY: 0, OTHER: 0 });

let s3: S3Env;
let proxy: http.Server;
let seen: Counts = zero();
/** GETs of objects, by the repository directory of their key (config, keys, data, index, snapshots) */
let seenGets: Record<string, number> = {};
let base: string;
let src: string;
let cacheBase: string;
let repo: string;
let env: Record<string, string | undefined>;
let repoId: string;

function classify(req: http.IncomingMessage): Kind {
  const u = new URL(req.url ?? '/', 'http://x');
  if (req.method === 'PUT') return req.headers['x-amz-copy-source'] !== undefined ? 'COPY' : 'PUT';
  if (req.method === 'GET') return u.searchParams.has('list-type') ? 'LIST' : u.pathname.split('/').filter((s) => s !== '').length >= 2 ? 'GET' : 'OTHER';
  if (req.method === 'HEAD') return 'HEAD';
  if (req.method === 'DELETE') return 'DELETE';
  return 'OTHER';
}

/** A proxy in front of MinIO that counts every request it forwards. */
function startProxy(target: URL): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const kind = classify(req);
    seen[kind]++;
    if (kind === 'GET') {
      // /bucket/cache/<dir>/...: the repository directory
      const dir = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).split('/')[3] ?? '';
      seenGets[dir] = (seenGets[dir] ?? 0) + 1;
    }
    const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** 1,000 files of random sizes (50 MB in all) in 20 directories. */
async function makeTree(dir: string): Promise<void> {
  let total = 0;
  for (let d = 0; d < 20; d++) {
    await fsp.mkdir(path.join(dir, `d${d}`), { recursive: true });
    for (let f = 0; f < 50; f++) {
      const size = 5_000 + ((d * 50 + f) * 7919) % 90_000;
      total += size;
      await fsp.writeFile(path.join(dir, `d${d}`, `f${f}.bin`), randomBytes(size));
    }
  }
  assert.ok(total > 45e6 && total < 55e6, `${total} bytes`);
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  /** what the command reported */
  reported: Counts;
  getsByType: Record<string, number>;
  /** what the proxy saw */
  proxied: Counts;
  proxiedGets: Record<string, number>;
  cacheLine: string | undefined;
}

/** Parses `requests: 1,204 PUT, 310 GET (index 3, pack 290), 12 HEAD, 4 LIST, 0 DELETE`. */
function parseLine(stderr: string): { counts: Counts; gets: Record<string, number> } | undefined {
  const line = stderr.split('\n').find((l) => l.startsWith('requests: '));
  if (line === undefined) return undefined;
  const counts = zero();
  const gets: Record<string, number> = {};
  for (const m of line.matchAll(/([\d,]+) (PUT|GET|HEAD|LIST|DELETE|COPY|OTHER)(?: \(([^)]*)\))?/g)) {
    counts[m[2] as Kind] = Number(m[1]!.replace(/,/g, ''));
    for (const part of (m[3] ?? '').split(', ').filter((p) => p !== '')) {
      const [t, n] = part.split(' ');
      gets[t!] = Number(n!.replace(/,/g, ''));
    }
  }
  return { counts, gets };
}

async function run(args: string[], opts: { json?: boolean } = {}): Promise<Run> {
  seen = zero();
  seenGets = {};
  const r = await mb([...args, '--repo', repo, ...(opts.json === true ? ['--json'] : [])], { env });
  let reported: Counts;
  let getsByType: Record<string, number>;
  if (opts.json === true && r.code === 0) {
    const s = summary(r.stdout);
    const req = s['requests'] as Record<string, unknown>;
    assert.ok(req !== undefined, `no requests in the summary: ${r.stdout.slice(-2000)}`);
    reported = zero();
    for (const k of KINDS) reported[k] = req[k] as number;
    getsByType = req['get_by_type'] as Record<string, number>;
    assert.equal(req['total'], KINDS.reduce((n, k) => n + reported[k], 0));
  } else {
    const p = parseLine(r.stderr);
    assert.ok(p !== undefined || r.code !== 0, `no requests line: ${r.stderr}`);
    reported = p?.counts ?? zero();
    getsByType = p?.gets ?? {};
  }
  return { ...r, reported, getsByType, proxied: { ...seen }, proxiedGets: { ...seenGets }, cacheLine: r.stderr.split('\n').find((l) => l.startsWith('cache: ')) };
}

/** The command succeeded, and its reported counts are what MinIO got. */
function ok(r: Run, what: string): void {
  assert.equal(r.code, 0, `${what}: ${r.stderr}`);
  assert.deepEqual(r.reported, r.proxied, `${what}: reported ${JSON.stringify(r.reported)}, MinIO got ${JSON.stringify(r.proxied)}`);
  // the GETs per type agree with the keys MinIO served
  const dirOf: Record<string, string> = { config: 'config', key: 'keys', pack: 'data', index: 'index', snapshot: 'snapshots', lock: 'locks', parity: 'parity' };
  const mapped: Record<string, number> = {};
  for (const [t, n] of Object.entries(r.getsByType)) mapped[dirOf[t]!] = n;
  assert.deepEqual(mapped, r.proxiedGets, `${what}: GETs by type`);
}

const metadataGets = (r: Run): number => (r.proxiedGets['index'] ?? 0) + (r.proxiedGets['snapshots'] ?? 0) + (r.proxiedGets['data'] ?? 0);
const fmt = (r: Run): string => `${KINDS.filter((k) => r.proxied[k] > 0 || ['PUT', 'GET', 'HEAD', 'LIST', 'DELETE'].includes(k)).map((k) => `${r.proxied[k]} ${k}`).join(', ')} (GET ${JSON.stringify(r.proxiedGets)})`;

before(async () => {
  s3 = await startS3();
  proxy = await startProxy(new URL(s3.endpoint));
  base = tmpdir('s3cache');
  src = path.join(base, 'src');
  cacheBase = path.join(base, 'cache');
  await makeTree(src);
  repo = `s3:http://127.0.0.1:${(proxy.address() as AddressInfo).port}/${s3.bucket}/cache`;
  env = { ...s3.env, AWS_PROFILE: undefined, AWS_SESSION_TOKEN: undefined, MESHBACK_PASSWORD: 'pw', MESHBACK_REPO: undefined, MESHBACK_CACHE_DIR: cacheBase, MESHBACK_CACHE_SIZE: undefined, XDG_CACHE_HOME: path.join(base, 'xdg') };
});
after(async () => {
  await new Promise((r) => proxy?.close(r));
  await s3?.stop();
  await rmrf(base);
});

describe('metadata cache and request counts on MinIO', () => {
  const figures: string[] = [];
  after(() => {
    for (const f of figures) process.stdout.write(`# ${f}\n`);
  });

  test('init and a first backup: the counts reported are what MinIO got; the metadata written is cached', { timeout: 5 * 60_000 }, async (t) => {
    const init = await run(['init'], { json: true });
    ok(init, 'init');
    repoId = summary(init.stdout)['id'] as string;
    figures.push(`init: ${fmt(init)}`);
    const b = await run(['backup', src], { json: true });
    ok(b, 'backup');
    assert.ok(b.proxied.PUT > 5, fmt(b));
    assert.equal(b.proxiedGets['data'] ?? 0, 0);
    const s = summary(b.stdout);
    assert.equal((s['cache'] as { misses: number }).misses, 0, 'a first backup reads no metadata');
    figures.push(`backup (1,000 files, 50 MB): ${fmt(b)}`);
    for (const d of ['index', 'snapshots', 'packs']) assert.ok((await fsp.readdir(path.join(cacheBase, repoId, d))).length >= 1, `${d} cached`);
    t.diagnostic(figures.join('\n'));
  });

  let warm: { ls: string; diff: string } | undefined;
  let first: string;

  test('with a warm cache, snapshots and ls GET no index, snapshot or pack object', { timeout: 2 * 60_000 }, async () => {
    const snaps = await run(['snapshots']);
    ok(snaps, 'snapshots');
    assert.equal(metadataGets(snaps), 0, JSON.stringify(snaps.proxiedGets));
    assert.match(snaps.cacheLine ?? '', /^cache: 1 hits, 0 misses/);
    figures.push(`snapshots, warm: ${fmt(snaps)} (${snaps.cacheLine})`);
    const ls = await run(['ls', 'latest']);
    ok(ls, 'ls');
    assert.equal(metadataGets(ls), 0, JSON.stringify(ls.proxiedGets));
    assert.equal(ls.stdout.split('\n').filter((l) => l.endsWith('.bin')).length, 1000);
    figures.push(`ls, warm: ${fmt(ls)} (${ls.cacheLine})`);
    first = (JSON.parse((await mb(['snapshots', '--json', '--repo', repo], { env })).stdout) as { id: string }[])[0]!.id;
    warm = { ls: ls.stdout, diff: '' };
  });

  test('an incremental backup GETs no pack: the parent snapshot, its trees and the index are local', { timeout: 3 * 60_000 }, async () => {
    for (let f = 0; f < 10; f++) await fsp.writeFile(path.join(src, 'd3', `f${f}.bin`), randomBytes(20_000));
    await fsp.writeFile(path.join(src, 'd7', 'new.bin'), randomBytes(30_000));
    const b = await run(['backup', src], { json: true });
    ok(b, 'incremental backup');
    assert.equal(metadataGets(b), 0, JSON.stringify(b.proxiedGets));
    const s = summary(b.stdout);
    assert.equal(s['parent'], first);
    assert.ok((s['cache'] as { hits: number }).hits > 0);
    figures.push(`incremental backup (11 files changed): ${fmt(b)}`);
    const d = await run(['diff', first, 'latest'], { json: true });
    ok(d, 'diff');
    assert.equal(metadataGets(d), 0, JSON.stringify(d.proxiedGets));
    const ds = summary(d.stdout);
    assert.equal(ds['modified'], 10);
    assert.equal(ds['added'], 1);
    figures.push(`diff, warm: ${fmt(d)}`);
    warm!.diff = JSON.stringify(ds['changes']);
  });

  test('with the cache deleted, snapshots, ls and diff download again and give the same output', { timeout: 3 * 60_000 }, async () => {
    const warmSnaps = await run(['snapshots']);
    ok(warmSnaps, 'snapshots');
    assert.equal(metadataGets(warmSnaps), 0);
    await fsp.rm(cacheBase, { recursive: true });
    const snaps = await run(['snapshots']);
    ok(snaps, 'snapshots');
    assert.ok((snaps.proxiedGets['snapshots'] ?? 0) === 2, JSON.stringify(snaps.proxiedGets));
    assert.equal(snaps.stdout, warmSnaps.stdout);
    figures.push(`snapshots, cold: ${fmt(snaps)}`);
    await fsp.rm(cacheBase, { recursive: true });
    const ls = await run(['ls', first]);
    ok(ls, 'ls');
    assert.ok((ls.proxiedGets['index'] ?? 0) > 0 && (ls.proxiedGets['data'] ?? 0) > 0, JSON.stringify(ls.proxiedGets));
    assert.equal(ls.stdout, warm!.ls);
    figures.push(`ls, cold: ${fmt(ls)} (${ls.cacheLine})`);
    await fsp.rm(cacheBase, { recursive: true });
    const d = await run(['diff', first, 'latest'], { json: true });
    ok(d, 'diff');
    assert.ok(metadataGets(d) > 0);
    assert.equal(JSON.stringify(summary(d.stdout)['changes']), warm!.diff);
    figures.push(`diff, cold: ${fmt(d)}`);
    // warm again
    const d2 = await run(['diff', first, 'latest'], { json: true });
    ok(d2, 'diff');
    assert.equal(metadataGets(d2), 0);
    // --no-cache reads the repository
    const nc = await run(['ls', first, '--no-cache']);
    ok(nc, 'ls --no-cache');
    assert.ok((nc.proxiedGets['data'] ?? 0) > 0);
    assert.equal(nc.cacheLine, undefined);
    assert.equal(nc.stdout, warm!.ls);
    figures.push(`ls --no-cache: ${fmt(nc)}`);
  });

  test('a damaged cached file (a tree pack, an index) is detected and fetched again', { timeout: 2 * 60_000 }, async () => {
    const dir = path.join(cacheBase, repoId);
    for (const d of ['packs', 'index']) {
      const names = await fsp.readdir(path.join(dir, d));
      for (const n of names) {
        const f = path.join(dir, d, n);
        const b = await fsp.readFile(f);
        b[b.length >> 1] = b[b.length >> 1]! ^ 0xff;
        await fsp.writeFile(f, b);
      }
    }
    const ls = await run(['ls', first]);
    ok(ls, 'ls');
    assert.equal(ls.stdout, warm!.ls);
    assert.ok((ls.proxiedGets['data'] ?? 0) >= 1 && (ls.proxiedGets['index'] ?? 0) >= 1, JSON.stringify(ls.proxiedGets));
    assert.match(ls.cacheLine ?? '', /damaged file\(s\) fetched again/);
    // the other snapshot's trees: its tree pack is read (and repaired) too
    const ls2 = await run(['ls', 'latest']);
    ok(ls2, 'ls latest');
    assert.equal(metadataGets(ls2), 1, JSON.stringify(ls2.proxiedGets));
    for (const d of ['packs', 'index']) {
      for (const n of await fsp.readdir(path.join(dir, d))) assert.equal(createHash('sha256').update(await fsp.readFile(path.join(dir, d, n))).digest('hex'), n, `${d}/${n} repaired`);
    }
    const again = await run(['ls', first]);
    ok(again, 'ls');
    assert.equal(metadataGets(again), 0);
  });

  test('a local repository: no cache, no requests line; the --json summary counts its calls', { timeout: 2 * 60_000 }, async () => {
    const local = path.join(base, 'local-repo');
    const lenv = { ...env, MESHBACK_REPO: local };
    assert.equal((await mb(['init'], { env: lenv })).code, 0);
    const b = await mb(['backup', path.join(src, 'd1')], { env: lenv });
    assert.equal(b.code, 0, b.stderr);
    assert.doesNotMatch(b.stderr, /requests:|cache:/);
    const j = await mb(['backup', path.join(src, 'd1'), '--json'], { env: lenv });
    const s = summary(j.stdout);
    const req = s['requests'] as Record<string, number>;
    assert.ok(req['PUT']! >= 2 && req['LIST']! >= 1, JSON.stringify(req));
    assert.equal(s['cache'], undefined);
  });
});
