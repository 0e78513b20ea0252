/**
 * Starting and stopping the servers of the test environment.
 *
 * - owned: for tests. The server runs under guard.ts, which stops it when the test process
 *   dies (its stdin pipe closes) and then removes its data directory; the handles are unref'd,
 *   so a forgotten stop() never keeps a test process alive.
 * - detached: for `testenv up`. The server runs in a session of its own, its pid is recorded,
 *   and it runs until `testenv down`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, openSync, readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestenvError } from './errors.ts';

// guard.ts beside this file when run from the sources, guard.js when built into dist/
const GUARD = path.join(path.dirname(fileURLToPath(import.meta.url)), `guard${path.extname(fileURLToPath(import.meta.url))}`);

export type Mode = 'owned' | 'detached';

/** A port that was free on 127.0.0.1 a moment ago (the kernel's choice). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address() as net.AddressInfo;
      s.close(() => resolve(a.port));
    });
  });
}

export interface ProcInfo {
  name: string;
  pid: number;
  log: string;
}

export interface Proc extends ProcInfo {
  /** the exit code once it has exited (null while running or unknown) */
  exitCode(): number | null;
  stop(): Promise<void>;
}

export interface LaunchOpts {
  name: string;
  cmd: string;
  args: string[];
  log: string;
  mode: Mode;
  env?: Record<string, string>;
  /** owned mode: removed when the test process dies */
  cleanup?: string;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // a zombie is not alive
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function waitExit(pid: number, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const tick = (): void => {
      if (!alive(pid)) resolve(true);
      else if (Date.now() - t0 > ms) resolve(false);
      else setTimeout(tick, 50);
    };
    tick();
  });
}

/** Stops a detached server by its process group: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopPid(pid: number, graceMs = 10_000): Promise<void> {
  const kill = (sig: NodeJS.Signals): void => {
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, sig);
      } catch {
        // gone
      }
    }
  };
  if (!alive(pid)) return;
  kill('SIGTERM');
  if (await waitExit(pid, graceMs)) return;
  kill('SIGKILL');
  await waitExit(pid, 5000);
}

export function launch(o: LaunchOpts): Proc {
  const fd = openSync(o.log, 'a');
  const env = { ...process.env, ...o.env };
  let child: ChildProcess;
  try {
    if (o.mode === 'owned') {
      child = spawn(process.execPath, [GUARD, ...(o.cleanup !== undefined ? ['--cleanup', o.cleanup] : []), '--', o.cmd, ...o.args], { env, stdio: ['pipe', fd, fd] });
      (child.stdin as unknown as net.Socket).unref();
    } else {
      child = spawn(o.cmd, o.args, { env, stdio: ['ignore', fd, fd], detached: true });
    }
  } finally {
    closeSync(fd);
  }
  let code: number | null = null;
  const exited = new Promise<void>((resolve) => {
    child.on('exit', (c, sig) => {
      code = c ?? (sig !== null ? 128 : 1);
      resolve();
    });
    child.on('error', (e) => {
      // shown by waitFor, which reads the log's last lines
      appendFileSync(o.log, `testenv: cannot start ${o.cmd}: ${e.message}\n`);
      code = 127;
      resolve();
    });
  });
  child.unref();
  return {
    name: o.name,
    pid: child.pid ?? -1,
    log: o.log,
    exitCode: () => code,
    stop: async () => {
      if (code !== null) return;
      if (o.mode === 'owned') {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(t);
      } else {
        await stopPid(child.pid!);
      }
    },
  };
}

export function lastLines(file: string, n = 3): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join(' | ').slice(-600);
  } catch {
    return '(no log)';
  }
}

/**
 * Polls `check` every 200 ms until it returns a value (not undefined), at most `ms`; fails at
 * once when one of `procs` exits.
 */
export async function waitFor<T>(what: string, ms: number, procs: Proc[], check: () => Promise<T | undefined>): Promise<T> {
  const t0 = Date.now();
  let lastErr = '';
  for (;;) {
    for (const p of procs) {
      const c = p.exitCode();
      if (c !== null) throw new TestenvError(`${p.name} exited with code ${c} while waiting for ${what}: ${lastLines(p.log)}`, `see ${p.log}`);
    }
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      lastErr = (e as Error).message;
    }
    if (Date.now() - t0 > ms) {
      throw new TestenvError(`timed out after ${ms / 1000} s waiting for ${what}${lastErr !== '' ? ` (last error: ${lastErr.slice(0, 300)})` : ''}`, `see the logs: ${procs.map((p) => p.log).join(', ')}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Runs a command to completion (openssl); throws with its stderr when it fails. */
export function exec(cmd: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    p.on('error', (e) => reject(new TestenvError(`cannot run ${cmd}: ${e.message}`, cmd === 'openssl' ? 'install the Debian package openssl' : `install ${cmd}`)));
    p.on('close', (c) => (c === 0 ? resolve(out) : reject(new TestenvError(`${cmd} ${args.slice(0, 2).join(' ')} exited ${c}: ${err.trim().slice(0, 400)}`, 'see the message'))));
  });
}
