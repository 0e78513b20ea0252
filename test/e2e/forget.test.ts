/**
 * End-to-end: `meshback forget` through the real CLI. Policy effects across hours, days and
 * weeks are covered by test/unit/retention.test.ts (snapshot times are the wall clock here);
 * this proves the command: --keep-last and --keep-tag per group, ids, --dry-run, --json,
 * usage errors, and that what is kept still restores.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { mb, rmrf, summary, tmpdir } from '../helpers/cli.ts';

interface Row {
  id: string;
  short_id: string;
  time: string;
  host: string;
  paths: string[];
  tags: string[];
  reasons: string[];
}
interface ForgetSummary {
  message_type: string;
  dry_run: boolean;
  mode: string;
  policy?: Record<string, unknown>;
  group_by?: string[];
  groups: { key: { host?: string; paths?: string[]; tags?: string[] }; keep: Row[]; remove: Row[] }[];
  kept: number;
  removed: number;
  would_remove: number;
  pruned: boolean;
}

describe('forget', () => {
  let base: string;
  let repo: string;
  let src: string;
  let env: Record<string, string>;
  /** snapshot ids in backup order: v1..v4 of host web-1 (v3 tagged env=prod), then one of host web-2 */
  const ids: string[] = [];

  const snapshotFiles = async (): Promise<string[]> => (await fsp.readdir(path.join(repo, 'snapshots'))).filter((f) => !f.startsWith('.')).sort();
  const backup = async (args: string[]): Promise<string> => {
    const r = await mb(['backup', src, '--json', ...args], { env });
    assert.equal(r.code, 0, r.stderr);
    return summary(r.stdout)['snapshot_id'] as string;
  };

  before(async () => {
    base = tmpdir('forget');
    repo = path.join(base, 'repo');
    src = path.join(base, 'src');
    env = { MESHBACK_REPO: repo, MESHBACK_PASSWORD: 'pw' };
    await fsp.mkdir(path.join(src, 'conf'), { recursive: true });
    assert.equal((await mb(['init'], { env })).code, 0);
    for (let v = 1; v <= 4; v++) {
      await fsp.writeFile(path.join(src, 'conf/version.txt'), `version ${v}\n`);
      await fsp.writeFile(path.join(src, `only-in-v${v}.txt`), `file of version ${v}\n`.repeat(1000 * v));
      ids.push(await backup(['--host', 'web-1', ...(v === 3 ? ['--tag', 'env=prod'] : [])]));
    }
    ids.push(await backup(['--host', 'web-2']));
  });
  after(async () => {
    await rmrf(base);
  });

  test('usage errors exit 2 and change nothing', async () => {
    const before = await snapshotFiles();
    const cases: [string[], RegExp][] = [
      [['forget'], /no keep rule given: pass at least one of --keep-last/],
      [['forget', '--dry-run'], /no keep rule given/],
      [['forget', '--host', 'web-1'], /no keep rule given/],
      [['forget', '--keep-last', '0'], /--keep-last "0": give a whole number >= 1, or -1 for unlimited/],
      [['forget', '--keep-daily', 'many'], /--keep-daily "many"/],
      [['forget', '--keep-weekly=-2'], /--keep-weekly "-2"/],
      [['forget', '--keep-last', '-1'], /to give a value that starts with '-', write --keep-last=VALUE/],
      [['forget', '--keep-within', '6q'], /--keep-within "6q" is not a duration \(unknown unit "q"\)/],
      [['forget', '--keep-within', '30'], /a number without a unit/],
      [['forget', '--keep-within', '7 days'], /--keep-within "7 days"/],
      [['forget', '--keep-tag', 'prod'], /--keep-tag "prod" is not KEY=VALUE/],
      [['forget', '--keep-last', '1', '--group-by', 'host,path'], /"path" is not one of host, paths, tags/],
      [['forget', ids[0]!, '--keep-last', '1'], /either snapshot ids or --keep-\* rules/],
      [['forget', ids[0]!, '--host', 'web-1'], /with snapshot ids they are not used/],
      [['forget', 'not-an-id!'], /is not a snapshot id/],
      [['forget', '--keep-last'], /--keep-last/],
    ];
    for (const [args, re] of cases) {
      const r = await mb(args, { env });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    }
    assert.deepEqual(await snapshotFiles(), before);
  });

  test('an unknown id exits 5 and removes none of the others', async () => {
    const before = await snapshotFiles();
    const r = await mb(['forget', ids[0]!.slice(0, 12), 'deadbeefdeadbeef'], { env });
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /no snapshot with id deadbeefdeadbeef/);
    assert.deepEqual(await snapshotFiles(), before);
  });

  test('--dry-run shows the plan per group, with reasons, and removes nothing', async () => {
    const before = await snapshotFiles();
    assert.equal(before.length, 5);
    const r = await mb(['forget', '--keep-last', '1', '--keep-tag', 'env=prod', '--dry-run'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^host web-1, paths .*src: 4 snapshot\(s\), keep 2, would remove 2$/m);
    assert.match(r.stdout, /^host web-2, paths .*src: 1 snapshot\(s\), keep 1, would remove 0$/m);
    assert.match(r.stdout, new RegExp(`^  ${ids[3]!.slice(0, 8)} .* keep +web-1 .* last$`, 'm'));
    assert.match(r.stdout, new RegExp(`^  ${ids[2]!.slice(0, 8)} .* keep +web-1 +env=prod +tag env=prod$`, 'm'));
    assert.match(r.stdout, new RegExp(`^  ${ids[1]!.slice(0, 8)} .* would remove +web-1 .* no keep rule matched$`, 'm'));
    assert.match(r.stdout, /dry run: would remove 2 snapshot\(s\) and keep 3; nothing was removed/);
    assert.deepEqual(await snapshotFiles(), before);

    const j = await mb(['forget', '--keep-last', '1', '--keep-tag', 'env=prod', '--dry-run', '--json'], { env });
    assert.equal(j.code, 0, j.stderr);
    const lines = j.stdout.trim().split('\n');
    assert.equal(lines.length, 1, 'one JSON object');
    const s = JSON.parse(lines[0]!) as ForgetSummary;
    assert.equal(s.message_type, 'summary');
    assert.equal(s.dry_run, true);
    assert.equal(s.mode, 'policy');
    assert.deepEqual(s.policy, { last: 1, tags: ['env=prod'] });
    assert.deepEqual(s.group_by, ['host', 'paths']);
    assert.deepEqual(
      s.groups.map((g) => [g.key, g.keep.map((x) => [x.id, x.reasons]), g.remove.map((x) => [x.id, x.reasons])]),
      [
        [{ host: 'web-1', paths: [src] }, [[ids[3], ['last']], [ids[2], ['tag env=prod']]], [[ids[1], ['no keep rule matched']], [ids[0], ['no keep rule matched']]]],
        [{ host: 'web-2', paths: [src] }, [[ids[4], ['last']]], []],
      ],
    );
    const row = s.groups[0]!.keep[1]!;
    assert.equal(row.short_id, ids[2]!.slice(0, 8));
    assert.equal(row.host, 'web-1');
    assert.deepEqual(row.tags, ['env=prod']);
    assert.ok(!Number.isNaN(Date.parse(row.time)));
    assert.deepEqual([s.kept, s.removed, s.would_remove, s.pruned], [3, 0, 2, false]);
    assert.deepEqual(await snapshotFiles(), before);
  });

  test('filters and --group-by choose what the policy sees', async () => {
    const onlyWeb2 = JSON.parse((await mb(['forget', '--keep-last', '1', '--host', 'web-2', '--dry-run', '--json'], { env })).stdout) as ForgetSummary;
    assert.deepEqual(onlyWeb2.groups.map((g) => g.key.host), ['web-2']);
    const tagged = JSON.parse((await mb(['forget', '--keep-last', '1', '--tag', 'env=prod', '--dry-run', '--json'], { env })).stdout) as ForgetSummary;
    assert.deepEqual(tagged.groups.flatMap((g) => g.keep.map((x) => x.id)), [ids[2]]);
    // --path takes a relative path as the backup did: resolved against the working directory
    const rel = await mb(['forget', '--keep-last', '2', '--path', path.relative(process.cwd(), src), '--dry-run', '--json'], { env });
    assert.equal((JSON.parse(rel.stdout) as ForgetSummary).kept, 3);
    const none = await mb(['forget', '--keep-last', '1', '--path', path.join(base, 'elsewhere'), '--dry-run'], { env });
    assert.equal(none.code, 0);
    assert.match(none.stdout, /no snapshot matches: nothing to do/);
    const all = JSON.parse((await mb(['forget', '--keep-last=-1', '--dry-run', '--json'], { env })).stdout) as ForgetSummary;
    assert.deepEqual([all.policy, all.kept, all.would_remove], [{ last: -1 }, 5, 0]);
    const one = JSON.parse((await mb(['forget', '--keep-last', '2', '--group-by', '', '--dry-run', '--json'], { env })).stdout) as ForgetSummary;
    assert.deepEqual(one.groups.map((g) => [g.key, g.keep.map((x) => x.id)]), [[{}, [ids[4], ids[3]]]]);
    const byTags = JSON.parse((await mb(['forget', '--keep-last', '1', '--group-by', 'host,tags', '--dry-run', '--json'], { env })).stdout) as ForgetSummary;
    assert.deepEqual(byTags.groups.map((g) => g.key), [{ host: 'web-1', tags: [] }, { host: 'web-1', tags: ['env=prod'] }, { host: 'web-2', tags: [] }]);
  });

  test('the policy removes what it shows; kept snapshots restore; forget by id', async () => {
    const r = await mb(['forget', '--keep-last', '1', '--keep-tag', 'env=prod', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as ForgetSummary;
    assert.deepEqual([s.dry_run, s.kept, s.removed, s.would_remove], [false, 3, 2, 0]);
    assert.deepEqual(await snapshotFiles(), [ids[2]!, ids[3]!, ids[4]!].sort());
    // running it again finds nothing more to remove
    const again = await mb(['forget', '--keep-last', '1', '--keep-tag', 'env=prod'], { env });
    assert.equal(again.code, 0);
    assert.match(again.stdout, /removed 0 snapshot\(s\), kept 3/);

    // forget by id prefix; the human output names it
    const byId = await mb(['forget', ids[3]!.slice(0, 10)], { env });
    assert.equal(byId.code, 0, byId.stderr);
    assert.match(byId.stdout, new RegExp(`^  ${ids[3]!.slice(0, 8)} .* remove +web-1 .* given by id$`, 'm'));
    assert.match(byId.stdout, /removed 1 snapshot\(s\), kept 0; the data only they used stays in the repository until it is pruned/);
    assert.deepEqual(await snapshotFiles(), [ids[2]!, ids[4]!].sort());

    // the tagged version 3 still restores, byte for byte, and the repository checks clean
    const dst = path.join(base, 'restore-v3');
    const rs = await mb(['restore', ids[2]!, '--target', dst, '--verify'], { env });
    assert.equal(rs.code, 0, rs.stderr);
    assert.equal(await fsp.readFile(path.join(dst, 'conf/version.txt'), 'utf8'), 'version 3\n');
    assert.equal(await fsp.readFile(path.join(dst, 'only-in-v3.txt'), 'utf8'), 'file of version 3\n'.repeat(3000));
    assert.deepEqual((await fsp.readdir(dst)).sort(), ['conf', 'only-in-v1.txt', 'only-in-v2.txt', 'only-in-v3.txt']);
    const ck = await mb(['check', '--read-data'], { env });
    assert.equal(ck.code, 0, ck.stdout + ck.stderr);

    // ids in JSON mode, the same snapshot named twice, and --dry-run for ids
    const dry = await mb(['forget', ids[4]!, ids[4]!.slice(0, 8), '--dry-run', '--json'], { env });
    assert.equal(dry.code, 0, dry.stderr);
    const d = JSON.parse(dry.stdout) as ForgetSummary;
    assert.equal(d.mode, 'ids');
    assert.deepEqual(d.groups, [{ key: {}, keep: [], remove: [{ id: ids[4], short_id: ids[4]!.slice(0, 8), time: d.groups[0]!.remove[0]!.time, host: 'web-2', paths: [src], tags: [], reasons: ['given by id'] }] }]);
    assert.equal(d.would_remove, 1);
    assert.deepEqual(await snapshotFiles(), [ids[2]!, ids[4]!].sort());
    const last = await mb(['forget', 'latest', '--json'], { env });
    assert.equal(last.code, 0, last.stderr);
    assert.equal((JSON.parse(last.stdout) as ForgetSummary).removed, 1);
    assert.deepEqual(await snapshotFiles(), [ids[2]!]);
  });

  test('--prune removes the data only the forgotten snapshots used', async () => {
    // a 4 MiB incompressible file only the snapshot about to be forgotten holds
    const big = path.join(src, 'only-in-doomed.bin');
    const { randomBytes } = await import('node:crypto');
    await fsp.writeFile(big, randomBytes(4 * 1024 * 1024));
    const doomed = await backup([]);
    await fsp.rm(big);
    const keep = await backup([]);
    const dataBytes = async (): Promise<number> => {
      let n = 0;
      for (const d of await fsp.readdir(path.join(repo, 'data'))) for (const f of await fsp.readdir(path.join(repo, 'data', d))) n += (await fsp.stat(path.join(repo, 'data', d, f))).size;
      return n;
    };
    const before = await dataBytes();
    const dry = await mb(['forget', doomed, '--prune', '--dry-run'], { env });
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(await dataBytes(), before, 'a dry run deletes nothing');
    const r = await mb(['forget', doomed, '--prune', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout.split('\n').filter((l) => l.startsWith('{') && l.includes('"summary"')).pop()!) as ForgetSummary & { prune: { bytesFreed: number } };
    assert.equal(s.pruned, true);
    assert.ok(s.prune.bytesFreed >= 4 * 1024 * 1024, `freed ${s.prune.bytesFreed}`);
    assert.ok(before - (await dataBytes()) >= 4 * 1024 * 1024, 'the forgotten data left the disk');
    assert.ok(!(await snapshotFiles()).includes(doomed));
    const ck = await mb(['check', '--read-data'], { env });
    assert.equal(ck.code, 0, ck.stdout + ck.stderr);
    const dst = path.join(base, 'restore-kept');
    const rs = await mb(['restore', keep, '--target', dst, '--verify'], { env });
    assert.equal(rs.code, 0, rs.stderr);
    assert.equal(await fsp.readFile(path.join(dst, 'conf/version.txt'), 'utf8'), 'version 4\n');
  });
});
