/**
 * The fault benchmark's parts on their own: the workload writer and its journal accounting,
 * integrity against a manifest, summaries, the results-file check, volumes, process kills.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hashedManifest, integrityOf, under } from '../../lab/bench/fault/common.ts';
import { descendants, killAllBelow } from '../../lab/bench/fault/procs.ts';
import { checkResults, spread, summarize } from '../../lab/bench/fault/runner.ts';
import { RESULTS_SCHEMA, RESULTS_VERSION } from '../../lab/bench/fault/types.ts';
import type { RepeatResult } from '../../lab/bench/fault/types.ts';
import { STATE_BYTES, assessWrites, readJournal, startWriter, stateContent, stateVersion } from '../../lab/bench/fault/workload.ts';

async function tmp(prefix: string): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), `meshback-${prefix}-`));
}

test('workload: every acknowledged write is found, and each kind of loss is counted', { timeout: 30_000 }, async () => {
  const base = await tmp('workload');
  try {
    const vol = path.join(base, 'vol');
    const journalFile = path.join(base, 'journal.log');
    await fsp.mkdir(vol);
    const w = await startWriter({ volume: vol, journal: journalFile, seed: 42, rate: 400, durationSeconds: 60, logs: 2, states: 3 });
    await new Promise((r) => setTimeout(r, 800));
    const killedAt = await w.kill();
    assert.equal((await w.exited).signal, 'SIGKILL');
    const j = await readJournal(journalFile);
    assert.equal(j.seed, 42);
    assert.ok(j.entries.length > 50, `only ${j.entries.length} writes`);
    assert.ok(j.entries.every((e) => e.ackMs <= killedAt));
    assert.ok(j.entries.some((e) => e.kind === 'log') && j.entries.some((e) => e.kind === 'state'));

    // the volume as the writer left it holds every acknowledged write
    const all = await assessWrites(j, vol);
    assert.equal(all.acknowledged, j.entries.length);
    assert.equal(all.present, all.acknowledged);
    assert.equal(all.lost, 0);
    assert.deepEqual(all.tornStates, []);

    // damage a copy: cut the last record of one log, tear one state file, delete another
    const logs = j.entries.filter((e) => e.kind === 'log' && e.file.endsWith('app-0.log'));
    const lastLog = logs[logs.length - 1]!;
    await fsp.truncate(path.join(vol, lastLog.file), lastLog.offset + lastLog.length - 1);
    const stateWrites = (f: string) => j.entries.filter((e) => e.file === f);
    const [s0, s1] = ['workload/state/state-0.dat', 'workload/state/state-1.dat'];
    const torn = await fsp.readFile(path.join(vol, s0));
    assert.equal(torn.length, STATE_BYTES);
    // the kill may land after a state file was written and before its write was journaled: the
    // volume is then one version ahead of what was acknowledged (a write not acknowledged is not lost)
    const version = stateVersion(torn);
    assert.ok(version === stateWrites(s0).length || version === stateWrites(s0).length + 1, `state-0 version ${version}, journaled writes ${stateWrites(s0).length}`);
    torn[2000] = torn[2000]! ^ 0xff;
    await fsp.writeFile(path.join(vol, s0), torn);
    await fsp.rm(path.join(vol, s1));
    const lostWrites = 1 + stateWrites(s0).length + stateWrites(s1).length;
    const lostBytes = lastLog.length + (stateWrites(s0).length + stateWrites(s1).length) * STATE_BYTES;
    const a = await assessWrites(j, vol, { before: lastLog.ackMs });
    assert.equal(a.lost, lostWrites);
    assert.equal(a.present, j.entries.length - lostWrites);
    assert.equal(a.bytesLost, lostBytes);
    assert.deepEqual(a.tornStates, [s0]);
    // the cut log record itself was acknowledged at lastLog.ackMs, not before it
    assert.ok(a.lostBefore < a.lost);

    // an older, valid state version: the writes after it are lost, the ones up to it are not
    const s2 = 'workload/state/state-2.dat';
    const n2 = stateWrites(s2).length;
    assert.ok(n2 >= 2);
    await fsp.writeFile(path.join(vol, s2), stateContent(42, s2, 1));
    const b = await assessWrites(j, vol);
    assert.equal(b.lost, lostWrites + n2 - 1);
  } finally {
    await fsp.rm(base, { recursive: true, force: true });
  }
});

test('integrity: matching, damaged, missing and extra files against a manifest', async () => {
  const base = await tmp('integrity');
  try {
    const a = path.join(base, 'a');
    await fsp.mkdir(path.join(a, 'd'), { recursive: true });
    await fsp.mkdir(path.join(a, 'workload'));
    for (const f of ['d/1', 'd/2', 'd/3', 'top']) await fsp.writeFile(path.join(a, f), `content of ${f}`);
    await fsp.writeFile(path.join(a, 'workload', 'log'), 'changes all the time');
    await fsp.symlink('d/1', path.join(a, 'link'));
    const ref = await hashedManifest(a, under('workload'));
    assert.ok(!ref.has('workload/log'));
    const b = path.join(base, 'b');
    await fsp.cp(a, b, { recursive: true, verbatimSymlinks: true });
    assert.deepEqual(await integrityOf(ref, b, under('workload')), { files: 5, matching: 5, damaged: 0, missing: 0, extra: 0 });
    await fsp.writeFile(path.join(b, 'd/1'), 'content of d/X'); // same size, other bytes
    await fsp.rm(path.join(b, 'd/2'));
    await fsp.rm(path.join(b, 'link'));
    await fsp.symlink('d/3', path.join(b, 'link'));
    await fsp.writeFile(path.join(b, 'new'), '');
    await fsp.writeFile(path.join(b, 'workload', 'log'), 'other'); // excluded
    const i = await integrityOf(ref, b, under('workload'));
    assert.deepEqual(i, { files: 5, matching: 2, damaged: 2, missing: 1, extra: 1, examples: { damaged: ['d/1', 'link'], missing: ['d/2'], extra: ['new'] } });
  } finally {
    await fsp.rm(base, { recursive: true, force: true });
  }
});

test('summaries: medians and spreads over the ok repeats only', () => {
  assert.deepEqual(spread([3, 1, 2]), { median: 2, min: 1, max: 3, n: 3 });
  assert.deepEqual(spread([4, 1, 2, 3]), { median: 2.5, min: 1, max: 4, n: 4 });
  assert.equal(spread([]), undefined);
  const step = (name: string, wall: number, exitCode = 0) => ({ name, wallSeconds: wall, cpuSeconds: wall / 2, peakRssBytes: 1000, exitCode });
  const reps: RepeatResult[] = [
    { repeat: 1, seed: 1, status: 'ok', steps: [step('backup-1', 2), step('backup-2', 9), step('restore', 1)], integrity: { files: 10, matching: 9, damaged: 1, missing: 0, extra: 0 }, corruptionDetected: true, rpo: { seconds: 1, bytesLost: 10, writesLost: 1 }, rtoSeconds: 3 },
    { repeat: 2, seed: 2, status: 'ok', steps: [step('backup-1', 4, 137), step('backup-2', 6), step('restore', 3)], integrity: { files: 10, matching: 10, damaged: 0, missing: 0, extra: 0 }, corruptionDetected: false, rpo: { seconds: 3, bytesLost: 30, writesLost: 3 }, rtoSeconds: 5 },
    { repeat: 3, seed: 3, status: 'failed', reason: 'x', steps: [step('backup-1', 100)] },
  ];
  const s = summarize(reps);
  // repeat 2's first backup failed: its first successful backup step is backup-2
  assert.deepEqual(s.backupWallSeconds, { median: 4, min: 2, max: 6, n: 2 });
  assert.deepEqual(s.restoreWallSeconds, { median: 2, min: 1, max: 3, n: 2 });
  assert.deepEqual(s.filesMatchingFraction, { median: 0.95, min: 0.9, max: 1, n: 2 });
  assert.equal(s.detectionRate, 0.5);
  assert.deepEqual(s.rtoSeconds, { median: 4, min: 3, max: 5, n: 2 });
  assert.deepEqual(s.rpoBytesLost, { median: 20, min: 10, max: 30, n: 2 });
  assert.equal(s.bytesStored, undefined);
});

test('results file check: schema, version and shape', () => {
  // a results file as a run writes it (test/fixtures, made by make-bench-results.ts)
  const good = JSON.parse(readFileSync(path.resolve(import.meta.dirname, '../fixtures/bench-results-256MiB.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(good['schema'], RESULTS_SCHEMA);
  assert.equal(good['version'], RESULTS_VERSION);
  assert.equal(checkResults(good), undefined);
  assert.equal(checkResults({ ...good, tools: [], scenarios: [], cells: [] }), undefined, 'an empty run is a results file');
  assert.match(checkResults([]) ?? '', /^it is not a meshback bench results file \(its "schema" is missing/);
  assert.match(checkResults({ ...good, schema: 'other' }) ?? '', /not a meshback bench results file/);
  assert.match(checkResults({ ...good, version: 2 }) ?? '', /results version 2; this meshback reads version 1/);
  assert.match(checkResults({ ...good, cells: {} }) ?? '', /^it is malformed: field "cells" must be a list \(it is an object\)/);
  assert.match(checkResults({ ...good, cells: [{ tool: 't' }] }) ?? '', /^it is malformed: field "cells\[0\]\.strategy" is missing \(and \d+ more problems\)/);
});

test('procs: killAllBelow kills children and grandchildren, keeps GNU time wrappers', { timeout: 20_000 }, async () => {
  const child = spawn('sh', ['-c', 'sleep 30 & sleep 30; wait'], { stdio: 'ignore' });
  const exited = new Promise((r) => child.on('close', r));
  for (let i = 0; i < 100 && (await descendants()).filter((p) => p.comm === 'sleep').length < 2; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal((await descendants()).filter((p) => p.comm === 'sleep').length, 2);
  const killed = await killAllBelow();
  assert.ok(killed.length >= 3, `killed ${killed.length}`);
  await exited;
  for (let i = 0; i < 100 && (await descendants()).some((p) => p.comm === 'sleep'); i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual((await descendants()).filter((p) => p.comm === 'sleep'), []);
});

