/**
 * End-to-end: the service-mesh testbed (meshback testbed ...) with real nginx, PostgreSQL and
 * Redis, recovered through real meshback backups and restores, verified at application level.
 *
 * Directory volumes (fast): up, load, backup of every volume, more load, a container crash of the
 * orders service and its database, restore of their volumes from the latest backup, verify (the
 * orders written after the backup are the RPO; nothing acknowledged before it may be lost); load,
 * a second backup, load, a node outage (every process killed, every volume thrown away), restore
 * of all volumes from the repository alone, verify again; then corruption that verify must catch.
 * btrfs volumes (root only): snapshot-based backups, a full disk, a node outage; damage to the
 * btrfs image under the database. The library as a benchmark scenario drives it: a tool adapter
 * backs the volumes up as one tree and restores them after a node outage.
 *
 * Needs nginx, redis-server and PostgreSQL (.ci/run installs them): the suite is skipped, saying
 * why, when they are missing and cannot be installed.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { ensureGnuTime } from '../../lab/bench/measure.ts';
import { isRoot } from '../../src/host/packages.ts';
import { meshback as meshbackTool, newContext } from '../../lab/bench/tools.ts';
import { openTestbed, startTestbed } from '../../lab/testbed/index.ts';
import type { JournalEntry, StatusReport, Testbed, VerifyReport } from '../../lab/testbed/index.ts';
import { ensurePrograms } from '../../lab/testbed/deps.ts';
import { isMountPoint } from '../../src/volumes/index.ts';
import { mb, rmrf, summary, tmpdir } from '../helpers/cli.ts';
import type { RunResult } from '../helpers/cli.ts';

const missing = await ensurePrograms({ volumes: 'dir', install: isRoot() }).then(
  () => undefined,
  (err: unknown) => `testbed programs unavailable: ${err instanceof Error ? err.message : String(err)}`,
);
const btrfsMissing = missing ?? (!isRoot() ? 'btrfs volumes need root' : await ensurePrograms({ volumes: 'btrfs', install: true }).then(() => undefined, (err: unknown) => String(err)));

function ok(r: RunResult, what: string): RunResult {
  assert.equal(r.code, 0, `${what} exited ${r.code}: ${r.stderr}${r.stdout.slice(-2000)}`);
  return r;
}

function journal(dir: string): JournalEntry[] {
  return readFileSync(path.join(dir, 'journal.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as JournalEntry);
}

/** A testbed in a fresh directory with a meshback repository beside it. */
class Bed {
  readonly base: string;
  readonly dir: string;
  readonly env: Record<string, string>;
  constructor(name: string) {
    this.base = tmpdir(name);
    this.dir = path.join(this.base, 'bed');
    this.env = { MESHBACK_REPO: path.join(this.base, 'repo'), MESHBACK_PASSWORD: 'testbed-pw' };
  }
  async init(upArgs: string[]): Promise<StatusReport> {
    // the postgres and redis users must reach the volumes: mkdtemp makes the directory 0700
    await fsp.chmod(this.base, 0o755);
    const up = ok(await mb(['testbed', 'up', '--dir', this.dir, '--json', ...upArgs]), 'testbed up');
    ok(await mb(['init'], { env: this.env }), 'init');
    return summary(up.stdout) as unknown as StatusReport;
  }
  tb(args: string[]): Promise<RunResult> {
    return mb(['testbed', args[0]!, '--dir', this.dir, ...args.slice(1)]);
  }
  async status(): Promise<StatusReport> {
    return JSON.parse(ok(await this.tb(['status', '--json']), 'status').stdout) as StatusReport;
  }
  async load(seconds: number, rate = 40): Promise<Record<string, unknown>> {
    const s = summary(ok(await this.tb(['load', '--rate', String(rate), '--duration', `${seconds}s`, '--json']), 'load').stdout);
    return s;
  }
  /** Backs up `paths` in one snapshot; returns when it started and ended. */
  async backup(paths: string[]): Promise<{ start: number; end: number; id: string }> {
    const start = Date.now();
    const r = ok(await mb(['backup', ...paths, '--tag', 'testbed=e2e', '--json'], { env: this.env }), 'backup');
    return { start, end: Date.now(), id: String(summary(r.stdout)['snapshot_id']) };
  }
  async verify(args: string[]): Promise<{ code: number; report: VerifyReport }> {
    const r = await this.tb(['verify', '--json', ...args]);
    return { code: r.code, report: summary(r.stdout) as unknown as VerifyReport };
  }
  async down(): Promise<void> {
    if (existsSync(this.dir)) {
      const r = await this.tb(['down']);
      assert.equal(r.code, 0, `testbed down: ${r.stderr}`);
    }
    await rmrf(this.base);
  }
}

const failedChecks = (r: VerifyReport): string => JSON.stringify(r.checks.filter((c) => !c.ok));

describe('testbed on directory volumes', { skip: missing }, () => {
  const bed = new Bed('testbed');
  after(async () => {
    await bed.down();
  });

  test('comes up, takes load, survives a container crash and a node outage through meshback restores', async (t) => {
    const up = await bed.init([]);
    assert.equal(up.up, true);
    assert.equal((await openTestbed(bed.dir)).volumesRoot(), path.join(bed.dir, 'volumes'));
    assert.deepEqual(up.volumes.map((v) => v.name).sort(), ['orders', 'postgres', 'redis', 'sessions']);
    assert.ok(up.services.every((s) => s.healthy));

    // --- load, backup, more load -----------------------------------------------------------
    const l1 = await bed.load(3);
    assert.ok(Number(l1['acknowledged']) >= 90, `acknowledged ${String(l1['acknowledged'])}`);
    assert.equal(l1['writesFailed'], 0);
    const volumes = (await bed.status()).volumes.map((v) => v.path);
    const b1 = await bed.backup(volumes);
    await bed.load(2);
    // the sidecars' config, access logs and metrics snapshots are on the service volumes
    const orders = up.volumes.find((v) => v.name === 'orders')!.path;
    for (const f of ['nginx/nginx.conf', 'nginx/logs/access.log', 'metrics/nginx.prom']) assert.ok(existsSync(path.join(orders, f)), f);

    // --- container crash of the orders service and its database ------------------------------
    const crash = summary(ok(await bed.tb(['fault', 'container-crash', '--service', 'orders', '--service', 'postgres', '--json']), 'fault').stdout);
    const crashT = Number(crash['t']);
    const st = await bed.status();
    assert.deepEqual(st.components.filter((c) => !c.running).map((c) => c.name).sort(), ['orders-app', 'orders-sidecar', 'postgres']);
    assert.equal(st.services.find((s) => s.name === 'sessions')!.healthy, true);
    assert.equal(st.services.find((s) => s.name === 'orders')!.healthy, false);

    const r1 = path.join(bed.base, 'restored-1');
    ok(await mb(['restore', b1.id, '--target', r1, '--include', '/orders', '--include', '/postgres'], { env: bed.env }), 'restore');
    const v1 = await bed.verify(['--volumes', r1, '--backup-time', String(b1.start)]);
    assert.equal(v1.code, 0, failedChecks(v1.report));
    assert.equal(v1.report.healthy, true, failedChecks(v1.report));
    assert.equal(v1.report.lostBeforeBackup, 0);
    // exactly the orders acknowledged after the backup are lost; the sessions (Redis was not restored) all survive
    const j1 = journal(bed.dir);
    const ordersAfter = j1.filter((e) => e.service === 'orders' && e.t > b1.end && e.t <= crashT);
    assert.ok(ordersAfter.length > 0);
    assert.equal(v1.report.writesLost, ordersAfter.length);
    assert.equal(v1.report.services.find((s) => s.service === 'sessions')!.lost, 0);
    const lastKept = Math.max(...j1.filter((e) => e.service === 'orders' && e.t < b1.start).map((e) => e.t));
    assert.ok(Math.abs(v1.report.rpoSeconds! - (crashT - lastKept) / 1000) < 0.002, `RPO ${v1.report.rpoSeconds}`);
    assert.ok(v1.report.rtoSeconds! > 0 && v1.report.rtoSeconds! < 60, `RTO ${v1.report.rtoSeconds}`);
    t.diagnostic(`container crash: ${v1.report.writesAcknowledged} writes acknowledged, ${v1.report.writesLost} lost (all after the backup), RPO ${v1.report.rpoSeconds} s, RTO ${v1.report.rtoSeconds} s`);

    // --- second backup, node outage, restore of everything from the repository alone ----------
    await bed.load(2);
    const live = (await bed.status()).volumes;
    assert.deepEqual(live.filter((v) => v.adopted).map((v) => v.name).sort(), ['orders', 'postgres']);
    assert.equal((await openTestbed(bed.dir)).volumesRoot(), undefined);
    const b2 = await bed.backup(live.map((v) => v.path));
    await bed.load(2);
    const outage = summary(ok(await bed.tb(['fault', 'node-outage', '--json']), 'node outage').stdout);
    const outageT = Number(outage['t']);
    const down = await bed.status();
    assert.ok(down.components.every((c) => !c.running));
    assert.equal(down.supervisor.running, false);
    for (const v of live) assert.equal(existsSync(v.path), false, `${v.path} should be gone`);

    const r2 = path.join(bed.base, 'restored-2');
    ok(await mb(['restore', 'latest', '--target', r2], { env: bed.env }), 'restore');
    const v2 = await bed.verify(['--volumes', r2, '--backup-time', String(b2.start)]);
    assert.equal(v2.code, 0, failedChecks(v2.report));
    assert.equal(v2.report.healthy, true, failedChecks(v2.report));
    assert.equal(v2.report.lostBeforeBackup, 0);
    const after2 = journal(bed.dir).filter((e) => e.t > b2.end && e.t <= outageT);
    assert.ok(after2.length > 0);
    assert.equal(v2.report.writesLost, after2.length);
    assert.ok(v2.report.rpoSeconds! > 0);
    assert.ok(v2.report.rtoSeconds! > 0 && v2.report.rtoSeconds! < 60);
    for (const c of ['nginx-config', 'amcheck', 'redis-data', 'traffic', 'stub-status'] as const) assert.ok(v2.report.checks.some((x) => x.name === c && x.ok), c);
    t.diagnostic(`node outage: ${v2.report.writesAcknowledged} writes acknowledged, ${v2.report.writesLost} lost (all after the backup), RPO ${v2.report.rpoSeconds} s, RTO ${v2.report.rtoSeconds} s`);

    // the testbed serves again: new writes are acknowledged
    const l5 = await bed.load(1);
    assert.equal(l5['writesFailed'], 0);
  });

  test('verify catches a corrupted database volume', async () => {
    ok(await bed.tb(['fault', 'corrupt', '--service', 'postgres', '--seed', '3']), 'corrupt');
    ok(await bed.tb(['fault', 'container-crash', '--service', 'postgres']), 'crash');
    const v = await bed.verify([]);
    assert.equal(v.code, 4);
    assert.equal(v.report.ok, false);
    assert.ok(!v.report.healthy || v.report.writesLost > 0, JSON.stringify(v.report.checks));
  });

  test('one-line errors: unknown service, disk-full on a directory volume, no testbed', async () => {
    const a = await bed.tb(['fault', 'container-crash', '--service', 'nope']);
    assert.equal(a.code, 2);
    assert.match(a.stderr, /^meshback: no service "nope" in this testbed: give one of orders, sessions, postgres, redis\n$/);
    const b = await bed.tb(['fault', 'disk-full', '--service', 'postgres']);
    assert.equal(b.code, 2);
    assert.match(b.stderr, /^meshback: fault disk-full needs volumes with their own filesystem: .*--volumes btrfs\)\n$/);
    const c = await mb(['testbed', 'status', '--dir', path.join(bed.base, 'nothing')]);
    assert.equal(c.code, 5);
    assert.match(c.stderr, /^meshback: no testbed in .*nothing: start one with 'meshback testbed up --dir .*'\n$/);
  });
});

describe('testbed driven through the library, as a benchmark scenario would', { skip: missing }, () => {
  const base = tmpdir('testbed-lib');
  let tb: Testbed | undefined;
  after(async () => {
    await tb?.stop();
    await rmrf(base);
  });

  test('a tool adapter backs the volumes up as one tree and restores them after a node outage', async () => {
    await fsp.chmod(base, 0o755);
    tb = await startTestbed({ dir: path.join(base, 'bed'), services: 2, install: isRoot() });
    const load1 = await tb.load({ rate: 40, durationSeconds: 1 });
    assert.ok(load1.acknowledged > 0);
    await ensureGnuTime();
    const ctx = await newContext(meshbackTool, path.join(base, 'tool'), { ...(process.env as Record<string, string>), MESHBACK_TEST_SCRYPT_N: '1024' });
    await meshbackTool.init(ctx);
    const root = tb.volumesRoot()!;
    const backupTime = Date.now();
    await meshbackTool.backup(ctx, root);
    await tb.load({ rate: 40, durationSeconds: 1 });
    await tb.fault('node-outage');
    assert.equal(existsSync(root + '/postgres'), false);
    const target = path.join(base, 'restored');
    await fsp.mkdir(target);
    await meshbackTool.restore(ctx, target);
    const r = await tb.verify({ volumes: tb.volumesIn(target), backupTime });
    assert.equal(r.healthy, true, failedChecks(r));
    assert.equal(r.lostBeforeBackup, 0);
    assert.ok(r.writesLost > 0 && r.rpoSeconds! > 0 && r.rtoSeconds! > 0);
  });
});

describe('testbed on btrfs volumes', { skip: btrfsMissing }, () => {
  const bed = new Bed('testbed-btrfs');
  after(async () => {
    await bed.down();
  });

  test('snapshot-based backups, a full disk, a node outage and a restore from the repository', async (t) => {
    await bed.init(['--volumes', 'btrfs', '--volume-size', '256MiB']);
    await bed.load(2);

    // a point-in-time backup: one read-only btrfs snapshot per volume, backed up together
    const tb = await openTestbed(bed.dir);
    const snaps: { path: string; release(): Promise<void> }[] = [];
    for (const v of tb.volumes()) snaps.push(await v.snapshot());
    const b = await bed.backup(snaps.map((s) => s.path)).finally(async () => {
      for (const s of snaps) await s.release();
    });
    await bed.load(2);

    // a full disk under PostgreSQL: orders fail, sessions go on; once space is back it recovers
    const full = summary(ok(await bed.tb(['fault', 'disk-full', '--service', 'postgres', '--json']), 'disk-full').stdout);
    assert.match(String((full['details'] as string[])[0]), / -> 0 MiB$/);
    const l = await bed.load(2);
    const per = l['perService'] as Record<string, { writesFailed: number; acknowledged: number }>;
    assert.ok(per['orders']!.writesFailed > 0, JSON.stringify(per));
    assert.equal(per['sessions']!.writesFailed, 0);
    ok(await bed.tb(['fault', 'disk-full', '--service', 'postgres', '--release']), 'release');
    const v0 = await bed.verify([]);
    assert.equal(v0.code, 0, failedChecks(v0.report));
    assert.equal(v0.report.writesLost, 0);

    // node outage: images deleted, mounts gone
    const images = tb.volumes().map((v) => ({ image: v.image!, mount: path.dirname(v.path) }));
    const outage = summary(ok(await bed.tb(['fault', 'node-outage', '--json']), 'node outage').stdout);
    for (const i of images) {
      assert.equal(existsSync(i.image), false);
      assert.equal(isMountPoint(i.mount), false);
    }
    const r = path.join(bed.base, 'restored');
    ok(await mb(['restore', b.id, '--target', r], { env: bed.env }), 'restore');
    const v = await bed.verify(['--volumes', r, '--backup-time', String(b.start)]);
    assert.equal(v.code, 0, failedChecks(v.report));
    assert.equal(v.report.lostBeforeBackup, 0);
    const expected = journal(bed.dir).filter((e) => e.t > b.end && e.t <= Number(outage['t'])).length;
    assert.equal(v.report.writesLost, expected);
    t.diagnostic(`btrfs node outage: ${v.report.writesAcknowledged} writes acknowledged, ${v.report.writesLost} lost (all after the snapshot), RPO ${v.report.rpoSeconds} s, RTO ${v.report.rtoSeconds} s`);
  });

  test('damage to a btrfs image under the database: the reads fail and verify says so', async () => {
    const other = new Bed('testbed-btrfs-rot');
    try {
      await other.init(['--volumes', 'btrfs', '--volume-size', '256MiB', '--services', '1']);
      await other.load(2);
      const f = summary(ok(await other.tb(['fault', 'corrupt', '--service', 'postgres', '--json']), 'corrupt').stdout);
      assert.match((f['details'] as string[]).join(' '), /overwrote a 4 KiB data block in the image under [1-9]\d* file\(s\)/);
      ok(await other.tb(['fault', 'container-crash', '--service', 'postgres']), 'crash');
      const v = await other.verify(['--timeout', '20s']);
      assert.equal(v.code, 4);
      assert.ok(v.report.checks.some((c) => !c.ok && /Input\/output error/.test(c.message)), JSON.stringify(v.report.checks.filter((c) => !c.ok)));
    } finally {
      await other.down();
    }
  });
});
