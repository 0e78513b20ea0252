process.env.MESHBACK_TEST_SCRYPT_N = '1024';

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalBackend } from '../../src/storage/local.ts';
import { MemoryBackend } from '../../src/storage/memory.ts';
import { backup } from '../../src/archiver/index.ts';
import { LocalSource } from '../../src/source/index.ts';
import type { MeshEvent } from '../../src/events/index.ts';
import type { BackupResult } from '../../src/archiver/index.ts';
import { restore } from '../../src/restorer/index.ts';
import { check } from '../../src/checker/index.ts';
import type { ChunkerParams } from '../../src/chunker/fastcdc.ts';
import { BackendError, IntegrityError, MeshbackError, isRetryable } from '../../src/errors/index.ts';
import { stack } from '../../src/storage/stack.ts';
import type { Handle } from '../../src/storage/backend.ts';
import { Repository } from '../../src/repository/index.ts';
import type { Snapshot } from '../../src/snapshot/manifest.ts';
import { HOLE_PREFIX, encodeTree } from '../../src/snapshot/tree.ts';
import type { Node, Tree } from '../../src/snapshot/tree.ts';
import { flipFileByte, listTree, prngBytes, removeDir, tempDir } from './helpers.ts';

const PW = 'archiver test password';
const KiB = 1024;
const MiB = 1024 * KiB;
/** Small chunks, so that the 2 MiB zero run contains whole (max-sized) all-zero chunks. */
const CHUNKER: ChunkerParams = { min: 64 * KiB, avg: 256 * KiB, max: 512 * KiB };
const REGULAR_FILES = ['a.txt', 'old.txt', 'run.sh', 'sub/big.bin', 'sub/small.bin'];

const BIG = Buffer.concat([prngBytes('big-1', 1.5 * MiB), Buffer.alloc(2 * MiB), prngBytes('big-2', 1.5 * MiB)]);

/** Builds the source tree: files of several modes, a sparse-able big file, symlinks, an empty dir. */
async function makeSource(root: string): Promise<string> {
  const src = path.join(root, 'src');
  await fsp.mkdir(path.join(src, 'sub'), { recursive: true });
  await fsp.mkdir(path.join(src, 'empty'));
  await fsp.writeFile(path.join(src, 'a.txt'), 'hello from a.txt\n'.repeat(100));
  await fsp.writeFile(path.join(src, 'run.sh'), '#!/bin/sh\necho hi\n');
  await fsp.writeFile(path.join(src, 'sub', 'big.bin'), BIG);
  await fsp.writeFile(path.join(src, 'sub', 'small.bin'), prngBytes('small', 10_000));
  await fsp.symlink('sub/big.bin', path.join(src, 'link'));
  await fsp.symlink('../does/not/exist', path.join(src, 'dangling'));
  await fsp.writeFile(path.join(src, 'old.txt'), 'from before 1970\n');
  await fsp.utimes(path.join(src, 'old.txt'), '-126230399.25', '-126230399.25'); // 1966, with a fraction
  await fsp.chmod(path.join(src, 'a.txt'), 0o640);
  await fsp.chmod(path.join(src, 'run.sh'), 0o755);
  await fsp.chmod(path.join(src, 'sub', 'big.bin'), 0o600);
  await fsp.chmod(path.join(src, 'sub', 'small.bin'), 0o444);
  await fsp.chmod(path.join(src, 'empty'), 0o750);
  await fsp.chmod(path.join(src, 'sub'), 0o711);
  await fsp.chmod(src, 0o755);
  return src;
}

async function newRepo(dir: string, chunker: ChunkerParams = CHUNKER): Promise<Repository> {
  return Repository.init(new LocalBackend(path.join(dir, 'repo')), PW, { chunker });
}

async function nodeAt(repo: Repository, s: Snapshot, rel: string): Promise<Node> {
  let nodes = (await repo.loadTree(s.tree)).nodes;
  let found: Node | undefined;
  for (const part of [path.basename(s.paths[0]!), ...rel.split('/')]) {
    if (found !== undefined) nodes = (await repo.loadTree(found.subtree!)).nodes;
    found = nodes.find((n) => n.name === part);
    assert.ok(found !== undefined, `${part} of ${rel} not in the snapshot`);
  }
  return found!;
}

/** Asserts that `out` is a faithful copy of `src`: same entries, types, bytes, modes, link targets, mtimes. */
async function assertSameTree(src: string, out: string): Promise<void> {
  const a = await listTree(src);
  assert.deepEqual(await listTree(out), a);
  for (const rel of ['', ...a]) {
    const p = path.join(src, rel);
    const q = path.join(out, rel);
    const s = await fsp.lstat(p, { bigint: true });
    const t = await fsp.lstat(q, { bigint: true });
    const what = rel === '' ? '(root)' : rel;
    assert.equal(t.isFile(), s.isFile(), what);
    assert.equal(t.isDirectory(), s.isDirectory(), what);
    assert.equal(t.isSymbolicLink(), s.isSymbolicLink(), what);
    if (s.isSymbolicLink()) {
      assert.equal(await fsp.readlink(q), await fsp.readlink(p), what);
      continue;
    }
    assert.equal((t.mode & 0o7777n).toString(8), (s.mode & 0o7777n).toString(8), `mode of ${what}`);
    const dt = t.mtimeNs > s.mtimeNs ? t.mtimeNs - s.mtimeNs : s.mtimeNs - t.mtimeNs;
    assert.ok(dt < 1000n, `mtime of ${what} differs by ${dt} ns`);
    if (s.isFile()) assert.ok((await fsp.readFile(q)).equals(await fsp.readFile(p)), `content of ${what}`);
  }
}

describe('backup and restore on a local repository', () => {
  let dir: string;
  let src: string;
  let repo: Repository;
  let first: BackupResult;

  before(async () => {
    dir = await tempDir('archiver');
    src = await makeSource(dir);
    repo = await newRepo(dir);
    first = await backup(repo, { paths: [src], parent: null, host: 'unit-host' });
  });
  after(() => removeDir(dir));

  it('records what it backed up', async () => {
    const s = first.snapshot.summary;
    assert.equal((await nodeAt(repo, first.snapshot, 'old.txt')).mtime, '-126230399250000000', 'a pre-1970 mtime, to the nanosecond');
    assert.equal((await nodeAt(repo, first.snapshot, 'link')).linkTarget, 'sub/big.bin');
    assert.equal((await nodeAt(repo, first.snapshot, 'run.sh')).mode, 0o755);
    assert.deepEqual(first.errors, []);
    assert.equal(first.snapshot.incomplete, undefined);
    assert.equal(s.files, REGULAR_FILES.length);
    assert.equal(s.filesRead, REGULAR_FILES.length);
    assert.equal(s.filesUnchanged, 0);
    assert.equal(s.symlinks, 2);
    assert.equal(s.dirs, 3);
    assert.equal(s.totalBytes, 'hello from a.txt\n'.length * 100 + 'from before 1970\n'.length + '#!/bin/sh\necho hi\n'.length + BIG.length + 10_000);
    assert.equal(s.bytesRead, s.totalBytes);
    assert.deepEqual(first.snapshot.paths, [src]);
    assert.equal(first.snapshot.host, 'unit-host');
    assert.equal(first.snapshot.parent, undefined);
  });

  it('restores files, modes, mtimes, symlinks and the empty directory exactly', async () => {
    const out = path.join(dir, 'out-full');
    const res = await restore(repo, { snapshot: first.id, target: out });
    assert.deepEqual(res.errors, []);
    assert.deepEqual(res.damaged, []);
    assert.equal(res.files, REGULAR_FILES.length);
    assert.equal(res.symlinks, 2);
    assert.equal(res.bytes, first.snapshot.summary.totalBytes);
    await assertSameTree(src, out);
  });

  it('records the all-zero region of the big file as a hole and restores it sparse', async () => {
    const n = await nodeAt(repo, first.snapshot, 'sub/big.bin');
    const content = n.content!;
    const holes = content.filter((c) => c.startsWith(HOLE_PREFIX)).map((c) => Number(c.slice(HOLE_PREFIX.length)));
    assert.ok(holes.length >= 1, `no hole in ${JSON.stringify(content)}`);
    const holeBytes = holes.reduce((a, b) => a + b, 0);
    assert.ok(holeBytes >= 1 * MiB && holeBytes <= 2 * MiB, `${holeBytes} bytes of holes`);
    // chunk and hole lengths add up to the file size
    let total = 0;
    for (const c of content) total += c.startsWith(HOLE_PREFIX) ? Number(c.slice(HOLE_PREFIX.length)) : repo.store.index.lookup(Buffer.from(c, 'hex'))!.rawLength;
    assert.equal(total, BIG.length);
    assert.equal(n.size, BIG.length);

    const out = path.join(dir, 'out-sparse');
    const res = await restore(repo, { snapshot: first.id, target: out, includes: ['sub/big.bin'], verify: true });
    assert.deepEqual(res.damaged, []);
    assert.equal(res.filesReread, 1);
    const f = path.join(out, 'sub', 'big.bin');
    assert.ok((await fsp.readFile(f)).equals(BIG));
    const st = await fsp.stat(f);
    assert.ok(st.blocks * 512 <= BIG.length - holeBytes + 64 * KiB, `restored file uses ${st.blocks * 512} bytes on disk: the hole was written`);
  });

  it('a second backup with the first as parent reads no file', async () => {
    const second = await backup(repo, { paths: [src], parent: first.id, host: 'unit-host' });
    const s = second.snapshot.summary;
    assert.equal(second.snapshot.parent, first.id);
    assert.equal(s.filesRead, 0);
    assert.equal(s.bytesRead, 0);
    assert.equal(s.filesUnchanged, REGULAR_FILES.length);
    assert.equal(s.files, REGULAR_FILES.length);
    assert.equal(second.snapshot.tree, first.snapshot.tree, 'nothing changed: the same root tree');
    // the default parent is the latest snapshot of the same host and paths
    const third = await backup(repo, { paths: [src], host: 'unit-host' });
    assert.equal(third.snapshot.parent, second.id);
    assert.equal(third.snapshot.summary.filesRead, 0);
  });

  it('a changed file is read again while the others are reused', async () => {
    const d2 = await tempDir('archiver-change');
    try {
      const src2 = await makeSource(d2);
      const r = await newRepo(d2);
      const a = await backup(r, { paths: [src2], parent: null });
      await fsp.appendFile(path.join(src2, 'sub', 'small.bin'), 'more');
      const b = await backup(r, { paths: [src2], parent: a.id });
      assert.equal(b.snapshot.summary.filesRead, 1);
      assert.equal(b.snapshot.summary.filesUnchanged, REGULAR_FILES.length - 1);
      const out = path.join(d2, 'out');
      await restore(r, { snapshot: b.id, target: out });
      await assertSameTree(src2, out);
    } finally {
      await removeDir(d2);
    }
  });

  it('counts only its own new blobs in the summary of a later backup on the same Repository', async () => {
    assert.ok(first.snapshot.summary.blobsAdded > 0 && first.snapshot.summary.bytesStored > 0);
    const again = await backup(repo, { paths: [src], parent: first.id });
    assert.equal(again.snapshot.summary.blobsAdded, 0);
    assert.equal(again.snapshot.summary.bytesAdded, 0);
  });

  it('restore with includes restores only that path (and its parent directories)', async () => {
    const out = path.join(dir, 'out-include');
    const res = await restore(repo, { snapshot: first.id, target: out, includes: ['sub/small.bin'] });
    assert.equal(res.files, 1);
    assert.deepEqual(await listTree(out), ['sub', 'sub/small.bin']);
    assert.ok((await fsp.readFile(path.join(out, 'sub', 'small.bin'))).equals(prngBytes('small', 10_000)));

    const out2 = path.join(dir, 'out-include-dir');
    await restore(repo, { snapshot: first.id, target: out2, includes: ['/empty/', 'link'] });
    assert.deepEqual(await listTree(out2), ['empty', 'link']);
    assert.equal(await fsp.readlink(path.join(out2, 'link')), 'sub/big.bin');

    await assert.rejects(restore(repo, { snapshot: first.id, target: path.join(dir, 'out-none'), includes: ['no/such/file'] }), (err: unknown) => err instanceof MeshbackError && err.code === 'NOT_FOUND');
  });

  it('restore replaces what is in the way and never follows a symlink planted in the target', async () => {
    const out = path.join(dir, 'out-planted');
    const victim = path.join(dir, 'victim');
    await fsp.mkdir(victim);
    await fsp.mkdir(out);
    await fsp.symlink(victim, path.join(out, 'sub')); // a directory of the snapshot is a symlink out
    await fsp.symlink(path.join(victim, 'a.txt'), path.join(out, 'a.txt')); // a file of the snapshot is a symlink out
    await restore(repo, { snapshot: first.id, target: out });
    assert.deepEqual(await fsp.readdir(victim), [], 'nothing was written through the planted links');
    assert.ok((await fsp.lstat(path.join(out, 'sub'))).isDirectory());
    assert.ok((await fsp.lstat(path.join(out, 'a.txt'))).isFile());
    await assertSameTree(src, out);
  });

  it('leaves out excluded entries', async () => {
    const r = await backup(repo, { paths: [src], parent: null, host: 'exclude-host', excludes: ['*.bin', `${src}/empty`] });
    const out = path.join(dir, 'out-excluded');
    await restore(repo, { snapshot: r.id, target: out });
    assert.deepEqual(await listTree(out), ['a.txt', 'dangling', 'link', 'old.txt', 'run.sh', 'sub']);
    assert.equal(r.snapshot.summary.files, 3);
  });

  it('check() passes on the intact repository, also when reading all data', async () => {
    const fresh = await Repository.open(new LocalBackend(path.join(dir, 'repo')), PW);
    const r = await check(fresh);
    assert.equal(r.ok, true, JSON.stringify(r.findings));
    assert.ok(r.snapshots >= 1);
    const rd = await check(fresh, { readData: true });
    assert.equal(rd.ok, true, JSON.stringify(rd.findings));
    assert.equal(rd.packsRead, rd.packs);
    assert.equal(rd.blobsChecked, fresh.store.index.size);
    assert.deepEqual(rd.damagedPacks, []);
    assert.deepEqual(rd.affected, []);
  });
});

describe('damaged data', () => {
  let dir: string;
  let src: string;
  let snap: BackupResult;
  let repoDir: string;
  let pack: string;

  before(async () => {
    dir = await tempDir('damage');
    src = await makeSource(dir);
    repoDir = path.join(dir, 'repo');
    const repo = await newRepo(dir);
    snap = await backup(repo, { paths: [src], parent: null });
    assert.equal((await check(repo)).ok, true);
    // damage the one chunk of a.txt, in the middle of its sealed bytes
    const n = await nodeAt(repo, snap.snapshot, 'a.txt');
    assert.equal(n.content!.length, 1);
    const e = repo.store.index.lookup(Buffer.from(n.content![0]!, 'hex'))!;
    pack = e.pack;
    await flipFileByte(path.join(repoDir, 'data', pack.slice(0, 2), pack), e.offset + Math.floor(e.length / 2));
  });
  after(() => removeDir(dir));

  it('check({readData}) reports the pack and maps the damage to the affected file only', async () => {
    const repo = await Repository.open(new LocalBackend(repoDir), PW);
    const r = await check(repo, { readData: true });
    assert.equal(r.ok, false);
    assert.deepEqual(r.damagedPacks, [pack]);
    assert.ok(r.findings.some((f) => f.kind === 'pack-damaged' && f.pack === pack));
    assert.ok(r.findings.some((f) => f.kind === 'blob-damaged' && f.pack === pack));
    assert.equal(r.affected.length, 1);
    assert.equal(r.affected[0]!.snapshot, snap.id);
    assert.deepEqual(r.affected[0]!.files, [`/${path.basename(src)}/a.txt`]);
  });

  it('restore reports the damaged file, leaves nothing at its path, and restores the rest', async () => {
    const repo = await Repository.open(new LocalBackend(repoDir), PW);
    const out = path.join(dir, 'out');
    const res = await restore(repo, { snapshot: snap.id, target: out });
    assert.deepEqual(res.damaged, ['a.txt']);
    assert.equal(res.errors.length, 1);
    assert.match(res.errors[0]!.message, new RegExp(pack));
    await assert.rejects(fsp.lstat(path.join(out, 'a.txt')), (err: unknown) => (err as { code?: string }).code === 'ENOENT');
    assert.equal(res.files, REGULAR_FILES.length - 1);
    for (const rel of REGULAR_FILES.filter((f) => f !== 'a.txt')) {
      assert.ok((await fsp.readFile(path.join(out, rel))).equals(await fsp.readFile(path.join(src, rel))), rel);
    }
  });

  it('restore over an existing good copy removes it rather than leaving stale content', async () => {
    const repo = await Repository.open(new LocalBackend(repoDir), PW);
    const out = path.join(dir, 'out-existing');
    await fsp.mkdir(out);
    await fsp.writeFile(path.join(out, 'a.txt'), 'an older version');
    const res = await restore(repo, { snapshot: snap.id, target: out, includes: ['a.txt'] });
    assert.deepEqual(res.damaged, ['a.txt']);
    await assert.rejects(fsp.lstat(path.join(out, 'a.txt')));
  });

  it('check() without readData reports a missing pack and the files that need it', async () => {
    const repo = await Repository.open(new LocalBackend(repoDir), PW);
    await repo.backend.delete({ type: 'pack', name: pack });
    const r = await check(repo);
    assert.equal(r.ok, false);
    assert.ok(r.findings.some((f) => f.kind === 'pack-missing' && f.pack === pack));
    assert.deepEqual(r.damagedPacks, [pack]);
    const files = r.affected.flatMap((a) => a.files);
    assert.ok(files.includes(`/${path.basename(src)}/a.txt`), JSON.stringify(files));
    const res = await restore(repo, { snapshot: snap.id, target: path.join(dir, 'out-missing') });
    assert.ok(res.damaged.includes('a.txt'));
  });
});

describe('an unreachable store', () => {
  let dir: string;
  let snap: BackupResult;
  let attempts = 0;
  /** the repository, with every read of the file data's pack failing as a dropped connection would, through all the retries */
  let open: () => Promise<Repository>;
  before(async () => {
    dir = await tempDir('unreachable');
    const src = await makeSource(dir);
    const first = await newRepo(dir);
    snap = await backup(first, { paths: [src], parent: null });
    const dataPack = first.store.index.lookup(Buffer.from((await nodeAt(first, snap.snapshot, 'a.txt')).content![0]!, 'hex'))!.pack;
    class Unreachable extends LocalBackend {
      override get(h: Handle, range?: { offset: number; length: number }, into?: Buffer): Promise<Buffer> {
        if (h.type === 'pack' && h.name === dataPack) return Promise.reject(new BackendError(`storage error on pack/${h.name}: read ECONNRESET`, { retryable: true }));
        return super.get(h, range, into);
      }
    }
    open = () => Repository.open(stack(new Unreachable(path.join(dir, 'repo')), { retry: { sleep: async () => void attempts++ } }), PW);
  });
  after(() => removeDir(dir));
  const unreachable = (e: unknown): boolean => e instanceof BackendError && isRetryable(e) && /ECONNRESET/.test(e.message) && !e.message.includes('\n');

  it('restore stops with the storage error, naming no file damaged', async () => {
    const repo = await open();
    const events: string[] = [];
    attempts = 0;
    await assert.rejects(restore(repo, { snapshot: snap.id, target: path.join(dir, 'out'), events: (e) => void (e.type === 'item-error' && events.push(e.message)) }), unreachable);
    assert.deepEqual(events, [], 'no file reported damaged');
    assert.ok(attempts > 0, 'the reads were retried first');
  });

  it('check --read-data stops with the storage error instead of reporting the pack damaged', async () => {
    attempts = 0;
    await assert.rejects(check(await open(), { readData: true }), unreachable);
    assert.ok(attempts > 0, 'the reads were retried first');
  });
});

describe('malicious snapshots', () => {
  let dir: string;
  let repo: Repository;
  before(async () => {
    dir = await tempDir('evil');
    repo = await newRepo(dir);
  });
  after(() => removeDir(dir));

  const fileNode = (name: string, extra: Partial<Node> = {}): Node => ({
    name, type: 'file', mode: 0o644, uid: os.userInfo().uid, gid: os.userInfo().gid, mtime: '1700000000000000000', ctime: '1700000000000000000', inode: 1, dev: 1, nlink: 1, size: 0, content: [], ...extra,
  });
  const dirNode = (name: string, subtree: string): Node => ({ ...fileNode(name), type: 'dir', mode: 0o755, size: undefined, content: undefined, subtree });

  /** Saves hand-made trees (bypassing any validation) and a snapshot pointing at the root. */
  async function evilSnapshot(root: Tree, paths: string[]): Promise<string> {
    const rootId = await repo.saveTree(Buffer.from(JSON.stringify(root)));
    await repo.store.flush();
    const s: Snapshot = {
      version: 1, time: new Date().toISOString(), endTime: new Date().toISOString(), host: 'evil', username: 'evil', paths, tags: [], tree: rootId, program: 'evil',
      summary: { files: 1, dirs: 1, symlinks: 0, others: 0, totalBytes: 0, bytesRead: 0, filesRead: 0, filesUnchanged: 0, filesChangedDuringRead: 0, errors: 0, blobsAdded: 0, bytesAdded: 0, bytesStored: 0, duration: 0 },
    };
    return repo.saveSnapshot(s);
  }

  const cases: { title: string; build: () => Promise<string> }[] = [
    {
      title: "a '..' directory below the snapshot root",
      build: async () => {
        const payload = await repo.saveTree(encodeTree({ nodes: [fileNode('escaped')] }));
        const inner = await repo.saveTree(Buffer.from(JSON.stringify({ nodes: [dirNode('..', payload)] })));
        return evilSnapshot({ nodes: [dirNode('d', inner)] }, ['/d']);
      },
    },
    {
      title: "a '..' file at the top of a multi-path snapshot",
      build: () => evilSnapshot({ nodes: [fileNode('..'), fileNode('escaped')] }, ['/x', '/y']),
    },
    {
      title: "a '..' name spelled as nameRaw",
      build: async () => {
        const payload = await repo.saveTree(encodeTree({ nodes: [fileNode('escaped')] }));
        return evilSnapshot({ nodes: [dirNode('d', await repo.saveTree(Buffer.from(JSON.stringify({ nodes: [{ ...dirNode('', payload), nameRaw: Buffer.from('..').toString('base64') }] }))))] }, ['/d']);
      },
    },
  ];

  for (const c of cases) {
    it(`restore refuses ${c.title} with IntegrityError and writes nothing outside the target`, async () => {
      const id = await c.build();
      const outer = path.join(dir, `outer-${id.slice(0, 8)}`);
      await fsp.mkdir(outer);
      const target = path.join(outer, 'target');
      await assert.rejects(restore(repo, { snapshot: id, target }), (err: unknown) => err instanceof IntegrityError);
      const outside = (await listTree(outer)).filter((p) => p !== 'target' && !p.startsWith('target/'));
      assert.deepEqual(outside, []);
      await assert.rejects(fsp.lstat(path.join(dir, 'escaped')));
    });
  }
});

describe('files without stored chunks', () => {
  it('restores an empty file and a file that is all hole', async () => {
    const d = await tempDir('empty-files');
    try {
      const src = path.join(d, 'src');
      await fsp.mkdir(src);
      await fsp.writeFile(path.join(src, 'empty.txt'), '');
      await fsp.writeFile(path.join(src, 'zeros.img'), Buffer.alloc(2 * MiB));
      await fsp.writeFile(path.join(src, 'data.txt'), 'some data\n');
      const repo = await newRepo(d);
      const r = await backup(repo, { paths: [src], parent: null });
      const zeros = await nodeAt(repo, r.snapshot, 'zeros.img');
      assert.ok(zeros.content!.every((c) => c.startsWith(HOLE_PREFIX)), JSON.stringify(zeros.content));
      assert.deepEqual((await nodeAt(repo, r.snapshot, 'empty.txt')).content, []);
      const out = path.join(d, 'out');
      const res = await restore(repo, { snapshot: r.id, target: out });
      assert.deepEqual(res.damaged, []);
      assert.equal(res.files, 3);
      await assertSameTree(src, out);
    } finally {
      await removeDir(d);
    }
  });
});

describe('restore in batches', () => {
  it('restores more files than one batch plans, with a hard link across batches, and verifies them', async () => {
    const d = await tempDir('batches');
    try {
      const src = path.join(d, 'src');
      await fsp.mkdir(path.join(src, 'a'), { recursive: true });
      await fsp.mkdir(path.join(src, 'z'));
      const N = 8192 + 300; // past BATCH_FILES: two batches
      for (let i = 0; i < N; i += 500) await Promise.all(Array.from({ length: Math.min(500, N - i) }, (_, k) => fsp.writeFile(path.join(src, 'a', `f${String(i + k).padStart(5, '0')}`), `file ${i + k}\n`)));
      await fsp.writeFile(path.join(src, 'a', 'aaa-first'), 'linked content\n');
      await fsp.link(path.join(src, 'a', 'aaa-first'), path.join(src, 'z', 'later-link'));
      const repo = await Repository.init(new MemoryBackend(), PW);
      const r = await backup(repo, { paths: [src], parent: null });
      const out = path.join(d, 'out');
      const events: MeshEvent[] = [];
      const res = await restore(repo, { snapshot: r.id, target: out, verify: true, events: (e) => events.push(e) });
      assert.deepEqual(res.damaged, []);
      assert.equal(res.files, N + 2);
      assert.equal(res.hardlinks, 1);
      assert.equal(res.filesReread, N + 1);
      await assertSameTree(src, out);
      const [s1, s2] = await Promise.all([fsp.stat(path.join(out, 'a', 'aaa-first')), fsp.stat(path.join(out, 'z', 'later-link'))]);
      assert.equal(s1.ino, s2.ino, 'the later path is a hard link to the first');
      const last = events.filter((e) => e.type === 'progress' && e.op === 'restore').at(-1);
      assert.deepEqual(last !== undefined && last.type === 'progress' ? [last.files, last.totalFiles, last.bytes] : [], [N + 1, r.snapshot.summary.files, r.snapshot.summary.totalBytes - 'linked content\n'.length]);
    } finally {
      await removeDir(d);
    }
  });
});

describe('large files chunked on the chunking thread or on the main thread', () => {
  it('make the same snapshot tree (chunk ids, holes), and both restore the files exactly', async () => {
    const d = await tempDir('chunk-thread-same');
    const was = process.env['MESHBACK_CHUNK_THREAD'];
    try {
      const src = await makeSource(d);
      // more large files than the thread takes at once, one larger than its buffers together
      for (let i = 0; i < 12; i++) await fsp.writeFile(path.join(src, 'sub', `f${i}.bin`), prngBytes(`f${i}`, (i + 1) * 300 * KiB));
      await fsp.writeFile(path.join(src, 'sub', 'huge.bin'), Buffer.concat([prngBytes('huge', 9 * MiB), Buffer.alloc(MiB), prngBytes('huge-2', MiB)]));
      const repo = await newRepo(d);
      const trees: string[] = [];
      for (const mode of ['1', '0']) {
        process.env['MESHBACK_CHUNK_THREAD'] = mode;
        const r = await backup(repo, { paths: [src], parent: null });
        assert.deepEqual(r.errors, []);
        trees.push(r.snapshot.tree);
        const out = path.join(d, `out-${mode}`);
        const res = await restore(repo, { snapshot: r.id, target: out });
        assert.deepEqual(res.errors, []);
        await assertSameTree(src, out);
        assert.ok((await nodeAt(repo, r.snapshot, 'sub/big.bin')).content!.some((c) => c.startsWith(HOLE_PREFIX)), `the zero run of big.bin is a hole (thread ${mode})`);
      }
      assert.equal(trees[0], trees[1], 'the same root tree either way');
      assert.ok((await check(repo, { readData: true })).ok);
    } finally {
      if (was === undefined) delete process.env['MESHBACK_CHUNK_THREAD'];
      else process.env['MESHBACK_CHUNK_THREAD'] = was;
      await removeDir(d);
    }
  });
});

describe('hole detection with the default chunker parameters', () => {
  it('records a 2 MiB all-zero region as a hole', { todo: 'limitation/bug: with DEFAULT_CHUNKER (max 8 MiB) the gear hash never cuts inside a zero run, so only zero runs longer than max (8 MiB) ever form an all-zero chunk; a 2 MiB zero region is read, hashed and stored as a (compressed) data chunk instead of a 0: hole entry (src/archiver/worker.ts detects holes on whole chunks only)' }, async () => {
    const d = await tempDir('holes-default');
    try {
      const f = path.join(d, 'big.bin');
      await fsp.writeFile(f, BIG);
      const repo = await Repository.init(new MemoryBackend(), PW);
      const r = await backup(repo, { paths: [f], parent: null });
      const root = await repo.loadTree(r.snapshot.tree);
      assert.ok(root.nodes[0]!.content!.some((c) => c.startsWith(HOLE_PREFIX)), JSON.stringify(root.nodes[0]!.content));
    } finally {
      await removeDir(d);
    }
  });
});

describe('backup: paths left out and paths read last (the presets\' seam)', () => {
  it('reads the last paths after ready(), adds its files, leaves out omitted paths, and restores it all', async () => {
    const d = await tempDir('archiver-last-');
    try {
      const src = path.join(d, 'data');
      await fsp.mkdir(path.join(src, 'db/wal'), { recursive: true });
      await fsp.mkdir(path.join(src, 'db/base'), { recursive: true });
      await fsp.writeFile(path.join(src, 'db/base/table'), 'rows\n');
      await fsp.writeFile(path.join(src, 'db/wal/seg1'), 'wal 1\n');
      await fsp.writeFile(path.join(src, 'db/server.pid'), '4242\n');
      await fsp.writeFile(path.join(src, 'db/label'), 'a stale label\n');
      await fsp.writeFile(path.join(src, 'zzz'), 'after db in the walk\n');
      const repo = await newRepo(d);
      let walked: string[] = [];
      const r = await backup(repo, {
        paths: [src],
        omit: [path.join(src, 'db/server.pid')],
        last: {
          paths: [path.join(src, 'db/wal')],
          ready: async () => {
            walked = await listTree(src);
            // written after the walk (pg_backup_stop's WAL): must be in the snapshot
            await fsp.writeFile(path.join(src, 'db/wal/seg2'), 'wal 2, written after the walk\n');
            return [{ path: path.join(src, 'db/label'), content: Buffer.from('START WAL LOCATION: 0/2000028\n'), mode: 0o600 }];
          },
        },
      });
      assert.ok(walked.includes('zzz'), 'ready() comes after the whole walk');
      assert.equal(r.errors.length, 0);
      const out = path.join(d, 'out');
      await restore(repo, { snapshot: r.id, target: out, verify: true });
      assert.deepEqual((await listTree(out)).filter((p) => !p.endsWith('/')), ['db', 'db/base', 'db/base/table', 'db/label', 'db/wal', 'db/wal/seg1', 'db/wal/seg2', 'zzz']);
      assert.equal(await fsp.readFile(path.join(out, 'db/wal/seg2'), 'utf8'), 'wal 2, written after the walk\n');
      assert.equal(await fsp.readFile(path.join(out, 'db/label'), 'utf8'), 'START WAL LOCATION: 0/2000028\n');
      assert.equal((await fsp.stat(path.join(out, 'db/label'))).mode & 0o777, 0o600);
      // every tree the snapshot references is there (the held ones saved once they were complete)
      const c = await check(repo, { readData: true });
      assert.equal(c.ok, true, JSON.stringify(c.findings));
      const label = await nodeAt(repo, r.snapshot, 'db/label');
      assert.equal(label.size, 30);
    } finally {
      await removeDir(d);
    }
  });
});

describe('backup: a file deleted between its lstat and its read', () => {
  it('is left out with a warning, not an error (the snapshot is complete)', async () => {
    const d = await tempDir('archiver-vanish-');
    try {
      const src = path.join(d, 'wal');
      await fsp.mkdir(src);
      await fsp.writeFile(path.join(src, 'seg1'), 'kept\n');
      await fsp.writeFile(path.join(src, 'xlogtemp.123'), 'a temporary file\n');
      // the race, for real: the file is deleted right after the walk's lstat saw it
      const local = new LocalSource();
      const racing = Object.assign(Object.create(local) as LocalSource, {
        lstatSync(p: Buffer) {
          const st = local.lstatSync(p);
          if (p.toString().endsWith('xlogtemp.123')) rmSync(p);
          return st;
        },
      });
      const events: MeshEvent[] = [];
      const repo = await newRepo(d);
      const r = await backup(repo, { paths: [src], source: racing, events: (e) => events.push(e) });
      assert.deepEqual(r.errors, []);
      assert.equal(r.snapshot.incomplete, undefined);
      assert.ok(events.some((e) => e.type === 'warning' && e.path?.endsWith('xlogtemp.123') && /vanished before it was read/.test(e.message)), JSON.stringify(events.filter((e) => e.type === 'warning')));
      const out = path.join(d, 'out');
      await restore(repo, { snapshot: r.id, target: out });
      assert.deepEqual(await listTree(out), ['seg1']);
    } finally {
      await removeDir(d);
    }
  });
});

