/**
 * End-to-end: the real CLI with `--repo s3:http://127.0.0.1:PORT/BUCKET/PREFIX` on MinIO (the lab's
 * test environment): init, backup, snapshots, a verified restore and check --read-data, with the
 * credentials in AWS_* variables; and the one-line failures: a missing bucket, wrong credentials.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { startS3, type S3Env } from '../../lab/testenv/index.ts';
import { spawn } from 'node:child_process';
import { BIN, mb, rmrf, tmpdir } from '../helpers/cli.ts';

let s3: S3Env;
let c: S3Client;
let base: string;
let src: string;
let env: Record<string, string | undefined>;
let repo: string;

async function makeTree(dir: string): Promise<void> {
  await fsp.mkdir(path.join(dir, 'conf/deep/er'), { recursive: true });
  await fsp.mkdir(path.join(dir, 'data'), { recursive: true });
  await fsp.mkdir(path.join(dir, 'empty'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'conf/envoy.yaml'), 'static_resources:\n  clusters: []\n'.repeat(300));
  await fsp.writeFile(path.join(dir, 'conf/deep/er/x.json'), '{"a":1}\n', { mode: 0o640 });
  const rnd = Buffer.alloc(6 * 1024 * 1024);
  for (let i = 0; i < rnd.length; i += 4) rnd.writeUInt32LE((Math.imul(i, 2654435761) ^ (i >>> 9)) >>> 0, i);
  await fsp.writeFile(path.join(dir, 'data/blob.bin'), rnd);
  for (let i = 0; i < 200; i++) await fsp.writeFile(path.join(dir, `data/f${i}.txt`), `file ${i}\n`.repeat(i + 1));
  await fsp.symlink('../conf/envoy.yaml', path.join(dir, 'data/link'));
  await fsp.link(path.join(dir, 'data/f1.txt'), path.join(dir, 'data/hard'));
}

/** Every entry of a tree: type, mode, size, mtime (ms), content hash or link target. */
async function describeTree(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const e of (await fsp.readdir(path.join(root, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = path.join(rel, e.name);
      const p = path.join(root, r);
      const st = await fsp.lstat(p);
      if (e.isSymbolicLink()) out.set(r, `link ${await fsp.readlink(p)}`);
      else if (e.isDirectory()) {
        out.set(r, `dir ${(st.mode & 0o7777).toString(8)}`);
        await walk(r);
      } else out.set(r, `file ${(st.mode & 0o7777).toString(8)} ${st.size} ${Math.round(st.mtimeMs)} ${createHash('sha256').update(await fsp.readFile(p)).digest('hex')}`);
    }
  };
  await walk('');
  return out;
}

before(async () => {
  s3 = await startS3();
  c = s3.client();
  base = tmpdir('s3cli');
  src = path.join(base, 'src');
  await makeTree(src);
  repo = `s3:${s3.endpoint}/${s3.bucket}/some/prefix`;
  env = { ...s3.env, AWS_PROFILE: undefined, AWS_SESSION_TOKEN: undefined, MESHBACK_PASSWORD: 'pw', MESHBACK_REPO: undefined, MESHBACK_CACHE_DIR: path.join(base, 'cache') };
});
after(async () => {
  c?.destroy();
  await s3?.stop();
  await rmrf(base);
});

describe('the CLI on an S3 repository (MinIO)', () => {
  test('init, backup, snapshots, restore --verify and check --read-data all succeed; the restored tree is identical', { timeout: 5 * 60_000 }, async () => {
    const init = await mb(['init', '--repo', repo], { env });
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stdout, new RegExp(`created repository [0-9a-f]+ at ${repo.replace(/[/.]/g, '\\$&')}\\n`));
    const again = await mb(['init', '--repo', repo], { env });
    assert.equal(again.code, 13, again.stderr);

    const b = await mb(['backup', src, '--repo', repo], { env });
    assert.equal(b.code, 0, b.stderr);
    assert.doesNotMatch(b.stderr, /retrying/);
    const snaps = await mb(['snapshots', '--repo', repo], { env });
    assert.equal(snaps.code, 0, snaps.stderr);
    assert.ok(snaps.stdout.includes(src), snaps.stdout);

    const target = path.join(base, 'restored');
    const r = await mb(['restore', 'latest', '--target', target, '--verify', '--repo', repo], { env });
    assert.equal(r.code, 0, r.stderr);
    const want = await describeTree(src);
    const got = await describeTree(path.join(target, ...(await restoredRoot(target, src))));
    assert.deepEqual(got, want);
    const restored = path.join(target, ...(await restoredRoot(target, src)));
    assert.equal((await fsp.stat(path.join(restored, 'data/hard'))).ino, (await fsp.stat(path.join(restored, 'data/f1.txt'))).ino, 'the hard link is restored');

    const chk = await mb(['check', '--read-data', '--repo', repo], { env });
    assert.equal(chk.code, 0, chk.stdout + chk.stderr);

    // everything is under the prefix, in the local backend's layout, and no lock is left
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const l = await c.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'some/prefix/', ...(token !== undefined ? { ContinuationToken: token } : {}) }));
      for (const o of l.Contents ?? []) keys.push(o.Key!.slice('some/prefix/'.length));
      token = l.IsTruncated === true ? l.NextContinuationToken : undefined;
    } while (token !== undefined);
    assert.ok(keys.includes('config'));
    for (const k of keys) assert.match(k, /^(config|keys\/[0-9a-f]{64}|data\/([0-9a-f]{2})\/\2[0-9a-f]{62}|index\/[0-9a-f]{64}|snapshots\/[0-9a-f]{64})$/, k);
    assert.ok(keys.some((k) => k.startsWith('data/')) && keys.some((k) => k.startsWith('index/')) && keys.some((k) => k.startsWith('snapshots/')));
  });

  test('a backup stopped with SIGTERM exits 130 and removes its lock object (the backend has no deleteSync)', { timeout: 2 * 60_000 }, async () => {
    const loc = `s3:${s3.endpoint}/${s3.bucket}/sigterm`;
    const init = await mb(['init', '--repo', loc], { env });
    assert.equal(init.code, 0, init.stderr);
    const locks = async (): Promise<string[]> => ((await c.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'sigterm/locks/' }))).Contents ?? []).map((o) => o.Key!);
    const childEnv: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...process.env, ...env, MESHBACK_TEST_SCRYPT_N: '1024', MESHBACK_FAULTS: 'delay,op=put,type=pack|index,ms=20000' })) if (v !== undefined) childEnv[k] = v;
    const child = spawn(BIN, ['backup', src, '--repo', loc], { env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const until = Date.now() + 60_000;
    while ((await locks()).length === 0) {
      assert.ok(Date.now() < until, 'the backup never wrote its lock');
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGTERM');
    assert.equal(await done, 130, stderr);
    assert.match(stderr, /interrupted \(SIGTERM\)/);
    assert.deepEqual(await locks(), [], 'the lock object was removed before exit');
  });

  test('a missing bucket is one line naming it, exit 5; init there too', async () => {
    const loc = `s3:${s3.endpoint}/no-such-bucket/x`;
    for (const cmd of [['snapshots'], ['init']]) {
      const r = await mb([...cmd, '--repo', loc], { env });
      assert.equal(r.code, 5, r.stderr);
      assert.match(r.stderr, /^meshback: the bucket no-such-bucket does not exist at http:\/\/127\.0\.0\.1:\d+: create it first, or correct the bucket in --repo s3:http:\/\/127\.0\.0\.1:\d+\/no-such-bucket\/x\n$/);
    }
  });

  test('wrong credentials are one line naming AWS_ACCESS_KEY_ID, exit 7, never retried', async () => {
    const started = Date.now();
    const r = await mb(['snapshots', '--repo', repo], { env: { ...env, AWS_SECRET_ACCESS_KEY: 'not-the-secret' } });
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stderr, /^meshback: storage error on config in s3:http:\/\/127\.0\.0\.1:\d+\/meshback-test\/some\/prefix: the server refused access \(.+\): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY .*\n$/);
    assert.doesNotMatch(r.stderr, /retrying/);
    assert.ok(Date.now() - started < 20_000, 'no backoff');
  });
});

/** restore puts the snapshot's paths under the target as absolute paths or at its root: find which. */
async function restoredRoot(target: string, src: string): Promise<string[]> {
  const nested = path.join(target, src);
  try {
    await fsp.access(nested);
    return [src];
  } catch {
    return [];
  }
}
