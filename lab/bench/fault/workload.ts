/**
 * bench/fault/workload: the service that writes the volume while the scenarios back it up and
 * break it, and the accounting of what it wrote.
 *
 * The *writer* (writer.ts) is a separate Node process, so that it can be killed with SIGKILL like
 * a crashing container. Inside the volume it writes only under `workload/`:
 *   workload/logs/app-<k>.log      append-only logs (records of 128..2048 bytes)
 *   workload/state/state-<k>.dat   small state files (4 KiB), rewritten in place (one pwrite at
 *                                  offset 0), each version self-describing
 * at a set rate for a set time (it also stops when its parent goes away). Each write is followed by
 * fdatasync; only then is it *acknowledged*: one line appended to the *journal*, a file OUTSIDE the
 * volume, so that it survives the volume. A write that was made durable but not journalled when the
 * writer died is simply not acknowledged.
 *
 * Journal format (text, one record per line, tab-separated):
 *   # meshback-bench-journal v1 seed=<seed> start=<ms since epoch>
 *   <id> <kind log|state> <file, relative to the volume root> <offset> <length> <version> <sha256 hex> <ack ms since epoch>
 *
 * After a recovery, assessWrites() checks every acknowledged write against the restored tree: a log
 * record is present when the restored file holds its bytes at its offset (by SHA-256); a state write
 * is present when the restored state file is a valid version (its bytes equal what the writer wrote
 * for that version) at least as new as the write. A state file that holds no valid version (torn,
 * damaged) loses all its writes and is reported as torn.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng, deriveSeed } from '../../gen/rng.ts';
import { ROOT } from '../../../src/host/self.ts';
import type { Rpo } from './types.ts';

/** The directory of the volume the workload writes in (the rest of the volume it never touches). */
export const WORKLOAD_DIR = 'workload';
export const STATE_BYTES = 4096;
export const JOURNAL_MAGIC = '# meshback-bench-journal v1';

export interface WriterOptions {
  /** the volume's root */
  volume: string;
  /** the journal file (outside the volume) */
  journal: string;
  seed: number;
  /** writes per second (default 100) */
  rate?: number;
  /** the writer stops by itself after this many seconds (default 300) */
  durationSeconds?: number;
  /** number of append-only logs (default 4) and of state files (default 8) */
  logs?: number;
  states?: number;
}

export const logFile = (k: number): string => `${WORKLOAD_DIR}/logs/app-${k}.log`;
export const stateFile = (k: number): string => `${WORKLOAD_DIR}/state/state-${k}.dat`;

/** The bytes of version `version` of state file `file` (deterministic for the seed). */
export function stateContent(seed: number, file: string, version: number): Buffer {
  const head = `state ${file} v${version}\n`;
  const rng = new Rng(deriveSeed(seed, 'state', file, version));
  const body = rng.hex(STATE_BYTES - head.length - 1);
  return Buffer.from(`${head}${body}\n`);
}

/** The version a state file's bytes claim to be (its first line), or undefined. */
export function stateVersion(buf: Buffer): number | undefined {
  const nl = buf.indexOf(10);
  if (nl < 0) return undefined;
  const m = /^state \S+ v(\d+)$/.exec(buf.subarray(0, nl).toString('latin1'));
  return m !== null ? Number(m[1]) : undefined;
}

/** One log record of `length` bytes (ends with a newline). */
export function logRecord(rng: Rng, id: number, file: string, length: number): Buffer {
  const head = `rec ${id} ${file} ${Date.now()} `;
  const n = Math.max(0, length - head.length - 1);
  return Buffer.from(`${head}${rng.hex(n)}\n`);
}

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

export interface JournalEntry {
  id: number;
  kind: 'log' | 'state';
  file: string;
  offset: number;
  length: number;
  version: number;
  sha256: string;
  ackMs: number;
}

export interface Journal {
  seed: number;
  startMs: number;
  entries: JournalEntry[];
}

export function formatEntry(e: JournalEntry): string {
  return `${e.id}\t${e.kind}\t${e.file}\t${e.offset}\t${e.length}\t${e.version}\t${e.sha256}\t${e.ackMs}\n`;
}

/** Reads a journal; a last line cut short by a kill is ignored (it was never acknowledged). */
export async function readJournal(file: string): Promise<Journal> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`the workload journal ${file} does not exist: the writer never started`, { cause: err });
    throw err;
  }
  const lines = text.split('\n');
  const head = /^# meshback-bench-journal v1 seed=(\d+) start=(\d+)$/.exec(lines[0] ?? '');
  if (head === null) throw new Error(`${file} is not a workload journal (first line ${JSON.stringify((lines[0] ?? '').slice(0, 80))})`);
  const entries: JournalEntry[] = [];
  // every complete line ends with '\n': the last element is '' or a torn line
  for (const line of lines.slice(1, -1)) {
    const f = line.split('\t');
    if (f.length !== 8) continue;
    const [id, kind, fileRel, offset, length, version, hash, ack] = f as [string, string, string, string, string, string, string, string];
    if (kind !== 'log' && kind !== 'state') continue;
    entries.push({ id: Number(id), kind, file: fileRel, offset: Number(offset), length: Number(length), version: Number(version), sha256: hash, ackMs: Number(ack) });
  }
  return { seed: Number(head[1]), startMs: Number(head[2]), entries };
}

export interface WriteAssessment {
  /** acknowledged writes in the journal */
  acknowledged: number;
  acknowledgedBytes: number;
  present: number;
  lost: number;
  bytesLost: number;
  /** writes lost although they were acknowledged before `before` (see assessWrites) */
  lostBefore: number;
  /** state files whose restored bytes are no valid version (torn or damaged) */
  tornStates: string[];
  /** time of the last acknowledged write (ms since epoch), if any */
  lastAckMs?: number;
}

async function readOrUndefined(file: string): Promise<Buffer | undefined> {
  try {
    return await fsp.readFile(file);
  } catch {
    return undefined;
  }
}

/**
 * Which acknowledged writes of `journal` does the tree at `root` hold? `before` (ms since epoch):
 * count separately the lost writes acknowledged before that moment (the last good backup's start:
 * a backup must hold every write made durable before it began).
 */
export async function assessWrites(journal: Journal, root: string, opts: { before?: number } = {}): Promise<WriteAssessment> {
  const byFile = new Map<string, JournalEntry[]>();
  for (const e of journal.entries) {
    const g = byFile.get(e.file);
    if (g !== undefined) g.push(e);
    else byFile.set(e.file, [e]);
  }
  const a: WriteAssessment = { acknowledged: 0, acknowledgedBytes: 0, present: 0, lost: 0, bytesLost: 0, lostBefore: 0, tornStates: [] };
  for (const [file, entries] of byFile) {
    const buf = await readOrUndefined(path.join(root, file));
    let validVersion = -1;
    if (entries[0]!.kind === 'state' && buf !== undefined) {
      const v = buf.length === 0 ? 0 : stateVersion(buf); // empty: created, never written (version 0)
      if (v !== undefined && (v === 0 ? buf.length === 0 : buf.equals(stateContent(journal.seed, file, v)))) validVersion = v;
      else a.tornStates.push(file);
    }
    for (const e of entries) {
      a.acknowledged++;
      a.acknowledgedBytes += e.length;
      const present =
        buf !== undefined &&
        (e.kind === 'state' ? validVersion >= e.version : buf.length >= e.offset + e.length && sha256(buf.subarray(e.offset, e.offset + e.length)) === e.sha256);
      if (present) a.present++;
      else {
        a.lost++;
        a.bytesLost += e.length;
        if (opts.before !== undefined && e.ackMs < opts.before) a.lostBefore++;
      }
      if (a.lastAckMs === undefined || e.ackMs > a.lastAckMs) a.lastAckMs = e.ackMs;
    }
  }
  return a;
}

/** The RPO of a recovery: the window from the last good backup's start to the fault, and what of it is lost. */
export function rpoOf(a: WriteAssessment, lastGoodBackupStartMs: number, faultMs: number): Rpo {
  return { seconds: Math.max(0, (faultMs - lastGoodBackupStartMs) / 1000), bytesLost: a.bytesLost, writesLost: a.lost };
}

// ---------------------------------------------------------------------------------------------
// the writer process

const WRITER_SCRIPT = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './writer.ts' : './writer.js', import.meta.url));
const NODE = path.join(ROOT, 'bin/node');

export interface Writer {
  pid: number;
  /** SIGKILL the writer (if still running); resolves with the moment of the kill (ms since epoch) */
  kill(): Promise<number>;
  /** resolves when the writer has exited */
  exited: Promise<{ code: number | null; signal: string | null }>;
  /** the writer's stderr so far (for error messages) */
  stderr(): string;
}

/** Writers started and not yet exited. */
const live = new Set<ChildProcess>();

/** SIGKILL every writer still running (the runner's cleanup after a repeat). */
export function killWriters(): number {
  let n = 0;
  for (const p of live) {
    if (p.exitCode === null && p.signalCode === null && p.kill('SIGKILL')) n++;
  }
  return n;
}

/** Starts the writer and waits (at most 30 s) until it has opened its files. */
export async function startWriter(o: WriterOptions): Promise<Writer> {
  await fsp.mkdir(path.dirname(o.journal), { recursive: true });
  const args = [
    WRITER_SCRIPT,
    '--volume', o.volume,
    '--journal', o.journal,
    '--seed', String(o.seed),
    '--rate', String(o.rate ?? 100),
    '--duration', String(o.durationSeconds ?? 300),
    '--logs', String(o.logs ?? 4),
    '--states', String(o.states ?? 8),
  ];
  const p: ChildProcess = spawn(NODE, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(p);
  let err = '';
  let out = '';
  p.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    p.on('close', (code, signal) => {
      live.delete(p);
      resolve({ code, signal });
    }),
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`the workload writer did not start within 30 s: ${err.trim().split('\n').pop() ?? ''}`));
    }, 30_000);
    p.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('ready\n')) {
        clearTimeout(timer);
        resolve();
      }
    });
    p.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`the workload writer exited before it was ready (${signal ?? `status ${code}`}): ${err.trim().split('\n').pop() ?? ''}`));
    });
  });
  let killedAt: number | undefined;
  return {
    pid: p.pid!,
    async kill() {
      if (killedAt === undefined) {
        killedAt = Date.now();
        if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      }
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000).unref())]);
      return killedAt;
    },
    exited,
    stderr: () => err,
  };
}
