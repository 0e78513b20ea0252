/**
 * End-to-end: restore drills and metrics through the real CLI, on real repositories (a local one,
 * and MinIO from the lab's test environment) with real files and real check scripts.
 * `meshback drill POLICY` restores the newest snapshot of the policy, verifies it, runs the
 * check with the restored directory in its environment, reports the RTO and deletes its scratch
 * directory; a damaged pack, a failing check, no snapshot, a target in use each fail with their
 * documented exit code and one line; `meshback server` runs a drill schedule as the job
 * NAME/drill; `meshback run|drill --metrics-textfile` writes the node_exporter text format and
 * `--pushgateway` pushes it (to a stand-in for the Pushgateway: an HTTP server on 127.0.0.1 that
 * records what it gets); a failed push is a warning.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { startS3 } from '../../lab/testenv/index.ts';
import type { S3Env } from '../../lab/testenv/index.ts';
import { BIN, listPacks, mb, rmrf, summary, tmpdir } from '../helpers/cli.ts';
import { parseExposition } from '../helpers/prom.ts';
import { liveServers, startServer } from '../helpers/server.ts';

interface DrillSummary {
  policy: string;
  ok: boolean;
  snapshot_id?: string;
  rto_seconds: number;
  restored_files: number;
  restored_bytes: number;
  verified: boolean;
  restore_dir?: string;
  kept?: boolean;
  damaged?: string[];
  check?: { phase: string; outcome: string; exit_code: number | null; output: string };
  failure?: { code: string; message: string };
}

/** KEY=VALUE lines as an object. */
async function readEnv(file: string): Promise<Record<string, string>> {
  const text = await fsp.readFile(file, 'utf8');
  return Object.fromEntries(text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

const sha256 = async (file: string): Promise<string> => createHash('sha256').update(await fsp.readFile(file)).digest('hex');

/** a stand-in for the Prometheus Pushgateway: records every request; answers 200 (or `status`) */
async function pushgatewayStandIn(status = 200) {
  const got: { method: string; url: string; body: string }[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      got.push({ method: req.method ?? '', url: req.url ?? '', body });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const port = (server.address() as { port: number }).port;
  return { got, url: `http://127.0.0.1:${port}`, close: () => new Promise<void>((res) => server.close(() => res())) };
}

describe('drill', () => {
  let base: string;
  let out: string;
  let scratch: string;
  let config: string;
  let env: Record<string, string>;
  const drill = (policy: string, ...extra: string[]) => mb(['drill', policy, '--config', config, '--scratch-dir', scratch, ...extra], { env, timeoutMs: 60_000 });
  const run = (policy: string, ...extra: string[]) => mb(['run', policy, '--config', config, ...extra], { env, timeoutMs: 60_000 });

  before(async () => {
    base = tmpdir('drill');
    out = path.join(base, 'out');
    scratch = path.join(base, 'scratch');
    await fsp.mkdir(out);
    await fsp.mkdir(path.join(base, 'data/conf'), { recursive: true });
    await fsp.writeFile(path.join(base, 'data/big.bin'), Buffer.from(Array.from({ length: 1_500_000 }, (_, i) => (Math.imul(i, 2654435761) >>> 13) & 0xff)));
    await fsp.writeFile(path.join(base, 'data/conf/envoy.yaml'), 'admin: {}\n');
    await fsp.writeFile(path.join(base, 'pw'), 'pw\n');
    // the check: records its environment, what it sees and the restored file's hash
    const check = path.join(base, 'check.sh');
    await fsp.writeFile(check, `#!/bin/sh\nenv | grep '^MESHBACK_' > "${out}/check.env"\nsha256sum "$MESHBACK_RESTORE_DIR/big.bin" | cut -d' ' -f1 > "${out}/check.sha"\necho "checked $MESHBACK_SNAPSHOT_ID"\n`, { mode: 0o755 });
    const fail = path.join(base, 'fail.sh');
    await fsp.writeFile(fail, `#!/bin/sh\necho "amcheck: index orders_pkey is corrupt" >&2\nexit 3\n`, { mode: 0o755 });
    config = path.join(base, 'policies.yaml');
    await fsp.writeFile(
      config,
      `version: 1
defaults:
  repository: ./repo
  password-file: ./pw
policies:
  envoy:
    sources: [data]
    rpo: 1h
    drill: { check: { exec: [${check}], timeout: 30s } }
  failing:
    sources: [data/conf]
    drill: { check: { exec: [${fail}] } }
  kept:
    sources: [data/conf]
    drill: { check: { exec: [${fail}] }, keep-on-failure: true }
  targeted:
    sources: [data/conf]
    drill: { target: ./target }
  never-run:
    sources: [data]
  damaged:
    repository: ./repo2
    sources: [data]
  slow:
    sources: [data/conf]
    drill: { target: ./slow-target, check: { exec: [sh, -c, 'touch "${out}/slow-started"; sleep 30'] } }
`,
    );
    for (const r of ['repo', 'repo2']) {
      const init = await mb(['init', '--repo', path.join(base, r), '--password-file', path.join(base, 'pw')]);
      assert.equal(init.code, 0, init.stderr);
    }
    env = { MESHBACK_PASSWORD: 'must-not-leak' };
  });
  after(async () => {
    for (const p of liveServers) p.kill('SIGKILL');
    await rmrf(base);
  });

  test('a drill restores the newest snapshot of the policy, verifies every byte, runs the check, reports the RTO, deletes its scratch', async () => {
    const first = await run('envoy', '--json');
    assert.equal(first.code, 0, first.stderr);
    await fsp.writeFile(path.join(base, 'data/conf/envoy.yaml'), 'admin: { address: 127.0.0.1 }\n');
    const second = await run('envoy', '--json');
    assert.equal(second.code, 0, second.stderr);
    const newest = summary(second.stdout)['snapshot_id'] as string;

    const r = await drill('envoy', '--json');
    assert.equal(r.code, 0, r.stderr);
    const s = summary(r.stdout) as unknown as DrillSummary;
    assert.equal(s.ok, true);
    assert.equal(s.snapshot_id, newest, 'the newest snapshot of the policy');
    assert.equal(s.verified, true);
    assert.equal(s.restored_files, 2);
    assert.equal(s.restored_bytes, 1_500_000 + 'admin: { address: 127.0.0.1 }\n'.length);
    assert.ok(s.rto_seconds > 0 && s.rto_seconds < 60, String(s.rto_seconds));
    assert.equal(s.check?.outcome, 'ok');
    assert.equal(s.check?.phase, 'check');
    assert.match(s.check!.output, new RegExp(`checked ${newest}`));
    // the check saw the restored data, the snapshot and the policy, never the password
    assert.equal((await fsp.readFile(path.join(out, 'check.sha'), 'utf8')).trim(), await sha256(path.join(base, 'data/big.bin')));
    const ce = await readEnv(path.join(out, 'check.env'));
    assert.equal(ce['MESHBACK_POLICY'], 'envoy');
    assert.equal(ce['MESHBACK_SNAPSHOT_ID'], newest);
    assert.equal(ce['MESHBACK_PHASE'], 'check');
    assert.equal(ce['MESHBACK_RESTORE_DIR'], s.restore_dir);
    assert.equal(path.dirname(s.restore_dir!), scratch);
    assert.equal(ce['MESHBACK_PASSWORD'], undefined);
    // the scratch directory is gone, its parent private
    assert.deepEqual(await fsp.readdir(scratch), []);
    assert.equal((await fsp.stat(scratch)).mode & 0o777, 0o700);

    // the text report: what was restored, the RTO, the check
    const t = await drill('envoy');
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, new RegExp(`^drill of policy envoy: ok: snapshot ${newest.slice(0, 8)} \\(`));
    assert.match(t.stdout, /\n {2}restore {3}ok: 2 files, .* restored to .*, every file read back and compared with the snapshot; RTO \d+\.\d\d s\n {2}check {5}ok \(/);
  });

  test('a failing check fails the drill: exit 14, one line naming the snapshot and the check; scratch deleted, or kept when asked', async () => {
    assert.equal((await run('failing')).code, 0);
    const r = await drill('failing', '--json');
    assert.equal(r.code, 14, r.stderr);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('meshback: '));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^meshback: drill of policy failing failed: snapshot [0-9a-f]{8} \(\S+\) was restored and verified, but its check failed: check hook 1 \(.*fail\.sh\) failed \(exit code 3\): amcheck: index orders_pkey is corrupt; the backup may not be usable: fix what the check found/);
    const s = summary(r.stdout) as unknown as DrillSummary;
    assert.equal(s.ok, false);
    assert.equal(s.verified, true);
    assert.deepEqual(s.failure?.code, 'HOOK');
    assert.equal(s.check?.exit_code, 3);
    assert.deepEqual(await fsp.readdir(scratch), []);

    assert.equal((await run('kept')).code, 0);
    const k = await drill('kept', '--json');
    assert.equal(k.code, 14);
    const ks = summary(k.stdout) as unknown as DrillSummary;
    assert.equal(ks.kept, true);
    assert.equal(await fsp.readFile(path.join(ks.restore_dir!, 'envoy.yaml'), 'utf8'), await fsp.readFile(path.join(base, 'data/conf/envoy.yaml'), 'utf8'));
    assert.ok(k.stdout.split('\n').some((l) => l.startsWith('{') && /the restored data is kept in .*drill-kept-.* \(keep-on-failure\): delete it when done/.test((JSON.parse(l) as { message?: string }).message ?? '')), k.stdout);
    await rmrf(ks.restore_dir!);
  });

  test('a damaged pack fails the drill: exit 4, one line naming the snapshot, the damaged file and what to do', async () => {
    const ok = await run('damaged', '--json');
    assert.equal(ok.code, 0, ok.stderr);
    const id = summary(ok.stdout)['snapshot_id'] as string;
    // the largest pack holds big.bin's chunks: bytes in its middle are changed
    const packs = await listPacks(path.join(base, 'repo2'));
    const sizes = await Promise.all(packs.map(async (p) => (await fsp.stat(p)).size));
    const pack = packs[sizes.indexOf(Math.max(...sizes))]!;
    const fh = await fsp.open(pack, 'r+');
    try {
      const mid = Math.floor(Math.max(...sizes) / 2);
      const b = Buffer.alloc(64);
      await fh.read(b, 0, 64, mid);
      for (let i = 0; i < b.length; i++) b[i] = b[i]! ^ 0xff;
      await fh.write(b, 0, 64, mid);
    } finally {
      await fh.close();
    }
    const textfile = path.join(out, 'damaged-drill.prom');
    const r = await drill('damaged', '--json', '--metrics-textfile', textfile);
    assert.equal(r.code, 4, r.stderr);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('meshback: '));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, new RegExp(`^meshback: drill of policy damaged failed: snapshot ${id.slice(0, 8)} \\(\\S+\\) cannot be restored intact: 1 file\\(s\\) damaged or missing in the repository \\(the first: big\\.bin\\); run 'meshback check --read-data' to find the damage, repair it .* and back the policy up again$`));
    const s = summary(r.stdout) as unknown as DrillSummary;
    assert.equal(s.failure?.code, 'INTEGRITY');
    assert.equal(s.verified, false);
    assert.deepEqual(s.damaged, ['big.bin']);
    assert.deepEqual(await fsp.readdir(scratch), []);
    // the alert in the metrics: the drill failed
    const e = parseExposition(await fsp.readFile(textfile, 'utf8'));
    assert.equal(e.value('meshback_drill_last_success', { policy: 'damaged' }), 0);
    assert.ok(e.value('meshback_drill_last_timestamp_seconds', { policy: 'damaged' })! > Date.now() / 1000 - 60);
  });

  test('no snapshot: exit 5; a target that is not empty: exit 8; nothing restored or deleted', async () => {
    const r = await drill('never-run');
    assert.equal(r.code, 5);
    assert.equal(r.stdout, 'drill of policy never-run: FAILED: no snapshot\n');
    assert.match(r.stderr, /^meshback: policy never-run has no snapshot in .*repo to drill \(a drill restores the newest snapshot tagged policy=never-run\): run the policy first \(meshback run never-run --config FILE\)\n$/);

    assert.equal((await run('targeted')).code, 0);
    const target = path.join(base, 'target');
    await fsp.mkdir(target);
    await fsp.writeFile(path.join(target, 'precious.txt'), 'not the drill\'s\n');
    const t = await drill('targeted');
    assert.equal(t.code, 8, t.stderr);
    assert.match(t.stderr, /meshback: the drill target .*target of policy targeted is not empty \(1 entries; the data of a drill kept after a failure\?\): look at it, empty it and run the drill again\n$/);
    assert.equal(await fsp.readFile(path.join(target, 'precious.txt'), 'utf8'), 'not the drill\'s\n');
    // emptied, the target is used and emptied again (not removed: it was there before)
    await fsp.rm(path.join(target, 'precious.txt'));
    const ok = await drill('targeted', '--json');
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((summary(ok.stdout) as unknown as DrillSummary).restore_dir, target);
    assert.deepEqual(await fsp.readdir(target), []);
  });

  test('a target a killed drill left data in (its marker names a process that is gone) is emptied by the next drill; one whose process runs is not', async () => {
    assert.equal((await run('targeted')).code, 0);
    const target = path.join(base, 'target');
    const marker = path.join(base, '.target.meshback-drill');
    await fsp.rm(target, { recursive: true, force: true });
    await fsp.mkdir(path.join(target, 'half'), { recursive: true });
    await fsp.writeFile(path.join(target, 'half', 'restored.bin'), 'what the killed drill had written\n');
    // a process id that is gone: a child that has exited
    const gone = spawn('true');
    await new Promise((res) => gone.on('exit', res));
    // a marker naming a running process (this test's runner): perhaps that drill, still going: left alone
    await fsp.writeFile(marker, JSON.stringify({ pid: process.pid, policy: 'targeted', started: '2026-12-06T00:00:00.000Z' }));
    const busy = await drill('targeted');
    assert.equal(busy.code, 8, busy.stderr);
    assert.match(busy.stderr, /is not empty \(1 entries/);
    assert.ok(await fsp.access(path.join(target, 'half', 'restored.bin')).then(() => true));
    await fsp.writeFile(marker, JSON.stringify({ pid: gone.pid, policy: 'targeted', started: '2026-12-06T00:00:00.000Z' }));
    const ok = await drill('targeted', '--json');
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(ok.stdout.includes(`the target ${target} held the data of a drill that did not finish (process ${gone.pid}, started 2026-12-06T00:00:00.000Z, killed?): emptied`), ok.stdout);
    assert.equal((summary(ok.stdout) as unknown as DrillSummary).ok, true);
    // the drill's own data and its marker are gone again; the target stays (it was there before)
    assert.deepEqual(await fsp.readdir(target), []);
    await assert.rejects(fsp.access(marker));
  });

  test('an interrupted drill (SIGTERM during its check) leaves no restored data behind: exit 130', async () => {
    assert.equal((await run('slow')).code, 0);
    const target = path.join(base, 'slow-target');
    const p = spawn(BIN, ['drill', 'slow', '--config', config], { env: { ...process.env, MESHBACK_TEST_SCRYPT_N: '1024', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((res) => p.on('exit', (code) => res(code)));
    try {
      for (let i = 0; i < 400; i++) {
        if (await fsp.access(path.join(out, 'slow-started')).then(() => true, () => false)) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok((await fsp.readdir(target)).length > 0, 'the check runs on the restored data');
      p.kill('SIGTERM');
      assert.equal(await exited, 130, stderr);
    } finally {
      p.kill('SIGKILL');
    }
    await assert.rejects(fsp.access(target), 'the target the drill made is gone');
  });

  test('metrics: run and drill textfiles in the node_exporter format; a push to the Pushgateway stand-in; a failed push is a warning', async () => {
    const runFile = path.join(out, 'meshback-envoy.prom');
    const drillFile = path.join(out, 'meshback-envoy-drill.prom');
    const gw = await pushgatewayStandIn();
    try {
      const t0 = Date.now() / 1000;
      const r = await run('envoy', '--json', '--metrics-textfile', runFile, '--pushgateway', `${gw.url}/`);
      assert.equal(r.code, 0, r.stderr);
      const rs = summary(r.stdout) as { snapshot_id: string; duration_seconds: number; backup: { files: number; bytes_added: number } };
      const e = parseExposition(await fsp.readFile(runFile, 'utf8'));
      const p = { policy: 'envoy' };
      assert.ok(e.value('meshback_last_success_timestamp_seconds', p)! >= Math.floor(t0));
      assert.equal(e.value('meshback_last_run_success', p), 1);
      assert.equal(e.value('meshback_last_run_duration_seconds', p), rs.duration_seconds);
      assert.equal(e.value('meshback_last_files', p), rs.backup.files);
      assert.equal(e.value('meshback_last_bytes_added', p), rs.backup.bytes_added);
      assert.equal(e.value('meshback_last_errors', p), 0);
      assert.equal(e.value('meshback_rpo_target_seconds', p), 3600);
      assert.ok(e.value('meshback_last_snapshot_timestamp_seconds', p)! >= Math.floor(t0));
      // a one-shot process: no counters, nothing computed at a later scrape's time, no process metrics
      assert.equal(e.types.has('meshback_runs_total'), false);
      assert.equal(e.types.has('meshback_snapshot_age_seconds'), false);
      assert.ok(!e.samples.some((x) => x.name.startsWith('process_')));
      assert.deepEqual((await fsp.readdir(out)).filter((f) => f.includes('.tmp-')), [], 'no temporary file left');

      assert.equal(gw.got.length, 1);
      assert.equal(gw.got[0]!.method, 'PUT');
      assert.equal(gw.got[0]!.url, `/metrics/job/meshback/instance/${encodeURIComponent(os.hostname())}/policy/envoy`);
      assert.equal(parseExposition(gw.got[0]!.body).value('meshback_last_run_success', p), 1);

      const d = await drill('envoy', '--metrics-textfile', drillFile, '--pushgateway', gw.url);
      assert.equal(d.code, 0, d.stderr);
      const de = parseExposition(await fsp.readFile(drillFile, 'utf8'));
      assert.equal(de.value('meshback_drill_last_success', p), 1);
      assert.ok(de.value('meshback_drill_rto_seconds', p)! > 0);
      // the drill's file repeats none of the run file's series (node_exporter reads both)
      const runNames = new Set(e.samples.map((x) => x.name));
      assert.deepEqual(de.samples.filter((x) => runNames.has(x.name)), []);
      assert.equal(gw.got.length, 2);
      assert.ok(gw.got[1]!.body.includes('meshback_drill_rto_seconds{policy="envoy"}'));
    } finally {
      await gw.close();
    }
    // a Pushgateway that is down, or refuses: the run succeeded and says so; the push is a warning
    const down = await run('envoy', '--pushgateway', gw.url);
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stderr, new RegExp(`warning: the metrics could not be pushed to the Pushgateway at ${gw.url.replace(/\./g, '\\.')} \\(.*ECONNREFUSED.*\\): the run's outcome stands`));
    const refusing = await pushgatewayStandIn(500);
    try {
      const r = await run('envoy', '--pushgateway', refusing.url);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /warning: the metrics could not be pushed .*status 500/);
      assert.equal(refusing.got.length, 1);
    } finally {
      await refusing.close();
    }
    // options that cannot work are refused before the run
    const bad = await run('envoy', '--metrics-textfile', path.join(base, 'no-such-dir/x.prom'));
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^meshback: --metrics-textfile .*x\.prom: the directory .*no-such-dir does not exist: give a file in node_exporter's textfile directory/);
    const badUrl = await drill('envoy', '--pushgateway', 'pushgateway:9091');
    assert.equal(badUrl.code, 2);
    assert.match(badUrl.stderr, /--pushgateway "pushgateway:9091" is not an http\(s\) URL/);
  });

  test('the server runs a drill schedule as the job NAME/drill, beside the policy\'s backups', { timeout: 90_000 }, async () => {
    const cfg = path.join(base, 'server.yaml');
    await fsp.writeFile(cfg, `version: 1\ndefaults: { repository: ./repo, password-file: ./pw }\npolicies:\n  srv:\n    sources: [data/conf]\n    schedule: every 1s\n    drill: { schedule: every 2s, check: { exec: [sh, -c, 'test -f "$MESHBACK_RESTORE_DIR/envoy.yaml"'] } }\n`);
    const stateDir = path.join(base, 'state');
    const s = startServer(['--config', cfg, '--state-dir', stateDir], {});
    const drills = (evs: { event?: string; policy?: string }[]) => evs.filter((e) => e.event === 'run-end' && e.policy === 'srv/drill');
    await s.waitFor((evs) => drills(evs).length >= 2, 40_000);
    s.kill('SIGTERM');
    assert.equal(await s.exited, 0, s.stderr());
    const ends = drills(s.events);
    assert.ok(ends.every((e) => (e as { ok?: boolean }).ok === true), JSON.stringify(ends));
    const start = s.events.find((e) => e.event === 'start') as unknown as { drills: { name: string; schedule: string }[] };
    assert.deepEqual(start.drills, [{ name: 'srv/drill', schedule: 'every 2s' }]);
    // the drill waited for its first tick (the first backup comes first)
    const firstDrill = s.events.find((e) => e.event === 'run-start' && e.policy === 'srv/drill') as unknown as { reason: string };
    assert.equal(firstDrill.reason, 'schedule');
    // recorded in the state file under its own name; its scratch directories are gone
    const st = JSON.parse(await fsp.readFile(path.join(stateDir, 'state.json'), 'utf8')) as { policies: Record<string, { outcome: string }> };
    assert.equal(st.policies['srv/drill']?.outcome, 'ok');
    assert.equal(st.policies['srv']?.outcome, 'ok');
    assert.deepEqual(await fsp.readdir(path.join(stateDir, 'drills')), []);
  });
});

describe('drill on an S3 repository (MinIO)', () => {
  let s3: S3Env;
  let base: string;
  before(async () => {
    s3 = await startS3();
    base = tmpdir('drill-s3');
  });
  after(async () => {
    await s3?.stop();
    await rmrf(base);
  });

  test('a policy backed up to S3 is restored from there and verified', { timeout: 3 * 60_000 }, async () => {
    const repo = `s3:${s3.endpoint}/${s3.bucket}/drill-${path.basename(base)}`;
    const env = { ...s3.env, AWS_PROFILE: undefined, AWS_SESSION_TOKEN: undefined, MESHBACK_PASSWORD: 'pw', MESHBACK_REPO: undefined, MESHBACK_CACHE_DIR: path.join(base, 'cache') };
    await fsp.mkdir(path.join(base, 'data'));
    await fsp.writeFile(path.join(base, 'data/file.bin'), Buffer.alloc(300_000, 7));
    const config = path.join(base, 'p.yaml');
    await fsp.writeFile(config, `version: 1\ndefaults: { repository: "${repo}" }\npolicies:\n  mesh:\n    sources: [data]\n    drill: { target: ./restored }\n`);
    assert.equal((await mb(['init', '--repo', repo], { env })).code, 0);
    const r = await mb(['run', 'mesh', '--config', config, '--json'], { env, timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    const d = await mb(['drill', 'mesh', '--config', config, '--json'], { env, timeoutMs: 120_000 });
    assert.equal(d.code, 0, d.stderr);
    const s = summary(d.stdout) as unknown as DrillSummary;
    assert.equal(s.snapshot_id, summary(r.stdout)['snapshot_id']);
    assert.equal(s.verified, true);
    assert.equal(s.restored_bytes, 300_000);
    assert.equal(s.restore_dir, path.join(base, 'restored'));
    await assert.rejects(fsp.access(path.join(base, 'restored')), 'a target the drill made is removed');
  });
});
