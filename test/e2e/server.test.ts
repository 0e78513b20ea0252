/**
 * End-to-end: `meshback server --config FILE` through the real CLI with a real policy file,
 * `every 1s` schedules and two policies on one repository (one with retention, which takes the
 * exclusive lock while the other backs up: lock waits, not failures): runs happen, snapshots
 * appear, SIGTERM stops it with exit 0 and no lock left; a restart catches up the missed run
 * once from the state file (after SIGTERM, and after SIGKILL); SIGTERM during a run waits for it within --grace (exit 0) and
 * abandons it past the grace period (exit 130, its hook ended, no lock left, recorded as
 * interrupted) or at once on a second signal; SIGHUP reloads the file; a bad policy file is one file:line:field line, exit 2.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { mb, rmrf, tmpdir, waitGone } from '../helpers/cli.ts';
import { liveServers, startServer } from '../helpers/server.ts';
import type { ServerEvent } from '../helpers/server.ts';

type Ev = ServerEvent;
const live = liveServers;

const ends = (evs: Ev[], policy?: string): Ev[] => evs.filter((e) => e.event === 'run-end' && (policy === undefined || e.policy === policy));

describe('server', () => {
  let base: string;
  let repo: string;
  let config: string;
  let stateDir: string;
  let env: Record<string, string>;

  const locks = async (): Promise<string[]> => (await fsp.readdir(path.join(repo, 'locks'))).filter((f) => !f.startsWith('.'));
  const state = async (): Promise<{ policies: Record<string, { outcome: string; lastStart: string }> }> => JSON.parse(await fsp.readFile(path.join(stateDir, 'state.json'), 'utf8'));

  before(async () => {
    base = tmpdir('server');
    repo = path.join(base, 'repo');
    stateDir = path.join(base, 'state');
    await fsp.mkdir(path.join(base, 'data/a'), { recursive: true });
    await fsp.mkdir(path.join(base, 'data/b'), { recursive: true });
    await fsp.writeFile(path.join(base, 'data/a/file.txt'), 'a\n');
    await fsp.writeFile(path.join(base, 'data/b/file.txt'), 'b\n');
    await fsp.writeFile(path.join(base, 'pw'), 'pw\n');
    const sleeper = path.join(base, 'sleeper.sh');
    await fsp.writeFile(sleeper, `#!/bin/sh\nsleep "$1" &\necho $! > "${base}/sleeper.pid"\nwait\n`, { mode: 0o755 });
    config = path.join(base, 'policies.yaml');
    await fsp.writeFile(
      config,
      `version: 1
defaults:
  repository: ./repo
  password-file: ./pw
policies:
  a:
    sources: [data/a]
    schedule: every 1s
    retention: { keep-last: 2 }
  b:
    sources: [data/b]
    schedule: every 1s
  manual:
    sources: [data/a]
`,
    );
    const init = await mb(['init', '--repo', repo, '--password-file', path.join(base, 'pw')]);
    assert.equal(init.code, 0, init.stderr);
    env = { MESHBACK_REPO: repo, MESHBACK_PASSWORD: 'pw' };
  });
  after(async () => {
    for (const p of live) p.kill('SIGKILL');
    await rmrf(base);
  });

  test('runs both policies every second, retention keeps 2 of a, SIGTERM: exit 0, no lock left; a restart catches up once', async () => {
    const s = startServer(['--config', config, '--state-dir', stateDir], env);
    await s.waitFor((evs) => ends(evs, 'a').length >= 3 && ends(evs, 'b').length >= 3);
    s.kill('SIGTERM');
    assert.equal(await s.exited, 0, s.stderr());
    const evs = s.events;
    assert.equal(evs[0]!.event, 'start');
    for (const e of ends(evs)) assert.equal(e.ok, true, JSON.stringify(e) + s.stderr());
    // one run of a policy at a time: its starts and ends alternate
    for (const name of ['a', 'b']) {
      const seq = evs.filter((e) => e.policy === name && (e.event === 'run-start' || e.event === 'run-end')).map((e) => e.event);
      seq.forEach((ev, i) => assert.equal(ev, i % 2 === 0 ? 'run-start' : 'run-end', seq.join(',')));
    }
    assert.ok(!evs.some((e) => e.policy === 'manual' && e.event === 'run-start'), 'a policy without a schedule is not run');
    assert.deepEqual(evs.slice(-1)[0], { ...evs.slice(-1)[0], event: 'stopped', abandoned: [] });
    assert.deepEqual(await locks(), []);
    const snaps = await mb(['snapshots', '--json'], { env });
    const rows = JSON.parse(snaps.stdout.split('\n').find((l) => l.startsWith('['))!) as { tags: string[] }[];
    assert.equal(rows.filter((r) => r.tags.includes('policy=a')).length, 2, 'retention kept the 2 newest of a');
    assert.ok(rows.filter((r) => r.tags.includes('policy=b')).length >= 3);
    const st = await state();
    assert.equal(st.policies['a']!.outcome, 'ok');
    assert.equal(st.policies['b']!.outcome, 'ok');

    // down for a few seconds (several missed ticks): one catch-up run each at start
    await new Promise((r) => setTimeout(r, 2500));
    const s2 = startServer(['--config', config, '--state-dir', stateDir], env);
    await s2.waitFor((e) => ends(e, 'a').length >= 1 && ends(e, 'b').length >= 1);
    s2.kill('SIGTERM');
    assert.equal(await s2.exited, 0, s2.stderr());
    const starts = s2.events.filter((e) => e.event === 'run-start');
    assert.deepEqual(starts.slice(0, 2).map((e) => [e.policy, e.reason]).sort(), [['a', 'catch-up'], ['b', 'catch-up']]);
    assert.equal(starts.filter((e) => e.reason === 'catch-up').length, 2, 'caught up once per policy');
    assert.deepEqual(await locks(), []);

    // a server killed (SIGKILL) mid-run: the next start catches up once, past its stale lock
    const s3 = startServer(['--config', config, '--state-dir', stateDir], env);
    await s3.waitFor((e) => e.filter((x) => x.event === 'run-start').length >= 4);
    s3.kill('SIGKILL');
    await s3.exited;
    await new Promise((r) => setTimeout(r, 2000));
    const s4 = startServer(['--config', config, '--state-dir', stateDir], env);
    await s4.waitFor((e) => ends(e, 'a').length >= 2 && ends(e, 'b').length >= 2);
    s4.kill('SIGTERM');
    assert.equal(await s4.exited, 0, s4.stderr());
    assert.equal(s4.events.filter((e) => e.reason === 'catch-up').length, 2);
    for (const e of ends(s4.events)) assert.equal(e.ok, true, JSON.stringify(e) + s4.stderr());
    // what the killed server may have left is a stale lock (its process is gone), nothing live
    const un = await mb(['unlock'], { env });
    assert.equal(un.code, 0, un.stderr);
    assert.deepEqual(await locks(), []);
  });

  test('SIGTERM during a run: it finishes within --grace (exit 0); past the grace period it is abandoned (exit 130)', async () => {
    const slow = path.join(base, 'slow.yaml');
    await fsp.writeFile(
      slow,
      `version: 1
defaults: { repository: ./repo, password-file: ./pw }
policies:
  slow:
    sources: [data/a]
    schedule: every 1h
    hooks:
      post: [ { exec: [./sleeper.sh, "SECONDS"] } ]
`.replace('./sleeper.sh', path.join(base, 'sleeper.sh')),
    );
    const text = await fsp.readFile(slow, 'utf8');
    const dir = path.join(base, 'state-slow');

    await fsp.writeFile(slow, text.replace('SECONDS', '2'));
    const s = startServer(['--config', slow, '--state-dir', dir, '--grace', '30s'], env);
    await s.waitFor((e) => e.some((x) => x.event === 'run-start'));
    s.kill('SIGTERM');
    assert.equal(await s.exited, 0, s.stderr());
    assert.equal(ends(s.events, 'slow')[0]?.ok, true, 'the running run finished');
    assert.deepEqual(await locks(), []);

    await fsp.writeFile(slow, text.replace('SECONDS', '60'));
    await fsp.rm(path.join(base, 'sleeper.pid'), { force: true });
    const s2 = startServer(['--config', slow, '--state-dir', path.join(base, 'state-slow2'), '--grace', '1s'], env);
    let pid = 0;
    for (let i = 0; i < 400 && pid === 0; i++) {
      pid = Number(await fsp.readFile(path.join(base, 'sleeper.pid'), 'utf8').catch(() => '0'));
      if (pid === 0) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(pid > 0, 'the post hook started');
    s2.kill('SIGTERM');
    assert.equal(await s2.exited, 130, s2.stderr());
    assert.match(s2.stderr(), /slow did not finish within the grace period/);
    assert.equal(ends(s2.events).length, 0);
    assert.deepEqual(s2.events.filter((e) => e.event === 'stopped').map((e) => e.abandoned), [['slow']]);
    assert.deepEqual(await locks(), []);
    const st = JSON.parse(await fsp.readFile(path.join(base, 'state-slow2', 'state.json'), 'utf8')) as { policies: Record<string, { outcome: string }> };
    assert.equal(st.policies['slow']!.outcome, 'interrupted');
    const alive = !(await waitGone(pid));
    if (alive) process.kill(pid, 'SIGKILL');
    assert.equal(alive, false, 'the abandoned run\'s hook was ended');

    // a second signal does not wait out the grace period
    await fsp.rm(path.join(base, 'sleeper.pid'), { force: true });
    const s3 = startServer(['--config', slow, '--state-dir', path.join(base, 'state-slow3'), '--grace', '10m'], env);
    await s3.waitFor((e) => e.some((x) => x.event === 'run-start'));
    for (let i = 0; i < 400 && !(await fsp.stat(path.join(base, 'sleeper.pid')).then(() => true, () => false)); i++) await new Promise((r) => setTimeout(r, 50));
    s3.kill('SIGTERM');
    await s3.waitFor((e) => e.some((x) => x.event === 'stopping'));
    const t0 = performance.now();
    s3.kill('SIGINT');
    assert.equal(await s3.exited, 130, s3.stderr());
    assert.ok(performance.now() - t0 < 10_000);
    assert.match(s3.stderr(), /interrupted again \(SIGINT\)/);
    assert.deepEqual(await locks(), []);
  });

  test('SIGHUP reloads the policy file; a bad one is a warning and changes nothing', async () => {
    const file = path.join(base, 'hup.yaml');
    const policy = (name: string) => `version: 1\ndefaults: { repository: ./repo, password-file: ./pw }\npolicies:\n  ${name}: { sources: [data/b], schedule: every 1h }\n`;
    await fsp.writeFile(file, policy('first'));
    const s = startServer(['--config', file, '--state-dir', path.join(base, 'state-hup')], env);
    await s.waitFor((e) => ends(e, 'first').length === 1);
    await fsp.writeFile(file, 'version: 1\npolicies: {}\n');
    s.kill('SIGHUP');
    await s.waitFor((e) => e.some((x) => x.message_type === 'warning'));
    assert.match(JSON.stringify(s.events.find((x) => x.message_type === 'warning')), /was not reloaded .*goes on with the policies it had/);
    await fsp.writeFile(file, policy('second'));
    s.kill('SIGHUP');
    await s.waitFor((e) => ends(e, 'second').length === 1);
    s.kill('SIGTERM');
    assert.equal(await s.exited, 0, s.stderr());
    assert.equal(s.events.filter((e) => e.event === 'reload').length, 1);
    assert.equal(s.events.filter((e) => e.event === 'run-start' && e.policy === 'first').length, 1);
    assert.deepEqual(await locks(), []);
  });

  test('a bad policy file: one line naming file, line and field, exit 2', async () => {
    const bad = path.join(base, 'bad.yaml');
    await fsp.writeFile(bad, `version: 1\npolicies:\n  a:\n    sources: [data/a]\n    schedule: every often\n`);
    const r = await mb(['server', '--config', bad, '--state-dir', path.join(base, 'state-bad')], { env, timeoutMs: 30_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /bad\.yaml:5: policies\.a\.schedule: /);
    const none = path.join(base, 'none.yaml');
    await fsp.writeFile(none, `version: 1\npolicies:\n  a:\n    sources: [data/a]\n`);
    // without the API nothing could run it (with it, such a policy runs when triggered: server-api.test.ts)
    const r2 = await mb(['server', '--config', none, '--state-dir', path.join(base, 'state-bad'), '--listen', 'none'], { env, timeoutMs: 30_000 });
    assert.equal(r2.code, 2, r2.stderr);
    assert.match(r2.stderr, /no policy of .* has a schedule/);
  });
});
