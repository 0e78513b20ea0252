/**
 * The fault benchmark's volume-corruption, repo-corruption and disk-full scenarios and their
 * injectors, on small generated volumes (8 MiB) with the real tools (meshback, restic, tar,
 * rsync; a tool whose binary is missing is skipped, saying so). The scenarios run through a small
 * stand-in for the runner (test/helpers/bench-faults-harness.ts). Loop mounts (btrfs volume,
 * small ext4 filesystems) need root: those tests are skipped, saying why, otherwise.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LoopFs, MiB, compareManifests, loopFsUnavailable, repoDataFiles, rotRepository, toolMessage } from '../../lab/bench/fault/inject.ts';
import { ROT_REGION, corruptFiles, takeManifest } from '../../lab/faults/damage.ts';
import { diskFull } from '../../lab/bench/fault/scenarios/disk-full.ts';
import { repoCorruption } from '../../lab/bench/fault/scenarios/repo-corruption.ts';
import { volumeCorruption } from '../../lab/bench/fault/scenarios/volume-corruption.ts';
import type { Integrity, RepeatResult, Scenario, StepResult, Strategy, Volume } from '../../lab/bench/fault/types.ts';
import { run } from '../../src/host/process.ts';
import { toolByName } from '../../lab/bench/tools.ts';
import type { Tool } from '../../lab/bench/tools.ts';
import { Rng } from '../../lab/gen/rng.ts';
import { btrfsUnavailable, btrfsVolume, dirVolume, fillVolume, makeContext } from '../helpers/bench-faults-harness.ts';
import type { BtrfsVolume } from '../helpers/bench-faults-harness.ts';

const SIZE = 8 * MiB;
const SEED = 7;

let base = '';
before(async () => {
  base = await fsp.mkdtemp(path.join(os.tmpdir(), 'meshback-bench-faults-'));
});
after(async () => {
  if (base !== '') await fsp.rm(base, { recursive: true, force: true });
});

type Outcome = Omit<RepeatResult, 'repeat' | 'seed'>;

/** A tool by name, or the reason it cannot run here. */
async function tool(name: string): Promise<Tool | string> {
  const t = toolByName(name);
  assert.ok(t !== undefined, name);
  if (await t.available()) return t;
  assert.notEqual(name, 'meshback', 'meshback itself must be runnable');
  return `${name} is not installed (Debian package ${t.packages.join(' ')})`;
}

let runs = 0;
/** One repeat of `scenario` for `tool` on a fresh generated volume (a dir volume unless given one). */
async function runOne(scenario: Scenario, t: Tool, opts: { volume?: Volume; strategy?: Strategy; seed?: number } = {}): Promise<Outcome> {
  const dir = path.join(base, `run-${++runs}-${scenario.id}-${t.name}`);
  const volume = opts.volume ?? dirVolume(path.join(dir, 'volume'));
  await fsp.mkdir(volume.path, { recursive: true });
  await fillVolume(volume, SIZE, SEED);
  const strategy = opts.strategy ?? (t.name === 'tar' || t.name === 'rsync' ? 'full-copy' : 'incremental');
  const { ctx } = await makeContext({ tool: t, strategy, volume, work: path.join(dir, 'work'), seed: opts.seed ?? SEED, sizeBytes: SIZE });
  try {
    return await scenario.run(ctx);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

function step(r: Outcome, name: string): StepResult {
  const s = r.steps.find((x) => x.name === name);
  assert.ok(s !== undefined, `no step ${name} in ${r.steps.map((x) => x.name).join(', ')}`);
  return s;
}

function addsUp(i: Integrity | undefined): Integrity {
  assert.ok(i !== undefined, 'no integrity');
  assert.equal(i.matching + i.damaged + i.missing, i.files, `integrity does not add up: ${JSON.stringify(i)}`);
  assert.ok(i.files > 100, `only ${i.files} files compared`);
  return i;
}

function plausibleSteps(r: Outcome): void {
  for (const s of r.steps) {
    assert.ok(s.wallSeconds >= 0 && s.cpuSeconds >= 0, JSON.stringify(s));
    assert.ok(s.peakRssBytes > 0, `no peak RSS for ${s.name}`);
  }
}

/** Loop devices attached to images below `dir` (there must be none after a scenario). */
async function loopsUnder(dir: string): Promise<string[]> {
  const { stdout } = await run(['losetup', '-a']);
  return stdout.split('\n').filter((l) => l.includes(dir));
}

// ---------------------------------------------------------------------------------------------
// Injectors

describe('injectors', () => {
  test('corruptFiles: flips (size and mtime kept), truncates and deletes ~5% of the files, one kind each at least, the same for the same seed', async () => {
    const picks: string[][] = [];
    for (const copy of ['a', 'b']) {
      const dir = path.join(base, `corrupt-${copy}`);
      await fillVolume(dirVolume(dir), 2 * MiB, 3);
      const ref = await takeManifest(dir);
      const files = [...ref.values()].filter((e) => e.type === 'file').length;
      const d = await corruptFiles(dir, ref, new Rng(11), 0.05);
      const all = [...d.flipped, ...d.truncated, ...d.deleted];
      picks.push(all);
      assert.ok(d.flipped.length >= 1 && d.truncated.length >= 1 && d.deleted.length >= 1, JSON.stringify(d));
      assert.equal(new Set(all).size, all.length, 'a file damaged twice');
      assert.equal(all.length, Math.max(3, Math.round(files * 0.05)));
      const now = await takeManifest(dir);
      const cmp = compareManifests(ref, now);
      assert.deepEqual(cmp.damaged.map((e) => e.path).sort(), [...d.flipped, ...d.truncated].sort());
      assert.deepEqual(cmp.missing.map((e) => e.path).sort(), [...d.deleted].sort());
      for (const p of d.flipped) {
        const st = await fsp.stat(path.join(dir, p));
        assert.equal(st.size, ref.get(p)!.size, `${p}: a flip changed the size`);
      }
      for (const p of d.truncated) assert.ok((await fsp.stat(path.join(dir, p))).size < ref.get(p)!.size);
      await fsp.rm(dir, { recursive: true, force: true });
    }
    assert.deepEqual(picks[0], picks[1], 'same seed, same damage');
  });

  test('corruptFiles keeps the modification time of a flipped file', async () => {
    const dir = path.join(base, 'mtime');
    await fsp.mkdir(dir, { recursive: true });
    for (let i = 0; i < 3; i++) {
      await fsp.writeFile(path.join(dir, `f${i}`), Buffer.alloc(4096, i + 1));
      await fsp.utimes(path.join(dir, `f${i}`), 1_000_000, 1_000_000);
    }
    const ref = await takeManifest(dir);
    const d = await corruptFiles(dir, ref, new Rng(1), 0.05);
    assert.equal(d.flipped.length, 1);
    const st = await fsp.stat(path.join(dir, d.flipped[0]!));
    assert.equal(st.mtimeMs, 1_000_000_000);
  });

  test('rotRepository: only data files, 4 KiB sector-aligned regions where every byte changed, count by stored bytes, mtimes kept, seeded', async () => {
    const results: string[] = [];
    for (const copy of ['a', 'b']) {
      const repo = path.join(base, `repo-${copy}`);
      const packs: string[] = [];
      for (let i = 0; i < 6; i++) {
        const rel = path.join('data', `0${i}`, `pack${i}`);
        await fsp.mkdir(path.join(repo, path.dirname(rel)), { recursive: true });
        await fsp.writeFile(path.join(repo, rel), new Rng(100 + i).bytes((i + 1) * 3 * MiB + 123));
        await fsp.chmod(path.join(repo, rel), 0o400);
        await fsp.utimes(path.join(repo, rel), 2_000_000, 2_000_000);
        packs.push(rel);
      }
      await fsp.mkdir(path.join(repo, 'index'));
      await fsp.writeFile(path.join(repo, 'index', 'idx'), Buffer.alloc(64 * 1024, 7));
      await fsp.writeFile(path.join(repo, 'config'), 'x');
      assert.deepEqual((await repoDataFiles('meshback', repo)).map((f) => f.rel), packs);
      const before = new Map<string, Buffer>();
      for (const p of packs) before.set(p, await fsp.readFile(path.join(repo, p)));
      const rot = await rotRepository('meshback', repo, new Rng(5));
      const total = [...before.values()].reduce((s, b) => s + b.length, 0);
      assert.equal(rot.dataBytes, total);
      assert.equal(rot.regions.length, Math.max(1, Math.round((3 * total) / (64 * MiB))));
      assert.ok(rot.regions.length >= 3, `${rot.regions.length} regions`);
      assert.deepEqual(await fsp.readFile(path.join(repo, 'index', 'idx')), Buffer.alloc(64 * 1024, 7), 'index file touched');
      for (const p of packs) {
        const a = before.get(p)!;
        const b = await fsp.readFile(path.join(repo, p));
        const st = await fsp.stat(path.join(repo, p));
        assert.equal(st.mtimeMs, 2_000_000_000, 'mtime changed');
        assert.equal(st.mode & 0o777, 0o400, 'mode changed');
        const mine = rot.regions.filter((r) => r.file === p).sort((x, y) => x.offset - y.offset);
        let at = 0;
        for (const r of mine) {
          assert.equal(r.offset % ROT_REGION, 0);
          assert.ok(r.offset >= at, 'regions overlap');
          assert.ok(a.subarray(at, r.offset).equals(b.subarray(at, r.offset)), `${p}: bytes outside the regions changed`);
          for (let i = r.offset; i < r.offset + r.length; i++) assert.notEqual(a[i], b[i], `${p} byte ${i} in a region did not change`);
          at = r.offset + r.length;
        }
        assert.ok(a.subarray(at).equals(b.subarray(at)), `${p}: bytes after the last region changed`);
      }
      results.push(JSON.stringify(rot.regions));
      await fsp.rm(repo, { recursive: true, force: true });
    }
    assert.equal(results[0], results[1], 'same seed, same regions');
  });

  test('rotRepository: for tar, rsync and cp every file of the repository counts as data', async () => {
    const repo = path.join(base, 'mirror');
    await fsp.mkdir(path.join(repo, 'data', 'x'), { recursive: true });
    await fsp.writeFile(path.join(repo, 'data', 'x', 'f'), 'abc');
    await fsp.writeFile(path.join(repo, 'top'), 'defg');
    assert.deepEqual((await repoDataFiles('rsync', repo)).map((f) => f.rel), ['data/x/f', 'top']);
    assert.deepEqual((await repoDataFiles('restic', repo)).map((f) => f.rel), ['data/x/f']);
    const rot = await rotRepository('tar', repo, new Rng(1));
    assert.equal(rot.regions.length, 1);
    assert.equal(rot.regions[0]!.offset, 0, 'a file smaller than a region is rotted whole');
    await fsp.rm(repo, { recursive: true, force: true });
  });

  test('compareManifests: matching, damaged (content, size, type, unreadable), missing, extra; directories not counted', async () => {
    const a = path.join(base, 'cmp-a');
    const b = path.join(base, 'cmp-b');
    for (const d of [a, b]) {
      await fsp.mkdir(path.join(d, 'sub'), { recursive: true });
      await fsp.writeFile(path.join(d, 'same'), 'same');
      await fsp.writeFile(path.join(d, 'sub', 'content'), d === a ? 'abcd' : 'abce');
      await fsp.writeFile(path.join(d, 'size'), d === a ? 'abcd' : 'abc');
      await fsp.symlink(d === a ? 'same' : 'size', path.join(d, 'link'));
    }
    await fsp.writeFile(path.join(a, 'gone'), 'x');
    await fsp.writeFile(path.join(a, 'typed'), 'x');
    await fsp.mkdir(path.join(b, 'typed'));
    await fsp.writeFile(path.join(b, 'new'), 'x');
    const ref = await takeManifest(a);
    const got = await takeManifest(b);
    got.get('same')!.error = 'EIO';
    const c = compareManifests(ref, got);
    assert.deepEqual(c.integrity, {
      files: 6, matching: 0, damaged: 5, missing: 1, extra: 1,
      examples: { damaged: ['link', 'same', 'size', 'sub/content', 'typed'], missing: ['gone'], extra: ['new'] },
    });
    delete got.get('same')!.error;
    assert.equal(compareManifests(ref, got).integrity.matching, 1);
  });

  test('toolMessage: the last line, or the message before a Python traceback (borg)', () => {
    assert.equal(toolMessage('a\nFatal: There were 1 errors\n\n'), 'Fatal: There were 1 errors');
    const borg = 'Data integrity error: Segment entry checksum mismatch [segment 2, offset 8]\nTraceback (most recent call last):\n  File "x", line 1\nborg.helpers.errors.IntegrityError: Data integrity error\n\nPlatform: Linux\nSSH_ORIGINAL_COMMAND: None\n';
    assert.equal(toolMessage(borg), 'Data integrity error: Segment entry checksum mismatch [segment 2, offset 8]');
    assert.equal(toolMessage('Traceback (most recent call last):\n  File "x"\nValueError: bad thing\nPID: 1\n'), 'ValueError: bad thing');
    const check = JSON.stringify({ message_type: 'summary', ok: false, findings: [{ kind: 'pack-damaged', message: 'pack 56 is damaged' }, { kind: 'blob-damaged', message: 'x' }] });
    assert.equal(toolMessage(`${check}\n`), '2 error(s) found, first: pack 56 is damaged');
    const restore = JSON.stringify({ message_type: 'summary', errors: [{ path: 'a/b', message: 'not restored: chunk 8f failed authentication' }] });
    assert.equal(toolMessage(restore), '1 file(s) not restored, first: a/b: not restored: chunk 8f failed authentication');
    assert.equal(toolMessage('x'.repeat(1000)).length, 400);
  });

  test('LoopFs: mount, fill to a given free space, unfill, close detaches the loop device', async (t) => {
    const why = await loopFsUnavailable();
    if (why !== undefined) return t.skip(why);
    const fs = new LoopFs(base, 'loopfs');
    try {
      await fs.mount(48 * MiB);
      await fs.fill(5 * MiB);
      assert.ok(Math.abs(fs.free() - 5 * MiB) < MiB, `free ${fs.free()}`);
      await fs.unfill();
      assert.ok(fs.free() > 30 * MiB);
      assert.equal((await loopsUnder(fs.image)).length, 1);
    } finally {
      await fs.close();
    }
    await fs.close(); // twice is fine
    assert.deepEqual(await loopsUnder(fs.image), []);
    await assert.rejects(fsp.access(fs.image));
  });
});

// ---------------------------------------------------------------------------------------------
// volume-corruption

describe('volume-corruption', () => {
  for (const name of ['meshback', 'restic', 'tar']) {
    test(`${name}: the damaged files are found by comparing with the restored backup, restored, and the volume verifies`, async (t) => {
      const tl = await tool(name);
      if (typeof tl === 'string') return t.skip(tl);
      const r = await runOne(volumeCorruption, tl);
      assert.equal(r.status, 'ok', r.reason ?? '');
      plausibleSteps(r);
      assert.deepEqual(r.steps.map((s) => [s.name, s.exitCode]), [['backup', 0], ['restore', 0], ['repair-volume', 0]]);
      const i = addsUp(r.integrity);
      assert.deepEqual([i.damaged, i.missing, i.extra], [0, 0, 0], JSON.stringify(i));
      assert.equal(r.corruptionDetected, null, 'the benchmark, not the tool, finds live damage');
      assert.ok(r.bytesStored! > 0);
      assert.ok(r.rtoSeconds !== undefined && r.rtoSeconds > 0);
      const injected = /injected on the live volume: (\d+) files with flipped bytes, (\d+) truncated, (\d+) deleted/.exec(r.notes!.join('\n'));
      assert.ok(injected !== null, r.notes!.join('\n'));
      const found = /(\d+) damaged \(0 unreadable\), (\d+) missing/.exec(r.notes!.join('\n'));
      assert.ok(found !== null, r.notes!.join('\n'));
      assert.equal(Number(found[1]), Number(injected[1]) + Number(injected[2]), 'every flipped and truncated file found');
      assert.equal(Number(found[2]), Number(injected[3]), 'every deleted file found');
      assert.ok(Number(injected[1]) >= 1 && Number(injected[2]) >= 1 && Number(injected[3]) >= 1);
    });
  }

  describe('btrfs volume with a damaged block image', () => {
    let why: string | undefined;
    const volumes: BtrfsVolume[] = [];
    before(async () => {
      why = await btrfsUnavailable(base);
    });
    after(async () => {
      for (const v of volumes) await v.close();
    });
    for (const name of ['meshback', 'tar']) {
      test(`${name} (snapshot strategy): image damage makes files unreadable (EIO), they are found and restored`, async (t) => {
        if (why !== undefined) return t.skip(why);
        const tl = await tool(name);
        if (typeof tl === 'string') return t.skip(tl);
        const v = await btrfsVolume(base, `btrfs-${name}`, 128 * MiB);
        volumes.push(v);
        const r = await runOne(volumeCorruption, tl, { volume: v, strategy: 'snapshot' });
        assert.equal(r.status, 'ok', r.reason ?? '');
        const notes = r.notes!.join('\n');
        const img = /block image: 4 KiB of garbage over a data block of (\d+) files; (\d+) of them now fail to read/.exec(notes);
        assert.ok(img !== null, notes);
        assert.ok(Number(img[1]) >= 1, notes);
        assert.equal(img[2], img[1], `every damaged block must fail its checksum: ${notes}`);
        const found = /\d+ damaged \((\d+) unreadable\)/.exec(notes);
        assert.equal(found?.[1], img[2], notes);
        const i = addsUp(r.integrity);
        assert.deepEqual([i.damaged, i.missing, i.extra], [0, 0, 0], JSON.stringify(i));
        // the volume reads clean again
        const m = await takeManifest(v.path);
        assert.deepEqual([...m.values()].filter((e) => e.error !== undefined).map((e) => e.path), []);
        await v.close();
        assert.deepEqual(await loopsUnder(v.image!), []);
      });
    }
  });
});

// ---------------------------------------------------------------------------------------------
// repo-corruption

describe('repo-corruption', () => {
  test('meshback: check --read-data exits 4 naming the damage; the restore never writes damaged bytes and says which files it lost', async () => {
    const tl = await tool('meshback');
    assert.ok(typeof tl !== 'string');
    const r = await runOne(repoCorruption, tl);
    assert.equal(r.status, 'ok', r.reason ?? '');
    plausibleSteps(r);
    assert.equal(step(r, 'check').exitCode, 4);
    assert.equal(r.corruptionDetected, true);
    assert.match(r.detectionMessage ?? '', /^\d+ error\(s\) found, first: pack [0-9a-f]{64} is damaged/);
    const i = addsUp(r.integrity);
    assert.equal(i.damaged, 0, 'meshback restored damaged bytes');
    if (i.missing > 0) assert.match(step(r, 'restore').message ?? '', /^\d+ file\(s\) not restored, first: /);
    assert.equal(step(r, 'restore').exitCode, i.missing > 0 ? 4 : 0);
    assert.ok(r.notes!.some((n) => n.includes('no parity')), r.notes!.join('\n'));
    assert.ok(!r.notes!.some((n) => n.startsWith('silent corruption')));
    assert.equal(r.rtoSeconds !== undefined, i.missing === 0);
  });

  test('restic: check --read-data fails; the restore reports its errors', async (t) => {
    const tl = await tool('restic');
    if (typeof tl === 'string') return t.skip(tl);
    const r = await runOne(repoCorruption, tl);
    assert.equal(r.status, 'ok', r.reason ?? '');
    assert.notEqual(step(r, 'check').exitCode, 0);
    assert.equal(r.corruptionDetected, true);
    assert.match(r.detectionMessage ?? '', /error/i);
    const i = addsUp(r.integrity);
    if (i.damaged + i.missing > 0) assert.notEqual(step(r, 'restore').exitCode, 0, 'restic restored damage without an error');
  });

  test('tar: zstd -t catches the rot (frame checksum); the restore fails and what it restored is short', async (t) => {
    const tl = await tool('tar');
    if (typeof tl === 'string') return t.skip(tl);
    const r = await runOne(repoCorruption, tl);
    assert.equal(r.status, 'ok', r.reason ?? '');
    assert.notEqual(step(r, 'check').exitCode, 0);
    assert.match(step(r, 'check').message ?? '', /archive-1\.tar\.zst/);
    assert.equal(r.corruptionDetected, true);
    assert.notEqual(step(r, 'restore').exitCode, 0);
    const i = addsUp(r.integrity);
    assert.ok(i.damaged + i.missing >= 1, JSON.stringify(i));
    assert.equal(r.rtoSeconds, undefined);
  });

  test('rsync: no check, the restore copies the rotten file back with exit 0: silent corruption', async (t) => {
    const tl = await tool('rsync');
    if (typeof tl === 'string') return t.skip(tl);
    const r = await runOne(repoCorruption, tl);
    assert.equal(r.status, 'ok', r.reason ?? '');
    assert.deepEqual(r.steps.map((s) => [s.name, s.exitCode]), [['backup', 0], ['restore', 0]]);
    assert.equal(r.corruptionDetected, false);
    const i = addsUp(r.integrity);
    assert.ok(i.damaged >= 1, JSON.stringify(i));
    assert.ok(r.notes!.some((n) => n === `silent corruption: ${i.damaged} damaged and ${i.missing} missing files restored with exit 0 and no warning`), r.notes!.join('\n'));
  });
});

// ---------------------------------------------------------------------------------------------
// disk-full

describe('disk-full', () => {
  let why: string | undefined;
  before(async () => {
    why = await loopFsUnavailable();
  });

  test('meshback: exit 6 naming the full device, for the restore target and for the repository; the repository checks clean; with room everything verifies', async (t) => {
    if (why !== undefined) return t.skip(why);
    const tl = await tool('meshback');
    assert.ok(typeof tl !== 'string');
    const r = await runOne(diskFull, tl);
    assert.equal(r.status, 'ok', r.reason ?? '');
    plausibleSteps(r);
    assert.deepEqual(r.steps.map((s) => [s.name, s.exitCode]), [
      ['backup', 0], ['disk-full-restore', 6], ['restore', 0],
      ['small-disk-init', 0], ['small-disk-backup-1', 0], ['disk-full-backup', 6], ['check-after-disk-full', 0], ['backup-after-free', 0], ['restore-after-free', 0],
    ]);
    assert.match(step(r, 'disk-full-restore').message ?? '', /^meshback: no space left on the device holding the restore target /);
    assert.match(step(r, 'disk-full-backup').message ?? '', /^meshback: no space left on the device holding the repository /);
    assert.equal(r.corruptionDetected, true);
    assert.match(r.detectionMessage ?? '', /^restore: meshback: no space .* \| backup: meshback: no space /);
    const i = addsUp(r.integrity);
    assert.deepEqual([i.damaged, i.missing, i.extra], [0, 0, 0]);
    assert.ok(r.rtoSeconds !== undefined && r.rtoSeconds > 0);
    assert.deepEqual(await loopsUnder(base), [], 'loop devices left attached');
  });

  test('the added data is gone from the volume afterwards, and a failed repeat still unmounts', async (t) => {
    if (why !== undefined) return t.skip(why);
    const tl = await tool('meshback');
    assert.ok(typeof tl !== 'string');
    const dir = path.join(base, 'df-cleanup');
    const volume = dirVolume(path.join(dir, 'volume'));
    await fsp.mkdir(volume.path, { recursive: true });
    await fillVolume(volume, 2 * MiB, SEED);
    const before = await takeManifest(volume.path);
    const { ctx } = await makeContext({ tool: tl, strategy: 'incremental', volume, work: path.join(dir, 'work'), seed: SEED, sizeBytes: 2 * MiB });
    const r = await diskFull.run(ctx);
    assert.equal(r.status, 'ok', r.reason ?? '');
    const left = compareManifests(before, await takeManifest(volume.path)).integrity;
    assert.deepEqual([left.matching, left.extra], [left.files, 0], 'the volume is not as it was');
    // the tool throws while the small restore target is mounted: the filesystem is still unmounted
    const throwing: Tool = { ...tl, restore: async () => Promise.reject(new Error('restore blew up')) };
    await assert.rejects(diskFull.run({ ...ctx, tool: throwing }), /restore blew up/);
    assert.deepEqual(await loopsUnder(base), [], 'loop devices left attached after a throw');
    assert.deepEqual((await fsp.readdir(ctx.work)).filter((n) => n.startsWith('disk-full')), []);
    await fsp.rm(dir, { recursive: true, force: true });
  });

  for (const name of ['restic', 'tar']) {
    test(`${name}: both failures exit non-zero naming the lack of space; with room the restore verifies`, async (t) => {
      if (why !== undefined) return t.skip(why);
      const tl = await tool(name);
      if (typeof tl === 'string') return t.skip(tl);
      const r = await runOne(diskFull, tl);
      assert.equal(r.status, 'ok', r.reason ?? '');
      assert.notEqual(step(r, 'disk-full-restore').exitCode, 0);
      assert.notEqual(step(r, 'disk-full-backup').exitCode, 0);
      assert.equal(r.corruptionDetected, true, r.detectionMessage ?? '');
      assert.match(r.detectionMessage ?? '', /^restore: .*no space left on device.* \| backup: .*no space left on device/i);
      assert.equal(step(r, 'restore').exitCode, 0);
      assert.equal(step(r, 'check-after-disk-full').exitCode, 0, 'the failed backup damaged the repository');
      const i = addsUp(r.integrity);
      assert.equal(i.damaged, 0);
      assert.deepEqual(await loopsUnder(base), []);
    });
  }
});
