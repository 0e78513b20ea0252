/**
 * End-to-end: `meshback bench run` for real on a 16 MiB data set, one repeat, with meshback,
 * restic and tar in the scenarios container-crash and node-outage: on plain directories (the
 * tools' own strategies) and, as root, on loop-mounted btrfs volumes (the snapshot strategy).
 * results.json must validate (schema, version, one cell per combination, statuses, integrity
 * counts, RPO and RTO); bad names exit 2 with one line; a tool whose binary is not on PATH is
 * skipped with the reason; `meshback bench report DIR` re-renders the report and refuses a results
 * file of another version.
 *
 * The missing-binary case runs with a PATH made of symlinks to everything on the real PATH except
 * `borg` (and --no-install, so that nothing is installed).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { checkResults } from '../../lab/bench/fault/runner.ts';
import type { BenchResults, Cell } from '../../lab/bench/fault/types.ts';
import { isRoot } from '../../src/host/packages.ts';
import { which } from '../../src/host/process.ts';
import { mb, rmrf, tmpdir } from '../helpers/cli.ts';

const SCENARIOS = ['container-crash', 'node-outage'];
const FAST = ['--env', 'MESHBACK_TEST_SCRYPT_N=1024'];

async function results(out: string): Promise<BenchResults> {
  const json = JSON.parse(await fsp.readFile(path.join(out, 'results.json'), 'utf8')) as unknown;
  assert.equal(checkResults(json), undefined);
  return json as BenchResults;
}

/** Every measured cell: ok, with integrity, RPO, RTO and steps that make sense. */
function assertCellMeasured(c: Cell): void {
  const where = `${c.scenario} ${c.tool}/${c.strategy}`;
  assert.equal(c.status, 'ok', `${where}: ${JSON.stringify(c.repeats.map((r) => r.reason))}`);
  assert.equal(c.repeats.length, 1, where);
  const r = c.repeats[0]!;
  assert.equal(r.status, 'ok', where);
  assert.ok(r.integrity !== undefined && r.integrity.files > 100, where);
  assert.equal(r.integrity.matching, r.integrity.files, `${where}: ${JSON.stringify(r.integrity)}`);
  assert.equal(r.integrity.extra, 0, where);
  assert.ok(r.rpo !== undefined && r.rpo.seconds > 0 && r.rpo.writesLost > 0 && r.rpo.bytesLost > 0, `${where}: ${JSON.stringify(r.rpo)}`);
  assert.ok(r.rtoSeconds !== undefined && r.rtoSeconds > 0 && r.rtoSeconds < 60, where);
  assert.ok((r.bytesStored ?? 0) > 0, where);
  const names = r.steps.map((s) => s.name);
  assert.ok(names.includes('backup-1') && names.includes('restore'), `${where}: ${names.join(',')}`);
  for (const s of r.steps) assert.ok(s.wallSeconds >= 0 && s.peakRssBytes >= 0 && typeof s.exitCode === 'number', where);
  assert.ok(r.steps.find((s) => s.name === 'backup-1')!.peakRssBytes > 0, where);
  // the workload ran and was accounted for
  assert.ok(r.notes?.some((n) => /^workload: \d+ acknowledged writes/.test(n)), `${where}: ${JSON.stringify(r.notes)}`);
  assert.ok(c.summary.backupWallSeconds !== undefined && c.summary.restoreWallSeconds !== undefined && c.summary.rtoSeconds !== undefined && c.summary.rpoSeconds !== undefined, where);
  assert.equal(c.summary.filesMatchingFraction?.median, 1, where);
  if (c.scenario === 'node-outage') {
    assert.ok(names.includes('backup-3'), where);
    // the repository's state after the kill is recorded, by the tool's own check where it has one
    assert.ok(r.notes!.some((n) => /checks clean after the outage|check after the outage did not pass|has no check/.test(n)), where);
  }
}

test('bench run: meshback, restic and tar on directories, both scenarios; bench report re-renders', { timeout: 150_000 }, async (t) => {
  if ((await which('restic')) === undefined) {
    t.skip('restic is not installed (Debian package restic; .ci/run installs it)');
    return;
  }
  const base = tmpdir('bench-fault');
  try {
    const out = path.join(base, 'out');
    const r = await mb(['bench', 'run', '--tools', 'meshback,restic,tar', '--scenarios', SCENARIOS.join(','), '--strategies', 'full-copy,incremental', '--size', '16MiB', '--repeat', '1', '--seed', '7', '--out', out, ...FAST]);
    assert.equal(r.code, 0, `exit ${r.code}\n${r.stderr.slice(-4000)}`);
    // one progress line per step on stderr
    assert.match(r.stderr, /container-crash meshback\/incremental repeat 1: backup-1: [\d.]+ s wall/);
    assert.match(r.stderr, /node-outage tar\/full-copy repeat 1: fault: node outage/);
    const res = await results(out);
    assert.equal(res.options.seed, 7);
    assert.deepEqual(res.options.strategies, ['full-copy', 'incremental']);
    assert.deepEqual(res.tools.map((x) => x.name), ['meshback', 'restic', 'tar']);
    assert.ok(res.tools.every((x) => x.version !== '' && x.unavailable === undefined));
    assert.match(res.tools.find((x) => x.name === 'restic')!.note ?? '', /Stash and Velero/);
    assert.ok(res.machine.cpus > 0 && res.machine.memoryBytes > 0);
    const combos = res.cells.map((c) => `${c.scenario} ${c.tool}/${c.strategy}/${c.volume}`).sort();
    assert.deepEqual(combos, [
      'container-crash meshback/incremental/dir', 'container-crash restic/incremental/dir', 'container-crash tar/full-copy/dir',
      'node-outage meshback/incremental/dir', 'node-outage restic/incremental/dir', 'node-outage tar/full-copy/dir',
    ]);
    for (const c of res.cells) assertCellMeasured(c);
    // nothing of the run is left behind: no work directory, no writer, no mount
    assert.deepEqual((await fsp.readdir(out)).sort(), ['report.html', 'report.md', 'results.json']);

    // re-render from results.json alone
    await fsp.rm(path.join(out, 'report.md'));
    await fsp.rm(path.join(out, 'report.html'));
    const rep = await mb(['bench', 'report', out, '--json']);
    assert.equal(rep.code, 0, rep.stderr);
    assert.ok(existsSync(path.join(out, 'report.md')) && existsSync(path.join(out, 'report.html')));
    assert.equal((JSON.parse(rep.stdout.trim()) as { message_type: string }).message_type, 'summary');

    // a results file of another version is refused with one line, exit 2
    const other = path.join(base, 'other');
    await fsp.mkdir(other);
    await fsp.writeFile(path.join(other, 'results.json'), JSON.stringify({ ...res, version: 99 }));
    const bad = await mb(['bench', 'report', other]);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
    assert.match(bad.stderr, /results version 99; this meshback reads version 1/);
    const none = await mb(['bench', 'report', path.join(base, 'nowhere')]);
    assert.equal(none.code, 5, none.stderr);
    assert.match(none.stderr, /results\.json does not exist/);
  } finally {
    await rmrf(base);
  }
});

test('bench run: the snapshot strategy on loop-mounted btrfs volumes', { timeout: 150_000 }, async (t) => {
  if (!isRoot()) {
    t.skip('needs root: the snapshot strategy loop-mounts btrfs images');
    return;
  }
  if ((await which('mkfs.btrfs')) === undefined || (await which('restic')) === undefined) {
    t.skip('btrfs-progs or restic is not installed (.ci/run installs them)');
    return;
  }
  const base = tmpdir('bench-fault-btrfs');
  try {
    const out = path.join(base, 'out');
    const r = await mb(['bench', 'run', '--tools', 'meshback,restic,tar', '--scenarios', SCENARIOS.join(','), '--strategies', 'snapshot', '--size', '16MiB', '--repeat', '1', '--out', out, ...FAST]);
    assert.equal(r.code, 0, `exit ${r.code}\n${r.stderr.slice(-4000)}`);
    const res = await results(out);
    assert.deepEqual(res.options.snapshotTools, ['meshback', 'restic']);
    // tar's own strategy is not listed and it is not a snapshot tool: no tar cell
    const combos = res.cells.map((c) => `${c.scenario} ${c.tool}/${c.strategy}/${c.volume}`).sort();
    assert.deepEqual(combos, ['container-crash meshback/snapshot/btrfs', 'container-crash restic/snapshot/btrfs', 'node-outage meshback/snapshot/btrfs', 'node-outage restic/snapshot/btrfs']);
    for (const c of res.cells) {
      assertCellMeasured(c);
      const rep = c.repeats[0]!;
      // backups were taken from a snapshot (its cost recorded apart), and integrity covers the
      // workload's files too: the reference is the snapshot's own manifest
      assert.ok(rep.steps.filter((s) => s.name.startsWith('backup') && s.exitCode === 0).every((s) => s.snapshotSeconds !== undefined && s.snapshotSeconds > 0));
      assert.ok(!rep.notes!.some((n) => n.startsWith('live directory backup')));
    }
    const crash = res.cells.find((c) => c.scenario === 'container-crash' && c.tool === 'meshback')!.repeats[0]!;
    // backup-2 was taken while the writer ran: its snapshot held workload files, and they are back
    assert.ok(crash.integrity!.files > res.cells.find((c) => c.scenario === 'node-outage' && c.tool === 'meshback')!.repeats[0]!.integrity!.files - 20);
    const mounts = await fsp.readFile('/proc/self/mounts', 'utf8');
    assert.ok(!mounts.includes(base), `a volume is still mounted:\n${mounts}`);
  } finally {
    await rmrf(base);
  }
});

test('bench run: unknown tool or scenario is one line and exit 2', async () => {
  const a = await mb(['bench', 'run', '--tools', 'meshback,zfs', '--out', '/nonexistent/x']);
  assert.equal(a.code, 2);
  assert.equal(a.stderr.trim().split('\n').length, 1, a.stderr);
  assert.match(a.stderr, /unknown tool "zfs": choose from meshback,meshback-parity,restic,restic-debian,kopia,kopia-default,borg,tar,rsync,cp,velero$/m);
  const b = await mb(['bench', 'run', '--scenarios', 'container-crash,meteor', '--out', '/nonexistent/x']);
  assert.equal(b.code, 2);
  assert.equal(b.stderr.trim().split('\n').length, 1, b.stderr);
  assert.match(b.stderr, /unknown scenario "meteor": choose from container-crash,node-outage/);
  const c = await mb(['bench', 'run', '--repeat', '0', '--out', '/nonexistent/x']);
  assert.equal(c.code, 2);
  assert.match(c.stderr, /--repeat "0" is not an integer of at least 1/);
  const d = await mb(['bench', 'run']);
  assert.equal(d.code, 2);
  assert.match(d.stderr, /needs --out DIR/);
  const e = await mb(['bench', 'frobnicate']);
  assert.equal(e.code, 2);
  assert.match(e.stderr, /unknown bench subcommand "frobnicate"/);
});

test('bench run: a tool whose binary is missing is skipped with the reason; the rest runs', { timeout: 60_000 }, async () => {
  const base = tmpdir('bench-fault-path');
  try {
    // a PATH with everything of the real one except borg
    const bin = path.join(base, 'bin');
    await fsp.mkdir(bin);
    const seen = new Set<string>();
    for (const dir of (process.env['PATH'] ?? '').split(':')) {
      if (dir === '' || !existsSync(dir)) continue;
      for (const name of await fsp.readdir(dir)) {
        if (name === 'borg' || seen.has(name)) continue;
        seen.add(name);
        await fsp.symlink(path.join(dir, name), path.join(bin, name));
      }
    }
    const out = path.join(base, 'out');
    const r = await mb(['bench', 'run', '--tools', 'borg,tar', '--scenarios', 'container-crash', '--strategies', 'full-copy,incremental', '--size', '4MiB', '--repeat', '1', '--no-install', '--out', out], {
      env: { PATH: bin },
    });
    assert.equal(r.code, 0, r.stderr);
    const res = await results(out);
    const borg = res.cells.find((c) => c.tool === 'borg')!;
    assert.equal(borg.status, 'skipped');
    assert.match(borg.reason ?? '', /borg is unavailable: borg not found on PATH \(Debian package borgbackup\): installation is off/);
    assert.equal(borg.repeats.length, 0);
    assert.match(res.tools.find((x) => x.name === 'borg')!.unavailable ?? '', /not found on PATH/);
    assert.equal(res.cells.find((c) => c.tool === 'tar')!.status, 'ok');
    assert.match(r.stderr, /borg: unavailable/);
  } finally {
    await rmrf(base);
  }
});

test('bench run s3-outage: MinIO through toxiproxy goes down mid-backup; borg is not applicable', { timeout: 120_000 }, async () => {
  const base = tmpdir('bench-s3-outage');
  try {
    const out = path.join(base, 'out');
    const r = await mb(['bench', 'run', '--tools', 'meshback,restic,kopia,borg', '--scenarios', 's3-outage', '--strategies', 'incremental', '--size', '8MiB', '--repeat', '1', '--seed', '3', '--outage-seconds', '3', '--no-install', '--out', out, ...FAST]);
    assert.equal(r.code, 0, `exit ${r.code}\n${r.stderr.slice(-4000)}`);
    assert.match(r.stderr, /s3-outage meshback\/incremental repeat 1: backup-2; the object store goes down [\d.]+ s into it, for 3 s/);
    const res = await results(out);
    assert.equal(res.options.outageSeconds, 3);
    const borg = res.cells.find((c) => c.tool === 'borg')!;
    assert.equal(borg.status, 'skipped');
    assert.match(borg.reason ?? '', /^not applicable: borg cannot keep its repository in S3/);
    for (const tool of ['meshback', 'restic', 'kopia']) {
      const c = res.cells.find((x) => x.tool === tool)!;
      assert.equal(c.status, 'ok', `${tool}: ${JSON.stringify(c.repeats.map((x) => x.reason))}`);
      const rep = c.repeats[0]!;
      const o = rep.outage!;
      assert.ok(o !== undefined && o.seconds === 3 && o.startedAfterSeconds >= 0.2, `${tool}: ${JSON.stringify(o)}`);
      assert.equal(o.hit, true, `${tool}: the outage missed backup-2: ${JSON.stringify(rep.steps)}`);
      const b2 = rep.steps.find((s) => s.name === 'backup-2')!;
      // the backup either waited the outage out, or failed with the tool's own line and was rerun
      if (o.backup === 'finished') assert.ok(b2.wallSeconds >= 2.5 && !o.rerun, `${tool}: ${JSON.stringify(b2)}`);
      else {
        assert.ok(b2.exitCode !== 0 && (b2.message ?? '') !== '' && o.rerun && o.rerunOk === true, `${tool}: ${JSON.stringify({ b2, o })}`);
        assert.ok(rep.steps.some((s) => s.name === 'backup-3' && s.exitCode === 0), tool);
      }
      // nothing stored is lost: the check passes and the restore has every file, the new ones included
      assert.ok(rep.steps.some((s) => s.name === 'check' && s.exitCode === 0), `${tool}: ${JSON.stringify(rep.notes)}`);
      assert.ok(rep.integrity !== undefined && rep.integrity.files > 10 && rep.integrity.matching === rep.integrity.files && rep.integrity.extra === 0, `${tool}: ${JSON.stringify(rep.integrity)}`);
      assert.ok(rep.rpo !== undefined && rep.rpo.bytesLost === 0 && rep.rtoSeconds !== undefined && rep.rtoSeconds > 0, tool);
      assert.ok((rep.bytesStored ?? 0) > 8 * 1024 * 1024, `${tool}: stored ${rep.bytesStored}`);
    }
    const md = await fsp.readFile(path.join(out, 'report.md'), 'utf8');
    assert.match(md, /\| borg \| not applicable \|/);
    assert.match(md, /\| borg \| incremental \| not applicable: borg cannot keep its repository in S3 \| — \|/);
    assert.match(md, /rode out the outage|backup failed \(exit \d+\)/);
  } finally {
    await rmrf(base);
  }
});

test('bench run repo-corruption: the meshback (parity) row repairs from parity what plain meshback loses', { timeout: 90_000 }, async () => {
  const base = tmpdir('bench-parity');
  try {
    const out = path.join(base, 'out');
    const r = await mb(['bench', 'run', '--tools', 'meshback,meshback-parity', '--scenarios', 'repo-corruption,container-crash', '--strategies', 'incremental', '--size', '16MiB', '--repeat', '1', '--seed', '5', '--no-install', '--out', out, ...FAST]);
    assert.equal(r.code, 0, `exit ${r.code}\n${r.stderr.slice(-4000)}`);
    const res = await results(out);
    // the parity variant runs only where the repository is damaged
    assert.deepEqual(res.cells.map((c) => `${c.scenario} ${c.tool}`).sort(), ['container-crash meshback', 'repo-corruption meshback', 'repo-corruption meshback-parity']);
    assert.equal(res.tools.find((x) => x.name === 'meshback-parity')!.label, 'meshback (parity)');
    const plain = res.cells.find((c) => c.scenario === 'repo-corruption' && c.tool === 'meshback')!.repeats[0]!;
    const par = res.cells.find((c) => c.tool === 'meshback-parity')!.repeats[0]!;
    assert.equal(plain.repair, undefined);
    assert.ok(plain.integrity!.damaged + plain.integrity!.missing > 0, JSON.stringify(plain.integrity));
    assert.equal(par.status, 'ok', par.reason ?? '');
    assert.equal(par.corruptionDetected, true);
    const rep = par.repair!;
    assert.ok(rep !== undefined && rep.exitCode === 0 && rep.packsLost === 0 && rep.packsDamaged + rep.parityRewritten >= 1 && rep.packsRepaired === rep.packsDamaged, JSON.stringify(rep));
    assert.deepEqual(par.steps.map((s) => s.name), ['backup', 'check', 'repair', 'restore']);
    assert.ok(par.integrity!.matching === par.integrity!.files && par.integrity!.files > 100, JSON.stringify(par.integrity));
    assert.ok(par.rtoSeconds !== undefined && par.rtoSeconds > 0);
    const md = await fsp.readFile(path.join(out, 'report.md'), 'utf8');
    // the matrix's columns follow --scenarios: repo-corruption, then container-crash
    assert.match(md, /\| meshback \(parity\) \| (repaired from parity \d+\/\d+ packs; )?detected; intact \| — \|/);
    assert.match(md, /\| meshback \| detected; incomplete, reported 1\/1 [^|]+ \| intact \|/);
  } finally {
    await rmrf(base);
  }
});
