/**
 * Crash torture: real meshback processes killed with SIGKILL at seeded random moments.
 *
 * After every kill the repository must pass `check` (every few kills `check --read-data`), the
 * next command must complete, and the final restores must be identical to their sources.
 * The seed (MESHBACK_TORTURE_SEED, default below) and the number of kills of each kind are
 * printed, so a failure can be replayed exactly: the kill delays are drawn from the seed, and
 * the data changes between rounds are deterministic for the seed.
 *
 * Kill moments are drawn uniformly over the measured length of an unkilled run (plus 20%), so
 * they land in every phase: startup and key derivation, the walk, pack writes, index writes,
 * the snapshot write, and just after the end (counted as "completed", not as a kill).
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import { compareTrees } from '../../lab/gen/compare.ts';
import { generateMeshVolume, mutateVolume } from '../../lab/gen/gen.ts';
import { Rng, deriveSeed } from '../../lab/gen/rng.ts';
import { BIN, mb, rmrf, tmpdir } from '../helpers/cli.ts';

const SEED = Number(process.env['MESHBACK_TORTURE_SEED'] ?? 20261122);
const BACKUP_KILLS = Number(process.env['MESHBACK_TORTURE_BACKUP_KILLS'] ?? 40);
const PRUNE_KILLS = Number(process.env['MESHBACK_TORTURE_PRUNE_KILLS'] ?? 12);
const RESTORE_KILLS = Number(process.env['MESHBACK_TORTURE_RESTORE_KILLS'] ?? 6);
/**
 * The share of the volume each round changes. mutateVolume appends to logs and adds files, so the
 * volume grows by about a third of this per round: at 15% it grew 24 -> 251 MiB in 40 rounds, and
 * the later rounds spent their time moving that growth, not being killed. At 5% the rounds still
 * write new packs, index files and a snapshot each.
 */
const CHANGE_PERCENT = Number(process.env['MESHBACK_TORTURE_CHANGE_PERCENT'] ?? 5);
/** every Nth check after a kill reads all data */
const READ_DATA_EVERY = 5;

const ENV = { MESHBACK_PASSWORD: 'torture', MESHBACK_TEST_SCRYPT_N: '1024' };

interface KillRun {
  killed: boolean;
  code: number | null;
  ms: number;
  stderr: string;
}

/** Runs meshback and sends SIGKILL after delayMs (unless it has exited by then). */
function runAndKill(args: string[], delayMs: number, extraEnv: Record<string, string> = {}): Promise<KillRun> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...process.env, ...ENV, ...extraEnv })) if (v !== undefined) env[k] = v;
    const p = spawn(BIN, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    let killed = false;
    const timer = setTimeout(() => {
      killed = p.kill('SIGKILL');
    }, delayMs);
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ killed: killed && signal === 'SIGKILL', code, ms: performance.now() - t0, stderr });
    });
  });
}

/** Runs meshback to completion (a run that hangs for 2 minutes is killed and fails the test). */
async function timed(args: string[], extraEnv: Record<string, string> = {}): Promise<number> {
  const r = await runAndKill(args, 120_000, extraEnv);
  assert.ok(!r.killed, `meshback ${args.join(' ')} did not finish within 2 minutes`);
  assert.equal(r.code, 0, `meshback ${args.join(' ')} failed: ${r.stderr}`);
  return r.ms;
}

async function mustCheck(repo: string, readData: boolean, what: string): Promise<void> {
  const r = await mb(['check', '-r', repo, ...(readData ? ['--read-data'] : [])], { env: ENV });
  assert.equal(r.code, 0, `check${readData ? ' --read-data' : ''} failed after ${what}:\n${r.stdout}\n${r.stderr}`);
}

/** `.tmp-*` files anywhere in the repository (left by writes that were killed). */
async function temporaryFiles(repo: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(path.join(d, e.name));
      else if (e.name.startsWith('.tmp-')) out.push(path.join(d, e.name));
    }
  };
  await walk(repo);
  return out;
}

async function snapshotsOf(repo: string): Promise<{ id: string; paths: string[] }[]> {
  const r = await mb(['snapshots', '-r', repo, '--json'], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { id: string; paths: string[] }[];
}

describe(`crash torture (seed ${SEED})`, { timeout: 8 * 60_000 }, () => {
  const dir = tmpdir('torture');
  const repo = path.join(dir, 'repo');
  const src = path.join(dir, 'src');
  const rng = new Rng(deriveSeed(SEED, 'kills'));
  const counts = { backupKills: 0, backupCompleted: 0, pruneKills: 0, pruneCompleted: 0, restoreKills: 0, restoreCompleted: 0, checks: 0, readDataChecks: 0 };

  before(async () => {
    await generateMeshVolume(src, { size: 24 * 1024 * 1024, seed: SEED });
    const r = await mb(['init', '-r', repo], { env: ENV });
    assert.equal(r.code, 0, r.stderr);
    // the first, full backup: the rounds below back up changes, and their window is measured on one
    await timed(['backup', '-r', repo, '-q', src]);
  });
  after(async () => {
    await rmrf(dir);
  });

  it(`survives ${BACKUP_KILLS} SIGKILLs during backup`, async (t: TestContext) => {
    // an unkilled backup of changed data (not the first, full one) sets the window the kill moments
    // are drawn from
    await mutateVolume(src, { percent: CHANGE_PERCENT, seed: deriveSeed(SEED, 'warmup') });
    const full = await timed(['backup', '-r', repo, '-q', src]);
    let round = 0;
    while (counts.backupKills < BACKUP_KILLS) {
      round++;
      assert.ok(round < BACKUP_KILLS * 4, `only ${counts.backupKills} of ${round} runs were killed before they finished: the kill window is wrong`);
      await mutateVolume(src, { percent: CHANGE_PERCENT, seed: deriveSeed(SEED, 'backup', round) });
      const delay = Math.round(rng.float() * full * 1.2);
      const r = await runAndKill(['backup', '-r', repo, '-q', src], delay);
      if (r.killed) counts.backupKills++;
      else {
        assert.equal(r.code, 0, `an unkilled backup failed: ${r.stderr}`);
        counts.backupCompleted++;
      }
      const readData = counts.backupKills % READ_DATA_EVERY === 0;
      await mustCheck(repo, readData, `backup kill ${counts.backupKills} at ${delay} ms (round ${round})`);
      counts.checks++;
      if (readData) counts.readDataChecks++;
    }
    // the next backup completes, and its snapshot restores identical to the source
    await timed(['backup', '-r', repo, '-q', src]);
    const out = path.join(dir, 'out-backup');
    await timed(['restore', '-r', repo, '-q', 'latest', '--target', out]);
    assert.deepEqual(await compareTrees(src, out), []);
    await mustCheck(repo, true, 'the final backup');
    await rmrf(out);
    t.diagnostic(`seed ${SEED}: backup runs ${round}, killed ${counts.backupKills}, completed ${counts.backupCompleted}; window ${Math.round(full * 1.2)} ms`);
  });

  it(`survives ${PRUNE_KILLS} SIGKILLs during prune`, async (t: TestContext) => {
    // each round: new data, forget all but the last 3 snapshots, then a prune that repacks every
    // partly used pack (--max-unused 0, the most work and the most kill points), killed
    const prep = async (round: number): Promise<void> => {
      await mutateVolume(src, { percent: CHANGE_PERCENT, seed: deriveSeed(SEED, 'prune', round) });
      await timed(['backup', '-r', repo, '-q', src]);
      await timed(['forget', '-r', repo, '-q', '--keep-last', '3']);
    };
    // the first prune repacks what the backup rounds left; the window is measured on a second,
    // which has one round's worth to repack, as each killed one has
    await prep(-1);
    await timed(['prune', '-r', repo, '-q', '--max-unused', '0']);
    await prep(0);
    const full = await timed(['prune', '-r', repo, '-q', '--max-unused', '0']);
    let round = 0;
    while (counts.pruneKills < PRUNE_KILLS) {
      round++;
      assert.ok(round < PRUNE_KILLS * 4, 'prunes finish before they can be killed: the kill window is wrong');
      await prep(round);
      const delay = Math.round(rng.float() * full * 1.2);
      const r = await runAndKill(['prune', '-r', repo, '-q', '--max-unused', '0'], delay);
      if (r.killed) counts.pruneKills++;
      else {
        assert.equal(r.code, 0, `an unkilled prune failed: ${r.stderr}`);
        counts.pruneCompleted++;
      }
      const readData = counts.pruneKills % 3 === 0;
      await mustCheck(repo, readData, `prune kill ${counts.pruneKills} at ${delay} ms (round ${round})`);
      counts.checks++;
      if (readData) counts.readDataChecks++;
    }
    // the next prune completes and leaves nothing to remove; the kept snapshots restore. With a
    // short lock stale age it also removes the temporary files the kills left inside writes.
    const tmpBefore = await temporaryFiles(repo);
    await new Promise((r) => setTimeout(r, 1100));
    await timed(['prune', '-r', repo, '-q', '--max-unused', '0'], { MESHBACK_LOCK_STALE_MS: '1000' });
    assert.deepEqual(await temporaryFiles(repo), [], 'prune removes the temporary files of interrupted writes');
    t.diagnostic(`temporary files left by the kills and removed by prune: ${tmpBefore.length}`);
    const again = await mb(['prune', '-r', repo, '--json', '--max-unused', '0'], { env: ENV });
    assert.equal(again.code, 0, again.stderr);
    const last = JSON.parse(again.stdout.split('\n').filter((l) => l.includes('"summary"')).pop()!) as { packsDeleted: number };
    assert.equal(last.packsDeleted, 0, 'a prune after a completed prune finds nothing to delete');
    await mustCheck(repo, true, 'the final prune');
    const snaps = await snapshotsOf(repo);
    assert.equal(snaps.length, 3);
    const out = path.join(dir, 'out-prune');
    await timed(['restore', '-r', repo, '-q', 'latest', '--target', out]);
    assert.deepEqual(await compareTrees(src, out), []);
    await rmrf(out);
    t.diagnostic(`seed ${SEED}: prune runs ${round}, killed ${counts.pruneKills}, completed ${counts.pruneCompleted}; window ${Math.round(full * 1.2)} ms`);
  });

  it(`survives ${RESTORE_KILLS} SIGKILLs during restore; rerunning the restore finishes it`, async (t: TestContext) => {
    const out = path.join(dir, 'out-restore');
    const full = await timed(['restore', '-r', repo, '-q', 'latest', '--target', out]);
    await rmrf(out);
    let round = 0;
    while (counts.restoreKills < RESTORE_KILLS) {
      round++;
      assert.ok(round < RESTORE_KILLS * 4, 'restores finish before they can be killed: the kill window is wrong');
      const delay = Math.round(rng.float() * full);
      const r = await runAndKill(['restore', '-r', repo, '-q', 'latest', '--target', out], delay);
      if (r.killed) counts.restoreKills++;
      else {
        assert.equal(r.code, 0, r.stderr);
        counts.restoreCompleted++;
      }
      // rerun into the same, partly written target
      await timed(['restore', '-r', repo, '-q', 'latest', '--target', out]);
      assert.deepEqual(await compareTrees(src, out), [], `restore rerun after a kill at ${delay} ms differs from the source`);
      await rmrf(out);
    }
    t.diagnostic(`seed ${SEED}: restore runs ${round}, killed ${counts.restoreKills}, completed ${counts.restoreCompleted}; window ${Math.round(full)} ms`);
  });

  it('prints the kill counts', (t: TestContext) => {
    t.diagnostic(`torture seed ${SEED}: ${JSON.stringify(counts)}`);
    assert.ok(counts.backupKills + counts.pruneKills + counts.restoreKills >= 50 || BACKUP_KILLS + PRUNE_KILLS + RESTORE_KILLS < 50);
  });
});

