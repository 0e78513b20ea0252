/**
 * bench/memlimit: run a command inside a memory cgroup with a hard limit, as a pod's container
 * runs under its memory limit, and tell whether the kernel OOM-killed it.
 *
 * cgroup v1 (this machine: memory.limit_in_bytes, memory.max_usage_in_bytes, memory.oom_control's
 * oom_kill) and v2 (memory.max, memory.peak, memory.events' oom_kill) are both handled. The
 * command is measured with GNU time (bench/measure.ts) as every other benchmark step is: its own
 * peak RSS is ru_maxrss; the cgroup's peak also counts the page cache the command caused, which
 * the kernel reclaims under the limit before it kills anything.
 */
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CommandError } from '../../src/host/process.ts';
import type { Measurement, RunOptions } from '../../src/host/process.ts';
import { measure } from './measure.ts';

export interface LimitedRun {
  measurement?: Measurement;
  /** the cgroup's peak usage, page cache included */
  cgroupPeakBytes?: number;
  /** OOM kills inside the cgroup during the run */
  oomKills: number;
  ok: boolean;
  error?: string;
}

const V1 = '/sys/fs/cgroup/memory';
const V2 = '/sys/fs/cgroup';

/** Which memory controller this machine gives: v1's hierarchy, or v2's unified one. */
export function cgroupVersion(): 1 | 2 | undefined {
  if (existsSync(path.join(V1, 'memory.limit_in_bytes'))) return 1;
  if (existsSync(path.join(V2, 'cgroup.controllers')) && existsSync(path.join(V2, 'cgroup.subtree_control'))) return 2;
  return undefined;
}

let seq = 0;

/**
 * Runs `argv` in a fresh memory cgroup limited to `limitBytes` (undefined: no limit, still in a
 * cgroup so that its peak is read the same way); the cgroup is removed afterwards. Needs root.
 */
export async function runLimited(argv: string[], limitBytes: number | undefined, opts: RunOptions = {}): Promise<LimitedRun> {
  const version = cgroupVersion();
  if (version === undefined) throw new Error('no memory cgroup controller is mounted (neither v1 /sys/fs/cgroup/memory nor v2 /sys/fs/cgroup): memory limits cannot be applied here');
  const dir = path.join(version === 1 ? V1 : V2, `meshback-memlimit-${process.pid}-${++seq}`);
  await fsp.mkdir(dir);
  try {
    if (version === 1) {
      if (limitBytes !== undefined) await fsp.writeFile(path.join(dir, 'memory.limit_in_bytes'), String(limitBytes));
    } else {
      await fsp.writeFile(path.join(dir, 'memory.max'), limitBytes !== undefined ? String(limitBytes) : 'max');
      await fsp.writeFile(path.join(dir, 'memory.swap.max'), '0').catch(() => undefined);
    }
    const oomKills = async (): Promise<number> => {
      const text = await fsp.readFile(path.join(dir, version === 1 ? 'memory.oom_control' : 'memory.events'), 'utf8').catch(() => '');
      return Number(/^oom_kill (\d+)$/m.exec(text)?.[1] ?? 0);
    };
    const peak = async (): Promise<number | undefined> => {
      const text = await fsp.readFile(path.join(dir, version === 1 ? 'memory.max_usage_in_bytes' : 'memory.peak'), 'utf8').catch(() => undefined);
      return text !== undefined ? Number(text.trim()) : undefined;
    };
    // the shell moves itself into the cgroup, then becomes the command (its children follow)
    const wrapped = ['sh', '-c', `echo $$ > ${dir}/cgroup.procs && exec "$@"`, 'sh', ...argv];
    try {
      const r = await measure(wrapped, opts);
      const p = await peak();
      return { measurement: r.measurement, ...(p !== undefined ? { cgroupPeakBytes: p } : {}), oomKills: await oomKills(), ok: true };
    } catch (err) {
      const p = await peak();
      const kills = await oomKills();
      const m = err instanceof CommandError ? err.measurement : undefined;
      const msg = err instanceof Error ? err.message.split('\n')[0]! : String(err);
      return { ...(m !== undefined ? { measurement: m } : {}), ...(p !== undefined ? { cgroupPeakBytes: p } : {}), oomKills: kills, ok: false, error: kills > 0 ? `OOM-killed inside the ${limitBytes} byte limit: ${msg}` : msg };
    }
  } finally {
    // the cgroup can go once its processes have: wait briefly for the kernel to reap them
    for (let i = 0; i < 50; i++) {
      try {
        await fsp.rmdir(dir);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
}
