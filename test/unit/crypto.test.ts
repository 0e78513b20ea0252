process.env.MESHBACK_TEST_SCRYPT_N = '1024';

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import {
  ID_LEN,
  NONCE_LEN,
  SEAL_OVERHEAD,
  TAG_LEN,
  contentId,
  defaultScryptParams,
  deriveKey,
  idEquals,
  newMasterKey,
  open,
  seal,
} from '../../src/crypto/index.ts';
import type { ScryptParams } from '../../src/crypto/index.ts';
import { IntegrityError } from '../../src/errors/index.ts';
import { flipped, prngBytes } from './helpers.ts';

const isIntegrity = (err: unknown): boolean => err instanceof IntegrityError && err.code === 'INTEGRITY';

describe('seal/open', () => {
  const key = newMasterKey().encKey;

  it('round trips data of many sizes, including empty', () => {
    for (const n of [0, 1, 15, 16, 17, 1000, 65536 + 3]) {
      const plain = prngBytes(`seal-${n}`, n);
      const sealed = seal(key, plain);
      assert.equal(sealed.length, n + SEAL_OVERHEAD);
      assert.deepEqual(open(key, sealed), plain);
    }
  });

  it('accepts a Uint8Array view at a non-zero offset', () => {
    const plain = Buffer.from('hello, view');
    const sealed = seal(key, plain);
    const backing = new Uint8Array(sealed.length + 10);
    backing.set(sealed, 7);
    assert.deepEqual(open(key, backing.subarray(7, 7 + sealed.length)), plain);
  });

  it('uses a fresh nonce each time and does not leak the plaintext', () => {
    const plain = Buffer.alloc(64, 0x61);
    const a = seal(key, plain);
    const b = seal(key, plain);
    assert.notDeepEqual(a.subarray(0, NONCE_LEN), b.subarray(0, NONCE_LEN));
    assert.notDeepEqual(a, b);
    assert.equal(a.includes(Buffer.alloc(16, 0x61)), false);
  });

  it('rejects a flip of any single byte (nonce, body or tag) with IntegrityError', () => {
    const plain = Buffer.from('forty bytes of secret plaintext, exactly');
    const sealed = seal(key, plain);
    for (let i = 0; i < sealed.length; i++) {
      const region = i < NONCE_LEN ? 'nonce' : i >= sealed.length - TAG_LEN ? 'tag' : 'body';
      assert.throws(() => open(key, flipped(sealed, i)), isIntegrity, `byte ${i} (${region})`);
    }
    // and a single bit, not only a whole byte
    const bit = Buffer.from(sealed);
    bit[NONCE_LEN + 3] = bit[NONCE_LEN + 3]! ^ 0x01;
    assert.throws(() => open(key, bit), isIntegrity);
  });

  it('rejects truncated or extended data with IntegrityError', () => {
    const sealed = seal(key, Buffer.from('some plaintext'));
    for (const n of [0, 1, SEAL_OVERHEAD - 1, SEAL_OVERHEAD, sealed.length - 1]) {
      assert.throws(() => open(key, sealed.subarray(0, n)), isIntegrity, `length ${n}`);
    }
    assert.throws(() => open(key, Buffer.concat([sealed, Buffer.from([0])])), isIntegrity);
  });

  it('rejects data sealed with another key', () => {
    const other = newMasterKey().encKey;
    const sealed = seal(key, Buffer.from('mine'));
    assert.throws(() => open(other, sealed), isIntegrity);
  });

  it('names what failed in the error message', () => {
    const sealed = seal(key, Buffer.from('x'));
    assert.throws(() => open(key, flipped(sealed, 0), 'header of pack abc'), (err: unknown) => isIntegrity(err) && (err as Error).message.includes('header of pack abc'));
  });
});

describe('contentId', () => {
  it('is deterministic, 32 bytes, and the HMAC-SHA256 of the data under the id key', () => {
    const k = newMasterKey().idKey;
    const data = prngBytes('cid', 4096);
    const a = contentId(k, data);
    assert.equal(a.length, ID_LEN);
    assert.deepEqual(contentId(k, Buffer.from(data)), a);
    assert.deepEqual(a, createHmac('sha256', k).update(data).digest());
  });

  it('is keyed: another id key gives another id for the same data', () => {
    const data = Buffer.from('well-known plaintext');
    const a = contentId(newMasterKey().idKey, data);
    const b = contentId(newMasterKey().idKey, data);
    assert.notDeepEqual(a, b);
  });

  it('differs for different data', () => {
    const k = newMasterKey().idKey;
    assert.notDeepEqual(contentId(k, Buffer.from('a')), contentId(k, Buffer.from('b')));
    assert.notDeepEqual(contentId(k, Buffer.alloc(0)), contentId(k, Buffer.alloc(1)));
  });

  it('idEquals compares ids by value and length', () => {
    const a = randomBytes(32);
    assert.equal(idEquals(a, Buffer.from(a)), true);
    assert.equal(idEquals(a, flipped(a, 31)), false);
    assert.equal(idEquals(a, a.subarray(0, 31)), false);
  });

  it('newMasterKey makes independent 32-byte keys', () => {
    const m = newMasterKey();
    assert.equal(m.encKey.length, 32);
    assert.equal(m.idKey.length, 32);
    assert.notDeepEqual(m.encKey, m.idKey);
    assert.notDeepEqual(newMasterKey().encKey, m.encKey);
  });
});

describe('deriveKey', () => {
  const params: ScryptParams = { N: 1024, r: 8, p: 1, salt: Buffer.alloc(32, 1).toString('base64') };

  it('is deterministic for the same password and parameters', async () => {
    const a = await deriveKey('correct horse', params);
    const b = await deriveKey('correct horse', { ...params });
    assert.equal(a.length, 32);
    assert.deepEqual(a, b);
  });

  it('differs for a different salt, password or cost', async () => {
    const a = await deriveKey('correct horse', params);
    assert.notDeepEqual(await deriveKey('correct horse', { ...params, salt: Buffer.alloc(32, 2).toString('base64') }), a);
    assert.notDeepEqual(await deriveKey('correct horsf', params), a);
    assert.notDeepEqual(await deriveKey('correct horse', { ...params, N: 2048 }), a);
  });

  it('default parameters use a fresh 32-byte salt and honour MESHBACK_TEST_SCRYPT_N', () => {
    const a = defaultScryptParams();
    const b = defaultScryptParams();
    assert.equal(a.N, 1024);
    assert.equal(Buffer.from(a.salt, 'base64').length, 32);
    assert.notEqual(a.salt, b.salt);
  });

  it('a derived key opens what it sealed and nothing sealed under another password', async () => {
    const p = defaultScryptParams();
    const sealed = seal(await deriveKey('pw-1', p), Buffer.from('master key material'));
    assert.deepEqual(open(await deriveKey('pw-1', p), sealed), Buffer.from('master key material'));
    const wrong = await deriveKey('pw-2', p);
    assert.throws(() => open(wrong, sealed), isIntegrity);
  });
});
