/**
 * End-to-end: the redis preset (src/policy/presets/redis.ts) through `meshback run`, against real
 * redis-server processes on 127.0.0.1 (appendonly yes, and one with appendonly no): the default
 * mode follows what the server loads at start, automatic AOF rewrites are held off during the
 * backup and set back after it, the snapshot restores to a directory a fresh redis-server loads
 * with every key; a wrong password, a save that outlasts the timeout, a mode the server cannot
 * use and a port nobody listens on fail the run with exit 14 and one line.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as net from 'node:net';
import * as path from 'node:path';
import { createClient } from 'redis';
import { which } from '../../src/host/process.ts';
import { mb, rmrf, summary, tmpdir } from '../helpers/cli.ts';

const REDIS = await which('redis-server');

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

interface Server {
  port: number;
  dir: string;
  child: ChildProcess;
  log: string;
}

/** redis-server in `dir` (its redis.conf there, data in dir/data), on a free port; resolves once it answers (at most 15 s). */
async function startRedis(dir: string, conf: string[], extra: string[] = []): Promise<Server> {
  await fsp.mkdir(path.join(dir, 'data'), { recursive: true });
  const port = await freePort();
  if (conf.length > 0) await fsp.writeFile(path.join(dir, 'redis.conf'), ['bind 127.0.0.1', 'dir ./data', 'save ""', 'daemonize no', ...conf, ''].join('\n'));
  const log = path.join(dir, '..', `${path.basename(dir)}-redis.log`);
  const fh = await fsp.open(log, 'a');
  const child = spawn(REDIS!, [path.join(dir, 'redis.conf'), '--port', String(port), ...extra], { cwd: dir, stdio: ['ignore', fh.fd, fh.fd] });
  await fh.close();
  for (let i = 0; i < 150; i++) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    try {
      const c = await connect(port);
      const info = String(await c.sendCommand(['INFO', 'persistence']));
      c.destroy();
      if (/loading:0/.test(info)) return { port, dir, child, log };
    } catch (err) {
      // NOAUTH: it answers, it wants a password
      if (/NOAUTH/.test(String(err))) return { port, dir, child, log };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`redis-server did not answer: ${(await fsp.readFile(log, 'utf8')).slice(-500)}`);
}

async function stopRedis(s: Server | undefined): Promise<void> {
  if (s === undefined || s.child.exitCode !== null || s.child.signalCode !== null) return;
  const gone = new Promise((r) => s.child.once('exit', r));
  s.child.kill('SIGKILL');
  await Promise.race([gone, new Promise((r) => setTimeout(r, 5000).unref())]);
}

async function connect(port: number, password?: string) {
  const c = createClient({ socket: { host: '127.0.0.1', port, reconnectStrategy: false, connectTimeout: 2000 }, ...(password !== undefined ? { password } : {}) });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

async function redisDo<T>(port: number, fn: (c: Awaited<ReturnType<typeof connect>>) => Promise<T>, password?: string): Promise<T> {
  const c = await connect(port, password);
  try {
    return await fn(c);
  } finally {
    c.destroy();
  }
}

describe('the redis preset', { skip: REDIS === undefined ? 'redis-server is not installed' : false }, () => {
  let base: string;
  let aof: Server;
  let rdb: Server;
  let config: string;
  let env: Record<string, string>;
  const restored: Server[] = [];
  const keys = new Map<string, string>();

  const run = (policy: string) => mb(['run', policy, '--config', config, '--json'], { env, timeoutMs: 90_000 });

  before(async () => {
    base = tmpdir('redis-preset');
    aof = await startRedis(path.join(base, 'aof'), ['appendonly yes', 'appendfsync everysec', 'appenddirname appendonlydir']);
    rdb = await startRedis(path.join(base, 'rdb'), ['appendonly no', 'dbfilename dump.rdb', 'enable-protected-configs yes']);
    for (let i = 0; i < 200; i++) keys.set(`session:${i}`, `value ${i} ${'x'.repeat(i % 50)}`);
    await redisDo(aof.port, (c) => c.mSet(Object.fromEntries(keys)));
    await redisDo(rdb.port, (c) => c.mSet(Object.fromEntries(keys)));
    await fsp.writeFile(path.join(base, 'pw'), 'pw\n');
    await fsp.writeFile(path.join(base, 'redis-pw'), 'r3dis-pw\n', { mode: 0o600 });
    await fsp.writeFile(path.join(base, 'wrong-pw'), 'nope\n', { mode: 0o600 });
    const dead = await freePort();
    config = path.join(base, 'policies.yaml');
    await fsp.writeFile(
      config,
      `version: 1
defaults: { repository: ./repo, password-file: ./pw }
policies:
  aof:
    sources: [aof]
    presets: [ { type: redis, port: ${aof.port} } ]
  rdb:
    sources: [rdb]
    presets: [ { type: redis, host: 127.0.0.1, port: ${rdb.port}, timeout: 30s } ]
  rdb-as-aof:
    sources: [rdb]
    presets: [ { type: redis, port: ${rdb.port}, mode: aof-rewrite } ]
  slow:
    sources: [aof]
    presets: [ { type: redis, port: ${aof.port}, timeout: 1s } ]
  wrong-password:
    sources: [aof]
    presets: [ { type: redis, port: ${aof.port}, password-file: wrong-pw } ]
  password:
    sources: [aof]
    presets: [ { type: redis, port: ${aof.port}, password-file: redis-pw } ]
  nobody:
    sources: [aof]
    presets: [ { type: redis, port: ${dead}, timeout: 5s } ]
`,
    );
    const init = await mb(['init', '--repo', path.join(base, 'repo'), '--password-file', path.join(base, 'pw')]);
    assert.equal(init.code, 0, init.stderr);
    // for restore (run takes the policy file's)
    env = { MESHBACK_REPO: path.join(base, 'repo'), MESHBACK_PASSWORD_FILE: path.join(base, 'pw') };
  });
  after(async () => {
    for (const s of [aof, rdb, ...restored]) await stopRedis(s);
    await rmrf(base);
  });

  /** Restores `id` into a fresh directory and starts redis-server there with the restored redis.conf; every key must be there. */
  async function restoreAndLoad(id: string, name: string, expectFrom: RegExp): Promise<void> {
    const target = path.join(base, `restored-${name}`);
    const r = await mb(['restore', id, '--target', target], { env });
    assert.equal(r.code, 0, r.stderr);
    const s = await startRedis(target, []);
    restored.push(s);
    const log = await fsp.readFile(s.log, 'utf8');
    assert.match(log, expectFrom);
    const got = await redisDo(s.port, (c) => c.mGet([...keys.keys()]));
    assert.deepEqual(got, [...keys.values()], 'every key with its value');
    await stopRedis(s);
  }

  test('appendonly yes: BGREWRITEAOF, automatic rewrites held off and set back; the snapshot loads with every key', async () => {
    const r = await run('aof');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /mode aof-rewrite \(the server has appendonly yes\)/);
    assert.match(r.stderr, /BGREWRITEAOF \(Background append only file rewriting started\) finished in/);
    assert.match(r.stderr, /automatic AOF rewrites held off while the backup reads \(auto-aof-rewrite-percentage 0, was 100\)/);
    assert.match(r.stderr, /automatic AOF rewrites on again \(auto-aof-rewrite-percentage 100\)/);
    const s = summary(r.stdout) as { snapshot_id: string; presets: { type: string; outcome: string }[]; phases: { phase: string; outcome: string }[] };
    assert.deepEqual(s.presets.map((p) => [p.type, p.outcome]), [['redis', 'ok']]);
    assert.equal(s.phases.find((p) => p.phase === 'preset')?.outcome, 'ok');
    assert.equal(await redisDo(aof.port, async (c) => (await c.configGet('auto-aof-rewrite-percentage'))['auto-aof-rewrite-percentage']), '100');
    const info = await redisDo(aof.port, (c) => c.info('persistence'));
    assert.match(info, /aof_rewrites:1\b/);
    await restoreAndLoad(s.snapshot_id, 'aof', /DB loaded from append only file/);
  });

  test('appendonly no: BGSAVE and wait for LASTSAVE; the dump.rdb in the snapshot loads with every key', async () => {
    const before = await redisDo(rdb.port, (c) => c.lastSave());
    const r = await run('rdb');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /mode bgsave \(the server has appendonly no\)/);
    const after = await redisDo(rdb.port, (c) => c.lastSave());
    assert.ok(after > before, `LASTSAVE ${before} -> ${after}`);
    const s = summary(r.stdout) as { snapshot_id: string };
    await restoreAndLoad(s.snapshot_id, 'rdb', /DB loaded from disk/);
  });

  test('a mode the server cannot use, a port nobody listens on, a bad mode in the file: one line each', async () => {
    const wrong = await run('rdb-as-aof');
    assert.equal(wrong.code, 14, wrong.stderr);
    assert.match(wrong.stderr, /^meshback: redis preset: mode aof-rewrite needs appendonly yes on Redis at 127\.0\.0\.1:\d+ \(it has no AOF; what it loads at start is its RDB file\): use mode bgsave, or leave mode out$/m);
    const s = summary(wrong.stdout) as { phases: { phase: string; outcome: string }[]; snapshot_id?: string };
    assert.equal(s.snapshot_id, undefined, 'no snapshot');
    assert.equal(s.phases.find((p) => p.phase === 'backup')?.outcome, 'skipped');

    const nobody = await run('nobody');
    assert.equal(nobody.code, 14, nobody.stderr);
    assert.match(nobody.stderr, /^meshback: redis preset: cannot connect to Redis at 127\.0\.0\.1:\d+ \(connect ECONNREFUSED 127\.0\.0\.1:\d+\): check host and port, and that Redis runs$/m);

    const badFile = path.join(base, 'bad.yaml');
    await fsp.writeFile(badFile, 'version: 1\npolicies:\n  bad-mode:\n    sources: [aof]\n    presets: [ { type: redis, mode: snapshot } ]\n');
    const bad = await mb(['run', 'bad-mode', '--config', badFile], { env });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /^meshback: bad\.yaml:5: policies\.bad-mode\.presets\[0\]\.mode: must be one of "bgsave", "aof-rewrite" \(it is "snapshot"\)$/m);
  });

  test('a save that outlasts the timeout fails the run (exit 14) and leaves the rewrite settings as they were', async () => {
    // each key takes 20 ms to write in the rewrite's child: 200 keys, 4 s
    await redisDo(aof.port, (c) => c.configSet('rdb-key-save-delay', '20000'));
    try {
      const t0 = Date.now();
      const r = await run('slow');
      assert.equal(r.code, 14, r.stderr);
      assert.match(r.stderr, /^meshback: redis preset: BGREWRITEAOF did not finish within the preset's timeout of 1s: raise timeout, or see the Redis log$/m);
      assert.ok(Date.now() - t0 < 20_000);
      assert.equal(await redisDo(aof.port, async (c) => (await c.configGet('auto-aof-rewrite-percentage'))['auto-aof-rewrite-percentage']), '100');
    } finally {
      await redisDo(aof.port, (c) => c.configSet('rdb-key-save-delay', '0'));
    }
    // the rewrite that timed out ends by itself
    for (let i = 0; i < 100 && /aof_rewrite_in_progress:1/.test(await redisDo(aof.port, (c) => c.info('persistence'))); i++) await new Promise((res) => setTimeout(res, 100));
  });

  test('a BGSAVE that fails (the server cannot write its dir) is one line, at once, not a wait for the timeout', async () => {
    const dir = await redisDo(rdb.port, async (c) => (await c.configGet('dir'))['dir']!);
    // nobody, root included, can create a file in /proc
    await redisDo(rdb.port, (c) => c.configSet('dir', '/proc'));
    try {
      const t0 = Date.now();
      const r = await run('rdb');
      assert.equal(r.code, 14, r.stderr);
      assert.match(r.stderr, /^meshback: redis preset: BGSAVE on Redis at 127\.0\.0\.1:\d+ failed \(rdb_last_bgsave_status:err\): see the Redis log \(no space\? can it write its dir\?\)$/m);
      assert.ok(Date.now() - t0 < 15_000, 'it waited for the 30 s timeout');
    } finally {
      await redisDo(rdb.port, (c) => c.configSet('dir', dir));
    }
  });

  test('AUTH: a wrong password is one line naming its file; the right one works', async () => {
    await redisDo(aof.port, (c) => c.configSet('requirepass', 'r3dis-pw'));
    try {
      const wrong = await run('wrong-password');
      assert.equal(wrong.code, 14, wrong.stderr);
      assert.match(wrong.stderr, /^meshback: redis preset: Redis at 127\.0\.0\.1:\d+ refused the password of .*wrong-pw: WRONGPASS/m);
      assert.ok(!wrong.stderr.includes('nope') && !wrong.stdout.includes('nope'), 'the password was printed');
      const ok = await run('password');
      assert.equal(ok.code, 0, ok.stderr);
    } finally {
      await redisDo(aof.port, (c) => c.configSet('requirepass', ''), 'r3dis-pw');
    }
  });
});
