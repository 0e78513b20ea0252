/**
 * End-to-end: the HTTP API of a real `meshback server` process (bin/meshback) on 127.0.0.1 over a
 * real local repository, and `meshback trigger`: trigger --wait returns the snapshot id, which
 * `meshback snapshots --json` lists with the deploy tag; the run's record and the listing
 * endpoints answer to their schemas; 401 without or with a wrong token; 409 (and exit 16) while
 * the policy runs; the run's server-sent events from its start, and every run's; --wait past
 * --timeout (exit 17); runs.jsonl read back after a restart; a non-loopback --listen without token
 * and TLS refused (exit 2); HTTPS with a CA made by openssl (trusted with --cacert, exit 15
 * without); trigger --wait across a server killed mid-run (exit 15); 429 on a burst of triggers and
 * of failed authentications.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BIN, mb, rmrf, tmpdir } from '../helpers/cli.ts';
import { makeTestPki } from '../helpers/tls.ts';
import { ErrorAnswerSchema, HealthSchema, PolicyListSchema, RunListSchema, RunRecordSchema, SnapshotListSchema, SseEventDataSchema, TriggerAnswerSchema } from '../../src/server/schemas.ts';
import { checked } from '../../src/util/schema.ts';
import type { v } from '../../src/util/schema.ts';

const live = new Set<{ kill(sig: NodeJS.Signals): boolean }>();

/** A running `meshback server --json`: its API's URL (from the start event), its output, its exit. */
async function startServer(args: string[], env: Record<string, string>): Promise<{ url: string; stderr: () => string; stdout: () => string; exited: Promise<number | null>; kill(sig: NodeJS.Signals): boolean }> {
  const p = spawn(BIN, ['server', '--json', ...args], { env: { ...process.env, MESHBACK_TEST_SCRYPT_N: '1024', MESHBACK_CACHE_DIR: path.join(os.tmpdir(), 'meshback-test-cache'), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((res) => p.on('exit', (code) => res(code)));
  const killer = setTimeout(() => p.kill('SIGKILL'), 120_000);
  live.add(p);
  void exited.then(() => {
    clearTimeout(killer);
    live.delete(p);
  });
  const t0 = performance.now();
  for (;;) {
    const start = stdout.split('\n').find((l) => l.includes('"event":"start"'));
    if (start !== undefined) return { url: (JSON.parse(start) as { api: string }).api, stderr: () => stderr, stdout: () => stdout, exited, kill: (s) => p.kill(s) };
    if (performance.now() - t0 > 20_000 || p.exitCode !== null) throw new Error(`the server did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `body` parsed and checked by `schema` (the API's own schemas: a test fails when an answer does not fit them) */
async function json<S extends v.GenericSchema>(schema: S, res: Response): Promise<v.InferOutput<S>> {
  const text = await res.text();
  return checked(schema, JSON.parse(text), (m) => new Error(`${res.url} ${res.status}: ${m}: ${text.slice(0, 500)}`));
}

/** The server-sent events of a stream until it ends (or `ms` pass): [event name, data]. */
async function sse(url: string, headers: Record<string, string>, ms = 20_000): Promise<[string, unknown][]> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(ms) });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const text = await res.text();
  return text
    .split('\n\n')
    .filter((b) => /^event: /m.test(b))
    .map((b) => [/^event: (.*)$/m.exec(b)![1]!, JSON.parse(/^data: (.*)$/m.exec(b)![1]!) as unknown]);
}

/** The server-sent events of a stream that does not end by itself, until `stop` holds for one (then the stream is closed). */
async function sseUntil(url: string, headers: Record<string, string>, ready: () => void, stop: (name: string, data: unknown) => boolean, ms = 20_000): Promise<[string, unknown][]> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), ms);
  const res = await fetch(url, { headers, signal: ctl.signal });
  assert.equal(res.status, 200);
  const out: [string, unknown][] = [];
  const decoder = new TextDecoder();
  let buf = '';
  try {
    const reader = res.body!.getReader();
    ready();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const name = /^event: (.*)$/m.exec(block)?.[1];
        if (name === undefined) continue;
        const data = JSON.parse(/^data: (.*)$/m.exec(block)![1]!) as unknown;
        out.push([name, data]);
        if (stop(name, data)) {
          ctl.abort();
          return out;
        }
      }
    }
  } finally {
    clearTimeout(timer);
  }
  throw new Error(`the stream ended: ${JSON.stringify(out).slice(0, 2000)}`);
}

describe('server API and meshback trigger', () => {
  let base: string;
  let repo: string;
  let config: string;
  let stateDir: string;
  let tokenFile: string;
  let token: string;
  let env: Record<string, string>;
  let server: Awaited<ReturnType<typeof startServer>>;
  let auth: Record<string, string>;

  before(async () => {
    base = tmpdir('server-api');
    repo = path.join(base, 'repo');
    stateDir = path.join(base, 'state');
    await fsp.mkdir(path.join(base, 'data'), { recursive: true });
    await fsp.writeFile(path.join(base, 'data/orders.csv'), 'id,amount\n1,10\n');
    await fsp.writeFile(path.join(base, 'pw'), 'pw\n');
    token = 'test-token-0123456789abcdef';
    tokenFile = path.join(base, 'token');
    await fsp.writeFile(tokenFile, token + '\n', { mode: 0o600 });
    config = path.join(base, 'policies.yaml');
    await fsp.writeFile(
      config,
      `version: 1
defaults:
  repository: ./repo
  password-file: ./pw
policies:
  nightly:
    sources: [data]
    schedule: "cron: 0 2 * * *"
    rpo: 25h
  orders:
    sources: [data]
    tags: { app: orders }
  slow:
    sources: [data]
    hooks:
      pre: [ { exec: [sleep, "3"] } ]
`,
    );
    const init = await mb(['init', '--repo', repo, '--password-file', path.join(base, 'pw')]);
    assert.equal(init.code, 0, init.stderr);
    env = { MESHBACK_REPO: repo, MESHBACK_PASSWORD: 'pw' };
    auth = { authorization: `Bearer ${token}` };
    server = await startServer(['--config', config, '--state-dir', stateDir, '--listen', '127.0.0.1:0', '--token-file', tokenFile], env);
  });
  after(async () => {
    for (const p of live) p.kill('SIGKILL');
    await rmrf(base);
  });

  test('trigger --wait returns the snapshot id; snapshots --json lists it with the deploy tag; the run record fits its schema', async () => {
    const r = await mb(['trigger', 'orders', '--server', server.url, '--token-file', tokenFile, '--tag', 'deploy=v1.4.2', '--wait', '--timeout', '1m'], { timeoutMs: 90_000 });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const snap = /snapshot ([0-9a-f]{64})/.exec(r.stdout)?.[1];
    assert.ok(snap !== undefined, r.stdout);
    const runId = /^run ([0-9a-f]{16}) of orders: (running|queued)$/m.exec(r.stdout)?.[1];
    assert.ok(runId !== undefined, r.stdout);

    const list = await mb(['snapshots', '--json'], { env });
    const rows = JSON.parse(list.stdout.split('\n').find((l) => l.startsWith('['))!) as { id: string; tags: string[] }[];
    const row = rows.find((x) => x.id === snap);
    assert.ok(row !== undefined, `snapshot ${snap} is in the repository`);
    assert.deepEqual(row.tags, ['app=orders', 'deploy=v1.4.2', 'policy=orders']);

    const rec = await json(RunRecordSchema, await fetch(`${server.url}/v1/runs/${runId}`, { headers: auth }));
    assert.equal(rec.status, 'succeeded');
    assert.equal(rec.reason, 'trigger');
    assert.equal(rec.kind, 'backup');
    assert.deepEqual(rec.tags, { deploy: 'v1.4.2' });
    assert.equal(rec.snapshotId, snap);
    assert.equal(rec.report?.ok, true);

    // --json: one summary with the snapshot id
    const j = await mb(['trigger', 'orders', '--server', server.url, '--token-file', tokenFile, '--tag', 'deploy=v1.4.3', '--wait', '--json'], { timeoutMs: 90_000 });
    assert.equal(j.code, 0, j.stderr);
    const sum = JSON.parse(j.stdout.trim().split('\n').at(-1)!) as { message_type: string; status: string; snapshot_id: string; tags: Record<string, string> };
    assert.equal(sum.message_type, 'summary');
    assert.equal(sum.status, 'succeeded');
    assert.match(sum.snapshot_id, /^[0-9a-f]{64}$/);
    assert.deepEqual(sum.tags, { deploy: 'v1.4.3' });

    // the listings answer to their schemas
    const runs = await json(RunListSchema, await fetch(`${server.url}/v1/runs?policy=orders&limit=5`, { headers: auth }));
    assert.deepEqual(runs.map((x) => x.tags['deploy']), ['v1.4.3', 'v1.4.2'], 'newest first');
    assert.ok(runs.every((x) => x.report === undefined), 'lists leave the reports out');
    const policies = await json(PolicyListSchema, await fetch(`${server.url}/v1/policies`, { headers: auth }));
    assert.deepEqual(policies.map((p) => p.name), ['nightly', 'orders', 'slow']);
    const nightly = policies[0]!;
    assert.equal(nightly.schedule, 'cron: 0 2 * * *');
    assert.ok(nightly.nextRun !== undefined && Date.parse(nightly.nextRun) > Date.now());
    assert.equal(nightly.rpoSeconds, 25 * 3600);
    assert.equal(policies[1]!.lastRun?.tags['deploy'], 'v1.4.3');
    assert.equal(policies[1]!.schedule, undefined, 'a policy without a schedule runs when triggered');
    const snaps = await json(SnapshotListSchema, await fetch(`${server.url}/v1/snapshots?policy=orders`, { headers: auth }));
    assert.equal(snaps.length, 2);
    assert.equal(snaps[0]!.snapshot.tags.includes('deploy=v1.4.3'), true, 'newest first');
    assert.ok(snaps.some((s) => s.id === snap));
    assert.deepEqual(await json(RunListSchema, await fetch(`${server.url}/v1/drills`, { headers: auth })), []);
    const h = await json(HealthSchema, await fetch(`${server.url}/healthz`));
    assert.equal(h.ok, true);
  });

  test('401 without a token or with a wrong one (the CLI: exit 16); a bad body is 400 with one line (exit 2); an unknown policy 404 (exit 5)', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789abcdef' }, { authorization: `Basic ${token}` }]) {
      const res = await fetch(`${server.url}/v1/runs`, { method: 'POST', headers, body: JSON.stringify({ policy: 'orders' }) });
      assert.equal(res.status, 401);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="meshback"');
      const e = await json(ErrorAnswerSchema, res);
      assert.equal(e.error.code, 'UNAUTHORIZED');
    }
    assert.equal((await fetch(`${server.url}/v1/runs`)).status, 401, 'reading needs the token too');
    const wrong = path.join(base, 'wrong-token');
    await fsp.writeFile(wrong, 'wrong-token-0123456789abcdef\n');
    const r = await mb(['trigger', 'orders', '--server', server.url, '--token-file', wrong]);
    assert.equal(r.code, 16, r.stderr);
    assert.match(r.stderr, /^meshback: trigger orders: refused \(401\): the token is wrong/);
    assert.equal(r.stderr.trim().split('\n').length, 1);

    const bad = await fetch(`${server.url}/v1/runs`, { method: 'POST', headers: auth, body: JSON.stringify({ policy: 'orders', tags: { deploy: 3 } }) });
    assert.equal(bad.status, 400);
    const e = await json(ErrorAnswerSchema, bad);
    assert.match(e.error.message, /field "tags\.deploy" must be a string/);
    assert.ok(!e.error.message.includes('\n'));
    const notJson = await fetch(`${server.url}/v1/runs`, { method: 'POST', headers: auth, body: '{policy' });
    assert.equal(notJson.status, 400);
    const big = await fetch(`${server.url}/v1/runs`, { method: 'POST', headers: auth, body: JSON.stringify({ policy: 'orders', tags: { x: 'y'.repeat(20_000) } }) });
    assert.equal(big.status, 413);
    assert.match((await json(ErrorAnswerSchema, big)).error.message, /larger than 16 KiB/);
    const r2 = await mb(['trigger', 'orders', '--server', server.url, '--token-file', tokenFile, '--tag', 'policy=other']);
    assert.equal(r2.code, 2, r2.stderr);
    const r3 = await mb(['trigger', 'nosuch', '--server', server.url, '--token-file', tokenFile]);
    assert.equal(r3.code, 5, r3.stderr);
    assert.match(r3.stderr, /no policy nosuch in .*policies\.yaml/);
    const r4 = await mb(['trigger', 'orders', '--server', 'http://127.0.0.1:9', '--token-file', tokenFile]);
    assert.equal(r4.code, 15, r4.stderr);
    assert.match(r4.stderr, /cannot reach the meshback server at http:\/\/127\.0\.0\.1:9 \(ECONNREFUSED\)/);
  });

  test('409 while the policy runs (it names the run; the CLI exits 16); the run\'s events stream from its start; /v1/events streams every run', async () => {
    // the stream of every run, opened before the trigger, until the triggered run's end
    let ready: () => void = () => undefined;
    const opened = new Promise<void>((r) => (ready = r));
    let runId = '';
    const all = sseUntil(`${server.url}/v1/events`, auth, ready, (name, d) => name === 'run' && (d as { id: string }).id === runId && (d as { status: string }).status === 'succeeded');
    await opened;
    const post = await fetch(`${server.url}/v1/runs`, { method: 'POST', headers: auth, body: JSON.stringify({ policy: 'slow', tags: { deploy: 'v2' } }) });
    assert.equal(post.status, 202);
    const accepted = await json(TriggerAnswerSchema, post);
    runId = accepted.id;
    assert.equal(post.headers.get('location'), `/v1/runs/${accepted.id}`);
    // subscribe right after the POST: the buffered events come first
    const events = sse(`${server.url}${accepted.url}/events`, auth);
    const again = await fetch(`${server.url}/v1/runs`, { method: 'POST', headers: auth, body: JSON.stringify({ policy: 'slow' }) });
    assert.equal(again.status, 409);
    const e = await json(ErrorAnswerSchema, again);
    assert.equal(e.error.code, 'BUSY');
    assert.equal(e.error.run, accepted.id);
    assert.match(e.error.message, new RegExp(`run ${accepted.id} of slow is running`));
    const cli = await mb(['trigger', 'slow', '--server', server.url, '--token-file', tokenFile]);
    assert.equal(cli.code, 16, cli.stderr);
    assert.match(cli.stderr, /refused \(409\)/);
    // the server's log names who triggered, accepted or refused
    const logged = server.stdout().split('\n').filter((l) => l.includes('"event":"trigger"')).map((l) => JSON.parse(l) as { policy: string; client: string; run?: string; refused?: number; tags: Record<string, string> });
    assert.deepEqual(logged.filter((l) => l.policy === 'slow').map((l) => [l.client, l.run ?? l.refused]), [['127.0.0.1', accepted.id], ['127.0.0.1', 409], ['127.0.0.1', 409]]);

    const got = await events;
    const runs = got.filter(([n]) => n === 'run').map(([, d]) => checked(RunRecordSchema, d, (m) => new Error(m)));
    const evs = got.filter(([n]) => n === 'event').map(([, d]) => checked(SseEventDataSchema, d, (m) => new Error(m)));
    assert.equal(runs[0]!.status, 'running');
    assert.equal(runs.at(-1)!.status, 'succeeded', 'the stream ends with the run\'s end');
    assert.match(runs.at(-1)!.snapshotId ?? '', /^[0-9a-f]{64}$/);
    assert.ok(evs.every((x) => x.run === accepted.id));
    const seqs = evs.map((x) => x.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'in order');
    assert.equal(seqs[0], 1, 'from the first event of the run');
    const kinds = evs.map((x) => (x.event.type === 'phase' ? `phase:${String(x.event['phase'])}` : x.event.type));
    for (const k of ['op-start', 'phase:pre', 'phase:backup', 'summary']) assert.ok(kinds.includes(k), `${k} in ${kinds.join(',')}`);
    assert.ok(kinds.indexOf('phase:pre') < kinds.indexOf('phase:backup'));
    // a finished run's stream: its buffered events, then its record, then the end
    const later = await sse(`${server.url}${accepted.url}/events`, auth, 5000);
    assert.equal(later.at(-1)![0], 'run');
    assert.equal((later.at(-1)![1] as { status: string }).status, 'succeeded');

    const global = await all;
    const mine = global.filter(([n, d]) => (n === 'run' ? (d as { id: string }).id : (d as { run: string }).run) === accepted.id);
    assert.deepEqual(mine.filter(([n]) => n === 'run').map(([, d]) => (d as { status: string }).status), ['queued', 'running', 'succeeded']);
    assert.deepEqual(
      mine.filter(([n]) => n === 'event').map(([, d]) => (d as { seq: number }).seq),
      evs.map((x) => x.seq),
      'the same events as the run\'s own stream',
    );

    // --wait past --timeout: exit 17, the run goes on
    const t = await mb(['trigger', 'slow', '--server', server.url, '--token-file', tokenFile, '--wait', '--timeout', '1s'], { timeoutMs: 30_000 });
    assert.equal(t.code, 17, t.stderr);
    assert.match(t.stderr, /^meshback: run ([0-9a-f]{16}) did not end within 1s \(--timeout\): it goes on on the server; follow it with GET \/v1\/runs\/\1\n$/);
    const id = /run ([0-9a-f]{16})/.exec(t.stderr)![1]!;
    // --wait while the policy is busy: triggered once the running run ends (a pipeline does not fail on a backup that happens to run)
    const waiting = await mb(['trigger', 'slow', '--server', server.url, '--token-file', tokenFile, '--wait', '--timeout', '2m'], { timeoutMs: 150_000 });
    assert.equal(waiting.code, 0, waiting.stderr);
    // the burst of triggers above may have used up the rate limit: then it waits that out first
    assert.match(waiting.stdout, new RegExp(`slow is busy \\(run ${id} of slow is running.*\\): waiting to trigger it, up to --timeout|the server limits triggers \\(429\\): trying again in \\d+ s, up to --timeout`));
    assert.match(waiting.stdout, /run [0-9a-f]{16} of slow: succeeded in [\d.]+ s, snapshot [0-9a-f]{64}/);
    const end = (await sse(`${server.url}/v1/runs/${id}/events`, auth)).at(-1)!;
    assert.equal((end[1] as { status: string }).status, 'succeeded', 'the run went on and ended');
  });

  test('runs.jsonl: the runs are read back after a restart; a bad --listen is refused before anything runs', async () => {
    server.kill('SIGTERM');
    assert.equal(await server.exited, 0, server.stderr());
    const lines = (await fsp.readFile(path.join(stateDir, 'runs.jsonl'), 'utf8')).trim().split('\n');
    assert.equal(lines.length, 15, 'queued, running, succeeded of each of the 5 runs');
    server = await startServer(['--config', config, '--state-dir', stateDir, '--listen', '127.0.0.1:0', '--token-file', tokenFile], env);
    const runs = await json(RunListSchema, await fetch(`${server.url}/v1/runs`, { headers: auth }));
    assert.deepEqual(runs.map((r) => [r.policy, r.status]), [['slow', 'succeeded'], ['slow', 'succeeded'], ['slow', 'succeeded'], ['orders', 'succeeded'], ['orders', 'succeeded']]);
    // a run going while refused servers start on the same state directory: none may record it interrupted
    const going = await json(TriggerAnswerSchema, await fetch(`${server.url}/v1/runs`, { method: 'POST', headers: auth, body: JSON.stringify({ policy: 'slow' }) }));
    const inUse = await mb(['server', '--config', config, '--state-dir', stateDir, '--listen', new URL(server.url).host], { env, timeoutMs: 30_000 });
    assert.equal(inUse.code, 2, inUse.stderr);
    assert.match(inUse.stderr, /^meshback: cannot listen on 127\.0\.0\.1:\d+: the port is in use \(another meshback server\?\): give another --listen HOST:PORT, or --listen none\n$/);
    const rec = await json(RunRecordSchema, await fetch(`${server.url}${going.url}`, { headers: auth }));
    assert.equal(rec.status, 'running', 'the run was still going while the refused server started');

    for (const [args, re] of [
      [['--listen', '0.0.0.0:0'], /--listen 0\.0\.0\.0:0 is not a loopback address: the API there needs a token and TLS: .*\(missing: --token-file and --tls-cert\/--tls-key\)/],
      [['--listen', '0.0.0.0:0', '--token-file', tokenFile], /is not a loopback address: .*\(missing: --tls-cert\/--tls-key\)/],
      [['--listen', 'localhost'], /--listen "localhost" is not HOST:PORT/],
      [['--listen', '127.0.0.1:0', '--tls-cert', tokenFile], /--tls-cert needs --tls-key/],
      [['--listen', '127.0.0.1:0', '--token-file', path.join(base, 'pw')], /must hold one token of at least 16 characters/],
    ] as [string[], RegExp][]) {
      // the state directory of the running server: a refused start must not touch its files
      const r = await mb(['server', '--config', config, '--state-dir', stateDir, ...args], { env, timeoutMs: 30_000 });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, re);
    }
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200, 'the running server goes on');
    const end = (await sse(`${server.url}${going.url}/events`, auth)).at(-1)!;
    assert.equal((end[1] as { status: string }).status, 'succeeded');
    assert.ok(!(await fsp.readFile(path.join(stateDir, 'runs.jsonl'), 'utf8')).includes('INTERRUPTED'), 'no refused start touched runs.jsonl');
  });

  test('HTTPS: trigger --wait trusts the server with --cacert; without it the certificate is refused (exit 15)', async () => {
    const pki = await makeTestPki(path.join(base, 'pki'));
    // a token file others can read: a warning, not a refusal
    const shared = path.join(base, 'token-shared');
    await fsp.writeFile(shared, token + '\n', { mode: 0o644 });
    const tls = await startServer(['--config', config, '--state-dir', path.join(base, 'state-tls'), '--listen', '127.0.0.1:0', '--token-file', shared, '--tls-cert', pki.crt, '--tls-key', pki.key], env);
    assert.match(tls.stdout(), /"message_type":"warning","message":"--token-file .*token-shared can be read by other users: make it private \(chmod 600 /);
    assert.ok(!server.stdout().includes('can be read by other users'), 'a private token file: no warning');
    assert.match(tls.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const r = await mb(['trigger', 'orders', '--server', tls.url, '--token-file', tokenFile, '--cacert', pki.caCrt, '--tag', 'deploy=tls', '--wait'], { timeoutMs: 90_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /succeeded in .*, snapshot [0-9a-f]{64}/);
    const untrusted = await mb(['trigger', 'orders', '--server', tls.url, '--token-file', tokenFile]);
    assert.equal(untrusted.code, 15, untrusted.stderr);
    assert.match(untrusted.stderr, /the TLS certificate of https:\/\/127\.0\.0\.1:\d+ is not trusted .*--cacert FILE/);
    const plain = await mb(['trigger', 'orders', '--server', tls.url.replace('https:', 'http:'), '--token-file', tokenFile]);
    assert.equal(plain.code, 15, plain.stderr);
    tls.kill('SIGTERM');
    assert.equal(await tls.exited, 0, tls.stderr());
  });

  test('trigger --wait across a server killed mid-run and restarted on its port: the stream breaks, the client reconnects and finds the run interrupted (exit 15)', async () => {
    const dir = path.join(base, 'state-killed');
    const first = await startServer(['--config', config, '--state-dir', dir, '--listen', '127.0.0.1:0', '--token-file', tokenFile], env);
    const waiting = mb(['trigger', 'slow', '--server', first.url, '--token-file', tokenFile, '--wait', '--timeout', '1m'], { timeoutMs: 90_000 });
    let running: { id: string } | undefined;
    for (let i = 0; i < 200 && running === undefined; i++) {
      running = (await json(RunListSchema, await fetch(`${first.url}/v1/runs?policy=slow&status=running`, { headers: auth })))[0];
      if (running === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(running !== undefined, 'the triggered run is going');
    first.kill('SIGKILL');
    await first.exited;
    const second = await startServer(['--config', config, '--state-dir', dir, '--listen', new URL(first.url).host, '--token-file', tokenFile], env);
    const r = await waiting;
    assert.equal(r.code, 15, r.stderr + r.stdout);
    assert.match(r.stderr, new RegExp(`^meshback: run ${running.id} of slow: the server stopped while the run was running: it did not finish \\(nothing already stored is lost\\): trigger it again\\n$`));
    const rec = await json(RunRecordSchema, await fetch(`${second.url}/v1/runs/${running.id}`, { headers: auth }));
    assert.equal(rec.status, 'failed');
    assert.equal(rec.error?.code, 'INTERRUPTED');
    second.kill('SIGTERM');
    assert.equal(await second.exited, 0, second.stderr());
  });

  test('a scheduled drill is a run record of kind drill (GET /v1/drills); GET /metrics (no token on loopback) shows the runs and the drill', async () => {
    const dir = path.join(base, 'drills');
    await fsp.mkdir(dir, { recursive: true });
    const cfg = path.join(dir, 'policies.yaml');
    await fsp.writeFile(cfg, `version: 1\ndefaults: { repository: ${repo}, password-file: ${path.join(base, 'pw')} }\npolicies:\n  drilled:\n    sources: [${path.join(base, 'data')}]\n    rpo: 1h\n    drill: { schedule: every 1s }\n`);
    const s = await startServer(['--config', cfg, '--state-dir', path.join(dir, 'state'), '--listen', '127.0.0.1:0', '--token-file', tokenFile], env);
    const r = await mb(['trigger', 'drilled', '--server', s.url, '--token-file', tokenFile, '--tag', 'deploy=d1', '--wait'], { timeoutMs: 90_000 });
    assert.equal(r.code, 0, r.stderr);
    const snap = /snapshot ([0-9a-f]{64})/.exec(r.stdout)![1]!;
    let drill: v.InferOutput<typeof RunRecordSchema> | undefined;
    for (let i = 0; i < 300 && drill === undefined; i++) {
      drill = (await json(RunListSchema, await fetch(`${s.url}/v1/drills?policy=drilled`, { headers: auth }))).find((d) => d.status === 'succeeded' && d.snapshotId === snap);
      if (drill === undefined) await new Promise((res) => setTimeout(res, 100));
    }
    assert.ok(drill !== undefined, `a drill of snapshot ${snap} succeeded: ${s.stdout().slice(-2000)}`);
    assert.equal(drill.kind, 'drill');
    const full = await json(RunRecordSchema, await fetch(`${s.url}/v1/runs/${drill.id}`, { headers: auth }));
    assert.equal((full.report as { verified?: boolean }).verified, true);
    const res = await fetch(`${s.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    const text = await res.text();
    assert.match(text, /^meshback_last_run_success\{policy="drilled"\} 1$/m);
    assert.match(text, /^meshback_drill_last_success\{policy="drilled"\} 1$/m);
    assert.match(text, /^meshback_runs_total\{[^}]*kind="backup"[^}]*\} 1$/m);
    assert.match(text, /^meshback_rpo_exceeded\{policy="drilled"\} 0$/m);
    s.kill('SIGTERM');
    assert.equal(await s.exited, 0, s.stderr());
  });

  // last: it empties this client's buckets
  test('429 with Retry-After on a burst of triggers, and on a burst of failed authentications', async () => {
    let limited: Response | undefined;
    let before429 = 0;
    for (let i = 0; i < 12 && limited === undefined; i++) {
      // a body that names no policy: counted, then refused (400), so the burst starts no run
      const res = await fetch(`${server.url}/v1/runs`, { method: 'POST', headers: auth, body: '{}' });
      if (res.status === 429) limited = res;
      else {
        assert.equal(res.status, 400);
        before429++;
        await res.text();
      }
    }
    assert.ok(limited !== undefined, 'a burst of 12 triggers is limited');
    assert.ok(before429 <= 10, `${before429} triggers passed before the limit`);
    assert.match(limited.headers.get('retry-after') ?? '', /^\d+$/);
    assert.equal((await json(ErrorAnswerSchema, limited)).error.code, 'RATE_LIMITED');
    const cli = await mb(['trigger', 'orders', '--server', server.url, '--token-file', tokenFile]);
    assert.equal(cli.code, 16, cli.stderr);
    assert.match(cli.stderr, /refused \(429\): too many triggers/);
    assert.equal((await fetch(`${server.url}/v1/policies`, { headers: auth })).status, 200, 'reading is not limited');

    let failures = 0;
    let authLimited: Response | undefined;
    for (let i = 0; i < 12 && authLimited === undefined; i++) {
      const res = await fetch(`${server.url}/v1/policies`, { headers: { authorization: `Bearer guess-${i}-0123456789abcdef` } });
      if (res.status === 429) authLimited = res;
      else {
        assert.equal(res.status, 401);
        failures++;
        await res.text();
      }
    }
    assert.ok(authLimited !== undefined && failures <= 10, `${failures} failed authentications before the limit`);
    assert.match(authLimited.headers.get('retry-after') ?? '', /^\d+$/);
    const locked = await fetch(`${server.url}/v1/policies`, { headers: auth });
    assert.equal(locked.status, 429, 'the right token waits too: guessing is slowed down for the client');
    await locked.text();
    server.kill('SIGTERM');
    assert.equal(await server.exited, 0, server.stderr());
  });
});
