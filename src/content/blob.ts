/**
 * One stored blob, sealed to plain, and the checks that prove it (docs/design.md, "Pack Format"):
 * it must decrypt (AES-256-GCM), carry a known encoding (raw or zstd), decompress to its raw
 * length, and re-hash to its id. The store's decodeBlob runs large blobs' steps on libuv's pool;
 * verifyBlobSync runs them all on the calling thread, for a worker thread that has a core of its
 * own (the blob threads of check and restore, blob-worker.ts). Both throw the same IntegrityErrors, built here.
 */
import * as zlib from 'node:zlib';
import { contentId, idEquals, open } from '../crypto/index.ts';
import { IntegrityError } from '../errors/index.ts';
import { KIND_RAW, KIND_ZSTD } from './pack.ts';

/** Buffers smaller than this are left to the collector (Node's pool serves the smallest from shared slabs). */
const FREE_MIN = 64 * 1024;

/** How a blob is named in its errors; the id in hex and the label are made only for an error (a check decodes millions of blobs). */
export class BlobRef {
  readonly id: Uint8Array;
  readonly pack: string;
  readonly what: string;
  constructor(id: Uint8Array, pack: string, what = 'blob') {
    this.id = id;
    this.pack = pack;
    this.what = what;
  }

  hex(): string {
    return Buffer.from(this.id).toString('hex');
  }

  label(): string {
    return `${this.what} ${this.hex().slice(0, 16)} in pack ${this.pack}`;
  }

  error(problem: string): IntegrityError {
    return new IntegrityError(`${this.label()} ${problem}`, { pack: this.pack, blob: this.hex() });
  }

  /** An authentication failure of open(), named with the pack and blob. */
  rename(err: unknown): unknown {
    return err instanceof IntegrityError ? new IntegrityError(err.message, { pack: this.pack, blob: this.hex() }) : err;
  }
}

/** The encoding byte of a decrypted blob: KIND_RAW or KIND_ZSTD; throws for any other. */
export function blobKind(framed: Uint8Array, ref: BlobRef): typeof KIND_RAW | typeof KIND_ZSTD {
  const k = framed[0];
  if (k === KIND_ZSTD || k === KIND_RAW) return k;
  throw ref.error(`has an unknown encoding ${k}`);
}

export const NOT_DECOMPRESSING = 'does not decompress: it is damaged';

/** Throws unless `plain` has the raw length and the id the index records. */
export function checkPlain(idKey: Buffer, plain: Uint8Array, rawLength: number, ref: BlobRef): void {
  if (plain.length !== rawLength || !idEquals(contentId(idKey, plain), ref.id)) throw ref.error('does not match its id: it is damaged');
}

/**
 * Decrypts, decodes and verifies a sealed blob on the calling thread; returns its plain bytes, in
 * memory of their own (freeable with free()). The decrypted frame of a zstd blob is freed at once.
 */
export function decodeBlobSync(encKey: Buffer, idKey: Buffer, sealed: Uint8Array, rawLength: number, ref: BlobRef): Buffer {
  let framed: Buffer;
  try {
    framed = open(encKey, sealed, () => ref.label());
  } catch (err) {
    throw ref.rename(err);
  }
  let plain: Buffer;
  try {
    if (blobKind(framed, ref) === KIND_RAW) {
      plain = framed.subarray(1);
    } else {
      try {
        // one output buffer, one byte over the raw length: no pieces joined, and none made for
        // nothing (node:zlib makes a fresh output buffer whenever one is filled to its end)
        plain = zlib.zstdDecompressSync(framed.subarray(1), { maxOutputLength: Math.max(rawLength, 1), chunkSize: Math.max(rawLength + 1, 64) });
      } catch {
        throw ref.error(NOT_DECOMPRESSING);
      } finally {
        free(framed);
      }
    }
    checkPlain(idKey, plain, rawLength, ref);
  } catch (err) {
    free(framed);
    throw err;
  }
  return plain;
}

/**
 * Decodes and verifies a sealed blob on the calling thread, for a check: nothing is returned, and
 * the decrypted and decompressed bytes are freed as soon as they are proven rather than left to
 * the collector, which let tens of MiB of them pile up per thread.
 */
export function verifyBlobSync(encKey: Buffer, idKey: Buffer, sealed: Uint8Array, rawLength: number, ref: BlobRef): void {
  free(decodeBlobSync(encKey, idKey, sealed, rawLength, ref));
}

/**
 * True when `b` is (all but at most one byte of) an ArrayBuffer of its own of FREE_MIN bytes or
 * more: never a view into Node's pool of small Buffers (its slabs serve only smaller ones) nor
 * into a buffer shared with others. Such a Buffer can be freed, or moved to another thread.
 */
export function ownsMemory(b: Uint8Array): boolean {
  const ab = b.buffer;
  return ab instanceof ArrayBuffer && b.byteLength >= FREE_MIN && ab.byteLength - b.byteLength <= 1;
}

/** Frees a decoded blob's memory now (see ownsMemory) instead of leaving it to the collector; it must not be used again. */
export function free(b: Uint8Array): void {
  const ab = b.buffer;
  if (ownsMemory(b) && ab instanceof ArrayBuffer && !ab.detached) ab.transfer(0);
}
