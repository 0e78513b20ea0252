/**
 * crypto/async: the same primitives as crypto/index.ts (AES-256-GCM seal/open, HMAC-SHA256
 * ids), run on libuv's thread pool through WebCrypto so that the main thread stays free for
 * chunking and bookkeeping. Byte formats are identical to the synchronous functions: a blob
 * sealed here opens with open(), and the other way round.
 *
 * WebCrypto calls cost a few microseconds of fixed overhead, so callers use the synchronous
 * functions for small inputs (ASYNC_MIN bytes and below) and these for large ones.
 */
import { webcrypto } from 'node:crypto';
import { IntegrityError } from '../errors/index.ts';
import { NONCE_LEN, SEAL_OVERHEAD, TAG_LEN, contentId, labelText, newNonce, open, seal } from './index.ts';
import type { Label } from './index.ts';

const { subtle } = webcrypto;

/** WebCrypto's types want ArrayBuffer-backed views; meshback never uses shared memory here. */
function bs(b: Uint8Array): Uint8Array<ArrayBuffer> {
  return b as Uint8Array<ArrayBuffer>;
}

/** Inputs up to this size are cheaper on the calling thread than on the pool. */
export const ASYNC_MIN = 64 * 1024;

/** A master key's two parts, imported once for WebCrypto. */
export class AsyncKeys {
  private readonly encRaw: Buffer;
  private readonly idRaw: Buffer;
  private aes: Promise<webcrypto.CryptoKey> | undefined;
  private hmac: Promise<webcrypto.CryptoKey> | undefined;

  constructor(encKey: Buffer, idKey: Buffer) {
    this.encRaw = encKey;
    this.idRaw = idKey;
  }

  private aesKey(): Promise<webcrypto.CryptoKey> {
    this.aes ??= subtle.importKey('raw', bs(this.encRaw), 'AES-GCM', false, ['encrypt', 'decrypt']);
    return this.aes;
  }

  private hmacKey(): Promise<webcrypto.CryptoKey> {
    this.hmac ??= subtle.importKey('raw', bs(this.idRaw), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    return this.hmac;
  }

  /** The keyed content id (HMAC-SHA256) of `data`. */
  async id(data: Uint8Array): Promise<Buffer> {
    if (data.byteLength <= ASYNC_MIN) return contentId(this.idRaw, data);
    return Buffer.from(await subtle.sign('HMAC', await this.hmacKey(), bs(data)));
  }

  /**
   * Seals `plain` prefixed with one framing byte, without copying `plain` first. Returns the
   * sealed bytes as parts (NONCE, CT || TAG) that concatenate to the format of seal().
   */
  async sealFramed(frame: number, plain: Uint8Array): Promise<Uint8Array[]> {
    const input = Buffer.allocUnsafeSlow(plain.byteLength + 1);
    input[0] = frame;
    input.set(plain, 1);
    if (input.byteLength <= ASYNC_MIN) return [seal(this.encRaw, input)];
    const nonce = Buffer.from(newNonce());
    const ct = await subtle.encrypt({ name: 'AES-GCM', iv: bs(nonce), tagLength: TAG_LEN * 8 }, await this.aesKey(), bs(input));
    return [nonce, new Uint8Array(ct)];
  }

  /** Opens a sealed buffer; throws IntegrityError when authentication fails. */
  async open(sealed: Uint8Array, what: Label = 'data'): Promise<Buffer> {
    if (sealed.byteLength <= ASYNC_MIN) return open(this.encRaw, sealed, what);
    if (sealed.byteLength < SEAL_OVERHEAD) throw new IntegrityError(`${labelText(what)} is too short to be encrypted data (${sealed.byteLength} bytes): it is damaged`);
    const iv = sealed.subarray(0, NONCE_LEN);
    const body = sealed.subarray(NONCE_LEN);
    try {
      return Buffer.from(await subtle.decrypt({ name: 'AES-GCM', iv: bs(iv), tagLength: TAG_LEN * 8 }, await this.aesKey(), bs(body)));
    } catch {
      throw new IntegrityError(`${labelText(what)} failed authentication: it is damaged or was written with another key`);
    }
  }
}
