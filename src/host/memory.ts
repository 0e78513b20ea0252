/**
 * host/memory: the memory limit this process runs under, from its cgroup.
 *
 * In a pod, the container's memory limit is its cgroup's: cgroup v2's memory.max (most clusters
 * today) or v1's memory.limit_in_bytes (older nodes, and this project's test machine). The limit
 * that applies is the smallest on the path from the process's cgroup up to the root of the
 * mounted hierarchy; in a container the hierarchy is usually mounted at the container's own
 * cgroup (a cgroup namespace, or a bind mount), so the path from /proc/self/cgroup may not exist
 * under the mount: then the mount's root is the container's cgroup and is read. "max" (v2) and
 * v1's page-rounded 2^63 mean no limit.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

export interface CgroupLimit {
  bytes: number;
  /** the file the limit was read from */
  file: string;
}

/** v1's "no limit" is LONG_MAX rounded down to a page; anything this large is none */
const UNLIMITED = 2 ** 60;

function read(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The smallest limit in `leaf` of `mount` and the directories above it, up to `mount`. */
function smallestOnPath(mount: string, cgroupPath: string, leaf: string): CgroupLimit | undefined {
  let best: CgroupLimit | undefined;
  const rel = cgroupPath.replace(/^\/+/, '');
  const parts = rel === '' ? [] : rel.split('/');
  for (let i = parts.length; i >= 0; i--) {
    const file = path.join(mount, ...parts.slice(0, i), leaf);
    const text = read(file);
    if (text === undefined || text === 'max') continue;
    const n = Number(text);
    if (!Number.isFinite(n) || n <= 0 || n >= UNLIMITED) continue;
    if (best === undefined || n < best.bytes) best = { bytes: n, file };
  }
  return best;
}

/**
 * The memory limit of this process's cgroup (v2 memory.max, else v1 memory.limit_in_bytes), or
 * undefined when there is none. `root` and `procCgroup` are for tests.
 */
export function cgroupMemoryLimit(root = '/sys/fs/cgroup', procCgroup = '/proc/self/cgroup'): CgroupLimit | undefined {
  const text = read(procCgroup);
  if (text === undefined) return undefined;
  const found: CgroupLimit[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (m === null) continue;
    const [, hier, controllers, p] = m as unknown as [string, string, string, string];
    if (hier === '0' && controllers === '') {
      // v2: the unified hierarchy, mounted at ROOT (pure v2) or ROOT/unified (hybrid)
      for (const mount of [root, path.join(root, 'unified')]) {
        const l = smallestOnPath(mount, p, 'memory.max');
        if (l !== undefined) found.push(l);
      }
    } else if (controllers.split(',').includes('memory')) {
      const l = smallestOnPath(path.join(root, 'memory'), p, 'memory.limit_in_bytes');
      if (l !== undefined) found.push(l);
    }
  }
  return found.sort((a, b) => a.bytes - b.bytes)[0];
}
