/**
 * The storage stack's wrappers one by one (retry, connection limit, fault injection), their
 * composition by stack(), and the semaphore under the limit. The Backend contract through the
 * whole stack is in backend-conformance.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import type { Backend, BlobWriter, FileInfo, FileType, Handle } from '../../src/storage/backend.ts';
import { findLayer, unwrap } from '../../src/storage/backend.ts';
import { FaultyBackend, parseFaultSpec, seededRandom } from '../../src/storage/faulty.ts';
import { LimitBackend } from '../../src/storage/limit.ts';
import { LocalBackend } from '../../src/storage/local.ts';
import { MemoryBackend } from '../../src/storage/memory.ts';
import { REMOTE_RETRY_DEFAULTS, RETRY_DEFAULTS, RetryBackend, backoffDelay } from '../../src/storage/retry.ts';
import type { RetryReport } from '../../src/storage/retry.ts';
import type { FaultRule } from '../../src/storage/faulty.ts';
import { stack } from '../../src/storage/stack.ts';
import { BackendError, MeshbackError, NoSpaceError, NotFoundError, UsageError, isRetryable, isTransientErrno } from '../../src/errors/index.ts';
import { Semaphore } from '../../src/util/semaphore.ts';
import { removeDir, tempDir } from './helpers.ts';

const noSleep = async (): Promise<void> => undefined;
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const pk = (name: string): Handle => ({ type: 'pack', name });

async function names(b: Backend, type: FileType): Promise<string[]> {
  const out: string[] = [];
  for await (const f of b.list(type)) out.push(f.name);
  return out;
}

/** Records what a retry wrapper does: the waits it asked for and the reports it made. */
function recorder(): { sleeps: number[]; reports: RetryReport[]; sleep: (ms: number) => Promise<void>; onRetry: (r: RetryReport) => void } {
  const sleeps: number[] = [];
  const reports: RetryReport[] = [];
  return { sleeps, reports, sleep: async (ms) => void sleeps.push(ms), onRetry: (r) => void reports.push(r) };
}

/**
 * A backend of scripted calls: each call counts, is in flight for a few event-loop turns, and
 * fails with what `fail` returns for it (or succeeds).
 */
class Scripted extends MemoryBackend {
  calls = 0;
  inFlight = 0;
  maxInFlight = 0;
  fail: (n: number, op: string) => Error | undefined = () => undefined;
  readonly seen: unknown[] = [];
  private async step<T>(op: string, fn: () => Promise<T>): Promise<T> {
    const n = ++this.calls;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      for (let i = 0; i < 3; i++) await tick();
      const err = this.fail(n, op);
      if (err !== undefined) throw err;
      return await fn();
    } finally {
      this.inFlight--;
    }
  }
  override put(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    this.seen.push(data);
    return this.step('put', () => super.put(h, data));
  }
  override get(h: Handle, range?: { offset: number; length: number }): Promise<Buffer> {
    return this.step('get', () => super.get(h, range));
  }
  override stat(h: Handle): Promise<FileInfo> {
    return this.step('stat', () => super.stat(h));
  }
  override delete(h: Handle): Promise<void> {
    return this.step('delete', () => super.delete(h));
  }
  async openWriter(type: FileType): Promise<BlobWriter> {
    const parts: Uint8Array[] = [];
    await this.step('openWriter', async () => undefined);
    return {
      write: (ps) => void parts.push(...ps),
      queued: 0,
      drain: async () => undefined,
      commit: (name) => this.step('commit', () => super.put({ type, name }, parts)),
      abort: async () => undefined,
    };
  }
}

const transient = (n = 0): BackendError => new BackendError(`flaky ${n}`, { retryable: true });

describe('retry', () => {
  it('retries a transient failure until it succeeds, reporting each retry', async () => {
    const inner = new Scripted();
    inner.fail = (n) => (n <= 2 ? transient(n) : undefined);
    const rec = recorder();
    const b = new RetryBackend(inner, { attempts: 5, sleep: rec.sleep, onRetry: rec.onRetry, random: () => 0.5 });
    await b.put(pk('aa'), Buffer.from('data'));
    assert.equal(inner.calls, 3);
    assert.deepEqual(await inner.get(pk('aa')), Buffer.from('data'));
    assert.deepEqual(
      rec.reports.map((r) => [r.op, r.what, r.attempt, r.attempts, r.delayMs, (r.error as Error).message]),
      [
        ['put', 'pack/aa', 1, 5, 125, 'flaky 1'],
        ['put', 'pack/aa', 2, 5, 250, 'flaky 2'],
      ],
    );
    assert.deepEqual(rec.sleeps, [125, 250]);
  });

  it('a retried put resends the very bytes it was given', async () => {
    const inner = new Scripted();
    inner.fail = (n) => (n === 1 ? transient() : undefined);
    const b = new RetryBackend(inner, { sleep: noSleep });
    const parts = [Buffer.from('one '), Buffer.from('two')];
    await b.put(pk('bb'), parts);
    assert.equal(inner.seen.length, 2);
    assert.equal(inner.seen[0], parts);
    assert.equal(inner.seen[1], parts);
    assert.deepEqual(await inner.get(pk('bb')), Buffer.from('one two'));
  });

  it('gives up after the given attempts with the last error, unchanged', async () => {
    const inner = new Scripted();
    const thrown: Error[] = [];
    inner.fail = (n) => {
      const e = transient(n);
      thrown.push(e);
      return e;
    };
    const rec = recorder();
    const b = new RetryBackend(inner, { attempts: 4, sleep: rec.sleep, onRetry: rec.onRetry });
    await assert.rejects(b.stat(pk('cc')), (err: unknown) => err === thrown[3]);
    assert.equal(inner.calls, 4);
    assert.equal(rec.sleeps.length, 3);
    assert.equal(rec.reports.at(-1)!.attempt, 3);
    // attempts: 1 means never retry
    const once = new RetryBackend(inner, { attempts: 1, sleep: rec.sleep });
    await assert.rejects(once.stat(pk('cc')), /flaky 5/);
    assert.equal(inner.calls, 5);
  });

  it('never retries a permanent failure: not found, no space, permission, refused overwrite, an unclassified error', async () => {
    const permanent: [string, Error][] = [
      ['NotFoundError', new NotFoundError('pack/dd does not exist')],
      ['NoSpaceError', new NoSpaceError('the test disk')],
      ['EACCES', new BackendError('storage error: EACCES: permission denied', { retryable: isTransientErrno('EACCES') })],
      ['refused overwrite', new BackendError('refusing to overwrite pack/dd', { retryable: false })],
      ['a plain Error with a transient errno', Object.assign(new Error('raw ECONNRESET'), { code: 'ECONNRESET' })],
      ['a usage error', new UsageError('bad')],
    ];
    for (const [what, err] of permanent) {
      const inner = new Scripted();
      inner.fail = () => err;
      const rec = recorder();
      const b = new RetryBackend(inner, { sleep: rec.sleep });
      await assert.rejects(b.get(pk('dd')), (e: unknown) => e === err, what);
      assert.equal(inner.calls, 1, what);
      assert.deepEqual(rec.sleeps, [], what);
    }
    // and the real thing: a missing file, an existing file with other bytes
    const mem = new MemoryBackend();
    const rec = recorder();
    const b = new RetryBackend(mem, { sleep: rec.sleep });
    await assert.rejects(b.get(pk('ee')), NotFoundError);
    await b.put(pk('ee'), Buffer.from('first'));
    await assert.rejects(b.put(pk('ee'), Buffer.from('other')), /refusing to overwrite/);
    assert.deepEqual(rec.sleeps, []);
  });

  it('classifies errors: transient errno codes, retryable BackendErrors only', () => {
    for (const c of ['EAGAIN', 'ECONNRESET', 'ETIMEDOUT', 'EMFILE', 'EPIPE', 'ECONNREFUSED', 'EAI_AGAIN']) assert.ok(isTransientErrno(c), c);
    for (const c of ['EIO', 'ENOENT', 'EEXIST', 'EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT', 'EISDIR', undefined]) assert.ok(!isTransientErrno(c), String(c));
    assert.ok(isRetryable(transient()));
    assert.ok(!isRetryable(new BackendError('x', { retryable: false })));
    assert.ok(!isRetryable(new NoSpaceError('x')));
    assert.ok(!isRetryable(new NotFoundError('x')));
    assert.ok(!isRetryable(Object.assign(new Error('x'), { code: 'EAGAIN' })));
  });

  it('a remote store gets equal jitter and 12 attempts: its waits add up to 55.9 to 111.75 s', async () => {
    assert.deepEqual(
      Array.from({ length: 5 }, (_, i) => backoffDelay(i + 1, 100, 1000, () => 0, 0.5)),
      [50, 100, 200, 400, 500],
    );
    const waits = async (random: () => number): Promise<number[]> => {
      const inner = new Scripted();
      Object.assign(inner, { properties: { connections: 4, remote: true } });
      inner.fail = (n) => (n < 100 ? transient(n) : undefined);
      const rec = recorder();
      await assert.rejects(stack(inner, { retry: { sleep: rec.sleep, random } }).delete(pk('ee')));
      return rec.sleeps;
    };
    const least = await waits(() => 0);
    const most = await waits(() => 0.999999);
    assert.equal(least.length, REMOTE_RETRY_DEFAULTS.attempts - 1);
    assert.equal(least.reduce((a, b) => a + b, 0), 55_875);
    assert.ok(Math.abs(most.reduce((a, b) => a + b, 0) - 111_750) < 20);
  });

  it('backs off exponentially with full jitter, never past the maximum', async () => {
    assert.deepEqual(
      Array.from({ length: 8 }, (_, i) => backoffDelay(i + 1, 100, 1000, () => 0.999999)),
      [99, 199, 399, 799, 999, 999, 999, 999],
    );
    assert.deepEqual(
      Array.from({ length: 5 }, (_, i) => backoffDelay(i + 1, 100, 1000, () => 0)),
      [0, 0, 0, 0, 0],
    );
    const rnd = seededRandom(42);
    for (let attempt = 1; attempt <= 40; attempt++) {
      const d = backoffDelay(attempt, RETRY_DEFAULTS.baseDelayMs, RETRY_DEFAULTS.maxDelayMs, rnd);
      assert.ok(d >= 0 && d < Math.min(RETRY_DEFAULTS.maxDelayMs, RETRY_DEFAULTS.baseDelayMs * 2 ** (attempt - 1)), `${attempt}: ${d}`);
    }
    // through the wrapper: 12 attempts, the waits double up to the cap
    const inner = new Scripted();
    inner.fail = (n) => (n < 12 ? transient(n) : undefined);
    const rec = recorder();
    await new RetryBackend(inner, { attempts: 12, baseDelayMs: 10, maxDelayMs: 300, sleep: rec.sleep, random: () => 0.999999 }).delete(pk('ff'));
    assert.deepEqual(rec.sleeps, [9, 19, 39, 79, 159, 299, 299, 299, 299, 299, 299]);
    // the defaults bound the worst case: 6 attempts, at most 0.25+0.5+1+2+4 s of waiting
    assert.equal(RETRY_DEFAULTS.attempts, 6);
  });

  it('close() ends the backoffs being waited out: those calls fail with their last error, and nothing is retried any more', async () => {
    const inner = new Scripted();
    inner.fail = (n) => transient(n);
    const b = new RetryBackend(inner, { attempts: 6, baseDelayMs: 60_000, maxDelayMs: 60_000, random: () => 0.9 });
    const started = Date.now();
    const pending = b.get(pk('gg'));
    while (inner.calls < 1) await tick();
    for (let i = 0; i < 5; i++) await tick();
    await b.close();
    await assert.rejects(pending, /flaky 1/);
    assert.ok(Date.now() - started < 5000, 'the 54 s backoff was cut short');
    await assert.rejects(b.stat(pk('gg')), /flaky 2/);
    assert.equal(inner.calls, 2, 'a closed retry wrapper makes each call once');
  });

  it('a listing that breaks off is started again and yields each file once', async () => {
    const mem = new MemoryBackend();
    for (const n of ['a1', 'a2', 'a3', 'a4', 'a5']) await mem.put(pk(n), Buffer.from(n));
    let listings = 0;
    const inner = Object.assign(Object.create(mem) as MemoryBackend, {
      async *list(type: FileType): AsyncIterable<FileInfo> {
        const k = ++listings;
        let i = 0;
        for await (const f of mem.list(type)) {
          if (k === 1 && i === 3) throw transient(1);
          if (k === 2 && i === 1) throw transient(2);
          i++;
          yield f;
        }
      },
    });
    const rec = recorder();
    const got = await names(new RetryBackend(inner, { sleep: rec.sleep, onRetry: rec.onRetry }), 'pack');
    assert.deepEqual(got, ['a1', 'a2', 'a3', 'a4', 'a5']);
    assert.equal(listings, 3);
    assert.deepEqual(
      rec.reports.map((r) => [r.op, r.what]),
      [
        ['list', 'pack'],
        ['list', 'pack'],
      ],
    );
  });

  it('a writer is not retried: a failed commit fails, and leaves no file', async () => {
    const dir = await tempDir('retry-writer');
    try {
      const faulty = new FaultyBackend(new LocalBackend(path.join(dir, 'repo')), { rules: [{ kind: 'transient', op: 'commit', nth: 1 }] });
      const b = new RetryBackend(faulty, { sleep: noSleep });
      await b.create();
      const w = await b.openWriter!('pack');
      w.write([Buffer.from('bytes')]);
      await assert.rejects(w.commit('ab'.repeat(32)), (e: unknown) => isRetryable(e) && /injected transient fault: commit pack/.test(String(e)));
      assert.deepEqual(await names(b, 'pack'), []);
      assert.deepEqual((await b.removeTemporary!(0)).files, 0, 'the aborted writer left no temporary file');
    } finally {
      await removeDir(dir);
    }
  });
});

describe('connection limit', () => {
  it('never has more than N calls in flight, and uses all N', async () => {
    const inner = new Scripted();
    const b = new LimitBackend(inner, 3);
    for (let i = 0; i < 20; i++) await inner.put(pk(`p${i}`), Buffer.from(`${i}`));
    inner.maxInFlight = 0;
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < 60; i++) {
      const h = pk(`p${i % 20}`);
      if (i % 4 === 0) jobs.push(b.get(h));
      else if (i % 4 === 1) jobs.push(b.stat(h));
      else if (i % 4 === 2) jobs.push(b.put(pk(`q${i}`), Buffer.from('q')));
      else jobs.push(b.openWriter!('pack').then((w) => (w.write([Buffer.from(`w${i}`)]), w.commit(`w${i}`))));
    }
    await Promise.all(jobs);
    assert.equal(inner.maxInFlight, 3);
    assert.equal(b.slots.inUse, 0);
    assert.equal(b.slots.waiting, 0);
  });

  it('defaults to the backend properties.connections (32 for a local directory)', () => {
    assert.equal(new LimitBackend(new MemoryBackend()).slots.limit, 8);
    assert.equal(new LimitBackend(new LocalBackend('/nonexistent/x')).slots.limit, 32);
  });

  it('a listing holds a slot per step only: reading each listed file inside the loop does not deadlock', async () => {
    const mem = new MemoryBackend();
    for (let i = 0; i < 10; i++) await mem.put(pk(`l${i}`), Buffer.from(`${i}`));
    const b = new LimitBackend(mem, 1);
    let read = 0;
    const loop = (async () => {
      for await (const f of b.list('pack')) {
        await b.get(pk(f.name));
        read++;
      }
    })();
    const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('deadlock: list held the only slot')), 2000).unref());
    await Promise.race([loop, timeout]);
    assert.equal(read, 10);
    // a consumer that stops early releases everything
    for await (const _f of b.list('pack')) break;
    assert.equal(b.slots.inUse, 0);
  });

  it('in the stack, retries count against the limit, and a call waiting out its backoff holds no slot', async () => {
    const inner = new Scripted();
    await inner.put(pk('x1'), Buffer.from('x'));
    inner.calls = 0;
    inner.maxInFlight = 0;
    let release!: () => void;
    const backoff = new Promise<void>((r) => (release = r));
    inner.fail = (n, op) => (op === 'stat' && n === 1 ? transient() : undefined);
    const b = stack(inner, { connections: 1, retry: { sleep: () => backoff } });
    const flaky = b.stat(pk('x1'));
    while (inner.calls < 1) await tick();
    for (let i = 0; i < 5; i++) await tick();
    // the stat failed once and now waits: the only slot is free for others
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the call backing off held the only slot')), 2000).unref());
    assert.deepEqual(await Promise.race([b.get(pk('x1')), timeout]), Buffer.from('x'));
    release();
    assert.equal((await flaky).size, 1);
    assert.equal(inner.maxInFlight, 1);
  });
});

describe('fault injection', () => {
  it('nth, from and times pick exactly the calls they name; op and type filter', async () => {
    const f = new FaultyBackend(new MemoryBackend(), {
      rules: [
        { kind: 'io', op: 'put', type: 'pack', nth: [2, 4] },
        { kind: 'transient', op: 'get', from: 3, times: 2 },
      ],
    });
    const results: string[] = [];
    for (let i = 1; i <= 5; i++) {
      await f.put(pk(`n${i}`), Buffer.from(`${i}`)).then(
        () => results.push('ok'),
        (e: unknown) => results.push((e as BackendError).retryable ? 'transient' : 'io'),
      );
    }
    await f.put({ type: 'index', name: 'i1' }, Buffer.from('i'));
    assert.deepEqual(results, ['ok', 'io', 'ok', 'io', 'ok'], 'puts');
    const gets: string[] = [];
    for (let i = 1; i <= 6; i++) await f.get(pk('n1')).then(() => gets.push('ok'), () => gets.push('fail'));
    assert.deepEqual(gets, ['ok', 'ok', 'fail', 'fail', 'ok', 'ok'], 'gets');
    assert.deepEqual(
      f.injected.map((x) => [x.op, x.what, x.kind, x.rule]),
      [
        ['put', 'pack/n2', 'io', 0],
        ['put', 'pack/n4', 'io', 0],
        ['get', 'pack/n1', 'transient', 1],
        ['get', 'pack/n1', 'transient', 1],
      ],
    );
    assert.deepEqual(await names(f, 'pack'), ['n1', 'n3', 'n5']);
  });

  it('a probability draws from a seeded PRNG: the same seed gives the same faults, at about that rate', async () => {
    const pattern = async (seed: number): Promise<string> => {
      const f = new FaultyBackend(new MemoryBackend(), { seed, rules: [{ kind: 'transient', op: 'exists', probability: 0.2 }] });
      let s = '';
      for (let i = 0; i < 1000; i++) s += await f.exists().then(() => '.', () => 'x');
      return s;
    };
    const a = await pattern(7);
    assert.equal(a, await pattern(7));
    assert.notEqual(a, await pattern(8));
    const rate = a.split('x').length - 1;
    assert.ok(rate > 150 && rate < 250, `rate ${rate}/1000`);
  });

  it('each kind: transient, io, nospace, short-read, corrupt, delay; before and after the call', async () => {
    const mem = new MemoryBackend();
    const data = Buffer.from('0123456789abcdef');
    await mem.put(pk('k1'), data);
    const sleeps: number[] = [];
    const f = new FaultyBackend(mem, { sleep: async (ms) => void sleeps.push(ms) });
    const once = async <T>(rule: FaultRule, fn: () => Promise<T>): Promise<T> => {
      f.rules = [rule];
      try {
        return await fn();
      } finally {
        f.rules = [];
      }
    };
    await assert.rejects(once({ kind: 'transient' }, () => f.get(pk('k1'))), (e: unknown) => e instanceof BackendError && e.retryable && e.code === 'BACKEND');
    await assert.rejects(once({ kind: 'io' }, () => f.get(pk('k1'))), (e: unknown) => e instanceof BackendError && !e.retryable && e.code === 'BACKEND');
    await assert.rejects(once({ kind: 'nospace' }, () => f.put(pk('k2'), data)), (e: unknown) => e instanceof NoSpaceError && e.code === 'NO_SPACE' && /no space left on the device holding the repository memory: \(injected fault\)/.test(e.message));
    assert.deepEqual(await names(f, 'pack'), ['k1'], 'a fault before the call: nothing stored');
    await assert.rejects(once({ kind: 'transient', when: 'after' }, () => f.put(pk('k3'), data)), /injected transient fault: put pack\/k3/);
    assert.deepEqual(await names(f, 'pack'), ['k1', 'k3'], 'a fault after the call: the store did the work');
    assert.deepEqual(await once({ kind: 'short-read' }, () => f.get(pk('k1'))), data.subarray(0, 8));
    assert.deepEqual(await once({ kind: 'short-read' }, () => f.get(pk('k1'), { offset: 2, length: 6 })), data.subarray(2, 5));
    const bad = await once({ kind: 'corrupt' }, () => f.get(pk('k1')));
    assert.equal(bad.length, data.length);
    assert.equal([...bad].filter((x, i) => x !== data[i]).length, 1, 'one byte flipped');
    assert.deepEqual(mem.raw(pk('k1')), data, 'the stored file is untouched');
    assert.deepEqual(await once({ kind: 'corrupt', op: 'put' }, () => f.get(pk('k1'))), data, 'read damage applies to get only');
    await once({ kind: 'delay', delayMs: 250 }, () => f.stat(pk('k1')));
    await once({ kind: 'delay' }, () => names(f, 'pack'));
    assert.deepEqual(sleeps, [250, 100]);
    await assert.rejects(once({ kind: 'io', op: 'deleteSync' }, async () => f.deleteSync!(pk('k3'))), /injected I\/O error: deleteSync pack\/k3/);
    assert.deepEqual(await names(f, 'pack'), ['k1', 'k3']);
    await assert.rejects(once({ kind: 'transient', op: 'list', when: 'after' }, () => names(f, 'pack')), /injected transient fault: list pack/);
    assert.equal(f.count('delay'), 2);
  });

  it('a commit fault before the commit gives the writer up (no partial file); nospace on commit is NO_SPACE', async () => {
    const dir = await tempDir('faulty-commit');
    try {
      const f = new FaultyBackend(new LocalBackend(path.join(dir, 'repo')), { rules: [{ kind: 'nospace', op: 'commit', type: 'pack', nth: 1 }] });
      await f.create();
      const w = await f.openWriter!('pack');
      w.write([Buffer.alloc(1000, 1)]);
      await assert.rejects(w.commit('cd'.repeat(32)), (e: unknown) => e instanceof MeshbackError && e.code === 'NO_SPACE');
      assert.equal((await f.removeTemporary!(0)).files, 0);
      const w2 = await f.openWriter!('pack');
      w2.write([Buffer.alloc(1000, 1)]);
      await w2.commit('cd'.repeat(32));
      assert.deepEqual(await names(f, 'pack'), ['cd'.repeat(32)]);
    } finally {
      await removeDir(dir);
    }
  });

  it('parses a fault plan written as text, and refuses a bad one in one line with an example', () => {
    assert.deepEqual(parseFaultSpec('seed=7; transient,op=put|get,type=pack,p=0.1,when=after ;nospace,op=commit,nth=3|5,times=1;delay,ms=20,from=2'), {
      seed: 7,
      rules: [
        { kind: 'transient', op: ['put', 'get'], type: ['pack'], probability: 0.1, when: 'after' },
        { kind: 'nospace', op: ['commit'], nth: [3, 5], times: 1 },
        { kind: 'delay', delayMs: 20, from: 2 },
      ],
    });
    for (const [bad, why] of [
      ['', /no rule/],
      ['flaky', /unknown fault kind "flaky"/],
      ['io,op=write', /unknown op "write"/],
      ['io,type=packs', /unknown file type "packs"/],
      ['io,p=2', /p=2 is not a number from 0 to 1/],
      ['io,when=during', /when=during is neither before nor after/],
      ['io,nth=0', /nth=0/],
      ['io,color=red', /unknown option "color"/],
    ] as const) {
      assert.throws(
        () => parseFaultSpec(bad),
        (e: unknown) => e instanceof UsageError && why.test(e.message) && /e\.g\. 'seed=7;transient/.test(e.message) && !e.message.includes('\n'),
        bad,
      );
    }
  });
});

describe('stack', () => {
  it('composes faults -> limit -> retry, and unwrap/findLayer reach every layer', () => {
    const local = new LocalBackend('/nonexistent/stack');
    const s = stack(local, { faults: { rules: [] } });
    assert.ok(s instanceof RetryBackend);
    assert.ok(s.inner instanceof LimitBackend);
    assert.ok(s.inner.inner instanceof FaultyBackend);
    assert.equal(s.inner.inner.inner, local);
    assert.equal(unwrap(s), local);
    assert.equal(findLayer(s, LimitBackend)!.slots.limit, 32);
    assert.equal(s.location, local.location);
    assert.equal(s.properties.connections, 32);
    const plain = stack(local);
    assert.equal(findLayer(plain, FaultyBackend), undefined);
    assert.ok(findLayer(plain, LimitBackend) !== undefined);
    assert.equal(stack(local, { retry: false, connections: false }), local);
    assert.equal(findLayer(stack(local, { connections: 2 }), LimitBackend)!.slots.limit, 2);
  });

  it('every wrapper has an optional method exactly when the backend under it has it', () => {
    const optional = ['openWriter', 'replace', 'removeTemporary', 'deleteSync'] as const;
    const bare: Backend = { location: 'bare:', properties: { connections: 1 }, exists: async () => false, create: async () => undefined, put: async () => undefined, get: async () => Buffer.alloc(0), stat: async (h) => ({ name: h.name, size: 0 }), list: async function* () {
      yield* [] as FileInfo[];
    }, delete: async () => undefined, close: async () => undefined };
    for (const inner of [new LocalBackend('/nonexistent/opt'), new MemoryBackend(), bare] as Backend[]) {
      for (const w of [new RetryBackend(inner), new LimitBackend(inner), new FaultyBackend(inner), stack(inner, { faults: {} })]) {
        for (const m of optional) assert.equal(typeof w[m], typeof inner[m], `${w.constructor.name} over ${inner.constructor.name}: ${m}`);
      }
    }
  });

  it('deleteSync works through the whole stack (the lock files of an interrupted process)', async () => {
    const mem = new MemoryBackend();
    const s = stack(mem, { faults: {} });
    await s.put({ type: 'lock', name: 'l1' }, Buffer.from('lock'));
    s.deleteSync!({ type: 'lock', name: 'l1' });
    assert.equal(mem.raw({ type: 'lock', name: 'l1' }), undefined);
  });
});

describe('Semaphore', () => {
  it('serves waiters first come, first served, hands a released unit on, and runs an oversized request alone', async () => {
    const s = new Semaphore(2);
    assert.ok(s.tryAcquire());
    assert.ok(s.tryAcquire());
    assert.ok(!s.tryAcquire());
    const order: string[] = [];
    const a = s.acquire().then(() => order.push('a'));
    const b = s.acquire().then(() => order.push('b'));
    assert.equal(s.waiting, 2);
    s.release();
    assert.ok(!s.tryAcquire(), 'a newcomer does not overtake a waiter');
    await a;
    s.release();
    await b;
    assert.deepEqual(order, ['a', 'b']);
    s.release();
    s.release();
    assert.equal(s.inUse, 0);
    const big = new Semaphore(4);
    await big.acquire(10);
    assert.equal(big.inUse, 10);
    assert.ok(!big.tryAcquire(1));
    big.release(10);
    assert.throws(() => big.release(), /released more than was acquired/);
    assert.throws(() => new Semaphore(0), RangeError);
  });
});
