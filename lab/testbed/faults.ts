/**
 * testbed/faults: the faults the testbed can suffer, each recorded in DIR/faults.jsonl with the
 * moment it struck (the start of RPO and RTO):
 *
 * - container-crash: SIGKILL to every process of the named containers (a service's app and
 *   sidecar, or postgres, or redis), all groups at the same moment. Volumes stay as they are.
 * - node-outage: SIGKILL to every process of the testbed (components, then the supervisor),
 *   then every volume is unmounted and thrown away (directory deleted, btrfs image deleted).
 *   What is left is the testbed directory's journal and records, as a control plane would keep.
 * - corrupt: damage to the data files of the named volumes, live: bytes flipped inside
 *   PostgreSQL's table and index files, Redis's append-only file, the sidecar's nginx.conf, and
 *   one file per volume truncated (the table's heap, the AOF, the access log). On a btrfs volume
 *   the image is damaged instead: data blocks of files are overwritten underneath the filesystem
 *   (its checksums then fail the reads).
 * - disk-full: the named volume's filesystem is filled (btrfs volumes only: a directory volume
 *   shares its filesystem with the machine). The filler file is recorded; deleting it gives the
 *   space back.
 */
import { constants as fsc, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UsageError, errMessage } from '../../src/errors/index.ts';
import { damageImage, takeManifest } from '../faults/damage.ts';
import { Rng } from '../gen/rng.ts';
import { components, containerNames, pgData, stopSupervisor, volumeOf } from './components.ts';
import { pgQuery } from './stores.ts';
import { groupAlive, killPids, processTree, sleep, waitPidsGone } from './procs.ts';
import { appendLine, paths } from './state.ts';
import type { FaultKind, FaultRecord, TestbedState, VolumeRecord } from './state.ts';
import { openVolume } from '../../src/volumes/index.ts';

export interface FaultOptions {
  /** containers (crash) or volumes (corrupt, disk-full) to hit */
  targets?: string[];
  /** seed of the corruption's choices (default 1) */
  seed?: number;
}

function needTargets(s: TestbedState, kind: FaultKind, targets: string[] | undefined, one: boolean): string[] {
  const names = containerNames(s);
  if (targets === undefined || targets.length === 0) throw new UsageError(`fault ${kind} needs --service NAME (one of ${names.join(', ')})`);
  if (one && targets.length > 1) throw new UsageError(`fault ${kind} takes one --service`);
  for (const t of targets) if (!names.includes(t)) throw new UsageError(`no service ${JSON.stringify(t)} in this testbed: give one of ${names.join(', ')}`);
  return [...new Set(targets)];
}

/** Injects a fault into a running testbed; the state (processes, volumes) is updated in `s`. */
export async function injectFault(s: TestbedState, kind: FaultKind, o: FaultOptions = {}): Promise<FaultRecord> {
  let rec: FaultRecord;
  switch (kind) {
    case 'container-crash':
      rec = await crash(s, needTargets(s, kind, o.targets, false));
      break;
    case 'node-outage':
      if (o.targets !== undefined && o.targets.length > 0) throw new UsageError('fault node-outage takes no --service: it takes the whole node down');
      rec = await nodeOutage(s);
      break;
    case 'corrupt':
      rec = await corrupt(s, needTargets(s, kind, o.targets, false), o.seed ?? 1);
      break;
    case 'disk-full':
      rec = await diskFull(s, needTargets(s, kind, o.targets, true)[0]!);
      break;
  }
  await appendLine(paths(s.dir).faults, rec);
  return rec;
}

/** SIGKILL to every process of the containers at once; returns one line per component that was running. */
async function killAll(s: TestbedState, names: ReadonlySet<string>): Promise<{ t: number; details: string[] }> {
  const hit = components(s).filter((c) => names.has(c.container) && s.procs[c.name] !== undefined && groupAlive(s.procs[c.name]!));
  // who belongs to whom is read before anything dies (orphans are re-parented at once)
  const trees = hit.map((c) => processTree(s.procs[c.name]!));
  const t = Date.now();
  for (const tree of trees) killPids(tree);
  const details: string[] = [];
  for (const [i, c] of hit.entries()) {
    const gone = await waitPidsGone(trees[i]!, 5000);
    details.push(`killed ${c.name} (${trees[i]!.length} process(es), group ${s.procs[c.name]!.pid}) with SIGKILL${gone ? '' : ': some were still exiting after 5 s'}`);
  }
  for (const c of components(s)) if (names.has(c.container)) delete s.procs[c.name];
  return { t, details };
}

async function crash(s: TestbedState, targets: string[]): Promise<FaultRecord> {
  const { t, details } = await killAll(s, new Set(targets));
  if (details.length === 0) details.push(`nothing of ${targets.join(', ')} was running`);
  return { t, kind: 'container-crash', targets, details };
}

async function nodeOutage(s: TestbedState): Promise<FaultRecord> {
  const all = containerNames(s);
  const { t, details } = await killAll(s, new Set(all));
  if (s.supervisor !== undefined) {
    await stopSupervisor(s, true);
    details.push('killed the supervisor with SIGKILL');
  }
  for (const v of s.volumes) {
    if (v.destroyed === true) continue;
    await openVolume(v).destroy();
    v.destroyed = true;
    details.push(v.kind === 'btrfs' ? `unmounted volume ${v.name} and deleted its image ${v.image}` : `deleted volume ${v.name} (${v.path})`);
  }
  return { t, kind: 'node-outage', targets: all, details };
}

// ---------------------------------------------------------------------------------------------
// corrupt

/** XORs `n` single bytes at random offsets of `file` with non-zero values; keeps mode and mtime. */
async function flipBytes(file: string, n: number, rng: Rng): Promise<number[]> {
  const st = await fsp.stat(file);
  if (st.size === 0) return [];
  const fh = await fsp.open(file, fsc.O_RDWR);
  const offsets: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const off = rng.int(0, st.size - 1);
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, off);
      b[0] = b[0]! ^ (rng.int(1, 255) & 0xff || 1);
      await fh.write(b, 0, 1, off);
      offsets.push(off);
    }
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await fsp.utimes(file, st.atime, st.mtime);
  return offsets.sort((a, b) => a - b);
}

async function truncateTo(file: string, fraction: number, align = 1): Promise<{ from: number; to: number }> {
  const st = await fsp.stat(file);
  const to = Math.floor((st.size * fraction) / align) * align;
  await fsp.truncate(file, to);
  await fsp.utimes(file, st.atime, st.mtime);
  return { from: st.size, to };
}

async function filesUnder(dir: string): Promise<{ file: string; size: number }[]> {
  const out: { file: string; size: number }[] = [];
  let entries;
  try {
    entries = await fsp.readdir(dir, { recursive: true, withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!e.isFile()) continue;
    const f = path.join(e.parentPath, e.name);
    out.push({ file: f, size: (await fsp.stat(f)).size });
  }
  return out;
}

/** The data files of the PostgreSQL-backed services' tables and indexes (asks the server; else the largest relation files). */
async function pgTargetFiles(s: TestbedState, v: VolumeRecord): Promise<{ heap: string[]; index: string[] }> {
  const data = pgData(v);
  const tables = s.services.filter((x) => x.store === 'postgres').map((x) => x.name);
  if (tables.length > 0) {
    try {
      const r = await pgQuery<{ relkind: string; file: string | null }>(
        s.postgres.port,
        'SELECT c.relkind, pg_relation_filepath(c.oid) AS file FROM pg_class c WHERE c.relname = ANY($1) OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN (SELECT oid FROM pg_class WHERE relname = ANY($1)))',
        { connectMs: 2000, timeoutMs: 5000, values: [tables] },
      );
      const heap: string[] = [];
      const index: string[] = [];
      for (const { relkind, file } of r.rows) if (file !== null) (relkind === 'i' ? index : heap).push(path.join(data, file));
      if (heap.length > 0) return { heap, index };
    } catch {
      /* the server is down: pick by size below */
    }
  }
  const rel = (await filesUnder(path.join(data, 'base'))).filter((f) => /\/\d+$/.test(f.file) && f.size >= 8192).sort((a, b) => b.size - a.size);
  return { heap: rel.slice(0, 1).map((f) => f.file), index: rel.slice(1, 3).map((f) => f.file) };
}

async function corruptVolume(s: TestbedState, name: string, rng: Rng): Promise<string[]> {
  const v = volumeOf(s, name);
  if (v.destroyed === true) throw new UsageError(`volume ${name} was thrown away by a node outage: there is nothing to corrupt`);
  const details: string[] = [];
  if (name === 'postgres') {
    // rot hits what is on the disk: have the server write its dirty pages to the data files first
    const done = await pgQuery(s.postgres.port, 'CHECKPOINT', { connectMs: 2000, timeoutMs: 60_000 }).then(() => true, () => false);
    if (done) details.push(`${name}: CHECKPOINT first, so that the table's pages are in its data files`);
  }
  const rel = (f: string): string => path.relative(v.path, f);
  if (v.kind === 'btrfs' && v.image !== undefined) {
    // the files that hold the service's data (PostgreSQL's catalogs repeat the same pages in every
    // database: a block found more than once in the image cannot be aimed at)
    const all = await takeManifest(v.path);
    let wanted: Set<string> | undefined;
    if (name === 'postgres') {
      const { heap, index } = await pgTargetFiles(s, v);
      // and the newest WAL segment (the one crash recovery reads last)
      const wal = [...all.values()].filter((e) => /^pgdata\/pg_wal\/[0-9A-F]{24}$/.test(e.path)).map((e) => e.path).sort().pop();
      wanted = new Set([...[...heap, ...index].map(rel), ...(wal !== undefined ? [wal] : [])]);
    } else if (name === 'redis') {
      wanted = new Set([...all.keys()].filter((k) => k.startsWith('data/')));
    }
    const reference = wanted === undefined ? all : new Map([...all].filter(([k]) => wanted.has(k)));
    const d = await damageImage(v.path, v.image, reference, rng, name === 'postgres' ? Math.max(1, reference.size) : 4, new Set());
    details.push(`${name}: overwrote a 4 KiB data block in the image under ${d.files.length} file(s) (${d.files.join(', ')}); ${d.unreadable.length} now fail to read${d.shortfall !== undefined ? `; ${d.shortfall}` : ''}`);
    return details;
  }
  if (name === 'postgres') {
    const { heap, index } = await pgTargetFiles(s, v);
    for (const f of [...heap, ...index]) {
      const offs = await flipBytes(f, 16, rng);
      details.push(`${name}: flipped ${offs.length} bytes in ${rel(f)}`);
    }
    if (heap[0] !== undefined) {
      const t = await truncateTo(heap[0], 0.5, 8192);
      details.push(`${name}: truncated ${rel(heap[0])} from ${t.from} to ${t.to} bytes`);
    }
  } else if (name === 'redis') {
    const aof = (await filesUnder(path.join(v.path, 'data'))).filter((f) => f.size > 0 && !f.file.endsWith('.manifest')).sort((a, b) => b.size - a.size);
    const f = aof[0]?.file;
    if (f !== undefined) {
      details.push(`${name}: flipped ${(await flipBytes(f, 16, rng)).length} bytes in ${rel(f)}`);
      const t = await truncateTo(f, 0.75);
      details.push(`${name}: truncated ${rel(f)} from ${t.from} to ${t.to} bytes`);
    }
  } else {
    const conf = path.join(v.path, 'nginx', 'nginx.conf');
    details.push(`${name}: flipped ${(await flipBytes(conf, 8, rng)).length} bytes in ${rel(conf)}`);
    const log = path.join(v.path, 'nginx', 'logs', 'access.log');
    const t = await truncateTo(log, 0.5).catch(() => undefined);
    if (t !== undefined) details.push(`${name}: truncated ${rel(log)} from ${t.from} to ${t.to} bytes`);
  }
  if (details.length === 0) details.push(`${name}: found no data file to damage`);
  return details;
}

async function corrupt(s: TestbedState, targets: string[], seed: number): Promise<FaultRecord> {
  const rng = new Rng(seed);
  const t = Date.now();
  const details: string[] = [];
  for (const name of targets) details.push(...(await corruptVolume(s, name, rng)));
  return { t, kind: 'corrupt', targets, details };
}

// ---------------------------------------------------------------------------------------------
// disk-full

const MiB = 1024 * 1024;

async function diskFull(s: TestbedState, name: string): Promise<FaultRecord> {
  const v = volumeOf(s, name);
  if (v.kind !== 'btrfs') throw new UsageError(`fault disk-full needs volumes with their own filesystem: volume ${name} is a directory on the machine's disk (start the testbed with --volumes btrfs)`);
  if (v.destroyed === true) throw new UsageError(`volume ${name} was thrown away by a node outage`);
  const filler = path.join(v.path, `.testbed-filler-${Date.now()}`);
  const before = await openVolume(v).free();
  const t = Date.now();
  // write real blocks (btrfs reserves metadata as it goes, so fallocate alone can leave room),
  // 1 MiB at a time, until the filesystem says ENOSPC; bounded by the free space seen at the start
  const fh = await fsp.open(filler, 'w');
  const block = Buffer.alloc(MiB, 0x5a);
  let written = 0;
  let full = false;
  try {
    const limit = Math.ceil(before / MiB) + 64;
    for (let i = 0; i < limit && !full; i++) {
      try {
        await fh.write(block, 0, MiB);
        written += MiB;
      } catch (err) {
        if ((err as { code?: string }).code !== 'ENOSPC') throw err;
        full = true;
      }
    }
    // the last bytes: smaller writes until nothing more fits
    for (let sz = 512 * 1024; sz >= 4096 && full; sz /= 2) {
      for (let i = 0; i < 64; i++) {
        try {
          await fh.write(block, 0, sz);
          written += sz;
        } catch {
          break;
        }
      }
    }
    await fh.sync().catch(() => undefined);
  } finally {
    await fh.close().catch(() => undefined);
  }
  await sleep(50);
  const after = await openVolume(v).free();
  let detail = `${name}: wrote ${Math.round(written / MiB)} MiB into ${path.relative(v.path, filler)}; free space ${Math.round(before / MiB)} MiB -> ${Math.round(after / MiB)} MiB`;
  if (!full) detail += ' (the filesystem never answered ENOSPC)';
  return { t, kind: 'disk-full', targets: [name], details: [detail], filler };
}

/** Gives back the space of a disk-full fault (deletes its filler file). */
export async function releaseDiskFull(rec: FaultRecord): Promise<void> {
  if (rec.filler === undefined) return;
  try {
    await fsp.rm(rec.filler, { force: true });
  } catch (err) {
    throw new UsageError(`cannot delete the filler ${rec.filler}: ${errMessage(err)}`);
  }
}
