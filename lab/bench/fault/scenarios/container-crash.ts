/**
 * Scenario container-crash: the process writing the volume is killed with SIGKILL while it
 * writes, then the volume is restored from the latest backup and verified.
 *
 *   setup     backup-1 of the quiescent volume (the generated data set)
 *   workload  the writer (workload.ts) appends fsynced log records and rewrites state files
 *   backup-2  taken while the writer runs (1-2 s after it started, seeded)
 *   fault     0.3-1.5 s (seeded) after backup-2 ends, SIGKILL the writer mid-write
 *   recovery  restore the latest backup into a fresh directory
 *   verify    integrity against what the backup captured: for a btrfs volume the manifest of the
 *             read-only snapshot backup-2 was taken from (every file, the workload's included);
 *             for a plain directory (a live, crash-inconsistent backup) the files the workload
 *             never touches against their manifest before it started; for both, every
 *             acknowledged write is checked in the restored tree (workload.ts assessWrites).
 *   RPO       window = backup-2's start to the kill; writes and bytes acknowledged but not restored
 *   RTO       the kill to the end of the verified restore
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Rng, deriveSeed } from '../../../gen/rng.ts';
import { hashedManifest, integrityOf, sleep, stepFailure, stepSucceeded, under } from '../common.ts';
import type { Manifest } from '../common.ts';
import type { RepeatResult, Scenario, StepResult } from '../types.ts';
import { WORKLOAD_DIR, assessWrites, readJournal, rpoOf, startWriter } from '../workload.ts';
import { writesNotes } from './notes.ts';

export const containerCrash: Scenario = {
  id: 'container-crash',
  title: 'Container crash',
  description:
    'A service appends fsynced records to logs and rewrites state files on the volume; a backup is taken while it writes, then the service is killed with SIGKILL mid-write and the volume is restored from the latest backup and verified (files by SHA-256, every acknowledged write).',
  async run(ctx) {
    const rng = new Rng(deriveSeed(ctx.seed, 'container-crash'));
    const steps: StepResult[] = [];
    const btrfs = ctx.volume.kind === 'btrfs';
    const workload = under(WORKLOAD_DIR);
    // dir volume: the files the workload never touches, before it starts (the static part)
    const staticRef = btrfs ? undefined : await hashedManifest(ctx.volume.path, workload);
    const refs = new Map<string, Manifest>();
    // btrfs: the reference of backup-2 is its snapshot, held past the fault and hashed with the
    // clocks stopped (hashing it at once would delay the fault and widen the RPO window)
    let held: { path: string; done: () => void } | undefined;
    const hold = btrfs ? { hold: (p: string) => new Promise<void>((done) => void (held = { path: p, done })) } : undefined;

    const b1 = await ctx.backup('backup-1', btrfs ? { view: async (p: string) => void refs.set('backup-1', await hashedManifest(p)) } : undefined);
    steps.push(b1);
    if (!stepSucceeded(b1)) throw new Error(stepFailure(b1));

    const journalFile = path.join(ctx.work, 'journal.log');
    const writer = await startWriter({ volume: ctx.volume.path, journal: journalFile, seed: deriveSeed(ctx.seed, 'writer'), rate: 100, durationSeconds: 600 });
    let faultMs: number;
    let b2: StepResult;
    try {
      await sleep(rng.int(1000, 2000));
      b2 = await ctx.backup('backup-2', hold);
      steps.push(b2);
      await sleep(rng.int(300, 1500));
      const early = await Promise.race([writer.exited, sleep(0).then(() => undefined)]);
      if (early !== undefined) throw new Error(`the workload writer stopped before the fault (${early.signal ?? `status ${early.code}`}): ${writer.stderr().trim().split('\n').pop() ?? ''}`);
      faultMs = await writer.kill();
    } finally {
      await writer.kill();
    }
    const faultPerf = performance.now() - (Date.now() - faultMs);
    ctx.log(`fault: writer killed (SIGKILL)`);
    const last = stepSucceeded(b2) ? b2 : b1;

    const target = path.join(ctx.work, 'restore');
    await fsp.rm(target, { recursive: true, force: true });
    await fsp.mkdir(target, { recursive: true });
    let r: StepResult;
    let bookkeeping = 0; // seconds after the fault spent on the reference, not on recovery
    try {
      r = await ctx.restore('restore', target);
      steps.push(r);
      if (held !== undefined && last === b2) {
        const t = performance.now();
        refs.set('backup-2', await hashedManifest(held.path));
        bookkeeping += (performance.now() - t) / 1000;
      }
    } finally {
      held?.done();
    }
    const notes: string[] = [];
    if (!stepSucceeded(b2)) notes.push(`the backup during the workload failed (${stepFailure(b2)}): restored backup-1`);
    if (!stepSucceeded(r)) return { status: 'failed', reason: stepFailure(r), steps, corruptionDetected: null, notes };

    const reference = btrfs ? refs.get(last.name) : staticRef;
    if (reference === undefined) throw new Error(`no manifest of ${last.name}'s snapshot was taken`);
    const integrity = await integrityOf(reference, target, btrfs ? undefined : workload);
    const journal = await readJournal(journalFile);
    const writes = await assessWrites(journal, target, { before: last.startedAt! });
    const rtoSeconds = (performance.now() - faultPerf) / 1000 - bookkeeping;
    notes.push(...writesNotes(writes, last.name));
    if (!btrfs) notes.push(`live directory backup: integrity covers the ${integrity.files} files the workload does not touch; the workload's files are judged by their acknowledged writes`);
    const result: Omit<RepeatResult, 'repeat' | 'seed'> = {
      status: 'ok',
      steps,
      integrity,
      corruptionDetected: null,
      rpo: rpoOf(writes, last.startedAt!, faultMs),
      rtoSeconds,
      notes,
    };
    return result;
  },
};
