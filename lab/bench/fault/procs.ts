/**
 * bench/fault/procs: the processes of this benchmark run, seen through /proc, for the faults that
 * kill them ("the machine dies": every process of the node at once).
 */
import { promises as fsp } from 'node:fs';

interface ProcInfo {
  pid: number;
  ppid: number;
  comm: string;
}

async function listProcs(): Promise<ProcInfo[]> {
  const out: ProcInfo[] = [];
  for (const name of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = await fsp.readFile(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses
    const close = stat.lastIndexOf(')');
    const fields = stat.slice(close + 2).split(' ');
    out.push({ pid: Number(name), ppid: Number(fields[1]), comm: stat.slice(stat.indexOf('(') + 1, close) });
  }
  return out;
}

/** The processes below `root` (its children, their children, ...), not `root` itself. */
export async function descendants(root: number = process.pid): Promise<ProcInfo[]> {
  const all = await listProcs();
  const children = new Map<number, ProcInfo[]>();
  for (const p of all) {
    const g = children.get(p.ppid);
    if (g !== undefined) g.push(p);
    else children.set(p.ppid, [p]);
  }
  const out: ProcInfo[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const c of children.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c.pid);
    }
  }
  return out;
}

/**
 * Processes that do not run on the run's node, though this process started them: a test control
 * plane, its object store, the agents of the other nodes (the velero tool's lab). An outage spares
 * them and everything below them. Returns the function that forgets them again.
 */
const spared = new Set<number>();
export function spareFromOutage(pids: number[]): () => void {
  for (const p of pids) spared.add(p);
  return () => {
    for (const p of pids) spared.delete(p);
  };
}

/** `pids` and every process below them. */
async function withDescendants(pids: Iterable<number>): Promise<Set<number>> {
  const out = new Set<number>();
  for (const p of pids) {
    out.add(p);
    for (const d of await descendants(p)) out.add(d.pid);
  }
  return out;
}

/**
 * SIGKILL every process below this one (but those spared: spareFromOutage), except the GNU time wrappers that measure them (so their
 * measurement of the killed command is still written). Repeats until none is left (a process may
 * fork while the first sweep runs), at most 10 sweeps. Returns the pids killed.
 */
export async function killAllBelow(keep: (p: ProcInfo) => boolean = (p) => p.comm === 'time'): Promise<number[]> {
  const killed = new Set<number>();
  const spare = await withDescendants(spared);
  for (let sweep = 0; sweep < 10; sweep++) {
    const victims = (await descendants()).filter((p) => !keep(p) && !killed.has(p.pid) && !spare.has(p.pid));
    if (victims.length === 0) break;
    for (const p of victims) {
      try {
        process.kill(p.pid, 'SIGKILL');
        killed.add(p.pid);
      } catch {
        // already gone
      }
    }
  }
  return [...killed];
}
