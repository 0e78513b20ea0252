/**
 * The policy file: every field read into the resolved policy, and each kind of mistake refused
 * with one line naming the file, the line and the field (src/policy/load.ts, schema.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { MeshbackError } from '../../src/errors/index.ts';
import { inWindow, loadPolicyFile, nextRunAfter, parsePolicyFile, parseWindow, windowStart } from '../../src/policy/index.ts';
import { rmrf, tmpdir } from '../helpers/cli.ts';

const FULL = `# every field
version: 1
defaults:
  repository: s3:http://127.0.0.1:9000/bucket/repo
  password-file: /etc/meshback/pw
policies:
  envoy-config:
    sources: [/var/lib/istio/data, rel/dir]
    repository: ./repo
    password-file: secret/pw
    schedule: "cron: 0 2 * * *"
    timezone: Europe/Berlin
    retention: { keep-last: 3, keep-hourly: -1, keep-daily: 7, keep-weekly: 4, keep-monthly: 12, keep-yearly: 2, keep-within: 30d, keep-tag: [keep=yes] }
    prune: true
    rpo: 1h
    tags: { app: envoy, tier: mesh }
    exclude: ["*.tmp", "cache/"]
    hooks:
      pre:  [ { exec: [pg_backup_start.sh, --fast], timeout: 30s } ]
      post: [ { exec: [pg_backup_stop.sh] } ]
      on-error: [ { exec: [notify, failed], timeout: 1m } ]
    drill: { schedule: "every 24h", check: { exec: [check.sh], timeout: 10m } }
  minimal:
    sources: [/srv]
    schedule: every 15m
`;

test('every field is read into the resolved policy', () => {
  const f = parsePolicyFile(FULL, '/etc/meshback/policies.yaml');
  assert.deepEqual([...f.policies.keys()], ['envoy-config', 'minimal']);
  const p = f.policies.get('envoy-config')!;
  assert.deepEqual(p.sources, ['/var/lib/istio/data', '/etc/meshback/rel/dir']);
  assert.equal(p.repository, '/etc/meshback/repo');
  assert.equal(p.passwordFile, '/etc/meshback/secret/pw');
  assert.deepEqual(p.schedule, { kind: 'cron', expr: '0 2 * * *', timezone: 'Europe/Berlin', text: 'cron: 0 2 * * *' });
  assert.deepEqual(p.retention, { last: 3, hourly: -1, daily: 7, weekly: 4, monthly: 12, yearly: 2, within: 30 * 86_400_000, withinLabel: '30d', tags: ['keep=yes'] });
  assert.equal(p.prune, true);
  assert.equal(p.rpoMs, 3_600_000);
  assert.deepEqual(p.tags, ['policy=envoy-config', 'app=envoy', 'tier=mesh']);
  assert.deepEqual(p.exclude, ['*.tmp', 'cache/']);
  assert.deepEqual(p.hooks, {
    pre: [{ exec: ['pg_backup_start.sh', '--fast'], timeoutMs: 30_000 }],
    post: [{ exec: ['pg_backup_stop.sh'], timeoutMs: 300_000 }],
    onError: [{ exec: ['notify', 'failed'], timeoutMs: 60_000 }],
  });
  assert.deepEqual(p.drill, { schedule: { kind: 'every', everyMs: 86_400_000, text: 'every 24h' }, check: { exec: ['check.sh'], timeoutMs: 600_000 }, keepOnFailure: false });
  // the defaults fill what a policy leaves out; m is minutes
  const m = f.policies.get('minimal')!;
  assert.equal(m.repository, 's3:http://127.0.0.1:9000/bucket/repo');
  assert.equal(m.passwordFile, '/etc/meshback/pw');
  assert.deepEqual(m.schedule, { kind: 'every', everyMs: 15 * 60_000, text: 'every 15m' });
  assert.equal(m.retention, undefined);
  assert.equal(m.prune, false);
  assert.deepEqual(m.tags, ['policy=minimal']);
  assert.deepEqual(m.hooks, { pre: [], post: [], onError: [] });
});

/** The one-line message parsePolicyFile refuses `text` with (exit 2: a UsageError). */
function refusal(text: string): string {
  try {
    parsePolicyFile(text, '/etc/meshback/policies.yaml');
  } catch (err) {
    assert.ok(err instanceof MeshbackError, String(err));
    assert.equal(err.code, 'USAGE');
    assert.ok(!err.message.includes('\n'), `one line: ${err.message}`);
    return err.message;
  }
  assert.fail(`accepted: ${text}`);
}

const base = (policy: string): string => `version: 1\npolicies:\n  envoy:\n    sources: [/srv]\n${policy}`;

test('a wrong value names the file, its line and the field', () => {
  assert.equal(
    refusal(base('    schedule: every 1h\n    retention:\n      keep-last: 3\n      keep-daily: seven\n')),
    'policies.yaml:8: policies.envoy.retention.keep-daily: must be a whole number of at least 1, or -1 for unlimited (it is "seven")',
  );
  assert.match(refusal(base('    retention: { keep-daily: 2.5 }\n')), /^policies\.yaml:5: policies\.envoy\.retention\.keep-daily: must be a whole number \(it is 2\.5\)$/);
  assert.match(refusal(base('    retention: { keep-last: 0 }\n')), /^policies\.yaml:5: policies\.envoy\.retention\.keep-last: must be a whole number of at least 1, or -1/);
  assert.match(refusal(base('    prune: yes please\n')), /^policies\.yaml:5: policies\.envoy\.prune: must be true, false, or \{window: HH:MM-HH:MM\}/);
  assert.match(refusal(base('    prune: { window: 25:00-03:00 }\n')), /^policies\.yaml:5: policies\.envoy\.prune\.window: must be a daily window HH:MM-HH:MM such as 01:00-05:00/);
  assert.match(refusal(base('    prune: { window: 01:00-05:00, every: 1d }\n')), /^policies\.yaml:5: policies\.envoy\.prune: must be true, false, or \{window: HH:MM-HH:MM\}/);
  assert.match(refusal(base('    tags: { policy: other }\n')), /^policies\.yaml:5: policies\.envoy\.tags\.policy: must not be "policy"/);
  assert.match(refusal(base('    tags: { release: 1.4 }\n')), /^policies\.yaml:5: policies\.envoy\.tags\.release: must be a string \(it is 1\.4\)$/);
  assert.match(refusal(base('    timezone: Mars/Olympus\n')), /^policies\.yaml:5: policies\.envoy\.timezone: must be an IANA time zone/);
  assert.match(refusal(base('    hooks:\n      pre:\n        - exec: []\n')), /^policies\.yaml:7: policies\.envoy\.hooks\.pre\[0\]\.exec: must have at least 1 entries$/);
  assert.match(refusal(base('    hooks:\n      pre:\n        - exec: "pg_backup_start.sh"\n')), /^policies\.yaml:7: policies\.envoy\.hooks\.pre\[0\]\.exec: must be a list \(it is "pg_backup_start\.sh"\)$/);
  assert.match(refusal(base('    exclude: ["*.tmp", "!"]\n')), /^policies\.yaml:5: policies\.envoy\.exclude\[1\]: is not a valid pattern \(exclude pattern "!" is empty/);
  assert.match(refusal(base('    retention: {}\n')), /^policies\.yaml:5: policies\.envoy\.retention: has no keep rule, which would remove every snapshot/);
});

test('bad durations and schedules are refused in the project grammar', () => {
  assert.match(refusal(base('    rpo: 60\n')), /^policies\.yaml:5: policies\.envoy\.rpo: must be a duration such as 30s, 15m/);
  assert.match(refusal(base('    rpo: "60"\n')), /policies\.envoy\.rpo: must be a duration .* \(it is "60"\)$/);
  assert.match(refusal(base('    rpo: 1 hour\n')), /policies\.envoy\.rpo: must be a duration/);
  assert.match(refusal(base('    retention: { keep-within: 7days }\n')), /policies\.envoy\.retention\.keep-within: must be a duration/);
  assert.match(refusal(base('    hooks: { pre: [ { exec: [x], timeout: 0s } ] }\n')), /policies\.envoy\.hooks\.pre\[0\]\.timeout: must be a duration/);
  assert.match(refusal(base('    schedule: every fortnight\n')), /^policies\.yaml:5: policies\.envoy\.schedule: must be "every DURATION" with a duration/);
  assert.match(refusal(base('    schedule: hourly\n')), /^policies\.yaml:5: policies\.envoy\.schedule: must be "every DURATION" \(e\.g\. every 15m\) or "cron: EXPR"/);
  assert.match(refusal(base('    schedule: "cron: 61 2 * * *"\n')), /^policies\.yaml:5: policies\.envoy\.schedule: must be a valid cron expression \(.*\): five fields/);
  assert.match(refusal(base('    schedule: "cron: 0 2 * *"\n')), /policies\.envoy\.schedule: must be a valid cron expression/);
  assert.match(refusal(base('    drill: { schedule: "cron: * * * * * * * *" }\n')), /^policies\.yaml:5: policies\.envoy\.drill\.schedule: must be a valid cron expression/);
  // accepted: m is minutes, mo months; a six-field cron (seconds first)
  const ok = parsePolicyFile(base('    rpo: 1h30m\n    schedule: "cron: 0 */5 * * * *"\n    retention: { keep-within: 1y6mo }\n'), 'p.yaml').policies.get('envoy')!;
  assert.equal(ok.rpoMs, 90 * 60_000);
  assert.equal(ok.retention?.within, 545 * 86_400_000);
});

test('a drill: its target relative to the file, never a source or around one; no schedule needed', () => {
  const ok = parsePolicyFile(base('    drill: { target: scratch/envoy, keep-on-failure: true }\n'), '/etc/mb/p.yaml').policies.get('envoy')!;
  assert.deepEqual(ok.drill, { target: '/etc/mb/scratch/envoy', keepOnFailure: true });
  assert.equal(
    refusal(base('    drill: { target: /srv }\n')),
    'policies.yaml:5: policies.envoy.drill.target: /srv is the source /srv: a drill restores into its target and deletes it afterwards; give a scratch directory apart from the sources',
  );
  assert.match(refusal(base('    drill:\n      target: /srv/restore\n')), /^policies\.yaml:6: policies\.envoy\.drill\.target: \/srv\/restore is inside the source \/srv: /);
  assert.match(refusal(base('    drill: { target: / }\n')), /drill\.target: \/ contains the source \/srv: /);
  // a sibling whose name starts like the source is apart from it
  assert.equal(parsePolicyFile(base('    drill: { target: /srv-drill }\n'), 'p.yaml').policies.get('envoy')!.drill?.target, '/srv-drill');
  assert.match(refusal(base('    drill: { keep: true }\n')), /policies\.envoy\.drill\.keep: is not a known field/);
});

test('unknown keys are refused, at every level', () => {
  assert.match(refusal(base('    retention: { keep-daliy: 7 }\n')), /^policies\.yaml:5: policies\.envoy\.retention\.keep-daliy: is not a known field: check its spelling$/);
  assert.match(refusal(base('    hooks:\n      pre:\n        - exec: [x]\n          url: http://x\n')), /^policies\.yaml:8: policies\.envoy\.hooks\.pre\[0\]\.url: is not a known field/);
  assert.match(refusal(base('    schedul: every 1h\n')), /^policies\.yaml:5: policies\.envoy\.schedul: is not a known field/);
  assert.match(refusal('version: 1\npolicy:\n  a: { sources: [/x] }\n'), /^policies\.yaml:\d: (policies: is missing|policy: is not a known field)/);
  assert.match(refusal('version: 1\ndefaults: { repo: /x }\npolicies:\n  a: { sources: [/x] }\n'), /^policies\.yaml:2: defaults\.repo: is not a known field/);
});

test('the file as a whole: version, policies, names, YAML syntax', () => {
  assert.match(refusal('version: 2\npolicies:\n  a: { sources: [/x] }\n'), /^policies\.yaml:1: version: must be 1 \(it is 2\)$/);
  assert.match(refusal('policies:\n  a: { sources: [/x] }\n'), /^policies\.yaml:1: version: is missing$/);
  assert.match(refusal('version: 1\npolicies: {}\n'), /^policies\.yaml:2: policies: is empty: name at least one policy$/);
  assert.match(refusal('version: 1\npolicies:\n  "bad name": { sources: [/x] }\n'), /^policies\.yaml:3: policies\.bad name: must be a name of letters/);
  assert.match(refusal('version: 1\npolicies:\n  a: { sources: [] }\n'), /^policies\.yaml:3: policies\.a\.sources: must have at least 1 entries$/);
  assert.match(refusal('version: 1\npolicies:\n  a:\n    schedule: every 1h\n'), /^policies\.yaml:3: policies\.a\.sources: is missing$/);
  assert.match(refusal('version: 1\npolicies:\n  a: { sources: [/x] }\n  a: { sources: [/y] }\n'), /^policies\.yaml:4: not valid YAML \(Map keys must be unique/);
  assert.match(refusal('version: 1\npolicies:\n  a: { sources: [/x]\n'), /^policies\.yaml:\d: not valid YAML/);
  assert.match(refusal('- 1\n- 2\n'), /^policies\.yaml:1: \(top level\): must be an object \(it is a list\)$/);
});

test('loadPolicyFile: a missing file is NOT_FOUND, naming it', async () => {
  const dir = tmpdir('policy');
  try {
    await assert.rejects(loadPolicyFile(path.join(dir, 'nope.yaml')), (e: MeshbackError) => e.code === 'NOT_FOUND' && /policy file .*nope\.yaml does not exist/.test(e.message));
    await fsp.writeFile(path.join(dir, 'p.yaml'), base(''));
    const f = await loadPolicyFile(path.join(dir, 'p.yaml'));
    assert.deepEqual(f.policies.get('envoy')!.sources, ['/srv']);
  } finally {
    await rmrf(dir);
  }
});

test('a maintenance window: HH:MM-HH:MM in the policy\'s time zone, possibly across midnight; the server prunes at its start', () => {
  const p = parsePolicyFile('version: 1\npolicies:\n  a:\n    sources: [/x]\n    timezone: Europe/Berlin\n    prune: { window: "22:30-02:00" }\n', 'p.yaml').policies.get('a')!;
  assert.equal(p.prune, true);
  const w = p.pruneWindow!;
  assert.deepEqual(w, { start: 22 * 60 + 30, end: 120, timezone: 'Europe/Berlin', text: '22:30-02:00' });
  // Berlin is UTC+1 in December: 22:30-02:00 local is 21:30-01:00 UTC
  assert.equal(inWindow(w, Date.parse('2026-12-06T21:29:00Z')), false);
  assert.equal(inWindow(w, Date.parse('2026-12-06T21:30:00Z')), true);
  assert.equal(inWindow(w, Date.parse('2026-12-06T23:59:00Z')), true);
  assert.equal(inWindow(w, Date.parse('2026-12-07T00:59:00Z')), true);
  assert.equal(inWindow(w, Date.parse('2026-12-07T01:00:00Z')), false, 'the end is exclusive');
  const s = windowStart(w);
  assert.equal(nextRunAfter(s, Date.parse('2026-12-06T12:00:00Z')), Date.parse('2026-12-06T21:30:00Z'));
  const day = parseWindow('01:00-05:00', 'UTC')!;
  assert.equal(inWindow(day, Date.parse('2026-12-06T04:59:59Z')), true);
  assert.equal(inWindow(day, Date.parse('2026-12-06T05:00:00Z')), false);
  assert.equal(parseWindow('00:00-24:00')!.end, 0);
  assert.equal(inWindow(parseWindow('00:00-24:00')!, Date.now()), true, 'the whole day');
  for (const bad of ['1:00-5:00', '01:00-01:00', '01:00', '01:60-02:00', '24:00-01:00']) assert.equal(parseWindow(bad), undefined, bad);
});

test('presets: each type read and resolved (paths against the file), in list order', () => {
  const f = parsePolicyFile(
    `version: 1
policies:
  orders:
    sources: [/srv/pg, data]
    presets:
      - { type: postgres, data-dir: /srv/pg/main, host: /run/postgresql, port: 5433, user: backup, database: app, password-file: pgpw, replication-slot: false, fast: false, timeout: 2m }
      - { type: btrfs-snapshot, snapshot-dir: snaps }
  frozen:
    sources: [/mnt/data/app]
    presets: [ { type: fsfreeze, mount: /mnt/data, timeout: 30s } ]
  none:
    sources: [/srv]
`,
    '/etc/meshback/policies.yaml',
  );
  assert.deepEqual(f.policies.get('orders')!.presets, [
    { type: 'postgres', 'data-dir': '/srv/pg/main', host: '/run/postgresql', port: 5433, user: 'backup', database: 'app', 'password-file': '/etc/meshback/pgpw', 'replication-slot': false, fast: false, timeout: '2m' },
    { type: 'btrfs-snapshot', 'snapshot-dir': '/etc/meshback/snaps' },
  ]);
  assert.deepEqual(f.policies.get('frozen')!.presets, [{ type: 'fsfreeze', mount: '/mnt/data', timeout: '30s' }]);
  assert.deepEqual(f.policies.get('none')!.presets, []);
});

test('presets: a wrong option names the file, its line and the field', () => {
  const pre = (list: string): string => base(`    presets:\n${list}`);
  assert.equal(refusal(pre('      - type: postgres\n        data-dir: /srv/pg\n        prot: 5432\n')), 'policies.yaml:8: policies.envoy.presets[0].prot: is not a known field: check its spelling');
  assert.match(refusal(pre('      - { type: postgres, data-dir: /srv/pg, port: "5432x" }\n')), /^policies\.yaml:6: policies\.envoy\.presets\[0\]\.port: must be a number \(it is "5432x"\)$/);
  assert.match(refusal(pre('      - { type: postgres, data-dir: /srv/pg, port: 70000 }\n')), /^policies\.yaml:6: policies\.envoy\.presets\[0\]\.port: must be at most 65535 \(it is 70000\)$/);
  assert.match(refusal(pre('      - { type: postgres }\n')), /^policies\.yaml:6: policies\.envoy\.presets\[0\]\.data-dir: is missing$/);
  assert.match(refusal(pre('      - { type: postgres, data-dir: /var/lib/postgresql }\n')), /^policies\.yaml:6: policies\.envoy\.presets\[0\]\.data-dir: \/var\/lib\/postgresql is not one of the policy's sources nor below one: add it/);
  assert.match(refusal(pre('      - { type: fsfreeze, mount: /srv, timeout: 10 }\n')), /^policies\.yaml:6: policies\.envoy\.presets\[0\]\.timeout: must be a duration such as 30s, 15m, 1h30m, 7d \(units ms, s, m\/min, h, d, w, mo, y; m is minutes\) \(it is 10\)$/);
  assert.match(refusal(pre('      - { type: fsfreeze }\n')), /^policies\.yaml:6: policies\.envoy\.presets\[0\]\.mount: is missing$/);
  assert.match(refusal(pre('      - { type: mysql }\n')), /^policies\.yaml:6: policies\.envoy\.presets\[0\]\.type: must have a type: one of postgres, fsfreeze, btrfs-snapshot.* \(it is "mysql"\)$/);
  assert.match(refusal(pre('      - { data-dir: /srv }\n')), /^policies\.yaml:6: policies\.envoy\.presets\[0\]\.type: is missing$/);
  assert.match(refusal(base('    presets: { type: postgres }\n')), /^policies\.yaml:5: policies\.envoy\.presets: must be a list \(it is an object\)$/);
  // order and repetition
  assert.match(
    refusal(pre('      - { type: btrfs-snapshot }\n      - { type: postgres, data-dir: /srv/pg }\n')),
    /^policies\.yaml:7: policies\.envoy\.presets\[1\]\.type: must come before the btrfs-snapshot preset \(the snapshot must be taken inside the backup mode pg_backup_start opens\): move it up$/,
  );
  assert.match(refusal(pre('      - { type: fsfreeze, mount: /srv }\n      - { type: postgres, data-dir: /srv/pg }\n')), /^policies\.yaml:7: policies\.envoy\.presets\[1\]\.type: must come before the fsfreeze preset \(pg_backup_start writes a checkpoint, which would wait for the frozen filesystem\): move it up$/);
  assert.match(refusal(pre('      - { type: fsfreeze, mount: /srv }\n      - { type: btrfs-snapshot }\n')), /presets\[1\]\.type: must come before the fsfreeze preset \(making a snapshot writes/);
  assert.match(refusal(pre('      - { type: btrfs-snapshot }\n      - { type: btrfs-snapshot }\n')), /^policies\.yaml:7: policies\.envoy\.presets\[1\]\.type: is a second btrfs-snapshot preset/);
});
