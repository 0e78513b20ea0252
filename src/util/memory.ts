/**
 * util/memory: how much memory the data path may hold, sized to the process's memory limit.
 *
 * A data mover in a pod runs under the container's memory limit; past it the kernel kills the
 * process, whatever it was doing. The front end learns the limit once (`--max-memory SIZE`, else
 * the cgroup's: src/host/memory.ts) and sets it here; every operation reads the plan when it
 * starts and sizes its windows from it: the archiver's window of chunks not yet stored, the large
 * files read at once, the blobs compressed and sealed at once, the pack ranges the restorer, the
 * copier and the checker hold, the batch the copier gathers.
 *
 * What the plan does not size is the runtime: Node.js and meshback's code take about 60 MiB, the
 * JS heap (the index, trees, bookkeeping) grows with the repository, and freed Buffers stay
 * resident until V8 collects them. RESERVE is kept for all that; the windows share the rest.
 */

export interface MemoryPlan {
  /** the limit the plan is sized for (undefined: none known, the defaults) */
  limitBytes: number | undefined;
  /** where the limit came from, for messages: "--max-memory", a cgroup file, or "none" */
  source: string;
  /** archiver: bytes of chunks copied out of the read buffers and not yet stored */
  windowBytes: number;
  /** archiver: large files read at once (each through a buffer of twice the largest chunk) */
  lanes: number;
  /** content store: large blobs compressed and sealed at once on the thread pool */
  compressors: number;
  /** restorer, copier: the longest pack range read at once */
  rangeBytes: number;
  /** restorer, copier, checker, prune: packs read at once */
  packsAtOnce: number;
  /** copier: bytes of blobs gathered before they are stored */
  batchBytes: number;
  /** the V8 flags that trade memory for fewer collections on pack-streaming commands are worth it */
  roomyHeap: boolean;
}

const MiB = 1024 * 1024;
/** what the runtime, the heap and uncollected garbage take besides the windows */
export const RESERVE = 160 * MiB;
/** the smallest limit meshback is sized for: below it a large backup may be killed */
export const MIN_LIMIT = 192 * MiB;

const clamp = (x: number, lo: number, hi: number): number => Math.max(lo, Math.min(hi, x));

/** The plan for a memory limit (undefined: no limit known: the defaults, tuned for speed). */
export function planMemory(limitBytes: number | undefined, source = limitBytes === undefined ? 'none' : 'given'): MemoryPlan {
  if (limitBytes === undefined || limitBytes >= 1024 * MiB) {
    return { limitBytes, source, windowBytes: 32 * MiB, lanes: 2, compressors: 4, rangeBytes: 16 * MiB, packsAtOnce: 2, batchBytes: 64 * MiB, roomyHeap: true };
  }
  // the windows share what is left over the reserve (at least 32 MiB, however small the limit)
  const room = Math.max(32 * MiB, limitBytes - RESERVE);
  const round = (x: number) => Math.floor(x / MiB) * MiB;
  return {
    limitBytes,
    source,
    windowBytes: round(clamp(room / 8, 4 * MiB, 32 * MiB)),
    lanes: room >= 256 * MiB ? 2 : 1,
    compressors: clamp(Math.floor(room / (48 * MiB)), 1, 4),
    rangeBytes: round(clamp(room / 16, 4 * MiB, 16 * MiB)),
    packsAtOnce: room >= 128 * MiB ? 2 : 1,
    batchBytes: round(clamp(room / 6, 8 * MiB, 64 * MiB)),
    roomyHeap: false,
  };
}

let current: MemoryPlan = planMemory(undefined);

/** Sets the plan every operation started from now on reads (the front end, once). */
export function setMemoryLimit(limitBytes: number | undefined, source: string): MemoryPlan {
  current = planMemory(limitBytes, source);
  return current;
}

/** The plan in force. */
export function memoryPlan(): MemoryPlan {
  return current;
}
