/**
 * One stored blob, sealed to plain, and the checks that prove it (docs/design.md, "Pack Format"):
 * it must decrypt (AES-256-GCM), carry a known encoding (raw or zstd), decompress to its raw
 * length, and re-hash to its id. The store's decodeBlob runs large blobs' steps on libuv's pool;
 * verifyBlobSync runs them all on the calling thread, for a worker thread that has a core of its
 * own (the check's pack verifier, verify-worker.ts). Both throw the same IntegrityErrors, built here.
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
 * Decrypts, decodes and verifies a sealed blob on the calling thread, for a check: nothing is
 * returned, and the decrypted and decompressed bytes are freed as soon as they are proven
 * (free()) rather than left to the collector, which lets tens of MiB of them pile up per thread.
 */
export function verifyBlobSync(encKey: Buffer, idKey: Buffer, sealed: Uint8Array, rawLength: number, ref: BlobRef): void {
  let framed: Buffer;
  try {
    framed = open(encKey, sealed, () => ref.label());
  } catch (err) {
    throw ref.rename(err);
  }
  try {
    if (blobKind(framed, ref) === KIND_RAW) {
      checkPlain(idKey, framed.subarray(1), rawLength, ref);
      return;
    }
    let plain: Buffer;
    try {
      plain = zlib.zstdDecompressSync(framed.subarray(1), { maxOutputLength: Math.max(rawLength, 1), chunkSize: Math.max(rawLength, 64) });
    } catch {
      throw ref.error(NOT_DECOMPRESSING);
    }
    try {
      checkPlain(idKey, plain, rawLength, ref);
    } finally {
      free(plain);
    }
  } finally {
    free(framed);
  }
}

/** Frees a Buffer's memory now if it is the whole of its own ArrayBuffer (never a view into a pool or another's memory): it must not be used again. */
function free(b: Buffer): void {
  const ab = b.buffer;
  if (b.byteOffset !== 0 || ab.byteLength !== b.byteLength || b.byteLength < FREE_MIN || !(ab instanceof ArrayBuffer)) return;
  ab.transfer(0);
}
