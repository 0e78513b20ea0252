/**
 * Chunking worker (runs in a worker thread). For each file job it reads the file, cuts it
 * into content-defined chunks, computes each chunk's keyed id, detects holes (all-zero
 * chunks, stored as no data), and hands the chunks to the main thread in batches.
 *
 * Back-pressure: a shared counter holds the KiB this worker has handed over and the main
 * thread has not yet stored; the worker blocks (Atomics.wait) while it is above the window.
 */
import { closeSync, constants as fsc, fstatSync, openSync, readSync } from 'node:fs';
import { createHmac } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { Chunker } from '../chunker/fastcdc.ts';
import type { ChunkerParams } from '../chunker/fastcdc.ts';

export interface WorkerInit {
  seed: Uint8Array;
  params: ChunkerParams;
  idKey: Uint8Array;
  credit: SharedArrayBuffer;
  windowKiB: number;
}

export interface FileJob {
  job: number;
  path: Uint8Array;
  ino: number;
  size: number;
  mtime: string;
  ctime: string;
}

export type WorkerMsg =
  | { kind: 'chunks'; job: number; ids: Uint8Array[]; datas: Uint8Array[]; kib: number }
  | { kind: 'done'; job: number; content: string[]; bytes: number; changed: boolean }
  | { kind: 'error'; job: number; message: string; code?: string };

const BATCH = 4 * 1024 * 1024;

function main(): void {
  const init = workerData as WorkerInit;
  const chunker = new Chunker(init.seed, init.params);
  const max = init.params.max;
  const idKey = Buffer.from(init.idKey);
  const credit = new Int32Array(init.credit);
  const zero = Buffer.alloc(max);
  const buf = Buffer.allocUnsafe(2 * max);
  const port = parentPort!;

  const acquire = (kib: number): void => {
    for (;;) {
      const cur = Atomics.load(credit, 0);
      if (cur <= init.windowKiB) break;
      Atomics.wait(credit, 0, cur, 1000);
    }
    Atomics.add(credit, 0, kib);
  };

  port.on('message', (j: FileJob) => {
    const openFile = (): number => {
      try {
        return openSync(Buffer.from(j.path), fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NOATIME);
      } catch (err) {
        // O_NOATIME is refused (EPERM) for files the caller does not own
        if ((err as { code?: string }).code === 'EPERM') return openSync(Buffer.from(j.path), fsc.O_RDONLY | fsc.O_NOFOLLOW);
        throw err;
      }
    };
    let fd: number;
    try {
      fd = openFile();
    } catch (err) {
      port.postMessage({ kind: 'error', job: j.job, message: (err as Error).message, code: (err as { code?: string }).code } satisfies WorkerMsg);
      return;
    }
    try {
      const st0 = fstatSync(fd, { bigint: true });
      let changed = Number(st0.ino) !== j.ino || st0.mtimeNs.toString() !== j.mtime || st0.ctimeNs.toString() !== j.ctime || Number(st0.size) !== j.size;
      const content: string[] = [];
      let ids: Uint8Array[] = [];
      let datas: Uint8Array[] = [];
      let batchBytes = 0;
      let total = 0;
      const flush = (): void => {
        if (ids.length === 0) return;
        const kib = Math.ceil(batchBytes / 1024);
        acquire(kib);
        port.postMessage({ kind: 'chunks', job: j.job, ids, datas, kib } satisfies WorkerMsg, datas.map((d) => d.buffer as ArrayBuffer));
        ids = [];
        datas = [];
        batchBytes = 0;
      };
      let fill = 0;
      let eof = false;
      while (!eof || fill > 0) {
        while (!eof && fill < buf.length) {
          const n = readSync(fd, buf, fill, buf.length - fill, null);
          if (n === 0) eof = true;
          fill += n;
        }
        let pos = 0;
        while (fill - pos >= max || (eof && pos < fill)) {
          const end = chunker.cut(buf, pos, fill);
          const chunk = buf.subarray(pos, end);
          const len = end - pos;
          total += len;
          if (zero.compare(chunk, 0, len, 0, len) === 0 && len >= 4096) {
            const last = content[content.length - 1];
            if (last !== undefined && last.startsWith('0:')) content[content.length - 1] = `0:${Number(last.slice(2)) + len}`;
            else content.push(`0:${len}`);
          } else {
            const id = createHmac('sha256', idKey).update(chunk).digest();
            content.push(id.toString('hex'));
            const copy = new Uint8Array(len);
            copy.set(chunk);
            ids.push(new Uint8Array(id));
            datas.push(copy);
            batchBytes += len;
            if (batchBytes >= BATCH) flush();
          }
          pos = end;
        }
        buf.copyWithin(0, pos, fill);
        fill -= pos;
      }
      flush();
      const st1 = fstatSync(fd, { bigint: true });
      if (st1.mtimeNs !== st0.mtimeNs || st1.ctimeNs !== st0.ctimeNs || st1.size !== st0.size || BigInt(total) !== st1.size) changed = true;
      port.postMessage({ kind: 'done', job: j.job, content, bytes: total, changed } satisfies WorkerMsg);
    } catch (err) {
      port.postMessage({ kind: 'error', job: j.job, message: (err as Error).message, code: (err as { code?: string }).code } satisfies WorkerMsg);
    } finally {
      closeSync(fd);
    }
  });
}

main();
