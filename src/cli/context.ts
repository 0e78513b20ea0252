/** Shared command context: global options, repository location and password. */
import { readFileSync } from 'node:fs';
import type { Backend } from '../storage/backend.ts';
import { openBackend } from '../storage/registry.ts';
import { parseFaultSpec } from '../storage/faulty.ts';
import type { EventSink } from '../events/index.ts';
import { MeshbackError, UsageError, errMessage } from '../errors/index.ts';
import { Repository } from '../repository/index.ts';
import { openRepository } from '../repository/open.ts';
import type { Output } from './output.ts';

export interface GlobalOptions {
  repo?: string;
  passwordFile?: string;
  json: boolean;
  quiet: boolean;
  /** --retry-lock: how long to wait for a locked repository */
  retryLockMs?: number;
}

export interface Context {
  g: GlobalOptions;
  out: Output;
}

export function repoLocation(g: GlobalOptions): string {
  const r = g.repo ?? process.env['MESHBACK_REPO'];
  if (r === undefined || r === '') throw new UsageError('no repository given: pass --repo DIR or set MESHBACK_REPO');
  return r;
}

/**
 * The backend of a repository location, found by scheme in the registry (src/storage/registry.ts)
 * and wrapped in the storage stack (retry with backoff, connection limit); retries are reported
 * to `events` as warnings. MESHBACK_FAULTS (tests and the benchmark) adds the fault-injection
 * wrapper with that plan (src/storage/faulty.ts, parseFaultSpec).
 */
export function backendFor(location: string, events?: EventSink): Backend {
  const faults = process.env['MESHBACK_FAULTS'];
  const b = openBackend(location, { ...(events !== undefined ? { events } : {}), ...(faults !== undefined && faults !== '' ? { faults: parseFaultSpec(faults) } : {}) });
  opened.push(b);
  return b;
}

const opened: Backend[] = [];

/** Closes every backend this process opened (main.ts, when a command has ended): calls still retrying stop. */
export async function closeBackends(): Promise<void> {
  for (const b of opened.splice(0)) await b.close().catch(() => undefined);
}

function readPasswordFile(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${file}: ${errMessage(err)}`);
  }
}

/** Reads a line from the terminal without echo. */
export async function prompt(question: string): Promise<string> {
  const stdin = process.stdin;
  if (stdin.isTTY !== true) throw new MeshbackError('NO_PASSWORD', 'no password given and no terminal to ask on: set MESHBACK_PASSWORD or pass --password-file FILE');
  process.stderr.write(question);
  stdin.setRawMode(true);
  stdin.resume();
  stdin.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let s = '';
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') {
          done();
          resolve(s);
          return;
        } else if (ch === '\u0003') {
          done();
          reject(new MeshbackError('USAGE', 'interrupted at the password prompt'));
          return;
        } else if (ch === '\u007f' || ch === '\b') s = s.slice(0, -1);
        else s += ch;
      }
    };
    const done = (): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    stdin.on('data', onData);
  });
}

export async function getPassword(g: GlobalOptions, opts: { confirm?: boolean; prompt?: string } = {}): Promise<string> {
  if (g.passwordFile !== undefined) return readPasswordFile(g.passwordFile, '--password-file');
  const env = process.env['MESHBACK_PASSWORD'];
  if (env !== undefined) return env;
  const envFile = process.env['MESHBACK_PASSWORD_FILE'];
  if (envFile !== undefined && envFile !== '') return readPasswordFile(envFile, 'MESHBACK_PASSWORD_FILE');
  const p = await prompt(opts.prompt ?? 'repository password: ');
  if (opts.confirm === true) {
    const again = await prompt('enter the password again: ');
    if (again !== p) throw new UsageError('the two passwords differ: run the command again');
  }
  return p;
}

/** The password of copy's source repository: --from-password-file, MESHBACK_FROM_PASSWORD, MESHBACK_FROM_PASSWORD_FILE, else a prompt. */
export async function getFromPassword(file: string | undefined): Promise<string> {
  if (file !== undefined) return readPasswordFile(file, '--from-password-file');
  const env = process.env['MESHBACK_FROM_PASSWORD'];
  if (env !== undefined) return env;
  const envFile = process.env['MESHBACK_FROM_PASSWORD_FILE'];
  if (envFile !== undefined && envFile !== '') return readPasswordFile(envFile, 'MESHBACK_FROM_PASSWORD_FILE');
  return prompt('source repository password: ');
}

export async function getNewPassword(file: string | undefined): Promise<string> {
  if (file !== undefined) return readPasswordFile(file, '--new-password-file');
  const env = process.env['MESHBACK_NEW_PASSWORD'];
  if (env !== undefined) return env;
  const p = await prompt('new password: ');
  const again = await prompt('enter the new password again: ');
  if (again !== p) throw new UsageError('the two passwords differ: run the command again');
  return p;
}

export interface OpenOptions {
  /**
   * The lock the command holds until it ends (main.ts releases it, on success, error or
   * signal): 'shared' for backup, restore and check; 'exclusive' for commands that delete
   * data; 'none' for commands that only read manifests and trees or manage keys and locks.
   */
  lock: 'shared' | 'exclusive' | 'none';
  /** the command name recorded in the lock */
  command: string;
  loadIndex?: boolean;
}

/**
 * Opens the repository through the library's openRepository (password asked once the repository
 * is found; lock before index). The lock and the backend are released by main.ts when the
 * command ends (releaseHeldLocks, closeBackends), on success, error or signal.
 */
export async function openRepo(ctx: Context, opts: OpenOptions & { prompt?: string }): Promise<Repository> {
  const { repo } = await openRepository(backendFor(repoLocation(ctx.g), ctx.out.sink), () => getPassword(ctx.g, opts.prompt !== undefined ? { prompt: opts.prompt } : {}), {
    lock: opts.lock,
    command: opts.command,
    retryLockMs: ctx.g.retryLockMs ?? 0,
    events: ctx.out.sink,
    ...(opts.loadIndex !== undefined ? { loadIndex: opts.loadIndex } : {}),
  });
  return repo;
}

