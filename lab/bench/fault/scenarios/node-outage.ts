/**
 * Scenario node-outage: the machine dies during a backup; the volume is lost with it, and the
 * service is recovered on a new volume from the repository alone.
 *
 *   setup     backup-1 of the quiescent volume; a seeded 5% change (mutateVolume); backup-2, also
 *             quiescent: the last complete backup before the outage, and the reference (its
 *             manifest: the volume as it was, or for btrfs the snapshot it was taken from)
 *   workload  another seeded 5% change, then the writer starts; 0.5-1.5 s later backup-3 starts
 *   fault     at a seeded moment during backup-3 (a fraction 0.1-0.9 of backup-2's duration, as
 *             backup-3 carries a like amount of change), every process of the run's node is killed
 *             with SIGKILL at once: the backup and the writer; then the volume is destroyed
 *   recovery  a fresh volume of the same kind; restore the latest backup the repository holds
 *   verify    integrity against the reference; if backup-3 happened to finish before the
 *             outage, or was killed after it had stored its snapshot (the restore then matches
 *             backup-3's reference whole, and not backup-2's), against backup-3's (the snapshot's manifest for btrfs, the files the
 *             workload does not touch for a plain directory); every acknowledged write checked
 *   RPO       window = the last complete backup's start to the outage
 *   RTO       the outage to the end of the verified restore (making the new volume included)
 *   note      whether the repository still checks clean after the kill (the tool's check)
 */
import * as path from 'node:path';
import { mutateVolume } from '../../../gen/gen.ts';
import { Rng, deriveSeed } from '../../../gen/rng.ts';
import { hashedManifest, integrityOf, sleep, stepFailure, stepSucceeded, under } from '../common.ts';
import type { Manifest } from '../common.ts';
import { killAllBelow } from '../procs.ts';
import type { BackupOptions, Scenario, StepResult } from '../types.ts';
import { WORKLOAD_DIR, assessWrites, readJournal, rpoOf, startWriter } from '../workload.ts';
import { writesNotes } from './notes.ts';

export const nodeOutage: Scenario = {
  id: 'node-outage',
  title: 'Node outage during a backup',
  description:
    'The machine dies at a random moment during a backup: the backup process and the service writing the volume are killed together and the volume is lost; the service is recovered on a new volume from the repository alone, from the last complete backup, and verified.',
  async run(ctx) {
    if (ctx.newVolume === undefined) throw new Error('node-outage needs a runner that makes fresh volumes (ScenarioContext.newVolume)');
    const rng = new Rng(deriveSeed(ctx.seed, 'node-outage'));
    const steps: StepResult[] = [];
    const notes: string[] = [];
    const btrfs = ctx.volume.kind === 'btrfs';
    const workload = under(WORKLOAD_DIR);
    const refs = new Map<string, Manifest>();
    const backup = async (name: string, opts?: BackupOptions): Promise<StepResult> => {
      const s = await ctx.backup(name, opts);
      steps.push(s);
      return s;
    };
    // btrfs: the reference of a backup is its snapshot's manifest; backup-3's snapshot is held
    // past the outage and hashed (if backup-3 completed) with the clocks stopped
    const view = (name: string): BackupOptions | undefined => (btrfs ? { view: async (p) => void refs.set(name, await hashedManifest(p)) } : undefined);
    let held: { path: string; done: () => void } | undefined;
    const hold: BackupOptions | undefined = btrfs ? { hold: (p) => new Promise<void>((done) => void (held = { path: p, done })) } : undefined;

    const b1 = await backup('backup-1');
    if (!stepSucceeded(b1)) throw new Error(stepFailure(b1));
    await mutateVolume(ctx.volume.path, { percent: 5, seed: deriveSeed(ctx.seed, 'mutate-1') });
    if (!btrfs) refs.set('backup-2', await hashedManifest(ctx.volume.path));
    const b2 = await backup('backup-2', view('backup-2'));
    if (!stepSucceeded(b2)) throw new Error(stepFailure(b2));
    await mutateVolume(ctx.volume.path, { percent: 5, seed: deriveSeed(ctx.seed, 'mutate-2') });
    if (!btrfs) refs.set('backup-3', await hashedManifest(ctx.volume.path));

    const journalFile = path.join(ctx.work, 'journal.log');
    const writer = await startWriter({ volume: ctx.volume.path, journal: journalFile, seed: deriveSeed(ctx.seed, 'writer'), rate: 100, durationSeconds: 600 });
    let faultMs: number;
    let b3: StepResult;
    try {
      await sleep(rng.int(500, 1500));
      const delayMs = rng.float() * 0.8 * b2.wallSeconds * 1000 + 0.1 * b2.wallSeconds * 1000;
      let finished = false;
      const running = backup('backup-3', hold).then((s) => {
        finished = true;
        return s;
      });
      await sleep(delayMs);
      const early = await Promise.race([writer.exited, sleep(0).then(() => undefined)]);
      if (early !== undefined) throw new Error(`the workload writer stopped before the outage (${early.signal ?? `status ${early.code}`}): ${writer.stderr().trim().split('\n').pop() ?? ''}`);
      faultMs = Date.now();
      const finishedBefore = finished;
      const killed = await killAllBelow();
      ctx.log(`fault: node outage ${(delayMs / 1000).toFixed(2)} s into backup-3: killed ${killed.length} process(es)${finishedBefore ? ' (backup-3 had already finished)' : ''}`);
      b3 = await running;
      if (stepSucceeded(b3)) {
        notes.push(`backup-3 finished (${b3.wallSeconds.toFixed(2)} s) before the outage at ${(delayMs / 1000).toFixed(2)} s: it is the backup recovered`);
      } else notes.push(`the outage hit backup-3 ${(delayMs / 1000).toFixed(2)} s after it started`);
    } finally {
      await writer.kill();
    }
    const faultPerf = performance.now() - (Date.now() - faultMs);
    let bookkeeping = 0; // seconds after the outage spent on the reference, not on recovery
    try {
      // backup-3's snapshot is hashed whether or not the tool reported success: it may have
      // stored its snapshot before the kill reached it (see below)
      if (held !== undefined) {
        const t = performance.now();
        refs.set('backup-3', await hashedManifest(held.path));
        bookkeeping += (performance.now() - t) / 1000;
      }
    } finally {
      held?.done();
    }
    await ctx.volume.destroy();

    let last = stepSucceeded(b3) ? b3 : b2;
    const fresh = await ctx.newVolume('recovered');
    const r = await ctx.restore('restore', fresh.path);
    steps.push(r);
    if (!stepSucceeded(r)) return { status: 'failed', reason: stepFailure(r), steps, corruptionDetected: null, notes };
    const reference = refs.get(last.name);
    if (reference === undefined) throw new Error(`no manifest of ${last.name} was taken`);
    // the workload's files are in the reference only when it is a snapshot taken while it ran
    const exclude = btrfs ? undefined : workload;
    let integrity = await integrityOf(reference, fresh.path, exclude);
    // killed after it had stored its snapshot (the kill fell between the snapshot's write and the
    // process's exit): the latest backup the repository holds is backup-3, and the restore
    // brought it back whole; it is judged against backup-3, not as damage of backup-2
    const ref3 = refs.get('backup-3');
    if (last === b2 && integrity.matching !== integrity.files && ref3 !== undefined) {
      const i3 = await integrityOf(ref3, fresh.path, exclude);
      if (i3.matching === i3.files && i3.extra === 0) {
        integrity = i3;
        last = b3;
        notes.push('backup-3 was killed after it had stored its snapshot: the restore brought back backup-3, whole');
      }
    }
    const writes = await assessWrites(await readJournal(journalFile), fresh.path, { before: last.startedAt! });
    const rtoSeconds = (performance.now() - faultPerf) / 1000 - bookkeeping;
    notes.push(...writesNotes(writes, last.name));

    if (ctx.check !== undefined) {
      const c = await ctx.check('check-after-outage');
      steps.push(c);
      // a refusal (e.g. restic's exclusive lock blocked by the killed backup's stale lock) is
      // reported as the tool said it, not as damage
      notes.push(stepSucceeded(c) ? 'the repository checks clean after the outage' : `the tool's check after the outage did not pass: ${stepFailure(c)}`);
    } else notes.push(`${ctx.tool.name} has no check of its own: the repository's state after the outage is not verified`);

    return { status: 'ok', steps, integrity, corruptionDetected: null, rpo: rpoOf(writes, last.startedAt!, faultMs), rtoSeconds, notes };
  },
};
