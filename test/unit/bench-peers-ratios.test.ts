/**
 * bench:peers' ratio table: meshback against the best peer per operation (issue 17's targets),
 * the peers being the tools with an encrypted, deduplicating repository; small files against
 * restic, and meshback's memory flat in the file count.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ratioPeers, ratioTable, ratios, summarize } from '../../lab/bench/peers.ts';
import type { Row } from '../../lab/bench/peers.ts';

const MiB = 1048576;
const row = (tool: string, op: Row['op'], wall: number, rssMiB: number, extra: Partial<Row> = {}): Row => ({ tool, op, repeat: 1, wallSeconds: wall, cpuSeconds: wall, maxRssBytes: rssMiB * MiB, ok: true, ...extra });

test('the peers are the encrypted, deduplicating repositories, every variant; not tar, rsync or cp', () => {
  assert.deepEqual(ratioPeers(), ['restic', 'restic-debian', 'kopia', 'kopia-default', 'borg']);
});

test('each operation against its best valid peer; peak RSS per operation; bytes after the last backup', () => {
  const rows: Row[] = [
    row('meshback', 'backup-first', 8, 300, { bytesStored: 1000 * MiB }),
    row('meshback', 'backup-nochange', 1, 100),
    row('meshback', 'backup-2pct', 2, 250, { bytesStored: 1100 * MiB }),
    row('meshback', 'restore', 5, 200),
    row('meshback', 'check', 6, 150),
    row('restic', 'backup-first', 12, 200),
    row('restic', 'backup-nochange', 1.5, 80),
    row('restic', 'backup-2pct', 3, 150, { bytesStored: 1100 * MiB }),
    row('restic', 'restore', 9, 150),
    row('restic', 'check', 7, 120),
    row('kopia', 'backup-first', 10, 400),
    row('kopia', 'backup-2pct', 4, 400, { bytesStored: 1000 * MiB }),
    { tool: 'kopia', op: 'restore', repeat: 1, ok: false, error: 'restored data differ' },
    // tar is faster and leaner, and not a peer
    row('tar', 'backup-first', 1, 5),
    row('tar', 'restore', 1, 5),
  ];
  const r = ratios(summarize(rows), []);
  const by = (m: string) => r.find((x) => x.metric === m)!;
  assert.equal(by('first backup, wall').peerTool, 'kopia');
  assert.equal(by('first backup, wall').ratio, 0.8);
  assert.equal(by('first backup, wall').result, 'PASS');
  assert.equal(by('backup after no change, wall').ratio, 1 / 1.5);
  assert.equal(by('backup after no change, wall').result, 'MISS', 'the target is 0.5');
  // kopia's failed restore does not count: restic is the best valid peer
  assert.equal(by('restore, wall').peerTool, 'restic');
  assert.equal(by('check with full data read, wall').target, '≤ 1');
  assert.equal(by('check with full data read, wall').result, 'PASS');
  assert.equal(by('peak RSS, first backup').peerTool, 'restic');
  assert.equal(by('peak RSS, first backup').ratio, 1.5);
  assert.equal(by('peak RSS, full data check').ratio, 1.25);
  assert.equal(by('bytes stored after the last backup').peerTool, 'kopia');
  assert.equal(by('bytes stored after the last backup').ratio, 1.1);
  assert.equal(by('bytes stored after the last backup').result, 'MISS');
  // no peer ran the no-change backup's RSS beyond restic: restic is it
  assert.equal(by('peak RSS, backup after no change').peer, '80.0 MiB');
  const md = ratioTable(r).join('\n');
  assert.match(md, /\| first backup, wall \| 8\.00 s \| 10\.00 s \(kopia\) \| 0\.80 \| ≤ 0\.8 \| \*\*PASS\*\* \|/);
});

test('n/a with the reason when meshback failed or no peer has a valid figure', () => {
  const r = ratios(summarize([row('meshback', 'backup-first', 8, 300), { tool: 'meshback', op: 'restore', repeat: 1, ok: false, error: 'boom' }, row('tar', 'backup-first', 1, 5)]), []);
  const first = r.find((x) => x.metric === 'first backup, wall')!;
  assert.equal(first.result, 'n/a');
  assert.match(first.reason!, /^no peer \(restic, .*\) has a valid backup-first$/);
  assert.match(r.find((x) => x.metric === 'restore, wall')!.reason!, /^meshback restore FAILED: boom$/);
  assert.match(ratioTable(r).join('\n'), /n\/a: meshback restore FAILED: boom/);
});

test('small files: peak RSS at most half of restic\'s per count, and flat over the counts (within 10%)', () => {
  const small = (tool: string, files: number, rss: number, wall = 10) => row(tool, 'small-backup-first', wall, rss, { files });
  const rows = [small('meshback', 250_000, 100), small('meshback', 500_000, 105), small('meshback', 1_000_000, 108), small('restic', 250_000, 150), small('restic', 500_000, 250), small('restic', 1_000_000, 400)];
  const r = ratios(summarize(rows), [250_000, 500_000, 1_000_000]);
  const rss = r.filter((x) => x.metric.includes('peak RSS vs restic'));
  assert.deepEqual(rss.map((x) => x.result), ['MISS', 'PASS', 'PASS']);
  const flat = r.find((x) => x.metric.startsWith('small files: meshback peak RSS flat'))!;
  assert.equal(flat.ratio, 1.08);
  assert.equal(flat.result, 'PASS');
  const steep = ratios(summarize([...rows.slice(0, 2), small('meshback', 1_000_000, 120), ...rows.slice(3)]), [250_000, 500_000, 1_000_000]);
  assert.equal(steep.find((x) => x.metric.startsWith('small files: meshback peak RSS flat'))!.result, 'MISS');
});
