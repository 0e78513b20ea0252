/**
 * End-to-end: `meshback copy` with the real CLI, between repositories of different keys: local to
 * local and local to MinIO (then MinIO to MinIO) on a tricky tree (a sparse file, hard links,
 * symlinks, invalid-UTF-8 names, thousands of small files), each copy restored and compared byte
 * for byte and metadata for metadata with the source tree; a rerun copies nothing; a second
 * snapshot sends only its new chunks; the copy cache is safe to delete; a copy killed after some
 * packs reached the destination resumes without sending them again; one-line errors naming the
 * repository.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { compareTrees } from '../../lab/gen/compare.ts';
import { generateTrickyTree } from '../../lab/gen/gen.ts';
import { startS3, type S3Env } from '../../lab/testenv/index.ts';
import { initRepository, openRepository } from '../../src/index.ts';
import { BIN, listPacks, mb, rmrf, summary, tmpdir } from '../helpers/cli.ts';

let s3: S3Env;
let base: string;
let src: string;
let repoA: string;
let cache: string;
/** the one environment of every run: A's and B's passwords differ */
let env: Record<string, string | undefined>;
let sourceId: string;

interface Copied {
  source: string;
  id: string;
  copied: boolean;
  files: number;
  chunksRead: number;
  chunksSent: number;
  chunksSkipped: number;
  bytesSent: number;
  treesReused: number;
  nodesVerified: number;
  chunksVerified: number;
}

async function copyJson(args: string[], extra: Record<string, string | undefined> = {}): Promise<{ copied: number; alreadyCopied: number; snapshots: Copied[] }> {
  const r = await mb(['copy', '--from-repo', repoA, ...args, '--json'], { env: { ...env, ...extra } });
  assert.equal(r.code, 0, r.stderr + r.stdout.slice(-2000));
  return summary(r.stdout) as unknown as { copied: number; alreadyCopied: number; snapshots: Copied[] };
}

async function snapshotsOf(repo: string, extra: Record<string, string | undefined> = {}): Promise<{ id: string; time: string; host: string; paths: string[]; tags: string[]; parent?: string; copied?: { original: string; repository: string } }[]> {
  const r = await mb(['snapshots', '--repo', repo, '--json'], { env: { ...env, ...extra } });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout.trim()) as never;
}

async function restoreAndCompare(repo: string, extra: Record<string, string | undefined> = {}): Promise<void> {
  const dst = path.join(base, `restored-${Math.random().toString(36).slice(2)}`);
  const r = await mb(['restore', 'latest', '--target', dst, '--verify', '--repo', repo], { env: { ...env, ...extra } });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.deepEqual(await compareTrees(src, dst, { owner: true, mtime: true, dirMtime: true, sparse: true, hardlinks: true }), []);
  await rmrf(dst);
}

async function checkReadData(repo: string, extra: Record<string, string | undefined> = {}): Promise<void> {
  const c = await mb(['check', '--read-data', '--repo', repo], { env: { ...env, ...extra } });
  assert.equal(c.code, 0, c.stdout + c.stderr);
  assert.match(c.stdout, /no errors were found/);
}

before(async () => {
  base = tmpdir('copy');
  src = path.join(base, 'src');
  repoA = path.join(base, 'A');
  cache = path.join(base, 'cache');
  env = { MESHBACK_FROM_PASSWORD: 'source pw', MESHBACK_PASSWORD: 'destination pw', MESHBACK_CACHE_DIR: cache, MESHBACK_REPO: undefined };
  await generateTrickyTree(src, { seed: 13, smallFiles: 3000, sparseSize: 64 * 1024 * 1024 });
  const init = await mb(['init', '--repo', repoA, '--json'], { env: { MESHBACK_PASSWORD: 'source pw' } });
  assert.equal(init.code, 0, init.stderr);
  sourceId = (summary(init.stdout)['id'] as string);
  const b = await mb(['backup', src, '--repo', repoA, '--tag', 'env=test', '--host', 'node-a'], { env: { MESHBACK_PASSWORD: 'source pw' } });
  assert.equal(b.code, 0, b.stderr);
});
after(async () => {
  await s3?.stop();
  await rmrf(base);
});

describe('meshback copy', () => {
  let repoB: string;
  let firstSent: number;

  test('local to local: the copy restores identical, a rerun copies nothing and makes no duplicate', { timeout: 5 * 60_000 }, async () => {
    repoB = path.join(base, 'B');
    assert.equal((await mb(['init', '--repo', repoB], { env })).code, 0);
    const [a] = await snapshotsOf(repoA, { MESHBACK_PASSWORD: 'source pw' });
    const r = await copyJson(['--repo', repoB]);
    assert.equal(r.copied, 1);
    const c = r.snapshots[0]!;
    assert.equal(c.source, a!.id);
    assert.ok(c.copied && c.chunksSent > 3000 && c.chunksSent === c.chunksRead, JSON.stringify(c));
    assert.ok(c.files > 3000 && c.nodesVerified > 3000, JSON.stringify(c));
    firstSent = c.chunksSent;

    const [b, ...more] = await snapshotsOf(repoB);
    assert.equal(more.length, 0);
    assert.equal(b!.id, c.id);
    assert.deepEqual({ time: b!.time, host: b!.host, paths: b!.paths, tags: b!.tags }, { time: a!.time, host: a!.host, paths: a!.paths, tags: a!.tags });
    assert.deepEqual(b!.copied && { original: b!.copied.original, repository: b!.copied.repository }, { original: a!.id, repository: sourceId });

    const again = await copyJson(['--repo', repoB]);
    assert.equal(again.copied, 0);
    assert.equal(again.alreadyCopied, 1);
    assert.equal(again.snapshots[0]!.id, c.id);
    assert.equal((await snapshotsOf(repoB)).length, 1, 'no duplicate snapshot');

    await restoreAndCompare(repoB);
    await checkReadData(repoB);
  });

  test('local to MinIO, then MinIO to MinIO: restored from MinIO, the tree is identical', { timeout: 8 * 60_000 }, async () => {
    s3 = await startS3();
    const s3env = { ...s3.env, AWS_PROFILE: undefined, AWS_SESSION_TOKEN: undefined };
    const onS3 = `s3:${s3.endpoint}/${s3.bucket}/copy-b`;
    assert.equal((await mb(['init', '--repo', onS3], { env: { ...env, ...s3env } })).code, 0);
    const r = await copyJson(['--repo', onS3, '--read-data'], s3env);
    assert.equal(r.copied, 1);
    assert.equal(r.snapshots[0]!.chunksSent, firstSent, 'the same chunks as into the local repository');
    assert.ok(r.snapshots[0]!.chunksVerified >= firstSent, 'with --read-data every chunk is read back');
    await restoreAndCompare(onS3, s3env);
    await checkReadData(onS3, s3env);

    // S3 to S3: the MinIO repository is the source now (its password is the destination one above)
    const onS3c = `s3:${s3.endpoint}/${s3.bucket}/copy-c`;
    assert.equal((await mb(['init', '--repo', onS3c], { env: { ...env, ...s3env, MESHBACK_PASSWORD: 'third pw' } })).code, 0);
    const c = await mb(['copy', '--from-repo', onS3, '--repo', onS3c, '--json'], { env: { ...env, ...s3env, MESHBACK_FROM_PASSWORD: 'destination pw', MESHBACK_PASSWORD: 'third pw' } });
    assert.equal(c.code, 0, c.stderr);
    assert.equal((summary(c.stdout)['snapshots'] as Copied[])[0]!.chunksSent, firstSent);
    await restoreAndCompare(onS3c, { ...s3env, MESHBACK_PASSWORD: 'third pw' });
  });

  test('a second snapshot sends only its new chunks; without the cache it reads everything again and still sends only those', { timeout: 5 * 60_000 }, async () => {
    await fsp.mkdir(path.join(src, 'added'));
    for (let i = 0; i < 7; i++) await fsp.writeFile(path.join(src, 'added', `n${i}.txt`), `new file ${i} `.repeat(50 + i)); // one chunk each
    const b = await mb(['backup', src, '--repo', repoA, '--tag', 'env=test', '--host', 'node-a'], { env: { MESHBACK_PASSWORD: 'source pw' } });
    assert.equal(b.code, 0, b.stderr);
    const r = await copyJson(['--repo', repoB]);
    assert.equal(r.copied, 1);
    assert.equal(r.alreadyCopied, 1);
    const c = r.snapshots.find((s) => s.copied)!;
    assert.equal(c.chunksSent, 7, JSON.stringify(c));
    assert.equal(c.chunksRead, 7, 'the copy cache spares reading the unchanged chunks: ' + JSON.stringify(c));
    assert.ok(c.treesReused > 10, 'unchanged subtrees are taken from the copy cache: ' + JSON.stringify(c));
    const snaps = await snapshotsOf(repoB);
    assert.equal(snaps.length, 2);
    assert.equal(snaps[1]!.parent, snaps[0]!.id, "the copy's parent is the copy of its source's parent");

    // the cache is safe to delete: the next copy reads the source again, sends only what is new
    await rmrf(cache);
    await fsp.writeFile(path.join(src, 'added', 'last.txt'), 'the last new file\n'.repeat(20));
    const b3 = await mb(['backup', src, '--repo', repoA, '--tag', 'env=test', '--host', 'node-a'], { env: { MESHBACK_PASSWORD: 'source pw' } });
    assert.equal(b3.code, 0, b3.stderr);
    const r3 = await copyJson(['--repo', repoB, 'latest']);
    const c3 = r3.snapshots[0]!;
    assert.equal(c3.chunksSent, 1, JSON.stringify(c3));
    assert.ok(c3.chunksRead > 3000, `without the cache every chunk is read again: ${JSON.stringify(c3)}`);
    await restoreAndCompare(repoB);
  });

  test('a copy killed after some packs reached the destination resumes without sending them again', { timeout: 5 * 60_000 }, async () => {
    const repoD = path.join(base, 'D');
    process.env['MESHBACK_TEST_SCRYPT_N'] = '1024';
    // small packs, so that the copy writes many
    const d = await initRepository(repoD, 'destination pw', { packSize: 1024 * 1024 });
    await d.backend.close();
    const indexFiles = async (): Promise<number> => (await fsp.readdir(path.join(repoD, 'index'))).filter((f) => !f.startsWith('.')).length;
    const childEnv: Record<string, string> = {};
    const faults = { MESHBACK_TEST_SCRYPT_N: '1024', MESHBACK_CHECKPOINT_INTERVAL: '0', MESHBACK_FAULTS: 'delay,op=commit,type=pack,from=6,ms=600000' };
    for (const [k, v] of Object.entries({ ...process.env, ...env, ...faults })) if (v !== undefined) childEnv[k] = v;
    const child = spawn(BIN, ['copy', '--from-repo', repoA, '--repo', repoD, (await snapshotsOf(repoA, { MESHBACK_PASSWORD: 'source pw' }))[0]!.id], { env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (x: string) => (stderr += x));
    const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    try {
      const until = Date.now() + 120_000;
      while ((await listPacks(repoD)).length < 5 || (await indexFiles()) < 5) {
        assert.ok(Date.now() < until, `the copy never wrote 5 indexed packs: ${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      child.kill('SIGKILL');
      await closed;
    }
    assert.equal((await snapshotsOf(repoD)).length, 0, 'an interrupted copy leaves no snapshot');
    // SIGKILL left its locks: stale (its process is gone), removed as a user would
    for (const [repo, pw] of [[repoA, 'source pw'], [repoD, 'destination pw']] as const) assert.equal((await mb(['unlock', '--repo', repo], { env: { MESHBACK_PASSWORD: pw } })).code, 0);

    const before = await openRepository(repoD, 'destination pw', { lock: 'none' });
    const indexed = before.repo.index.size;
    await before.close();
    assert.ok(indexed >= 5, `indexed ${indexed}`);

    // the first snapshot again, with no cache: every chunk is read, the indexed ones are not sent
    await rmrf(cache);
    const r = await copyJson(['--repo', repoD, (await snapshotsOf(repoA, { MESHBACK_PASSWORD: 'source pw' }))[0]!.id]);
    const c = r.snapshots[0]!;
    assert.equal(c.chunksSkipped, indexed, `every chunk indexed before is found there: ${JSON.stringify(c)}`);
    assert.equal(c.chunksSent, c.chunksRead - indexed, JSON.stringify(c));
    assert.equal((await snapshotsOf(repoD)).length, 1);
    await checkReadData(repoD);
  });

  test('a damaged pack of the source is taken from its parity file: the copy is whole', { timeout: 3 * 60_000 }, async () => {
    const psrc = path.join(base, 'psrc');
    await fsp.mkdir(path.join(psrc, 'd'), { recursive: true });
    await fsp.writeFile(path.join(psrc, 'd', 'blob.bin'), randomBytes(3 * 1024 * 1024));
    await fsp.writeFile(path.join(psrc, 'small.txt'), 'small\n');
    const repoP = path.join(base, 'P');
    const penv = { MESHBACK_PASSWORD: 'source pw' };
    assert.equal((await mb(['init', '--parity', '--repo', repoP], { env: penv })).code, 0);
    assert.equal((await mb(['backup', psrc, '--repo', repoP], { env: penv })).code, 0);
    // one byte of the largest pack (the data) flipped
    const packs = await Promise.all((await listPacks(repoP)).map(async (p) => ({ p, size: (await fsp.stat(p)).size })));
    const big = packs.sort((a, b) => b.size - a.size)[0]!;
    const fh = await fsp.open(big.p, 'r+');
    const one = Buffer.alloc(1);
    await fh.read(one, 0, 1, Math.floor(big.size / 2));
    one[0] = one[0]! ^ 0xff;
    await fh.write(one, 0, 1, Math.floor(big.size / 2));
    await fh.close();

    const repoQ = path.join(base, 'Q');
    assert.equal((await mb(['init', '--repo', repoQ], { env })).code, 0);
    const r = await mb(['copy', '--from-repo', repoP, '--repo', repoQ], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: source repository: pack [0-9a-f]{64} is damaged: its chunks were taken from a copy rebuilt from its parity file/);
    const dst = path.join(base, 'restored-parity');
    assert.equal((await mb(['restore', 'latest', '--target', dst, '--repo', repoQ], { env })).code, 0);
    assert.deepEqual(await compareTrees(psrc, dst, { owner: true, mtime: true }), []);
    await checkReadData(repoQ);
  });

  test('errors are one line naming the repository, with the exit code of their kind', async () => {
    const repoB = path.join(base, 'E');
    assert.equal((await mb(['init', '--repo', repoB], { env })).code, 0);
    const wrong = await mb(['copy', '--from-repo', repoA, '--repo', repoB], { env: { ...env, MESHBACK_FROM_PASSWORD: 'not it' } });
    assert.equal(wrong.code, 12, wrong.stderr);
    assert.equal(wrong.stderr, `meshback: source repository: wrong password for the repository at ${repoA}: no key file opens with it; check MESHBACK_FROM_PASSWORD / --from-password-file\n`);
    const wrongB = await mb(['copy', '--from-repo', repoA, '--repo', repoB], { env: { ...env, MESHBACK_PASSWORD: 'not it' } });
    assert.equal(wrongB.code, 12, wrongB.stderr);
    assert.match(wrongB.stderr, /^meshback: destination repository: wrong password for the repository at .*; check MESHBACK_PASSWORD \/ --password-file\n$/);
    const missing = await mb(['copy', '--from-repo', path.join(base, 'nowhere'), '--repo', repoB], { env });
    assert.equal(missing.code, 10, missing.stderr);
    assert.match(missing.stderr, /^meshback: source repository: no repository at .*nowhere: check --from-repo \/ MESHBACK_FROM_REPO, or create one with 'meshback init'\n$/);
    const both = await mb(['copy', 'latest', '--host', 'x', '--from-repo', repoA, '--repo', repoB], { env });
    assert.equal(both.code, 2, both.stderr);
    const self = await mb(['copy', '--from-repo', repoB, '--repo', repoB], { env: { ...env, MESHBACK_FROM_PASSWORD: 'destination pw' } });
    assert.equal(self.code, 2, self.stderr);
    assert.match(self.stderr, /are the same repository/);
    // a storage failure of the destination (an injected permanent I/O error on its first pack): exit 7, named
    const repoE = repoB;
    const io = await mb(['copy', '--from-repo', repoA, '--repo', repoE], { env: { ...env, MESHBACK_FAULTS: 'io,op=commit,type=pack' } });
    assert.equal(io.code, 7, io.stderr);
    assert.match(io.stderr, /^meshback: destination repository \S+\/E: injected I\/O error: commit pack\/[0-9a-f]{64} failed\n$/);
    assert.equal((await snapshotsOf(repoE)).length, 0);
    await checkReadData(repoE);
    const noneSelected = await mb(['copy', '--host', 'no-such-host', '--from-repo', repoA, '--repo', repoB], { env });
    assert.equal(noneSelected.code, 0, noneSelected.stderr);
    assert.match(noneSelected.stdout, /nothing to copy/);
  });
});
