/**
 * policy/runlock: one run of a policy at a time on a host, whoever starts it. The server never
 * overlaps its own runs (the scheduler), but `meshback run POLICY` from a timer, by hand, or while
 * the server runs the same policy would: each run holds a lock file STATE_DIR/running/POLICY.lock
 * (created exclusively, holding the pid, the host and the start time) and removes it when it ends.
 * A lock whose process is gone (a killed run) is stale and taken over, with a warning. This is a
 * host-local guard, not a repository lock: runs of one policy on different hosts (Kubernetes
 * CronJob pods) are kept apart by the CronJob's concurrencyPolicy; the repository's own locks
 * still keep every run safe.
 */
import { promises as fsp, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MeshbackError, errMessage, isErrno } from '../errors/index.ts';
import { processExists } from '../host/process.ts';

export interface RunLock {
  release(): Promise<void>;
}

/** the lock files this process holds, for an interrupted exit (releaseRunLocksSync) */
const held = new Set<string>();

/** Removes the run locks this process holds, synchronously (a process that exits on a signal). */
export function releaseRunLocksSync(): void {
  for (const f of held) rmSync(f, { force: true });
  held.clear();
}

interface Holder {
  pid: number;
  host: string;
  started: string;
  by?: string;
}

/**
 * Takes the run lock of `policy` in `stateDir`; a live holder on this host is refused with
 * LOCKED (exit 11) naming it. `warn` hears of a stale lock taken over. `job` tells who holds it
 * ("meshback run", "meshback server").
 */
export async function takeRunLock(stateDir: string, policy: string, job: string, warn: (m: string) => void): Promise<RunLock> {
  const dir = path.join(stateDir, 'running');
  const file = path.join(dir, `${policy}.lock`);
  await fsp.mkdir(dir, { recursive: true });
  const me: Holder = { pid: process.pid, host: os.hostname(), started: new Date().toISOString(), by: job };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await fsp.writeFile(file, JSON.stringify(me) + '\n', { flag: 'wx', mode: 0o600 });
      held.add(file);
      return {
        release: async () => {
          held.delete(file);
          try {
            const now = JSON.parse(await fsp.readFile(file, 'utf8')) as Holder;
            if (now.pid === me.pid && now.started === me.started) await fsp.rm(file, { force: true });
          } catch {
            // gone already
          }
        },
      };
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw new MeshbackError('USAGE', `the run lock ${file} cannot be written (${errMessage(err)}): make the state directory writable (--state-dir)`, { cause: err });
    }
    let holder: Holder | undefined;
    try {
      holder = JSON.parse(await fsp.readFile(file, 'utf8')) as Holder;
    } catch {
      holder = undefined; // being written, or damaged: a damaged one is stale
    }
    if (holder !== undefined && holder.host === os.hostname() && holder.pid !== process.pid && processExists(holder.pid)) {
      throw new MeshbackError('LOCKED', `policy ${policy} is already running (${holder.by ?? 'meshback'}, pid ${holder.pid}, since ${holder.started}): wait for that run to end; one run of a policy at a time`);
    }
    if (holder !== undefined && holder.pid === process.pid) {
      throw new MeshbackError('LOCKED', `policy ${policy} is already running in this process (since ${holder.started}): one run of a policy at a time`);
    }
    warn(`a stale run lock of policy ${policy} (${holder !== undefined ? `pid ${holder.pid} on ${holder.host}, since ${holder.started}, is gone` : 'damaged'}) was removed`);
    await fsp.rm(file, { force: true });
  }
  throw new MeshbackError('LOCKED', `the run lock ${file} keeps changing: another run of policy ${policy} is starting; try again`);
}
