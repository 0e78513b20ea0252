/**
 * content/zstd: zstd on libuv's thread pool through long-lived contexts.
 *
 * node:zlib's one-shot zstdCompress/zstdDecompress build a stream object and a zstd context per
 * call and free them after: per 1 MiB chunk that cost more main-thread time than handing the work
 * to the pool (profile of a 2 GiB first backup: 2.4 s of 19 s on the main thread in the stream
 * constructor and the context set-up; docs/runtime.md). Here each context is made once and kept:
 * a compress stream whose every write is one whole frame (flush ZSTD_e_end), and a decompress
 * stream fed one frame per write. A frame's output arrives as the stream's 'data' before the
 * write's callback.
 *
 * A stream is used by one call at a time (`take`/`put`); one that failed, or whose output was not
 * exactly one whole frame's, is destroyed rather than reused. At most `keep` idle streams of each
 * kind are kept.
 */
import * as zlib from 'node:zlib';

const C = zlib.constants;
/** output pieces: most compressed and decompressed chunks fit in one (larger ones are joined) */
const OUT_CHUNK = 2 * 1024 * 1024 + 64 * 1024;

interface Ctx {
  z: zlib.ZstdCompress | zlib.ZstdDecompress;
  parts: Buffer[];
  bytes: number;
}

function makeCtx(z: zlib.ZstdCompress | zlib.ZstdDecompress): Ctx {
  const ctx: Ctx = { z, parts: [], bytes: 0 };
  z.on('data', (d: Buffer) => {
    ctx.parts.push(d);
    ctx.bytes += d.length;
  });
  // errors come back through the write callback; this keeps an 'error' event from being unhandled
  z.on('error', () => undefined);
  return ctx;
}

/**
 * Runs one frame through a context; resolves with its whole output. A stream that fails emits
 * 'error' and may never call the write back: either ends the call, whichever comes first.
 */
function frame(ctx: Ctx, data: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const onError = (err: Error) => {
      if (settled) return;
      settled = true;
      ctx.parts = [];
      ctx.bytes = 0;
      reject(err);
    };
    ctx.z.once('error', onError);
    ctx.z.write(data, (err) => {
      ctx.z.off('error', onError);
      if (settled) return;
      settled = true;
      const parts = ctx.parts;
      ctx.parts = [];
      ctx.bytes = 0;
      if (err !== null && err !== undefined) reject(err);
      else resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
    });
  });
}

export class ZstdContexts {
  private readonly level: number;
  private readonly keep: number;
  private readonly idleC: Ctx[] = [];
  private readonly idleD: Ctx[] = [];

  constructor(level: number, keep: number) {
    this.level = level;
    this.keep = keep;
  }

  private put(list: Ctx[], ctx: Ctx): void {
    if (list.length < this.keep) list.push(ctx);
    else ctx.z.destroy();
  }

  /** One zstd frame of `data` at the level given. */
  async compress(data: Uint8Array): Promise<Buffer> {
    const ctx = this.idleC.pop() ?? makeCtx(zlib.createZstdCompress({ flush: C.ZSTD_e_end, chunkSize: OUT_CHUNK, params: { [C.ZSTD_c_compressionLevel]: this.level } }));
    try {
      const out = await frame(ctx, data);
      // a frame is never empty: no output means it did not arrive with its write
      if (out.length === 0) throw new Error('zstd gave no frame for the data written');
      this.put(this.idleC, ctx);
      return out;
    } catch (err) {
      ctx.z.destroy();
      throw err;
    }
  }

  /**
   * The content of one zstd frame, which must be `rawLength` bytes; throws (and drops the
   * context) when it is not one whole frame of that length.
   */
  async decompress(data: Uint8Array, rawLength: number): Promise<Buffer> {
    const ctx = this.idleD.pop() ?? makeCtx(zlib.createZstdDecompress({ chunkSize: OUT_CHUNK }));
    let out: Buffer;
    try {
      out = await frame(ctx, data);
    } catch (err) {
      ctx.z.destroy();
      throw err;
    }
    if (out.length !== rawLength) {
      // a frame cut short leaves the context mid-frame: it must not decode the next one
      ctx.z.destroy();
      throw new Error(`the frame decompressed to ${out.length} bytes, not ${rawLength}`);
    }
    this.put(this.idleD, ctx);
    return out;
  }

  /** Frees every kept context. */
  close(): void {
    for (const c of [...this.idleC, ...this.idleD]) c.z.destroy();
    this.idleC.length = 0;
    this.idleD.length = 0;
  }
}
