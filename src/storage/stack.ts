/**
 * The storage stack: one fixed order of wrappers around a concrete backend. From the store up:
 *
 *   concrete backend (local directory, S3)
 *     faults   (tests and the benchmark only) injects the store's own failures
 *     limit    at most N calls in the store at once (default its properties.connections)
 *     retry    makes again a call that failed for a passing reason, with backoff and jitter
 *   = what the repository sees
 *
 * Why this order:
 * - faults innermost: an injected fault must look like the store's (retry must see it, and an
 *   injected delay must hold a connection slot as a slow request would).
 * - limit below retry, next to the store: every attempt of a retried call goes through it, so
 *   the bound holds for the requests the store really gets, retries included; and a call
 *   waiting out its backoff holds no slot, so one flaky request does not stall the others
 *   (restic orders its sema and retry wrappers the same way).
 * - retry outermost: it retries the whole call below it, each attempt queuing for a slot again.
 *
 * Every wrapper delegates every method and has an optional method (openWriter, replace,
 * removeTemporary, deleteSync) exactly when the backend under it has it; unwrap() in
 * backend.ts reaches the concrete backend.
 */
import type { Backend } from './backend.ts';
import { FaultyBackend } from './faulty.ts';
import type { FaultyOptions } from './faulty.ts';
import { LimitBackend } from './limit.ts';
import { RetryBackend } from './retry.ts';
import type { RetryOptions } from './retry.ts';

export interface StackOptions {
  /** Retry settings, or false for no retry wrapper. */
  retry?: RetryOptions | false;
  /** The connection limit (default the backend's properties.connections), or false for none. */
  connections?: number | false;
  /** A fault plan: adds the fault-injection wrapper (tests and the benchmark). */
  faults?: FaultyOptions;
}

export function stack(backend: Backend, opts: StackOptions = {}): Backend {
  let b = backend;
  if (opts.faults !== undefined) b = new FaultyBackend(b, opts.faults);
  if (opts.connections !== false) b = new LimitBackend(b, opts.connections ?? backend.properties.connections);
  if (opts.retry !== false) b = new RetryBackend(b, opts.retry ?? {});
  return b;
}
