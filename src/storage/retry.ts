/**
 * retry: a Backend wrapper that makes a failed call again when its backend marked the failure
 * retryable (isRetryable in src/errors: a BackendError with `retryable` set, from a passing
 * condition such as EAGAIN, a reset connection, a timeout, and for object storage a 5xx reply,
 * SlowDown or a truncated body). NotFoundError, NoSpaceError, permission errors and refused
 * overwrites are never retried: the same call would fail the same way.
 *
 * Backoff is exponential with full jitter: before attempt k+1 it waits a delay drawn uniformly
 * from [0, min(maxDelayMs, baseDelayMs * 2^(k-1))). After `attempts` attempts the last error is
 * thrown unchanged (so its code, and the exit code, are those of the backend's error). Each
 * retry is reported through onRetry (the CLI turns it into a warning).
 *
 * Why retrying is safe, per call:
 * - put resends the same bytes (they are given whole, or as parts kept by the caller until put
 *   resolves). A put that reached the store but whose reply was lost is a no-op when retried:
 *   the name exists with the same bytes (the no-overwrite rule of the Backend contract).
 * - replace resends the same verified bytes; delete of a missing file succeeds; get, stat,
 *   exists and removeTemporary only read or clean up; create refuses only an existing config.
 * - list is started again after a failure, and the files already yielded are skipped, so each
 *   file is still yielded exactly once.
 * - openWriter is retried (opening the temporary file), but the writer it returns is not: its
 *   bytes were handed over piece by piece and are gone, so a failed write or commit fails that
 *   file (the content store then fails the backup with that error). A backend whose writer
 *   talks to a network (multipart uploads) retries each part itself, while it still holds it.
 * - deleteSync is synchronous (exit paths) and cannot wait: it is passed through, not retried.
 *
 * Cost on the happy path: one closure and one async frame per call; a listing costs one promise
 * and one set entry per file.
 */
import type { Backend, BlobWriter, FileInfo, FileType, Handle, ObjectLock, Wrapper } from './backend.ts';
import { handleString, wrapObjectLock } from './backend.ts';
import { setTimeout as delay } from 'node:timers/promises';
import { isRetryable } from '../errors/index.ts';

/** The calls the retry wrapper retries (openWriter: opening only; see above). */
export type RetriedOp = 'exists' | 'create' | 'put' | 'get' | 'stat' | 'list' | 'delete' | 'replace' | 'openWriter' | 'removeTemporary' | 'lockSupport' | 'retention' | 'extendRetention';
export const RETRIED_OPS: readonly RetriedOp[] = ['exists', 'create', 'put', 'get', 'stat', 'list', 'delete', 'replace', 'openWriter', 'removeTemporary', 'lockSupport', 'retention', 'extendRetention'];

export interface RetryReport {
  readonly op: RetriedOp;
  /** The file ('pack/ab12...'), the type for list and openWriter, or '' (exists, create, removeTemporary). */
  readonly what: string;
  /** The attempt that failed, counted from 1. */
  readonly attempt: number;
  /** The most attempts that will be made. */
  readonly attempts: number;
  /** The wait before the next attempt. */
  readonly delayMs: number;
  readonly error: unknown;
}

export interface RetryOptions {
  /** Attempts in all, the first included (default 6; 1 means never retry). */
  attempts?: number;
  /** The backoff cap of the first retry; it doubles per retry (default 250 ms). */
  baseDelayMs?: number;
  /** The largest backoff cap (default 20 s). */
  maxDelayMs?: number;
  /**
   * The least part of the cap a wait takes, 0 to 1 (default 0: full jitter, uniform in [0, cap));
   * 0.5 is "equal jitter", uniform in [cap/2, cap): the waits then add up to at least half the
   * caps' sum, so a given number of attempts rides out an outage of a known length.
   */
  minDelayFraction?: number;
  /** Waits, or stops waiting when `signal` aborts (tests pass one that records and returns at once). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Uniform in [0, 1) (tests pass a fixed one). */
  random?: () => number;
  /** Called before each wait. */
  onRetry?: (r: RetryReport) => void;
  /** Which errors to retry (default isRetryable). */
  retryable?: (err: unknown) => boolean;
}

export const RETRY_DEFAULTS = { attempts: 6, baseDelayMs: 250, maxDelayMs: 20_000 } as const;

/**
 * For a store reached over a network (properties.remote: S3): an outage of a minute or so (a
 * restarting server, a failing-over load balancer, a flapping link) is ridden out, not turned into
 * a failed backup. 12 attempts with equal jitter: the 11 waits' caps add up to 111.75 s, so the
 * waits last from 55.9 s to 111.75 s in all. (restic retries for up to 15 minutes.)
 */
export const REMOTE_RETRY_DEFAULTS = { attempts: 12, baseDelayMs: 250, maxDelayMs: 20_000, minDelayFraction: 0.5 } as const;

/**
 * Jittered exponential backoff: uniform in [f * cap, cap) with cap = min(maxMs, baseMs * 2^(attempt-1)),
 * attempt counted from 1; f = 0 is full jitter.
 */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number, minFraction = 0): number {
  const cap = Math.min(maxMs, baseMs * 2 ** (attempt - 1));
  const f = Math.min(1, Math.max(0, minFraction));
  return Math.min(cap, Math.floor(cap * (f + (1 - f) * random())));
}

const realSleep = (ms: number, signal: AbortSignal): Promise<void> => delay(ms, undefined, { signal });

function whatString(what: Handle | FileType | undefined): string {
  if (what === undefined) return '';
  return typeof what === 'string' ? what : handleString(what);
}

export class RetryBackend implements Backend, Wrapper {
  readonly inner: Backend;
  readonly openWriter?: (type: FileType) => Promise<BlobWriter>;
  readonly replace?: (h: Handle, data: Uint8Array) => Promise<void>;
  readonly removeTemporary?: (olderThanMs: number) => Promise<{ files: number; bytes: number }>;
  readonly deleteSync?: (h: Handle) => void;
  readonly objectLock?: ObjectLock;
  private readonly attempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly minDelayFraction: number;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  private readonly random: () => number;
  private readonly onRetry: ((r: RetryReport) => void) | undefined;
  private readonly retryable: (err: unknown) => boolean;
  /** The backoffs being waited out (close() ends them). */
  private readonly waits = new Set<AbortController>();
  private closed = false;

  constructor(inner: Backend, opts: RetryOptions = {}) {
    this.inner = inner;
    this.attempts = Math.max(1, Math.floor(opts.attempts ?? RETRY_DEFAULTS.attempts));
    this.baseDelayMs = Math.max(0, opts.baseDelayMs ?? RETRY_DEFAULTS.baseDelayMs);
    this.maxDelayMs = Math.max(0, opts.maxDelayMs ?? RETRY_DEFAULTS.maxDelayMs);
    this.minDelayFraction = opts.minDelayFraction ?? 0;
    this.sleep = opts.sleep ?? realSleep;
    this.random = opts.random ?? Math.random;
    this.onRetry = opts.onRetry;
    this.retryable = opts.retryable ?? isRetryable;
    const { openWriter, replace, removeTemporary, deleteSync } = inner;
    if (openWriter !== undefined) this.openWriter = (type) => this.call('openWriter', type, () => openWriter.call(inner, type));
    if (replace !== undefined) this.replace = (h, data) => this.call('replace', h, () => replace.call(inner, h, data));
    if (removeTemporary !== undefined) this.removeTemporary = (ms) => this.call('removeTemporary', undefined, () => removeTemporary.call(inner, ms));
    if (deleteSync !== undefined) this.deleteSync = (h) => deleteSync.call(inner, h);
    // extending a retention to the same date again is harmless, so each of these is retried
    if (inner.objectLock !== undefined) this.objectLock = wrapObjectLock(inner.objectLock, (op, h, fn) => this.call(op, h, fn));
  }

  get location(): string {
    return this.inner.location;
  }
  get properties(): Backend['properties'] {
    return this.inner.properties;
  }

  /** Throws `err` when it is not to be retried (or attempts are used up); else reports and waits. */
  private async backoff(op: RetriedOp, what: Handle | FileType | undefined, attempt: number, err: unknown): Promise<void> {
    if (this.closed || attempt >= this.attempts || !this.retryable(err)) throw err;
    const delayMs = backoffDelay(attempt, this.baseDelayMs, this.maxDelayMs, this.random, this.minDelayFraction);
    this.onRetry?.({ op, what: whatString(what), attempt, attempts: this.attempts, delayMs, error: err });
    const ac = new AbortController();
    this.waits.add(ac);
    try {
      await this.sleep(delayMs, ac.signal);
    } catch {
      /* the wait was ended by close() */
    } finally {
      this.waits.delete(ac);
    }
    if (this.closed) throw err;
  }

  private async call<T>(op: RetriedOp, what: Handle | FileType | undefined, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        await this.backoff(op, what, attempt, err);
      }
    }
  }

  exists(): Promise<boolean> {
    return this.call('exists', undefined, () => this.inner.exists());
  }
  create(): Promise<void> {
    return this.call('create', undefined, () => this.inner.create());
  }
  put(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    return this.call('put', h, () => this.inner.put(h, data));
  }
  get(h: Handle, range?: { offset: number; length: number }, into?: Buffer): Promise<Buffer> {
    return this.call('get', h, () => this.inner.get(h, range, into));
  }
  stat(h: Handle): Promise<FileInfo> {
    return this.call('stat', h, () => this.inner.stat(h));
  }
  delete(h: Handle): Promise<void> {
    return this.call('delete', h, () => this.inner.delete(h));
  }
  /**
   * Started again after a failure, skipping the files already yielded. Written as a plain async
   * iterator, not an async generator: one promise per file instead of a generator's several.
   */
  list(type: FileType): AsyncIterable<FileInfo> {
    return {
      [Symbol.asyncIterator]: (): AsyncIterator<FileInfo> => {
        const seen = new Set<string>();
        let it = this.inner.list(type)[Symbol.asyncIterator]();
        let attempt = 1;
        const onResult = (r: IteratorResult<FileInfo>): IteratorResult<FileInfo> | Promise<IteratorResult<FileInfo>> => {
          if (r.done !== true) {
            if (seen.has(r.value.name)) return next();
            seen.add(r.value.name);
          }
          return r;
        };
        const onError = async (err: unknown): Promise<IteratorResult<FileInfo>> => {
          await this.backoff('list', type, attempt++, err);
          it = this.inner.list(type)[Symbol.asyncIterator]();
          return next();
        };
        const next = (): Promise<IteratorResult<FileInfo>> => it.next().then(onResult, onError);
        return {
          next,
          return: async (value?: unknown) => (it.return !== undefined ? it.return(value) : { done: true, value: undefined }),
        };
      },
    };
  }
  /**
   * Closes the backend under it; a call waiting out its backoff stops waiting and fails with its
   * last error, and no call is retried any more (a command that failed ends at once, without
   * calls it no longer waits for retrying in the background).
   */
  close(): Promise<void> {
    this.closed = true;
    for (const ac of this.waits) ac.abort();
    return this.inner.close();
  }
}
