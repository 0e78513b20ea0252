/**
 * The S3 parts of the benchmarks on their own: MinIO's request counters read and told apart by
 * kind, requests per GiB stored, meshback against the better peer, the s3-outage moments, the
 * parity row's repair summary, where bit rot lands for meshback (parity) and kopia, and how the
 * report words "not applicable", a repair from parity and an outage.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Rng } from '../../lab/gen/rng.ts';
import { repoDataFiles } from '../../lab/bench/fault/inject.ts';
import { robustnessCell, robustnessText } from '../../lab/bench/fault/report/model.ts';
import type { Entrant } from '../../lab/bench/fault/report/model.ts';
import { ownStrategy } from '../../lab/bench/fault/runner.ts';
import { repairOutcome } from '../../lab/bench/fault/scenarios/repo-corruption.ts';
import { changeBytes, outageDelaySeconds, s3Outage } from '../../lab/bench/fault/scenarios/s3-outage.ts';
import type { Cell, RepeatResult } from '../../lab/bench/fault/types.ts';
import { parseRequestTotals, requestDelta, requestKind, requestsPerGiB, s3Ratios } from '../../lab/bench/s3.ts';
import type { S3Row } from '../../lab/bench/s3.ts';
import { summarize } from '../../lab/bench/peers.ts';
import { borg, kopia, meshback, meshbackParity, restic, toolByName } from '../../lab/bench/tools.ts';

const PAGE = `# HELP minio_s3_requests_total Total number of S3 requests
# TYPE minio_s3_requests_total counter
minio_s3_requests_total{api="putobject",server="127.0.0.1:9000"} 10
minio_s3_requests_total{api="getobject",server="127.0.0.1:9000"} 4
minio_s3_requests_total{api="listobjectsv2",server="127.0.0.1:9000"} 3
minio_s3_requests_total{api="headobject",server="127.0.0.1:9000"} 2
minio_s3_requests_4xx_errors_total{api="headobject",server="127.0.0.1:9000"} 2
minio_s3_requests_ttfb_seconds_distribution{api="putobject",le="0.050",server="127.0.0.1:9000"} 10
`;

test('MinIO request counters: parsed by API, told apart by kind, deltas less our own listings', () => {
  const before = parseRequestTotals(PAGE);
  assert.deepEqual([...before], [['putobject', 10], ['getobject', 4], ['listobjectsv2', 3], ['headobject', 2]]);
  const after = parseRequestTotals(PAGE.replace('} 10\n', '} 25\n').replace('listobjectsv2",server="127.0.0.1:9000"} 3', 'listobjectsv2",server="127.0.0.1:9000"} 6') + 'minio_s3_requests_total{api="deletemultipleobjects",server="127.0.0.1:9000"} 1\nminio_s3_requests_total{api="getbucketlocation",server="127.0.0.1:9000"} 2\n');
  assert.deepEqual(requestDelta(before, after, 1), { put: 15, get: 0, head: 0, list: 2, delete: 1, other: 2, total: 20 });
  assert.equal(requestDelta(before, before).total, 0);
  assert.equal(requestKind('PutObject'), 'put');
  assert.equal(requestKind('listobjectsv1'), 'list');
  assert.equal(requestKind('headbucket'), 'head');
  assert.equal(requestKind('deleteobject'), 'delete');
  assert.equal(requestKind('putobjectretention'), 'other');
});

function row(tool: string, op: S3Row['op'], wall: number, rss: number, extra: Partial<S3Row> = {}): S3Row {
  return { tool, op, repeat: 1, wallSeconds: wall, cpuSeconds: wall, maxRssBytes: rss * 1048576, ok: true, ...extra };
}
const req = (total: number) => ({ put: total, get: 0, head: 0, list: 0, delete: 0, other: 0, total });

test('requests per GiB stored, and meshback against the better of restic and kopia', () => {
  const rows: S3Row[] = [
    row('meshback', 'backup-first', 8, 300, { requests: req(100) }),
    row('meshback', 'backup-2pct', 2, 250, { requests: req(28), bytesStored: 512 * 1048576 }),
    row('meshback', 'restore', 5, 200),
    row('restic', 'backup-first', 12, 200, { requests: req(300) }),
    row('restic', 'backup-2pct', 2, 150, { requests: req(50), bytesStored: 1024 ** 3 }),
    row('restic', 'restore', 9, 150),
    row('kopia', 'backup-first', 10, 400),
    row('kopia', 'backup-2pct', 4, 400),
    { tool: 'kopia', op: 'restore', repeat: 1, ok: false, error: 'restored data differ' },
  ];
  assert.deepEqual(requestsPerGiB(rows, 'meshback'), { tool: 'meshback', requests: 128, storedBytes: 512 * 1048576, perGiB: 256 });
  assert.equal(requestsPerGiB(rows, 'restic')!.perGiB, 350);
  assert.equal(requestsPerGiB(rows, 'kopia'), undefined, 'no request counts: no figure');
  const r = s3Ratios(summarize(rows));
  const by = (m: string) => r.find((x) => x.metric.startsWith(m))!;
  assert.equal(by('first backup').peerTool, 'kopia');
  assert.equal(by('first backup').ratio, 0.8);
  assert.equal(by('first backup').result, 'PASS');
  assert.equal(by('backup after').ratio, 1);
  assert.equal(by('backup after').result, 'MISS');
  // kopia's failed restore does not count: restic is the better valid peer
  assert.equal(by('restore').peerTool, 'restic');
  // peak RSS: the worst operation against the leaner peer of each
  const rss = by('peak RSS');
  assert.equal(rss.metric, 'peak RSS, worst operation (backup-2pct)');
  assert.ok(Math.abs(rss.ratio! - 250 / 150) < 1e-9 && rss.result === 'MISS');
  assert.equal(s3Ratios(summarize(rows.filter((x) => x.tool === 'meshback')))[0]!.result, 'n/a');
});

test('s3-outage: the change is half the data set (at least 8 MiB); the outage falls early in the backup; who applies', () => {
  assert.equal(changeBytes(4 * 1048576), 8 * 1048576);
  assert.equal(changeBytes(2 * 1024 ** 3), 1024 ** 3);
  const rng = new Rng(1);
  for (let i = 0; i < 100; i++) {
    const d = outageDelaySeconds(40, rng);
    assert.ok(d >= 4 && d <= 10, String(d));
  }
  assert.equal(outageDelaySeconds(0.5, rng), 0.2);
  assert.equal(s3Outage.storage, 's3');
  for (const t of [meshback, restic, kopia]) assert.equal(s3Outage.applies!(t, 'incremental'), true, t.name);
  for (const name of ['borg', 'tar', 'rsync', 'cp']) assert.match(String(s3Outage.applies!(toolByName(name)!, 'full-copy')), /^not applicable: .* cannot keep its repository in S3$/);
  assert.equal(ownStrategy('kopia'), 'incremental');
  assert.equal(ownStrategy('meshback-parity'), 'incremental');
  assert.deepEqual(meshbackParity.onlyScenarios, ['repo-corruption']);
  assert.equal(borg.s3, undefined);
});

test('repair packs --json: repaired and lost packs counted from the summary line', () => {
  const out = [
    '{"message_type":"status","percent":50}',
    JSON.stringify({ message_type: 'summary', ok: false, packsChecked: 9, damaged: [{ pack: 'a', status: 'repaired' }, { pack: 'b', status: 'unrepairable', reason: 'more than 2 bad blocks' }, { pack: 'c', status: 'repaired' }], parityRewritten: [{ pack: 'd', was: 'damaged' }] }),
    '',
  ].join('\n');
  assert.deepEqual(repairOutcome(out, 4), { exitCode: 4, packsChecked: 9, packsDamaged: 3, packsRepaired: 2, packsLost: 1, parityRewritten: 1 });
  assert.equal(repairOutcome('meshback: no repository\n', 5), undefined);
});

test('bit rot lands on packs and parity files for meshback (parity), on p/ blobs for kopia', async () => {
  const base = await fsp.mkdtemp(path.join(os.tmpdir(), 'meshback-bench-s3-unit-'));
  try {
    for (const f of ['data/ab/pack1', 'parity/ab/pack1', 'index/i1', 'p/4e5/blob.f', 'q/017/meta.f', 'x/n0_/idx.f']) {
      await fsp.mkdir(path.dirname(path.join(base, f)), { recursive: true });
      await fsp.writeFile(path.join(base, f), 'x'.repeat(100));
    }
    assert.deepEqual((await repoDataFiles('meshback-parity', base)).map((f) => f.rel), ['data/ab/pack1', 'parity/ab/pack1']);
    assert.deepEqual((await repoDataFiles('meshback', base)).map((f) => f.rel), ['data/ab/pack1']);
    assert.deepEqual((await repoDataFiles('kopia', base)).map((f) => f.rel), ['p/4e5/blob.f']);
  } finally {
    await fsp.rm(base, { recursive: true, force: true });
  }
});

test('report: "not applicable", a repair from parity and an outage in the robustness matrix', () => {
  const entrant = (tool: string): Entrant => ({ key: `${tool}/incremental`, tool, strategy: 'incremental', label: tool, toolEntry: undefined }) as Entrant;
  const cell = (tool: string, scenario: Cell['scenario'], repeats: RepeatResult[], extra: Partial<Cell> = {}): Cell => ({ tool, strategy: 'incremental', volume: 'dir', scenario, status: 'ok', repeats, summary: {}, ...extra });
  const integrity = (missing: number) => ({ files: 10, matching: 10 - missing, damaged: 0, missing, extra: 0 });
  const na = cell('borg', 's3-outage', [], { status: 'skipped', reason: 'not applicable: borg cannot keep its repository in S3' });
  assert.equal(robustnessText(robustnessCell(na, entrant('borg'))).text, 'not applicable');
  assert.equal(robustnessText(robustnessCell(cell('x', 's3-outage', [], { status: 'skipped', reason: 'x is unavailable' }), entrant('x'))).text, 'skipped');
  const repaired: RepeatResult = { repeat: 1, seed: 1, status: 'ok', steps: [], integrity: integrity(0), corruptionDetected: true, repair: { exitCode: 0, packsChecked: 4, packsDamaged: 2, packsRepaired: 2, packsLost: 0, parityRewritten: 0 } };
  const t1 = robustnessText(robustnessCell(cell('meshback-parity', 'repo-corruption', [repaired]), entrant('meshback-parity')));
  assert.equal(t1.text, 'repaired from parity 2/2 packs; detected; intact');
  assert.equal(t1.bad, false);
  const partly: RepeatResult = { ...repaired, integrity: integrity(1), repair: { ...repaired.repair!, exitCode: 4, packsRepaired: 1, packsLost: 1 } };
  const t2 = robustnessText(robustnessCell(cell('meshback-parity', 'repo-corruption', [partly]), entrant('meshback-parity')));
  assert.equal(t2.text, 'repaired from parity 1/2 packs, 1 lost; detected; incomplete, reported 1/1 (up to 1 missing file)');
  assert.equal(t2.bad, true);
  const outage = (backup: 'finished' | 'failed', exitCode: number): RepeatResult => ({
    repeat: 1, seed: 1, status: 'ok', steps: [], integrity: integrity(0), corruptionDetected: null,
    outage: { startedAfterSeconds: 1, seconds: 10, how: 'proxy disabled', hit: true, backup, exitCode, rerun: backup === 'failed' },
  });
  assert.equal(robustnessText(robustnessCell(cell('restic', 's3-outage', [outage('finished', 0)]), entrant('restic'))).text, 'backup rode out the outage; intact');
  assert.equal(robustnessText(robustnessCell(cell('meshback', 's3-outage', [outage('failed', 7)]), entrant('meshback'))).text, 'backup failed (exit 7), rerun after; intact');
});
