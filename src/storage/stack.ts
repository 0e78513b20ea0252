/**
 * The storage stack: one fixed order of wrappers around a concrete backend. From the store up:
 *
 *   concrete backend (local directory, S3)
 *     count    (a backend that does not count its own requests) counts the calls that reach it
 *     faults   (tests and the benchmark only) injects the store's own failures
 *     limit    at most N calls in the store at once (default its properties.connections)
 *     retry    makes again a call that failed for a passing reason, with backoff and jitter
 *     cache    (remote backends) local copies of index files, snapshot files and tree packs
 *   = what the repository sees
 *
 * Why this order:
 * - count innermost: it counts what reaches the store, each attempt of a retried call included
 *   (S3Backend counts its own HTTP requests, so it gets no counting layer).
 * - faults next: an injected fault must look like the store's (retry must see it, and an
 *   injected delay must hold a connection slot as a slow request would).
 * - limit below retry, next to the store: every attempt of a retried call goes through it, so
 *   the bound holds for the requests the store really gets, retries included; and a call
 *   waiting out its backoff holds no slot, so one flaky request does not stall the others
 *   (restic orders its sema and retry wrappers the same way).
 * - retry above them: it retries the whole call below it, each attempt queuing for a slot again.
 * - cache outermost: a hit makes no call below it at all (no slot taken, nothing to retry); a
 *   miss is one call that retry makes again if it fails; and it sees each listing once, after
 *   retry made it whole, so it removes stale files only after a complete listing (restic also
 *   wraps its retrying backend in its cache).
 *
 * Every wrapper delegates every method and has an optional method (openWriter, replace,
 * removeTemporary, deleteSync) exactly when the backend under it has it; unwrap() in
 * backend.ts reaches the concrete backend, findLayer() a layer (the repository binds the cache
 * with findLayer(backend, CacheBackend)).
 */
import type { Backend } from './backend.ts';
import { findLayer } from './backend.ts';
import { CacheBackend } from './cache.ts';
import type { CacheOptions, CacheStats } from './cache.ts';
import { FaultyBackend } from './faulty.ts';
import type { FaultyOptions } from './faulty.ts';
import { LimitBackend } from './limit.ts';
import { CountingBackend, requestCounter } from './requests.ts';
import type { RequestCounts } from './requests.ts';
import { REMOTE_RETRY_DEFAULTS, RetryBackend } from './retry.ts';
import type { RetryOptions } from './retry.ts';

export interface StackOptions {
  /** Retry settings, or false for no retry wrapper. */
  retry?: RetryOptions | false;
  /** The connection limit (default the backend's properties.connections), or false for none. */
  connections?: number | false;
  /** A fault plan: adds the fault-injection wrapper (tests and the benchmark). */
  faults?: FaultyOptions;
  /** Count the calls of a backend that does not count its own requests (default false here; openBackend counts). */
  count?: boolean;
  /** The metadata cache: added for a remote backend (or any, with `local`); none when absent or false. */
  cache?: CacheOptions | false;
}

export function stack(backend: Backend, opts: StackOptions = {}): Backend {
  let b = backend;
  if (opts.count === true && backend.requests === undefined) b = new CountingBackend(b);
  if (opts.faults !== undefined) b = new FaultyBackend(b, opts.faults);
  if (opts.connections !== false) b = new LimitBackend(b, opts.connections ?? backend.properties.connections);
  // a remote store gets the longer retry budget; options given override it field by field
  if (opts.retry !== false) b = new RetryBackend(b, { ...(backend.properties.remote === true ? REMOTE_RETRY_DEFAULTS : {}), ...(opts.retry ?? {}) });
  if (opts.cache !== undefined && opts.cache !== false && (backend.properties.remote === true || opts.cache.local === true)) b = new CacheBackend(b, opts.cache);
  return b;
}

/** What a stack did: the requests its store was sent and, with a cache, the cache's figures. */
export interface StorageReport {
  /** The store is reached over a network (its requests are worth a line on the terminal). */
  remote: boolean;
  requests?: RequestCounts;
  cache?: CacheStats & { dir?: string };
}

export function storageReport(b: Backend): StorageReport {
  const counter = requestCounter(b);
  const cache = findLayer(b, CacheBackend);
  return {
    remote: b.properties.remote === true,
    ...(counter !== undefined ? { requests: counter.snapshot() } : {}),
    ...(cache !== undefined ? { cache: { ...cache.stats, ...(cache.dir !== undefined ? { dir: cache.dir } : {}) } } : {}),
  };
}
