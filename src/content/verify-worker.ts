/**
 * A pack verifier thread: proves a whole pack's bytes on a core of its own. For each pack it is
 * given (in memory shared with the main thread, read there), it computes the pack's SHA-256 and
 * proves every blob the index places in it with verifyBlobSync (decrypt, decompress, re-hash).
 * See PackVerifier in verifier.ts for the protocol; this file is the worker's side of it.
 *
 * Why a thread and not libuv's pool: on the main thread, the pack hash and the blobs' re-hash
 * took 2.2 s of an 11.5 s check of 2 GiB, and each large blob handed to the pool through
 * WebCrypto is copied first (1.0 s more); here nothing is copied and the main thread only reads.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { errMessage } from '../errors/index.ts';
import { ID_LEN } from '../crypto/index.ts';
import { BlobRef, verifyBlobSync } from './blob.ts';
import { sha256hex } from './pack.ts';

export interface VerifyThreadInit {
  encKey: Uint8Array;
  idKey: Uint8Array;
}

/** main -> worker: a pack's bytes (the first `length` of `buf`) and its index entries: offset, length, raw length (3 per entry) and 32-byte ids. */
export interface VerifyJob {
  job: number;
  name: string;
  buf: SharedArrayBuffer;
  length: number;
  entries: Uint32Array;
  ids: Uint8Array;
}

/** A blob that failed: its number among the job's entries, and why (null: it lies past the pack's end). */
export interface BlobFailure {
  k: number;
  message: string | null;
}

/** worker -> main */
export type VerifyResult = { job: number; sha: string; bad: BlobFailure[] } | { job: number; error: string };

function start(init: VerifyThreadInit): void {
  const port = parentPort!;
  const encKey = Buffer.from(init.encKey);
  const idKey = Buffer.from(init.idKey);
  port.on('message', (m: VerifyJob) => {
    let reply: VerifyResult;
    try {
      const data = Buffer.from(m.buf, 0, m.length);
      const sha = sha256hex(data);
      const bad: BlobFailure[] = [];
      const n = m.entries.length / 3;
      for (let k = 0; k < n; k++) {
        const offset = m.entries[3 * k]!;
        const length = m.entries[3 * k + 1]!;
        if (offset + length > data.length) {
          bad.push({ k, message: null });
          continue;
        }
        try {
          verifyBlobSync(encKey, idKey, data.subarray(offset, offset + length), m.entries[3 * k + 2]!, new BlobRef(m.ids.subarray(k * ID_LEN, (k + 1) * ID_LEN), m.name));

        } catch (err) {
          bad.push({ k, message: errMessage(err) });
        }
      }
      reply = { job: m.job, sha, bad };
    } catch (err) {
      reply = { job: m.job, error: errMessage(err) };
    }
    port.postMessage(reply);
  });
}

if (parentPort !== null && (workerData as { verifyThread?: VerifyThreadInit } | undefined)?.verifyThread !== undefined) {
  start((workerData as { verifyThread: VerifyThreadInit }).verifyThread);
}
