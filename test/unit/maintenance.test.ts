process.env.MESHBACK_TEST_SCRYPT_N = '1024';

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBackend } from '../../src/storage/memory.ts';
import type { FileType } from '../../src/storage/backend.ts';
import { check } from '../../src/checker/index.ts';
import { BLOB_DATA, BLOB_TREE, ChunkIndex } from '../../src/content/index-table.ts';
import { ContentStore } from '../../src/content/store.ts';
import { MeshbackError } from '../../src/errors/index.ts';
import { EntriesByPack, EntryBits } from '../../src/maintenance/shared.ts';
import { PRUNE_PHASES, parseMaxUnused, prune } from '../../src/maintenance/prune.ts';
import type { PrunePhase } from '../../src/maintenance/prune.ts';
import { REPAIR_INDEX_PHASES, REPAIR_SNAPSHOTS_PHASES, repairIndex, repairSnapshots } from '../../src/maintenance/repair.ts';
import type { RepairSnapshotsPhase } from '../../src/maintenance/repair.ts';
import { PARITY_SCHEME_NAME } from '../../src/parity/index.ts';
import { Repository } from '../../src/repository/index.ts';
import { encodeTree } from '../../src/snapshot/tree.ts';
import type { Node } from '../../src/snapshot/tree.ts';
import { flipped, prngBytes } from './helpers.ts';

const PW = 'pw';
const KiB = 1024;

/** A directory: a file is a list of chunks, a directory an object. */
interface Spec {
  [name: string]: Buffer[] | Spec;
}

function chunks(seed: string, n: number, size = 3 * KiB): Buffer[] {
  return Array.from({ length: n }, (_, i) => prngBytes(`${seed}-${i}`, size + i * 97));
}

async function saveSpec(repo: Repository, spec: Spec): Promise<string> {
  const nodes: Node[] = [];
  for (const [name, v] of Object.entries(spec)) {
    const meta = { name, mode: 0o644, uid: 0, gid: 0, mtime: '0', ctime: '0', inode: 0, dev: 0, nlink: 1 };
    if (Array.isArray(v)) {
      const content: string[] = [];
      for (const c of v) {
        const id = repo.store.id(c);
        await repo.store.add(BLOB_DATA, id, c);
        content.push(id.toString('hex'));
      }
      nodes.push({ ...meta, type: 'file', size: v.reduce((a, c) => a + c.length, 0), content });
    } else nodes.push({ ...meta, type: 'dir', subtree: await saveSpec(repo, v) });
  }
  return repo.saveTree(encodeTree({ nodes }));
}

let clock = Date.UTC(2026, 0, 1);
async function backup(repo: Repository, label: string, spec: Spec): Promise<string> {
  const tree = await saveSpec(repo, spec);
  await repo.store.flush();
  const time = new Date((clock += 60_000)).toISOString();
  const summary = { files: 0, dirs: 0, symlinks: 0, others: 0, totalBytes: 0, bytesRead: 0, filesRead: 0, filesUnchanged: 0, filesChangedDuringRead: 0, errors: 0, blobsAdded: 0, bytesAdded: 0, bytesStored: 0, duration: 0 };
  return repo.saveSnapshot({ version: 1, time, endTime: time, host: 'h', username: 'u', paths: [`/${label}`], tags: [], tree, summary, program: 'test' });
}

/** Flattens a spec to path -> content. */
function flat(spec: Spec, prefix = ''): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const [name, v] of Object.entries(spec)) {
    if (Array.isArray(v)) out.set(`${prefix}/${name}`, Buffer.concat(v));
    else for (const [k, b] of flat(v, `${prefix}/${name}`)) out.set(k, b);
  }
  return out;
}

/** Reads every file of a snapshot back through the store (authenticated and re-hashed). */
async function readSnapshot(repo: Repository, id: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const walk = async (tree: string, prefix: string): Promise<void> => {
    for (const n of (await repo.loadTree(tree)).nodes) {
      if (n.type === 'dir') await walk(n.subtree!, `${prefix}/${n.name}`);
      else out.set(`${prefix}/${n.name}`, Buffer.concat(await Promise.all((n.content ?? []).map((c) => repo.store.load(Buffer.from(c, 'hex'))))));
    }
  };
  await walk((await repo.loadSnapshot(id)).tree, '');
  return out;
}

async function names(b: MemoryBackend, type: FileType): Promise<string[]> {
  const out: string[] = [];
  for await (const f of b.list(type)) out.push(f.name);
  return out.sort();
}

async function listing(b: MemoryBackend): Promise<string[]> {
  const out: string[] = [];
  for (const t of ['pack', 'index', 'snapshot'] as const) for (const n of await names(b, t)) out.push(`${t}/${n}`);
  return out;
}

async function bytesOf(b: MemoryBackend, type: FileType): Promise<number> {
  let n = 0;
  for await (const f of b.list(type)) n += f.size;
  return n;
}

function flipAt(b: Buffer, i: number): void {
  b.set(flipped(b.subarray(i, i + 1), 0), i);
}

const isCode = (code: string, re?: RegExp) => (err: unknown): boolean => err instanceof MeshbackError && err.code === code && (re === undefined || re.test(err.message));

/**
 * Three backups sharing data: small packs (16 KiB, 3-4 chunks each) so that forgetting the first
 * leaves packs partly used. Returns the snapshot ids and specs.
 */
async function fixture(): Promise<{ backend: MemoryBackend; ids: string[]; specs: Spec[] }> {
  const backend = new MemoryBackend();
  const repo = await Repository.init(backend, PW, { packSize: 16 * KiB });
  const shared = chunks('shared', 6);
  const specs: Spec[] = [
    // unique and shared files interleaved, so their chunks share packs
    { etc: { 'a.conf': chunks('one-a', 3), 'shared.conf': shared.slice(0, 3) }, var: { 'log': chunks('one-log', 5), data: shared.slice(3) } },
    { etc: { 'shared.conf': shared.slice(0, 3), 'b.conf': chunks('two-b', 2) }, var: { data: shared.slice(3), 'new': chunks('two-new', 4) } },
    { etc: { 'shared.conf': shared.slice(0, 3) }, var: { 'three': chunks('three', 3) } },
  ];
  const ids: string[] = [];
  for (const [i, s] of specs.entries()) ids.push(await backup(repo, `v${i}`, s));
  return { backend, ids, specs };
}

async function assertHealthy(backend: MemoryBackend, expect: Map<string, Spec>, opts: { unindexedOk?: boolean } = {}): Promise<void> {
  const repo = await Repository.open(backend, PW);
  const r = await check(repo, { readData: true });
  assert.deepEqual(r.findings, [], 'check --read-data finds nothing');
  if (opts.unindexedOk !== true) assert.deepEqual(r.unindexedPacks, [], 'no pack is left unindexed');
  assert.deepEqual((await names(backend, 'snapshot')).sort(), [...expect.keys()].sort());
  for (const [id, spec] of expect) assert.deepEqual(await readSnapshot(repo, id), flat(spec), `snapshot ${id.slice(0, 8)} reads back identical`);
}

describe('maintenance helpers', () => {
  it('parseMaxUnused accepts percentages and unlimited, refuses the rest', () => {
    assert.equal(parseMaxUnused('5'), 5);
    assert.equal(parseMaxUnused('12.5%'), 12.5);
    assert.equal(parseMaxUnused('0'), 0);
    assert.equal(parseMaxUnused('100'), 100);
    assert.equal(parseMaxUnused('Unlimited'), Infinity);
    for (const bad of ['', '-1', '101', 'ten', '5 %%', '1e3']) assert.throws(() => parseMaxUnused(bad), isCode('USAGE'), bad);
  });

  it('EntriesByPack groups entry numbers by pack; EntryBits sets bits', () => {
    const ix = new ChunkIndex(4);
    for (let p = 0; p < 5; p++) ix.packNumber(p.toString(16).padStart(64, '0'), 100);
    const ids = prngBytes('ebp', 32 * 50);
    for (let i = 0; i < 50; i++) ix.add(ids.subarray(i * 32, i * 32 + 32), i % 2 === 0 ? BLOB_DATA : BLOB_TREE, (i * 7) % 5, i, i + 1, i + 2);
    const g = new EntriesByPack(ix);
    let total = 0;
    for (let p = 0; p < 5; p++) {
      const es = Array.from(g.entries(p));
      total += es.length;
      assert.equal(g.count(p), es.length);
      for (const e of es) assert.equal(ix.packOf(e), p);
      const pe = g.packEntries(p);
      for (const [k, e] of es.entries()) {
        assert.deepEqual(pe[k]!.id, Buffer.from(ids.subarray(e * 32, e * 32 + 32)));
        assert.equal(ix.typeOf(e), e % 2 === 0 ? BLOB_DATA : BLOB_TREE);
        assert.deepEqual(Buffer.from(ix.idOf(e)), Buffer.from(ids.subarray(e * 32, e * 32 + 32)));
        assert.deepEqual([pe[k]!.offset, pe[k]!.length, pe[k]!.rawLength], [e, e + 1, e + 2]);
      }
    }
    assert.equal(total, 50);
    const bits = new EntryBits(50);
    for (const e of [0, 7, 8, 49]) bits.set(e);
    assert.deepEqual(Array.from({ length: 50 }, (_, e) => e).filter((e) => bits.has(e)), [0, 7, 8, 49]);
  });
});

describe('prune', () => {
  it('removes the data only forgotten snapshots used, repacks partly used packs, and keeps the rest intact', async () => {
    const { backend, ids, specs } = await fixture();
    const before = await bytesOf(backend, 'pack');
    await backend.delete({ type: 'snapshot', name: ids[0]! }); // what forget does
    const r = await prune(await Repository.open(backend, PW), { maxUnusedPercent: 0 });
    assert.equal(r.snapshots, 2);
    assert.ok(r.packsUnused > 0, 'packs holding only v0 data are deleted');
    assert.ok(r.packsRepacked > 0, 'packs mixing v0 data with shared data are repacked');
    assert.ok(r.blobsRemoved >= 3 + 5 + 3, `blobs removed ${r.blobsRemoved}: a.conf, log and v0's trees`);
    assert.equal(r.bytesUnusedAfter, 0, 'max-unused 0 leaves no unused blob');
    assert.equal(r.packsDeleted, r.deletedPacks.length);
    const after = await bytesOf(backend, 'pack');
    assert.ok(after < before, `${after} < ${before}`);
    assert.equal(r.bytesFreed, r.bytesDeleted - r.bytesWritten);
    assert.equal(r.bytesAfter, (await bytesOf(backend, 'pack')) + (await bytesOf(backend, 'index')));
    for (const p of r.deletedPacks) assert.equal(backend.raw({ type: 'pack', name: p }), undefined, `pack ${p} deleted`);
    await assertHealthy(backend, new Map([[ids[1]!, specs[1]!], [ids[2]!, specs[2]!]]));
    // everything in the index is in use now
    const again = await Repository.open(backend, PW);
    const second = await prune(again, { maxUnusedPercent: 0, dryRun: true });
    assert.equal(second.blobsUsed, second.blobs);
    assert.equal(second.packsDeleted, 0);
  });

  it('with parity: new packs get parity files, deleted packs lose theirs, orphaned ones are removed', async () => {
    const backend = new MemoryBackend();
    const repo = await Repository.init(backend, PW, { packSize: 16 * KiB, parity: { name: PARITY_SCHEME_NAME, k: 4, m: 2, blockSize: 1024 } });
    const shared = chunks('p-shared', 4);
    const a = await backup(repo, 'pa', { u: chunks('p-a', 2), s: shared.slice(0, 2), v: chunks('p-a2', 2), t: shared.slice(2) });
    const b = await backup(repo, 'pb', { y: chunks('p-b', 3), s: shared.slice(0, 2), t: shared.slice(2) });
    assert.deepEqual(await names(backend, 'parity'), await names(backend, 'pack'), 'every pack has a parity file');
    // a parity file whose pack is gone (a prune interrupted between the two deletes)
    const orphan = (await names(backend, 'pack'))[0]!;
    const orphanBytes = backend.raw({ type: 'pack', name: orphan })!;
    await backend.delete({ type: 'snapshot', name: a });
    const r = await prune(await Repository.open(backend, PW), { maxUnusedPercent: 0 });
    assert.ok(r.packsDeleted > 0 && r.packsWritten > 0, JSON.stringify(r));
    assert.deepEqual(await names(backend, 'parity'), await names(backend, 'pack'), 'parity files follow the packs after prune');
    await backend.put({ type: 'parity', name: 'f'.repeat(64) }, orphanBytes.subarray(0, 100));
    const again = await prune(await Repository.open(backend, PW), { maxUnusedPercent: 100 });
    assert.equal(again.parityFilesDeleted, 1);
    assert.deepEqual(await names(backend, 'parity'), await names(backend, 'pack'));
    await assertHealthy(backend, new Map([[b, { y: chunks('p-b', 3), s: shared.slice(0, 2), t: shared.slice(2) }]]));
  });

  it('with max-unused 100 deletes unused packs but repacks nothing; unused bytes stay within a percentage otherwise', async () => {
    const { backend, ids, specs } = await fixture();
    await backend.delete({ type: 'snapshot', name: ids[0]! });
    const r = await prune(await Repository.open(backend, PW), { maxUnusedPercent: 100 });
    assert.equal(r.packsRepacked, 0);
    assert.equal(r.blobsRepacked, 0);
    assert.equal(r.packsWritten, 0);
    assert.ok(r.packsUnused > 0);
    assert.ok(r.bytesUnusedAfter > 0, 'partly used packs keep their unused blobs');
    await assertHealthy(backend, new Map([[ids[1]!, specs[1]!], [ids[2]!, specs[2]!]]));
    // a tolerance between: what is left unused is within it
    const r2 = await prune(await Repository.open(backend, PW), { maxUnusedPercent: 10 });
    assert.ok(r2.bytesUnusedAfter <= (r2.bytesUsed * 10) / 100, `${r2.bytesUnusedAfter} <= 10% of ${r2.bytesUsed}`);
    assert.ok(r2.packsRepacked > 0);
    await assertHealthy(backend, new Map([[ids[1]!, specs[1]!], [ids[2]!, specs[2]!]]));
  });

  it('a dry run changes nothing and predicts the real run', async () => {
    const { backend, ids } = await fixture();
    await backend.delete({ type: 'snapshot', name: ids[0]! });
    const files = await listing(backend);
    const dry = await prune(await Repository.open(backend, PW), { maxUnusedPercent: 0, dryRun: true });
    assert.deepEqual(await listing(backend), files);
    assert.equal(dry.dryRun, true);
    const real = await prune(await Repository.open(backend, PW), { maxUnusedPercent: 0 });
    for (const k of ['packsDeleted', 'packsUnused', 'packsRepacked', 'blobsRemoved', 'blobsRepacked', 'bytesDeleted', 'indexFilesDeleted'] as const) assert.equal(dry[k], real[k], k);
    assert.deepEqual(dry.deletedPacks.sort(), real.deletedPacks.sort());
    // estimates: within 10% (pack boundaries differ a little)
    assert.ok(Math.abs(dry.bytesWritten - real.bytesWritten) <= real.bytesWritten * 0.1, `written ${dry.bytesWritten} vs ${real.bytesWritten}`);
  });

  it('deletes packs no index lists and drops duplicate copies of blobs', async () => {
    const { backend, ids, specs } = await fixture();
    const repo = await Repository.open(backend, PW);
    // a pack without an index (an interrupted backup), and a second copy of indexed blobs
    const orphan = new ContentStore(backend, repo.key, { packSize: 16 * KiB, compressionLevel: 3 });
    const stray = prngBytes('stray', 5000);
    await orphan.add(BLOB_DATA, orphan.id(stray), stray);
    await orphan.flush();
    for (const f of orphan.indexFiles) await backend.delete({ type: 'index', name: f });
    const dup = new ContentStore(backend, repo.key, { packSize: 64 * KiB, compressionLevel: 3 });
    for (const c of (specs[2]!['var'] as Spec)['three'] as Buffer[]) await dup.add(BLOB_DATA, dup.id(c), c);
    await dup.flush();
    const r = await prune(await Repository.open(backend, PW), { maxUnusedPercent: 0 });
    assert.equal(r.packsUnindexed, 1);
    assert.ok(r.packsDeleted >= 2, 'the orphan and the duplicate pack');
    await assertHealthy(backend, new Map(ids.map((id, i) => [id, specs[i]!])));
    const after = await Repository.open(backend, PW);
    assert.equal((await prune(after, { dryRun: true, maxUnusedPercent: 0 })).packsDeleted, 0);
  });

  it('refuses, changing nothing, when a tree or chunk is damaged or missing, or an index file is damaged', async () => {
    // a damaged tree blob
    {
      const { backend } = await fixture();
      const repo = await Repository.open(backend, PW);
      const ix = repo.store.index;
      let tree = 0;
      while (ix.typeOf(tree) !== BLOB_TREE) tree++;
      flipAt(backend.raw({ type: 'pack', name: ix.packs[ix.packOf(tree)]! })!, ix.offsetOf(tree) + 20);
      const files = await listing(backend);
      await assert.rejects(prune(await Repository.open(backend, PW), { maxUnusedPercent: 0 }), isCode('INTEGRITY', /prune refused: .*tree .*repair snapshots/));
      assert.deepEqual(await listing(backend), files);
    }
    // a missing chunk: its index file is gone; its pack would look unindexed and be deleted
    {
      const { backend } = await fixture();
      const idx = await names(backend, 'index');
      await backend.delete({ type: 'index', name: idx[0]! });
      const files = await listing(backend);
      await assert.rejects(prune(await Repository.open(backend, PW)), isCode('INTEGRITY', /not in the index.*repair index/));
      assert.deepEqual(await listing(backend), files);
    }
    // a damaged index file
    {
      const { backend } = await fixture();
      const idx = await names(backend, 'index');
      flipAt(backend.raw({ type: 'index', name: idx[1]! })!, 20);
      const files = await listing(backend);
      await assert.rejects(prune(await Repository.open(backend, PW)), isCode('INTEGRITY', /repair index/));
      assert.deepEqual(await listing(backend), files);
    }
    // a damaged snapshot file
    {
      const { backend, ids } = await fixture();
      flipAt(backend.raw({ type: 'snapshot', name: ids[1]! })!, 30);
      const files = await listing(backend);
      await assert.rejects(prune(await Repository.open(backend, PW)), isCode('INTEGRITY', /snapshot file .* cannot be read/));
      assert.deepEqual(await listing(backend), files);
    }
  });

  it('repacks a truncated pack whose blobs in use are intact, and honours --repack', async () => {
    const { backend, ids, specs } = await fixture();
    await backend.delete({ type: 'snapshot', name: ids[0]! });
    let repo = await Repository.open(backend, PW);
    // cut the header off a pack holding blobs in use: the blobs stay where the index says
    const used = repo.store.index.lookup(repo.store.id(((specs[2]!['var'] as Spec)['three'] as Buffer[])[0]!))!;
    const raw = backend.raw({ type: 'pack', name: used.pack })!;
    await backend.delete({ type: 'pack', name: used.pack });
    await backend.put({ type: 'pack', name: used.pack }, raw.subarray(0, raw.length - 4 - raw.readUInt32LE(raw.length - 4)));
    const r = await prune(repo, { maxUnusedPercent: 100 });
    assert.equal(r.packsResized, 1);
    assert.ok(r.repackedPacks.includes(used.pack));
    await assertHealthy(backend, new Map([[ids[1]!, specs[1]!], [ids[2]!, specs[2]!]]));
    // --repack: a fully used pack is copied and deleted on request
    repo = await Repository.open(backend, PW);
    const pack = repo.store.index.packs[0]!;
    await assert.rejects(prune(repo, { repack: ['zz'] }), isCode('USAGE'));
    await assert.rejects(prune(repo, { repack: ['0123456789abcdef0123'] }), isCode('NOT_FOUND'));
    const f = await prune(repo, { maxUnusedPercent: 100, repack: [pack.slice(0, 12)] });
    assert.deepEqual(f.repackedPacks, [pack]);
    assert.equal(backend.raw({ type: 'pack', name: pack }), undefined);
    await assertHealthy(backend, new Map([[ids[1]!, specs[1]!], [ids[2]!, specs[2]!]]));
  });

  it('leaves a valid repository when it stops at any phase, and a second run finishes the job', async () => {
    for (const phase of PRUNE_PHASES) {
      const { backend, ids, specs } = await fixture();
      await backend.delete({ type: 'snapshot', name: ids[0]! });
      const keep = new Map([[ids[1]!, specs[1]!], [ids[2]!, specs[2]!]]);
      const seen: PrunePhase[] = [];
      const crash = new Error(`crash at ${phase}`);
      await assert.rejects(
        prune(await Repository.open(backend, PW), {
          maxUnusedPercent: 0,
          onPhase: (p) => {
            seen.push(p);
            if (p === phase) throw crash;
          },
        }),
        (err) => err === crash,
        `phase ${phase} is reached`,
      );
      assert.equal(seen.at(-1), phase);
      await assertHealthy(backend, keep, { unindexedOk: true });
      await prune(await Repository.open(backend, PW), { maxUnusedPercent: 0 });
      await assertHealthy(backend, keep);
      const last = await prune(await Repository.open(backend, PW), { maxUnusedPercent: 0, dryRun: true });
      assert.equal(last.packsDeleted, 0, `after a crash at ${phase} and a rerun nothing is left to remove`);
      assert.equal(last.blobsUsed, last.blobs);
    }
  });
});

describe('repair index', () => {
  it('rebuilds a deleted index from the pack headers', async () => {
    const { backend, ids, specs } = await fixture();
    const before = await Repository.open(backend, PW);
    for (const n of await names(backend, 'index')) await backend.delete({ type: 'index', name: n });
    const repo = await Repository.open(backend, PW);
    assert.equal(repo.store.index.size, 0);
    const dry = await repairIndex(repo, { dryRun: true });
    assert.deepEqual(await names(backend, 'index'), []);
    const r = await repairIndex(repo);
    assert.equal(dry.blobsIndexed, r.blobsIndexed);
    assert.equal(r.blobsFound, before.store.index.size);
    assert.equal(r.blobsIndexed, before.store.index.size);
    assert.deepEqual(r.damagedPacks, []);
    await assertHealthy(backend, new Map(ids.map((id, i) => [id, specs[i]!])));
  });

  it('reports damaged and missing packs by name, with the blobs lost, and indexes the rest', async () => {
    const { backend } = await fixture();
    const repo = await Repository.open(backend, PW);
    const packs = await names(backend, 'pack');
    const count = (p: string): number => new EntriesByPack(repo.store.index).count(repo.store.index.packs.indexOf(p));
    const [flip, cut, gone] = packs;
    flipAt(backend.raw({ type: 'pack', name: flip! })!, 10);
    const raw = backend.raw({ type: 'pack', name: cut! })!;
    await backend.delete({ type: 'pack', name: cut! });
    await backend.put({ type: 'pack', name: cut! }, raw.subarray(0, raw.length - 7));
    await backend.delete({ type: 'pack', name: gone! });
    const r = await repairIndex(repo);
    assert.deepEqual(r.damagedPacks.map((d) => d.pack).sort(), [flip!, cut!].sort());
    const df = r.damagedPacks.find((d) => d.pack === flip)!;
    assert.match(df.message, /does not match its name/);
    assert.equal(df.blobs, count(flip!));
    assert.equal(r.damagedPacks.find((d) => d.pack === cut)!.blobs, count(cut!));
    assert.deepEqual(r.missingPacks, [{ pack: gone!, blobs: count(gone!) }]);
    assert.equal(r.blobsLost, count(flip!) + count(cut!) + count(gone!));
    assert.equal(r.packsIndexed, packs.length - 3);
    const after = await Repository.open(backend, PW);
    assert.equal(after.store.index.size, repo.store.index.size - r.blobsLost);
    for (const p of [flip!, cut!, gone!]) assert.equal(after.store.index.hasPack(p), false);
  });

  it('leaves a loadable index when it stops at any phase', async () => {
    for (const phase of REPAIR_INDEX_PHASES) {
      const { backend, ids, specs } = await fixture();
      const crash = new Error(phase);
      await assert.rejects(repairIndex(await Repository.open(backend, PW), { onPhase: (p) => { if (p === phase) throw crash; } }), (e) => e === crash);
      await assertHealthy(backend, new Map(ids.map((id, i) => [id, specs[i]!])));
    }
  });
});

describe('repair snapshots', () => {
  it('drops files and directories whose data is lost, tags the new snapshot, and leaves untouched ones alone', async () => {
    const { backend, ids, specs } = await fixture();
    let repo = await Repository.open(backend, PW);
    // lose v1's 'new' file (its first chunk's pack) and v2's whole var/ directory listing
    const newChunk = repo.store.index.lookup(repo.store.id(((specs[1]!['var'] as Spec)['new'] as Buffer[])[0]!))!;
    await backend.delete({ type: 'pack', name: newChunk.pack });
    const v2 = await repo.loadSnapshot(ids[2]!);
    const varTree = (await repo.loadTree(v2.tree)).nodes.find((n) => n.name === 'var')!.subtree!;
    const treeAt = repo.store.index.lookup(Buffer.from(varTree, 'hex'))!;
    flipAt(backend.raw({ type: 'pack', name: treeAt.pack })!, treeAt.offset + 20);
    // the files that lose data, whatever shares the deleted pack
    const lostChunks = new Set<string>();
    repo.store.index.forEach((id, _t, pn) => {
      if (repo.store.index.packs[pn] === newChunk.pack) lostChunks.add(Buffer.from(id).toString('hex'));
    });

    const files = await listing(backend);
    const dry = await repairSnapshots(repo, { dryRun: true });
    assert.deepEqual(await listing(backend), files, 'dry run writes nothing');
    repo = await Repository.open(backend, PW);
    const r = await repairSnapshots(repo);
    assert.deepEqual(r.repaired.map((x) => [x.original, x.droppedFiles, x.droppedDirs]), dry.repaired.map((x) => [x.original, x.droppedFiles, x.droppedDirs]));
    const byOrig = new Map(r.repaired.map((x) => [x.original, x]));
    const r1 = byOrig.get(ids[1]!)!;
    assert.ok(r1.droppedFiles.includes('/var/new'), JSON.stringify(r1));
    assert.deepEqual(byOrig.get(ids[2]!)!.droppedDirs, ['/var']);
    assert.ok(r.damagedPacks.includes(newChunk.pack));

    // each repaired snapshot: tag, record, original gone, remaining files intact
    const snaps = await names(backend, 'snapshot');
    for (const x of r.repaired) {
      assert.ok(!snaps.includes(x.original));
      assert.ok(snaps.includes(x.id!));
      const s = await repo.loadSnapshot(x.id!);
      assert.ok(s.tags.includes('repaired'));
      assert.equal(s.repaired?.original, x.original);
      assert.deepEqual(s.repaired?.droppedFiles, x.droppedFiles);
    }
    // a snapshot that lost nothing keeps its id
    const untouched = ids.filter((id) => !byOrig.has(id));
    for (const id of untouched) assert.ok(snaps.includes(id));
    assert.equal(r.unchanged, untouched.length);

    // prune then removes the lost pack from the index, and everything left checks and reads back
    await prune(await Repository.open(backend, PW), { repack: r.damagedPacks });
    const expect = new Map<string, Spec>();
    for (const [i, id] of ids.entries()) {
      const spec = structuredClone(specs[i]!) as Spec;
      const rep = byOrig.get(id);
      if (rep === undefined) {
        expect.set(id, spec);
        continue;
      }
      const drop = (p: string): void => {
        const parts = p.split('/').slice(1);
        let o = spec;
        for (const d of parts.slice(0, -1)) o = o[d] as Spec;
        delete o[parts.at(-1)!];
      };
      for (const p of [...rep.droppedFiles, ...rep.droppedDirs]) drop(p);
      // nothing dropped that still had all its data
      for (const p of rep.droppedFiles) {
        const parts = p.split('/').slice(1);
        let o: Spec | Buffer[] = specs[i]!;
        for (const d of parts) o = (o as Spec)[d]!;
        assert.ok((o as Buffer[]).some((c) => lostChunks.has(repo.store.id(c).toString('hex'))), `${p} did lose data`);
      }
      expect.set(rep.id!, spec);
    }
    await assertHealthy(backend, expect);
  });

  it('refuses while the missing data may come back with repair index', async () => {
    // a lost index file: its packs hold what the snapshots miss
    {
      const { backend } = await fixture();
      await backend.delete({ type: 'index', name: (await names(backend, 'index'))[1]! });
      const files = await listing(backend);
      await assert.rejects(repairSnapshots(await Repository.open(backend, PW)), isCode('INTEGRITY', /holds blob .* no index lists it: run 'meshback repair index' first/));
      await assert.rejects(repairSnapshots(await Repository.open(backend, PW), { dryRun: true }), isCode('INTEGRITY'));
      assert.deepEqual(await listing(backend), files);
      await repairIndex(await Repository.open(backend, PW));
      const r = await repairSnapshots(await Repository.open(backend, PW));
      assert.equal(r.repaired.length, 0, 'after repair index nothing is lost');
    }
    // a damaged index file
    {
      const { backend } = await fixture();
      flipAt(backend.raw({ type: 'index', name: (await names(backend, 'index'))[0]! })!, 50);
      await assert.rejects(repairSnapshots(await Repository.open(backend, PW)), isCode('INTEGRITY', /repair index/));
    }
  });

  it('finds damage inside a pack only with readData', async () => {
    const { backend, ids, specs } = await fixture();
    const repo = await Repository.open(backend, PW);
    const c = repo.store.index.lookup(repo.store.id(((specs[2]!['var'] as Spec)['three'] as Buffer[])[1]!))!;
    flipAt(backend.raw({ type: 'pack', name: c.pack })!, c.offset + 30);
    const plain = await repairSnapshots(repo);
    assert.equal(plain.repaired.length, 0);
    const deep = await repairSnapshots(await Repository.open(backend, PW), { readData: true, snapshots: [ids[2]!.slice(0, 10)] });
    assert.equal(deep.snapshots, 1);
    assert.deepEqual(deep.repaired.map((x) => x.droppedFiles), [['/var/three']]);
    assert.deepEqual(deep.damagedPacks, [c.pack]);
    assert.equal(deep.blobsLost, 1);
    // the damaged copy goes with prune --repack; then check --read-data passes
    await prune(await Repository.open(backend, PW), { repack: [c.pack] });
    const spec = structuredClone(specs[2]!) as Spec;
    delete (spec['var'] as Spec)['three'];
    await assertHealthy(backend, new Map([[ids[0]!, specs[0]!], [ids[1]!, specs[1]!], [deep.repaired[0]!.id!, spec]]));
  });

  it('a lost root leaves an empty snapshot; a rerun after a crash at any phase writes no duplicate', async () => {
    for (const phase of REPAIR_SNAPSHOTS_PHASES) {
      const { backend, ids } = await fixture();
      const repo = await Repository.open(backend, PW);
      // v0's trees are alone in their pack (no other snapshot shares them): damage its root
      const root = repo.store.index.lookup(Buffer.from((await repo.loadSnapshot(ids[0]!)).tree, 'hex'))!;
      flipAt(backend.raw({ type: 'pack', name: root.pack })!, root.offset + 15);
      const crash = new Error(phase);
      const seen: RepairSnapshotsPhase[] = [];
      await assert.rejects(
        repairSnapshots(repo, {
          onPhase: (p) => {
            seen.push(p);
            if (p === phase) throw crash;
          },
        }),
        (e) => e === crash,
      );
      assert.equal(seen.at(-1), phase);
      const r = await repairSnapshots(await Repository.open(backend, PW));
      const snaps = await names(backend, 'snapshot');
      assert.equal(snaps.length, 3, `no duplicate snapshot after a crash at ${phase}`);
      assert.ok(!snaps.includes(ids[0]!), 'the original is gone');
      assert.ok(snaps.includes(ids[1]!) && snaps.includes(ids[2]!), 'the others are untouched');
      const fresh = await Repository.open(backend, PW);
      const id = snaps.find((s) => s !== ids[1] && s !== ids[2])!;
      const m = await fresh.loadSnapshot(id);
      assert.equal(m.repaired?.original, ids[0]);
      assert.deepEqual(m.repaired?.droppedDirs, ['/']);
      assert.deepEqual((await fresh.loadTree(m.tree)).nodes, []);
      assert.deepEqual(m.paths, ['/v0']);
      // the rerun reports what it found: before the manifest was written it repairs, after that nothing is left
      assert.equal(r.repaired.length + r.unchanged, r.snapshots);
    }
  });
});
