/**
 * The run registry of `meshback server` (src/server/runs.ts) on a real runs.jsonl: records go
 * queued -> running -> succeeded/failed and every change is told to subscribers and appended;
 * the file is read back (a record a stopped server left running becomes failed INTERRUPTED; bad
 * lines are skipped with one warning); it stays bounded (rewritten with the last `keep` records);
 * a run's events are buffered with progress folded; and the rate limiter's token buckets.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { RunRegistry } from '../../src/server/runs.ts';
import type { RegistryChange } from '../../src/server/runs.ts';
import { RateLimiter } from '../../src/server/rate.ts';
import { isLoopback, parseListen } from '../../src/server/listen.ts';
import { rmrf, tmpdir } from '../helpers/cli.ts';

describe('run registry', () => {
  test('a run from queued to succeeded: subscribers told, runs.jsonl appended, read back by the next server', async () => {
    const dir = tmpdir('runs');
    try {
      const file = path.join(dir, 'state/runs.jsonl');
      const reg = new RunRegistry({ file });
      await reg.load();
      const seen: RegistryChange[] = [];
      const unsubscribe = reg.subscribe((c) => seen.push(c));
      const r = reg.create({ kind: 'backup', policy: 'orders', reason: 'trigger', tags: { deploy: 'v1' } });
      assert.match(r.id, /^[0-9a-f]{16}$/);
      assert.equal(r.status, 'queued');
      reg.start(r.id);
      reg.event(r.id, { type: 'phase', op: 'run', phase: 'backup' });
      reg.finish(r.id, { ok: true, snapshotId: 'ab'.repeat(32) });
      unsubscribe();
      reg.create({ kind: 'drill', policy: 'orders', reason: 'schedule' });
      assert.deepEqual(seen.map((c) => (c.type === 'run' ? c.record.status : `event:${c.seq}`)), ['queued', 'running', 'event:1', 'succeeded'], 'nothing after unsubscribe');
      await reg.flush();
      const lines = (await fsp.readFile(file, 'utf8')).trim().split('\n');
      assert.equal(lines.length, 4);
      assert.equal((JSON.parse(lines[2]!) as { status: string }).status, 'succeeded');

      const again = new RunRegistry({ file });
      await again.load();
      assert.deepEqual(again.get(r.id), reg.get(r.id));
      assert.equal(again.list({ kind: 'drill' })[0]!.status, 'queued', 'load changes nothing');
      again.recover();
      // the drill was queued when that server "stopped": it is recorded as failed now
      const drill = again.list({ kind: 'drill' })[0]!;
      assert.equal(drill.status, 'failed');
      assert.equal(drill.error?.code, 'INTERRUPTED');
      assert.deepEqual(again.list({ policy: 'orders', kind: 'backup' }).map((x) => x.id), [r.id]);
      assert.equal(again.active('orders'), undefined);
    } finally {
      await rmrf(dir);
    }
  });

  test('bad lines are skipped with one warning; the file is rewritten with the last `keep` records once it holds 3 x keep lines', async () => {
    const dir = tmpdir('runs');
    try {
      const file = path.join(dir, 'runs.jsonl');
      await fsp.writeFile(file, 'not json\n{"id":"x"}\n');
      const warnings: string[] = [];
      const reg = new RunRegistry({ file, keep: 5, warn: (m) => warnings.push(m) });
      await reg.load();
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /2 line\(s\) are not run records and were skipped/);
      const ids: string[] = [];
      for (let i = 0; i < 12; i++) {
        const r = reg.create({ kind: 'backup', policy: `p${i}`, reason: 'schedule' });
        reg.start(r.id);
        reg.finish(r.id, { ok: i % 2 === 0, ...(i % 2 === 1 ? { error: { code: 'HOOK', message: 'pre hook 1 failed' } } : {}) });
        ids.push(r.id);
      }
      await reg.flush();
      assert.equal(reg.list().length, 5, 'the last 5 in memory');
      assert.deepEqual(reg.list().map((r) => r.policy), ['p11', 'p10', 'p9', 'p8', 'p7']);
      const lines = (await fsp.readFile(file, 'utf8')).trim().split('\n');
      assert.ok(lines.length <= 15, `${lines.length} lines: bounded by 3 x keep`);
      const back = new RunRegistry({ file, keep: 5 });
      await back.load();
      assert.deepEqual(back.list().map((r) => r.id), ids.slice(-5).reverse());
      assert.deepEqual(await fsp.readdir(dir), ['runs.jsonl'], 'no temporary file left');
    } finally {
      await rmrf(dir);
    }
  });

  test("a run's events are buffered (progress folded into the newest) for late subscribers", () => {
    const reg = new RunRegistry();
    const r = reg.create({ kind: 'backup', policy: 'a', reason: 'trigger' });
    reg.event(r.id, { type: 'op-start', op: 'run', at: new Date().toISOString() });
    for (let i = 1; i <= 100; i++) reg.event(r.id, { type: 'progress', op: 'backup', files: i, bytes: i });
    reg.event(r.id, { type: 'summary', op: 'run', ok: true, durationSeconds: 1 });
    reg.event('0000000000000000', { type: 'warning', message: 'no such run: ignored' });
    const buf = reg.eventsOf(r.id);
    assert.deepEqual(buf.map((b) => [b.seq, b.event.type]), [[1, 'op-start'], [101, 'progress'], [102, 'summary']]);
    assert.equal((buf[1]!.event as { files: number }).files, 100);
    assert.deepEqual(reg.eventsOf('0000000000000000'), []);
  });
});

describe('rate limiter', () => {
  test('capacity per period and client; the wait until the next token', () => {
    let t = 0;
    const rl = new RateLimiter(10, 60_000, { now: () => t });
    for (let i = 0; i < 10; i++) assert.equal(rl.take('a'), 0);
    assert.equal(rl.take('a'), 6, 'one token every 6 s');
    assert.equal(rl.take('b'), 0, 'another client has its own bucket');
    t += 6000;
    assert.equal(rl.take('a'), 0);
    assert.equal(rl.wait('a'), 6);
    t += 60_000;
    for (let i = 0; i < 10; i++) assert.equal(rl.take('a'), 0, 'refilled to the capacity, no more');
    assert.ok(rl.take('a') > 0);
  });
  test('at most maxClients buckets: the fullest go first, a limited client stays limited', () => {
    const rl = new RateLimiter(2, 60_000, { maxClients: 3, now: () => 0 });
    rl.take('x');
    rl.take('x');
    assert.equal(rl.take('x'), 30);
    for (const k of ['a', 'b', 'c', 'd', 'e']) assert.equal(rl.take(k), 0);
    assert.equal(rl.take('x'), 30, 'new clients do not free x');
  });
});

describe('--listen', () => {
  test('HOST:PORT, [V6]:PORT, none; loopback addresses', () => {
    assert.deepEqual(parseListen('127.0.0.1:8439'), { host: '127.0.0.1', port: 8439 });
    assert.deepEqual(parseListen('[::1]:0'), { host: '::1', port: 0 });
    assert.equal(parseListen('none'), undefined);
    for (const bad of ['8439', '127.0.0.1', '127.0.0.1:99999', '[nothex]:1', 'a b:1']) assert.throws(() => parseListen(bad), /is not HOST:PORT|is not an IPv6 address/, bad);
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', '::ffff:127.0.0.1']) assert.equal(isLoopback(h), true, h);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'backup.example', '128.0.0.1']) assert.equal(isLoopback(h), false, h);
  });
});
