/**
 * policy/hooks: runs a policy's hooks. An HTTP hook is a request (policy/http-hook.ts); an exec
 * hook is an argv (no shell), run in its own process
 * group with the run's context in its environment (MESHBACK_POLICY, MESHBACK_PHASE,
 * MESHBACK_REPO, MESHBACK_SNAPSHOT_ID once there is a snapshot, MESHBACK_ERROR for on-error,
 * MESHBACK_RESTORE_DIR for a drill's check); the repository password is removed from it. After its timeout the whole group gets SIGTERM,
 * then SIGKILL 5 s later; a hook still running when meshback exits (interrupted) gets SIGTERM. Its output lines are reported as `note` events (at most 200 per hook)
 * and its last 2 KB kept for the run's report.
 */
import { spawn } from 'node:child_process';
import { MeshbackError } from '../errors/index.ts';
import type { EventSink } from '../events/index.ts';
import { formatDuration } from '../util/units.ts';
import { runHttpHook } from './http-hook.ts';
import type { ExecHook, Hook } from './load.ts';

export type HookPhase = 'pre' | 'post' | 'on-error' | 'check';

export interface HookResult {
  phase: HookPhase;
  /** 1-based position among the phase's hooks */
  index: number;
  /** an exec hook's argv */
  exec?: string[];
  /** an HTTP hook's method and URL (without user info and query: they may hold secrets) */
  http?: string;
  outcome: 'ok' | 'failed' | 'timeout';
  /** exec hooks: how the program ended */
  exitCode: number | null;
  signal: string | null;
  /** HTTP hooks: the answer's status (absent when none came) */
  status?: number;
  durationSeconds: number;
  /** the last 2 KB of its stdout and stderr (an HTTP hook's: the first 2 KB of the answer's body) */
  output: string;
  error?: string;
}

const KILL_GRACE_MS = 5000;
const MAX_LINES = 200;
const TAIL = 2048;
/** variables a hook never sees */
const HIDDEN = ['MESHBACK_PASSWORD', 'MESHBACK_NEW_PASSWORD', 'MESHBACK_FROM_PASSWORD'];

/** The process groups of the hooks running now: ended (SIGTERM) if this process exits first, e.g. on SIGTERM. */
const running = new Set<number>();
let exitHook = false;
function track(pid: number): void {
  running.add(pid);
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const g of running) {
      try {
        process.kill(-g, 'SIGTERM');
      } catch {
        // gone already
      }
    }
  });
}

/** Runs one hook to its end; never throws (the result says how it ended). */
export function runHook(h: Hook, phase: HookPhase, index: number, env: Record<string, string>, events: EventSink): Promise<HookResult> {
  return 'http' in h ? runHttpHook(h, phase, index, env, events) : runExecHook(h, phase, index, env, events);
}

function runExecHook(h: ExecHook, phase: HookPhase, index: number, env: Record<string, string>, events: EventSink): Promise<HookResult> {
  const t0 = performance.now();
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env, MESHBACK_PHASE: phase };
  for (const k of HIDDEN) delete childEnv[k];
  const label = `${phase} hook ${index} (${h.exec[0]!})`;
  return new Promise((resolve) => {
    let tail = '';
    let lines = 0;
    let partial = '';
    let timedOut = false;
    let settled = false;
    const child = spawn(h.exec[0]!, h.exec.slice(1), { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    if (child.pid !== undefined) track(child.pid);
    const onData = (b: Buffer): void => {
      const s = b.toString('utf8');
      tail = (tail + s).slice(-TAIL);
      const parts = (partial + s).split('\n');
      partial = parts.pop()!;
      for (const l of parts) if (lines++ < MAX_LINES) events({ type: 'note', op: 'hook', subject: label, message: l });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const killGroup = (sig: NodeJS.Signals): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, sig);
      } catch {
        // the group is gone
      }
    };
    let graceTimer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup('SIGTERM');
      graceTimer = setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS);
    }, h.timeoutMs);
    const finish = (r: Omit<HookResult, 'phase' | 'index' | 'exec' | 'durationSeconds' | 'output'>): void => {
      if (settled) return;
      settled = true;
      if (child.pid !== undefined) running.delete(child.pid);
      clearTimeout(timer);
      if (graceTimer !== undefined) clearTimeout(graceTimer);
      if (partial !== '' && lines++ < MAX_LINES) events({ type: 'note', op: 'hook', subject: label, message: partial });
      resolve({ phase, index, exec: h.exec, ...r, durationSeconds: (performance.now() - t0) / 1000, output: tail });
    };
    child.on('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOENT' ? 'not found (argv[0] is looked up in PATH; give a path or install it)' : err.code === 'EACCES' ? 'not executable (chmod +x it)' : err.message;
      finish({ outcome: 'failed', exitCode: null, signal: null, error: `${label} could not be started: ${JSON.stringify(h.exec[0])} is ${why}` });
    });
    // 'close' waits for the hook's stdout and stderr to close, which a background process it
    // started may hold open for good: half a second after the hook itself exits, the run goes on
    child.on('exit', (code, signal) => {
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        ended(code, signal);
      }, 500).unref();
    });
    child.on('close', (code, signal) => ended(code, signal));
    const ended = (code: number | null, signal: NodeJS.Signals | null): void => {
      // children of the hook that still hold its process group are ended with it
      if (timedOut) killGroup('SIGKILL');
      if (timedOut) finish({ outcome: 'timeout', exitCode: code, signal, error: `${label} did not finish within its timeout of ${formatDuration(h.timeoutMs)} and was killed: make it faster or raise its timeout` });
      else if (code === 0) finish({ outcome: 'ok', exitCode: 0, signal: null });
      else {
        const last = tail.trimEnd().split('\n').at(-1) ?? '';
        finish({ outcome: 'failed', exitCode: code, signal, error: `${label} failed (${code !== null ? `exit code ${code}` : `killed by ${signal ?? '?'}`})${last !== '' ? `: ${last.slice(0, 200)}` : ''}` });
      }
    };
  });
}

/** The error of a failed hook, as the run's failure (exit code HOOK). */
export function hookError(r: HookResult): MeshbackError {
  return new MeshbackError('HOOK', r.error ?? `${r.phase} hook ${r.index} failed`, { data: { phase: r.phase, hook: r.index, ...(r.exec !== undefined ? { exec: r.exec } : {}), ...(r.http !== undefined ? { http: r.http, status: r.status ?? null } : {}), exit_code: r.exitCode, signal: r.signal, outcome: r.outcome } });
}
