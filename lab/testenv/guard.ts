/**
 * The watchdog between a test process and a server it starts (owned mode of proc.ts):
 *
 *   node guard.ts [--cleanup DIR] -- COMMAND ARG...
 *
 * runs COMMAND in a process group of its own through `setpriv --pdeathsig KILL` (so COMMAND is
 * killed by the kernel if this guard dies, even by SIGKILL), and stops it (SIGTERM to its group,
 * SIGKILL 8 s later) when
 *  - its standard input closes: the test process that holds the other end died (any way, even
 *    SIGKILL), or
 *  - its parent process changes (the same, seen by polling every 0.5 s), or
 *  - it gets SIGTERM, SIGINT or SIGHUP (a normal stop).
 * When the test process died, DIR (the server's data) is removed after COMMAND has exited.
 * The guard exits with COMMAND's exit code (128 + signal number when a signal ended it).
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { constants } from 'node:os';

const args = process.argv.slice(2);
let cleanup: string | undefined;
if (args[0] === '--cleanup') {
  cleanup = args[1];
  args.splice(0, 2);
}
if (args[0] === '--') args.shift();
if (args.length === 0) {
  process.stderr.write('testenv guard: no command given: usage: guard.ts [--cleanup DIR] -- COMMAND ARG...\n');
  process.exit(2);
}

const parent = process.ppid;
const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', ...args], { stdio: ['ignore', 'inherit', 'inherit'], detached: true });
let orphaned = false;
let stopping = false;

function signalGroup(sig: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, sig);
  } catch {
    // already gone
  }
}

function stop(becauseOrphaned: boolean): void {
  orphaned ||= becauseOrphaned;
  if (stopping) return;
  stopping = true;
  signalGroup('SIGTERM');
  setTimeout(() => signalGroup('SIGKILL'), 8000).unref();
}

child.on('error', (e) => {
  process.stderr.write(`testenv guard: cannot start ${args[0]}: ${e.message}\n`);
  process.exit(127);
});
child.on('exit', (code, signal) => {
  // whatever the command left in its group goes too
  signalGroup('SIGKILL');
  if (orphaned && cleanup !== undefined) rmSync(cleanup, { recursive: true, force: true });
  process.exit(code ?? 128 + (signal !== null ? (constants.signals[signal] ?? 0) : 0));
});

process.stdin.on('end', () => stop(true));
process.stdin.on('close', () => stop(true));
process.stdin.on('error', () => stop(true));
process.stdin.resume();
setInterval(() => {
  if (process.ppid !== parent) stop(true);
}, 500);
process.on('SIGTERM', () => stop(false));
process.on('SIGINT', () => stop(false));
process.on('SIGHUP', () => stop(true));
