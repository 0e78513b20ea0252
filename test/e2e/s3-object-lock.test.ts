/**
 * End-to-end: immutable backups on a real MinIO bucket with Object Lock (the lab's test
 * environment): `init --object-lock DAYS`, a tricky tree (sparse file, hard links, symlinks,
 * invalid-UTF-8 names, thousands of small files) backed up and restored byte- and
 * metadata-identical; every stored object checked (size, MD5, SHA-256 name, retention); a second
 * backup extends the retention of the old data it uses; a delete of a locked version refused by
 * the server; forget and prune keep what is locked and say until when; the repository checks
 * clean afterwards. Also: `?overwrite-check=head` for a server that ignores If-None-Match (a
 * proxy in front of MinIO that emulates one: it overwrites whatever is put).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, PutObjectRetentionCommand, type S3Client } from '@aws-sdk/client-s3';
import { startS3, type S3Env } from '../../lab/testenv/index.ts';
import { generateTrickyTree } from '../../lab/gen/gen.ts';
import { compareTrees } from '../../lab/gen/compare.ts';
import { mb, rmrf, runProcess, summary, tmpdir } from '../helpers/cli.ts';

let s3: S3Env;
let c: S3Client;
let base: string;
let src: string;
let env: Record<string, string | undefined>;
const DAY = 86_400_000;

before(async () => {
  s3 = await startS3();
  c = s3.client();
  base = tmpdir('s3lock');
  src = path.join(base, 'src');
  await generateTrickyTree(src, { seed: 13, smallFiles: 2000, sparseSize: 64 * 1024 * 1024 });
  env = { ...s3.env, AWS_PROFILE: undefined, AWS_SESSION_TOKEN: undefined, MESHBACK_PASSWORD: 'object-lock-test' };
});
after(async () => {
  c?.destroy();
  await s3?.stop();
  await rmrf(base);
});

async function bodyOf(bucket: string, key: string): Promise<Buffer> {
  const r = await c.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

interface Obj {
  key: string;
  size: number;
}
async function listAll(bucket: string, prefix: string): Promise<Obj[]> {
  const out: Obj[] = [];
  let token: string | undefined;
  do {
    const r = await c.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/`, ...(token !== undefined ? { ContinuationToken: token } : {}) }));
    for (const o of r.Contents ?? []) out.push({ key: o.Key!, size: o.Size! });
    token = r.IsTruncated === true ? r.NextContinuationToken : undefined;
  } while (token !== undefined);
  return out;
}

/** Every object: its bytes' length is its stored size, its MD5 its ETag, and a content-named file's SHA-256 its name. */
async function assertStoredIntact(bucket: string, prefix: string): Promise<Obj[]> {
  const objs = await listAll(bucket, prefix);
  for (const o of objs) {
    const b = await bodyOf(bucket, o.key);
    const h = await c.send(new HeadObjectCommand({ Bucket: bucket, Key: o.key }));
    assert.equal(b.length, o.size, `${o.key}: ${b.length} bytes read, ${o.size} listed`);
    assert.equal(h.ContentLength, o.size, `${o.key}: stored size`);
    assert.equal(h.ETag?.replace(/"/g, ''), createHash('md5').update(b).digest('hex'), `${o.key}: MD5`);
    const dir = o.key.slice(prefix.length + 1).split('/')[0]!;
    if (['data', 'index', 'snapshots', 'keys'].includes(dir)) assert.equal(createHash('sha256').update(b).digest('hex'), path.basename(o.key), `${o.key}: SHA-256`);
  }
  return objs;
}

describe('Object Lock on MinIO', () => {
  let repo: string;
  let prefix: string;
  const retained = new Map<string, number>();

  test('init --object-lock refuses a bucket without Object Lock, and bad values, in one line', async () => {
    const noLock = await mb(['init', '--repo', `s3:${s3.endpoint}/${s3.bucket}/nolock`, '--object-lock', '3'], { env });
    assert.equal(noLock.code, 2, noLock.stderr);
    assert.match(noLock.stderr, /^meshback: --object-lock: the bucket meshback-test has no Object Lock: create a bucket with Object Lock enabled/);
    assert.equal(noLock.stderr.trim().split('\n').length, 1);
    for (const bad of ['0', 'x', '3.5', '40000']) {
      const r = await mb(['init', '--repo', `s3:${s3.endpoint}/${s3.lockedBucket}/bad`, '--object-lock', bad], { env });
      assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
      assert.match(r.stderr, /whole number of days from 1 to 36500/);
    }
    const local = await mb(['init', '--repo', path.join(base, 'local-repo'), '--object-lock', '3'], { env });
    assert.equal(local.code, 2, local.stderr);
    assert.match(local.stderr, /needs a store that can keep files immutable/);
  });

  test('init and a backup of the tricky tree: every object retained for DAYS, intact, and a byte-identical restore', async () => {
    prefix = 'lock1';
    repo = `s3:${s3.endpoint}/${s3.lockedBucket}/${prefix}`;
    const init = await mb(['init', '--repo', repo, '--object-lock', '3', '--json'], { env });
    assert.equal(init.code, 0, init.stderr);
    assert.deepEqual(summary(init.stdout)['objectLock'], { mode: 'compliance', days: 3 });
    const t0 = Date.now();
    const b = await mb(['backup', '--repo', repo, src], { env });
    assert.equal(b.code, 0, b.stderr);
    const objs = await assertStoredIntact(s3.lockedBucket, prefix);
    assert.ok(objs.some((o) => o.key.includes('/data/')) && objs.some((o) => o.key.includes('/snapshots/')));
    for (const o of objs) {
      const h = await c.send(new HeadObjectCommand({ Bucket: s3.lockedBucket, Key: o.key }));
      if (o.key.includes('/locks/')) continue;
      assert.equal(h.ObjectLockMode, 'COMPLIANCE', o.key);
      // written with 3 days; what the snapshot needs for 3 days after its end (packs written
      // before it ended, the keys, the config) extended at the end of the backup to that + 1.5 days
      const until = h.ObjectLockRetainUntilDate!.getTime();
      assert.ok(until >= t0 + 3 * DAY - 60_000 && until <= Date.now() + 4.5 * DAY + 60_000, `${o.key}: retained until ${h.ObjectLockRetainUntilDate?.toISOString()}`);
    }
    assert.equal(objs.filter((o) => o.key.includes('/locks/')).length, 0, 'lock files are removed after the backup');
    const out = path.join(base, 'restore1');
    const r = await mb(['restore', '--repo', repo, 'latest', '--target', out, '--verify'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await compareTrees(src, out, { sparse: true, hardlinks: true }), []);
  });

  test('a second backup right after the first extends nothing (the slack), and lock renew --dry-run agrees', async () => {
    const objs = (await listAll(s3.lockedBucket, prefix)).filter((o) => !o.key.includes('/locks/'));
    for (const o of objs) retained.set(o.key, (await c.send(new HeadObjectCommand({ Bucket: s3.lockedBucket, Key: o.key }))).ObjectLockRetainUntilDate!.getTime());
    const b = await mb(['backup', '--repo', repo, src], { env });
    assert.equal(b.code, 0, b.stderr);
    assert.doesNotMatch(b.stderr + b.stdout, /object lock: extended/);
    for (const [key, before] of retained) {
      const h = await c.send(new HeadObjectCommand({ Bucket: s3.lockedBucket, Key: key }));
      assert.equal(h.ObjectLockRetainUntilDate!.getTime(), before, `${key}: retention changed`);
    }
    const dry = await mb(['lock', 'renew', '--repo', repo, '--dry-run', '--json'], { env });
    assert.equal(dry.code, 0, dry.stderr);
    const s = summary(dry.stdout);
    assert.equal(s['extended'], 0);
    assert.ok((s['checked'] as number) >= objs.length - 1, `checked ${String(s['checked'])} of ${objs.length}`);
  });

  test('the server refuses to delete a locked version; meshback still checks clean and restores', async () => {
    const pack = (await listAll(s3.lockedBucket, prefix)).find((o) => o.key.includes('/data/'))!;
    const h = await c.send(new HeadObjectCommand({ Bucket: s3.lockedBucket, Key: pack.key }));
    const err = await c.send(new DeleteObjectCommand({ Bucket: s3.lockedBucket, Key: pack.key, VersionId: h.VersionId })).then(
      () => undefined,
      (e: unknown) => e as { name?: string; $metadata?: { httpStatusCode?: number } },
    );
    assert.ok(err !== undefined, 'the delete of a locked version succeeded');
    assert.ok([400, 403].includes(err.$metadata?.httpStatusCode ?? 0), `status ${err.$metadata?.httpStatusCode} ${err.name}`);
    // a conditional PUT over it is refused too (an unconditional one would add a version, leaving this one intact)
    const over = await c.send(new PutObjectCommand({ Bucket: s3.lockedBucket, Key: pack.key, Body: 'ransom', IfNoneMatch: '*' })).then(
      () => 'stored',
      (e: unknown) => (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode,
    );
    assert.equal(over, 412);
    const chk = await mb(['check', '--read-data', '--repo', repo], { env });
    assert.equal(chk.code, 0, chk.stderr + chk.stdout);
    const out = path.join(base, 'restore2');
    const r = await mb(['restore', '--repo', repo, 'latest', '--target', out], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await compareTrees(src, out, { sparse: true, hardlinks: true }), []);
  });

  test('a delete without a version (aws s3 rm --recursive) only hides the files; repair undelete brings every one back', async () => {
    const objs = await listAll(s3.lockedBucket, prefix);
    for (const o of objs) await c.send(new DeleteObjectCommand({ Bucket: s3.lockedBucket, Key: o.key }));
    assert.equal((await listAll(s3.lockedBucket, prefix)).length, 0, 'every file is hidden');
    const gone = await mb(['snapshots', '--repo', repo], { env });
    assert.equal(gone.code, 10, gone.stderr);
    const dry = await mb(['repair', 'undelete', '--repo', repo, '--dry-run', '--json'], { env: { ...env, MESHBACK_PASSWORD: undefined } });
    assert.equal(dry.code, 0, dry.stderr);
    const d = summary(dry.stdout);
    assert.equal((d['hidden'] as unknown[]).length, objs.length);
    assert.equal(d['restored'], 0);
    assert.equal((await listAll(s3.lockedBucket, prefix)).length, 0, 'a dry run changes nothing');
    // no password needed: the config and the key files are among the hidden
    const r = await mb(['repair', 'undelete', '--repo', repo], { env: { ...env, MESHBACK_PASSWORD: undefined } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${objs.length} hidden file\\(s\\) brought back: ${objs.length}; run 'meshback check' next`));
    assert.deepEqual((await listAll(s3.lockedBucket, prefix)).map((o) => o.key).sort(), objs.map((o) => o.key).sort());
    await assertStoredIntact(s3.lockedBucket, prefix);
    const chk = await mb(['check', '--read-data', '--repo', repo], { env });
    assert.equal(chk.code, 0, chk.stderr + chk.stdout);
    const again = await mb(['repair', 'undelete', '--repo', repo], { env });
    assert.match(again.stdout, /no file of the repository is hidden by a delete marker/);
    const local = await mb(['repair', 'undelete', '--repo', path.join(base, 'no-such-local')], { env });
    assert.equal(local.code, 2, local.stderr);
    assert.match(local.stderr, /is not on an S3 bucket/);
  });

  test('forget and prune leave locked files in place and say until when; nothing is lost', async () => {
    const f = await mb(['forget', '--repo', repo, '--keep-last', '1', '--json'], { env });
    assert.equal(f.code, 0, f.stderr);
    const s = summary(f.stdout);
    assert.equal(s['removed'], 0);
    const locked = s['locked'] as { id: string; until: string }[];
    assert.equal(locked.length, 1);
    assert.ok(Date.parse(locked[0]!.until) > Date.now() + 2 * DAY);
    const ft = await mb(['forget', '--repo', repo, '--keep-last', '1'], { env });
    assert.match(ft.stderr + ft.stdout, /object lock: 1 snapshot\(s\) to remove are under retention and were left in place \(the first until \d{4}-/);
    const snaps = await mb(['snapshots', '--repo', repo, '--json'], { env });
    assert.equal((JSON.parse(snaps.stdout) as unknown[]).length, 2);
    // a forget by id of the locked snapshot: same answer
    const byId = await mb(['forget', '--repo', repo, locked[0]!.id.slice(0, 12), '--json'], { env });
    assert.equal(byId.code, 0, byId.stderr);
    assert.equal(summary(byId.stdout)['removed'], 0);
    const p = await mb(['prune', '--repo', repo, '--max-unused', '0'], { env });
    assert.equal(p.code, 0, p.stderr);
    const chk = await mb(['check', '--read-data', '--repo', repo], { env });
    assert.equal(chk.code, 0, chk.stderr + chk.stdout);
  });

  test('governance mode: a retention that falls short (shortened with the bypass right, as if time had passed) is extended by backup and by lock renew', async () => {
    const gp = 'lock-gov';
    const grepo = `s3:${s3.endpoint}/${s3.lockedBucket}/${gp}`;
    const small = path.join(src, 'many');
    assert.equal((await mb(['init', '--repo', grepo, '--object-lock', '2', '--object-lock-mode', 'governance'], { env })).code, 0);
    assert.equal((await mb(['backup', '--repo', grepo, small], { env })).code, 0);
    const objs = (await listAll(s3.lockedBucket, gp)).filter((o) => !o.key.includes('/locks/'));
    const soon = new Date(Date.now() + 3_600_000);
    // the root user may shorten a governance retention when it says it bypasses governance
    for (const o of objs) {
      const h = await c.send(new HeadObjectCommand({ Bucket: s3.lockedBucket, Key: o.key }));
      assert.equal(h.ObjectLockMode, 'GOVERNANCE', o.key);
      await c.send(new PutObjectRetentionCommand({ Bucket: s3.lockedBucket, Key: o.key, BypassGovernanceRetention: true, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: soon } }));
    }
    const r = await mb(['lock', 'renew', '--repo', grepo, '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const s = summary(r.stdout);
    // index files are derived data (repair index rebuilds them from the packs): not renewed
    const renewed = objs.filter((o) => !o.key.includes('/index/'));
    assert.ok(renewed.length < objs.length);
    assert.equal(s['extended'], renewed.length, 'every file the snapshot needs was short and is extended');
    for (const o of renewed) {
      const h = await c.send(new HeadObjectCommand({ Bucket: s3.lockedBucket, Key: o.key }));
      const until = h.ObjectLockRetainUntilDate!.getTime();
      assert.ok(until > Date.now() + 2.9 * DAY && until < Date.now() + 3.1 * DAY, `${o.key}: extended to ${h.ObjectLockRetainUntilDate?.toISOString()} (need: the snapshot's end + 2 days, + 1 day of slack)`);
    }
    // shortened again, a backup of the same tree (nothing new) extends the old data it uses
    const pack = objs.find((o) => o.key.includes('/data/'))!;
    await c.send(new PutObjectRetentionCommand({ Bucket: s3.lockedBucket, Key: pack.key, BypassGovernanceRetention: true, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: soon } }));
    const b = await mb(['backup', '--repo', grepo, small], { env });
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stderr + b.stdout, /object lock: extended 1 of \d+ retention\(s\) to \d{4}-/);
    const h = await c.send(new HeadObjectCommand({ Bucket: s3.lockedBucket, Key: pack.key }));
    assert.ok(h.ObjectLockRetainUntilDate!.getTime() > Date.now() + 2.9 * DAY);
  });

  test('lock renew on a repository without Object Lock is a usage error', async () => {
    const plain = `s3:${s3.endpoint}/${s3.bucket}/plain`;
    assert.equal((await mb(['init', '--repo', plain], { env })).code, 0);
    const r = await mb(['lock', 'renew', '--repo', plain], { env });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /has no Object Lock \(it was not made with 'meshback init --object-lock DAYS'\)/);
    const bad = await mb(['lock', 'status', '--repo', plain], { env });
    assert.equal(bad.code, 2);
  });
});

/**
 * A stand-in for an S3 server that ignores If-None-Match, built on the real MinIO: a proxy that
 * forwards every request, except that a PUT carrying If-None-Match is stored by the proxy itself
 * with an unconditional PutObject (so an existing key is overwritten, as such a server would).
 */
async function ignoringProxy(): Promise<{ endpoint: string; stop(): Promise<void> }> {
  const target = new URL(s3.endpoint);
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.method === 'PUT' && req.headers['if-none-match'] !== undefined) {
        const u = new URL(req.url!, 'http://x');
        const [, bucket, ...key] = decodeURIComponent(u.pathname).split('/');
        c.send(new PutObjectCommand({ Bucket: bucket, Key: key.join('/'), Body: body })).then(
          (r) => res.writeHead(200, { ETag: r.ETag ?? '' }).end(),
          (e: unknown) => res.writeHead(500).end(String(e)),
        );
        return;
      }
      const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.writeHead(502).end());
      up.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, stop: () => new Promise((r) => server.close(() => r())) };
}

describe('a server that ignores If-None-Match (a stand-in: a proxy in front of MinIO that stores every conditional PUT unconditionally)', () => {
  test('init refuses it in one line; with ?overwrite-check=head the repository works and nothing is overwritten', async () => {
    const proxy = await ignoringProxy();
    try {
      const loc = `s3:${proxy.endpoint}/${s3.bucket}/ignores`;
      const r = await mb(['init', '--repo', loc], { env });
      assert.equal(r.code, 7, r.stderr);
      assert.match(r.stderr, /^meshback: the server at http:\/\/127\.0\.0\.1:\d+ does not refuse an overwrite with If-None-Match: \* \(a second conditional PUT of one key succeeded\).*add \?overwrite-check=head to --repo/);
      assert.equal(r.stderr.trim().split('\n').length, 1);
      assert.equal((await listAll(s3.bucket, 'ignores')).length, 0, 'the probe object is gone, nothing else written');
      const head = `${loc}?overwrite-check=head`;
      assert.equal((await mb(['init', '--repo', head], { env })).code, 0);
      const small = path.join(src, 'many');
      for (let i = 0; i < 2; i++) {
        const b = await mb(['backup', '--repo', head, small], { env });
        assert.equal(b.code, 0, b.stderr);
      }
      await assertStoredIntact(s3.bucket, 'ignores');
      const out = path.join(base, 'restore-head');
      assert.equal((await mb(['restore', '--repo', head, 'latest', '--target', out, '--verify'], { env })).code, 0);
      assert.deepEqual(await compareTrees(small, out), []);
      assert.equal((await mb(['check', '--read-data', '--repo', head], { env })).code, 0);
    } finally {
      await proxy.stop();
    }
  });
});

/**
 * `?ca=FILE`: MinIO behind a TLS proxy whose certificate is signed by a CA made for this test (openssl):
 * without the CA the first request fails in one line (exit 7); with `ca=` the repository works.
 */
describe('s3 over https with a private CA (MinIO behind a TLS-terminating proxy with an openssl-made CA)', () => {
  test('ca= trusts the given CA; without it the certificate is refused in one line', async (t) => {
    const dir = path.join(base, 'tls');
    await fsp.mkdir(dir, { recursive: true });
    const ssl = async (args: string[]): Promise<void> => {
      const r = await runProcess('openssl', args);
      assert.equal(r.code, 0, `openssl ${args.join(' ')}: ${r.stderr}`);
    };
    const f = (n: string): string => path.join(dir, n);
    await ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=meshback test CA']);
    await ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('srv.key'), '-out', f('srv.csr'), '-subj', '/CN=127.0.0.1']);
    await fsp.writeFile(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
    await ssl(['x509', '-req', '-in', f('srv.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('srv.pem'), '-days', '2', '-extfile', f('ext.cnf')]);
    const target = new URL(s3.endpoint);
    const server = https.createServer({ key: await fsp.readFile(f('srv.key')), cert: await fsp.readFile(f('srv.pem')) }, (req, res) => {
      const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.writeHead(502).end());
      req.pipe(up);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(() => new Promise<void>((r) => server.close(() => r())));
    const endpoint = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const noCa = { ...env, AWS_CA_BUNDLE: undefined };
    const refused = await mb(['init', '--repo', `s3:${endpoint}/${s3.bucket}/tls`], { env: noCa });
    assert.equal(refused.code, 7, refused.stderr);
    assert.match(refused.stderr, /^meshback: storage error on .*certificate/);
    assert.equal(refused.stderr.trim().split('\n').length, 1);
    const loc = `s3:${endpoint}/${s3.bucket}/tls?ca=${encodeURIComponent(f('ca.pem'))}`;
    assert.equal((await mb(['init', '--repo', loc], { env: noCa })).code, 0);
    const small = path.join(src, 'many');
    assert.equal((await mb(['backup', '--repo', loc, small], { env: noCa })).code, 0);
    assert.equal((await mb(['check', '--read-data', '--repo', loc], { env: noCa })).code, 0);
    // AWS_CA_BUNDLE names the same file for a location without ca=
    assert.equal((await mb(['snapshots', '--repo', `s3:${endpoint}/${s3.bucket}/tls`], { env: { ...env, AWS_CA_BUNDLE: f('ca.pem') } })).code, 0);
    const missing = await mb(['snapshots', '--repo', `s3:${endpoint}/${s3.bucket}/tls?ca=/nonexistent/ca.pem`], { env: noCa });
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /cannot read the CA certificates \/nonexistent\/ca\.pem \(ca= of --repo\)/);
  });
});
