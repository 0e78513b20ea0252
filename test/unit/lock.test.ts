process.env.MESHBACK_TEST_SCRYPT_N = '1024';
delete process.env.MESHBACK_LOCK_STALE_MS;
delete process.env.MESHBACK_LOCK_REFRESH_MS;
/**
 * Repository locks through the library API: shared/exclusive conflicts, stale rules (dead
 * process, age, damaged file), refresh by replacement, loss detection before a snapshot write,
 * release paths, and mutual exclusion under racing acquirers on the local backend.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalBackend } from '../../src/storage/local.ts';
import { MemoryBackend } from '../../src/storage/memory.ts';
import { FaultyBackend } from '../../src/storage/faulty.ts';
import { MeshbackError } from '../../src/errors/index.ts';
import type { MeshEvent } from '../../src/events/index.ts';
import { Repository } from '../../src/repository/index.ts';
import { acquireLock, heldLocks, listLocks, lockTimings, releaseHeldLocks, releaseHeldLocksSync, removeLocks, writeLockFile } from '../../src/repository/lock.ts';
import type { LockInfo } from '../../src/repository/lock.ts';
import type { Snapshot } from '../../src/snapshot/manifest.ts';
import { removeDir, tempDir } from './helpers.ts';

const PW = 'lock-test';

async function lockNames(repo: Repository): Promise<string[]> {
  const out: string[] = [];
  for await (const f of repo.backend.list('lock')) out.push(f.name);
  return out.sort();
}

/** A pid that certainly names no process: one that just exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  const pid = Number(r.stdout);
  assert.ok(pid > 0);
  return pid;
}

function info(over: Partial<LockInfo>): LockInfo {
  const now = new Date().toISOString();
  return { version: 1, exclusive: false, host: os.hostname(), pid: process.pid, username: 'tester', time: now, created: now, command: 'backup', ...over };
}

function ownPidNs(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
}

const snapshot = { version: 1, time: new Date().toISOString(), endTime: new Date().toISOString(), host: 'h', username: 'u', paths: ['/x'], tags: [], tree: '00'.repeat(32), summary: {}, program: 'test' } as unknown as Snapshot;

describe('repository locks', () => {
  let dir: string;
  let repoA: Repository;
  let repoB: Repository;

  before(async () => {
    dir = await tempDir('lock');
    const backend = new LocalBackend(path.join(dir, 'repo'));
    repoA = await Repository.init(backend, PW);
    // a second, independent opening of the same repository (as another process would have)
    repoB = await Repository.open(new LocalBackend(path.join(dir, 'repo')), PW);
  });
  after(async () => {
    await releaseHeldLocks();
    await removeDir(dir);
  });

  test('shared locks coexist; release removes each file', async () => {
    const a = await acquireLock(repoA, { exclusive: false, command: 'backup' });
    const b = await acquireLock(repoB, { exclusive: false, command: 'restore' });
    const locks = await listLocks(repoA);
    assert.equal(locks.length, 2);
    assert.ok(locks.every((l) => !l.stale && l.info!.pid === process.pid && l.info!.host === os.hostname()));
    assert.deepEqual(locks.map((l) => l.info!.command).sort(), ['backup', 'restore']);
    await a.release();
    await b.release();
    assert.deepEqual(await lockNames(repoA), []);
    assert.equal(heldLocks().length, 0);
  });

  test('an exclusive lock is refused while a shared one is held, and leaves no file behind', async () => {
    const s = await acquireLock(repoA, { exclusive: false, command: 'backup' });
    await assert.rejects(acquireLock(repoB, { exclusive: true, command: 'prune' }), (err: unknown) => {
      assert.ok(err instanceof MeshbackError);
      assert.equal(err.code, 'LOCKED');
      assert.match(err.message, new RegExp(`a shared lock is held by 'meshback backup' \\(pid ${process.pid} on ${os.hostname()}`));
      assert.match(err.message, /--retry-lock/);
      assert.match(err.message, /meshback unlock --remove-all/);
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
    assert.deepEqual(await lockNames(repoA), [s.name]);
    await s.release();
  });

  test('a shared lock is refused while an exclusive one is held; so is a second exclusive', async () => {
    const x = await acquireLock(repoA, { exclusive: true, command: 'prune' });
    await assert.rejects(acquireLock(repoB, { exclusive: false, command: 'backup' }), /an exclusive lock is held by 'meshback prune'/);
    await assert.rejects(acquireLock(repoB, { exclusive: true, command: 'prune' }), /an exclusive lock is held by 'meshback prune'/);
    assert.deepEqual(await lockNames(repoA), [x.name]);
    await x.release();
  });

  test('retryMs waits for the holder to release, and says so once', async () => {
    const s = await acquireLock(repoA, { exclusive: false, command: 'backup' });
    setTimeout(() => void s.release(), 700);
    const events: MeshEvent[] = [];
    const t0 = performance.now();
    const x = await acquireLock(repoB, { exclusive: true, command: 'prune', retryMs: 10_000, events: (e) => events.push(e) });
    assert.ok(performance.now() - t0 >= 650);
    const waits = events.filter((e) => e.type === 'warning' && /waiting up to 10 s/.test(e.message));
    assert.equal(waits.length, 1);
    await x.release();
    // and a retry that runs out fails with how long it waited
    const s2 = await acquireLock(repoA, { exclusive: false, command: 'backup' });
    await assert.rejects(acquireLock(repoB, { exclusive: true, command: 'prune', retryMs: 300 }), /locked \(waited 0 s\)|locked \(waited 1 s\)/);
    await s2.release();
  });

  test("a lock of a process that is gone on this host is stale: reported, ignored, left, removed by removeLocks", async () => {
    const pid = deadPid();
    const ns = ownPidNs();
    const dead = await writeLockFile(repoA, info({ pid, exclusive: true, command: 'prune', ...(ns !== undefined ? { pidNamespace: ns } : {}) }));
    const events: MeshEvent[] = [];
    const x = await acquireLock(repoB, { exclusive: true, command: 'prune', events: (e) => events.push(e) });
    const warn = events.find((e) => e.type === 'warning');
    assert.ok(warn !== undefined && warn.type === 'warning');
    assert.match(warn.message, new RegExp(`ignoring stale lock ${dead.slice(0, 8)} held by ${os.hostname()}/${pid} .*process ${pid} no longer runs.*meshback unlock`));
    assert.deepEqual(await lockNames(repoA), [dead, x.name].sort(), 'the stale lock is left in place');
    const listed = await listLocks(repoA);
    assert.equal(listed.find((l) => l.name === dead)!.stale, true);
    assert.equal(listed.find((l) => l.name === x.name)!.stale, false);
    assert.equal(listed.find((l) => l.name === x.name)!.own, true);
    const { removed, kept } = await removeLocks(repoA);
    assert.deepEqual(removed.map((r) => r.name), [dead]);
    assert.deepEqual(kept.map((r) => r.name), [x.name]);
    await x.release();
    assert.deepEqual(await lockNames(repoA), []);
  });

  test('a dead pid on another host, or in another PID namespace, proves nothing: the lock blocks', async () => {
    const pid = deadPid();
    const other = await writeLockFile(repoA, info({ pid, exclusive: true, host: 'some-other-host' }));
    await assert.rejects(acquireLock(repoB, { exclusive: false, command: 'backup' }), /pid \d+ on some-other-host/);
    await repoA.backend.delete({ type: 'lock', name: other });
    const ns = await writeLockFile(repoA, info({ pid, exclusive: true, pidNamespace: 'pid:[1]' }));
    await assert.rejects(acquireLock(repoB, { exclusive: false, command: 'backup' }), /LOCKED|locked/);
    await repoA.backend.delete({ type: 'lock', name: ns });
  });

  test('a lock not refreshed for the stale age is stale, even if its process lives', async () => {
    const old = new Date(Date.now() - 10_000).toISOString();
    const name = await writeLockFile(repoA, info({ exclusive: true, time: old, created: old, host: 'elsewhere' }));
    await assert.rejects(acquireLock(repoB, { exclusive: false, command: 'backup' }), /locked/, 'not stale under the default 30 min');
    const events: MeshEvent[] = [];
    const s = await acquireLock(repoB, { exclusive: false, command: 'backup', timings: { staleMs: 5000 }, events: (e) => events.push(e) });
    assert.ok(events.some((e) => e.type === 'warning' && e.message.includes(`ignoring stale lock ${name.slice(0, 8)}`) && /not refreshed for 1\d s/.test(e.message)));
    assert.equal((await removeLocks(repoA, { staleMs: 5000 })).removed.length, 1);
    await s.release();
  });

  test('an unreadable lock file is reported as damaged, treated as stale, and removable', async () => {
    await repoA.backend.put({ type: 'lock', name: 'f'.repeat(64) }, Buffer.from('not a lock'));
    const events: MeshEvent[] = [];
    const x = await acquireLock(repoB, { exclusive: true, command: 'prune', events: (e) => events.push(e) });
    assert.ok(events.some((e) => e.type === 'warning' && e.message.startsWith(`ignoring damaged lock file ffffffff`)));
    const l = (await listLocks(repoA)).find((e) => e.name === 'f'.repeat(64))!;
    assert.equal(l.stale, true);
    assert.ok(l.damaged !== undefined);
    assert.equal((await removeLocks(repoA)).removed.length, 1);
    await x.release();
  });

  test('a held lock is refreshed by writing a new file and deleting the old one', async () => {
    const l = await acquireLock(repoA, { exclusive: false, command: 'backup', timings: { refreshMs: 40, staleMs: 10_000 } });
    const first = l.name;
    const t1 = l.info.time;
    const seen = new Set<string>([first]);
    const until = performance.now() + 2000;
    while (seen.size < 4 && performance.now() < until) {
      await new Promise((r) => setTimeout(r, 15));
      for (const n of await lockNames(repoA)) seen.add(n);
    }
    assert.ok(seen.size >= 3, `expected several lock files over time, saw ${seen.size}`);
    assert.notEqual(l.name, first);
    assert.ok(l.info.time > t1);
    await new Promise((r) => setTimeout(r, 20));
    const now = await listLocks(repoA);
    assert.ok(now.length >= 1 && now.length <= 2, 'at most the current and the one being replaced');
    assert.ok(now.every((e) => e.info!.created === now[0]!.info!.created && e.info!.pid === process.pid));
    await l.release();
    assert.deepEqual(await lockNames(repoA), []);
  });

  test('a lock whose file was removed by another process is lost: the snapshot write is refused', async () => {
    const l = await acquireLock(repoA, { exclusive: false, command: 'backup' });
    await repoB.backend.delete({ type: 'lock', name: l.name });
    await assert.rejects(repoA.saveSnapshot(snapshot), (err: unknown) => {
      assert.ok(err instanceof MeshbackError && err.code === 'LOCKED');
      assert.match(err.message, /^stopped before writing the snapshot: the repository lock of 'meshback backup' is no longer safely held \(its file [0-9a-f]{8} was removed by another process/);
      return true;
    });
    assert.throws(() => l.assertHeld(), /no longer safely held/);
    await assert.rejects(repoA.saveSnapshot(snapshot), /no longer safely held/, 'and stays refused');
    let snaps = 0;
    for await (const _ of repoA.backend.list('snapshot')) snaps++;
    assert.equal(snaps, 0);
    await l.release();
    // with the lock released, the guard is gone
    await repoA.saveSnapshot(snapshot);
  });

  test('SIGINT path: releaseHeldLocksSync deletes the files at once', async () => {
    const a = await acquireLock(repoA, { exclusive: false, command: 'backup' });
    const b = await acquireLock(repoB, { exclusive: false, command: 'check' });
    assert.equal((await lockNames(repoA)).length, 2);
    assert.deepEqual(releaseHeldLocksSync(), []);
    assert.deepEqual(await lockNames(repoA), []);
    assert.throws(() => a.assertHeld(), /it was released/);
    await b.release(); // a no-op now
    assert.equal(heldLocks().length, 0);
  });

  test('racing exclusive acquirers never hold the lock together', async () => {
    const repos = [repoA, repoB, await Repository.open(new LocalBackend(path.join(dir, 'repo')), PW), await Repository.open(new LocalBackend(path.join(dir, 'repo')), PW)];
    // without retry: at most one wins each round
    for (let round = 0; round < 5; round++) {
      const rs = await Promise.allSettled(repos.map((r) => acquireLock(r, { exclusive: true, command: 'prune' })));
      const won = rs.filter((r) => r.status === 'fulfilled');
      assert.ok(won.length <= 1, `round ${round}: ${won.length} holders`);
      for (const r of rs) if (r.status === 'rejected') assert.equal((r.reason as MeshbackError).code, 'LOCKED');
      for (const w of won) await w.value.release();
      assert.deepEqual(await lockNames(repoA), []);
    }
    // with retry: everyone gets a turn, one at a time
    let inside = 0;
    let maxInside = 0;
    await Promise.all(
      repos.map(async (r, i) => {
        const l = await acquireLock(r, { exclusive: i % 2 === 0, command: i % 2 === 0 ? 'prune' : 'backup', retryMs: 30_000 });
        inside += l.exclusive ? 100 : 1;
        maxInside = Math.max(maxInside, inside);
        await new Promise((res) => setTimeout(res, 50));
        inside -= l.exclusive ? 100 : 1;
        await l.release();
      }),
    );
    assert.ok(maxInside === 100 || maxInside <= 2, `exclusive holder overlapped another: ${maxInside}`);
  });
});

describe('lock refresh failures', () => {
  test('a failed refresh makes assertHeld throw; a later success (verify) restores it', async () => {
    const backend = new FaultyBackend(new MemoryBackend());
    const repo = await Repository.init(backend, PW);
    const events: MeshEvent[] = [];
    const l = await acquireLock(repo, { exclusive: false, command: 'backup', events: (e) => events.push(e) });
    backend.rules = [{ kind: 'transient', op: 'put', type: 'lock' }];
    await l.refresh();
    assert.throws(() => l.assertHeld('writing the snapshot'), /refreshing it failed: injected transient fault: put lock\//);
    assert.ok(events.some((e) => e.type === 'warning' && /could not refresh the repository lock/.test(e.message)));
    // the refresh before the snapshot fails too: within the stale age the lock still stands, so the
    // error is the storage's (BACKEND, exit 7), not a lost lock (LOCKED, exit 11)
    await assert.rejects(repo.saveSnapshot(snapshot), (err: MeshbackError) => {
      assert.equal(err.code, 'BACKEND');
      assert.match(err.message, /stopped before writing the snapshot: could not refresh the repository lock: injected transient fault: put lock\//);
      return true;
    });
    backend.rules = [];
    await l.verify();
    l.assertHeld();
    await repo.saveSnapshot(snapshot);
    await l.release();
  });

  test('a lock past its stale age without a refresh (the process was stalled) is no longer held', async () => {
    const repo = await Repository.init(new MemoryBackend(), PW);
    const l = await acquireLock(repo, { exclusive: false, command: 'backup', timings: { refreshMs: 100, staleMs: 150 } });
    l.assertHeld();
    // a stalled event loop: the refresh timer cannot run (as when the process was stopped)
    const until = Date.now() + 250;
    while (Date.now() < until) {
      /* spin */
    }
    assert.throws(() => l.assertHeld(), /last refreshed 0 s ago, past the stale age of 0 s/);
    // a refresh now comes too late: others may already have ignored the lock, so it stays lost
    await assert.rejects(l.verify('writing the snapshot'), /stopped before writing the snapshot: .*it went 0 s without a refresh, past the stale age/);
    await assert.rejects(repo.saveSnapshot(snapshot), /LOCKED|no longer safely held/);
    await l.release();
  });

  test('MemoryBackend locks release synchronously too', async () => {
    const repo = await Repository.init(new MemoryBackend(), PW);
    await acquireLock(repo, { exclusive: true, command: 'prune' });
    assert.deepEqual(releaseHeldLocksSync(), []);
    assert.equal((await listLocks(repo)).length, 0);
  });
});

describe('lock settings', () => {
  test('defaults, environment overrides, and refusals', () => {
    assert.deepEqual(lockTimings({}), { refreshMs: 300_000, staleMs: 1_800_000 });
    assert.deepEqual(lockTimings({ MESHBACK_LOCK_STALE_MS: '6000' }), { refreshMs: 1000, staleMs: 6000 });
    assert.deepEqual(lockTimings({ MESHBACK_LOCK_STALE_MS: '6000', MESHBACK_LOCK_REFRESH_MS: '100' }), { refreshMs: 100, staleMs: 6000 });
    assert.throws(() => lockTimings({ MESHBACK_LOCK_STALE_MS: 'soon' }), /MESHBACK_LOCK_STALE_MS=soon is not a positive whole number/);
    assert.throws(() => lockTimings({ MESHBACK_LOCK_REFRESH_MS: '3600000' }), /must be positive and shorter than the stale age/);
  });

});
