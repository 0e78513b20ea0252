/**
 * End-to-end: HTTP hooks of `meshback run` (src/policy/http-hook.ts) against a real HTTP server
 * on 127.0.0.1: the context arrives as the JSON body (and in X-Meshback-* headers), a templated
 * body and the headers of a headers-file are sent, a 2xx answer lets the run go on; a 500 answer,
 * a port nobody listens on and a server that never answers each fail the run with exit 14 and one
 * line naming the method and URL, never a header value or the URL's query; on-error hooks get
 * the failure.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { mb, rmrf, summary, tmpdir } from '../helpers/cli.ts';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}
interface RunSummary {
  ok: boolean;
  snapshot_id?: string;
  phases: { phase: string; outcome: string }[];
  hooks: { phase: string; index: number; http?: string; outcome: string; status?: number; output: string }[];
  failure?: { phase: string; code: string; message: string };
}

const TOKEN = 'Bearer s3cr3t-t0ken-value';
const QUERY_SECRET = 'q-secret-42';

/** The port of a listening server closed again: nothing listens there now. */
async function deadPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('run with HTTP hooks', () => {
  let base: string;
  let config: string;
  let env: Record<string, string>;
  let server: http.Server;
  let url: string;
  const seen: Seen[] = [];
  const hanging = new Set<http.ServerResponse>();

  const run = (policy: string, ...extra: string[]) => mb(['run', policy, '--config', config, '--json', ...extra], { env, timeoutMs: 60_000 });
  const seenAt = (p: string): Seen[] => seen.filter((s) => s.url.split('?')[0] === p);

  before(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (body += d));
      req.on('end', () => {
        seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
        const p = (req.url ?? '').split('?')[0];
        if (p === '/hang') {
          // takes the request and never answers
          hanging.add(res);
          return;
        }
        if (p === '/fail') {
          res.writeHead(500, { 'content-type': 'text/plain' }).end('database exploded\nsecond line\n');
          return;
        }
        if (p === '/moved') {
          res.writeHead(302, { location: '/ok' }).end();
          return;
        }
        res.writeHead(p === '/ok-get' ? 200 : 202, { 'content-type': 'text/plain' }).end('accepted');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const dead = await deadPort();

    base = tmpdir('http-hooks');
    await fsp.mkdir(path.join(base, 'data'));
    await fsp.writeFile(path.join(base, 'data/config.json'), '{"listeners":[]}\n');
    await fsp.writeFile(path.join(base, 'pw'), 'pw\n');
    await fsp.writeFile(path.join(base, 'hook-headers'), `# the webhook's token\nAuthorization: ${TOKEN}\n\nX-Team: mesh\n`, { mode: 0o600 });
    config = path.join(base, 'policies.yaml');
    await fsp.writeFile(
      config,
      `version: 1
defaults:
  repository: ./repo
  password-file: ./pw
policies:
  good:
    sources: [data]
    hooks:
      pre:  [ { http: "${url}/ok", headers-file: hook-headers, timeout: 5s } ]
      post:
        - http: "${url}/ok-put"
          method: PUT
          headers: { X-Deploy: v1.4.2 }
          body: { text: "backup of \${MESHBACK_POLICY} saved \${MESHBACK_SNAPSHOT_ID}", phase: "\${MESHBACK_PHASE}", unknown: "[\${MESHBACK_NOPE}]" }
        - { http: "${url}/ok-get?token=${QUERY_SECRET}", method: GET }
  fails:
    sources: [data]
    hooks:
      pre: [ { http: "${url}/fail?token=${QUERY_SECRET}", headers-file: hook-headers } ]
      on-error: [ { http: "${url}/alert", headers: { Authorization: "${TOKEN}" } } ]
  refused:
    sources: [data]
    hooks:
      pre: [ { http: "http://127.0.0.1:${dead}/ready", timeout: 5s } ]
  hangs:
    sources: [data]
    hooks:
      pre: [ { http: "${url}/hang", timeout: 1s } ]
      on-error: [ { http: "${url}/alert-hang", body: "hook failed: \${MESHBACK_ERROR}" } ]
  redirected:
    sources: [data]
    hooks:
      post: [ { http: "${url}/moved" } ]
  no-headers-file:
    sources: [data]
    hooks:
      pre: [ { http: "${url}/ok", headers-file: does-not-exist } ]
`,
    );
    const init = await mb(['init', '--repo', path.join(base, 'repo'), '--password-file', path.join(base, 'pw')]);
    assert.equal(init.code, 0, init.stderr);
    env = {};
  });
  after(async () => {
    for (const r of hanging) r.destroy();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await rmrf(base);
  });

  test('2xx answers: the context as JSON, a templated body, headers from the file; the run goes on', async () => {
    const r = await run('good');
    assert.equal(r.code, 0, r.stderr);
    const s = summary(r.stdout) as unknown as RunSummary;
    assert.equal(s.ok, true);
    const id = s.snapshot_id!;
    assert.match(id, /^[0-9a-f]{64}$/);

    const [pre] = seenAt('/ok');
    assert.ok(pre !== undefined, 'the pre hook was called');
    assert.equal(pre.method, 'POST');
    assert.equal(pre.headers['content-type'], 'application/json');
    assert.equal(pre.headers['authorization'], TOKEN);
    assert.equal(pre.headers['x-team'], 'mesh');
    assert.equal(pre.headers['x-meshback-policy'], 'good');
    assert.equal(pre.headers['x-meshback-phase'], 'pre');
    const ctx = JSON.parse(pre.body) as Record<string, string>;
    assert.equal(ctx['policy'], 'good');
    assert.equal(ctx['phase'], 'pre');
    assert.equal(ctx['repository'], path.join(base, 'repo'));
    assert.equal(ctx['snapshot_id'], undefined, 'no snapshot before the backup');
    assert.ok(!Number.isNaN(Date.parse(ctx['time']!)));

    const [put] = seenAt('/ok-put');
    assert.equal(put?.method, 'PUT');
    assert.equal(put.headers['x-deploy'], 'v1.4.2');
    assert.equal(put.headers['x-meshback-snapshot-id'], id);
    assert.deepEqual(JSON.parse(put.body), { text: `backup of good saved ${id}`, phase: 'post', unknown: '[]' });

    const [get] = seenAt('/ok-get');
    assert.equal(get?.method, 'GET');
    assert.equal(get.body, '');
    assert.equal(get.url, `/ok-get?token=${QUERY_SECRET}`);

    // the report: each hook by method and URL (the query hidden), its status and answer
    assert.deepEqual(
      s.hooks.map((h) => [h.phase, h.http, h.outcome, h.status, h.output]),
      [
        ['pre', `POST ${url}/ok`, 'ok', 202, 'accepted'],
        ['post', `PUT ${url}/ok-put`, 'ok', 202, 'accepted'],
        ['post', `GET ${url}/ok-get?...`, 'ok', 200, 'accepted'],
      ],
    );
    for (const text of [r.stdout, r.stderr]) {
      assert.ok(!text.includes('s3cr3t'), 'a header value was printed');
      assert.ok(!text.includes(QUERY_SECRET), "the URL's query was printed");
    }
  });

  test('an answer of 500: exit 14, one line naming the URL, the on-error hook gets the failure', async () => {
    const n = seen.length;
    const r = await run('fails');
    assert.equal(r.code, 14, r.stderr);
    const line = `meshback: pre hook 1 (POST ${url}/fail?...) answered HTTP 500 Internal Server Error: database exploded`;
    assert.ok(r.stderr.split('\n').includes(line), r.stderr);
    const s = summary(r.stdout) as unknown as RunSummary;
    assert.deepEqual(s.failure && { phase: s.failure.phase, code: s.failure.code }, { phase: 'pre', code: 'HOOK' });
    assert.equal(s.phases.find((p) => p.phase === 'backup')?.outcome, 'skipped');
    assert.equal(s.hooks[0]?.status, 500);
    const [alert] = seen.slice(n).filter((x) => x.url === '/alert');
    assert.ok(alert !== undefined, 'the on-error hook was called');
    assert.equal(alert.headers['authorization'], TOKEN);
    const ctx = JSON.parse(alert.body) as Record<string, string>;
    assert.equal(ctx['phase'], 'on-error');
    assert.equal(ctx['failed_phase'], 'pre');
    assert.match(ctx['error']!, /answered HTTP 500/);
    for (const text of [r.stdout, r.stderr]) {
      assert.ok(!text.includes('s3cr3t'), 'a header value was printed');
      assert.ok(!text.includes(QUERY_SECRET), "the URL's query was printed");
    }
  });

  test('a port nobody listens on: exit 14, the connection refused', async () => {
    const r = await run('refused');
    assert.equal(r.code, 14, r.stderr);
    assert.match(r.stderr, /^meshback: pre hook 1 \(POST http:\/\/127\.0\.0\.1:\d+\/ready\) failed: the connection was refused \(ECONNREFUSED\): check the URL and that the endpoint is up$/m);
  });

  test('a server that never answers: the timeout fails the hook, exit 14, within seconds', async () => {
    const n = seen.length;
    const r = await run('hangs');
    assert.equal(r.code, 14, r.stderr);
    assert.match(r.stderr, new RegExp(`^meshback: pre hook 1 \\(POST ${url.replace(/\./g, '\\.')}/hang\\) did not answer within its timeout of 1s: check the endpoint, or raise the hook's timeout$`, 'm'));
    assert.ok(r.ms < 20_000, `took ${r.ms} ms`);
    const s = summary(r.stdout) as unknown as RunSummary;
    assert.equal(s.hooks[0]?.outcome, 'timeout');
    // a text body, with the error put in
    const [alert] = seen.slice(n).filter((x) => x.url === '/alert-hang');
    assert.equal(alert?.headers['content-type'], 'text/plain; charset=utf-8');
    assert.match(alert.body, /^hook failed: pre hook 1 \(POST .*\/hang\) did not answer within its timeout of 1s/);
  });

  test('a redirect is not followed; a missing headers-file is named', async () => {
    const moved = await run('redirected');
    assert.equal(moved.code, 14, moved.stderr);
    assert.match(moved.stderr, /^meshback: post hook 1 \(POST .*\/moved\) answered HTTP 302 Found \(redirects are not followed: give the URL it points to\)$/m);
    assert.equal(seen.filter((x) => x.url === '/ok' && x.headers['x-meshback-policy'] === 'redirected').length, 0, 'the redirect was followed');

    const missing = await run('no-headers-file');
    assert.equal(missing.code, 14, missing.stderr);
    assert.match(missing.stderr, /^meshback: pre hook 1 \(POST .*\/ok\) failed: its headers-file .*does-not-exist cannot be read \(ENOENT\): check that it exists and is readable$/m);
  });
});
