/**
 * A process that holds a repository lock through the library API, for the lock tests (prune,
 * the only exclusive command, does not exist yet).
 *
 *   node test/helpers/lock-holder.ts REPO shared|exclusive COMMAND
 *
 * Password from MESHBACK_PASSWORD. Prints one JSON line {"pid","name"} once the lock is held,
 * then holds it (refreshing it like any command) until its stdin closes or it gets SIGTERM;
 * then it releases the lock and exits 0. A LOCKED failure prints {"error","code"} and exits 11.
 */
import { LocalBackend } from '../../src/storage/local.ts';
import { MeshbackError } from '../../src/errors/index.ts';
import { Repository } from '../../src/repository/index.ts';
import { acquireLock } from '../../src/repository/lock.ts';

const [repoDir, mode, command] = process.argv.slice(2);
if (repoDir === undefined || (mode !== 'shared' && mode !== 'exclusive') || command === undefined) {
  process.stderr.write('usage: lock-holder.ts REPO shared|exclusive COMMAND\n');
  process.exit(2);
}
const repo = await Repository.open(new LocalBackend(repoDir), process.env['MESHBACK_PASSWORD'] ?? '', { loadIndex: false });
let lock;
try {
  lock = await acquireLock(repo, { exclusive: mode === 'exclusive', command, events: (e) => process.stderr.write(`${JSON.stringify(e)}\n`) });
} catch (err) {
  if (err instanceof MeshbackError) {
    process.stdout.write(`${JSON.stringify({ error: err.message, code: err.code })}\n`);
    process.exit(11);
  }
  throw err;
}
const held = lock;
process.stdout.write(`${JSON.stringify({ pid: process.pid, name: held.name })}\n`);
let ending = false;
const end = async (): Promise<void> => {
  if (ending) return;
  ending = true;
  await held.release();
  process.exit(0);
};
process.on('SIGTERM', () => void end());
process.stdin.on('end', () => void end());
process.stdin.resume();
