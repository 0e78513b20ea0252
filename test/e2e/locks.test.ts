/**
 * End-to-end: repository locks across real processes. Concurrent backups into one repository,
 * an exclusive holder (test/helpers/lock-holder.ts: prune does not exist yet) against the CLI
 * and the CLI against it, stale locks (dead process, age), refresh by replacement, --retry-lock,
 * and lock removal when a command ends, fails or is terminated.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { createReadStream, promises as fsp, readlinkSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalBackend } from '../../src/storage/local.ts';
import { Repository } from '../../src/repository/index.ts';
import { listLocks, writeLockFile } from '../../src/repository/lock.ts';
import type { LockEntry, LockInfo } from '../../src/repository/lock.ts';
import { BIN, ROOT, mb, rmrf, tmpdir } from '../helpers/cli.ts';

const HOLDER = path.join(ROOT, 'test/helpers/lock-holder.ts');
/** processes started by this file, killed at the end whatever happened */
const children = new Set<ChildProcess>();
const PW = 'pw-locks';

function bytes(seed: string, n: number): Buffer {
  const key = createHash('sha256').update(seed).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

/** A tree of random files and small files under `dir`; with `sparseMiB`, a mostly-hole file that keeps a backup busy for a second or two. */
async function makeTree(dir: string, seed: string, opts: { sparseMiB?: number } = {}): Promise<void> {
  await fsp.mkdir(path.join(dir, 'conf/envoy'), { recursive: true });
  await fsp.mkdir(path.join(dir, 'data/wal'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'data/big.bin'), bytes(`${seed}-big`, 12 * 1024 * 1024));
  for (let i = 0; i < 200; i++) await fsp.writeFile(path.join(dir, 'data/wal', `seg-${String(i).padStart(4, '0')}`), bytes(`${seed}-wal-${i}`, 100 + ((i * 7919) % 20000)));
  await fsp.writeFile(path.join(dir, 'conf/envoy/envoy.yaml'), `# ${seed}\nstatic_resources:\n  listeners: []\n`.repeat(100));
  if (opts.sparseMiB !== undefined) {
    const fh = await fsp.open(path.join(dir, 'data/volume.img'), 'w');
    try {
      await fh.truncate(opts.sparseMiB * 1024 * 1024);
      await fh.write(bytes(`${seed}-sparse`, 1024 * 1024), 0, 1024 * 1024, 300 * 1024 * 1024);
    } finally {
      await fh.close();
    }
  }
}

/** sha256 of every regular file below `dir`, by relative path. */
async function hashTree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(path.join(d, e.name), r);
      else if (e.isFile()) {
        const h = createHash('sha256');
        for await (const chunk of createReadStream(path.join(d, e.name), { highWaterMark: 4 * 1024 * 1024 })) h.update(chunk as Buffer);
        out.set(r, h.digest('hex'));
      }
    }
  };
  await walk(dir, '');
  return out;
}

async function lockFiles(repo: string): Promise<string[]> {
  return (await fsp.readdir(path.join(repo, 'locks'))).filter((n) => !n.startsWith('.')).sort();
}

async function waitFor<T>(what: string, f: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const until = performance.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Starts the real CLI without waiting; `done` resolves with its exit code and output. */
function start(args: string[], env: Record<string, string>): { child: ChildProcess; done: Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> } {
  const child = spawn(BIN, args, { env: { ...process.env, MESHBACK_TEST_SCRYPT_N: '1024', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('close', () => children.delete(child));
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

/** Starts lock-holder.ts; resolves once it holds the lock (or with its LOCKED refusal). */
function holder(repo: string, mode: 'shared' | 'exclusive', command: string, env: Record<string, string> = {}): { child: ChildProcess; ready: Promise<{ pid?: number; name?: string; error?: string; code?: string }>; exit: Promise<number | null> } {
  const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', HOLDER, repo, mode, command], {
    env: { ...process.env, MESHBACK_TEST_SCRYPT_N: '1024', MESHBACK_PASSWORD: PW, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.add(child);
  child.on('close', () => children.delete(child));
  let out = '';
  child.stderr!.resume();
  const ready = new Promise<{ pid?: number; name?: string; error?: string; code?: string }>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(JSON.parse(out.slice(0, nl)) as { pid?: number; name?: string });
    });
    child.on('error', reject);
    child.on('close', (code) => reject(new Error(`lock holder exited (${code}) before holding: ${out}`)));
  });
  ready.catch(() => undefined);
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, ready, exit };
}

function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

function pidNamespace(): { pidNamespace?: string } {
  try {
    return { pidNamespace: readlinkSync('/proc/self/ns/pid') };
  } catch {
    return {};
  }
}

describe('repository locks, end to end', () => {
  let base: string;
  let slowSrc: string;
  let n = 0;

  /** A fresh repository (so that no parent snapshot lets a backup skip the slow file). */
  async function freshRepo(): Promise<{ repo: string; env: Record<string, string> }> {
    const repo = path.join(base, `repo-${n++}`);
    const env = { MESHBACK_REPO: repo, MESHBACK_PASSWORD: PW };
    const r = await mb(['init'], { env });
    assert.equal(r.code, 0, r.stderr);
    return { repo, env };
  }

  async function openApi(repo: string): Promise<Repository> {
    process.env.MESHBACK_TEST_SCRYPT_N = '1024';
    return Repository.open(new LocalBackend(repo), PW, { loadIndex: false });
  }

  before(async () => {
    base = tmpdir('locks');
    slowSrc = path.join(base, 'slow');
    await makeTree(slowSrc, 'slow', { sparseMiB: 768 });
  });
  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    await rmrf(base);
  });

  test('two concurrent backups into one repository both succeed, both restore byte-identical, check --read-data passes', async () => {
    const { repo, env } = await freshRepo();
    const srcB = path.join(base, 'mesh-b');
    await makeTree(srcB, 'mesh-b');
    let maxLocks = 0;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        maxLocks = Math.max(maxLocks, (await lockFiles(repo)).length);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const a = start(['backup', slowSrc, '--json'], env);
    await waitFor('the first backup to hold its lock', async () => ((await lockFiles(repo)).length > 0 ? true : undefined));
    const b = start(['backup', srcB, '--json'], env);
    const [ra, rb] = await Promise.all([a.done, b.done]);
    polling = false;
    await poll;
    assert.equal(ra.code, 0, ra.stderr);
    assert.equal(rb.code, 0, rb.stderr);
    // 2 locks at once; 3 when one of them was being refreshed at that moment (a refresh writes the
    // new lock file before it deletes the old one)
    assert.ok(maxLocks >= 2 && maxLocks <= 3, `both shared locks were held at once (at most ${maxLocks} lock files seen)`);
    assert.deepEqual(await lockFiles(repo), [], 'both locks removed');

    const snaps = JSON.parse((await mb(['snapshots', '--json'], { env })).stdout) as { id: string; paths: string[]; time: string; endTime: string }[];
    assert.equal(snaps.length, 2);
    const sa = snaps.find((s) => s.paths[0] === slowSrc)!;
    const sb = snaps.find((s) => s.paths[0] === srcB)!;
    assert.ok(sb.time < sa.endTime && sa.time < sb.endTime, `the two backups overlapped in time: ${JSON.stringify([sa.time, sa.endTime, sb.time, sb.endTime])}`);

    for (const [s, src] of [[sa, slowSrc], [sb, srcB]] as const) {
      const target = path.join(base, `restore-${s.id.slice(0, 8)}`);
      const r = await mb(['restore', s.id, '--target', target], { env });
      assert.equal(r.code, 0, r.stderr);
      const want = await hashTree(src);
      const got = await hashTree(target);
      assert.ok(want.size > 200);
      assert.deepEqual([...got.entries()].sort(), [...want.entries()].sort(), `snapshot of ${src} restores byte-identical`);
      await rmrf(target);
    }
    const c = await mb(['check', '--read-data'], { env });
    assert.equal(c.code, 0, c.stdout + c.stderr);
    assert.match(c.stdout, /no errors were found/);
  });

  test('a live backup blocks an exclusive locker (exit 11, names the backup process); read-only commands go on', async () => {
    const { repo, env } = await freshRepo();
    const bk = start(['backup', slowSrc], env);
    await waitFor('the backup to hold its lock', async () => ((await lockFiles(repo)).length > 0 ? true : undefined));
    const x = holder(repo, 'exclusive', 'prune');
    const refused = await x.ready;
    assert.equal(await x.exit, 11);
    assert.equal(refused.code, 'LOCKED');
    assert.match(refused.error!, new RegExp(`a shared lock is held by 'meshback backup' \\(pid ${bk.child.pid} on ${os.hostname()}, user \\S+, since \\S+, refreshed \\d+ s ago\\); 'meshback prune' needs the repository to itself: wait for it to finish or pass --retry-lock DURATION`));
    // read-only commands take no lock
    assert.equal((await mb(['snapshots'], { env })).code, 0);
    const r = await bk.done;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await lockFiles(repo), []);
  });

  test('an exclusive holder makes backup, restore and check exit 11 with a one-line message; --retry-lock waits it out', async () => {
    const { repo, env } = await freshRepo();
    const small = path.join(base, 'small');
    await fsp.mkdir(small, { recursive: true });
    await fsp.writeFile(path.join(small, 'a.txt'), 'hello\n');
    assert.equal((await mb(['backup', small], { env })).code, 0);
    const x = holder(repo, 'exclusive', 'prune');
    const h = await x.ready;
    for (const args of [['backup', small], ['restore', 'latest', '--target', path.join(base, 'r-x')], ['check']]) {
      const r = await mb(args, { env });
      assert.equal(r.code, 11, `${args[0]}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^meshback: the repository is locked: an exclusive lock is held by 'meshback prune' \\(pid ${h.pid} on ${os.hostname()}, .*meshback unlock --remove-all.*\\n$`));
      assert.equal(r.stderr.split('\n').length, 2, 'one line');
    }
    const j = await mb(['check', '--json'], { env });
    assert.equal(j.code, 11);
    const err = JSON.parse(j.stdout.trim().split('\n').pop()!) as { message_type: string; code: string; holder: LockInfo };
    assert.equal(err.code, 'LOCKED');
    assert.equal(err.holder.pid, h.pid);
    assert.equal(err.holder.command, 'prune');
    assert.deepEqual(await lockFiles(repo), [h.name], 'the refused commands left no lock');
    assert.equal((await mb(['ls', 'latest'], { env })).code, 0, 'ls takes no lock');

    const waiting = start(['--retry-lock', '30s', 'backup', small], env);
    await new Promise((r) => setTimeout(r, 1200));
    x.child.stdin!.end(); // the holder releases
    assert.equal(await x.exit, 0);
    const w = await waiting.done;
    assert.equal(w.code, 0, w.stderr);
    assert.match(w.stderr, /warning: the repository is locked by exclusive lock [0-9a-f]{8} of 'meshback prune' held by .*: waiting up to 30 s for it/);
    assert.deepEqual(await lockFiles(repo), []);
    assert.equal((await mb(['--retry-lock', 'soon', 'check'], { env })).code, 2);
  });

  test("a lock whose process is gone is reported as stale and ignored; 'unlock' removes it, live locks stay", async () => {
    const { repo, env } = await freshRepo();
    const small = path.join(base, 'small2');
    await fsp.mkdir(small, { recursive: true });
    await fsp.writeFile(path.join(small, 'b.txt'), 'world\n');
    // 1) written through the API for a process that has exited
    const api = await openApi(repo);
    const pid = deadPid();
    const now = new Date().toISOString();
    const dead = await writeLockFile(api, { version: 1, exclusive: true, host: os.hostname(), pid, username: 'someone', time: now, created: now, command: 'prune', ...pidNamespace() });
    // 2) a real holder killed with SIGKILL, which cannot clean up; it took its exclusive lock
    //    despite the exclusive lock of the dead process, which is stale
    const k = holder(repo, 'exclusive', 'prune');
    const killed = await k.ready;
    assert.ok(killed.name !== undefined, JSON.stringify(killed));
    k.child.kill('SIGKILL');
    await k.exit;
    assert.deepEqual(await lockFiles(repo), [dead, killed.name!].sort());

    const b = await mb(['backup', small], { env });
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stderr, new RegExp(`warning: ignoring stale lock ${dead.slice(0, 8)} held by ${os.hostname()}/${pid} \\('meshback prune', exclusive\\) since \\S+: process ${pid} no longer runs on ${os.hostname()}; remove it with 'meshback unlock'`));
    assert.match(b.stderr, new RegExp(`ignoring stale lock ${killed.name!.slice(0, 8)} held by ${os.hostname()}/${killed.pid} .*process ${killed.pid} no longer runs`));
    assert.deepEqual(await lockFiles(repo), [dead, killed.name!].sort(), 'stale locks are left in place');

    // a live lock next to them
    const live = holder(repo, 'shared', 'restore');
    const l = await live.ready;
    const listed = JSON.parse((await mb(['unlock', '--list', '--json'], { env })).stdout) as { id: string; stale: boolean; pid: number; reason?: string }[];
    assert.deepEqual(listed.map((e) => [e.id, e.stale]).sort(), [[dead, true], [killed.name, true], [l.name, false]].sort());
    const u = await mb(['unlock'], { env });
    assert.equal(u.code, 0, u.stderr);
    assert.match(u.stdout, new RegExp(`removed exclusive lock ${dead.slice(0, 8)} of 'meshback prune' held by ${os.hostname()}/${pid}`));
    assert.match(u.stdout, /removed 2 stale lock\(s\), 1 live lock\(s\) left/);
    assert.deepEqual(await lockFiles(repo), [l.name]);
    const all = await mb(['unlock', '--remove-all', '--json'], { env });
    assert.equal(all.code, 0);
    const sum = JSON.parse(all.stdout.trim()) as { removed: { id: string; stale: boolean }[] };
    assert.deepEqual(sum.removed.map((e) => [e.id, e.stale]), [[l.name, false]]);
    assert.deepEqual(await lockFiles(repo), []);
    live.child.stdin!.end();
    assert.equal(await live.exit, 0);
  });

  test('a lock not refreshed for MESHBACK_LOCK_STALE_MS is stale even if its process lives', async () => {
    const { repo, env } = await freshRepo();
    const small = path.join(base, 'small3');
    await fsp.mkdir(small, { recursive: true });
    await fsp.writeFile(path.join(small, 'c.txt'), 'c\n');
    const api = await openApi(repo);
    const old = new Date(Date.now() - 20_000).toISOString();
    // this test process is alive: only the age can make the lock stale
    const name = await writeLockFile(api, { version: 1, exclusive: true, host: os.hostname(), pid: process.pid, username: 'me', time: old, created: old, command: 'prune', ...pidNamespace() });
    const blocked = await mb(['backup', small], { env });
    assert.equal(blocked.code, 11, 'live under the default stale age');
    const b = await mb(['backup', small], { env: { ...env, MESHBACK_LOCK_STALE_MS: '10000' } });
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stderr, new RegExp(`ignoring stale lock ${name.slice(0, 8)} held by ${os.hostname()}/${process.pid} .*: not refreshed for 2\\d s \\(stale after 10 s\\)`));
    const u = await mb(['unlock'], { env: { ...env, MESHBACK_LOCK_STALE_MS: '10000' } });
    assert.equal(u.code, 0);
    assert.match(u.stdout, /removed 1 stale lock\(s\)/);
    assert.deepEqual(await lockFiles(repo), []);
    assert.equal((await mb(['check'], { env: { ...env, MESHBACK_LOCK_STALE_MS: 'x' } })).code, 2, 'a bad setting is a usage error');
  });

  test('a running backup refreshes its lock by replacing the file (MESHBACK_LOCK_REFRESH_MS)', async () => {
    const { repo, env } = await freshRepo();
    const api = await openApi(repo);
    const seen = new Map<string, LockEntry>();
    const bk = start(['backup', slowSrc], { ...env, MESHBACK_LOCK_REFRESH_MS: '100', MESHBACK_LOCK_STALE_MS: '60000' });
    let running = true;
    void bk.done.then(() => (running = false));
    while (running) {
      try {
        for (const e of await listLocks(api)) seen.set(e.name, e);
      } catch {
        /* a file replaced between listing and reading: listLocks lists again; give up this round */
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    const r = await bk.done;
    assert.equal(r.code, 0, r.stderr);
    const entries = [...seen.values()];
    assert.ok(entries.length >= 4, `expected the lock file to be replaced several times, saw ${entries.length} names`);
    assert.ok(entries.every((e) => e.info!.pid === bk.child.pid && e.info!.created === entries[0]!.info!.created && !e.stale));
    assert.equal(new Set(entries.map((e) => e.info!.time)).size, entries.length, 'each file has a new time');
    assert.deepEqual(await lockFiles(repo), []);
  });

  test('a backup whose lock was removed under it does not save its snapshot (exit 11)', async () => {
    const { repo, env } = await freshRepo();
    const api = await openApi(repo);
    const bk = start(['backup', slowSrc], env);
    const name = await waitFor('the backup to hold its lock', async () => (await lockFiles(repo))[0]);
    await api.backend.delete({ type: 'lock', name }); // as 'meshback unlock --remove-all' would
    const r = await bk.done;
    assert.equal(r.code, 11, r.stderr);
    assert.match(r.stderr, /meshback: stopped before writing the snapshot: the repository lock of 'meshback backup' is no longer safely held \(its file [0-9a-f]{8} was removed by another process, e\.g\. 'meshback unlock'\), so another process may have treated the repository as unlocked; run the command again\n$/);
    assert.equal(JSON.parse((await mb(['snapshots', '--json'], { env })).stdout).length, 0, 'no snapshot was saved');
    assert.deepEqual(await lockFiles(repo), []);
  });

  test('the lock is removed when a command fails and when it is terminated with SIGTERM', async () => {
    const { repo, env } = await freshRepo();
    const missing = await mb(['backup', path.join(base, 'no-such-dir')], { env });
    assert.equal(missing.code, 5, missing.stderr);
    assert.deepEqual(await lockFiles(repo), []);

    const bk = start(['backup', slowSrc], env);
    await waitFor('the backup to hold its lock', async () => ((await lockFiles(repo)).length > 0 ? true : undefined));
    bk.child.kill('SIGTERM');
    const r = await bk.done;
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /interrupted \(SIGTERM\)/);
    assert.deepEqual(await lockFiles(repo), [], 'the lock file was removed before exit');
    assert.equal(JSON.parse((await mb(['snapshots', '--json'], { env })).stdout).length, 0);
  });
});
