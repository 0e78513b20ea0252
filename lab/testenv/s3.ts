/** MinIO on 127.0.0.1: a private data directory, a bucket and a bucket with Object Lock. */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateBucketCommand, HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { binary, type Log } from './build.ts';
import { freePort, launch, waitFor, type Mode, type Proc } from './proc.ts';

export interface S3Env {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  bucket: string;
  lockedBucket: string;
  dir: string;
  procs: Proc[];
  /** the variables `testenv up s3` exports */
  env: Record<string, string>;
  /** an S3 client for this server (path-style, checksums only where S3 requires them) */
  client(): S3Client;
  stop(): Promise<void>;
}

export interface StartOpts {
  /** owned (default): dies with this process; detached: runs until stopped by pid */
  mode?: Mode;
  /** where data and logs go (default: a new temporary directory, removed by stop()) */
  dir?: string;
  log?: Log;
  /** serve MinIO's Prometheus metrics (/minio/v2/metrics/cluster) without authentication (MINIO_PROMETHEUS_AUTH_TYPE=public) */
  metrics?: boolean;
}

export function s3Client(e: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string }): S3Client {
  return new S3Client({
    endpoint: e.endpoint,
    region: e.region,
    forcePathStyle: true,
    credentials: { accessKeyId: e.accessKeyId, secretAccessKey: e.secretAccessKey },
    // the SDK's default CRC32 trailers are an AWS extension: send checksums only where S3 requires them
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
  });
}

export async function startS3(o: StartOpts = {}): Promise<S3Env> {
  const mode = o.mode ?? 'owned';
  const minio = await binary('minio', o.log);
  const dir = o.dir ?? (await fsp.mkdtemp(path.join(os.tmpdir(), 'meshback-testenv-s3-')));
  await fsp.mkdir(path.join(dir, 'data'), { recursive: true });
  const port = await freePort();
  const consolePort = await freePort();
  const accessKeyId = `meshback${randomBytes(4).toString('hex')}`;
  const secretAccessKey = randomBytes(18).toString('base64url');
  const endpoint = `http://127.0.0.1:${port}`;
  const proc = launch({
    name: 'minio',
    cmd: minio,
    args: ['server', path.join(dir, 'data'), '--address', `127.0.0.1:${port}`, '--console-address', `127.0.0.1:${consolePort}`, '--quiet', '--anonymous'],
    env: { MINIO_ROOT_USER: accessKeyId, MINIO_ROOT_PASSWORD: secretAccessKey, MINIO_BROWSER: 'off', MINIO_UPDATE: 'off', MINIO_CALLHOME_ENABLE: 'off', ...(o.metrics === true ? { MINIO_PROMETHEUS_AUTH_TYPE: 'public' } : {}) },
    log: path.join(dir, 'minio.log'),
    mode,
    ...(mode === 'owned' ? { cleanup: dir } : {}),
  });
  const env = { endpoint, accessKeyId, secretAccessKey, region: 'us-east-1' };
  const stop = async (): Promise<void> => {
    await proc.stop();
    if (o.dir === undefined) await fsp.rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor('MinIO to be healthy', 30_000, [proc], async () => ((await fetch(`${endpoint}/minio/health/live`)).status === 200 ? true : undefined));
    const bucket = 'meshback-test';
    const lockedBucket = 'meshback-test-locked';
    const c = s3Client(env);
    try {
      await waitFor('MinIO to create the buckets', 30_000, [proc], async () => {
        for (const [b, lock] of [
          [bucket, false],
          [lockedBucket, true],
        ] as const) {
          const exists = await c.send(new HeadBucketCommand({ Bucket: b })).then(
            () => true,
            () => false,
          );
          if (!exists) await c.send(new CreateBucketCommand({ Bucket: b, ObjectLockEnabledForBucket: lock }));
        }
        return true;
      });
    } finally {
      c.destroy();
    }
    return {
      ...env,
      bucket,
      lockedBucket,
      dir,
      procs: [proc],
      env: {
        AWS_ACCESS_KEY_ID: accessKeyId,
        AWS_SECRET_ACCESS_KEY: secretAccessKey,
        AWS_REGION: 'us-east-1',
        MESHBACK_TEST_S3_ENDPOINT: endpoint,
        MESHBACK_TEST_S3_BUCKET: bucket,
        MESHBACK_TEST_S3_LOCKED_BUCKET: lockedBucket,
      },
      client: () => s3Client(env),
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
