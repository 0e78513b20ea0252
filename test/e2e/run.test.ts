/**
 * End-to-end: `meshback run POLICY --config FILE` through the real CLI, with a real policy file,
 * real directories and real hook scripts: the hooks see the run's context in their environment
 * (and not the password), the backup carries the policy's tags and excludes, retention removes
 * only the policy's own snapshots, a failing pre hook runs on-error and exits 14, a hook past
 * its timeout is killed with its children, --json reports every phase.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BIN, mb, rmrf, summary, tmpdir, waitGone } from '../helpers/cli.ts';
import { startS3 } from '../../lab/testenv/index.ts';
import type { S3Env } from '../../lab/testenv/index.ts';
import { spawn } from 'node:child_process';

interface Phase {
  phase: string;
  outcome: string;
  started?: string;
  finished?: string;
  duration_seconds?: number;
  message?: string;
}
interface RunSummary {
  message_type: string;
  policy: string;
  ok: boolean;
  dry_run: boolean;
  phases: Phase[];
  hooks: { phase: string; index: number; outcome: string; exit_code: number | null; output: string }[];
  snapshot_id?: string;
  backup?: { files: number };
  retention?: { kept: number; removed: number; would_remove: number; removed_ids: string[] };
  prune?: { packs_deleted: number };
  failure?: { phase: string; code: string; message: string };
}
interface SnapshotRow {
  id: string;
  tags: string[];
  paths: string[];
}

const outcomes = (s: RunSummary): Record<string, string> => Object.fromEntries(s.phases.map((p) => [p.phase, p.outcome]));

/** KEY=VALUE lines of an env dump a hook wrote, as an object. */
async function readEnv(file: string): Promise<Record<string, string>> {
  const text = await fsp.readFile(file, 'utf8');
  return Object.fromEntries(text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** a one-hour maintenance window (UTC) that starts six hours from now, so never contains now */
function awayWindow(): string {
  const h = (new Date().getUTCHours() + 6) % 24;
  const hh = (x: number) => String(x).padStart(2, '0');
  return `${hh(h)}:00-${hh((h + 1) % 24)}:00`;
}

describe('run', () => {
  let base: string;
  let repo: string;
  let out: string;
  let config: string;
  let env: Record<string, string>;

  const snapshots = async (): Promise<SnapshotRow[]> => {
    const r = await mb(['snapshots', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.split('\n').find((l) => l.startsWith('['))!) as SnapshotRow[];
  };
  const run = (policy: string, ...extra: string[]) => mb(['run', policy, '--config', config, ...extra], { env, timeoutMs: 60_000 });

  before(async () => {
    base = tmpdir('run');
    repo = path.join(base, 'repo');
    out = path.join(base, 'out');
    await fsp.mkdir(out);
    await fsp.mkdir(path.join(base, 'data/envoy/cache'), { recursive: true });
    await fsp.mkdir(path.join(base, 'data/other'), { recursive: true });
    await fsp.writeFile(path.join(base, 'data/envoy/config.json'), '{"listeners":[]}\n');
    await fsp.writeFile(path.join(base, 'data/envoy/scratch.tmp'), 'temporary\n');
    await fsp.writeFile(path.join(base, 'data/envoy/cache/blob'), 'cached\n');
    await fsp.writeFile(path.join(base, 'data/other/file.txt'), 'other\n');
    // a hook that records its environment: dump-env.sh NAME writes out/NAME-<phase>.env
    const dump = path.join(base, 'dump-env.sh');
    await fsp.writeFile(dump, `#!/bin/sh\nenv | grep '^MESHBACK_' > "${out}/$1-$MESHBACK_PHASE.env"\necho "hook $1 ran in $MESHBACK_PHASE"\n`, { mode: 0o755 });
    const fail = path.join(base, 'fail.sh');
    await fsp.writeFile(fail, `#!/bin/sh\necho "cannot reach the database" >&2\nexit 3\n`, { mode: 0o755 });
    // a hook that hangs, with a child of its own that would outlive it if only the hook were killed
    const hang = path.join(base, 'hang.sh');
    await fsp.writeFile(hang, `#!/bin/sh\nsleep 300 &\necho $! > "${out}/$1.pid"\nwait\n`, { mode: 0o755 });
    // a hook that leaves a background process holding its stdout open
    const daemon = path.join(base, 'daemon.sh');
    await fsp.writeFile(daemon, `#!/bin/sh\nsleep 300 &\necho $! > "${out}/daemon.pid"\necho started\n`, { mode: 0o755 });
    await fsp.writeFile(path.join(base, 'pw'), 'pw\n');
    config = path.join(base, 'policies.yaml');
    await fsp.writeFile(
      config,
      `version: 1
defaults:
  repository: ./repo
  password-file: ./pw
policies:
  envoy:
    sources: [data/envoy]
    schedule: every 15m
    retention: { keep-last: 2 }
    prune: true
    rpo: 1h
    tags: { app: envoy }
    exclude: ["*.tmp", "cache/"]
    hooks:
      pre: [ { exec: [${dump}, envoy], timeout: 10s } ]
      post: [ { exec: [${dump}, envoy] } ]
      on-error: [ { exec: [${dump}, envoy] } ]
  other:
    sources: [data/other]
    retention: { keep-last: 1 }
  broken-pre:
    sources: [data/other]
    retention: { keep-last: 1 }
    hooks:
      pre: [ { exec: [${fail}] }, { exec: [${dump}, second-pre] } ]
      post: [ { exec: [${dump}, broken] } ]
      on-error: [ { exec: [${dump}, broken] }, { exec: [${dump}, broken2] } ]
  hanging:
    sources: [data/other]
    hooks:
      pre: [ { exec: [${hang}, hang-child], timeout: 1s } ]
      on-error: [ { exec: [${dump}, hanging] } ]
  slow:
    sources: [data/other]
    hooks:
      pre: [ { exec: [${hang}, slow-child], timeout: 1m } ]
  post-fails:
    sources: [data/other]
    retention: { keep-last: 1 }
    hooks:
      post: [ { exec: [${fail}] } ]
      on-error: [ { exec: [${dump}, post-fails] } ]
  daemon:
    sources: [data/other]
    hooks:
      post: [ { exec: [${daemon}], timeout: 30s } ]
  windowed:
    sources: [data/other]
    timezone: UTC
    retention: { keep-last: 1 }
    prune: { window: "${awayWindow()}" }
  missing-source:
    sources: [data/does-not-exist]
    hooks:
      on-error: [ { exec: [${dump}, missing] } ]
`,
    );
    env = { MESHBACK_PASSWORD: 'must-not-leak' };
    const init = await mb(['init', '--repo', repo, '--password-file', path.join(base, 'pw')], {});
    assert.equal(init.code, 0, init.stderr);
    env = { MESHBACK_REPO: repo, MESHBACK_PASSWORD: 'pw', XDG_STATE_HOME: path.join(base, 'state') };
  });
  after(async () => {
    await rmrf(base);
  });

  test('a run: hooks with the context, backup with tags and excludes, retention of the policy only, --json', async () => {
    // a snapshot of the same paths that no policy made: retention must leave it alone
    const manual = await mb(['backup', path.join(base, 'data/envoy'), '--json'], { env });
    assert.equal(manual.code, 0, manual.stderr);
    const manualId = summary(manual.stdout)['snapshot_id'] as string;
    assert.equal((await run('other')).code, 0);

    const ids: string[] = [];
    let last: RunSummary | undefined;
    for (let i = 0; i < 3; i++) {
      const r = await run('envoy', '--json');
      assert.equal(r.code, 0, r.stderr);
      last = summary(r.stdout) as unknown as RunSummary;
      assert.equal(last.ok, true);
      ids.push(last.snapshot_id!);
      assert.match(r.stderr, /pre hook 1 \(.*dump-env\.sh\): hook envoy ran in pre/);
    }
    const s = last!;
    assert.deepEqual(outcomes(s), { pre: 'ok', preset: 'skipped', backup: 'ok', post: 'ok', retention: 'ok', prune: 'ok', 'on-error': 'skipped' });
    for (const p of s.phases.filter((x) => x.outcome === 'ok')) {
      assert.ok(Date.parse(p.finished!) >= Date.parse(p.started!) && p.duration_seconds! >= 0, JSON.stringify(p));
    }
    assert.deepEqual(s.retention, { kept: 2, removed: 1, would_remove: 0, locked: 0, removed_ids: [ids[0]] });
    assert.equal(s.backup!.files, 1, 'the *.tmp file and cache/ were excluded');
    assert.equal(s.hooks.length, 2);

    // the hooks' environment: policy, phase, repository, the snapshot id after the backup; never the password
    const pre = await readEnv(path.join(out, 'envoy-pre.env'));
    const post = await readEnv(path.join(out, 'envoy-post.env'));
    assert.equal(pre['MESHBACK_POLICY'], 'envoy');
    assert.equal(pre['MESHBACK_PHASE'], 'pre');
    assert.equal(pre['MESHBACK_REPO'], repo);
    assert.equal(pre['MESHBACK_SNAPSHOT_ID'], undefined);
    assert.equal(post['MESHBACK_PHASE'], 'post');
    assert.equal(post['MESHBACK_SNAPSHOT_ID'], ids[2]);
    for (const e of [pre, post]) assert.equal(e['MESHBACK_PASSWORD'], undefined);
    await assert.rejects(fsp.access(path.join(out, 'envoy-on-error.env')));

    // retention removed only the oldest run of this policy: the manual snapshot and the other policy's stay
    const all = await snapshots();
    const byId = new Map(all.map((x) => [x.id, x]));
    assert.ok(byId.has(manualId), 'a snapshot without the policy tag is not the policy\'s');
    assert.ok(!byId.has(ids[0]!));
    assert.ok(byId.has(ids[1]!) && byId.has(ids[2]!));
    assert.deepEqual([...byId.get(ids[2]!)!.tags].sort(), ['app=envoy', 'policy=envoy']);
    assert.equal(all.filter((x) => x.tags.includes('policy=other')).length, 1);
    assert.equal(all.length, 4);

    // what the snapshot holds: the excludes applied
    const ls = await mb(['ls', ids[2]!], { env });
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /config\.json/);
    assert.doesNotMatch(ls.stdout, /scratch\.tmp|cache/);
  });

  test('--dry-run runs no hook, backs nothing up and removes nothing', async () => {
    const before = await snapshots();
    await rmrf(path.join(out, 'envoy-pre.env'));
    const r = await run('envoy', '--dry-run', '--json');
    assert.equal(r.code, 0, r.stderr);
    const s = summary(r.stdout) as unknown as RunSummary;
    assert.equal(s.dry_run, true);
    assert.deepEqual(outcomes(s), { pre: 'skipped', preset: 'skipped', backup: 'skipped', post: 'skipped', retention: 'ok', prune: 'skipped', 'on-error': 'skipped' });
    assert.equal(s.retention!.would_remove, 0);
    assert.deepEqual(await snapshots(), before);
    await assert.rejects(fsp.access(path.join(out, 'envoy-pre.env')));
    // a dry run that fails (no source checked, but a missing repository) runs no on-error hook either
    const missing = await mb(['run', 'envoy', '--config', config, '--dry-run', '--json'], { env: { ...env, MESHBACK_REPO: path.join(base, 'nowhere') } });
    assert.equal(missing.code, 0, 'the policy names its repository: --repo does not override it');
    await fsp.writeFile(path.join(base, 'elsewhere.yaml'), (await fsp.readFile(config, 'utf8')).replace('repository: ./repo', 'repository: ./nowhere'));
    const r2 = await mb(['run', 'envoy', '--config', path.join(base, 'elsewhere.yaml'), '--dry-run', '--json'], { env });
    assert.equal(r2.code, 10, r2.stderr);
    assert.equal(outcomes(summary(r2.stdout) as unknown as RunSummary)['on-error'], 'skipped');
    await assert.rejects(fsp.access(path.join(out, 'envoy-on-error.env')));
  });

  test('a failing pre hook stops the run, runs every on-error hook and exits 14', async () => {
    const before = await snapshots();
    const r = await run('broken-pre', '--json');
    assert.equal(r.code, 14, r.stderr);
    assert.match(r.stderr, /^meshback: pre hook 1 \(.*fail\.sh\) failed \(exit code 3\): cannot reach the database$/m);
    const s = summary(r.stdout) as unknown as RunSummary;
    assert.equal(s.ok, false);
    assert.deepEqual(s.failure && { phase: s.failure.phase, code: s.failure.code }, { phase: 'pre', code: 'HOOK' });
    assert.deepEqual(outcomes(s), { pre: 'failed', preset: 'skipped', backup: 'skipped', post: 'skipped', retention: 'skipped', prune: 'skipped', 'on-error': 'ok' });
    // the second pre hook and the post hook never ran; both on-error hooks did, with the failure
    await assert.rejects(fsp.access(path.join(out, 'second-pre-pre.env')));
    await assert.rejects(fsp.access(path.join(out, 'broken-post.env')));
    const onError = await readEnv(path.join(out, 'broken-on-error.env'));
    assert.equal(onError['MESHBACK_PHASE'], 'on-error');
    assert.equal(onError['MESHBACK_POLICY'], 'broken-pre');
    assert.equal(onError['MESHBACK_FAILED_PHASE'], 'pre');
    assert.match(onError['MESHBACK_ERROR']!, /failed \(exit code 3\)/);
    await fsp.access(path.join(out, 'broken2-on-error.env'));
    assert.deepEqual(await snapshots(), before, 'no snapshot was made');
  });

  test('a hook past its timeout is killed, with its children, and the run exits 14', async () => {
    const r = await run('hanging');
    assert.equal(r.code, 14, r.stderr);
    assert.match(r.stderr, /pre hook 1 \(.*hang\.sh\) did not finish within its timeout of 1s and was killed/);
    assert.ok(r.ms < 20_000, `took ${r.ms} ms`);
    const pid = Number(await fsp.readFile(path.join(out, 'hang-child.pid'), 'utf8'));
    assert.ok(pid > 0);
    // the hook's own child (sleep 300) went with its process group
    const alive = !(await waitGone(pid));
    assert.equal(alive, false, `the hook's child ${pid} is still running`);
    assert.equal((await readEnv(path.join(out, 'hanging-on-error.env')))['MESHBACK_FAILED_PHASE'], 'pre');
  });

  test('meshback interrupted (SIGTERM) during a hook ends the hook too, exit 130', async () => {
    const p = spawn(BIN, ['run', 'slow', '--config', config], { env: { ...process.env, ...env }, stdio: 'ignore' });
    const exited = new Promise<number | null>((res) => p.on('exit', (code) => res(code)));
    const pidFile = path.join(out, 'slow-child.pid');
    let pid = 0;
    for (let i = 0; i < 200 && pid === 0; i++) {
      pid = Number(await fsp.readFile(pidFile, 'utf8').catch(() => '0'));
      if (pid === 0) await new Promise((res) => setTimeout(res, 50));
    }
    assert.ok(pid > 0, 'the hook started');
    // one run of a policy at a time: a second run of it is refused while the first goes on
    const lockFile = path.join(base, 'state/meshback/running/slow.lock');
    const second = await run('slow');
    assert.equal(second.code, 11, second.stderr);
    assert.match(second.stderr, /^meshback: policy slow is already running \(meshback run, pid \d+, since [-\d:.TZ]+\): wait for that run to end; one run of a policy at a time\n$/);
    assert.equal((JSON.parse(await fsp.readFile(lockFile, 'utf8')) as { pid: number }).pid, p.pid);
    p.kill('SIGTERM');
    assert.equal(await exited, 130);
    await assert.rejects(fsp.access(lockFile), 'an interrupted run removes its run lock');
    const alive = !(await waitGone(pid));
    if (alive) process.kill(pid, 'SIGKILL');
    assert.equal(alive, false, `the hook's child ${pid} outlived meshback`);
  });

  test('a run lock left by a killed run (its process gone) is taken over with a warning', async () => {
    const lockFile = path.join(base, 'state/meshback/running/other.lock');
    await fsp.mkdir(path.dirname(lockFile), { recursive: true });
    await fsp.writeFile(lockFile, JSON.stringify({ pid: 2 ** 22 + 7, host: os.hostname(), started: '2026-12-06T01:00:00.000Z', by: 'meshback run' }));
    const r = await run('other');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /a stale run lock of policy other \(pid 4194311 on .*, since 2026-12-06T01:00:00.000Z, is gone\) was removed/);
    await assert.rejects(fsp.access(lockFile), 'released at the end');
  });

  test('a hook that leaves a process holding its output open does not hold up the run', async () => {
    const r = await run('daemon', '--json');
    const pid = Number(await fsp.readFile(path.join(out, 'daemon.pid'), 'utf8'));
    try {
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.ms < 15_000, `took ${r.ms} ms`);
      const s = summary(r.stdout) as unknown as RunSummary;
      assert.equal(s.hooks[0]!.outcome, 'ok');
      assert.equal(s.hooks[0]!.output, 'started\n');
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  });

  test('a failed post hook keeps the snapshot but skips retention, runs on-error and exits 14', async () => {
    const first = await run('post-fails', '--json');
    assert.equal(first.code, 14, first.stderr);
    const r = await run('post-fails', '--json');
    assert.equal(r.code, 14, r.stderr);
    const s = summary(r.stdout) as unknown as RunSummary;
    assert.deepEqual(outcomes(s), { pre: 'skipped', preset: 'skipped', backup: 'ok', post: 'failed', retention: 'skipped', prune: 'skipped', 'on-error': 'ok' });
    assert.equal(s.failure!.phase, 'post');
    const mine = (await snapshots()).filter((x) => x.tags.includes('policy=post-fails'));
    assert.equal(mine.length, 2, 'keep-last 1 was not applied after a failed post hook');
    assert.ok(mine.some((x) => x.id === s.snapshot_id));
    const e = await readEnv(path.join(out, 'post-fails-on-error.env'));
    assert.equal(e['MESHBACK_SNAPSHOT_ID'], s.snapshot_id);
    assert.equal(e['MESHBACK_FAILED_PHASE'], 'post');
  });

  test('a failed backup runs on-error and exits with the backup error code', async () => {
    const r = await run('missing-source', '--json');
    assert.equal(r.code, 5, r.stderr);
    const s = summary(r.stdout) as unknown as RunSummary;
    assert.equal(s.failure!.phase, 'backup');
    assert.equal(outcomes(s)['on-error'], 'ok');
    assert.equal((await readEnv(path.join(out, 'missing-on-error.env')))['MESHBACK_FAILED_PHASE'], 'backup');
  });

  test('a policy with a maintenance window prunes only inside it; --maintenance prunes now and nothing else', async () => {
    const first = await run('windowed', '--json');
    assert.equal(first.code, 0, first.stderr);
    const r = await run('windowed', '--json');
    assert.equal(r.code, 0, r.stderr);
    const s = summary(r.stdout) as unknown as RunSummary;
    assert.deepEqual(outcomes(s), { pre: 'skipped', preset: 'skipped', backup: 'ok', post: 'skipped', retention: 'ok', prune: 'skipped', 'on-error': 'skipped' });
    assert.equal(s.retention!.removed, 1);
    assert.match(s.phases.find((p) => p.phase === 'prune')!.message!, /^outside the maintenance window \d\d:\d\d-\d\d:\d\d UTC: the server prunes at its start \(or run meshback run windowed --maintenance in it\)$/);
    const before = (await snapshots()).length;
    const m = await run('windowed', '--maintenance', '--json');
    assert.equal(m.code, 0, m.stderr);
    const ms = summary(m.stdout) as unknown as RunSummary;
    assert.deepEqual(outcomes(ms), { pre: 'skipped', preset: 'skipped', backup: 'skipped', post: 'skipped', retention: 'skipped', prune: 'ok', 'on-error': 'skipped' });
    assert.ok(ms.prune !== undefined && ms.snapshot_id === undefined);
    assert.equal((await snapshots()).length, before, 'a maintenance run makes and removes no snapshot');
    const text = await run('windowed', '--maintenance');
    assert.match(text.stdout, /prune\s+ok \([\d.]+ s\): \d+ pack\(s\) deleted/);
    const no = await run('other', '--maintenance');
    assert.equal(no.code, 2);
    assert.equal(no.stderr, 'meshback: policy other does not prune, so a maintenance run has nothing to do: give it prune: true or prune: {window: "01:00-05:00"}\n');
  });

  test('a bad policy file, an unknown policy, no --config: one line, documented codes', async () => {
    const bad = path.join(base, 'bad.yaml');
    await fsp.writeFile(bad, 'version: 1\npolicies:\n  envoy:\n    sources: [/x]\n    retention:\n      keep-daily: seven\n');
    let r = await mb(['run', 'envoy', '--config', bad], { env });
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'meshback: bad.yaml:6: policies.envoy.retention.keep-daily: must be a whole number of at least 1, or -1 for unlimited (it is "seven")\n');
    r = await run('nope');
    assert.equal(r.code, 5);
    assert.match(r.stderr, /^meshback: policy "nope" is not in .*policies\.yaml: it names envoy, other, broken-pre, hanging, slow, post-fails, daemon, windowed, missing-source\n$/);
    r = await mb(['run', 'envoy'], { env });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /run needs the policy file: meshback run POLICY --config FILE/);
  });
});

describe('run on an S3 repository (MinIO)', () => {
  let s3: S3Env;
  let base: string;
  before(async () => {
    s3 = await startS3();
    base = tmpdir('run-s3');
  });
  after(async () => {
    await s3?.stop();
    await rmrf(base);
  });

  test('backup, retention and prune of a policy whose repository is on S3', { timeout: 3 * 60_000 }, async () => {
    const repo = `s3:${s3.endpoint}/${s3.bucket}/run-${path.basename(base)}`;
    const env = { ...s3.env, AWS_PROFILE: undefined, AWS_SESSION_TOKEN: undefined, MESHBACK_PASSWORD: 'pw', MESHBACK_REPO: undefined, MESHBACK_CACHE_DIR: path.join(base, 'cache') };
    await fsp.mkdir(path.join(base, 'data'));
    const config = path.join(base, 'p.yaml');
    await fsp.writeFile(config, `version: 1\ndefaults: { repository: "${repo}" }\npolicies:\n  mesh:\n    sources: [data]\n    retention: { keep-last: 1 }\n    prune: true\n`);
    assert.equal((await mb(['init', '--repo', repo], { env })).code, 0);
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      // different content each time, so that prune has a pack to delete
      await fsp.writeFile(path.join(base, 'data/file.bin'), Buffer.alloc(200_000, i + 1));
      const r = await mb(['run', 'mesh', '--config', config, '--json'], { env, timeoutMs: 120_000 });
      assert.equal(r.code, 0, r.stderr);
      const s = summary(r.stdout) as unknown as RunSummary;
      ids.push(s.snapshot_id!);
      if (i === 1) {
        assert.deepEqual(s.retention!.removed_ids, [ids[0]]);
        assert.ok(s.prune!.packs_deleted >= 1, JSON.stringify(s.prune));
      }
    }
    const list = await mb(['snapshots', '--json', '--repo', repo], { env });
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual((JSON.parse(list.stdout.split('\n').find((l) => l.startsWith('['))!) as SnapshotRow[]).map((x) => x.id), [ids[1]]);
  });
});
