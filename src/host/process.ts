/**
 * host/process: running other programs (mkfs, mount, btrfs, apt-get, the peer tools of the
 * benchmarks, the testbed's servers) with their output kept, bounded, for the error message of a
 * failed command; and finding programs on PATH. The one place for these in the engine and the lab.
 */
import { spawn } from 'node:child_process';
import { constants as fsc, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { errnoCode } from '../errors/index.ts';

/** What the kernel reported for a command and its waited-for children (GNU time's figures). */
export interface Measurement {
  wallSeconds: number;
  /** user + system CPU seconds of the command and its waited-for children */
  cpuSeconds: number;
  userSeconds: number;
  systemSeconds: number;
  /** peak RSS in bytes (ru_maxrss: the largest single process of the tree) */
  maxRssBytes: number;
  exitCode: number;
}

export interface RunOptions {
  cwd?: string;
  /** the complete environment of the command (not merged with process.env) */
  env?: Record<string, string>;
  /** keep at most this many trailing bytes of stdout and of stderr (default 256 KiB) */
  captureBytes?: number;
}

export interface Captured {
  stdout: string;
  stderr: string;
}

export interface MeasuredRun extends Captured {
  measurement: Measurement;
}

/** A command that exited non-zero (or could not run): the command, its exit code, its stderr tail. */
export class CommandError extends Error {
  readonly argv: string[];
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stderrTail: string;
  readonly stdoutTail: string;
  readonly measurement: Measurement | undefined;
  constructor(argv: string[], exitCode: number | null, signal: string | null, out: Captured, measurement?: Measurement) {
    const tail = lastLines(out.stderr.trim() !== '' ? out.stderr : out.stdout, 6, 800);
    super(`${quoteCommand(argv)} ${signal !== null ? `was killed by ${signal}` : `exited with status ${exitCode}`}${tail !== '' ? `: ${tail}` : ''}`);
    this.name = 'CommandError';
    this.argv = argv;
    this.exitCode = exitCode;
    this.signal = signal;
    this.stderrTail = lastLines(out.stderr, 40, 8000);
    this.stdoutTail = lastLines(out.stdout, 40, 8000);
    this.measurement = measurement;
  }
}

/** The last `lines` lines of `s`, at most `chars` characters, joined with ' | ' when short. */
export function lastLines(s: string, lines: number, chars: number): string {
  const kept = s.trimEnd().split('\n').slice(-lines).join('\n');
  return kept.length > chars ? '…' + kept.slice(-chars) : kept;
}

/** A shell-like rendering of a command line, for messages. */
export function quoteCommand(argv: string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** Keeps the last `limit` bytes written to it. */
class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  private readonly limit: number;
  constructor(limit: number) {
    this.limit = limit;
  }
  push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
    while (this.size - this.chunks[0]!.length >= this.limit) this.size -= this.chunks.shift()!.length;
  }
  text(): string {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - this.limit)).toString('utf8');
  }
}

export interface Exit extends Captured {
  code: number | null;
  signal: string | null;
}

export function spawnCaptured(file: string, args: string[], opts: RunOptions): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const p = spawn(file, args, { cwd: opts.cwd, env: opts.env ?? (process.env as Record<string, string>), stdio: ['ignore', 'pipe', 'pipe'] });
    const out = new Tail(opts.captureBytes ?? 256 * 1024);
    const err = new Tail(opts.captureBytes ?? 256 * 1024);
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d: Buffer) => err.push(d));
    p.on('error', reject);
    p.on('close', (code, signal) => resolve({ code, signal, stdout: out.text(), stderr: err.text() }));
  });
}

/** Run a command without measuring it; a non-zero exit throws CommandError. */
export async function run(argv: string[], opts: RunOptions = {}): Promise<Captured> {
  let r: Exit;
  try {
    r = await spawnCaptured(argv[0]!, argv.slice(1), opts);
  } catch (err) {
    throw new CommandError(argv, null, null, { stdout: '', stderr: err instanceof Error ? err.message : String(err) });
  }
  if (r.code !== 0) throw new CommandError(argv, r.code, r.signal, r);
  return { stdout: r.stdout, stderr: r.stderr };
}

/** Is `file` an executable file? */
export async function isExecutable(file: string): Promise<boolean> {
  try {
    await fsp.access(file, fsc.X_OK);
    return (await fsp.stat(file)).isFile();
  } catch {
    return false;
  }
}

/** The absolute path of `name` on PATH, or undefined. */
export async function which(name: string, env: Record<string, string | undefined> = process.env): Promise<string | undefined> {
  if (name.includes('/')) return (await isExecutable(name)) ? path.resolve(name) : undefined;
  for (const dir of (env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    if (dir === '') continue;
    const f = path.join(dir, name);
    if (await isExecutable(f)) return f;
  }
  return undefined;
}


/** Whether a process with this PID exists on this host (EPERM: it exists but belongs to another user). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) !== 'ESRCH';
  }
}
