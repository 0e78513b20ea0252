/**
 * The library API (src/index.ts): a backup, a listing, a diff, a restore and a check through it,
 * with the typed event stream (op-start ... summary); and the engine never loading the lab (not
 * through the API, not in `meshback snapshots`), while `meshback bench --help` does load it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { backup, check, diffTrees, forget, initRepository, openRepository, restore } from '../../src/index.ts';
import type { MeshEvent } from '../../src/index.ts';

const root = path.resolve(import.meta.dirname, '../..');
process.env['MESHBACK_TEST_SCRYPT_N'] = '1024';

test('api: init, backup, diff, restore, check and forget through src/index.ts, with typed events', async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'meshback-api-'));
  try {
    const data = path.join(dir, 'data');
    await fsp.mkdir(path.join(data, 'conf'), { recursive: true });
    await fsp.writeFile(path.join(data, 'conf', 'envoy.yaml'), 'admin: {}\n');
    await fsp.writeFile(path.join(data, 'access.log'), 'GET / 200\n'.repeat(1000));
    const location = path.join(dir, 'repo');
    await initRepository(location, 'pw');
    const events: MeshEvent[] = [];
    const { repo, close } = await openRepository(location, 'pw', { lock: 'shared', events: (e) => events.push(e) });
    try {
      const first = await backup(repo, { paths: [data], events: (e) => events.push(e) });
      await fsp.appendFile(path.join(data, 'access.log'), 'GET /health 200\n');
      const second = await backup(repo, { paths: [data], events: (e) => events.push(e) });
      const kinds = events.map((e) => e.type);
      assert.equal(kinds.filter((k) => k === 'op-start').length, 2);
      const summaries = events.filter((e): e is Extract<MeshEvent, { type: 'summary' }> => e.type === 'summary');
      assert.deepEqual(summaries.map((s) => [s.op, s.ok]), [['backup', true], ['backup', true]]);
      assert.equal((summaries[1]!.result as { id: string }).id, second.id);

      const changes: string[] = [];
      const a = await repo.rootView(first.snapshot);
      const b = await repo.rootView(second.snapshot);
      const counts = await diffTrees(repo, a.nodes, b.nodes, (e) => changes.push(`${e.change} ${e.path}`));
      assert.deepEqual(changes, ['M /access.log']);
      assert.equal(counts.modified, 1);

      const target = path.join(dir, 'restored');
      const r = await restore(repo, { snapshot: second.id, target, verify: true });
      assert.equal(r.damaged.length, 0);
      assert.equal(await fsp.readFile(path.join(target, 'access.log'), 'utf8'), await fsp.readFile(path.join(data, 'access.log'), 'utf8'));
      assert.equal((await check(repo, { readData: true })).ok, true);
      const f = await forget(repo, { policy: { last: 1 }, dryRun: true });
      assert.equal(f.wouldRemove, 1);
      assert.equal(f.groups[0]!.remove[0]!.item.id, first.id);
    } finally {
      await close();
    }
    // the lock went with close(): an exclusive open succeeds at once
    const again = await openRepository(location, 'pw', { lock: 'exclusive', loadIndex: false });
    await again.close();
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

function loadedModules(args: string[], env: Record<string, string> = {}): string[] {
  const out = path.join(os.tmpdir(), `meshback-modules-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const r = spawnSync(process.execPath, ['--import', path.join(root, 'test/fixtures/record-modules.mjs'), ...args], {
    env: { ...process.env, ...env, MESHBACK_TEST_MODULES: out },
    encoding: 'utf8',
  });
  assert.ok(r.status === 0 || r.status === 10, `${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  const urls = readFileSync(out, 'utf8').trim().split('\n');
  return urls;
}

test('api: the engine never loads the lab; a lab command does', () => {
  const viaApi = loadedModules(['-e', `await import(${JSON.stringify(path.join(root, 'src/index.ts'))})`, '--input-type=module']);
  assert.ok(viaApi.some((u) => u.endsWith('/src/index.ts')));
  assert.deepEqual(viaApi.filter((u) => u.includes('/lab/')), []);
  const main = path.join(root, 'src/cli/main.ts');
  const snapshots = loadedModules([main, 'snapshots', '--repo', path.join(os.tmpdir(), 'meshback-no-such-repo'), '--password-file', '/dev/null']);
  assert.ok(snapshots.some((u) => u.includes('/src/cli/commands/snapshots.ts')));
  assert.deepEqual(snapshots.filter((u) => u.includes('/lab/')), []);
  // the S3 backend's factory is registered, but the AWS SDK loads on an S3 repository's first request only
  assert.ok(snapshots.some((u) => u.endsWith('/src/storage/s3.ts')));
  assert.deepEqual(snapshots.filter((u) => u.includes('@aws-sdk') || u.includes('@smithy')), [], 'a local repository never loads the AWS SDK');
  const bench = loadedModules([main, 'bench', '--help']);
  assert.ok(bench.some((u) => u.includes('/lab/cli/bench.ts')), 'meshback bench loads the lab');
});
