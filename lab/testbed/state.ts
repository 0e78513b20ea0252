/**
 * testbed/state: what a testbed directory records, so that any process (`meshback testbed down`
 * in another shell, a benchmark scenario) can find and drive a running testbed.
 *
 * Layout of a testbed directory DIR:
 *   .meshback-testbed   marker (a directory without it is never deleted by `down --purge`)
 *   state.json          TestbedState: services, ports, volumes, processes (written atomically)
 *   journal.jsonl       one line per write acknowledged to a load client (outside the volumes)
 *   faults.jsonl        one line per injected fault
 *   verify.jsonl        one line per verification report
 *   writeoffs.jsonl     acknowledged writes a healthy verification found lost (not counted again)
 *   logs/               stdout and stderr of every component and of the supervisor
 *   run/                the supervisor's socket, exits.jsonl
 *   volumes/NAME/       directory volumes; btrfs/NAME.img + btrfs/NAME/ for btrfs volumes
 */
import { closeSync, existsSync, openSync, promises as fsp, readFileSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { MeshbackError, NotFoundError, errMessage } from '../../src/errors/index.ts';
import { isAlive, procStat, sleep } from './procs.ts';
import type { ProcRef } from './procs.ts';

export const MARKER = '.meshback-testbed';
export const STATE_VERSION = 1;

export type Store = 'postgres' | 'redis';
export type VolumeKind = 'dir' | 'btrfs';

/** A microservice: a Node HTTP app behind its own nginx sidecar, writing to one store. */
export interface ServiceSpec {
  name: string;
  store: Store;
  /** the app's port (nginx proxies to it) */
  appPort: number;
  /** the sidecar's port: where clients send requests */
  sidecarPort: number;
}

/** What the service process (service.ts) is started with. */
export interface ServiceConfig {
  name: string;
  store: Store;
  port: number;
  sidecarPort: number;
  /** the service's volume: metrics snapshots go to its metrics/ */
  volume: string;
  pgPort: number;
  redisPort: number;
}

export interface VolumeRecord {
  /** the volume's name: a service name, 'postgres' or 'redis' */
  name: string;
  kind: VolumeKind;
  /** absolute path the component uses (btrfs: a subvolume inside the mount) */
  path: string;
  /** btrfs: the image file and the mount point */
  image?: string;
  mount?: string;
  /** a directory handed to verify (restored volumes): not made by the testbed */
  adopted?: boolean;
  /** thrown away by a node outage; verify --volumes brings a replacement */
  destroyed?: boolean;
}

export interface ProcRecord extends ProcRef {
  component: string;
  /** ms since the epoch */
  startedAt: number;
}

export interface TestbedState {
  version: typeof STATE_VERSION;
  dir: string;
  createdAt: number;
  volumeKind: VolumeKind;
  /** btrfs image size in bytes */
  volumeSizeBytes: number;
  /** the supervisor stops everything after this many seconds (up --ttl) */
  ttlSeconds?: number;
  services: ServiceSpec[];
  postgres: { port: number };
  redis: { port: number };
  /** where nginx, redis-server and PostgreSQL's binaries were found at `up` */
  programs: { nginx: string; redisServer: string; pgBindir: string; pgVersion: number };
  volumes: VolumeRecord[];
  /** btrfs volumes replaced by restored directories: still to unmount at `down` */
  retired?: VolumeRecord[];
  supervisor?: ProcRef & { socket: string };
  /** by component name; a component is running while its record's process group is */
  procs: Record<string, ProcRecord>;
  /** set by `down` */
  stoppedAt?: number;
}

/** One write acknowledged to the load generator. */
export interface JournalEntry {
  /** ms since the epoch, when the acknowledgement arrived */
  t: number;
  service: string;
  store: Store;
  /** the order id (PostgreSQL) or session key (Redis) the service answered with */
  id: string;
  /** what was written */
  value: string;
  /** PostgreSQL: the client's reference (unique) */
  ref?: string;
}

export type FaultKind = 'container-crash' | 'node-outage' | 'corrupt' | 'disk-full';
export const FAULT_KINDS: readonly FaultKind[] = ['container-crash', 'node-outage', 'corrupt', 'disk-full'];

export interface FaultRecord {
  /** ms since the epoch, when the fault struck */
  t: number;
  kind: FaultKind;
  /** the containers (services, 'postgres', 'redis') or volumes it hit */
  targets: string[];
  /** what was done, one line each */
  details: string[];
  /** disk-full: the filler file (delete it to give the space back) */
  filler?: string;
}

export const paths = (dir: string) => ({
  marker: path.join(dir, MARKER),
  state: path.join(dir, 'state.json'),
  lock: path.join(dir, 'state.lock'),
  journal: path.join(dir, 'journal.jsonl'),
  faults: path.join(dir, 'faults.jsonl'),
  verify: path.join(dir, 'verify.jsonl'),
  writeoffs: path.join(dir, 'writeoffs.jsonl'),
  logs: path.join(dir, 'logs'),
  run: path.join(dir, 'run'),
  volumes: path.join(dir, 'volumes'),
  btrfs: path.join(dir, 'btrfs'),
});

export function isTestbedDir(dir: string): boolean {
  return existsSync(path.join(dir, MARKER));
}

export async function readState(dir: string): Promise<TestbedState> {
  const p = paths(dir);
  if (!existsSync(p.marker) || !existsSync(p.state)) throw new NotFoundError(`no testbed in ${dir}: start one with 'meshback testbed up --dir ${dir}'`);
  let s: TestbedState;
  try {
    s = JSON.parse(await fsp.readFile(p.state, 'utf8')) as TestbedState;
  } catch (err) {
    throw new MeshbackError('INTERNAL', `cannot read the testbed state ${p.state}: ${errMessage(err)}; 'meshback testbed down --dir ${dir}' stops what it can find`);
  }
  if (s.version !== STATE_VERSION) throw new MeshbackError('UNSUPPORTED_FORMAT', `the testbed in ${dir} was made by another version of meshback (state version ${String(s.version)}): stop it with that version`);
  return s;
}

export async function writeState(s: TestbedState): Promise<void> {
  const p = paths(s.dir);
  const tmp = `${p.state}.tmp-${process.pid}`;
  await fsp.writeFile(tmp, JSON.stringify(s, null, 2) + '\n', { mode: 0o600 });
  await fsp.rename(tmp, p.state);
}

/**
 * Runs `fn` on the state under the directory's lock file (created O_EXCL; one left by a process
 * that is gone is taken over) and writes the state back, also when `fn` fails. Waits at most
 * 60 s for the lock.
 */
export async function updateState<T>(dir: string, fn: (s: TestbedState) => Promise<T>): Promise<T> {
  const lock = paths(dir).lock;
  const me = procStat(process.pid);
  const end = Date.now() + 60_000;
  for (;;) {
    try {
      const fd = openSync(lock, 'wx');
      writeSync(fd, JSON.stringify({ pid: process.pid, startTime: me?.startTime ?? -1 }));
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err;
      let holder: ProcRef | undefined;
      try {
        holder = JSON.parse(readFileSync(lock, 'utf8')) as ProcRef;
      } catch {
        holder = undefined; // being written: wait
      }
      if (holder !== undefined && !isAlive(holder)) {
        await fsp.rm(lock, { force: true });
        continue;
      }
      if (Date.now() > end) throw new MeshbackError('LOCKED', `the testbed in ${dir} is busy (another meshback testbed command holds ${lock}): wait for it, or remove the file if no such command runs`);
      await sleep(100);
    }
  }
  try {
    const s = await readState(dir);
    try {
      return await fn(s);
    } finally {
      // also after a failure: what was started or killed before it must stay on record
      await writeState(s);
    }
  } finally {
    await fsp.rm(lock, { force: true });
  }
}

async function readLines<T>(file: string): Promise<T[]> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch {
    return [];
  }
  const out: T[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      out.push(JSON.parse(line) as T);
    } catch {
      /* a line cut short by a crash of the writer: not acknowledged to anyone */
    }
  }
  return out;
}

export const readJournal = (dir: string): Promise<JournalEntry[]> => readLines<JournalEntry>(paths(dir).journal);

/** A write found lost by a healthy verification: it belongs to that incident's report. */
export interface WriteOff {
  service: string;
  id: string;
  value: string;
  /** when it was acknowledged */
  t: number;
  /** the verification that found it lost */
  verifiedAt: string;
}

export const writeOffKey = (x: { service: string; id: string; value: string; t: number }): string => `${x.service}\0${x.id}\0${x.t}\0${x.value}`;
export const readWriteOffs = (dir: string): Promise<WriteOff[]> => readLines<WriteOff>(paths(dir).writeoffs);
export const readFaults = (dir: string): Promise<FaultRecord[]> => readLines<FaultRecord>(paths(dir).faults);

export async function appendLine(file: string, v: unknown): Promise<void> {
  await appendLines(file, [v]);
}

export async function appendLines(file: string, vs: unknown[]): Promise<void> {
  if (vs.length === 0) return;
  const fh = await fsp.open(file, 'a');
  try {
    await fh.write(vs.map((v) => JSON.stringify(v) + '\n').join(''));
    await fh.datasync();
  } finally {
    await fh.close();
  }
}
