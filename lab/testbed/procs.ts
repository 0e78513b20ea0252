/**
 * testbed/procs: processes and the loopback network, for the testbed.
 *
 * A *process record* names a process by pid and by its start time (field 22 of /proc/PID/stat,
 * in clock ticks since boot), so that a pid reused by an unrelated process is never mistaken for
 * ours and never signalled. Every component runs in its own process group (its leader is the
 * recorded pid), so a signal reaches all of its processes (nginx's workers, PostgreSQL's
 * backends) at once. Every wait here is bounded.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, promises as fsp, readFileSync, readdirSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';

export interface ProcStat {
  pid: number;
  /** R, S, D, Z, T, ... */
  state: string;
  ppid: number;
  pgrp: number;
  /** clock ticks after boot */
  startTime: number;
}

/** /proc/PID/stat, or undefined when there is no such process. */
export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // the command name (field 2) may hold spaces and parentheses: the rest starts after the last ')'
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { pid, state: rest[0]!, ppid: Number(rest[1]), pgrp: Number(rest[2]), startTime: Number(rest[19]) };
}

export interface ProcRef {
  pid: number;
  startTime: number;
}

/** Is the recorded process still running (same pid, same start time, not a zombie)? */
export function isAlive(p: ProcRef): boolean {
  const s = procStat(p.pid);
  return s !== undefined && s.startTime === p.startTime && s.state !== 'Z' && s.state !== 'X';
}

/** Live (non-zombie) processes of process group `pgid`. */
export function groupMembers(pgid: number): ProcStat[] {
  const out: ProcStat[] = [];
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    const s = procStat(Number(n));
    if (s !== undefined && s.pgrp === pgid && s.state !== 'Z' && s.state !== 'X') out.push(s);
  }
  return out;
}

/**
 * Is anything of the component's process group still running? The group is ours while its
 * leader is the recorded process, or, once the leader is gone, while any member is left (a pid
 * that is still some group's id is not handed out again).
 */
export function groupAlive(p: ProcRef): boolean {
  const s = procStat(p.pid);
  if (s !== undefined && s.startTime !== p.startTime) return false; // the pid belongs to someone else now
  if (s !== undefined && s.state !== 'Z' && s.state !== 'X') return true;
  return groupMembers(p.pid).length > 0;
}

/** Signals the whole process group of a recorded leader; false when there was nothing to signal. */
export function signalGroup(p: ProcRef, signal: NodeJS.Signals): boolean {
  if (!groupAlive(p)) return false;
  try {
    process.kill(-p.pid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * Every live process of a component: its group, and the descendants of the leader and of the
 * group's members (PostgreSQL's postmaster puts each child in a process group of its own).
 * Collected before a SIGKILL, while the parent links still say who belongs to whom.
 */
export function processTree(p: ProcRef): number[] {
  const all: ProcStat[] = [];
  try {
    for (const n of readdirSync('/proc')) {
      if (!/^\d+$/.test(n)) continue;
      const s = procStat(Number(n));
      if (s !== undefined && s.state !== 'Z' && s.state !== 'X') all.push(s);
    }
  } catch {
    return [];
  }
  const leader = all.find((s) => s.pid === p.pid);
  const roots = new Set<number>(all.filter((s) => s.pgrp === p.pid && (s.pid !== p.pid || s.startTime === p.startTime)).map((s) => s.pid));
  if (leader !== undefined && leader.startTime !== p.startTime) roots.delete(p.pid);
  const tree = new Set(roots);
  for (let grew = true; grew; ) {
    grew = false;
    for (const s of all) {
      if (!tree.has(s.pid) && tree.has(s.ppid)) {
        tree.add(s.pid);
        grew = true;
      }
    }
  }
  return [...tree];
}

/** SIGKILL to every pid of `pids` that still runs; returns how many were signalled. */
export function killPids(pids: readonly number[]): number {
  let n = 0;
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
      n++;
    } catch {
      /* already gone */
    }
  }
  return n;
}

/** Waits until none of `pids` runs (zombies count as gone); true when they are gone in time. */
export async function waitPidsGone(pids: readonly number[], timeoutMs: number): Promise<boolean> {
  const alive = (pid: number): boolean => {
    const s = procStat(pid);
    return s !== undefined && s.state !== 'Z' && s.state !== 'X';
  };
  return (await waitFor(() => (pids.some(alive) ? undefined : true), timeoutMs, 20)) === true;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `cond` every `intervalMs` until it returns a value other than undefined, or `timeoutMs`
 * has passed (then undefined).
 */
export async function waitFor<T>(cond: () => Promise<T | undefined> | T | undefined, timeoutMs: number, intervalMs = 100): Promise<T | undefined> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v !== undefined) return v;
    if (Date.now() >= end) return undefined;
    await sleep(Math.min(intervalMs, Math.max(1, end - Date.now())));
  }
}

/** Waits until nothing of the group is left; true when it is gone within the time. */
export async function waitGroupGone(p: ProcRef, timeoutMs: number): Promise<boolean> {
  return (await waitFor(() => (groupAlive(p) ? undefined : true), timeoutMs, 50)) === true;
}

/**
 * Stops a component: `signal` to its group, then, if anything is left after `graceMs` (at once
 * for SIGKILL), SIGKILL to every process of it (processTree); resolves when they are gone (or
 * after a bounded wait for the SIGKILL to land).
 */
export async function stopGroup(p: ProcRef, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (!groupAlive(p)) return;
  if (signal !== 'SIGKILL') {
    signalGroup(p, signal);
    if (await waitGroupGone(p, graceMs)) return;
  }
  const tree = processTree(p);
  killPids(tree);
  await waitPidsGone(tree, 5000);
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice), not in `avoid`. */
export async function freePort(avoid: ReadonlySet<number> = new Set()): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const a = s.address();
        const p = typeof a === 'object' && a !== null ? a.port : 0;
        s.close(() => resolve(p));
      });
    });
    if (port > 0 && !avoid.has(port)) return port;
  }
  throw new Error('no free TCP port on 127.0.0.1');
}

/** Can something be bound to 127.0.0.1:port right now? */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

export interface HttpReply {
  status: number;
  body: string;
}

/** One HTTP request to 127.0.0.1:port (no keep-alive); rejects on a network error or timeout. */
export function httpRequest(port: number, method: string, urlPath: string, body?: unknown, timeoutMs = 5000, agent?: http.Agent): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: urlPath,
        agent: agent ?? false,
        headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(payload.length) },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (d: Buffer) => {
          size += d.length;
          if (size <= 1 << 20) chunks.push(d);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from 127.0.0.1:${port} within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** The last `n` lines of a log file ('' when it cannot be read), joined with ' | '. */
export async function logTail(file: string, n = 3, maxChars = 600): Promise<string> {
  try {
    const fh = await fsp.open(file, 'r');
    try {
      const size = (await fh.stat()).size;
      const len = Math.min(size, 16 * 1024);
      const buf = Buffer.alloc(len);
      await fh.read(buf, 0, len, size - len);
      const lines = buf.toString('utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '');
      const s = lines.slice(-n).join(' | ');
      return s.length > maxChars ? '…' + s.slice(-maxChars) : s;
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}

/**
 * Starts `file args` as its own process group (detached), its output appended to `logFile`, as
 * `user` when given (a root testbed runs PostgreSQL and Redis as their own users), with a small
 * fixed environment; resolves once it has started (an exec failure rejects). For a server started
 * on a restored volume: stop it with stopGroup.
 */
export async function spawnLogged(file: string, args: string[], o: { logFile: string; cwd?: string; user?: { uid: number; gid: number } }): Promise<ChildProcess> {
  const fd = openSync(o.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(file, args, {
      ...(o.cwd !== undefined ? { cwd: o.cwd } : {}),
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LC_ALL: 'C', TZ: 'UTC' },
      ...(o.user !== undefined ? { uid: o.user.uid, gid: o.user.gid } : {}),
    });
  } finally {
    closeSync(fd);
  }
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  return child;
}
