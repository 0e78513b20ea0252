/**
 * End-to-end: the policy presets through the real CLI (`meshback run POLICY --config FILE`),
 * their failure paths first: a PostgreSQL that does not answer fails the run with exit 14, one
 * line naming it and what to do, and no snapshot; fsfreeze refuses a directory that is not a
 * mount point, and a filesystem that holds the repository. As root, on real loop-mounted btrfs
 * volumes (src/volumes): fsfreeze freezes and thaws (and its watchdog thaws the filesystem after
 * meshback was SIGKILLed while it was frozen); btrfs-snapshot backs up a snapshot recorded under
 * the original paths, and a snapshot left behind by a SIGKILLed run is deleted by the next run.
 * (The presets' consistency under load: testbed-consistency.test.ts.)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { isRoot } from '../../src/host/packages.ts';
import { which } from '../../src/host/process.ts';
import { createVolume } from '../../src/volumes/index.ts';
import type { Volume } from '../../src/volumes/index.ts';
import { BIN, mb, rmrf, summary, tmpdir } from '../helpers/cli.ts';

interface RunSummary {
  ok: boolean;
  phases: { phase: string; outcome: string; message?: string }[];
  presets?: { type: string; outcome: string; message?: string; held_seconds?: number }[];
  snapshot_id?: string;
  failure?: { phase: string; code: string; message: string };
}

/** A TCP port nothing listens on (bound, then closed). */
async function deadPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

const btrfsOk = isRoot() && (await which('mkfs.btrfs')) !== undefined && (await which('fsfreeze')) !== undefined;

describe('presets', () => {
  let base: string;
  let env: Record<string, string>;
  const write = async (name: string, yaml: string): Promise<string> => {
    const f = path.join(base, name);
    await fsp.writeFile(f, `version: 1\ndefaults:\n  repository: ./repo\n  password-file: ./pw\npolicies:\n${yaml}`);
    return f;
  };
  const snapshots = async (): Promise<{ id: string; tags: string[] }[]> => {
    const r = await mb(['snapshots', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.split('\n').find((l) => l.startsWith('['))!) as { id: string; tags: string[] }[];
  };

  before(async () => {
    base = tmpdir('presets');
    await fsp.writeFile(path.join(base, 'pw'), 'pw\n');
    env = { MESHBACK_REPO: path.join(base, 'repo'), MESHBACK_PASSWORD_FILE: path.join(base, 'pw') };
    const r = await mb(['init'], { env });
    assert.equal(r.code, 0, r.stderr);
    // a data directory as PostgreSQL has it (the preset checks it before it connects)
    await fsp.mkdir(path.join(base, 'db/pgdata/pg_wal'), { recursive: true });
    await fsp.writeFile(path.join(base, 'db/pgdata/PG_VERSION'), '15\n');
  });
  after(() => rmrf(base));

  test('postgres: a server that does not answer fails the run (exit 14, one line, no snapshot, on-error ran)', async () => {
    const port = await deadPort();
    const f = await write(
      'pg.yaml',
      `  db:\n    sources: [db]\n    presets:\n      - { type: postgres, data-dir: db/pgdata, host: 127.0.0.1, port: ${port}, timeout: 10s }\n    hooks:\n      on-error: [ { exec: [sh, -c, 'echo "$MESHBACK_FAILED_PHASE: $MESHBACK_ERROR" > ${base}/on-error.txt'] } ]\n`,
    );
    const r = await mb(['run', 'db', '--config', f], { env, timeoutMs: 60_000 });
    assert.equal(r.code, 14, r.stderr);
    const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('meshback:'));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, new RegExp(`postgres preset: cannot connect to PostgreSQL at 127\\.0\\.0\\.1:${port} as postgres \\(.*ECONNREFUSED.*\\): start it, or fix host, port, user or password-file in the policy$`));
    assert.deepEqual(await snapshots(), []);
    assert.match(await fsp.readFile(path.join(base, 'on-error.txt'), 'utf8'), /^preset: postgres preset: cannot connect/);
    const j = summary((await mb(['run', 'db', '--config', f, '--json'], { env, timeoutMs: 60_000 })).stdout) as unknown as RunSummary;
    assert.equal(j.failure?.phase, 'preset');
    assert.equal(j.failure?.code, 'HOOK');
    assert.deepEqual(Object.fromEntries(j.phases.map((p) => [p.phase, p.outcome])), { pre: 'skipped', preset: 'failed', backup: 'skipped', post: 'skipped', retention: 'skipped', prune: 'skipped', 'on-error': 'ok' });
    assert.equal(j.presets?.[0]?.type, 'postgres');
    assert.equal(j.presets?.[0]?.outcome, 'failed');
  });

  test('postgres: a data directory outside the sources is refused when the file is read (file:line:field)', async () => {
    const f = await write('pg-out.yaml', `  db:\n    sources: [db/pgdata/base]\n    presets:\n      - type: postgres\n        data-dir: db/pgdata\n`);
    const r = await mb(['run', 'db', '--config', f], { env });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /pg-out\.yaml:10: policies\.db\.presets\[0\]\.data-dir: .*db\/pgdata is not one of the policy's sources nor below one: add it/);
  });

  test('fsfreeze: a directory that is not a mount point is refused (exit 14, nothing frozen, no snapshot)', async () => {
    const f = await write('frz.yaml', `  frz:\n    sources: [db]\n    presets: [ { type: fsfreeze, mount: db } ]\n`);
    const r = await mb(['run', 'frz', '--config', f], { env, timeoutMs: 60_000 });
    assert.equal(r.code, 14, r.stderr);
    assert.match(r.stderr, /meshback: fsfreeze preset: .*\/db is not a mount point \(it is on \/.*\): give the mount point of the filesystem to freeze/);
    assert.deepEqual(await snapshots(), []);
  });

  describe('on btrfs volumes (root)', { skip: btrfsOk ? undefined : 'needs root, btrfs-progs and fsfreeze' }, () => {
    let vol: Volume;
    let vols: string;
    before(async () => {
      vols = tmpdir('presets-vol');
      vol = await createVolume({ kind: 'btrfs', name: 'data', dir: vols, sizeBytes: 256 * 1024 * 1024, unmountOnExit: true });
      await fsp.mkdir(path.join(vol.path, 'app'));
      await fsp.writeFile(path.join(vol.path, 'app/config.json'), '{"a":1}\n');
      // a large sparse file: reading it takes seconds (its zeros are holes: nothing is stored)
      const fh = await fsp.open(path.join(vol.path, 'app/sparse.img'), 'w');
      await fh.truncate(6 * 1024 ** 3);
      await fh.close();
    });
    after(async () => {
      await vol?.destroy().catch(() => undefined);
      await rmrf(vols);
    });

    /** Starts `meshback run`, resolves once stderr shows `mark`, then sends it `signal` (default SIGKILL) and waits for its end. */
    const killAfter = async (args: string[], mark: RegExp, signal: NodeJS.Signals = 'SIGKILL'): Promise<string> => {
      const p = spawn(BIN, args, { env: { ...process.env, ...env, MESHBACK_TEST_SCRYPT_N: '1024' }, stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      const exited = new Promise((r) => p.on('close', r));
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no ${mark} within 30 s: ${err}`)), 30_000);
        p.stderr.setEncoding('utf8').on('data', (d: string) => {
          err += d;
          if (mark.test(err)) {
            clearTimeout(t);
            resolve();
          }
        });
      });
      p.kill(signal);
      await exited;
      return err;
    };

    test('fsfreeze: refused when the repository is on the filesystem to freeze', async () => {
      const repo = path.join(vol.mount!, 'repo');
      const r0 = await mb(['init', '--repo', repo], { env });
      assert.equal(r0.code, 0, r0.stderr);
      const f = await write('frz-repo.yaml', `  frz:\n    sources: [${vol.path}/app]\n    repository: ${repo}\n    presets: [ { type: fsfreeze, mount: ${vol.mount} } ]\n`);
      const r = await mb(['run', 'frz', '--config', f], { env, timeoutMs: 60_000 });
      assert.equal(r.code, 14, r.stderr);
      assert.match(r.stderr, /fsfreeze preset: the repository .* is on the filesystem of .*: a backup would wait for its own freeze; move it to another filesystem/);
      await fsp.writeFile(path.join(vol.mount!, 'writable'), 'yes'); // not frozen
      await rmrf(repo);
    });

    test('fsfreeze: frozen while the backup reads, thawed after; SIGKILLed while frozen, its watchdog thaws', async () => {
      const f = await write('frz-ok.yaml', `  frz:\n    sources: [${vol.path}/app]\n    presets: [ { type: fsfreeze, mount: ${vol.mount}, timeout: 4s } ]\n`);
      await fsp.rm(path.join(vol.path, 'app/sparse.img'));
      const r = await mb(['run', 'frz', '--config', f, '--json'], { env, timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      const j = summary(r.stdout) as unknown as RunSummary;
      assert.equal(j.presets?.[0]?.outcome, 'ok');
      assert.ok((j.presets?.[0]?.held_seconds ?? -1) >= 0);
      assert.match(r.stderr, /frozen[\s\S]*thawed/);
      await fsp.writeFile(path.join(vol.path, 'after-thaw'), 'yes');
      // the watchdog: meshback killed while the filesystem is frozen (reading a 6 GiB sparse file)
      const fh = await fsp.open(path.join(vol.path, 'app/sparse.img'), 'w');
      await fh.truncate(6 * 1024 ** 3);
      await fh.close();
      await killAfter(['run', 'frz', '--config', f], /frozen/);
      const t0 = Date.now();
      const w = await new Promise<number>((resolve) => spawn('sh', ['-c', `echo x > ${vol.path}/probe`], { stdio: 'ignore' }).on('close', (c) => resolve(c ?? -1)));
      const waited = Date.now() - t0;
      assert.equal(w, 0);
      assert.ok(waited > 1000 && waited < 15_000, `a write waited ${waited} ms (frozen until the 4 s watchdog)`);
    });

    test('fsfreeze: SIGTERM while frozen thaws at once; a backup longer than the timeout fails (exit 14, no snapshot)', async () => {
      const sparse = path.join(vol.path, 'app/sparse.img');
      const fh = await fsp.open(sparse, 'w');
      await fh.truncate(6 * 1024 ** 3);
      await fh.close();
      const f = await write('frz-term.yaml', `  frzterm:\n    sources: [${vol.path}/app]\n    presets: [ { type: fsfreeze, mount: ${vol.mount}, timeout: 60s } ]\n`);
      await killAfter(['run', 'frzterm', '--config', f], /frozen/, 'SIGTERM');
      const t0 = Date.now();
      await fsp.writeFile(path.join(vol.path, 'after-sigterm'), 'yes'); // would wait 60 s for the watchdog
      assert.ok(Date.now() - t0 < 5000, `a write after SIGTERM waited ${Date.now() - t0} ms`);
      // the watchdog fires (1 s) before the 3 GiB are read: the freeze did not cover the backup
      const fh2 = await fsp.open(sparse, 'w');
      await fh2.truncate(3 * 1024 ** 3);
      await fh2.close();
      const before = (await snapshots()).length;
      const f2 = await write('frz-short.yaml', `  frzshort:\n    sources: [${vol.path}/app]\n    presets: [ { type: fsfreeze, mount: ${vol.mount}, timeout: 1s } ]\n`);
      const r = await mb(['run', 'frzshort', '--config', f2], { env, timeoutMs: 120_000 });
      assert.equal(r.code, 14, r.stderr);
      assert.match(r.stderr, /meshback: fsfreeze preset: the watchdog thawed .* after 1s, before the backup had read everything: raise the preset's timeout/);
      assert.equal((await snapshots()).length, before);
      await fsp.rm(sparse);
    });

    test('btrfs-snapshot: the snapshot is read under the original paths and deleted (also on SIGTERM); one left by a SIGKILLed run is deleted by the next run', async () => {
      await fsp.rm(path.join(vol.path, 'app/sparse.img'), { force: true });
      const f = await write('snap.yaml', `  snap:\n    sources: [${vol.path}/app]\n    presets: [ { type: btrfs-snapshot } ]\n`);
      const r = await mb(['run', 'snap', '--config', f, '--json'], { env, timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      const id = (summary(r.stdout) as unknown as RunSummary).snapshot_id!;
      const ls = await mb(['ls', id], { env });
      assert.match(ls.stdout, /^\/config\.json$/m); // one source: its contents at the top
      const sn = await mb(['snapshots', '--json'], { env });
      assert.ok(sn.stdout.includes(`${vol.path}/app`), sn.stdout);
      const snapDir = path.join(vol.mount!, '.meshback-snapshots');
      assert.deepEqual(await fsp.readdir(snapDir), []);
      // killed while it reads the snapshot: the snapshot stays behind
      const fh = await fsp.open(path.join(vol.path, 'app/sparse.img'), 'w');
      await fh.truncate(6 * 1024 ** 3);
      await fh.close();
      // SIGTERM: the exit hook deletes it
      await killAfter(['run', 'snap', '--config', f], /snapshot \/.*meshback-snap-/, 'SIGTERM');
      assert.deepEqual(await fsp.readdir(snapDir), []);
      // SIGKILL: it stays behind
      await killAfter(['run', 'snap', '--config', f], /snapshot \/.*meshback-snap-/);
      const left = await fsp.readdir(snapDir);
      assert.equal(left.length, 1);
      assert.match(left[0]!, /^meshback-snap-\d{8}T\d{6}Z-\d+-0$/);
      await fsp.rm(path.join(vol.path, 'app/sparse.img'));
      const r2 = await mb(['run', 'snap', '--config', f], { env, timeoutMs: 60_000 });
      assert.equal(r2.code, 0, r2.stderr);
      assert.match(r2.stderr, new RegExp(`deleted ${snapDir}/${left[0]}, a snapshot left behind by a run that was killed`));
      assert.deepEqual(await fsp.readdir(snapDir), []);
    });
  });
});
