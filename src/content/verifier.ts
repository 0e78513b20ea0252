/**
 * PackVerifier: worker threads (verify-worker.ts) that prove whole packs, one pack at a time
 * each, while the main thread reads the next ones. A pack goes over in a SharedArrayBuffer (the
 * caller's read buffer, not copied) with its index entries; back come its SHA-256 and the blobs
 * that failed (decrypt, encoding, decompress, re-hash to the id, or lying past the pack's end).
 * The caller must not touch the buffer until verify() settles.
 *
 * Threads start when the verifier is made and hold the process open only while a pack is with
 * them; close() ends them.
 */
import { Worker } from 'node:worker_threads';
import type { BlobFailure, VerifyJob, VerifyResult, VerifyThreadInit } from './verify-worker.ts';

export type { BlobFailure } from './verify-worker.ts';

interface Thread {
  worker: Worker;
  busy: number;
}

export class PackVerifier {
  private readonly threads: Thread[];
  private readonly waiting = new Map<number, { resolve: (r: { sha: string; bad: BlobFailure[] }) => void; reject: (e: Error) => void }>();
  private next = 0;
  private failure: Error | undefined;

  constructor(encKey: Buffer, idKey: Buffer, threads: number) {
    const init: VerifyThreadInit = { encKey: new Uint8Array(encKey), idKey: new Uint8Array(idKey) };
    const url = new URL(import.meta.url.endsWith('.ts') ? './verify-worker.ts' : './verify-worker.js', import.meta.url);
    this.threads = Array.from({ length: Math.max(1, threads) }, () => {
      const t: Thread = { worker: new Worker(url, { workerData: { verifyThread: init } }), busy: 0 };
      t.worker.on('message', (m: VerifyResult) => {
        const w = this.waiting.get(m.job);
        if (w === undefined) return;
        this.waiting.delete(m.job);
        if (--t.busy === 0) t.worker.unref();
        if ('error' in m) w.reject(new Error(`the pack verifier failed: ${m.error}`));
        else w.resolve({ sha: m.sha, bad: m.bad });
      });
      t.worker.on('error', (err: unknown) => this.fail(err instanceof Error ? err : new Error(String(err))));
      t.worker.on('exit', (code) => this.fail(new Error(`a pack verifier thread exited (code ${code})`)));
      t.worker.unref();
      return t;
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiting.values()) w.reject(this.failure);
    this.waiting.clear();
  }

  /**
   * Verifies the pack `name` (the first `length` bytes of `buf`): entries holds offset, length and
   * raw length of each blob the index places in it (3 numbers each), ids their 32-byte ids. Both
   * are transferred to the thread: they are unusable here afterwards.
   */
  verify(name: string, buf: SharedArrayBuffer, length: number, entries: Uint32Array, ids: Uint8Array): Promise<{ sha: string; bad: BlobFailure[] }> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    let t = this.threads[0]!;
    for (const c of this.threads) if (c.busy < t.busy) t = c;
    const job = this.next++;
    const msg: VerifyJob = { job, name, buf, length, entries, ids };
    return new Promise((resolve, reject) => {
      this.waiting.set(job, { resolve, reject });
      if (t.busy++ === 0) t.worker.ref();
      t.worker.postMessage(msg, [entries.buffer as ArrayBuffer, ids.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    this.failure ??= new Error('the pack verifier was closed');
    await Promise.all(this.threads.map((t) => t.worker.terminate()));
  }
}
