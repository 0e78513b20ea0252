/**
 * End-to-end: the storage stack under the real CLI. Repository locations by scheme (file: URLs,
 * an unknown scheme), and a flaky store emulated with MESHBACK_FAULTS: transient failures that
 * the retry wrapper absorbs (warnings, exit 0, a verified restore), and failures it must not
 * retry (no space: exit 6; a permanent I/O error: exit 7; a transient one that never passes:
 * exit 7 after the last attempt).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { listPacks, mb, rmrf, tmpdir } from '../helpers/cli.ts';

/** Every call the retry wrapper retries (a writer's commit is not one of them). */
const RETRIED = 'exists|create|put|get|stat|list|delete|replace|openWriter|removeTemporary';

async function makeTree(dir: string): Promise<void> {
  await fsp.mkdir(path.join(dir, 'conf'), { recursive: true });
  await fsp.mkdir(path.join(dir, 'data'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'conf/envoy.yaml'), 'static_resources:\n  clusters: []\n'.repeat(300));
  const rnd = Buffer.alloc(2 * 1024 * 1024);
  for (let i = 0; i < rnd.length; i += 4) rnd.writeUInt32LE((Math.imul(i, 2654435761) ^ (i >>> 9)) >>> 0, i);
  await fsp.writeFile(path.join(dir, 'data/blob.bin'), rnd);
  for (let i = 0; i < 50; i++) await fsp.writeFile(path.join(dir, `data/f${i}.txt`), `file ${i}\n`.repeat(i + 1));
}

describe('storage stack through the CLI', () => {
  let base: string;
  let repo: string;
  let src: string;
  let env: Record<string, string>;

  before(async () => {
    base = tmpdir('stack');
    repo = path.join(base, 'repo');
    src = path.join(base, 'src');
    await makeTree(src);
    env = { MESHBACK_REPO: repo, MESHBACK_PASSWORD: 'pw' };
  });
  after(async () => {
    await rmrf(base);
  });

  test('a file:/// URL and a plain path name the same repository; an unknown scheme is exit 2 in one line', async () => {
    const url = pathToFileURL(repo).href;
    assert.match(url, /^file:\/\/\//);
    const init = await mb(['init'], { env: { ...env, MESHBACK_REPO: url } });
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stdout, new RegExp(`created repository [0-9a-f]+ at ${repo}\\n`));
    const again = await mb(['init'], { env: { ...env, MESHBACK_REPO: `local:${repo}` } });
    assert.equal(again.code, 13, again.stderr);
    const gs = await mb(['snapshots'], { env: { ...env, MESHBACK_REPO: 'gs:backups/mesh' } });
    assert.equal(gs.code, 2);
    assert.equal(gs.stderr, 'meshback: no backend for gs:backups/mesh: meshback supports local directories (a path, local:PATH, file:PATH or file:///PATH), S3 (s3:https://HOST[:PORT]/BUCKET[/PREFIX], s3:BUCKET[/PREFIX] on AWS); for a directory whose name has a colon write ./gs:backups/mesh\n');
  });

  test('a flaky store: transient failures on every kind of call are retried; backup, check and a verified restore succeed', async () => {
    const faults = { MESHBACK_FAULTS: `seed=11;transient,op=${RETRIED},p=0.15;transient,op=put|delete,when=after,p=0.15` };
    const b = await mb(['backup', src], { env: { ...env, ...faults } });
    assert.equal(b.code, 0, b.stderr);
    const retries = b.stderr.split('\n').filter((l) => /^warning: storage: retrying \w+ .*in \d+\.\d s \(attempt \d of 6\) after: injected transient fault: \w+ .*failed$/.test(l));
    assert.ok(retries.length >= 2, `expected retries to be reported:\n${b.stderr}`);
    const c = await mb(['check', '--read-data'], { env: { ...env, ...faults, MESHBACK_FAULTS: faults.MESHBACK_FAULTS.replace('seed=11', 'seed=12') } });
    assert.equal(c.code, 0, c.stdout + c.stderr);
    const target = path.join(base, 'restored');
    const r = await mb(['restore', 'latest', '--target', target, '--verify'], { env: { ...env, ...faults, MESHBACK_FAULTS: faults.MESHBACK_FAULTS.replace('seed=11', 'seed=13') } });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await fsp.readFile(path.join(target, 'data/blob.bin')), await fsp.readFile(path.join(src, 'data/blob.bin')));
    assert.equal((await fsp.readdir(path.join(target, 'data'))).length, 51);
    // no lock file left behind by the retried deletes, nothing listed twice
    assert.deepEqual(await fsp.readdir(path.join(repo, 'locks')), []);
  });

  test('no space is never retried: exit 6 at once, and the next run succeeds', async () => {
    await fsp.appendFile(path.join(src, 'conf/envoy.yaml'), 'changed\n'.repeat(5000));
    await fsp.writeFile(path.join(src, 'data/new.bin'), Buffer.alloc(300_000, 7));
    const packs = await listPacks(repo);
    const full = await mb(['backup', src], { env: { ...env, MESHBACK_FAULTS: 'nospace,op=commit|put,type=pack' } });
    assert.equal(full.code, 6, full.stderr);
    assert.match(full.stderr, /no space left on the device holding the repository .* \(injected fault\)/);
    assert.doesNotMatch(full.stderr, /retrying/);
    assert.deepEqual(await listPacks(repo), packs, 'no pack written');
    const ok = await mb(['backup', src], { env });
    assert.equal(ok.code, 0, ok.stderr);
  });

  test('a permanent storage error is exit 7 at once; a transient one that never passes is exit 7 after the last attempt', async () => {
    const io = await mb(['snapshots'], { env: { ...env, MESHBACK_FAULTS: 'io,op=get,type=snapshot' } });
    assert.equal(io.code, 7, io.stderr);
    assert.match(io.stderr, /injected I\/O error: get snapshot\//);
    assert.doesNotMatch(io.stderr, /retrying/);
    const stuck = await mb(['snapshots'], { env: { ...env, MESHBACK_FAULTS: 'transient,op=get,type=snapshot' } });
    assert.equal(stuck.code, 7, stuck.stderr);
    const lines = stuck.stderr.trim().split('\n');
    assert.ok(lines.filter((l) => /^warning: storage: retrying get snapshot\/[0-9a-f]+ in \d+\.\d s \(attempt [2-6] of 6\) after: injected transient fault: get snapshot\/[0-9a-f]+ failed$/.test(l)).length >= 5, stuck.stderr);
    assert.ok(!lines.some((l) => /attempt 7/.test(l)), 'no seventh attempt');
    assert.match(lines.at(-1)!, /^meshback: injected transient fault: get snapshot\/[0-9a-f]+ failed$/);
  });
});
