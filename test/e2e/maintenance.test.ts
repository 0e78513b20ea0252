/**
 * End-to-end: prune, repair index and repair snapshots through the real CLI, on repositories
 * with small packs (64 KiB) and small chunks so that a few MiB give dozens of packs.
 *
 * - prune after forgetting a snapshot: its data goes, the rest restores byte-identical;
 *   --dry-run changes nothing; --max-unused 100 repacks nothing, 0 repacks;
 * - prune refuses (exit 4) while a snapshot's tree is damaged;
 * - a prune killed (SIGKILL) at each phase leaves a repository that checks clean, restores,
 *   and that a second prune finishes;
 * - check --read-data names each injected corruption (flipped byte, truncated pack, deleted
 *   pack, deleted index file) with the snapshots and files it affects, and the repair commands
 *   (+ prune) bring the repository back to a clean check with the rest restorable.
 */
process.env.MESHBACK_TEST_SCRYPT_N = '1024';

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { LocalBackend } from '../../src/storage/local.ts';
import { decodeIndex } from '../../src/content/pack.ts';
import { PAUSE_ENV } from '../../src/maintenance/shared.ts';
import { PRUNE_PHASES } from '../../src/maintenance/prune.ts';
import { Repository } from '../../src/repository/index.ts';
import { compareTrees } from '../../lab/gen/compare.ts';
import { BIN, mb, rmrf, summary, tmpdir } from '../helpers/cli.ts';
import { prngBytes } from '../unit/helpers.ts';
import { flipFileByte } from '../unit/helpers.ts';

const PW = 'prune-pw';
const KiB = 1024;

async function write(file: string, data: Buffer | string): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, data);
}

const logText = (seed: number, n: number): string => {
  let s = '';
  for (let i = 0; s.length < n; i++) s += `[2026-11-22T10:${String(i % 60).padStart(2, '0')}:00Z] "GET /orders/${(i * seed) % 9973} HTTP/1.1" 200 ${i % 4096} upstream=10.0.${seed}.7:8080\n`;
  return s;
};

/** Three versions of a volume: shared data, and files only one version has. */
async function makeSources(base: string): Promise<string[]> {
  const dirs = ['v1', 'v2', 'v3'].map((v) => path.join(base, v));
  for (const d of dirs) {
    await write(path.join(d, 'etc/mesh.yaml'), 'static_resources:\n  listeners: []\n'.repeat(1500));
    await write(path.join(d, 'data/shared.bin'), prngBytes('shared', 300 * KiB));
    // small files: some shared, some per version, so that their chunks share packs
    for (let i = 0; i < 12; i++) await write(path.join(d, `small/shared-${i}.dat`), prngBytes(`small-${i}`, 3 * KiB + i));
  }
  const [v1, v2, v3] = dirs as [string, string, string];
  await write(path.join(v1, 'data/old.bin'), prngBytes('old', 400 * KiB));
  for (let i = 0; i < 12; i++) await write(path.join(v1, `small/v1-${i}.dat`), prngBytes(`v1-${i}`, 3 * KiB + i));
  await write(path.join(v2, 'data/new.bin'), prngBytes('new', 200 * KiB));
  for (let i = 0; i < 5; i++) await write(path.join(v2, `small/v2-${i}.dat`), prngBytes(`v2-${i}`, 2 * KiB + i));
  await write(path.join(v3, 'logs/access.log'), logText(3, 120 * KiB));
  return dirs;
}

async function initRepo(dir: string): Promise<void> {
  await Repository.init(new LocalBackend(dir), PW, { packSize: 64 * KiB, chunker: { min: 8 * KiB, avg: 32 * KiB, max: 128 * KiB } });
}

/** Every file under dir with its size (the repository's on-disk state). */
async function listing(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const walk = async (d: string): Promise<void> => {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.set(path.relative(dir, p), (await fsp.stat(p)).size);
    }
  };
  await walk(dir);
  return out;
}

async function storedBytes(repo: string): Promise<number> {
  let n = 0;
  for (const [p, size] of await listing(repo)) if (p.startsWith('data/') || p.startsWith('index/')) n += size;
  return n;
}

async function packPath(repo: string, pack: string): Promise<string> {
  return path.join(repo, 'data', pack.slice(0, 2), pack);
}


/** Where the first chunk of a file of a snapshot is stored. */
async function locate(repoDir: string, snapshot: string, rel: string[]): Promise<{ pack: string; offset: number; length: number; blob: string }> {
  const repo = await Repository.open(new LocalBackend(repoDir), PW);
  let tree = (await repo.loadSnapshot(snapshot)).tree;
  for (const [i, name] of rel.entries()) {
    const n = (await repo.loadTree(tree)).nodes.find((x) => x.name === name)!;
    if (i < rel.length - 1) tree = n.subtree!;
    else {
      const blob = n.content![0]!;
      const e = repo.store.index.lookup(Buffer.from(blob, 'hex'))!;
      return { pack: e.pack, offset: e.offset, length: e.length, blob };
    }
  }
  throw new Error('not found');
}

async function indexFileListing(repoDir: string, pack: string): Promise<string> {
  const repo = await Repository.open(new LocalBackend(repoDir), PW);
  for (const name of await fsp.readdir(path.join(repoDir, 'index'))) {
    let hit = false;
    decodeIndex(repo.key.encKey, await fsp.readFile(path.join(repoDir, 'index', name)), name, (p) => {
      if (p === pack) hit = true;
    });
    if (hit) return name;
  }
  throw new Error(`no index file lists ${pack}`);
}

/** Runs the CLI until it prints `pattern` on stderr or stdout, then kills it with SIGKILL. */
function runAndKill(args: string[], env: Record<string, string>, pattern: RegExp): Promise<{ matched: boolean; output: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const p = spawn(BIN, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let matched = false;
    const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    const onData = (d: Buffer): void => {
      output += d.toString('utf8');
      if (!matched && pattern.test(output)) {
        matched = true;
        p.kill('SIGKILL');
      }
    };
    p.stdout.on('data', onData);
    p.stderr.on('data', onData);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ matched, output, code });
    });
  });
}

describe('prune and repair through the CLI', () => {
  let base: string;
  let srcs: string[];
  /** a repository with snapshots of v1, v2, v3, and one where v1 was forgotten */
  let full: string;
  let forgotten: string;
  const ids: string[] = [];
  const envFor = (repo: string): Record<string, string> => ({ MESHBACK_REPO: repo, MESHBACK_PASSWORD: PW });
  const copyRepo = async (from: string, name: string): Promise<string> => {
    const to = path.join(base, name);
    await fsp.cp(from, to, { recursive: true });
    return to;
  };
  const restoreCompare = async (repo: string, snapshot: string, src: string, name: string): Promise<string[]> => {
    const dst = path.join(base, 'restore', name);
    const r = await mb(['restore', snapshot, '--target', dst], { env: envFor(repo) });
    assert.equal(r.code, 0, r.stderr);
    const diffs = await compareTrees(src, dst);
    await rmrf(dst);
    return diffs;
  };
  const checkJson = async (repo: string): Promise<{ code: number; s: Record<string, unknown>; stdout: string }> => {
    const c = await mb(['check', '--read-data', '--json'], { env: envFor(repo) });
    return { code: c.code, s: summary(c.stdout), stdout: c.stdout };
  };

  before(async () => {
    base = tmpdir('prune');
    srcs = await makeSources(path.join(base, 'src'));
    full = path.join(base, 'full');
    await initRepo(full);
    for (const s of srcs) {
      const b = await mb(['backup', s, '--json'], { env: envFor(full) });
      assert.equal(b.code, 0, b.stderr);
      ids.push(summary(b.stdout)['snapshot_id'] as string);
    }
    forgotten = await copyRepo(full, 'forgotten');
    await fsp.rm(path.join(forgotten, 'snapshots', ids[0]!)); // what 'forget' does
  });
  after(async () => {
    await rmrf(base);
  });

  test('prune after forgetting a snapshot: dry run, max-unused 100, then a repacking prune; bytes go down, the rest restores identical', async () => {
    const repo = await copyRepo(forgotten, 'p1');
    const env = envFor(repo);
    const files = await listing(repo);
    const dry = await mb(['prune', '--dry-run', '--max-unused', '0', '--json'], { env });
    assert.equal(dry.code, 0, dry.stderr);
    const d = summary(dry.stdout);
    assert.deepEqual(await listing(repo), files, '--dry-run changes nothing');
    assert.equal(d['dryRun'], true);
    const human = await mb(['prune', '--dry-run'], { env });
    assert.match(human.stdout, /dry run: nothing was changed/);
    assert.match(human.stdout, /packs would be deleted: \d+/);

    // max-unused 100: unused packs go, nothing is repacked
    const other = await copyRepo(forgotten, 'p1-keep');
    const keep = await mb(['prune', '--max-unused', '100', '--json'], { env: envFor(other) });
    assert.equal(keep.code, 0, keep.stderr);
    const k = summary(keep.stdout);
    assert.equal(k['packsRepacked'], 0);
    assert.equal(k['packsWritten'], 0);
    assert.ok((k['packsUnused'] as number) > 0);
    assert.ok((k['bytesUnusedAfter'] as number) > 0, 'partly used packs keep unused blobs');
    assert.equal((await checkJson(other)).code, 0);

    const before = await storedBytes(repo);
    const r = await mb(['prune', '--max-unused', '0', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const s = summary(r.stdout);
    for (const key of ['packsDeleted', 'packsUnused', 'packsRepacked', 'blobsRemoved', 'blobsRepacked', 'bytesDeleted']) assert.equal(s[key], d[key], `dry run predicted ${key}`);
    assert.ok((s['packsRepacked'] as number) > 0, 'partly used packs were repacked');
    assert.equal(s['bytesUnusedAfter'], 0);
    const afterBytes = await storedBytes(repo);
    assert.equal(before - afterBytes, s['bytesFreed'], 'bytes freed = bytes gone from data/ and index/');
    assert.ok(before - afterBytes > 400 * KiB, `v1's unique 412 KiB are gone: freed ${before - afterBytes}`);
    assert.equal(s['bytesAfter'], afterBytes);

    const c = await checkJson(repo);
    assert.equal(c.code, 0, c.stdout);
    assert.deepEqual(c.s['unindexedPacks'], []);
    assert.deepEqual(await restoreCompare(repo, ids[1]!, srcs[1]!, 'p1-v2'), []);
    assert.deepEqual(await restoreCompare(repo, ids[2]!, srcs[2]!, 'p1-v3'), []);
    const again = summary((await mb(['prune', '--max-unused', '0', '--json'], { env })).stdout);
    assert.equal(again['packsDeleted'], 0, 'a second prune finds nothing');
  });

  test('prune refuses while a snapshot tree is damaged, and changes nothing', async () => {
    const repo = await copyRepo(full, 'refuse');
    const r0 = await Repository.open(new LocalBackend(repo), PW);
    const root = r0.store.index.lookup(Buffer.from((await r0.loadSnapshot(ids[1]!)).tree, 'hex'))!;
    await flipFileByte(await packPath(repo, root.pack), root.offset + 10);
    const files = await listing(repo);
    const r = await mb(['prune'], { env: envFor(repo) });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /^meshback: prune refused: .*tree .*nothing was deleted.*repair snapshots/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.deepEqual(await listing(repo), files);
    assert.equal((await mb(['prune', '--max-unused', 'lots'], { env: envFor(repo) })).code, 2);
  });

  test('a prune killed at any phase leaves a valid repository, and the next prune finishes', async () => {
    for (const phase of PRUNE_PHASES) {
      const repo = await copyRepo(forgotten, `kill-${phase}`);
      const env = envFor(repo);
      const k = await runAndKill(['prune', '--max-unused', '0'], { ...env, [PAUSE_ENV]: phase, MESHBACK_TEST_SCRYPT_N: '1024' }, new RegExp(`paused at phase ${phase}\\b`));
      assert.ok(k.matched, `phase ${phase} reached: ${k.output}`);
      const c = await checkJson(repo);
      assert.equal(c.code, 0, `check after a kill at ${phase}: ${c.stdout}`);
      assert.deepEqual(await restoreCompare(repo, ids[2]!, srcs[2]!, `kill-${phase}`), [], `restore after a kill at ${phase}`);
      const p = await mb(['prune', '--max-unused', '0', '--json'], { env });
      assert.equal(p.code, 0, p.stderr);
      const c2 = await checkJson(repo);
      assert.equal(c2.code, 0, c2.stdout);
      assert.deepEqual(c2.s['unindexedPacks'], [], `nothing left over after a kill at ${phase} and a rerun`);
      assert.deepEqual(await restoreCompare(repo, ids[1]!, srcs[1]!, `kill2-${phase}`), []);
      await rmrf(repo);
    }
  });

  /** check --read-data: exit 4, the files it names per snapshot */
  const damaged = async (repo: string, expect: { pack?: string; blob?: string; kinds: string[] }): Promise<Map<string, string[]>> => {
    const c = await checkJson(repo);
    assert.equal(c.code, 4, c.stdout);
    const findings = c.s['findings'] as { kind: string; pack?: string; blob?: string }[];
    for (const kind of expect.kinds) assert.ok(findings.some((f) => f.kind === kind && (expect.pack === undefined || f.pack === expect.pack)), `finding ${kind} for ${expect.pack}: ${JSON.stringify(findings)}`);
    if (expect.blob !== undefined) assert.ok(findings.some((f) => f.blob === expect.blob), `blob ${expect.blob} named`);
    if (expect.pack !== undefined) assert.ok((c.s['damagedPacks'] as string[]).includes(expect.pack));
    const out = new Map<string, string[]>();
    for (const a of c.s['affected'] as { snapshot: string; files: string[] }[]) out.set(a.snapshot, a.files.map((f) => f.replace(/ \(directory listing unreadable\)$/, '')).sort());
    return out;
  };
  /** repair snapshots: what it dropped per original snapshot, and the new ids */
  const repairSnaps = async (repo: string, args: string[]): Promise<{ dropped: Map<string, string[]>; newIds: Map<string, string>; damagedPacks: string[] }> => {
    const r = await mb(['repair', 'snapshots', ...args, '--json'], { env: envFor(repo) });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const s = summary(r.stdout);
    const dropped = new Map<string, string[]>();
    const newIds = new Map<string, string>();
    for (const x of s['repaired'] as { original: string; id: string; droppedFiles: string[]; droppedDirs: string[] }[]) {
      dropped.set(x.original, [...x.droppedFiles, ...x.droppedDirs].sort());
      newIds.set(x.original, x.id);
    }
    return { dropped, newIds, damagedPacks: s['damagedPacks'] as string[] };
  };
  /** restores each snapshot (or its repaired replacement) and expects exactly the dropped files missing */
  const restoresRest = async (repo: string, newIds: Map<string, string>, dropped: Map<string, string[]>, name: string): Promise<void> => {
    for (const [i, id] of ids.slice(1).entries()) {
      const src = srcs[i + 1]!;
      const top = `/${path.basename(src)}`;
      const lost = (dropped.get(id) ?? []).map((p) => p.slice(top.length + 1));
      const diffs = await restoreCompare(repo, newIds.get(id) ?? id, src, `${name}-${i}`);
      // every difference is a dropped file (or something below a dropped directory)
      for (const diff of diffs) assert.ok(lost.some((l) => diff === `missing in dst: ${l}` || diff.startsWith(`missing in dst: ${l}/`)), `${name}: unexpected difference ${diff} (dropped: ${lost.join(', ')})`);
      for (const l of lost) assert.ok(diffs.includes(`missing in dst: ${l}`), `${name}: ${l} was dropped`);
    }
  };

  test('a flipped byte: check names pack, blob, snapshot and file; repair snapshots --read-data drops just that file; prune --repack clears the damage', async () => {
    const repo = await copyRepo(forgotten, 'flip');
    const at = await locate(repo, ids[1]!, ['v2', 'data', 'new.bin']);
    await flipFileByte(await packPath(repo, at.pack), at.offset + (at.length >> 1));
    const human = await mb(['check', '--read-data'], { env: envFor(repo) });
    assert.equal(human.code, 4);
    assert.ok(human.stdout.includes(at.pack), 'the pack is named');
    assert.match(human.stdout, new RegExp(`snapshot ${ids[1]!.slice(0, 8)} .*is affected: 1 file\\(s\\): /v2/data/new\\.bin`));
    const affected = await damaged(repo, { pack: at.pack, blob: at.blob, kinds: ['pack-damaged', 'blob-damaged'] });
    assert.deepEqual([...affected], [[ids[1]!, ['/v2/data/new.bin']]]);

    const plain = await repairSnaps(repo, []);
    assert.equal(plain.dropped.size, 0, 'without --read-data the damage inside a pack is not seen');
    const { dropped, newIds, damagedPacks } = await repairSnaps(repo, ['--read-data']);
    assert.deepEqual([...dropped], [...affected], 'repair drops exactly what check named');
    assert.deepEqual(damagedPacks, [at.pack]);
    assert.equal((await mb(['check'], { env: envFor(repo) })).code, 0, 'structure checks clean');
    await restoresRest(repo, newIds, dropped, 'flip');
    const snaps = await mb(['snapshots'], { env: envFor(repo) });
    assert.match(snaps.stdout, new RegExp(`${newIds.get(ids[1]!)!.slice(0, 8)} .* repaired `));
    const p = await mb(['prune', '--repack', at.pack.slice(0, 16)], { env: envFor(repo) });
    assert.equal(p.code, 0, p.stderr);
    const c = await checkJson(repo);
    assert.equal(c.code, 0, c.stdout);
    await restoresRest(repo, newIds, dropped, 'flip2');
  });

  test('a damaged pack header: check names the pack, no file is affected; prune --repack replaces the pack', async () => {
    const repo = await copyRepo(forgotten, 'header');
    const at = await locate(repo, ids[1]!, ['v2', 'data', 'new.bin']);
    const file = await packPath(repo, at.pack);
    await flipFileByte(file, (await fsp.stat(file)).size - 10);
    const c = await mb(['check', '--read-data'], { env: envFor(repo) });
    assert.equal(c.code, 4);
    assert.ok(c.stdout.includes(`damaged packs: ${at.pack}`), c.stdout);
    assert.doesNotMatch(c.stdout, /is affected/);
    assert.match(c.stdout, new RegExp(`prune --repack ${at.pack.slice(0, 16)}`));
    const p = await mb(['prune', '--repack', at.pack.slice(0, 16), '--json'], { env: envFor(repo) });
    assert.equal(p.code, 0, p.stderr);
    assert.ok((summary(p.stdout)['repackedPacks'] as string[]).includes(at.pack));
    assert.equal((await checkJson(repo)).code, 0);
    await restoresRest(repo, new Map(), new Map(), 'header');
  });

  test('a truncated pack: check names it and the files; repair snapshots drops them; prune copies the intact blobs out', async () => {
    const repo = await copyRepo(forgotten, 'trunc');
    const at = await locate(repo, ids[1]!, ['v2', 'data', 'new.bin']);
    await fsp.truncate(await packPath(repo, at.pack), at.offset + 10);
    const affected = await damaged(repo, { pack: at.pack, blob: at.blob, kinds: ['pack-size', 'blob-damaged'] });
    assert.ok(affected.get(ids[1]!)?.includes('/v2/data/new.bin'), JSON.stringify([...affected]));
    const { dropped, newIds } = await repairSnaps(repo, []);
    assert.deepEqual([...dropped].sort(), [...affected].sort(), 'repair drops exactly what check named');
    const p = await mb(['prune', '--json'], { env: envFor(repo) });
    assert.equal(p.code, 0, p.stderr);
    const c = await checkJson(repo);
    assert.equal(c.code, 0, c.stdout);
    await restoresRest(repo, newIds, dropped, 'trunc');
  });

  test('a deleted pack: check names it and the files; repair index drops it from the index, repair snapshots the files', async () => {
    const repo = await copyRepo(forgotten, 'gone');
    const at = await locate(repo, ids[1]!, ['v2', 'data', 'new.bin']);
    await fsp.rm(await packPath(repo, at.pack));
    const affected = await damaged(repo, { pack: at.pack, kinds: ['pack-missing'] });
    assert.ok(affected.get(ids[1]!)?.includes('/v2/data/new.bin'));
    const ri = await mb(['repair', 'index', '--json'], { env: envFor(repo) });
    assert.equal(ri.code, 4, 'data was lost');
    const s = summary(ri.stdout);
    assert.equal((s['missingPacks'] as { pack: string }[])[0]!.pack, at.pack);
    assert.ok((s['blobsLost'] as number) > 0);
    const { dropped, newIds } = await repairSnaps(repo, []);
    assert.deepEqual([...dropped].sort(), [...affected].sort());
    const c = await checkJson(repo);
    assert.equal(c.code, 0, c.stdout);
    await restoresRest(repo, newIds, dropped, 'gone');
  });

  test('a deleted index file: check names the unindexed chunks and files; repair index rebuilds it and everything restores', async () => {
    const repo = await copyRepo(forgotten, 'noindex');
    const at = await locate(repo, ids[1]!, ['v2', 'data', 'new.bin']);
    const idx = await indexFileListing(repo, at.pack);
    await fsp.rm(path.join(repo, 'index', idx));
    const c0 = await checkJson(repo);
    assert.equal(c0.code, 4);
    assert.ok((c0.s['unindexedPacks'] as string[]).includes(at.pack));
    // that index file listed v2's packs, its trees among them: v2's root is not found
    const affected = await damaged(repo, { kinds: ['tree-damaged'] });
    assert.deepEqual([...affected], [[ids[1]!, ['/']]]);
    assert.match(JSON.stringify(c0.s['findings']), /is not in the index/);
    const human = await mb(['check'], { env: envFor(repo) });
    assert.match(human.stdout, /meshback repair index/);
    assert.equal((await mb(['prune'], { env: envFor(repo) })).code, 4, 'prune refuses: the unindexed packs are in use');
    const rs = await mb(['repair', 'snapshots'], { env: envFor(repo) });
    assert.equal(rs.code, 4, 'repair snapshots refuses: repair index would find the data');
    assert.match(rs.stderr, /run 'meshback repair index' first/);
    const dry = await mb(['repair', 'index', '--dry-run'], { env: envFor(repo) });
    assert.equal(dry.code, 0);
    assert.equal((await checkJson(repo)).code, 4, 'the dry run repaired nothing');
    const ri = await mb(['repair', 'index', '--json'], { env: envFor(repo) });
    assert.equal(ri.code, 0, ri.stdout);
    assert.ok((summary(ri.stdout)['blobsFound'] as number) > 0);
    const c = await checkJson(repo);
    assert.equal(c.code, 0, c.stdout);
    await restoresRest(repo, new Map(), new Map(), 'noindex');
    assert.equal((await mb(['prune'], { env: envFor(repo) })).code, 0);
    assert.equal((await checkJson(repo)).code, 0);
  });
});
