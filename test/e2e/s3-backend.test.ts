/**
 * The S3 backend against a real MinIO (the lab's test environment, started once for this file):
 * the Backend conformance suite on the backend alone and inside the storage stack (each fixture a
 * fresh prefix in the bucket), stored sizes checked with HeadObject, listing pages over more than
 * 1,000 objects, the 412 of a conditional PUT, the error mapping (missing bucket, wrong
 * credentials, a server that is not there), and the fault proxy (lab/faults/http-proxy.ts) cutting bodies short and answering 503 SlowDown.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { startS3, type S3Env } from '../../lab/testenv/index.ts';
import { startFaultProxy } from '../../lab/faults/http-proxy.ts';
import { backendConformance, hexName, names } from '../../src/storage/conformance.ts';
import { S3Backend, s3TimeoutMs } from '../../src/storage/s3.ts';
import { stack } from '../../src/storage/stack.ts';
import { openBackend } from '../../src/storage/registry.ts';
import { BackendError, NotFoundError, UsageError, isRetryable } from '../../src/errors/index.ts';
import type { Handle } from '../../src/storage/backend.ts';
import type { RetryReport } from '../../src/storage/retry.ts';

let s3: S3Env;
let c: S3Client;
const saved: Record<string, string | undefined> = {};

before(async () => {
  s3 = await startS3();
  c = s3.client();
  // the backend takes its credentials from the SDK's default chain, as the CLI does
  for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION', 'AWS_PROFILE', 'AWS_SESSION_TOKEN']) saved[k] = process.env[k];
  delete process.env['AWS_PROFILE'];
  delete process.env['AWS_SESSION_TOKEN'];
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region });
});
after(async () => {
  c?.destroy();
  await s3?.stop();
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

let n = 0;
function fresh(opts: { bucket?: string; overwriteCheck?: 'head' } = {}): S3Backend {
  return new S3Backend({ endpoint: s3.endpoint, bucket: opts.bucket ?? s3.bucket, prefix: `conformance/${process.pid}-${n++}-${randomBytes(3).toString('hex')}`, ...(opts.overwriteCheck !== undefined ? { overwriteCheck: opts.overwriteCheck } : {}) });
}

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');

/** The object's stored size and ETag, asked of the server directly. */
async function head(b: S3Backend, key: string): Promise<{ size: number; etag: string }> {
  const r = await c.send(new HeadObjectCommand({ Bucket: b.bucket, Key: `${b.prefix}/${key}` }));
  return { size: r.ContentLength ?? -1, etag: r.ETag ?? '' };
}

backendConformance('s3 (MinIO)', async () => {
  const backend = fresh();
  return { backend, cleanup: () => backend.close() };
});

// the bucket with Object Lock is versioned: conditional PUTs, listing and deletes must hold there too
backendConformance('s3 (MinIO, versioned bucket with Object Lock)', async () => {
  const backend = fresh({ bucket: s3.lockedBucket });
  return { backend, cleanup: () => backend.close() };
});

// the alternative for servers that ignore If-None-Match: a HEAD before each PUT
backendConformance('s3 (MinIO, overwrite-check=head)', async () => {
  const backend = fresh({ overwriteCheck: 'head' });
  return { backend, cleanup: () => backend.close() };
});

backendConformance('stack(s3 (MinIO))', async () => {
  const inner = fresh();
  return { backend: stack(inner, { retry: { sleep: async () => undefined } }), cleanup: () => inner.close() };
});

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('s3 backend on MinIO', () => {
  test('credentials given with the location (a Kubernetes Secret\'s) replace the environment\'s, for that backend only', async () => {
    const loc = `s3:${s3.endpoint}/${s3.bucket}/creds-${randomBytes(4).toString('hex')}`;
    const saved = { id: process.env['AWS_ACCESS_KEY_ID'], key: process.env['AWS_SECRET_ACCESS_KEY'] };
    // the environment's credentials are wrong: only the given ones can work
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'wrong-id', AWS_SECRET_ACCESS_KEY: 'wrong-secret-key' });
    try {
      const good = openBackend(loc, { stack: false, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
      await good.put({ type: 'key', name: 'k1' }, Buffer.from('x'));
      assert.deepEqual((await collect(good.list('key'))).map((f) => f.name), ['k1']);
      const envOnly = openBackend(loc, { stack: false });
      await assert.rejects(collect(envOnly.list('key')), (e: unknown) => e instanceof BackendError && /refused access/.test(e.message));
      const wrong = openBackend(loc, { stack: false, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: 'not-the-key' } });
      await assert.rejects(collect(wrong.list('key')), (e: unknown) => e instanceof BackendError && /refused access/.test(e.message));
      assert.ok(!good.location.includes(s3.secretAccessKey) && !good.location.includes(s3.accessKeyId), 'the location shows no credential');
    } finally {
      Object.assign(process.env, { AWS_ACCESS_KEY_ID: saved.id, AWS_SECRET_ACCESS_KEY: saved.key });
    }
  });

  test('the layout mirrors the local backend, and every stored object has exactly the bytes put', async () => {
    const b = fresh();
    try {
      await b.create();
      const files: [Handle, string, Buffer][] = [
        [{ type: 'config', name: 'config' }, 'config', randomBytes(300)],
        [{ type: 'key', name: hexName('k') }, `keys/${hexName('k')}`, randomBytes(500)],
        [{ type: 'pack', name: hexName('p') }, `data/${hexName('p').slice(0, 2)}/${hexName('p')}`, randomBytes(1_000_000)],
        [{ type: 'parity', name: hexName('p') }, `parity/${hexName('p').slice(0, 2)}/${hexName('p')}`, randomBytes(70_000)],
        [{ type: 'index', name: hexName('i') }, `index/${hexName('i')}`, randomBytes(4096)],
        [{ type: 'snapshot', name: hexName('s') }, `snapshots/${hexName('s')}`, randomBytes(777)],
        [{ type: 'lock', name: hexName('l') }, `locks/${hexName('l')}`, randomBytes(100)],
      ];
      for (const [h, key, data] of files) {
        await b.put(h, [data.subarray(0, 7), data.subarray(7)]);
        const st = await head(b, key);
        assert.equal(st.size, data.length, `${key}: stored size`);
        assert.equal(st.etag, `"${md5(data)}"`, `${key}: stored MD5`);
        assert.equal(md5(await b.get(h)), md5(data), `${key}: read back`);
      }
      // a replaced pack (repairs) also stores exactly its bytes
      const repaired = randomBytes(12_345);
      await b.replace(files[2]![0], repaired);
      assert.deepEqual(await head(b, files[2]![1]), { size: repaired.length, etag: `"${md5(repaired)}"` });
    } finally {
      await b.close();
    }
  });

  test('listing pages over more than 1,000 objects yields each exactly once, never a stray key', { timeout: 5 * 60_000 }, async () => {
    const b = fresh();
    try {
      await b.create();
      const want = new Set<string>();
      const hs: Handle[] = Array.from({ length: 2100 }, (_, i) => ({ type: 'pack', name: hexName(`many-${i}`) }));
      for (let i = 0; i < hs.length; i += 64) {
        await Promise.all(hs.slice(i, i + 64).map((h) => b.put(h, Buffer.from(h.name.slice(0, 8)))));
      }
      for (const h of hs) want.add(h.name);
      // a temporary-looking key and a key deeper than the layout are not files of the repository
      for (const k of ['data/ab/.tmp-0123', 'data/stray', 'data/ab/cd/deeper']) await c.send(new PutObjectCommand({ Bucket: b.bucket, Key: `${b.prefix}/${k}`, Body: 'x' }));
      const raw = await c.send(new ListObjectsV2Command({ Bucket: b.bucket, Prefix: `${b.prefix}/data/` }));
      assert.equal(raw.IsTruncated, true, 'more than one page');
      const got: string[] = [];
      for await (const f of b.list('pack')) {
        got.push(f.name);
        assert.equal(f.size, 8);
      }
      assert.equal(got.length, want.size);
      assert.equal(new Set(got).size, got.length, 'no name twice');
      for (const g of got) assert.ok(want.has(g), g);
      assert.deepEqual(await names(b, 'index'), []);
    } finally {
      await b.close();
    }
  });

  test('a put of existing identical bytes after a lost reply is a no-op; other bytes are refused and the original stays', async () => {
    const b = fresh();
    try {
      const h: Handle = { type: 'snapshot', name: hexName('lost-reply') };
      const data = Buffer.from('snapshot bytes');
      // the first PUT reached the store but its reply was lost: the object is there already
      await c.send(new PutObjectCommand({ Bucket: b.bucket, Key: `${b.prefix}/snapshots/${h.name}`, Body: data }));
      await b.put(h, data);
      await assert.rejects(b.put(h, Buffer.from('snapshot BYTES')), (e: unknown) => e instanceof BackendError && !e.retryable && /refusing to overwrite snapshot\//.test(e.message));
      assert.deepEqual(await b.get(h), data);
    } finally {
      await b.close();
    }
  });

  test('create() moves key files without a config aside, never deleting them', async () => {
    const b = fresh();
    try {
      const k: Handle = { type: 'key', name: hexName('orphan') };
      await b.put(k, Buffer.from('an old master key'));
      await b.create();
      assert.deepEqual(await names(b, 'key'), []);
      const l = await c.send(new ListObjectsV2Command({ Bucket: b.bucket, Prefix: `${b.prefix}/keys-orphaned-` }));
      assert.deepEqual(
        (l.Contents ?? []).map((o) => o.Key!.replace(/keys-orphaned-[^/]+/, 'keys-orphaned-T')),
        [`${b.prefix}/keys-orphaned-T/${k.name}`],
      );
    } finally {
      await b.close();
    }
  });

  test('a missing bucket is a NotFoundError naming it; exists() and create() say so', async () => {
    const b = new S3Backend({ endpoint: s3.endpoint, bucket: 'no-such-bucket', prefix: 'x' });
    try {
      const missing = (e: unknown): boolean => e instanceof NotFoundError && /^the bucket no-such-bucket does not exist at http:\/\/127\.0\.0\.1:\d+: create it first/.test(e.message) && !e.message.includes('\n');
      await assert.rejects(b.exists(), missing);
      await assert.rejects(b.create(), missing);
      await assert.rejects(b.get({ type: 'index', name: hexName('x') }), missing);
    } finally {
      await b.close();
    }
  });

  test('wrong credentials are a BackendError that is not retried, naming AWS_ACCESS_KEY_ID', async () => {
    const key = process.env['AWS_SECRET_ACCESS_KEY'];
    process.env['AWS_SECRET_ACCESS_KEY'] = 'wrong-secret-key';
    const b = new S3Backend({ endpoint: s3.endpoint, bucket: s3.bucket, prefix: 'x' });
    try {
      const denied = (e: unknown): boolean => e instanceof BackendError && !isRetryable(e) && /the server refused access \((SignatureDoesNotMatch|HTTP 403|InvalidAccessKeyId|AccessDenied)\): check AWS_ACCESS_KEY_ID/.test(e.message) && !e.message.includes('\n');
      await assert.rejects(b.exists(), denied);
      await assert.rejects(b.put({ type: 'index', name: hexName('y') }, Buffer.from('y')), denied);
    } finally {
      process.env['AWS_SECRET_ACCESS_KEY'] = key;
      await b.close();
    }
  });

  test('a server that does not answer is a retryable BackendError', async () => {
    const b = new S3Backend({ endpoint: 'http://127.0.0.1:9', bucket: s3.bucket, prefix: 'x' });
    try {
      await assert.rejects(b.stat({ type: 'config', name: 'config' }), (e: unknown) => e instanceof BackendError && isRetryable(e) && !e.message.includes('\n'));
    } finally {
      await b.close();
    }
  });

  test('a reply that never comes is a retryable timeout after MESHBACK_S3_TIMEOUT_MS, not a hang; a bad value is refused', async () => {
    const proxy = await startFaultProxy(s3.endpoint);
    const before = process.env['MESHBACK_S3_TIMEOUT_MS'];
    process.env['MESHBACK_S3_TIMEOUT_MS'] = '1000';
    // read when the client is made, on the first request
    const b = new S3Backend({ endpoint: proxy.endpoint, bucket: s3.bucket, prefix: `timeout/${randomBytes(4).toString('hex')}` });
    try {
      proxy.inject({ fault: 'slow-first-byte', delayMs: 60_000 });
      const t0 = performance.now();
      await assert.rejects(b.stat({ type: 'config', name: 'config' }), (e: unknown) => e instanceof BackendError && isRetryable(e) && /timed out after 1000 ms/.test(e.message) && !e.message.includes('\n'));
      const ms = performance.now() - t0;
      assert.ok(ms >= 900 && ms < 10_000, `gave up after ${ms.toFixed(0)} ms`);
      process.env['MESHBACK_S3_TIMEOUT_MS'] = '2s';
      assert.throws(() => s3TimeoutMs(), (e: unknown) => e instanceof UsageError && /MESHBACK_S3_TIMEOUT_MS=2s is not a positive whole number of milliseconds/.test(e.message));
      assert.equal(s3TimeoutMs({}), 120_000);
    } finally {
      if (before === undefined) delete process.env['MESHBACK_S3_TIMEOUT_MS'];
      else process.env['MESHBACK_S3_TIMEOUT_MS'] = before;
      await b.close();
      await proxy.stop();
    }
  });

  test('behind a faulty proxy: a body cut short is a retryable truncated read, 503 SlowDown is retryable, and the stack recovers from both', async () => {
    const proxy = await startFaultProxy(s3.endpoint);
    const prefix = `proxy/${randomBytes(4).toString('hex')}`;
    const direct = new S3Backend({ endpoint: s3.endpoint, bucket: s3.bucket, prefix });
    const viaProxy = new S3Backend({ endpoint: proxy.endpoint, bucket: s3.bucket, prefix });
    const retries: RetryReport[] = [];
    const stacked = stack(viaProxy, { retry: { sleep: async () => undefined, onRetry: (r) => retries.push(r) } });
    try {
      const h: Handle = { type: 'pack', name: hexName('proxied') };
      const data = randomBytes(300_000);
      await direct.put(h, data);
      assert.ok((await viaProxy.get(h)).equals(data), 'the proxy passes requests through');
      proxy.inject({ fault: 'truncate', on: ['get'], times: 1 });
      await assert.rejects(viaProxy.get(h), (e: unknown) => e instanceof BackendError && isRetryable(e) && !e.message.includes('\n'));
      proxy.inject({ fault: 'truncate', on: ['get'], times: 1 });
      await assert.rejects(viaProxy.get(h, { offset: 1000, length: 200_000 }), (e: unknown) => e instanceof BackendError && isRetryable(e));
      proxy.inject({ fault: 'slowdown', on: ['get'], times: 1 });
      await assert.rejects(viaProxy.get(h), (e: unknown) => e instanceof BackendError && isRetryable(e) && /SlowDown/.test(e.message) && /HTTP 503/.test(e.message));
      proxy.clear();
      proxy.inject({ fault: 'slowdown', on: ['get'], times: 2 });
      proxy.inject({ fault: 'truncate', on: ['get'], times: 2 });
      assert.ok((await stacked.get(h)).equals(data), 'the retry wrapper gets the whole file in the end');
      assert.equal(retries.length, 4, retries.map((r) => String(r.error)).join('; '));
      assert.ok((await stacked.get(h, { offset: 5, length: 10 })).equals(data.subarray(5, 15)));
    } finally {
      await direct.close();
      await viaProxy.close();
      await proxy.stop();
    }
  });
});
