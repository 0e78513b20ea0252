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
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { aptInstall } from '../../src/host/packages.ts';
import { CommandError, isExecutable, run, spawnCaptured } from '../../src/host/process.ts';
import type { Captured, Exit, Measurement, RunOptions } from '../../src/host/process.ts';

/** Flush dirty pages to disk (`sync`), so that one step's writeback does not bill the next. */
export async function flush(): Promise<void> {
  await run(['sync']);
}

export const GNU_TIME = '/usr/bin/time';
export interface MeasuredRun extends Captured {
  measurement: Measurement;
}

const FORMAT = 'meshback-bench %e %U %S %M %x';

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
