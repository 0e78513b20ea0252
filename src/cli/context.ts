/** Shared command context: global options, repository location and password. */
import { readFileSync } from 'node:fs';
import type { Backend, FileType } from '../storage/backend.ts';
import type { CacheOptions } from '../storage/cache.ts';
import { REQUEST_KINDS } from '../storage/requests.ts';
import type { RequestCounts, RequestKind } from '../storage/requests.ts';
import { storageReport } from '../storage/stack.ts';
import type { StorageReport } from '../storage/stack.ts';
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
  /** the metadata cache of remote repositories (--cache-dir, --cache-size), or false (--no-cache); absent: none */
  cache?: CacheOptions | false;
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
export function backendFor(location: string, events?: EventSink, cache?: CacheOptions | false): Backend {
  const faults = process.env['MESHBACK_FAULTS'];
  const attempts = storageAttempts();
  const b = openBackend(location, {
    ...(events !== undefined ? { events } : {}),
    ...(faults !== undefined && faults !== '' ? { faults: parseFaultSpec(faults) } : {}),
    ...(cache !== undefined ? { cache } : {}),
    ...(attempts !== undefined ? { retry: { attempts } } : {}),
  });
  opened.push(b);
  return b;
}

const opened: Backend[] = [];

/**
 * MESHBACK_STORAGE_ATTEMPTS: attempts per storage call, the first included (default 6 for a local
 * directory, 12 for S3: see src/storage/retry.ts); 1 never retries.
 */
function storageAttempts(): number | undefined {
  const v = process.env['MESHBACK_STORAGE_ATTEMPTS'];
  if (v === undefined || v === '') return undefined;
  if (!/^\d{1,3}$/.test(v) || Number(v) < 1) throw new UsageError(`MESHBACK_STORAGE_ATTEMPTS=${JSON.stringify(v)}: give the attempts per storage call as a whole number from 1 to 999 (1: never retry)`);
  return Number(v);
}

/** What the backends this process opened did (requests, cache), for the end of the command (main.ts). */
export function storageReports(): StorageReport[] {
  return opened.map(storageReport);
}

/** The requests of several reports added up; undefined when none counted. */
export function sumRequests(reports: readonly StorageReport[]): RequestCounts | undefined {
  const rs = reports.flatMap((r) => (r.requests !== undefined ? [r.requests] : []));
  if (rs.length === 0) return undefined;
  const counts = Object.fromEntries(REQUEST_KINDS.map((k) => [k, rs.reduce((n, r) => n + r.counts[k], 0)])) as Record<RequestKind, number>;
  const getsByType: Partial<Record<FileType, number>> = {};
  for (const r of rs) for (const [t, n] of Object.entries(r.getsByType) as [FileType, number][]) getsByType[t] = (getsByType[t] ?? 0) + n;
  return { counts, getsByType, bytesDown: rs.reduce((n, r) => n + r.bytesDown, 0) };
}

/** The `requests` object of a --json summary: {PUT, GET, HEAD, LIST, DELETE, COPY, OTHER, total, get_by_type, bytes_down}. */
export function requestsJson(r: RequestCounts): Record<string, unknown> {
  let total = 0;
  for (const k of REQUEST_KINDS) total += r.counts[k];
  return { ...r.counts, total, get_by_type: r.getsByType, bytes_down: r.bytesDown };
}

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
  /**
   * false: read the repository itself, never the metadata cache (check and repair verify what is
   * stored, not a local copy of it, as restic's check does).
   */
  cache?: boolean;
}

/**
 * Opens the repository through the library's openRepository (password asked once the repository
 * is found; lock before index). The lock and the backend are released by main.ts when the
 * command ends (releaseHeldLocks, closeBackends), on success, error or signal.
 */
export async function openRepo(ctx: Context, opts: OpenOptions & { prompt?: string }): Promise<Repository> {
  const { repo } = await openRepository(backendFor(repoLocation(ctx.g), ctx.out.sink, opts.cache === false ? false : ctx.g.cache), () => getPassword(ctx.g, opts.prompt !== undefined ? { prompt: opts.prompt } : {}), {
    lock: opts.lock,
    command: opts.command,
    retryLockMs: ctx.g.retryLockMs ?? 0,
    events: ctx.out.sink,
    ...(opts.loadIndex !== undefined ? { loadIndex: opts.loadIndex } : {}),
  });
  return repo;
}

