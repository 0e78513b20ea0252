process.env.MESHBACK_TEST_SCRYPT_N = '1024';

/**
 * Parity in a repository: the config records the scheme, every pack gets its parity file after
 * the pack and before its index, check says whether a damaged pack is repairable, and
 * repairPacks rebuilds it (or reports it, changing nothing). On the in-memory backend.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Handle } from '../../src/storage/backend.ts';
import { MemoryBackend } from '../../src/storage/memory.ts';
import { check } from '../../src/checker/index.ts';
import { repairPacks } from '../../src/checker/repair.ts';
import { BLOB_DATA } from '../../src/content/index-table.ts';
import { sha256hex } from '../../src/content/pack.ts';
import { MeshbackError } from '../../src/errors/index.ts';
import { DEFAULT_PARITY, decodeParityHeader, encodeParityFile, parseParityScheme } from '../../src/parity/index.ts';
import type { ParityScheme } from '../../src/parity/index.ts';
import { Repository } from '../../src/repository/index.ts';
import { prngBytes } from './helpers.ts';

const PW = 'parity unit test';
const KiB = 1024;

/** Records the order of puts. */
class RecordingBackend extends MemoryBackend {
  readonly puts: string[] = [];
  override async put(h: Handle, parts: Uint8Array | readonly Uint8Array[]): Promise<void> {
    await super.put(h, parts);
    this.puts.push(`${h.type}/${h.name}`);
  }
}

async function names(b: MemoryBackend, type: 'pack' | 'parity' | 'index'): Promise<string[]> {
  const out: string[] = [];
  for await (const f of b.list(type)) out.push(f.name);
  return out;
}

async function filled(parity: ParityScheme | undefined, backend = new MemoryBackend()): Promise<{ backend: MemoryBackend; repo: Repository; blobs: Buffer[] }> {
  const repo = await Repository.init(backend, PW, { packSize: 256 * KiB, ...(parity !== undefined ? { parity } : {}) });
  const blobs: Buffer[] = [];
  for (let i = 0; i < 40; i++) blobs.push(prngBytes(`parity-repo-${i}`, 20 * KiB + i * 97));
  for (const b of blobs) await repo.store.add(BLOB_DATA, repo.store.id(b), b);
  await repo.store.flush();
  return { backend, repo: await Repository.open(backend, PW), blobs };
}

/** Replaces a stored pack's bytes (a test's way to damage it). */
async function setPack(b: MemoryBackend, name: string, data: Buffer): Promise<void> {
  await b.replace({ type: 'pack', name }, data);
}

function damageRegion(b: Buffer, from: number, len: number): Buffer {
  const c = Buffer.from(b);
  for (let i = from; i < from + len && i < c.length; i++) c[i] = c[i]! ^ 0x3c;
  return c;
}

describe('parity in a repository', () => {
  it('records the scheme in the config; every pack gets the parity file its bytes give, after the pack and before its index', async () => {
    const backend = new RecordingBackend();
    const { repo } = await filled(DEFAULT_PARITY, backend);
    assert.deepEqual(repo.config.parity, DEFAULT_PARITY);
    const packs = await names(backend, 'pack');
    assert.ok(packs.length >= 3, `${packs.length} packs`);
    assert.deepEqual(await names(backend, 'parity'), packs);
    for (const p of packs) {
      const pack = backend.raw({ type: 'pack', name: p })!;
      assert.ok(backend.raw({ type: 'parity', name: p })!.equals(encodeParityFile(pack, p, DEFAULT_PARITY)), p);
      const at = backend.puts.indexOf(`pack/${p}`);
      const par = backend.puts.indexOf(`parity/${p}`);
      const idx = backend.puts.findIndex((x) => x.startsWith('index/'));
      assert.ok(at >= 0 && at < par && par < idx, `pack ${at} < parity ${par} < index ${idx}`);
    }
  });

  it('counts parity bytes in the store statistics', async () => {
    const backend = new MemoryBackend();
    const repo = await Repository.init(backend, PW, { packSize: 256 * KiB, parity: DEFAULT_PARITY });
    for (let i = 0; i < 20; i++) {
      const b = prngBytes(`stats-${i}`, 30 * KiB);
      await repo.store.add(BLOB_DATA, repo.store.id(b), b);
    }
    await repo.store.flush();
    let packBytes = 0;
    let parityBytes = 0;
    for await (const f of backend.list('pack')) packBytes += f.size;
    for await (const f of backend.list('parity')) parityBytes += f.size;
    assert.equal(repo.store.stats.bytesParity, parityBytes);
    assert.ok(parityBytes > packBytes * 0.12 && parityBytes < packBytes * 0.14, `${parityBytes} / ${packBytes}`);
  });

  it('a repository without parity writes none and records none', async () => {
    const { backend, repo } = await filled(undefined);
    assert.equal(repo.config.parity, undefined);
    assert.deepEqual(await names(backend, 'parity'), []);
    const r = await check(repo, { readData: true });
    assert.equal(r.ok, true);
    assert.deepEqual(r.parityProblems, []);
    const rp = await repairPacks(repo);
    assert.equal(rp.ok, true);
    assert.equal(rp.parity, null);
    assert.equal(rp.intact, (await names(backend, 'pack')).length);
  });

  it('refuses invalid schemes at init', async () => {
    await assert.rejects(Repository.init(new MemoryBackend(), PW, { parity: { ...DEFAULT_PARITY, m: 0 } }), (e: unknown) => e instanceof MeshbackError && e.code === 'USAGE');
    await assert.rejects(Repository.init(new MemoryBackend(), PW, { parity: { ...DEFAULT_PARITY, blockSize: 1000 } }), (e: unknown) => e instanceof MeshbackError && e.code === 'USAGE');
  });

  it('check says a damaged pack is repairable; repairPacks (dry run, then for real) rebuilds it byte for byte', async () => {
    const { backend, repo, blobs } = await filled(DEFAULT_PARITY);
    // the largest pack (the last one of a backup may be small: one stripe, which this damage exceeds)
    const [victim, other] = (await names(backend, 'pack')).sort((x, y) => backend.raw({ type: 'pack', name: y })!.length - backend.raw({ type: 'pack', name: x })!.length);
    const original = Buffer.from(backend.raw({ type: 'pack', name: victim! })!);
    const otherBytes = Buffer.from(backend.raw({ type: 'pack', name: other! })!);
    const h = decodeParityHeader(backend.raw({ type: 'parity', name: victim! })!)!;
    // a region of 1.5 blocks, and the tail cut by half a block
    const bad = damageRegion(original, 3 * h.blockSize + 100, (3 * h.blockSize) / 2).subarray(0, original.length - h.blockSize / 2);
    await setPack(backend, victim!, Buffer.from(bad));

    const c = await check(repo, { readData: true });
    assert.equal(c.ok, false);
    assert.deepEqual(c.repairablePacks, [victim]);
    assert.ok(c.findings.some((f) => f.kind === 'pack-damaged' && /repairable from parity: run 'meshback repair packs'/.test(f.message)), JSON.stringify(c.findings));

    const dry = await repairPacks(repo, { dryRun: true });
    assert.equal(dry.ok, true);
    assert.deepEqual(dry.damaged.map((d) => [d.pack, d.problem, d.status]), [[victim, 'truncated', 'repairable']]);
    assert.ok(backend.raw({ type: 'pack', name: victim! })!.equals(bad), 'a dry run writes nothing');

    const events: string[] = [];
    const r = await repairPacks(repo, { events: (e) => events.push(e.type) });
    assert.equal(r.ok, true);
    assert.deepEqual(r.damaged.map((d) => [d.pack, d.status]), [[victim, 'repaired']]);
    assert.ok(r.damaged[0]!.badDataBlocks >= 3);
    assert.ok(events.includes('progress'));
    assert.ok(backend.raw({ type: 'pack', name: victim! })!.equals(original));
    assert.ok(backend.raw({ type: 'pack', name: other! })!.equals(otherBytes), 'other packs untouched');
    const again = await check(repo, { readData: true });
    assert.equal(again.ok, true, JSON.stringify(again.findings));
    const reopened = await Repository.open(backend, PW);
    for (const b of blobs) assert.ok((await reopened.store.load(reopened.store.id(b))).equals(b));
  });

  it('a pack damaged beyond its parity is reported unrepairable and left as it is; nothing else changes', async () => {
    const { backend, repo } = await filled(parseParityScheme('16+2'));
    const packs = await names(backend, 'pack');
    const victim = packs[1]!;
    const h = decodeParityHeader(backend.raw({ type: 'parity', name: victim })!)!;
    let bad: Buffer = Buffer.from(backend.raw({ type: 'pack', name: victim })!);
    for (const b of [0, h.stripes, 2 * h.stripes]) bad = damageRegion(bad, b * h.blockSize + 7, 1);
    await setPack(backend, victim, bad);
    const before = new Map<string, Buffer>();
    for (const t of ['pack', 'parity', 'index'] as const) for (const n of await names(backend, t)) before.set(`${t}/${n}`, Buffer.from(backend.raw({ type: t, name: n })!));

    const c = await check(repo, { readData: true });
    assert.deepEqual(c.repairablePacks, []);
    assert.ok(c.findings.some((f) => f.kind === 'pack-damaged' && /not repairable from parity: 3 of its \d+ blocks are damaged/.test(f.message)), JSON.stringify(c.findings));
    const r = await repairPacks(repo);
    assert.equal(r.ok, false);
    assert.deepEqual(r.damaged.map((d) => [d.pack, d.problem, d.status]), [[victim, 'damaged', 'unrepairable']]);
    assert.match(r.damaged[0]!.reason!, /stripes lost up to 3 blocks/);
    for (const [k, v] of before) {
      const [t, n] = k.split('/') as ['pack' | 'parity' | 'index', string];
      assert.ok(backend.raw({ type: t, name: n })!.equals(v), `${k} unchanged`);
    }
  });

  it('a missing pack is unrepairable; a missing or damaged parity file of an intact pack is a note for check and is written again by repairPacks', async () => {
    const { backend, repo } = await filled(DEFAULT_PARITY);
    const [a, b, c] = await names(backend, 'pack');
    const parityB = Buffer.from(backend.raw({ type: 'parity', name: b! })!);
    const parityC = Buffer.from(backend.raw({ type: 'parity', name: c! })!);
    await backend.delete({ type: 'parity', name: b! });
    await backend.replace({ type: 'parity', name: c! }, damageRegion(parityC, 500, 3));
    const ck = await check(repo, { readData: true });
    assert.equal(ck.ok, true, 'parity problems are not errors');
    assert.deepEqual(ck.parityProblems, [{ pack: b, state: 'missing' }, { pack: c, state: 'damaged' }].sort((x, y) => (x.pack! < y.pack! ? -1 : 1)));
    const quick = await check(repo);
    assert.deepEqual(quick.parityProblems, [{ pack: b, state: 'missing' }], 'without readData only missing files are seen');

    const r = await repairPacks(repo);
    assert.equal(r.ok, true);
    assert.equal(r.parityRewritten.length, 2);
    assert.ok(backend.raw({ type: 'parity', name: b! })!.equals(parityB), 'the same bytes as the lost file');
    assert.ok(backend.raw({ type: 'parity', name: c! })!.equals(parityC));
    assert.deepEqual((await check(repo, { readData: true })).parityProblems, []);

    await backend.delete({ type: 'pack', name: a! });
    const gone = await repairPacks(repo);
    assert.equal(gone.ok, false);
    assert.deepEqual(gone.damaged.map((d) => [d.pack, d.problem, d.status]), [[a, 'missing', 'unrepairable']]);
    assert.match(gone.damaged[0]!.reason!, /the pack file is missing; parity rebuilds damaged regions of a pack \(up to about 2\/16 of it\), not a whole pack/);
  });

  it('repairPacks of named packs: by unique prefix; unknown names are NOT_FOUND, malformed ones USAGE', async () => {
    const { backend, repo } = await filled(DEFAULT_PARITY);
    const [a] = await names(backend, 'pack');
    const r = await repairPacks(repo, { packs: [a!.slice(0, 12)] });
    assert.equal(r.packsChecked, 1);
    assert.equal(r.intact, 1);
    await assert.rejects(repairPacks(repo, { packs: ['ffffffffffffffffffff'] }), (e: unknown) => e instanceof MeshbackError && e.code === 'NOT_FOUND');
    await assert.rejects(repairPacks(repo, { packs: ['not-hex'] }), (e: unknown) => e instanceof MeshbackError && e.code === 'USAGE');
  });

  it('a repository without parity reports a damaged pack as unrepairable, saying why', async () => {
    const { backend, repo } = await filled(undefined);
    const [a] = await names(backend, 'pack');
    await setPack(backend, a!, damageRegion(backend.raw({ type: 'pack', name: a! })!, 10, 1));
    const r = await repairPacks(repo);
    assert.equal(r.ok, false);
    assert.equal(r.damaged[0]!.reason, 'it has no parity file (the repository was created without --parity)');
  });

  it('a backup fails loudly when storage returns other bytes than were written', async () => {
    class Lying extends MemoryBackend {
      override async get(h: Handle, range?: { offset: number; length: number }): Promise<Buffer> {
        const b = await super.get(h, range);
        if (h.type === 'pack' && range === undefined && b.length > 0) b[0] = b[0]! ^ 1;
        return b;
      }
    }
    const backend = new Lying();
    const repo = await Repository.init(backend, PW, { packSize: 64 * KiB, parity: DEFAULT_PARITY });
    const blob = prngBytes('lying', 100 * KiB);
    await repo.store.add(BLOB_DATA, repo.store.id(blob), blob);
    await assert.rejects(repo.store.flush(), (e: unknown) => e instanceof MeshbackError && e.code === 'INTEGRITY' && /reads back differently/.test(e.message));
    assert.deepEqual(await names(backend, 'index'), [], 'no index lists a pack without parity');
    assert.equal(sha256hex(backend.raw({ type: 'pack', name: (await names(backend, 'pack'))[0]! })!), (await names(backend, 'pack'))[0]);
  });
});
