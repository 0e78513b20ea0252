/**
 * The test environment's S3 server: MinIO built from its Go module (lab/testenv), started once
 * for this file on 127.0.0.1, exercised through @aws-sdk/client-s3 the way the S3 backend will
 * use it: put and get (stored size and MD5 checked after every write), ranged and suffix-ranged
 * gets, ListObjectsV2 paging over 2,500 keys, a conditional put (`If-None-Match: *`) refusing
 * an overwrite with 412, and Object Lock refusing to delete a version inside its retention.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  DeleteObjectCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3ServiceException,
  type S3Client,
} from '@aws-sdk/client-s3';
import { startS3, type S3Env } from '../../lab/testenv/index.ts';

let s3: S3Env;
let c: S3Client;

before(async () => {
  s3 = await startS3();
  c = s3.client();
});
after(async () => {
  c?.destroy();
  await s3?.stop();
});

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');

/** puts an object and checks what the server stored: its ETag (MD5) in the answer and its size and ETag on HEAD */
async function put(bucket: string, key: string, body: Buffer, extra: Record<string, unknown> = {}): Promise<string | undefined> {
  const r = await c.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length, ContentMD5: createHash('md5').update(body).digest('base64'), ...extra }));
  assert.equal(r.ETag, `"${md5(body)}"`, `${key}: ETag of the PUT answer`);
  const h = await c.send(new HeadObjectCommand({ Bucket: bucket, Key: key, ...(r.VersionId !== undefined ? { VersionId: r.VersionId } : {}) }));
  assert.equal(h.ContentLength, body.length, `${key}: stored size`);
  assert.equal(h.ETag, `"${md5(body)}"`, `${key}: stored ETag`);
  return r.VersionId;
}

async function get(bucket: string, key: string, range?: string): Promise<Buffer> {
  const r = await c.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...(range !== undefined ? { Range: range } : {}) }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

async function failure(p: Promise<unknown>): Promise<S3ServiceException> {
  try {
    await p;
  } catch (e) {
    if (e instanceof S3ServiceException) return e;
    throw e;
  }
  assert.fail('the request succeeded');
}

test('testenv s3: MinIO listens on 127.0.0.1 and exports the documented variables', () => {
  assert.match(s3.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.deepEqual(Object.keys(s3.env).sort(), ['AWS_ACCESS_KEY_ID', 'AWS_REGION', 'AWS_SECRET_ACCESS_KEY', 'MESHBACK_TEST_S3_BUCKET', 'MESHBACK_TEST_S3_ENDPOINT', 'MESHBACK_TEST_S3_LOCKED_BUCKET']);
  assert.equal(s3.env['MESHBACK_TEST_S3_ENDPOINT'], s3.endpoint);
});

test('testenv s3: put, get, ranged and suffix-ranged get return the stored bytes', async () => {
  const body = randomBytes(5 * 1024 * 1024 + 123);
  await put(s3.bucket, 'data/pack-1', body);
  assert.ok((await get(s3.bucket, 'data/pack-1')).equals(body));
  assert.ok((await get(s3.bucket, 'data/pack-1', 'bytes=100-199')).equals(body.subarray(100, 200)));
  assert.ok((await get(s3.bucket, 'data/pack-1', `bytes=${body.length - 10}-`)).equals(body.subarray(body.length - 10)));
  assert.ok((await get(s3.bucket, 'data/pack-1', 'bytes=-500')).equals(body.subarray(body.length - 500)), 'suffix range');
  const empty = Buffer.alloc(0);
  await put(s3.bucket, 'empty', empty);
  assert.equal((await get(s3.bucket, 'empty')).length, 0);
  const missing = await failure(c.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'no-such-key' })));
  assert.equal(missing.$metadata.httpStatusCode, 404);
});

test('testenv s3: ListObjectsV2 pages over 2,500 keys in order, each key once', { timeout: 5 * 60_000 }, async () => {
  const keys = Array.from({ length: 2500 }, (_, i) => `list/${String(i).padStart(5, '0')}-${randomBytes(3).toString('hex')}`);
  for (let i = 0; i < keys.length; i += 50) {
    await Promise.all(
      keys.slice(i, i + 50).map(async (k) => {
        const body = Buffer.from(`object ${k}\n`);
        const r = await c.send(new PutObjectCommand({ Bucket: s3.bucket, Key: k, Body: body, ContentLength: body.length }));
        assert.equal(r.ETag, `"${md5(body)}"`, `${k}: ETag`);
      }),
    );
  }
  const seen: string[] = [];
  let token: string | undefined;
  let pages = 0;
  for (;;) {
    const r = await c.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'list/', MaxKeys: 1000, ...(token !== undefined ? { ContinuationToken: token } : {}) }));
    pages++;
    for (const o of r.Contents ?? []) {
      seen.push(o.Key!);
      assert.equal(o.Size, Buffer.byteLength(`object ${o.Key}\n`));
    }
    if (r.IsTruncated !== true) break;
    assert.ok(r.NextContinuationToken, 'a truncated page has a continuation token');
    token = r.NextContinuationToken;
    assert.ok(pages < 10, 'paging does not end');
  }
  assert.equal(pages, 3);
  assert.deepEqual(seen, [...keys].sort());
});

test('testenv s3: a PUT with If-None-Match: * creates a new key and refuses an overwrite with 412', async () => {
  const first = Buffer.from('the first and only version');
  await put(s3.bucket, 'snapshots/abc', first, { IfNoneMatch: '*' });
  const e = await failure(c.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'snapshots/abc', Body: Buffer.from('an overwrite'), IfNoneMatch: '*' })));
  assert.equal(e.$metadata.httpStatusCode, 412, `${e.name}: ${e.message}`);
  assert.ok((await get(s3.bucket, 'snapshots/abc')).equals(first), 'the object was overwritten');
});

test('testenv s3: the locked bucket has Object Lock and refuses to delete a version inside its retention', async () => {
  const lock = await c.send(new GetObjectLockConfigurationCommand({ Bucket: s3.lockedBucket }));
  assert.equal(lock.ObjectLockConfiguration?.ObjectLockEnabled, 'Enabled');
  assert.equal((await c.send(new GetBucketVersioningCommand({ Bucket: s3.lockedBucket }))).Status, 'Enabled');
  const body = randomBytes(4096);
  const version = await put(s3.lockedBucket, 'data/locked-pack', body, { ObjectLockMode: 'COMPLIANCE', ObjectLockRetainUntilDate: new Date(Date.now() + 24 * 3600_000) });
  assert.ok(version, 'a version id');
  const e = await failure(c.send(new DeleteObjectCommand({ Bucket: s3.lockedBucket, Key: 'data/locked-pack', VersionId: version })));
  // AWS answers 403 AccessDenied; MinIO answers 400 InvalidRequest "Object is WORM protected and cannot be overwritten"
  assert.ok([400, 403].includes(e.$metadata.httpStatusCode ?? 0), `${e.$metadata.httpStatusCode} ${e.name}: ${e.message}`);
  assert.match(`${e.name} ${e.message}`, /WORM|AccessDenied|retention/i);
  const h = await c.send(new HeadObjectCommand({ Bucket: s3.lockedBucket, Key: 'data/locked-pack', VersionId: version }));
  assert.equal(h.ContentLength, body.length);
  assert.equal(h.ObjectLockMode, 'COMPLIANCE');
  // an unlocked object in the same bucket can be deleted
  const free = await put(s3.lockedBucket, 'scratch', Buffer.from('x'));
  await c.send(new DeleteObjectCommand({ Bucket: s3.lockedBucket, Key: 'scratch', VersionId: free }));
});
