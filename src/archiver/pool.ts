/** The pool of chunking workers, fed by the archiver with file jobs. */
import * as os from 'node:os';
import { Worker } from 'node:worker_threads';
import type { FileJob, WorkerInit, WorkerMsg } from './worker.ts';

export interface ChunkBatch {
  ids: Uint8Array[];
  datas: Uint8Array[];
}

export type FileOutcome =
  | { ok: true; content: string[]; bytes: number; changed: boolean }
  | { ok: false; message: string; code?: string };

interface Pending {
  resolve: (o: FileOutcome) => void;
  reject: (e: unknown) => void;
  size: number;
  /** chunk stores still running for this job; 'done' waits for them */
  stores: Promise<void>[];
}

interface Slot {
  worker: Worker;
  credit: Int32Array;
  load: number;
  jobs: Map<number, Pending>;
}

export class ChunkerPool {
  private readonly slots: Slot[] = [];
  private nextJob = 1;
  private failure: unknown;
  private readonly onChunks: (b: ChunkBatch) => Promise<void>;

  constructor(init: Omit<WorkerInit, 'credit'>, onChunks: (b: ChunkBatch) => Promise<void>, size = Math.max(1, os.availableParallelism())) {
    this.onChunks = onChunks;
    for (let i = 0; i < size; i++) {
      const credit = new SharedArrayBuffer(4);
      const worker = new Worker(new URL('./worker.ts', import.meta.url), { workerData: { ...init, credit } satisfies WorkerInit });
      const slot: Slot = { worker, credit: new Int32Array(credit), load: 0, jobs: new Map() };
      worker.on('message', (m: WorkerMsg) => this.onMessage(slot, m));
      worker.on('error', (err) => this.fail(err));
      worker.on('exit', (code) => {
        if (code !== 0 && slot.jobs.size > 0) this.fail(new Error(`chunking worker exited with code ${code}`));
      });
      this.slots.push(slot);
    }
  }

  private fail(err: unknown): void {
    this.failure ??= err;
    for (const s of this.slots) {
      for (const p of s.jobs.values()) p.reject(err);
      s.jobs.clear();
    }
  }

  private onMessage(slot: Slot, m: WorkerMsg): void {
    const p = slot.jobs.get(m.job);
    if (p === undefined) return;
    if (m.kind === 'chunks') {
      const st = this.onChunks({ ids: m.ids, datas: m.datas }).then(() => {
        Atomics.sub(slot.credit, 0, m.kib);
        Atomics.notify(slot.credit, 0);
      });
      st.catch((err: unknown) => this.fail(err));
      p.stores.push(st);
      return;
    }
    slot.jobs.delete(m.job);
    slot.load -= p.size + 4096;
    const outcome: FileOutcome = m.kind === 'done' ? { ok: true, content: m.content, bytes: m.bytes, changed: m.changed } : { ok: false, message: m.message, ...(m.code !== undefined ? { code: m.code } : {}) };
    Promise.all(p.stores).then(() => p.resolve(outcome), p.reject);
  }

  /** Chunks one file; resolves once all its new chunks are queued in the content store. */
  process(path: Buffer, st: { ino: number; size: number; mtime: string; ctime: string }): Promise<FileOutcome> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    let best = this.slots[0]!;
    for (const s of this.slots) if (s.load < best.load) best = s;
    const job = this.nextJob++;
    return new Promise<FileOutcome>((resolve, reject) => {
      best.jobs.set(job, { resolve, reject, size: st.size, stores: [] });
      best.load += st.size + 4096;
      const msg: FileJob = { job, path, ino: st.ino, size: st.size, mtime: st.mtime, ctime: st.ctime };
      best.worker.postMessage(msg);
    });
  }

  /** Bytes of file data queued in the workers and not finished. */
  get queuedBytes(): number {
    let n = 0;
    for (const s of this.slots) n += s.load;
    return n;
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
