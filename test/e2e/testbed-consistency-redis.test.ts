/**
 * End-to-end: the Redis consistency experiment (meshback testbed consistency-redis): the live
 * Redis volume of a testbed is backed up with `meshback run` while sessions are written and the
 * server rewrites its AOF by itself as often as it can, without a preset and with the redis preset
 * (bgsave, and the default, aof-rewrite), restored into a fresh directory and loaded by a fresh
 * redis-server. With the preset the restore must load and hold every session acknowledged before
 * the run began; the result without a preset is reported (it depends on timing).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { isRoot } from '../../src/host/packages.ts';
import type { RedisConsistencyResult } from '../../lab/testbed/index.ts';
import { ensurePrograms } from '../../lab/testbed/deps.ts';
import { mb, rmrf, summary, tmpdir } from '../helpers/cli.ts';

const missing = await ensurePrograms({ volumes: 'dir', install: isRoot() }).then(
  () => undefined,
  (err: unknown) => `testbed programs unavailable: ${err instanceof Error ? err.message : String(err)}`,
);

describe('testbed consistency of live Redis backups', { skip: missing }, () => {
  const base = tmpdir('testbed-consistency-redis');
  const dir = path.join(base, 'bed');
  after(async () => {
    await mb(['testbed', 'down', '--dir', dir]);
    await rmrf(base);
  });

  test('with the redis preset the restored volume loads with every session acknowledged before the run', { timeout: 5 * 60_000 }, async (t) => {
    await fsp.chmod(base, 0o755);
    const up = await mb(['testbed', 'up', '--dir', dir, '--services', '2', '--quiet'], { timeoutMs: 120_000 });
    assert.equal(up.code, 0, up.stderr);
    const r = await mb(['testbed', 'consistency-redis', '--dir', dir, '--trials', '1', '--rate', '150', '--json'], { timeoutMs: 180_000 });
    assert.equal(r.code, 0, r.stderr);
    const res = summary(r.stdout) as unknown as RedisConsistencyResult;
    assert.equal(res.frequentRewrites, true);
    for (const s of res.summary) t.diagnostic(`${s.method}: ${s.backedUp}/${s.trials} backed up, ${s.loaded} loaded, ${s.lossless} lost nothing`);
    for (const x of res.trials) {
      t.diagnostic(`  ${x.method} #${x.trial}: ${x.runMessage}; ${x.loadMessage}; ${x.keysLost}/${x.keysExpected} lost; run ${x.runSeconds} s, ${x.writesDuringBackup} writes and ${x.rewritesDuringBackup} AOF rewrites ended during its backup phase${x.rewriteRunningDuringBackup ? ' (one running then)' : ''}`);
      assert.ok(x.keysExpected > 0, `${x.method}: no session was acknowledged before the run`);
      assert.ok(x.writesDuringBackup > 0, `${x.method}: no write ran during the run`);
    }
    const by = (m: string) => res.trials.filter((x) => x.method === m);
    assert.deepEqual(res.trials.map((x) => x.method), ['plain', 'bgsave', 'aof-rewrite']);
    for (const m of ['bgsave', 'aof-rewrite']) {
      for (const x of by(m)) {
        assert.equal(x.exitCode, 0, x.runMessage);
        assert.ok(x.presetSeconds !== undefined, `${m}: the preset ran`);
        assert.equal(x.good, true, JSON.stringify(x));
        // this server has appendonly yes: what it loads is the AOF, whatever the mode
        assert.match(x.loadMessage, /DB loaded from append only file/);
      }
    }
    // the aof-rewrite preset holds automatic rewrites off while the backup reads
    assert.equal(by('aof-rewrite')[0]!.rewritesDuringBackup, 0);
    assert.equal(by('aof-rewrite')[0]!.rewriteRunningDuringBackup, false);
    assert.equal(by('plain').length, 1);
  });
});
