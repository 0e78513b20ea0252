/**
 * crypto: keys, key derivation, authenticated encryption and keyed content ids. Pure, no I/O.
 *
 * - KDF: scrypt, parameters stored in each key file.
 * - Master key: 32 bytes for AES-256-GCM plus 32 bytes for the keyed hash of chunk ids.
 * - Sealed format: nonce (12 random bytes) || ciphertext || GCM tag (16 bytes).
 * - Content ids: HMAC-SHA256 under the id key, so an id does not reveal which known
 *   plaintext a repository holds.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { IntegrityError } from '../errors/index.ts';

export const NONCE_LEN = 12;
export const TAG_LEN = 16;
export const SEAL_OVERHEAD = NONCE_LEN + TAG_LEN;
export const ID_LEN = 32;

export interface MasterKey {
  readonly encKey: Buffer;
  readonly idKey: Buffer;
}

export interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
  readonly salt: string; // base64
}

export function newMasterKey(): MasterKey {
  return { encKey: randomBytes(32), idKey: randomBytes(32) };
}

/** Default scrypt cost: 2^15 x 8 = 32 MiB of memory and ~100 ms per derivation. */
export function defaultScryptParams(): ScryptParams {
  const N = Number(process.env['MESHBACK_TEST_SCRYPT_N'] ?? 32768);
  return { N, r: 8, p: 1, salt: randomBytes(32).toString('base64') };
}

export function deriveKey(password: string, params: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCb(
      Buffer.from(password, 'utf8'),
      Buffer.from(params.salt, 'base64'),
      32,
      { N: params.N, r: params.r, p: params.p, maxmem: 256 * params.N * params.r + 16 * 1024 * 1024 },
      (err, key) => (err ? reject(err) : resolve(key)),
    );
  });
}

// Nonces are random (96 bits from the CSPRNG), drawn from a pool refilled 1024 at a time: one
// CSPRNG call per nonce cost more than the encryption of a small blob.
let noncePool = Buffer.alloc(0);
let noncePos = 0;

/** A fresh random nonce (never reused: each pool byte is handed out once). */
export function newNonce(): Buffer {
  if (noncePos + NONCE_LEN > noncePool.length) {
    noncePool = randomBytes(NONCE_LEN * 1024);
    noncePos = 0;
  }
  const n = noncePool.subarray(noncePos, noncePos + NONCE_LEN);
  noncePos += NONCE_LEN;
  return n;
}

/** Encrypts and authenticates `plain`; the result is NONCE || CT || TAG. */
export function seal(key: Buffer, plain: Uint8Array): Buffer {
  const nonce = newNonce();
  const c = createCipheriv('aes-256-gcm', key, nonce);
  const out = Buffer.allocUnsafe(plain.byteLength + SEAL_OVERHEAD);
  nonce.copy(out, 0);
  let n = NONCE_LEN;
  n += c.update(plain).copy(out, n);
  n += c.final().copy(out, n);
  c.getAuthTag().copy(out, n);
  return out;
}

/** What a sealed buffer is, for messages: a string, or a function that makes it only on an error (no string per blob). */
export type Label = string | (() => string);
export const labelText = (what: Label): string => (typeof what === 'string' ? what : what());

/** Decrypts a sealed buffer; throws IntegrityError when authentication fails. */
export function open(key: Buffer, sealed: Uint8Array, what: Label = 'data'): Buffer {
  if (sealed.byteLength < SEAL_OVERHEAD) throw new IntegrityError(`${labelText(what)} is too short to be encrypted data (${sealed.byteLength} bytes): it is damaged`);
  const buf = Buffer.isBuffer(sealed) ? sealed : Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  const d = createDecipheriv('aes-256-gcm', key, buf.subarray(0, NONCE_LEN));
  d.setAuthTag(buf.subarray(buf.length - TAG_LEN));
  const body = buf.subarray(NONCE_LEN, buf.length - TAG_LEN);
  try {
    const a = d.update(body);
    const b = d.final();
    return b.length === 0 ? a : Buffer.concat([a, b]);
  } catch {
    throw new IntegrityError(`${labelText(what)} failed authentication: it is damaged or was written with another key`);
  }
}

export function contentId(idKey: Buffer, data: Uint8Array): Buffer {
  return createHmac('sha256', idKey).update(data).digest();
}

export function idEquals(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}
