/**
 * BlobThreads: worker threads (blob-worker.ts) that decode and prove stored blobs, one job at a
 * time each, while the main thread reads the next pieces of packs (and, in a restore, writes).
 * A piece goes over in a SharedArrayBuffer (the caller's read buffer, not copied) with the index's
 * entries of its blobs. The caller must not touch the buffer until the call settles.
 *
 * - verifyPack: a whole pack; back come its SHA-256 and the blobs that failed (check --read-data).
 * - decode: each blob's plain bytes, or its failure, in entry order as they are proven (restore).
 *
 * Threads start when the object is made and hold the process open only while a job is with them;
 * close() ends them. A thread that dies fails every job in flight and every later call.
 */
import { Worker } from 'node:worker_threads';
import { ID_LEN } from '../crypto/index.ts';
import type { BlobFailure, BlobJob, BlobReply, BlobThreadInit } from './blob-worker.ts';

export type { BlobFailure } from './blob-worker.ts';

/** The blobs of a job: offset in the piece, length and raw length of each, and their ids. */
export class BlobList {
  readonly entries: Uint32Array;
  readonly ids: Uint8Array;
  constructor(n: number) {
    this.entries = new Uint32Array(3 * n);
    this.ids = new Uint8Array(ID_LEN * n);
  }

  set(k: number, offset: number, length: number, rawLength: number, id: Uint8Array): void {
    this.entries[3 * k] = offset;
    this.entries[3 * k + 1] = length;
    this.entries[3 * k + 2] = rawLength;
    this.ids.set(id, k * ID_LEN);
  }
}

interface Thread {
  worker: Worker;
  busy: number;
}

interface Waiting {
  thread: Thread;
  onReply: (r: BlobReply) => void;
  reject: (e: Error) => void;
}

export class BlobThreads {
  private readonly threads: Thread[];
  private readonly waiting = new Map<number, Waiting>();
  private next = 0;
  private failure: Error | undefined;

  constructor(encKey: Buffer, idKey: Buffer, threads: number) {
    const init: BlobThreadInit = { encKey: new Uint8Array(encKey), idKey: new Uint8Array(idKey) };
    const url = new URL(import.meta.url.endsWith('.ts') ? './blob-worker.ts' : './blob-worker.js', import.meta.url);
    this.threads = Array.from({ length: Math.max(1, threads) }, () => {
      const t: Thread = { worker: new Worker(url, { workerData: { blobThread: init } }), busy: 0 };
      t.worker.on('message', (m: BlobReply) => this.waiting.get(m.job)?.onReply(m));
      t.worker.on('error', (err: unknown) => this.fail(err instanceof Error ? err : new Error(String(err))));
      t.worker.on('exit', (code) => this.fail(new Error(`a blob thread exited (code ${code})`)));
      t.worker.unref();
      return t;
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiting.values()) w.reject(this.failure);
    this.waiting.clear();
  }

  private settle(job: number): void {
    const w = this.waiting.get(job);
    if (w === undefined) return;
    this.waiting.delete(job);
    if (--w.thread.busy === 0) w.thread.worker.unref();
  }

  /** Sends a job to the least busy thread. The list's arrays are transferred: unusable here afterwards. */
  private send(kind: BlobJob['kind'], name: string, what: string, buf: SharedArrayBuffer, length: number, blobs: BlobList, onReply: (r: BlobReply, job: number) => void, reject: (e: Error) => void): void {
    if (this.failure !== undefined) {
      reject(this.failure);
      return;
    }
    let t = this.threads[0]!;
    for (const c of this.threads) if (c.busy < t.busy) t = c;
    const job = this.next++;
    this.waiting.set(job, { thread: t, onReply: (r) => onReply(r, job), reject });
    if (t.busy++ === 0) t.worker.ref();
    const msg: BlobJob = { job, kind, name, what, buf, length, entries: blobs.entries, ids: blobs.ids };
    t.worker.postMessage(msg, [blobs.entries.buffer as ArrayBuffer, blobs.ids.buffer as ArrayBuffer]);
  }

  /** Verifies the pack `name` (the first `length` bytes of `buf`): its SHA-256, and the blobs that failed. */
  verifyPack(name: string, buf: SharedArrayBuffer, length: number, blobs: BlobList): Promise<{ sha: string; bad: BlobFailure[] }> {
    return new Promise((resolve, reject) => {
      this.send('verify', name, 'blob', buf, length, blobs, (r, job) => {
        this.settle(job);
        if (r.type === 'verified') resolve({ sha: r.sha, bad: r.bad });
        else reject(new Error(`a blob thread failed: ${r.type === 'error' ? r.message : `unexpected reply ${r.type}`}`));
      }, reject);
    });
  }

  /**
   * Decodes the blobs of a piece of the pack `name` (the first `length` bytes of `buf`): onBlob gets
   * each one's plain bytes (memory of their own: free() them once used) or its failure, in entry
   * order; resolves after the last. `what` names the blobs in failures ('chunk': "chunk 1a2b... in
   * pack ... failed authentication").
   */
  decode(name: string, what: string, buf: SharedArrayBuffer, length: number, blobs: BlobList, onBlob: (k: number, plain: Buffer | undefined, failure: BlobFailure | undefined) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      // onBlob's own failure ends the call once the thread is done with the buffer
      let thrown: unknown;
      const deliver = (k: number, plain: Buffer | undefined, failure: BlobFailure | undefined): void => {
        if (thrown !== undefined) return;
        try {
          onBlob(k, plain, failure);
        } catch (err) {
          thrown = err ?? new Error('onBlob failed');
        }
      };
      this.send('decode', name, what, buf, length, blobs, (r, job) => {
        if (r.type === 'blob') deliver(r.k, Buffer.from(r.ab, r.offset, r.length), undefined);
        else if (r.type === 'failed') deliver(r.failure.k, undefined, r.failure);
        else {
          this.settle(job);
          if (r.type !== 'done') reject(new Error(`a blob thread failed: ${r.type === 'error' ? r.message : `unexpected reply ${r.type}`}`));
          else if (thrown !== undefined) reject(thrown instanceof Error ? thrown : new Error(String(thrown)));
          else resolve();
        }
      }, reject);
    });
  }

  async close(): Promise<void> {
    this.failure ??= new Error('the blob threads were closed');
    await Promise.all(this.threads.map((t) => t.worker.terminate()));
  }
}
