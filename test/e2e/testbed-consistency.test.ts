/**
 * End-to-end: the consistency experiment (meshback testbed consistency): the live PostgreSQL
 * volume is backed up by a real `meshback run` while orders are written and checkpoints run, by
 * each method (plain, CHECKPOINT hook, and the presets postgres, btrfs-snapshot, fsfreeze,
 * postgres+btrfs-snapshot), restored with a plain `meshback restore` into a fresh directory, and
 * started. Every preset must give a database that starts, passes amcheck and holds every order
 * acknowledged before the backup; the plain and CHECKPOINT-hook results are reported (they depend
 * on timing). btrfs needs root: without it the btrfs-only methods are reported as skipped.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { isRoot } from '../../src/host/packages.ts';
import type { ConsistencyResult } from '../../lab/testbed/index.ts';
import { ensurePrograms } from '../../lab/testbed/deps.ts';
import { mb, rmrf, summary, tmpdir } from '../helpers/cli.ts';

const btrfs = isRoot() && (await ensurePrograms({ volumes: 'btrfs', install: true }).then(() => true, () => false));
const missing = await ensurePrograms({ volumes: 'dir', install: isRoot() }).then(
  () => undefined,
  (err: unknown) => `testbed programs unavailable: ${err instanceof Error ? err.message : String(err)}`,
);

describe('testbed consistency of live PostgreSQL backups', { skip: missing }, () => {
  const base = tmpdir('testbed-consistency');
  const dir = path.join(base, 'bed');
  after(async () => {
    await mb(['testbed', 'down', '--dir', dir]);
    await rmrf(base);
  });

  test('each preset restores to a database that starts, passes amcheck and lost nothing', async (t) => {
    await fsp.chmod(base, 0o755);
    const up = await mb(['testbed', 'up', '--dir', dir, '--services', '1', ...(btrfs ? ['--volumes', 'btrfs', '--volume-size', '512MiB'] : []), '--quiet']);
    assert.equal(up.code, 0, up.stderr);
    const r = await mb(['testbed', 'consistency', '--dir', dir, '--trials', '1', '--rate', '150', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const res = summary(r.stdout) as unknown as ConsistencyResult;
    for (const s of res.summary) t.diagnostic(`${s.method}: ${s.skipped ?? `${s.started}/${s.trials} start, ${s.amcheckPassed} pass amcheck, ${s.lossless} lost nothing`}`);
    for (const x of res.trials) {
      t.diagnostic(`  ${x.method} #${x.trial}: ${x.startMessage}; amcheck ${x.amcheck}; ${x.rowsLost}/${x.rowsExpected} lost; backup ${x.backupSeconds} s, ${x.writesDuringBackup} writes and ${x.checkpointsDuringBackup} checkpoints during it`);
      // a frozen filesystem takes no write: fsfreeze's backup may see none acknowledged
      if (x.method !== 'fsfreeze') assert.ok(x.writesDuringBackup > 0, `${x.method}: no write ran during the backup`);
      assert.ok(x.rowsExpected > 0);
    }
    const by = (m: string) => res.trials.filter((x) => x.method === m);
    const presets = ['postgres', ...(btrfs ? ['btrfs-snapshot', 'fsfreeze', 'postgres+btrfs-snapshot'] : [])];
    for (const m of presets) {
      assert.equal(by(m).length, 1, m);
      for (const x of by(m)) assert.equal(x.good, true, JSON.stringify(x));
    }
    if (!btrfs) for (const m of ['btrfs-snapshot', 'fsfreeze', 'postgres+btrfs-snapshot']) assert.match(res.summary.find((s) => s.method === m)!.skipped ?? '', /--volumes btrfs/);
    assert.equal(by('plain').length, 1);
    assert.equal(by('checkpoint').length, 1);
  });
});
