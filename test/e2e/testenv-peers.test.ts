/**
 * The test environment's peers, built from their Go modules (lab/testenv): current restic and
 * kopia print their pinned versions and back up and restore a small tree byte for byte;
 * toxiproxy's latency and reset_peer toxics take effect on a loopback TCP connection; and a
 * server started by the library stops, and its data goes, when the test process that started
 * it is SIGKILLed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { binary, COMPONENTS, startToxiproxy, type ToxiproxyEnv } from '../../lab/testenv/index.ts';
import { ROOT, rmrf, runProcess, tmpdir } from '../helpers/cli.ts';

/** a small tree: nested directories, an empty file, a 3 MiB file, names with spaces and unicode */
async function makeTree(dir: string): Promise<Map<string, string>> {
  const files = new Map<string, Buffer>([
    ['a.txt', Buffer.from('hello restic and kopia\n')],
    ['empty', Buffer.alloc(0)],
    ['sub/big.bin', randomBytes(3 * 1024 * 1024)],
    ['sub/deeper/ünïcode name.json', Buffer.from(JSON.stringify({ mesh: 'istio', n: 42 }))],
    ['sub/deeper/x.log', Buffer.from('line\n'.repeat(5000))],
  ]);
  const hashes = new Map<string, string>();
  for (const [rel, data] of files) {
    await fsp.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await fsp.writeFile(path.join(dir, rel), data);
    hashes.set(rel, createHash('sha256').update(data).digest('hex'));
  }
  return hashes;
}

async function assertTree(dir: string, want: Map<string, string>): Promise<void> {
  for (const [rel, h] of want) {
    const got = createHash('sha256')
      .update(await fsp.readFile(path.join(dir, rel)))
      .digest('hex');
    assert.equal(got, h, `${rel} restored with other bytes`);
  }
}

let base: string;
before(() => {
  base = tmpdir('testenv-peers');
});
after(() => rmrf(base));

test('testenv: restic (current release, built from its Go module) prints its version, backs up and restores a tree', { timeout: 30 * 60_000 }, async () => {
  const restic = await binary('restic');
  const v = await runProcess(restic, ['version']);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, new RegExp(`restic ${COMPONENTS.restic.version.slice(1).replace(/\./g, '\\.')} `));
  const src = path.join(base, 'restic-src');
  const want = await makeTree(src);
  const env = { RESTIC_REPOSITORY: path.join(base, 'restic-repo'), RESTIC_PASSWORD: 'testenv-secret', RESTIC_CACHE_DIR: path.join(base, 'restic-cache') };
  for (const args of [['init'], ['backup', '--json', '-q', '.'], ['check', '--read-data']]) {
    const r = await runProcess('sh', ['-c', `cd "$0" && exec "$@"`, src, restic, ...args], env);
    assert.equal(r.code, 0, `restic ${args.join(' ')}: ${r.stderr}`);
  }
  const target = path.join(base, 'restic-restore');
  const r = await runProcess(restic, ['restore', 'latest', '--target', target], env);
  assert.equal(r.code, 0, r.stderr);
  await assertTree(target, want);
});

test('testenv: kopia (current release, built from its Go module) prints its version, backs up and restores a tree', { timeout: 30 * 60_000 }, async () => {
  const kopia = await binary('kopia');
  const v = await runProcess(kopia, ['--version']);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout + v.stderr, new RegExp(`^${COMPONENTS.kopia.version.slice(1).replace(/\./g, '\\.')}`, 'm'));
  const src = path.join(base, 'kopia-src');
  const want = await makeTree(src);
  const env = {
    KOPIA_PASSWORD: 'testenv-secret',
    KOPIA_CONFIG_PATH: path.join(base, 'kopia.config'),
    KOPIA_LOG_DIR: path.join(base, 'kopia-logs'),
    KOPIA_CACHE_DIRECTORY: path.join(base, 'kopia-cache'),
    KOPIA_CHECK_FOR_UPDATES: 'false',
    KOPIA_PERSIST_CREDENTIALS_ON_CONNECT: 'false',
  };
  const run = async (args: string[]): Promise<string> => {
    const r = await runProcess(kopia, args, env);
    assert.equal(r.code, 0, `kopia ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  await run(['repository', 'create', 'filesystem', '--path', path.join(base, 'kopia-repo'), '--no-persist-credentials']);
  await run(['snapshot', 'create', src, '--json']);
  const snaps = JSON.parse(await run(['snapshot', 'list', src, '--json'])) as { id: string; rootEntry: { obj: string } }[];
  assert.equal(snaps.length, 1);
  await run(['snapshot', 'verify', '--verify-files-percent=100']);
  const target = path.join(base, 'kopia-restore');
  await run(['snapshot', 'restore', snaps[0]!.rootEntry.obj, target]);
  await assertTree(target, want);
});

test('testenv: helm (v4, built from its Go module) prints its version, creates a chart and renders it offline', { timeout: 30 * 60_000 }, async () => {
  const helm = await binary('helm');
  const env = { HELM_CACHE_HOME: path.join(base, 'helm-cache'), HELM_CONFIG_HOME: path.join(base, 'helm-config'), HELM_DATA_HOME: path.join(base, 'helm-data') };
  const v = await runProcess(helm, ['version', '--short'], env);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, new RegExp(`^${COMPONENTS.helm.version.replace(/\./g, '\\.')}`));
  const chart = path.join(base, 'meshback-chart');
  const c = await runProcess(helm, ['create', chart], env);
  assert.equal(c.code, 0, c.stderr);
  const t = await runProcess(helm, ['template', 'demo', chart, '--set', 'replicaCount=3'], env);
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /^kind: Deployment$/m);
  assert.match(t.stdout, /^ {2}replicas: 3$/m);
});

/** one line through `addr` to an echo server and back: the reply and the round-trip milliseconds, or the error */
function roundTrip(addr: string): Promise<{ reply?: string; error?: string; ms: number }> {
  const [host, port] = addr.split(':');
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = net.connect(Number(port), host!);
    let reply = '';
    const done = (r: { reply?: string; error?: string }): void => {
      s.destroy();
      clearTimeout(timer);
      resolve({ ...r, ms: performance.now() - t0 });
    };
    const timer = setTimeout(() => done({ error: 'no reply in 10 s' }), 10_000);
    s.setEncoding('utf8');
    s.on('connect', () => s.write('ping\n'));
    s.on('data', (d: string) => {
      reply += d;
      if (reply.endsWith('\n')) done({ reply });
    });
    s.on('error', (e: NodeJS.ErrnoException) => done({ error: e.code ?? e.message }));
    s.on('close', () => done({ error: reply === '' ? 'closed without a reply' : `closed after ${reply}` }));
  });
}

test('testenv: toxiproxy: a latency toxic delays and a reset_peer toxic resets a loopback TCP connection', { timeout: 10 * 60_000 }, async () => {
  const echo = net.createServer((c) => {
    c.on('error', () => {}); // the reset_peer toxic resets this side too
    c.pipe(c);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  let tp: ToxiproxyEnv | undefined;
  try {
    tp = await startToxiproxy();
    assert.match(tp.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const listen = await tp.createProxy('echo', `127.0.0.1:${(echo.address() as net.AddressInfo).port}`);
    const clean = await roundTrip(listen);
    assert.equal(clean.reply, 'ping\n', clean.error ?? 'no reply');
    await tp.addToxic('echo', { name: 'slow', type: 'latency', attributes: { latency: 600, jitter: 0 } });
    const slow = await roundTrip(listen);
    assert.equal(slow.reply, 'ping\n', slow.error ?? 'no reply');
    assert.ok(slow.ms >= 550, `latency toxic: round trip took ${slow.ms.toFixed(0)} ms, expected >= 600`);
    await tp.removeToxic('echo', 'slow');
    await tp.addToxic('echo', { name: 'reset', type: 'reset_peer', stream: 'upstream', attributes: { timeout: 0 } });
    const reset = await roundTrip(listen);
    assert.equal(reset.reply, undefined, 'reset_peer let a reply through');
    assert.equal(reset.error, 'ECONNRESET');
    await tp.removeToxic('echo', 'reset');
    assert.equal((await roundTrip(listen)).reply, 'ping\n');
  } finally {
    await tp?.stop();
    echo.close();
  }
});

test('testenv: a server started by the library stops and its data is removed when the test process is SIGKILLed', { timeout: 10 * 60_000 }, async () => {
  const script = path.join(base, 'starter.ts');
  await fsp.writeFile(
    script,
    `import { startToxiproxy } from ${JSON.stringify(path.join(ROOT, 'lab/testenv/index.ts'))};\n` +
      `const tp = await startToxiproxy();\n` +
      `process.stdout.write(JSON.stringify({ url: tp.url, dir: tp.dir, guard: tp.procs[0].pid }) + '\\n');\n` +
      `setInterval(() => {}, 1000);\n`,
  );
  const child = spawn(path.join(ROOT, 'bin/node'), [script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    let s = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      s += d;
      if (s.includes('\n')) resolve(s.split('\n')[0]!);
    });
    child.on('exit', (c) => reject(new Error(`starter exited ${c}`)));
  });
  const info = JSON.parse(line) as { url: string; dir: string; guard: number };
  assert.ok((await fetch(`${info.url}/version`)).ok);
  assert.ok(existsSync(info.dir));
  child.kill('SIGKILL');
  const guardAlive = (): boolean => {
    try {
      process.kill(info.guard, 0);
    } catch {
      return false;
    }
    // a zombie waiting for init counts as gone
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${info.guard}/stat`, 'utf8'));
  };
  const t0 = Date.now();
  let up = true;
  while (Date.now() - t0 < 15_000) {
    up = await fetch(`${info.url}/version`).then(
      () => true,
      () => false,
    );
    if (!up && !existsSync(info.dir) && !guardAlive()) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(up, false, 'toxiproxy still answers after its test process was killed');
  assert.equal(existsSync(info.dir), false, 'its data directory is still there');
  assert.equal(guardAlive(), false, 'the guard process is still there');
});

test('testenv CLI: up prints only export lines, status shows it, down stops it and removes its data; bad input is one line', { timeout: 10 * 60_000 }, async () => {
  const cli = (args: string[]): ReturnType<typeof runProcess> => runProcess(path.join(ROOT, 'bin/node'), [path.join(ROOT, 'lab/testenv/cli.ts'), ...args], { MESHBACK_TESTENV_RUN: path.join(base, 'run') });
  const up = await cli(['up', 'toxiproxy']);
  assert.equal(up.code, 0, up.stderr);
  const lines = up.stdout.trim().split('\n');
  for (const l of lines) assert.match(l, /^export [A-Z_]+=\S+$/);
  const url = /^export TOXIPROXY_URL=(\S+)$/m.exec(up.stdout)?.[1];
  assert.ok(url, up.stdout);
  assert.ok((await fetch(`${url}/version`)).ok);
  const again = await cli(['up', 'toxiproxy', '--json']);
  assert.equal(again.code, 0, again.stderr);
  const j = JSON.parse(again.stdout) as { env: Record<string, string>; components: { name: string; dir: string; procs: { pid: number }[] }[] };
  assert.equal(j.env['TOXIPROXY_URL'], url, 'a second up reports the running one');
  const st = JSON.parse((await cli(['status', '--json'])).stdout) as { running: { name: string; up: boolean }[] };
  assert.deepEqual(
    st.running.map((r) => [r.name, r.up]),
    [['toxiproxy', true]],
  );
  const down = await cli(['down', 'toxiproxy']);
  assert.equal(down.code, 0, down.stderr);
  assert.equal(
    await fetch(`${url}/version`).then(
      () => 'answers',
      () => 'gone',
    ),
    'gone',
  );
  assert.equal(existsSync(j.components[0]!.dir), false);
  assert.deepEqual((JSON.parse((await cli(['status', '--json'])).stdout) as { running: unknown[] }).running, []);
  for (const bad of [['up', 'mainframe'], ['frobnicate'], ['up', 's3', '--fast'], ['build', 'nosuch']]) {
    const r = await cli(bad);
    assert.equal(r.code, 2, `${bad.join(' ')}: exit ${r.code}`);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^testenv: [^\n]+: [^\n]+\n$/, r.stderr);
  }
});
