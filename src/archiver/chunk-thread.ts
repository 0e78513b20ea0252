/**
 * The main thread's side of the chunking thread (chunk-worker.ts): large files are read, cut and
 * hashed there, one file at a time in the order they are given, and come back as batches of
 * chunks in the buffer they were read into. A batch's buffer must be given back (give()) once its
 * chunks are stored: the worker reads into at most `buffers` buffers, so a slow store holds the
 * reading back.
 *
 * The file is opened by the caller (through its Source) and handed over as a descriptor; the
 * worker reads it by position, start to end.
 */
import { Worker } from 'node:worker_threads';
import type { Chunker } from '../chunker/fastcdc.ts';
import type { ChunkThreadInit, FromWorker, ToWorker } from './chunk-worker.ts';

export interface ChunkBatch {
  /** the buffer's number (for give()) and the buffer */
  slot: number;
  buf: Buffer;
  /** chunk lengths, back to back from offset 0; negative: a hole of that many zero bytes */
  lens: number[];
  /** 32 bytes per chunk that is not a hole, in order */
  ids: Uint8Array;
  last: boolean;
}

/** A read error of the file, from the worker (code as fs gives it). */
export class ChunkReadError extends Error {
  readonly code: string | undefined;
  constructor(message: string, code: string | undefined) {
    super(message);
    this.code = code;
  }
}

interface Job {
  queue: (ChunkBatch | ChunkReadError)[];
  wake: (() => void) | undefined;
}

export class ChunkThread {
  private readonly worker: Worker;
  private readonly jobs = new Map<number, Job>();
  private next = 0;
  private failure: Error | undefined;

  private readonly views: Buffer[];

  constructor(chunker: Chunker, idKey: Buffer, minHole: number, buffers: number) {
    const shared = Array.from({ length: buffers }, () => new SharedArrayBuffer(2 * chunker.params.max));
    this.views = shared.map((b) => Buffer.from(b));
    const init: ChunkThreadInit = { gear: chunker.gear, params: chunker.params, idKey: new Uint8Array(idKey), minHole, buffers: shared };
    const url = new URL(import.meta.url.endsWith('.ts') ? './chunk-worker.ts' : './chunk-worker.js', import.meta.url);
    this.worker = new Worker(url, { workerData: { chunkThread: init } });
    this.worker.on('message', (m: FromWorker) => {
      const j = this.jobs.get(m.job);
      if (j === undefined) {
        // a file given up on (its reader failed): its buffers go back
        if (m.type === 'chunks') this.give(m.slot);
        return;
      }
      j.queue.push(m.type === 'chunks' ? { slot: m.slot, buf: this.views[m.slot]!, lens: m.lens, ids: m.ids, last: m.last } : new ChunkReadError(m.message, m.code));
      const w = j.wake;
      j.wake = undefined;
      w?.();
    });
    this.worker.on('error', (err: unknown) => this.fail(err instanceof Error ? err : new Error(String(err))));
    this.worker.on('exit', (code) => this.fail(new Error(`the chunking thread exited (code ${code})`)));
    // held (keeps the process alive) only while a file is being read: an idle thread must not keep a finished command running
    this.worker.unref();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const j of this.jobs.values()) {
      const w = j.wake;
      j.wake = undefined;
      w?.();
    }
  }

  /** The batches of the file open as `fd`, in order; ends after the last one, throws ChunkReadError for a read error. */
  async *chunks(fd: number): AsyncGenerator<ChunkBatch> {
    if (this.failure !== undefined) throw this.failure;
    const id = this.next++;
    const job: Job = { queue: [], wake: undefined };
    this.jobs.set(id, job);
    if (this.jobs.size === 1) this.worker.ref();
    const msg: ToWorker = { type: 'file', job: id, fd };
    this.worker.postMessage(msg);
    let done = false;
    try {
      while (!done) {
        while (job.queue.length === 0) {
          if (this.failure !== undefined) throw this.failure;
          await new Promise<void>((r) => (job.wake = r));
        }
        const b = job.queue.shift()!;
        if (b instanceof ChunkReadError) {
          done = true;
          throw b;
        }
        done = b.last;
        yield b;
      }
    } finally {
      this.jobs.delete(id);
      if (this.jobs.size === 0) this.worker.unref();
      // batches not taken (the caller stopped early): their buffers go back, and so do those the
      // worker still sends for this file (the message handler)
      for (const b of job.queue) if (!(b instanceof ChunkReadError)) this.give(b.slot);
    }
  }

  /** Gives a batch's buffer back to the worker once its chunks are stored. */
  give(slot: number): void {
    if (this.failure !== undefined) return;
    const msg: ToWorker = { type: 'buffer', slot };
    this.worker.postMessage(msg);
  }

  async close(): Promise<void> {
    this.failure ??= new Error('the chunking thread was closed');
    await this.worker.terminate();
  }
}
