/**
 * End-to-end: what a user can get wrong or what can go wrong, through the real CLI, with the
 * documented exit codes and one-line messages.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { compareTrees } from '../../lab/gen/compare.ts';
import { listPacks, mb, rmrf, summary, tmpdir } from '../helpers/cli.ts';

async function makeTree(dir: string): Promise<void> {
  await fsp.mkdir(path.join(dir, 'conf/envoy'), { recursive: true });
  await fsp.mkdir(path.join(dir, 'logs'), { recursive: true });
  await fsp.mkdir(path.join(dir, 'data'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'conf/envoy/envoy.yaml'), 'static_resources:\n  listeners: []\n'.repeat(200));
  await fsp.writeFile(path.join(dir, 'logs/access.log'), '[2026-11-22T10:00:00Z] "GET /orders HTTP/1.1" 200 512 3 upstream=10.0.0.7:8080\n'.repeat(20000));
  const rnd = Buffer.alloc(3 * 1024 * 1024);
  for (let i = 0; i < rnd.length; i += 4) rnd.writeUInt32LE((Math.imul(i, 2654435761) ^ (i >>> 7)) >>> 0, i);
  await fsp.writeFile(path.join(dir, 'data/blob.bin'), rnd);
  await fsp.writeFile(path.join(dir, 'data/small.txt'), 'hello\n');
}

describe('failure modes', () => {
  let base: string;
  let repo: string;
  let src: string;
  let env: Record<string, string>;

  before(async () => {
    base = tmpdir('fail');
    repo = path.join(base, 'repo');
    src = path.join(base, 'src');
    env = { MESHBACK_REPO: repo, MESHBACK_PASSWORD: 'pw-one' };
    await makeTree(src);
    assert.equal((await mb(['init'], { env })).code, 0);
    const b = await mb(['backup', src], { env });
    assert.equal(b.code, 0, b.stderr);
  });
  after(async () => {
    await rmrf(base);
  });

  test('wrong password: exit 12 and a one-line message', async () => {
    const r = await mb(['snapshots'], { env: { ...env, MESHBACK_PASSWORD: 'nope' } });
    assert.equal(r.code, 12);
    assert.match(r.stderr, /^meshback: wrong password for the repository at .*\n$/);
  });

  test('missing repository: exit 10', async () => {
    const r = await mb(['snapshots'], { env: { ...env, MESHBACK_REPO: path.join(base, 'nothing-here') } });
    assert.equal(r.code, 10);
    assert.match(r.stderr, /no repository at .*meshback init/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });

  test('no repository given, no password, bad flag, unknown command: exit 2', async () => {
    assert.equal((await mb(['snapshots'], { env: { MESHBACK_REPO: undefined, MESHBACK_PASSWORD: 'x' } })).code, 2);
    const np = await mb(['snapshots'], { env: { ...env, MESHBACK_PASSWORD: undefined } });
    assert.equal(np.code, 2);
    assert.match(np.stderr, /MESHBACK_PASSWORD/);
    const bf = await mb(['backup', src, '--no-such-flag'], { env });
    assert.equal(bf.code, 2);
    assert.match(bf.stderr, /--no-such-flag/);
    assert.equal((await mb(['frobnicate'], { env })).code, 2);
  });

  test('init on an existing repository: exit 13, nothing changed', async () => {
    const r = await mb(['init'], { env });
    assert.equal(r.code, 13);
    assert.equal((await mb(['snapshots'], { env })).code, 0);
  });

  test('snapshot id that does not exist: exit 5; malformed id: exit 2', async () => {
    const r = await mb(['restore', 'deadbeef', '--target', path.join(base, 'x')], { env });
    assert.equal(r.code, 5);
    assert.match(r.stderr, /no snapshot with id deadbeef/);
    assert.equal((await mb(['restore', 'not-an-id!', '--target', path.join(base, 'x')], { env })).code, 2);
    assert.equal((await mb(['restore', 'latest'], { env })).code, 2, 'missing --target');
  });

  test('source path that does not exist: exit 5', async () => {
    const r = await mb(['backup', path.join(base, 'missing-src')], { env });
    assert.equal(r.code, 5);
  });

  test('restore into a target that already holds files, including a symlink escape attempt', async () => {
    const dst = path.join(base, 'busy');
    const outside = path.join(base, 'outside');
    await fsp.mkdir(path.join(dst, 'data'), { recursive: true });
    await fsp.mkdir(outside, { recursive: true });
    await fsp.writeFile(path.join(outside, 'keep.txt'), 'untouched');
    // a stale file with other content, a symlink where a directory belongs (pointing outside),
    // a directory where a file belongs, and an unrelated file that is not in the snapshot
    await fsp.writeFile(path.join(dst, 'data/small.txt'), 'stale content that is longer than the original');
    await fsp.symlink(outside, path.join(dst, 'logs'));
    await fsp.mkdir(path.join(dst, 'data/blob.bin/inner'), { recursive: true });
    await fsp.writeFile(path.join(dst, 'unrelated.txt'), 'mine');
    const r = await mb(['restore', 'latest', '--target', dst, '--verify'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await compareTrees(src, dst, { owner: true, mtime: true }).then((d) => d.filter((x) => !x.includes('unrelated.txt'))), []);
    assert.deepEqual(await fsp.readdir(outside), ['keep.txt'], 'nothing written outside the target');
    assert.equal(await fsp.readFile(path.join(outside, 'keep.txt'), 'utf8'), 'untouched');
    assert.equal(await fsp.readFile(path.join(dst, 'unrelated.txt'), 'utf8'), 'mine');
    assert.ok((await fsp.lstat(path.join(dst, 'logs'))).isDirectory());
  });

  test('partial restore with --include, and --include of a missing path: exit 5', async () => {
    const dst = path.join(base, 'partial');
    const r = await mb(['restore', 'latest', '--target', dst, '--include', '/conf'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((await fsp.readdir(dst)).sort(), ['conf']);
    assert.equal(await fsp.readFile(path.join(dst, 'conf/envoy/envoy.yaml'), 'utf8'), await fsp.readFile(path.join(src, 'conf/envoy/envoy.yaml'), 'utf8'));
    const m = await mb(['restore', 'latest', '--target', dst, '--include', '/nope'], { env });
    assert.equal(m.code, 5);
  });

  test('keys: add a second password, list, remove it; the removed one no longer opens', async () => {
    const add = await mb(['key', 'add', '--json'], { env: { ...env, MESHBACK_NEW_PASSWORD: 'pw-two' } });
    assert.equal(add.code, 0, add.stderr);
    const id = summary(add.stdout)['added'] as string;
    assert.equal((await mb(['snapshots'], { env: { ...env, MESHBACK_PASSWORD: 'pw-two' } })).code, 0);
    const list = await mb(['key', 'list', '--json'], { env });
    assert.equal((JSON.parse(list.stdout) as unknown[]).length, 2);
    const self = await mb(['key', 'remove', id.slice(0, 10)], { env: { ...env, MESHBACK_PASSWORD: 'pw-two' } });
    assert.equal(self.code, 2, 'removing the key in use is refused');
    assert.equal((await mb(['key', 'remove', id.slice(0, 10)], { env })).code, 0);
    assert.equal((await mb(['snapshots'], { env: { ...env, MESHBACK_PASSWORD: 'pw-two' } })).code, 12);
    // a damaged key file is listed as damaged and can be removed; the good key still opens
    await fsp.writeFile(path.join(repo, 'keys', 'ffff0000'), '{not json');
    const dl = await mb(['key', 'list'], { env });
    assert.equal(dl.code, 0, dl.stderr);
    assert.match(dl.stdout, /ffff0000 +DAMAGED/);
    assert.equal((await mb(['key', 'remove', 'ffff0000'], { env })).code, 0);
    assert.equal((await mb(['snapshots'], { env })).code, 0);
  });

  test('diff names added, removed and modified files; exclude leaves files out', async () => {
    const s2 = path.join(base, 'src2');
    await makeTree(s2);
    const e2 = { ...env };
    await mb(['backup', s2, '--host', 'h2'], { env: e2 });
    const first = JSON.parse((await mb(['snapshots', '--json', '--host', 'h2'], { env })).stdout) as { id: string }[];
    await fsp.writeFile(path.join(s2, 'data/new.txt'), 'new');
    await fsp.rm(path.join(s2, 'data/small.txt'));
    await fsp.appendFile(path.join(s2, 'logs/access.log'), 'one more line\n');
    const b = await mb(['backup', s2, '--host', 'h2', '--exclude', '*.yaml', '--json'], { env: e2 });
    assert.equal(b.code, 0);
    const id2 = summary(b.stdout)['snapshot_id'] as string;
    const d = await mb(['diff', first[0]!.id, id2], { env });
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stdout, /^\+ +\/data\/new\.txt$/m);
    assert.match(d.stdout, /^- +\/data\/small\.txt$/m);
    assert.match(d.stdout, /^M +\/logs\/access\.log$/m);
    assert.match(d.stdout, /^- +\/conf\/envoy\/envoy\.yaml$/m, 'excluded file is gone from the new snapshot');
  });

  test('--exclude-file and --exclude: dotfiles, re-include, anchored paths; bad patterns and files are refused', async () => {
    const s = path.join(base, 'src-excl');
    await makeTree(s);
    await fsp.writeFile(path.join(s, 'logs/.hidden.log'), 'dot');
    await fsp.writeFile(path.join(s, 'logs/keep.log'), 'keep');
    await fsp.writeFile(path.join(s, 'data/.env'), 'SECRET=1');
    const list = path.join(base, 'excludes.txt');
    await fsp.writeFile(list, '# logs, but keep one\n*.log\n!keep.log\n\n/data/*.bin\n');
    const b = await mb(['backup', s, '--host', 'hx', '--exclude-file', list, '--exclude', 'conf/', '--json'], { env });
    assert.equal(b.code, 0, b.stderr);
    const id = summary(b.stdout)['snapshot_id'] as string;
    const ls = await mb(['ls', id], { env });
    assert.equal(ls.code, 0, ls.stderr);
    const names = ls.stdout.trim().split('\n').sort();
    assert.deepEqual(names, ['/data', '/data/.env', '/data/small.txt', '/logs', '/logs/keep.log']);

    const missing = await mb(['backup', s, '--exclude-file', path.join(base, 'no-such-list')], { env });
    assert.equal(missing.code, 5);
    assert.match(missing.stderr, /^meshback: --exclude-file .*no-such-list does not exist: .*\n$/);
    const bad = await mb(['backup', s, '--exclude', 'x\\'], { env });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^meshback: exclude pattern "x\\\\" ends with a lone '\\': .*\n$/);
  });

  test('unreadable file: reported, skipped, snapshot marked incomplete, exit 3', async () => {
    // root reads everything, so the backup runs without the capabilities that bypass file
    // permissions (as the files' owner, it still reaches everything else)
    const s3 = path.join(base, 'src3');
    const r3 = path.join(base, 'repo3');
    await makeTree(s3);
    await fsp.writeFile(path.join(s3, 'data/secret.key'), 'top secret');
    chmodSync(path.join(s3, 'data/secret.key'), 0o000);
    const e3 = { MESHBACK_REPO: r3, MESHBACK_PASSWORD: 'pw' };
    const noDacOverride = process.getuid?.() === 0 ? ['setpriv', '--bounding-set=-dac_override,-dac_read_search', '--inh-caps=-dac_override,-dac_read_search'] : undefined;
    const init = await mb(['init'], { env: e3 });
    assert.equal(init.code, 0, init.stderr);
    const b = await mb(['backup', s3, '--json'], { env: e3, ...(noDacOverride !== undefined ? { prefix: noDacOverride } : {}) });
    assert.equal(b.code, 3, b.stderr + b.stdout);
    const errLine = b.stdout.split('\n').find((l) => l.includes('"message_type":"error"'));
    assert.ok(errLine?.includes('secret.key'), b.stdout);
    const s = summary(b.stdout);
    assert.match(String(s['incomplete']), /could not be read/);
    const dst = path.join(base, 'dst3');
    assert.equal((await mb(['restore', 'latest', '--target', dst], { env: e3 })).code, 0);
    assert.equal(await fsp.readFile(path.join(dst, 'data/small.txt'), 'utf8'), 'hello\n');
    await assert.rejects(fsp.stat(path.join(dst, 'data/secret.key')));
    const snaps = await mb(['snapshots'], { env: e3 });
    assert.match(snaps.stdout, /\[incomplete\]/);
  });

  test('file changing while it is read is detected and reported', async () => {
    const s4 = path.join(base, 'src4');
    await fsp.mkdir(s4, { recursive: true });
    const big = path.join(s4, 'growing.log');
    await fsp.writeFile(big, Buffer.alloc(400 * 1024 * 1024, 'x'));
    // a writer appends for at most 20 s while the backup reads (bounded loop)
    const writer = spawn(process.execPath, ['-e', `const fs=require('fs');const end=Date.now()+20000;const t=setInterval(()=>{fs.appendFileSync(${JSON.stringify(big)},'line\\n'.repeat(1000));if(Date.now()>end)clearInterval(t)},2)`], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 200));
      const b = await mb(['backup', s4, '--json'], { env });
      assert.equal(b.code, 0, b.stderr);
      const s = summary(b.stdout);
      assert.deepEqual(s['changed_during_read'], [big]);
      assert.match(b.stdout, /"message_type":"warning".*changed while it was read/);
    } finally {
      writer.kill('SIGKILL');
    }
  });

  test('a flipped byte in a pack: check --read-data names the pack and the file (exit 4); restore of that file fails cleanly (exit 4)', async () => {
    const r5 = path.join(base, 'repo5');
    const e5 = { MESHBACK_REPO: r5, MESHBACK_PASSWORD: 'pw' };
    assert.equal((await mb(['init'], { env: e5 })).code, 0);
    assert.equal((await mb(['backup', src], { env: e5 })).code, 0);
    assert.equal((await mb(['check', '--read-data'], { env: e5 })).code, 0);
    // find the data pack holding blob.bin: the largest pack
    const packs = await listPacks(r5);
    const sizes = await Promise.all(packs.map(async (p) => (await fsp.stat(p)).size));
    const victim = packs[sizes.indexOf(Math.max(...sizes))]!;
    chmodSync(victim, 0o600);
    const fh = await fsp.open(victim, 'r+');
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, 1000);
    b[0] = b[0]! ^ 0x01;
    await fh.write(b, 0, 1, 1000);
    await fh.close();
    // the structure is intact, so a plain check passes; reading the data finds the damage
    const c = await mb(['check', '--read-data'], { env: e5 });
    assert.equal(c.code, 4, c.stdout + c.stderr);
    assert.ok(c.stdout.includes(path.basename(victim)), c.stdout);
    assert.match(c.stdout, /affected: .*\/data\/blob\.bin/);
    const dst = path.join(base, 'dst5');
    const r = await mb(['restore', 'latest', '--target', dst], { env: e5 });
    assert.equal(r.code, 4, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /data\/blob\.bin/);
    await assert.rejects(fsp.stat(path.join(dst, 'data/blob.bin')), 'no wrong bytes are left behind');
    assert.equal(await fsp.readFile(path.join(dst, 'data/small.txt'), 'utf8'), 'hello\n');
  });

  test('json output: backup summary and snapshots list parse', async () => {
    const s = await mb(['snapshots', '--json'], { env });
    const list = JSON.parse(s.stdout) as { id: string; paths: string[] }[];
    assert.ok(list.length >= 1);
    assert.equal(list[0]!.id.length, 64);
  });
});
