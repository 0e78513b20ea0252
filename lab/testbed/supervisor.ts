/**
 * testbed/supervisor: the testbed's node agent, a small long-running process (one per testbed
 * directory) that starts the testbed's components as its own children, so that a component that
 * dies is reaped at once (its pid is free again) whatever the machine's init does. A zombie would
 * otherwise keep the pid of a killed PostgreSQL postmaster alive, and a restored data directory's
 * postmaster.pid naming it would stop PostgreSQL from starting.
 *
 * It listens on a Unix socket in a directory only its owner can enter, and answers:
 *   GET  /ping      {pid, children: [{component, pid}]}
 *   POST /spawn     {component, file, args, cwd, env, log, uid?, gid?} -> {pid, startTime}
 *                   (the child leads its own process group; stdout and stderr go to `log`)
 *   POST /shutdown  stops every child (SIGTERM, SIGKILL after 5 s), answers, exits
 * Every child's exit is appended to `<dir>/run/exits.jsonl`. It stops everything and exits by
 * itself after --ttl-ms (default 12 hours), so a forgotten testbed does not run for ever.
 *
 * Run as: node supervisor.ts --dir DIR --socket PATH [--ttl-ms N]
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, openSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { procStat, sleep } from './procs.ts';
import { readBody } from './http.ts';

const { values } = parseArgs({ options: { dir: { type: 'string' }, socket: { type: 'string' }, 'ttl-ms': { type: 'string' } }, strict: true });
const dir = values.dir;
const socket = values.socket;
if (dir === undefined || socket === undefined) {
  process.stderr.write('usage: supervisor.ts --dir DIR --socket PATH [--ttl-ms N]\n');
  process.exit(2);
}
const ttlMs = Number(values['ttl-ms'] ?? 12 * 3600 * 1000);
const exitsFile = path.join(dir, 'run', 'exits.jsonl');

interface Child {
  component: string;
  child: ChildProcess;
  pid: number;
}
const children = new Map<number, Child>();

const log = (line: string): void => {
  process.stderr.write(`${new Date().toISOString()} supervisor: ${line}\n`);
};

interface SpawnRequest {
  component: string;
  file: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
  log: string;
  uid?: number;
  gid?: number;
}

function spawnChild(req: SpawnRequest): Promise<{ pid: number; startTime: number }> {
  return new Promise((resolve, reject) => {
    const fd = openSync(req.log, 'a');
    let child: ChildProcess;
    try {
      child = spawn(req.file, req.args, {
        cwd: req.cwd,
        env: req.env,
        detached: true,
        stdio: ['ignore', fd, fd],
        ...(req.uid !== undefined ? { uid: req.uid } : {}),
        ...(req.gid !== undefined ? { gid: req.gid } : {}),
      });
    } catch (err) {
      closeSync(fd);
      reject(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    closeSync(fd);
    child.once('error', (err) => reject(err));
    child.once('spawn', () => {
      const pid = child.pid!;
      const st = procStat(pid);
      children.set(pid, { component: req.component, child, pid });
      log(`started ${req.component} (pid ${pid}): ${req.file} ${req.args.join(' ')}`);
      resolve({ pid, startTime: st?.startTime ?? -1 });
    });
    child.once('exit', (code, signal) => {
      const pid = child.pid;
      if (pid !== undefined) children.delete(pid);
      const rec = { t: Date.now(), component: req.component, pid, code, signal };
      log(`${req.component} (pid ${pid}) exited: ${signal !== null ? `signal ${signal}` : `code ${code}`}`);
      try {
        appendFileSync(exitsFile, JSON.stringify(rec) + '\n');
      } catch {
        /* the testbed directory is gone (down --purge): nothing to record */
      }
    });
  });
}

function signalAll(sig: NodeJS.Signals): void {
  for (const c of children.values()) {
    try {
      process.kill(-c.pid, sig);
    } catch {
      /* already gone */
    }
  }
}

let stopping = false;
async function shutdown(why: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log(`shutting down: ${why}`);
  signalAll('SIGTERM');
  for (let i = 0; i < 50 && children.size > 0; i++) await sleep(100);
  signalAll('SIGKILL');
  for (let i = 0; i < 30 && children.size > 0; i++) await sleep(100);
  server.close();
  rmSync(socket!, { force: true });
  process.exit(0);
}


const server = http.createServer((req, res) => {
  const reply = (status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  void (async () => {
    try {
      if (req.method === 'GET' && req.url === '/ping') {
        reply(200, { pid: process.pid, children: [...children.values()].map((c) => ({ component: c.component, pid: c.pid })) });
      } else if (req.method === 'POST' && req.url === '/spawn') {
        if (stopping) return reply(503, { error: 'the supervisor is shutting down' });
        const body = JSON.parse(await readBody(req, 1 << 20)) as SpawnRequest;
        reply(200, await spawnChild(body));
      } else if (req.method === 'POST' && req.url === '/shutdown') {
        reply(200, { ok: true });
        setImmediate(() => void shutdown('asked to'));
      } else reply(404, { error: 'no such endpoint' });
    } catch (err) {
      reply(500, { error: err instanceof Error ? err.message : String(err) });
    }
  })();
});

server.on('error', (err) => {
  log(`cannot listen on ${socket}: ${err.message}`);
  process.exit(1);
});
rmSync(socket, { force: true });
server.listen(socket, () => log(`listening on ${socket} (pid ${process.pid}, stops by itself after ${Math.round(ttlMs / 60000)} min)`));
setTimeout(() => void shutdown(`time to live of ${Math.round(ttlMs / 60000)} min is over`), ttlMs);
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
