/**
 * bench/measure: run one command and measure it with GNU time.
 *
 * A *measurement* is what the kernel reports for the command and every descendant it waited
 * for (wait4 rusage, as printed by `/usr/bin/time`): wall seconds, user+system CPU seconds, and
 * peak RSS. Peak RSS is ru_maxrss: the largest resident set of any single process of the tree
 * (not the sum of a pipeline's processes); threads share their process's RSS.
 *
 * Wall time is GNU time's `%e` (10 ms resolution), so wall, CPU and RSS come from one source
 * for every tool alike. Stdout and stderr are kept, bounded to their last bytes, for the
 * error message of a failed command and for tools that report a summary on stdout.
 */
import { spawn } from 'node:child_process';
import { constants as fsc, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

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

interface Exit extends Captured {
  code: number | null;
  signal: string | null;
}

function spawnCaptured(file: string, args: string[], opts: RunOptions): Promise<Exit> {
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

/** Flush dirty pages to disk (`sync`), so that one step's writeback does not bill the next. */
export async function flush(): Promise<void> {
  await run(['sync']);
}

export const GNU_TIME = '/usr/bin/time';
const FORMAT = 'meshback-bench %e %U %S %M %x';

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

export const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

let aptUpdated = false;

/**
 * Install Debian packages with apt-get when running as root (`apt-get update -qq` once per
 * process, then `apt-get install -y -qq`). Returns an error message, or undefined on success.
 */
export async function aptInstall(packages: string[]): Promise<string | undefined> {
  if (packages.length === 0) return undefined;
  if (!isRoot()) return `not root: install the Debian package(s) ${packages.join(' ')}`;
  const env = { ...(process.env as Record<string, string>), DEBIAN_FRONTEND: 'noninteractive' };
  try {
    if (!aptUpdated) {
      await run(['apt-get', 'update', '-qq'], { env });
      aptUpdated = true;
    }
    await run(['apt-get', 'install', '-y', '-qq', ...packages], { env });
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

/** Make sure GNU time is at /usr/bin/time (Debian package `time`); throws if it cannot be had. */
export async function ensureGnuTime(): Promise<void> {
  if (await isExecutable(GNU_TIME)) return;
  const err = await aptInstall(['time']);
  if (err !== undefined || !(await isExecutable(GNU_TIME))) throw new Error(`GNU time (${GNU_TIME}) is missing: ${err ?? 'apt-get install time did not provide it'}`);
}

function parseTimeOutput(text: string): { m: Measurement; signal: string | null } {
  const lines = text.split('\n');
  const line = lines.find((l) => l.startsWith('meshback-bench '));
  if (line === undefined) throw new Error(`GNU time wrote no measurement: ${JSON.stringify(text.slice(0, 500))}`);
  const [e, u, s, kib, x] = line.split(' ').slice(1).map(Number) as [number, number, number, number, number];
  const sig = /Command terminated by signal (\d+)/.exec(text);
  return {
    m: { wallSeconds: e, cpuSeconds: Math.round((u + s) * 100) / 100, userSeconds: u, systemSeconds: s, maxRssBytes: kib * 1024, exitCode: x },
    signal: sig !== null ? `signal ${sig[1]}` : null,
  };
}

/**
 * Run `argv` under GNU time and measure it. A non-zero exit (or a signal) throws a CommandError
 * that carries the command, the exit code, the stderr tail and the measurement.
 */
export async function measure(argv: string[], opts: RunOptions = {}): Promise<MeasuredRun> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'meshback-bench-time-'));
  const outFile = path.join(dir, 'time');
  try {
    let r: Exit;
    try {
      r = await spawnCaptured(GNU_TIME, ['-o', outFile, '-f', FORMAT, '--', ...argv], opts);
    } catch (err) {
      throw new CommandError(argv, null, null, { stdout: '', stderr: `${GNU_TIME}: ${err instanceof Error ? err.message : String(err)}` });
    }
    let text = '';
    try {
      text = await fsp.readFile(outFile, 'utf8');
    } catch {
      throw new CommandError(argv, r.code, r.signal, r);
    }
    const { m, signal } = parseTimeOutput(text);
    if (signal !== null || r.signal !== null) throw new CommandError(argv, null, signal ?? r.signal, r, m);
    if (m.exitCode !== 0 || r.code !== 0) throw new CommandError(argv, m.exitCode, null, r, m);
    return { measurement: m, stdout: r.stdout, stderr: r.stderr };
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/**
 * Bytes used by everything under `dir` as `du` counts them: `allocated` (du -s -B1: blocks
 * actually allocated on disk, the figure the benchmark reports) or `apparent` (du -sb).
 * Hard links inside `dir` are counted once.
 */
export async function duBytes(dir: string, kind: 'allocated' | 'apparent' = 'allocated'): Promise<number> {
  const { stdout } = await run(['du', '-s', kind === 'allocated' ? '-B1' : '-b', dir]);
  const n = Number(stdout.split(/\s/)[0]);
  if (!Number.isFinite(n)) throw new Error(`du printed no size for ${dir}: ${stdout.slice(0, 200)}`);
  return n;
}
