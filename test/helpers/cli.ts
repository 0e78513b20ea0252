/** Helpers for end-to-end tests: run the real bin/meshback in a subprocess. */
import { spawn } from 'node:child_process';
import { mkdtempSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'bin/meshback');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** wall time, ms */
  ms: number;
  /** it ran past `timeoutMs` and was killed with SIGKILL */
  timedOut: boolean;
}

export interface RunOptions {
  /** kill it with SIGKILL after this long (default: never): a hung program fails its test instead of hanging it */
  timeoutMs?: number;
}

/** Runs a program to completion with the given environment added to this process's; undefined values unset. */
export function runProcess(cmd: string, argv: string[], extraEnv: Record<string, string | undefined> = {}, o: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...process.env, ...extraEnv })) if (v !== undefined) env[k] = v;
    const t0 = performance.now();
    const p = spawn(cmd, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = o.timeoutMs === undefined ? undefined : setTimeout(() => (timedOut = p.kill('SIGKILL')), o.timeoutMs);
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr, ms: performance.now() - t0, timedOut });
    });
  });
}

export function mb(args: string[], opts: { env?: Record<string, string | undefined>; prefix?: string[] } & RunOptions = {}): Promise<RunResult> {
  const cmd = opts.prefix !== undefined ? opts.prefix[0]! : BIN;
  const argv = opts.prefix !== undefined ? [...opts.prefix.slice(1), BIN, ...args] : args;
  // the metadata cache of S3 repositories goes to one directory under the system's temp dir, not the user's ~/.cache
  return runProcess(cmd, argv, { MESHBACK_TEST_SCRYPT_N: '1024', MESHBACK_CACHE_DIR: path.join(os.tmpdir(), 'meshback-test-cache'), XDG_STATE_HOME: path.join(os.tmpdir(), `meshback-test-state-${process.pid}`), ...opts.env }, opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {});
}

export function tmpdir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `meshback-${prefix}-`));
}

export async function rmrf(...dirs: string[]): Promise<void> {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
}

/** The last JSON line of a --json run with message_type summary. */
export function summary(stdout: string): Record<string, unknown> {
  const lines = stdout.split('\n').filter((l) => l.startsWith('{'));
  for (let i = lines.length - 1; i >= 0; i--) {
    const j = JSON.parse(lines[i]!) as Record<string, unknown>;
    if (j['message_type'] === 'summary') return j;
  }
  throw new Error(`no summary line in: ${stdout.slice(0, 2000)}`);
}

export async function listPacks(repo: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await fsp.readdir(path.join(repo, 'data'))) {
    if (d.startsWith('.')) continue; // a pack being written (.tmp-*)
    for (const f of await fsp.readdir(path.join(repo, 'data', d))) if (!f.startsWith('.')) out.push(path.join(repo, 'data', d, f));
  }
  return out.sort();
}

/** Waits up to `ms` for process `pid` to be gone; true when it is. */
export async function waitGone(pid: number, ms = 5000): Promise<boolean> {
  const t0 = performance.now();
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    if (performance.now() - t0 > ms) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}
