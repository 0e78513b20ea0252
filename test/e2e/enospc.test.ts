/**
 * End-to-end: a full disk (ENOSPC) under the repository, the restore target and prune, on real
 * small loop-mounted ext4 filesystems (needs root; the suite is skipped, saying why, otherwise).
 *
 * What must hold: exit 6 with a one-line message saying the disk is full and what to do; nothing
 * stored before is damaged (`check --read-data` passes, earlier snapshots restore byte-identical);
 * no temporary files are left behind; the same command succeeds once there is room.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, promises as fsp, rmSync, unlinkSync, writeSync, fsyncSync } from 'node:fs';
import * as path from 'node:path';
import { compareTrees } from '../../lab/gen/compare.ts';
import { listPacks, mb, rmrf, summary, tmpdir } from '../helpers/cli.ts';
import { SmallFs, fillTo, loopMountProblem } from '../helpers/smallfs.ts';
import type { RunResult } from '../helpers/cli.ts';

const MiB = 1024 * 1024;
const FULL = /^meshback: no space left on the device holding the repository .+: free some space \(or prune old snapshots\) and run again; nothing already stored was changed\n$/;

/** Undo steps, run last-added first by run() (from an after hook), each even if another failed. */
class Cleanup {
  private readonly steps: (() => void)[] = [];
  add(step: () => void): void {
    this.steps.push(step);
  }
  run(): void {
    const errors: unknown[] = [];
    for (const step of this.steps.splice(0).reverse()) {
      try {
        step();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw errors[0];
  }
}

const skipReason = loopMountProblem();
if (skipReason !== undefined) console.error(`enospc.test.ts: skipped: ${skipReason}`);
const opts = skipReason !== undefined ? { skip: skipReason } : {};

/** A file of incompressible bytes (compression cannot make it fit). */
async function randomFile(file: string, size: number): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const fh = await fsp.open(file, 'w');
  try {
    for (let done = 0; done < size; done += MiB) await fh.write(randomBytes(Math.min(MiB, size - done)));
  } finally {
    await fh.close();
  }
}

async function smallFiles(dir: string, n: number): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  for (let i = 0; i < n; i++) await fsp.writeFile(path.join(dir, `f${i}.txt`), `file ${i}\n`.repeat(50 + i));
}

/** Every `.tmp-*` file below dir (paths relative to dir). */
async function tmpFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.name.startsWith('.tmp-')) out.push(path.relative(dir, path.join(e.parentPath, e.name)));
  }
  return out.sort();
}

async function snapshotIds(env: Record<string, string>): Promise<string[]> {
  const r = await mb(['snapshots', '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { id: string }[]).map((s) => s.id);
}

function backupId(r: RunResult): string {
  const m = /snapshot ([0-9a-f]{8}) saved/.exec(r.stdout);
  assert.ok(m !== null, `no snapshot id in: ${r.stdout}`);
  return m[1]!;
}

async function checkData(env: Record<string, string>): Promise<void> {
  const c = await mb(['check', '--read-data'], { env });
  assert.equal(c.code, 0, `check --read-data after the failure: ${c.stdout}${c.stderr}`);
}

async function restoresIdentical(env: Record<string, string>, snap: string, src: string, target: string): Promise<void> {
  await rmrf(target);
  const r = await mb(['restore', snap, '--target', target], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await compareTrees(src, target), []);
}

function oneLine(r: RunResult): void {
  assert.equal(r.stderr.split('\n').filter((l) => l !== '').length, 1, `stderr is not one line: ${r.stderr}`);
}

describe('full disk: repository', opts, () => {
  const cleanup = new Cleanup();
  let base: string;
  let fs: SmallFs;
  let repo: string;
  let filler: string;
  let env: Record<string, string>;
  let srcA: string;
  let srcBig: string;
  let snapA: string;

  before(async () => {
    base = tmpdir('enospc-repo');
    cleanup.add(() => rmSync(base, { recursive: true, force: true }));
    fs = new SmallFs(base, 'repofs');
    cleanup.add(() => fs.unmount());
    fs.mount(64);
    repo = path.join(fs.dir, 'repo');
    filler = path.join(fs.dir, 'filler');
    env = { MESHBACK_REPO: repo, MESHBACK_PASSWORD: 'pw' };
    srcA = path.join(base, 'a');
    await randomFile(path.join(srcA, 'data/a.bin'), 2 * MiB);
    await smallFiles(path.join(srcA, 'conf'), 20);
    srcBig = path.join(base, 'big');
    // more than a pack (16 MiB): the disk fills while a pack is still being streamed to its
    // temporary file, not only when a complete pack is committed
    await randomFile(path.join(srcBig, 'data/big.bin'), 30 * MiB);
    await smallFiles(path.join(srcBig, 'conf'), 20);
    assert.equal((await mb(['init'], { env })).code, 0);
    const b = await mb(['backup', srcA], { env });
    assert.equal(b.code, 0, b.stderr);
    snapA = backupId(b);
  });
  after(() => cleanup.run());

  test('a backup larger than the free space: exit 6, one line, nothing saved, nothing damaged, no temp files; prune cleans up; with room it succeeds', async () => {
    const packsBefore = await listPacks(repo);
    fillTo(fs, filler, 10 * MiB);
    const r = await mb(['backup', srcBig], { env });
    assert.equal(r.code, 6, `backup on a full disk: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, FULL);
    oneLine(r);
    console.error(`observed (backup, repository full): exit ${r.code}, stderr ${JSON.stringify(r.stderr)}`);
    assert.deepEqual((await snapshotIds(env)).map((s) => s.slice(0, 8)), [snapA], 'no snapshot for the failed run');
    assert.deepEqual(await tmpFiles(repo), [], 'temporary files left in the repository after ENOSPC');
    assert.deepEqual(await fsp.readdir(path.join(repo, 'locks')), [], 'lock left behind');
    await checkData(env);
    await restoresIdentical(env, snapA, srcA, path.join(base, 'out-a'));

    // prune removes what the failed run left (complete packs no index lists)
    const p = await mb(['prune', '--json'], { env });
    assert.equal(p.code, 0, p.stderr);
    assert.deepEqual(await listPacks(repo), packsBefore, 'prune left packs of the failed backup');
    await checkData(env);

    // room again: the same backup succeeds and restores identical
    await fsp.rm(filler);
    const ok = await mb(['backup', srcBig], { env });
    assert.equal(ok.code, 0, ok.stderr);
    await checkData(env);
    await restoresIdentical(env, backupId(ok), srcBig, path.join(base, 'out-big'));
    await restoresIdentical(env, snapA, srcA, path.join(base, 'out-a'));
  });
});

describe('full disk: repository metadata writes (index, lock refresh, snapshot)', opts, () => {
  const cleanup = new Cleanup();
  let base: string;
  let fs: SmallFs;
  let repo: string;
  let fillDir: string;
  let fillers: string[];
  let env: Record<string, string>;
  let src: string;
  let snap0: string;

  /** Creates empty files until the filesystem has no inode left, then removes n of them: n inodes free, exactly. */
  function leaveInodes(n: number): void {
    for (;;) {
      const f = path.join(fillDir, `i${fillers.length}`);
      try {
        closeSync(openSync(f, 'wx'));
      } catch (err) {
        if ((err as { code?: string }).code === 'ENOSPC') break;
        throw err;
      }
      fillers.push(f);
    }
    for (let i = 0; i < n; i++) unlinkSync(fillers.pop()!);
    assert.equal(fs.freeInodes(), n);
  }

  async function entries(sub: string): Promise<string[]> {
    return (await fsp.readdir(path.join(repo, sub))).filter((n) => !n.startsWith('.')).sort();
  }

  before(async () => {
    base = tmpdir('enospc-inodes');
    cleanup.add(() => rmSync(base, { recursive: true, force: true }));
    fs = new SmallFs(base, 'inodefs');
    cleanup.add(() => fs.unmount());
    // init takes about 270 inodes (the 256 pack directories among them)
    fs.mount(24, ['-N', '512', '-b', '1024']);
    repo = path.join(fs.dir, 'repo');
    fillDir = path.join(fs.dir, 'fill');
    fillers = [];
    env = { MESHBACK_REPO: repo, MESHBACK_PASSWORD: 'pw' };
    src = path.join(base, 'src');
    await smallFiles(src, 5);
    assert.equal((await mb(['init'], { env })).code, 0);
    const b = await mb(['backup', src], { env });
    assert.equal(b.code, 0, b.stderr);
    snap0 = backupId(b);
    await fsp.mkdir(fillDir);
  });
  after(() => cleanup.run());

  // A backup with one new file creates, in this order: its lock file, a data pack, a tree pack,
  // an index file, a new lock file (the refresh before the snapshot write; the old one then goes)
  // and the snapshot file: one inode each (a put's temporary file becomes the file).
  test('no inode for the index file: exit 6, the new packs stay unindexed, no snapshot', async () => {
    await fsp.writeFile(path.join(src, 'new1.txt'), 'new content one\n'.repeat(100));
    const packs = await listPacks(repo);
    const indexes = await entries('index');
    leaveInodes(3);
    const r = await mb(['backup', src], { env });
    assert.equal(r.code, 6, `${r.stdout}${r.stderr}`);
    assert.match(r.stderr, FULL);
    oneLine(r);
    console.error(`observed (index write, no inode): exit ${r.code}, stderr ${JSON.stringify(r.stderr)}`);
    assert.equal((await listPacks(repo)).length, packs.length + 2, 'data and tree pack written');
    assert.deepEqual(await entries('index'), indexes, 'no index file written');
    assert.deepEqual((await snapshotIds(env)).map((s) => s.slice(0, 8)), [snap0]);
    assert.deepEqual(await tmpFiles(repo), []);
    await checkData(env);
    const p = await mb(['prune'], { env });
    assert.equal(p.code, 0, p.stderr);
    assert.deepEqual(await listPacks(repo), packs, 'prune deletes the unindexed packs');
  });

  test('no inode for the lock refresh before the snapshot write: exit 6 (not 11), packs indexed, no snapshot; with room it succeeds', async () => {
    await fsp.writeFile(path.join(src, 'new2.txt'), 'new content two\n'.repeat(100));
    const packs = await listPacks(repo);
    const indexes = await entries('index');
    leaveInodes(4);
    const r = await mb(['backup', src], { env });
    assert.equal(r.code, 6, `${r.stdout}${r.stderr}`);
    assert.match(r.stderr, FULL);
    oneLine(r);
    console.error(`observed (lock refresh before the snapshot write, no inode): exit ${r.code}, stderr ${JSON.stringify(r.stderr)}`);
    assert.equal((await listPacks(repo)).length, packs.length + 2);
    assert.equal((await entries('index')).length, indexes.length + 1, 'the index file was written');
    assert.deepEqual((await snapshotIds(env)).map((s) => s.slice(0, 8)), [snap0]);
    assert.deepEqual(await tmpFiles(repo), []);
    await checkData(env);

    for (const f of fillers.splice(0)) unlinkSync(f);
    const ok = await mb(['backup', src], { env });
    assert.equal(ok.code, 0, ok.stderr);
    await checkData(env);
    await restoresIdentical(env, backupId(ok), src, path.join(base, 'out'));
  });

  test('no room for the snapshot file: exit 6, no snapshot; a smaller snapshot fits, and with room the same backup succeeds', async () => {
    // a backup with nothing new writes only its lock file (1 KiB block), the refreshed lock file
    // (one more block, then the old one goes) and the snapshot; 200 tags make that 30 KiB
    for (const f of fillers.splice(0)) unlinkSync(f);
    const tags = Array.from({ length: 200 }, (_, i) => ['--tag', `k${i}=${'v'.repeat(150)}`]).flat();
    const reserve = path.join(fs.dir, 'reserve');
    const filler = path.join(fs.dir, 'filler');
    await fsp.writeFile(reserve, Buffer.alloc(16 * 1024, 1));
    const fd = openSync(filler, 'w');
    try {
      const block = Buffer.alloc(4096, 0x5a);
      for (;;) {
        try {
          writeSync(fd, block);
        } catch (err) {
          if ((err as { code?: string }).code === 'ENOSPC') break;
          throw err;
        }
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    await fsp.rm(reserve);
    const before = await snapshotIds(env);
    const r = await mb(['backup', src, ...tags], { env });
    assert.equal(r.code, 6, `${r.stdout}${r.stderr}`);
    assert.match(r.stderr, FULL);
    oneLine(r);
    console.error(`observed (snapshot write, ${fs.freeBytes()} bytes free): exit ${r.code}, stderr ${JSON.stringify(r.stderr)}`);
    assert.deepEqual(await snapshotIds(env), before);
    assert.deepEqual(await tmpFiles(repo), []);
    assert.deepEqual(await fsp.readdir(path.join(repo, 'locks')), []);
    // the same backup without the tags fits: the lock and its refresh had room, the snapshot did not
    const small = await mb(['backup', src], { env });
    assert.equal(small.code, 0, small.stderr);
    await fsp.rm(filler);
    const ok = await mb(['backup', src, ...tags], { env });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((await snapshotIds(env)).length, before.length + 2);
    await checkData(env);
  });
});

describe('full disk: restore target', opts, () => {
  const cleanup = new Cleanup();
  let base: string;
  let fs: SmallFs;
  let filler: string;
  let target: string;
  let env: Record<string, string>;
  let src: string;

  before(async () => {
    base = tmpdir('enospc-target');
    cleanup.add(() => rmSync(base, { recursive: true, force: true }));
    fs = new SmallFs(base, 'targetfs');
    cleanup.add(() => fs.unmount());
    fs.mount(40);
    filler = path.join(fs.dir, 'filler');
    target = path.join(fs.dir, 'target');
    env = { MESHBACK_REPO: path.join(base, 'repo'), MESHBACK_PASSWORD: 'pw' };
    src = path.join(base, 'src');
    await smallFiles(path.join(src, 'conf'), 20);
    await randomFile(path.join(src, 'data/big.bin'), 16 * MiB);
    await randomFile(path.join(src, 'data/z-after.bin'), 1 * MiB);
    assert.equal((await mb(['init'], { env })).code, 0);
    assert.equal((await mb(['backup', src], { env })).code, 0);
  });
  after(() => cleanup.run());

  test('a restore larger than the free space: exit 6 naming the target, repository untouched; with room the same restore completes identical', async () => {
    fillTo(fs, filler, 8 * MiB);
    const r = await mb(['restore', 'latest', '--target', target], { env });
    assert.equal(r.code, 6, `${r.stdout}${r.stderr}`);
    assert.equal(r.stderr, `meshback: no space left on the device holding the restore target ${target}: free some space there (or restore into another directory) and run the restore again; the repository was not changed\n`);
    console.error(`observed (restore, target full): exit ${r.code}, stderr ${JSON.stringify(r.stderr)}`);
    await checkData(env);
    await fsp.rm(filler);
    const ok = await mb(['restore', 'latest', '--target', target], { env });
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(await compareTrees(src, target), []);
  });
});

describe('full disk: prune repacking', opts, () => {
  const cleanup = new Cleanup();
  let base: string;
  let fs: SmallFs;
  let repo: string;
  let filler: string;
  let env: Record<string, string>;
  let src: string;
  let snap2: string;

  before(async () => {
    base = tmpdir('enospc-prune');
    cleanup.add(() => rmSync(base, { recursive: true, force: true }));
    fs = new SmallFs(base, 'prunefs');
    cleanup.add(() => fs.unmount());
    fs.mount(40);
    repo = path.join(fs.dir, 'repo');
    filler = path.join(fs.dir, 'filler');
    env = { MESHBACK_REPO: repo, MESHBACK_PASSWORD: 'pw' };
    src = path.join(base, 'src');
    for (let i = 0; i < 12; i++) await randomFile(path.join(src, `f${String(i).padStart(2, '0')}.bin`), MiB);
    assert.equal((await mb(['init'], { env })).code, 0);
    const b1 = await mb(['backup', src], { env });
    assert.equal(b1.code, 0, b1.stderr);
    // half the files go: the one 12 MiB pack is half used once the first snapshot is forgotten
    for (let i = 0; i < 12; i += 2) await fsp.rm(path.join(src, `f${String(i).padStart(2, '0')}.bin`));
    const b2 = await mb(['backup', src], { env });
    assert.equal(b2.code, 0, b2.stderr);
    snap2 = backupId(b2);
    const f = await mb(['forget', backupId(b1)], { env });
    assert.equal(f.code, 0, f.stderr);
  });
  after(() => cleanup.run());

  test('no room for the repacked pack: exit 6, nothing lost; with room prune succeeds', async () => {
    const packs = await listPacks(repo);
    const sizes = await Promise.all(packs.map(async (p) => (await fsp.stat(p)).size));
    const dataPack = packs[sizes.indexOf(Math.max(...sizes))]!;
    fillTo(fs, filler, 2 * MiB);
    const r = await mb(['prune', '--max-unused', '0'], { env });
    assert.equal(r.code, 6, `${r.stdout}${r.stderr}`);
    assert.match(r.stderr, FULL);
    oneLine(r);
    console.error(`observed (prune repack, repository full): exit ${r.code}, stderr ${JSON.stringify(r.stderr)}`);
    assert.deepEqual(await tmpFiles(repo), []);
    assert.deepEqual(await listPacks(repo), packs, 'no pack deleted or added');
    await checkData(env);
    await restoresIdentical(env, snap2, src, path.join(base, 'out'));

    await fsp.rm(filler);
    const ok = await mb(['prune', '--max-unused', '0', '--json'], { env });
    assert.equal(ok.code, 0, ok.stderr);
    const s = summary(ok.stdout);
    assert.equal(s['packsRepacked'], 1, 'the half-used data pack was repacked');
    const left = new Set(await listPacks(repo));
    assert.ok(!left.has(dataPack), 'the half-used data pack is gone');
    await checkData(env);
    await restoresIdentical(env, snap2, src, path.join(base, 'out'));
  });
});
