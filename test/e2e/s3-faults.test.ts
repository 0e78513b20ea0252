/**
 * Network faults between the real CLI and a real MinIO (issue 13, deliverable 6), table-driven:
 * fault x operation -> expected outcome.
 *
 * Faults come from toxiproxy (latency, bandwidth, slicer, reset_peer, timeout, the proxy disabled:
 * an outage) and from the lab's HTTP fault proxy (lab/faults/http-proxy.ts: 503 SlowDown, 500
 * InternalError, a reply lost after the store did the work, truncated bodies, a first byte later
 * than the request timeout, MESHBACK_S3_TIMEOUT_MS, set to 1.5 s here). A fault starts before the
 * run or in its middle (Op.mid: a backup or prune has stored its first new pack, a restore has made
 * the target's directories), and stops when the run ends or after a set time (a 3 s outage).
 *
 * Each row gets its own copy of one seed repository (snapshot A forgotten, so prune has work;
 * snapshot B kept) under its own prefix, and its own proxy. The operation runs with a time limit (a
 * hung CLI is killed and fails the row) and must complete (exit 0, no error line) or fail as the row
 * says: exit N and exactly one `meshback: ...` line on stderr (retry warnings aside). Then, with
 * the fault gone and straight to MinIO: `check --read-data` passes (no snapshot references missing
 * data), snapshot B is still there and restores byte-identical, and the operation's own result is
 * checked when it completed (the new snapshot restores identical; the restored tree is identical;
 * prune freed space) or is absent when it failed (no new snapshot).
 *
 * Adding an operation is one more entry in OPS and rows in ROWS. copy's prepare() makes its source,
 * a local repository holding a snapshot of the tree B saved; the row's repository (through the
 * proxy) is the destination; completed() restores the copied snapshot from it and compares it with
 * wantB, failed() checks that it holds no partial snapshot and that a rerun without the fault
 * completes.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CopyObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { startS3, startToxiproxy, type S3Env, type Toxic, type ToxiproxyEnv } from '../../lab/testenv/index.ts';
import { startFaultProxy, type FaultProxy, type HttpFaultRule, type InjectedRule } from '../../lab/faults/http-proxy.ts';
import { compareTrees } from '../../lab/gen/compare.ts';
import { EXIT_DOC } from '../../src/cli/exit.ts';
import { mb, rmrf, tmpdir, type RunResult } from '../helpers/cli.ts';

/** The most any one CLI run may take before it is killed as hung. */
const RUN_LIMIT_MS = 60_000;
/** MESHBACK_S3_TIMEOUT_MS for every run: a request with no byte moving for this long fails. */
const S3_TIMEOUT_MS = 1500;

let s3: S3Env;
let tp: ToxiproxyEnv;
let c: S3Client;
let base: string;
/** the tree backed up as snapshot B, then changed: what the backup rows back up */
let src: string;
/** a copy of the tree as snapshot B saved it */
let wantB: string;
let snapB: string;
let env: Record<string, string | undefined>;

// ---------------------------------------------------------------------------------------------
// operations

interface Row {
  fault: Fault;
  op: OpName;
  expect: Expect;
}
type Expect = 'completes' | { exit: number } | { either: [0, number] };

interface RowEnv {
  /** --repo through the row's proxy */
  viaProxy: string;
  /** --repo straight to MinIO */
  direct: string;
  prefix: string;
  dir: string;
  /** the CLI's environment for this row: its own metadata cache, cold when the faulty run starts */
  env: Record<string, string | undefined>;
}

interface Op {
  /** before the fault: what the operation needs beside the row's repository (copy: its other repository) */
  prepare?(r: RowEnv): Promise<void>;
  /** the CLI arguments of the operation, --repo included */
  args(r: RowEnv): string[];
  /** true once the run is in the middle of its work (polled while it runs; a fault marked mid-run starts then) */
  mid(r: RowEnv): Promise<boolean>;
  /** with the fault gone: what a completed run must have left */
  completed(r: RowEnv, run: RunResult): Promise<void>;
  /** with the fault gone: what a failed run must not have left */
  failed(r: RowEnv, run: RunResult): Promise<void>;
}

type OpName = 'backup' | 'restore' | 'prune' | 'check' | 'copy';

/** copy's source: a local repository holding one snapshot of the tree B saved (made by prepare) */
const copySource = (r: RowEnv): string => path.join(r.dir, 'from');

const OPS: Record<OpName, Op> = {
  backup: {
    args: (r) => ['backup', src, '--repo', r.viaProxy],
    // its first new pack is stored; the index and the snapshot are still to come
    mid: (r) => newPackStored(r),
    async completed(r, run) {
      const id = /snapshot ([0-9a-f]{8}) saved/.exec(run.stdout)?.[1];
      assert.ok(id !== undefined, `no snapshot id in: ${run.stdout}`);
      assert.deepEqual((await snapshotIds(r)).sort(), [snapB, id].sort());
      await restoresIdentical(r, id, src);
    },
    async failed(r) {
      assert.deepEqual(await snapshotIds(r), [snapB], 'a failed backup saved no snapshot');
    },
  },
  restore: {
    args: (r) => ['restore', snapB, '--target', path.join(r.dir, 'target'), '--verify', '--repo', r.viaProxy],
    // its lock is written; the snapshot, the trees and the packs are read next. (Not "the target's
    // directories are made": a restore makes them as its walk meets them, and a run of this size
    // then had read its last pack before the fault could be put in place.)
    mid: async (r) => (await listKeys(`${r.prefix}/locks`)).length > 0,
    async completed(r) {
      assert.deepEqual(await compareTrees(wantB, path.join(r.dir, 'target')), []);
    },
    async failed() {},
  },
  prune: {
    args: (r) => ['prune', '--repo', r.viaProxy],
    // it has written the repacked pack; the new index and the deletions are still to come
    mid: (r) => newPackStored(r),
    async completed(r) {
      assert.ok((await dataBytes(r.prefix)) < seedDataBytes, 'prune freed the space of the forgotten snapshot');
    },
    async failed() {},
  },
  // copy from a local repository into the row's repository, through the fault (the offsite copy)
  copy: {
    async prepare(r) {
      for (const args of [['init', '--repo', copySource(r)], ['backup', wantB, '--repo', copySource(r)]]) {
        const x = await mb(args, { env: r.env, timeoutMs: RUN_LIMIT_MS });
        assert.equal(x.code, 0, `${args.join(' ')}: ${x.stderr}`);
      }
    },
    args: (r) => ['copy', '--from-repo', copySource(r), '--repo', r.viaProxy],
    // its first pack is stored; the index, the trees and the snapshot are still to come
    mid: (r) => newPackStored(r),
    async completed(r, run) {
      const id = / -> ([0-9a-f]{8}): /.exec(run.stdout)?.[1];
      assert.ok(id !== undefined, `no copied snapshot in: ${run.stdout}`);
      assert.deepEqual((await snapshotIds(r)).sort(), [snapB, id].sort());
      await restoresIdentical(r, id, wantB);
    },
    async failed(r) {
      assert.deepEqual(await snapshotIds(r), [snapB], 'a failed copy saved no snapshot');
      // run again without the fault, it completes
      const again = await mb(['copy', '--from-repo', copySource(r), '--repo', r.direct], { env: r.env, timeoutMs: RUN_LIMIT_MS });
      assert.equal(again.code, 0, again.stderr);
      await OPS.copy.completed(r, again);
    },
  },
  // a storage failure is not damage: check must not send the user to repair intact data (exit 4)
  check: {
    args: (r) => ['check', '--read-data', '--repo', r.viaProxy],
    // its lock is written; the snapshots, trees and packs are read next
    mid: async (r) => (await listKeys(`${r.prefix}/locks`)).length > 0,
    async completed() {},
    async failed() {},
  },
};

// ---------------------------------------------------------------------------------------------
// faults

interface FaultRun {
  /** called once the run has started; the fault stays until stop() */
  start(run: Promise<RunResult>): Promise<void>;
  /** the fault's own evidence that it was met (an HTTP rule's count) */
  met(): string;
  stop(): Promise<void>;
}

interface Fault {
  name: string;
  via: 'toxiproxy' | 'http';
  /** the operation's environment, beyond the file's */
  env?: Record<string, string>;
  make(p: { toxi?: string; http?: FaultProxy; op: Op; r: RowEnv }): FaultRun;
}

/** Waits until the run is in the middle of its work (Op.mid); false when it ended first. */
async function midRun(op: Op, r: RowEnv, run: Promise<RunResult>): Promise<boolean> {
  let ended = false;
  void run.then(() => (ended = true));
  while (!ended) {
    if (await op.mid(r)) return true;
    await sleep(20);
  }
  return false;
}

/** toxics added when the run starts (or, mid: once its lock is written), removed when it ends */
function toxics(name: string, list: Toxic[], o: { mid?: Toxic[]; env?: Record<string, string> } = {}): Fault {
  return {
    name,
    via: 'toxiproxy',
    ...(o.env !== undefined ? { env: o.env } : {}),
    make: ({ toxi, op, r }) => {
      const added: string[] = [];
      let midMet = o.mid === undefined ? 'from the start' : 'never (the run ended first)';
      const add = async (t: Toxic): Promise<void> => {
        await tp.addToxic(toxi!, t);
        added.push(t.name!);
      };
      return {
        async start(run) {
          for (const t of list) await add(t);
          if (o.mid !== undefined && (await midRun(op, r, run))) {
            for (const t of o.mid) await add(t);
            midMet = 'mid-run';
          }
        },
        met: () => midMet,
        async stop() {
          for (const t of added.splice(0)) await tp.removeToxic(toxi!, t);
        },
      };
    },
  };
}

/** the proxy disabled once the run's lock is written, enabled again after forMs (or when the run ends) */
function outage(name: string, forMs: number | undefined, before: Toxic[] = []): Fault {
  return {
    name,
    via: 'toxiproxy',
    make: ({ toxi, op, r }) => {
      let down = false;
      let met = 'never (the run ended first)';
      let upAgain: Promise<void> = Promise.resolve();
      return {
        async start(run) {
          for (const t of before) await tp.addToxic(toxi!, t);
          if (!(await midRun(op, r, run))) return;
          await tp.setEnabled(toxi!, false);
          down = true;
          const t0 = performance.now();
          met = 'mid-run';
          if (forMs !== undefined) {
            upAgain = Promise.race([sleep(forMs), run]).then(async () => {
              if (down) await tp.setEnabled(toxi!, true);
              down = false;
              met = `mid-run, ${((performance.now() - t0) / 1000).toFixed(1)} s`;
            });
          }
        },
        met: () => met,
        async stop() {
          await upAgain;
          if (down) await tp.setEnabled(toxi!, true);
          down = false;
          for (const t of before) await tp.removeToxic(toxi!, t.name!);
        },
      };
    },
  };
}

/** HTTP fault rules, in force for the whole run */
function http(name: string, rules: HttpFaultRule[]): Fault {
  return {
    name,
    via: 'http',
    make: ({ http: proxy }) => {
      const injected: InjectedRule[] = [];
      return {
        async start() {
          for (const r of rules) injected.push(proxy!.inject(r));
        },
        met: () => injected.map((r) => `${r.fault} x${r.taken}`).join(', '),
        async stop() {
          proxy!.clear();
        },
      };
    },
  };
}

const PACKS = /\/data\//;
const NOT_LOCKS = /\/(data|index|snapshots|parity)\//;
const slow: Toxic = { name: 'slow', type: 'latency', attributes: { latency: 40, jitter: 0 } };
const F = {
  latency: toxics('latency 50 ms each way', [
    { name: 'down', type: 'latency', attributes: { latency: 50, jitter: 20 } },
    { name: 'up', type: 'latency', stream: 'upstream', attributes: { latency: 50, jitter: 20 } },
  ]),
  // An upload sits in the socket buffers (MiBs on loopback) draining at the link's rate while the
  // client sees no byte move: the idle timeout must outlast that, as the default 120 s does for any
  // link faster than about 40 KB/s. 1.5 s does not at 1 MiB/s: this row runs with 15 s.
  bandwidth: toxics(
    'bandwidth 1 MiB/s each way',
    [
      { name: 'down', type: 'bandwidth', attributes: { rate: 1024 } },
      { name: 'up', type: 'bandwidth', stream: 'upstream', attributes: { rate: 1024 } },
    ],
    { env: { MESHBACK_S3_TIMEOUT_MS: '15000' } },
  ),
  slicer: toxics('slicer (replies in ~1 KiB pieces)', [{ name: 'slicer', type: 'slicer', attributes: { average_size: 1024, size_variation: 512, delay: 50 } }]),
  resetStart: toxics('reset_peer on every connection, from the start', [{ name: 'reset', type: 'reset_peer', stream: 'upstream', attributes: { timeout: 0 } }]),
  resetMid: toxics('reset_peer on every connection, mid-run', [slow], {
    mid: [
      { name: 'reset-up', type: 'reset_peer', stream: 'upstream', attributes: { timeout: 0 } },
      { name: 'reset-down', type: 'reset_peer', stream: 'downstream', attributes: { timeout: 0 } },
    ],
  }),
  timeoutMid: toxics('timeout (no data, connections kept open), mid-run', [slow], { mid: [{ name: 'timeout', type: 'timeout', attributes: { timeout: 0 } }] }),
  outageShort: outage('outage: proxy disabled for 3 s mid-run', 3000, [slow]),
  outage20: outage('outage: proxy disabled for 20 s mid-run', 20_000, [slow]),
  outageLong: outage('outage: proxy disabled mid-run until the run ends', undefined, [slow]),
  slowdown3: http('503 SlowDown on 3 requests', [{ fault: 'slowdown', times: 3 }]),
  internal3: http('500 InternalError on 3 requests', [{ fault: 'internal', times: 3 }]),
  lostPut: http('lost reply (500 after the store did it) on 3 PUTs', [{ fault: 'lost-reply', on: ['put'], times: 3 }]),
  corruptPut: http('a PUT body damaged on the way (a byte flipped) on 3 PUTs', [{ fault: 'corrupt-body', on: ['put'], times: 3 }]),
  lostDelete: http('lost reply on 3 DELETEs', [{ fault: 'lost-reply', on: ['delete'], times: 3 }]),
  truncate3: http('truncated body on 3 GETs', [{ fault: 'truncate', on: ['get', 'list'], times: 3 }]),
  slowFirst: http(`first byte after 4 s (> ${S3_TIMEOUT_MS / 1000} s timeout) on 2 requests`, [{ fault: 'slow-first-byte', delayMs: 4000, times: 2 }]),
  slowdownPutsAll: http('503 SlowDown on every PUT but of locks', [{ fault: 'slowdown', on: ['put'], key: NOT_LOCKS }]),
  internalGetsAll: http('500 InternalError on every GET of a pack', [{ fault: 'internal', on: ['get'], key: PACKS }]),
  truncateGetsAll: http('truncated body on every GET of a pack', [{ fault: 'truncate', on: ['get'], key: PACKS }]),
  slowFirstAll: http('first byte after 4 s on every GET of a pack', [{ fault: 'slow-first-byte', delayMs: 4000, on: ['get'], key: PACKS }]),
  internalDeletesAll: http('500 InternalError on every DELETE but of locks', [{ fault: 'internal', on: ['delete'], key: NOT_LOCKS }]),
} satisfies Record<string, Fault>;

const OK = 'completes' as const;
const BACKEND = { exit: 7 };

const ROWS: Row[] = [
  ...(['backup', 'restore', 'prune'] as const).flatMap((op) => [
    { fault: F.latency, op, expect: OK },
    { fault: F.bandwidth, op, expect: OK },
    { fault: F.slicer, op, expect: OK },
    { fault: F.slowdown3, op, expect: OK },
    { fault: F.internal3, op, expect: OK },
    { fault: F.truncate3, op, expect: OK },
    { fault: F.slowFirst, op, expect: OK },
  ]),
  { fault: F.lostPut, op: 'backup', expect: OK },
  // the store checks the body against its signed SHA-256 (x-amz-content-sha256) and refuses it; sent again, it passes
  { fault: F.corruptPut, op: 'backup', expect: OK },
  { fault: F.corruptPut, op: 'prune', expect: OK },
  { fault: F.lostPut, op: 'prune', expect: OK },
  { fault: F.lostDelete, op: 'prune', expect: OK },
  { fault: F.resetStart, op: 'backup', expect: BACKEND },
  { fault: F.resetMid, op: 'restore', expect: BACKEND },
  { fault: F.resetMid, op: 'prune', expect: BACKEND },
  { fault: F.timeoutMid, op: 'backup', expect: BACKEND },
  { fault: F.timeoutMid, op: 'restore', expect: BACKEND },
  // an S3 store's retry budget (12 attempts, equal jitter) waits 55.9 to 111.75 s in all: outages
  // shorter than that are ridden out
  { fault: F.outageShort, op: 'backup', expect: OK },
  { fault: F.outageShort, op: 'restore', expect: OK },
  { fault: F.outage20, op: 'backup', expect: OK },
  { fault: F.outageLong, op: 'backup', expect: BACKEND },
  { fault: F.outageLong, op: 'prune', expect: BACKEND },
  { fault: F.slowdownPutsAll, op: 'backup', expect: BACKEND },
  { fault: F.slowdownPutsAll, op: 'prune', expect: BACKEND },
  { fault: F.internalGetsAll, op: 'restore', expect: BACKEND },
  { fault: F.truncateGetsAll, op: 'restore', expect: BACKEND },
  { fault: F.slowFirstAll, op: 'restore', expect: BACKEND },
  { fault: F.internalDeletesAll, op: 'prune', expect: BACKEND },
  ...[F.latency, F.slowdown3, F.internal3, F.truncate3, F.slowFirst, F.lostPut, F.corruptPut, F.outageShort].map((fault) => ({ fault, op: 'copy' as const, expect: OK })),
  { fault: F.resetMid, op: 'copy', expect: BACKEND },
  { fault: F.outageLong, op: 'copy', expect: BACKEND },
  { fault: F.slowdownPutsAll, op: 'copy', expect: BACKEND },
  { fault: F.slowdown3, op: 'check', expect: OK },
  { fault: F.truncate3, op: 'check', expect: OK },
  { fault: F.internalGetsAll, op: 'check', expect: BACKEND },
  { fault: F.outageLong, op: 'check', expect: BACKEND },
];

// ---------------------------------------------------------------------------------------------
// checks

async function snapshotIds(r: RowEnv): Promise<string[]> {
  const s = await mb(['snapshots', '--json', '--repo', r.direct], { env: r.env, timeoutMs: RUN_LIMIT_MS });
  assert.equal(s.code, 0, s.stderr);
  return (JSON.parse(s.stdout) as { id: string }[]).map((x) => x.id.slice(0, 8));
}

async function restoresIdentical(r: RowEnv, id: string, want: string): Promise<void> {
  const target = path.join(r.dir, `check-${id}`);
  const res = await mb(['restore', id, '--target', target, '--repo', r.direct], { env: r.env, timeoutMs: RUN_LIMIT_MS });
  assert.equal(res.code, 0, res.stderr);
  assert.deepEqual(await compareTrees(want, target), [], `snapshot ${id} restores identical`);
}

async function listKeys(prefix: string): Promise<{ key: string; size: number }[]> {
  const out: { key: string; size: number }[] = [];
  let token: string | undefined;
  do {
    const l = await c.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `${prefix}/`, ...(token !== undefined ? { ContinuationToken: token } : {}) }));
    for (const o of l.Contents ?? []) out.push({ key: o.Key!, size: o.Size ?? 0 });
    token = l.IsTruncated === true ? l.NextContinuationToken : undefined;
  } while (token !== undefined);
  return out;
}

let seedDataBytes = 0;
/** the seed's packs, by name */
const seedPacks = new Set<string>();
async function newPackStored(r: RowEnv): Promise<boolean> {
  return (await listKeys(`${r.prefix}/data`)).some((k) => !seedPacks.has(path.basename(k.key)));
}
async function dataBytes(prefix: string): Promise<number> {
  return (await listKeys(prefix)).filter((o) => o.key.startsWith(`${prefix}/data/`)).reduce((a, o) => a + o.size, 0);
}

/** stderr without retry warnings, the plain progress line (every 30 s) and a success's requests and cache lines: the lines a failure prints (exactly one) */
function errorLines(stderr: string): string[] {
  // progress lines (with a bar, or the periodic plain ones off a terminal) are not errors
  return stderr.split('\n').filter((l) => l !== '' && !l.startsWith('warning: ') && !/^[a-z-]+ (\[[^\]]*\] +\d+% )?\d+(\/\d+)? files, /.test(l) && !/^(requests|cache): /.test(l));
}

// ---------------------------------------------------------------------------------------------

async function makeFile(p: string, size: number): Promise<void> {
  await fsp.mkdir(path.dirname(p), { recursive: true });
  await fsp.writeFile(p, randomBytes(size));
}

before(async () => {
  [s3, tp] = await Promise.all([startS3(), startToxiproxy()]);
  c = s3.client();
  base = tmpdir('s3faults');
  src = path.join(base, 'src');
  wantB = path.join(base, 'want-b');
  env = { ...s3.env, AWS_PROFILE: undefined, AWS_SESSION_TOKEN: undefined, MESHBACK_PASSWORD: 'pw', MESHBACK_FROM_PASSWORD: 'pw', MESHBACK_REPO: undefined, MESHBACK_S3_TIMEOUT_MS: String(S3_TIMEOUT_MS) };
  const seed = `s3:${s3.endpoint}/${s3.bucket}/seed`;
  const ok = async (args: string[]): Promise<RunResult> => {
    const r = await mb(args, { env, timeoutMs: RUN_LIMIT_MS });
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r;
  };
  // snapshot A: a small tree and a file only A has
  await fsp.mkdir(path.join(src, 'conf'), { recursive: true });
  await fsp.writeFile(path.join(src, 'conf/envoy.yaml'), 'static_resources:\n  clusters: []\n'.repeat(300));
  for (let i = 0; i < 120; i++) await fsp.writeFile(path.join(src, `conf/f${i}.txt`), `file ${i}\n`.repeat(i + 1));
  await makeFile(path.join(src, 'data/old.bin'), 3 << 20);
  await ok(['init', '--repo', seed]);
  const a = /snapshot ([0-9a-f]{8}) saved/.exec((await ok(['backup', src, '--repo', seed])).stdout)![1]!;
  // snapshot B: old.bin gone, new data, some files changed
  await fsp.rm(path.join(src, 'data/old.bin'));
  await makeFile(path.join(src, 'data/new.bin'), 2 << 20);
  for (let i = 0; i < 10; i++) await fsp.appendFile(path.join(src, `conf/f${i}.txt`), 'changed\n');
  snapB = /snapshot ([0-9a-f]{8}) saved/.exec((await ok(['backup', src, '--repo', seed])).stdout)![1]!;
  await ok(['forget', a, '--repo', seed]);
  await fsp.cp(src, wantB, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
  // what the backup rows add
  await makeFile(path.join(src, 'data/more.bin'), 2 << 20);
  for (let i = 0; i < 40; i++) await fsp.writeFile(path.join(src, `conf/g${i}.txt`), `more ${i}\n`.repeat(i + 1));
  seedDataBytes = await dataBytes('seed');
  for (const k of await listKeys('seed/data')) seedPacks.add(path.basename(k.key));
});

after(async () => {
  c?.destroy();
  await Promise.all([s3?.stop(), tp?.stop()]);
  if (base !== undefined) await rmrf(base);
});

let rowN = 0;
/** the row's repository: a copy of the seed, object by object, in the bucket under its own prefix */
async function copySeed(prefix: string): Promise<void> {
  const keys = await listKeys('seed');
  await Promise.all(keys.map((k) => c.send(new CopyObjectCommand({ Bucket: s3.bucket, Key: `${prefix}/${k.key.slice('seed/'.length)}`, CopySource: `${s3.bucket}/${k.key}` }))));
}

function expectString(e: Expect): string {
  return e === 'completes' ? 'completes' : 'exit' in e ? `fails with exit ${e.exit}` : `completes or fails with exit ${e.either[1]}`;
}

async function runRow(t: TestContext, row: Row): Promise<void> {
  const n = rowN++;
  const prefix = `rows/${n}-${randomBytes(3).toString('hex')}`;
  const dir = tmpdir(`s3faults-${n}`);
  const minio = new URL(s3.endpoint).host;
  let endpoint: string;
  let proxy: FaultProxy | undefined;
  const toxi = `row${n}`;
  if (row.fault.via === 'toxiproxy') endpoint = `http://${await tp.createProxy(toxi, minio)}`;
  else {
    proxy = await startFaultProxy(s3.endpoint);
    endpoint = proxy.endpoint;
  }
  const r: RowEnv = { viaProxy: `s3:${endpoint}/${s3.bucket}/${prefix}`, direct: `s3:${s3.endpoint}/${s3.bucket}/${prefix}`, prefix, dir, env: { ...env, MESHBACK_CACHE_DIR: path.join(dir, 'cache') } };
  try {
    await copySeed(prefix);
    const op = OPS[row.op];
    await op.prepare?.(r);
    const fault = row.fault.make({ ...(proxy !== undefined ? { http: proxy } : { toxi }), op, r });
    const started = (async (): Promise<RunResult> => {
      await sleep(0);
      // a run expected to fail gets 4 attempts per call (waits of 0.9 to 1.75 s) instead of the
      // S3 default of 12 (56 to 112 s), to keep the test quick: what is tested is how it fails
      const budget = row.expect !== 'completes' ? { MESHBACK_STORAGE_ATTEMPTS: '4' } : {};
      return mb(op.args(r), { env: { ...r.env, ...budget, ...row.fault.env }, timeoutMs: RUN_LIMIT_MS });
    })();
    let run: RunResult;
    try {
      await fault.start(started);
      run = await started;
    } finally {
      await fault.stop();
    }
    const lines = errorLines(run.stderr);
    const retries = run.stderr.split('\n').filter((l) => l.startsWith('warning: storage: retrying')).length;
    const requests = /^requests: (.*)$/m.exec(run.stderr)?.[1];
    const outcome = run.timedOut ? `HUNG: killed after ${RUN_LIMIT_MS / 1000} s` : run.code === 0 ? 'completed' : `exit ${run.code}: ${lines.join(' | ')}`;
    t.diagnostic(`${row.fault.name} | ${row.op} | ${outcome} | ${(run.ms / 1000).toFixed(1)} s | ${retries} retries | fault met: ${fault.met()}${requests !== undefined ? ` | requests: ${requests}` : ''}`);
    assert.ok(!run.timedOut, `the run hung: ${run.stderr.slice(-2000)}`);
    // the outcome the row expects, and its one line
    const e = row.expect;
    const wantExit = e === 'completes' ? [0] : 'exit' in e ? [e.exit] : e.either;
    assert.ok(wantExit.includes(run.code), `expected: ${expectString(e)}; got exit ${run.code}\n${run.stderr}`);
    assert.ok(EXIT_DOC.some(([code]) => code === run.code), `exit ${run.code} is documented`);
    if (run.code === 0) assert.deepEqual(lines, [], 'a completed run prints no error');
    else {
      assert.equal(lines.length, 1, `one line on a failure:\n${run.stderr}`);
      assert.match(lines[0]!, /^meshback: \S/);
    }
    if (row.fault.via === 'http') assert.match(fault.met(), /x[1-9]/, `the HTTP fault was met: ${fault.met()}`);
    else assert.doesNotMatch(fault.met(), /^never/, 'the toxiproxy fault was met');
    // with the fault gone, straight to MinIO: the repository checks clean, B is intact
    const chk = await mb(['check', '--read-data', '--repo', r.direct], { env: r.env, timeoutMs: RUN_LIMIT_MS });
    assert.equal(chk.code, 0, `check --read-data after the fault: ${chk.stdout}${chk.stderr}`);
    if (run.code === 0) await op.completed(r, run);
    else await op.failed(r, run);
    if (!(row.op === 'restore' && run.code === 0)) await restoresIdentical(r, snapB, wantB);
  } finally {
    if (proxy !== undefined) await proxy.stop();
    else await tp.deleteProxy(toxi).catch(() => undefined);
    await rmrf(dir);
  }
}

describe('network faults between the CLI and MinIO', { concurrency: 3 }, () => {
  for (const row of ROWS) {
    test(`${row.fault.name} x ${row.op}: ${expectString(row.expect)}`, { timeout: 4 * RUN_LIMIT_MS }, (t) => runRow(t, row));
  }
});
