/**
 * The S3 backend's error mapping (s3Error in src/storage/s3.ts), on errors shaped as the AWS SDK
 * and Node's HTTP client throw them: what is NotFound, what the retry wrapper retries, and that
 * every message is one line. (test/e2e/s3-backend.test.ts checks the same against a real MinIO.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isLockRefusal, s3Error } from '../../src/storage/s3.ts';
import { BackendError, NotFoundError, isRetryable } from '../../src/errors/index.ts';

const at = { bucket: 'backups', endpoint: 'http://127.0.0.1:9000', location: 's3:http://127.0.0.1:9000/backups/repo' };

function sdkError(name: string, status: number | undefined, message = `${name} happened`): Error {
  return Object.assign(new Error(message), { name, $fault: status !== undefined && status >= 500 ? 'server' : 'client', $metadata: status !== undefined ? { httpStatusCode: status } : {} });
}

function netError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

test('s3 errors: missing bucket and missing keys are NotFoundError, the bucket named', () => {
  const b = s3Error(sdkError('NoSuchBucket', 404, 'The specified bucket does not exist'), 'config', at);
  assert.ok(b instanceof NotFoundError);
  assert.equal(b.message, 'the bucket backups does not exist at http://127.0.0.1:9000: create it first, or correct the bucket in --repo s3:http://127.0.0.1:9000/backups/repo');
  for (const e of [sdkError('NoSuchKey', 404), sdkError('NotFound', 404), sdkError('Unknown', 404)]) {
    const m = s3Error(e, 'index/ab', at);
    assert.ok(m instanceof NotFoundError, e.name);
    assert.equal(m.message, 'index/ab does not exist in the repository at s3:http://127.0.0.1:9000/backups/repo');
  }
});

test('s3 errors: refused or missing credentials are not retryable and say what to check', () => {
  for (const e of [sdkError('AccessDenied', 403), sdkError('InvalidAccessKeyId', 403), sdkError('SignatureDoesNotMatch', 403), sdkError('Unknown', 403), sdkError('ExpiredToken', 400)]) {
    const m = s3Error(e, 'config', at);
    assert.ok(m instanceof BackendError && !isRetryable(m), e.name);
    assert.match(m.message, /^storage error on config in s3:http:\/\/127\.0\.0\.1:9000\/backups\/repo: the server refused access \((AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|HTTP 403|ExpiredToken)\): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
  }
  const none = s3Error(sdkError('CredentialsProviderError', undefined, 'Could not load credentials from any providers'), 'config', at);
  assert.ok(none instanceof BackendError && !isRetryable(none));
  assert.match(none.message, /no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE$/);
  const region = s3Error(new Error('Region is missing'), 'config', at);
  assert.ok(region instanceof BackendError && !isRetryable(region));
  assert.match(region.message, /set AWS_REGION/);
});

test('s3 errors: 5xx, SlowDown, timeouts and connection failures are retryable', () => {
  const transient = [
    sdkError('SlowDown', 503, 'Please reduce your request rate.'),
    sdkError('InternalError', 500, 'We encountered an internal error.\nPlease try again.'),
    sdkError('ServiceUnavailable', 503),
    sdkError('Unknown', 502),
    sdkError('RequestTimeout', 400, 'Your socket connection to the server was not read from or written to within the timeout period.'),
    sdkError('ConditionalRequestConflict', 409),
    // a body damaged on the way: the server's check of x-amz-content-sha256 or Content-MD5 refused it; sent again it passes
    sdkError('XAmzContentSHA256Mismatch', 400, "The provided 'x-amz-content-sha256' header does not match what was computed."),
    sdkError('BadDigest', 400),
    sdkError('TimeoutError', undefined, 'Connection timed out after 30000 ms'),
    netError('ECONNRESET', 'read ECONNRESET'),
    netError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:9000'),
    netError('ETIMEDOUT', 'connect ETIMEDOUT'),
    netError('EPIPE', 'write EPIPE'),
    new Error('socket hang up'),
    new Error('aborted'),
    netError('ERR_STREAM_PREMATURE_CLOSE', 'Premature close'),
  ];
  for (const e of transient) {
    const m = s3Error(e, 'data/ab/abcd', at);
    assert.ok(m instanceof BackendError && isRetryable(m), `${e.name}: ${e.message}`);
    assert.doesNotMatch(m.message, /\n/);
  }
});

test('s3 errors: anything else is a BackendError, not retryable, with the name, message and status', () => {
  const m = s3Error(sdkError('InvalidArgument', 400, 'Invalid argument'), 'snapshots/ab', at);
  assert.ok(m instanceof BackendError && !isRetryable(m));
  assert.equal(m.message, 'storage error on snapshots/ab in s3:http://127.0.0.1:9000/backups/repo: InvalidArgument: Invalid argument (HTTP 400)');
  const same = new NotFoundError('already classified');
  assert.equal(s3Error(same, 'x', at), same, 'an error of the project passes through');
});

test('s3 errors: a delete refused for Object Lock retention, as AWS (403) and MinIO (400) word it, is told from other refusals', () => {
  // AWS S3: DeleteObject of a version under retention
  assert.ok(isLockRefusal(sdkError('AccessDenied', 403, 'Access Denied because object protected by object lock.')));
  // MinIO: the same refusal
  assert.ok(isLockRefusal(sdkError('InvalidRequest', 400, 'Object is WORM protected and cannot be overwritten')));
  // not a lock: plain denied credentials, another 400
  assert.ok(!isLockRefusal(sdkError('AccessDenied', 403, 'Access Denied')));
  assert.ok(!isLockRefusal(sdkError('InvalidArgument', 400, 'Invalid version id specified')));
  assert.ok(!isLockRefusal(sdkError('InternalError', 500, 'object lock subsystem failed')));
});
