/**
 * The chunking thread: reads large files, cuts them into content-defined chunks, finds holes and
 * computes each chunk's keyed id, on a core of its own. The main thread then only stores the
 * chunks (compression and sealing go on to libuv's pool from there). See ChunkThread in
 * chunk-thread.ts for the protocol; this file is the worker's side of it.
 *
 * Memory: the buffers it reads into are the only large allocations: a fixed set of
 * SharedArrayBuffers (twice the largest chunk each) made once by the main thread. A buffer's
 * number goes to the main thread with the chunks cut in it and comes back once they are stored;
 * the tail of a buffer that is not yet a whole chunk is copied to the start of the next one.
 * (Transferring ArrayBuffers instead made each 16 MiB buffer a new external allocation on every
 * trip: the main thread's garbage collector time doubled, 1.6 -> 3.3 s on a 2 GiB backup.)
 */
import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { Chunker } from '../chunker/fastcdc.ts';
import type { ChunkerParams } from '../chunker/fastcdc.ts';
import { ID_LEN, contentId } from '../crypto/index.ts';

export interface ChunkThreadInit {
  gear: Uint32Array;
  params: ChunkerParams;
  idKey: Uint8Array;
  /** zero runs at least this long are holes */
  minHole: number;
  /** the buffers, shared: the worker reads into them, the main thread stores from them */
  buffers: SharedArrayBuffer[];
}

/** main -> worker */
export type ToWorker = { type: 'file'; job: number; fd: number } | { type: 'buffer'; slot: number };

/**
 * worker -> main: the chunks cut in `buf` (lens[i] bytes each, back to back from offset 0; a
 * negative length is a hole of that many zero bytes; ids: 32 bytes per chunk that is not a hole);
 * `last` on the file's last batch. Or the file's read error.
 */
export type FromWorker =
  | { type: 'chunks'; job: number; slot: number; lens: number[]; ids: Uint8Array; last: boolean }
  | { type: 'error'; job: number; message: string; code?: string };

function start(init: ChunkThreadInit): void {
  const port = parentPort!;
  const chunker = Chunker.withGear(init.gear, init.params);
  const idKey = Buffer.from(init.idKey);
  const max = init.params.max;
  const zero = Buffer.alloc(max);
  const views = init.buffers.map((b) => Buffer.from(b));
  const free: number[] = views.map((_, i) => i);
  let bufferBack: (() => void) | undefined;
  const jobs: { job: number; fd: number }[] = [];
  let running = false;

  const takeBuffer = async (): Promise<number> => {
    while (free.length === 0) await new Promise<void>((r) => (bufferBack = r));
    return free.pop()!;
  };

  const file = async (job: number, fd: number): Promise<void> => {
    let slot = await takeBuffer();
    let buf = views[slot]!;
    let fill = 0;
    let position = 0;
    let eof = false;
    try {
      for (;;) {
        while (!eof && fill < buf.length) {
          const n = readSync(fd, buf, fill, buf.length - fill, position);
          if (n === 0) eof = true;
          fill += n;
          position += n;
        }
        const lens: number[] = [];
        const ids: Buffer[] = [];
        let pos = 0;
        while (fill - pos >= max || (eof && pos < fill)) {
          const end = chunker.cut(buf, pos, fill);
          const len = end - pos;
          if (len >= init.minHole && zero.compare(buf, pos, end, 0, len) === 0) lens.push(-len);
          else {
            lens.push(len);
            ids.push(contentId(idKey, buf.subarray(pos, end)));
          }
          pos = end;
        }
        let next = -1;
        if (!eof) {
          next = await takeBuffer();
          buf.copy(views[next]!, 0, pos, fill);
        }
        const msg: FromWorker = { type: 'chunks', job, slot, lens, ids: Buffer.concat(ids, ids.length * ID_LEN), last: eof };
        port.postMessage(msg);
        slot = next;
        if (slot < 0) return;
        buf = views[slot]!;
        fill -= pos;
      }
    } catch (err) {
      // the buffer this file holds goes back (one lost buffer of two would stall every later file)
      if (slot >= 0) free.push(slot);
      throw err;
    }
  };

  const run = async (): Promise<void> => {
    running = true;
    for (let j = jobs.shift(); j !== undefined; j = jobs.shift()) {
      try {
        await file(j.job, j.fd);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        const msg: FromWorker = { type: 'error', job: j.job, message: e.message, ...(typeof e.code === 'string' ? { code: e.code } : {}) };
        port.postMessage(msg);
      }
    }
    running = false;
  };

  port.on('message', (m: ToWorker) => {
    if (m.type === 'buffer') {
      free.push(m.slot);
      const b = bufferBack;
      bufferBack = undefined;
      b?.();
      return;
    }
    jobs.push({ job: m.job, fd: m.fd });
    if (!running) void run();
  });
}

if (parentPort !== null && (workerData as { chunkThread?: ChunkThreadInit } | undefined)?.chunkThread !== undefined) {
  start((workerData as { chunkThread: ChunkThreadInit }).chunkThread);
}
