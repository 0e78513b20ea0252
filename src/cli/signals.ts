/**
 * cli/signals: what SIGINT and SIGTERM do. By default (every command) the first one ends the
 * process at once, the way an interrupted command ends: its lock files are removed
 * synchronously first, hooks still running get SIGTERM (policy/hooks), an unfinished snapshot
 * is simply never saved (packs it wrote are unreferenced, `prune` removes them), exit 130. A
 * command that stops on its own terms (`server`: no new runs, a grace period for running ones)
 * installs its handler; it can still end the default way through exitInterrupted().
 */
import { releaseHeldLocksSync } from '../repository/lock.ts';
import { releaseRunLocksSync } from '../policy/index.ts';
import { EXIT } from './exit.ts';

export type Signal = 'SIGINT' | 'SIGTERM';
let handler: ((sig: Signal) => void) | undefined;

/** Makes `h` handle SIGINT/SIGTERM instead of the default (undefined: the default again). */
export function setInterruptHandler(h: ((sig: Signal) => void) | undefined): void {
  handler = h;
}
export function interruptHandler(): ((sig: Signal) => void) | undefined {
  return handler;
}

/** Ends the process as interrupted: the locks go first (synchronously), then `message` on stderr, exit 130. */
export function exitInterrupted(message: string): void {
  const rest = releaseHeldLocksSync();
  releaseRunLocksSync();
  process.stderr.write(message);
  if (rest.length === 0) process.exit(EXIT.INTERRUPTED);
  // a backend that cannot delete synchronously: give it a few seconds
  const timeout = new Promise((r) => setTimeout(r, 3000).unref());
  void Promise.race([Promise.allSettled(rest.map((l) => l.release())), timeout]).finally(() => process.exit(EXIT.INTERRUPTED));
}
