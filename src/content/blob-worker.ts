/**
 * A blob thread: decodes and proves stored blobs on a core of its own (see BlobThreads in
 * blob-threads.ts for the protocol; this file is the worker's side of it). A job is a piece of a
 * pack read by the main thread into memory shared with it, with the index's entries of the blobs
 * in it. Two kinds:
 * - verify (check --read-data): the piece is a whole pack; its SHA-256 is computed and every blob
 *   proven (decrypt, decompress, re-hash to its id) and freed at once; back come the hash and the
 *   blobs that failed.
 * - decode (restore): every blob is decoded and proven, and its plain bytes go back to the main
 *   thread as they come, moved (not copied) when they are memory of their own.
 *
 * Why threads and not libuv's pool: on the main thread, the pack hash and the blobs' re-hash took
 * 2.2 s of an 11.5 s check of 2 GiB, and each large blob handed to the pool through WebCrypto is
 * copied first (1.0 s more); here nothing is copied and the main thread only reads (and writes).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { errMessage } from '../errors/index.ts';
import { ID_LEN } from '../crypto/index.ts';
import { BlobRef, decodeBlobSync, ownsMemory, verifyBlobSync } from './blob.ts';
import { sha256hex } from './pack.ts';

export interface BlobThreadInit {
  encKey: Uint8Array;
  idKey: Uint8Array;
}

/** main -> worker: a piece of the pack `name` (the first `length` bytes of `buf`) and the entries of its blobs: offset in the piece, length, raw length (3 per blob) and 32-byte ids. */
export interface BlobJob {
  job: number;
  kind: 'verify' | 'decode';
  name: string;
  /** how a failure names a blob ('blob', 'chunk') */
  what: string;
  buf: SharedArrayBuffer;
  length: number;
  entries: Uint32Array;
  ids: Uint8Array;
}

/** A blob that failed: its number among the job's entries, and why (null: it lies past the piece's end). */
export interface BlobFailure {
  k: number;
  message: string | null;
}

/**
 * worker -> main. verify: one 'verified' per job. decode: one 'blob' per blob (its plain bytes:
 * `length` bytes from `offset` of `ab`) or 'failed', in entry order, then 'done'. 'error': the job
 * could not run at all.
 */
export type BlobReply =
  | { job: number; type: 'verified'; sha: string; bad: BlobFailure[] }
  | { job: number; type: 'blob'; k: number; ab: ArrayBuffer; offset: number; length: number }
  | { job: number; type: 'failed'; failure: BlobFailure }
  | { job: number; type: 'done' }
  | { job: number; type: 'error'; message: string };

function start(init: BlobThreadInit): void {
  const port = parentPort!;
  const encKey = Buffer.from(init.encKey);
  const idKey = Buffer.from(init.idKey);

  /** Runs fn on each blob of the job that lies inside the piece; the others and fn's failures go to onFail. */
  const eachBlob = (m: BlobJob, data: Buffer, fn: (k: number, sealed: Buffer, rawLength: number, ref: BlobRef) => void, onFail: (f: BlobFailure) => void): void => {
    const n = m.entries.length / 3;
    for (let k = 0; k < n; k++) {
      const offset = m.entries[3 * k]!;
      const length = m.entries[3 * k + 1]!;
      if (offset + length > data.length) {
        onFail({ k, message: null });
        continue;
      }
      try {
        fn(k, data.subarray(offset, offset + length), m.entries[3 * k + 2]!, new BlobRef(m.ids.subarray(k * ID_LEN, (k + 1) * ID_LEN), m.name, m.what));
      } catch (err) {
        onFail({ k, message: errMessage(err) });
      }
    }
  };

  port.on('message', (m: BlobJob) => {
    try {
      const data = Buffer.from(m.buf, 0, m.length);
      if (m.kind === 'verify') {
        const sha = sha256hex(data);
        const bad: BlobFailure[] = [];
        eachBlob(m, data, (_k, sealed, raw, ref) => verifyBlobSync(encKey, idKey, sealed, raw, ref), (f) => bad.push(f));
        const reply: BlobReply = { job: m.job, type: 'verified', sha, bad };
        port.postMessage(reply);
        return;
      }
      eachBlob(
        m,
        data,
        (k, sealed, raw, ref) => {
          const plain = decodeBlobSync(encKey, idKey, sealed, raw, ref);
          // memory of its own moves to the main thread; a small blob (in Node's pool of small Buffers) is copied out
          const own = ownsMemory(plain) ? plain : new Uint8Array(plain);
          const reply: BlobReply = { job: m.job, type: 'blob', k, ab: own.buffer as ArrayBuffer, offset: own.byteOffset, length: own.byteLength };
          port.postMessage(reply, [reply.ab]);
        },
        (failure) => {
          const reply: BlobReply = { job: m.job, type: 'failed', failure };
          port.postMessage(reply);
        },
      );
      const done: BlobReply = { job: m.job, type: 'done' };
      port.postMessage(done);
    } catch (err) {
      const reply: BlobReply = { job: m.job, type: 'error', message: errMessage(err) };
      port.postMessage(reply);
    }
  });
}

if (parentPort !== null && (workerData as { blobThread?: BlobThreadInit } | undefined)?.blobThread !== undefined) {
  start((workerData as { blobThread: BlobThreadInit }).blobThread);
}
