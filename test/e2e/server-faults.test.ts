/**
 * End-to-end: faults during scheduled runs of `meshback server` (issue 14, deliverable 8). One
 * server, `every 2s` schedules, five policies: a healthy one, one whose pre hook hangs past its
 * timeout, one whose repository another process holds an exclusive lock on, one whose repository
 * sits on a full filesystem (a real loop-mounted ext4: needs root, else that policy is left out,
 * saying why), and a policy file made malformed while the server runs (SIGHUP). Each failure must
 * be recorded in the run (state.json) and the log with its one-line message and code, the server
 * must keep running, and the healthy policy must go on backing up on time. A wall-clock jump is
 * tested on the scheduler's fake clock (test/unit/scheduler.test.ts): the host's clock is not set
 * by a test.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openRepository } from '../../src/repository/open.ts';
import { BIN, mb, rmrf, tmpdir } from '../helpers/cli.ts';
import { SmallFs, fillTo, loopMountProblem } from '../helpers/smallfs.ts';

interface Ev {
  message_type: string;
  event?: string;
  policy?: string;
  ok?: boolean;
  code?: string;
  message?: string;
}

const noLoop = loopMountProblem();

describe('server: faults in scheduled runs are recorded; the server and the other policies go on', () => {
  let base: string;
  let smallFs: SmallFs | undefined;
  let server: ReturnType<typeof spawn> | undefined;
  before(async () => {
    base = tmpdir('server-faults');
  });
  after(async () => {
    server?.kill('SIGKILL');
    smallFs?.unmount();
    await rmrf(base);
  });

  test('hanging hook, locked repository, full disk, malformed policy file', { timeout: 120_000 }, async (t) => {
    const pwFile = path.join(base, 'pw');
    await fsp.writeFile(pwFile, 'pw\n');
    const data = path.join(base, 'data');
    await fsp.mkdir(data);
    await fsp.writeFile(path.join(data, 'config.yaml'), 'listeners: []\n');
    // incompressible, bigger than the full filesystem's room
    await fsp.writeFile(path.join(data, 'blob.bin'), randomBytes(3 * 1024 * 1024));
    const repos: Record<string, string> = { main: path.join(base, 'repo-main'), locked: path.join(base, 'repo-locked') };
    if (noLoop === undefined) {
      smallFs = new SmallFs(base, 'fullfs');
      smallFs.mount(16);
      repos['full'] = path.join(smallFs.dir, 'repo');
    } else t.diagnostic(`the full-disk policy is left out: ${noLoop}`);
    for (const r of Object.values(repos)) {
      const init = await mb(['init', '--repo', r, '--password-file', pwFile]);
      assert.equal(init.code, 0, init.stderr);
    }
    if (smallFs !== undefined) fillTo(smallFs, path.join(smallFs.dir, 'filler'), 256 * 1024);
    // another process's exclusive lock on repo-locked, held for the whole test (this process is alive: not stale)
    const holder = await openRepository(repos['locked']!, 'pw', { lock: 'exclusive', command: 'test: a long maintenance', loadIndex: false });

    const config = path.join(base, 'policies.yaml');
    const good = `version: 1
defaults: { password-file: ${pwFile} }
policies:
  healthy:
    sources: [${data}]
    repository: ${repos['main']}
    schedule: every 2s
    retention: { keep-last: 3 }
  hanging:
    sources: [${data}]
    repository: ${repos['main']}
    schedule: every 2s
    hooks:
      pre: [ { exec: [sleep, "60"], timeout: 1s } ]
  locked:
    sources: [${data}]
    repository: ${repos['locked']}
    schedule: every 2s
${repos['full'] !== undefined ? `  full:
    sources: [${data}]
    repository: ${repos['full']}
    schedule: every 2s
` : ''}`;
    await fsp.writeFile(config, good);
    const stateDir = path.join(base, 'state');
    const p = spawn(BIN, ['server', '--json', '--config', config, '--state-dir', stateDir, '--max-runs', '4', '--retry-lock', '1s', '--grace', '10s'], {
      env: { ...process.env, MESHBACK_TEST_SCRYPT_N: '1024', MESHBACK_CACHE_DIR: path.join(os.tmpdir(), 'meshback-test-cache') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server = p;
    const events: Ev[] = [];
    let out = '';
    let stderr = '';
    p.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const lines = out.split('\n');
      out = lines.pop()!;
      for (const l of lines) if (l.startsWith('{')) events.push(JSON.parse(l) as Ev);
    });
    p.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((res) => p.on('exit', (code) => res(code)));
    const ends = (policy: string) => events.filter((e) => e.event === 'run-end' && e.policy === policy);
    const waitFor = async (pred: () => boolean, what: string, ms = 40_000): Promise<void> => {
      const t0 = performance.now();
      while (!pred()) {
        if (performance.now() - t0 > ms) throw new Error(`timed out waiting for ${what}; events: ${JSON.stringify(events.slice(-20))}; stderr: ${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    try {
      const faulty = ['hanging', 'locked', ...(repos['full'] !== undefined ? ['full'] : [])];
      await waitFor(() => faulty.every((f) => ends(f).length >= 2) && ends('healthy').filter((e) => e.ok === true).length >= 3, 'two runs of each faulty policy and three good runs of the healthy one');

      // each failure: its code and one-line message, in the log and in the run's record
      const expect: Record<string, { code: string; message: RegExp }> = {
        hanging: { code: 'HOOK', message: /^pre hook 1 \(sleep\) did not finish within its timeout of 1s and was killed: make it faster or raise its timeout$/ },
        locked: { code: 'LOCKED', message: /locked .*test: a long maintenance/ },
        full: { code: 'NO_SPACE', message: /^no space left on the device holding the repository .+: free some space \(or prune old snapshots\) and run again; nothing already stored was changed$/ },
      };
      const state = JSON.parse(await fsp.readFile(path.join(stateDir, 'state.json'), 'utf8')) as { policies: Record<string, { outcome: string; message?: string }> };
      for (const f of faulty) {
        for (const e of ends(f)) {
          assert.equal(e.ok, false, `${f}: ${JSON.stringify(e)}`);
          assert.equal(e.code, expect[f]!.code, `${f}: ${JSON.stringify(e)}`);
          assert.match(e.message!, expect[f]!.message);
          assert.ok(!e.message!.includes('\n'));
        }
        const rec = state.policies[f]!;
        assert.ok(rec.outcome === 'failed' || rec.outcome === 'running', `${f}: ${JSON.stringify(rec)}`);
        t.diagnostic(`${f}: ${ends(f).length} runs, each ${expect[f]!.code}: ${ends(f)[0]!.message}`);
      }
      // the healthy policy is unaffected: every run ok, about one per 2 s
      assert.ok(ends('healthy').every((e) => e.ok === true), JSON.stringify(ends('healthy')));

      // a malformed policy file: SIGHUP reloads nothing, one warning line; the server goes on
      await fsp.writeFile(config, good.replace('schedule: every 2s\n    retention', 'schedule: every two seconds\n    retention'));
      const before = ends('healthy').length;
      p.kill('SIGHUP');
      const reloadWarning = () => events.find((e) => e.message_type === 'warning' && /was not reloaded/.test(e.message ?? ''));
      await waitFor(() => reloadWarning() !== undefined, 'the reload warning');
      assert.match(reloadWarning()!.message!, /^.*policies\.yaml was not reloaded \(policies\.yaml:\d+: policies\.healthy\.schedule: must be "every DURATION".*\): the server goes on with the policies it had; fix the file and send SIGHUP again$/);
      await waitFor(() => ends('healthy').length >= before + 2, 'two more healthy runs after the bad reload');
      assert.equal(p.exitCode, null, 'the server is still running');

      // the stored data of the healthy policy restores; the locked repository was never written
      const snaps = await mb(['snapshots', '--json', '--repo', repos['main']!, '--password-file', pwFile]);
      assert.equal(snaps.code, 0, snaps.stderr);
      const list = JSON.parse(snaps.stdout.split('\n').find((l) => l.startsWith('['))!) as { tags: string[] }[];
      assert.ok(list.filter((s) => s.tags.includes('policy=healthy')).length >= 1);
      assert.equal(list.filter((s) => s.tags.includes('policy=hanging')).length, 0, 'a run whose pre hook failed saves no snapshot');
    } finally {
      p.kill('SIGTERM');
      const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 30_000).unref())]);
      await holder.close();
      assert.equal(code, 0, `server exit ${String(code)}; stderr: ${stderr}`);
    }
    // nothing already stored was damaged by the full disk
    if (repos['full'] !== undefined) {
      await fsp.rm(path.join(smallFs!.dir, 'filler'));
      const c = await mb(['check', '--repo', repos['full'], '--password-file', pwFile]);
      assert.equal(c.code, 0, c.stderr);
    }
  });
});
