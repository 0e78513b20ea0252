/**
 * The backend registry: a repository location (`--repo`, MESHBACK_REPO) names its backend by
 * scheme, and the factory registered for that scheme parses it and makes the backend.
 *
 *   /srv/repo, ./repo, repo       a local directory (relative to the working directory)
 *   local:PATH                    the same, spelled out (for a PATH that starts like a scheme)
 *   file:PATH                     the same (PATH taken as written)
 *   file:///abs/path              a file URL (percent-decoded; host empty or localhost)
 *   s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]   an S3-compatible server (path-style addressing)
 *   s3:BUCKET[/PREFIX]            AWS S3 (region and credentials from the AWS SDK's chain)
 *
 * A location that starts with `WORD:` is a scheme, so a relative directory whose name has a
 * colon is written `./name:x` or `local:name:x`.
 *
 * openBackend() returns the backend inside the storage stack (stack.ts: request counting, retry,
 * connection limit, and the metadata cache when `cache` is given and the backend is remote)
 * unless told otherwise. Opening does no I/O: `exists()` tells whether a repository is
 * there and `create()` makes the layout of a new one (init).
 */
import { fileURLToPath } from 'node:url';
import type { Backend } from './backend.ts';
import { LocalBackend } from './local.ts';
import { S3Backend, parseS3Location } from './s3.ts';
import type { S3Location } from './s3.ts';
import { stack } from './stack.ts';
import type { StackOptions } from './stack.ts';
import type { RetryReport } from './retry.ts';
import { UsageError, errMessage } from '../errors/index.ts';
import type { EventSink } from '../events/index.ts';

export interface BackendFactory<C> {
  /** The scheme name as users write it before the colon ('local', 's3'). */
  readonly scheme: string;
  /** The locations it takes, for the message about an unknown scheme. */
  readonly describe: string;
  /** The scheme test: true when this factory handles the location. */
  accepts(location: string): boolean;
  /** Parses a location it accepts; a bad one is a UsageError that says what to write. */
  parse(location: string): C;
  /** The location for messages, without secrets (default: redactLocation). */
  redact?(location: string): string;
  /** Makes the concrete backend for a parsed location (no I/O); `credentials` replace the backend's default chain. */
  open(config: C, credentials?: BackendCredentials): Backend;
}

/** Schemes announced but not built yet: what the error says about them. */
const PLANNED: Record<string, string> = {};

/** The scheme a location starts with ('s3' for 's3:bucket/x'), lowercase; undefined for a plain path. */
export function schemeOf(location: string): string | undefined {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(location);
  return m === null ? undefined : m[1]!.toLowerCase();
}

/** Hides the user and password of a URL-like location (`s3:https://key:secret@host/b` -> `s3:https://***@host/b`). */
export function redactLocation(location: string): string {
  return location.replace(/\/\/[^/@]*@/, '//***@');
}

function parseLocal(location: string): { path: string } {
  const scheme = schemeOf(location);
  const rest = scheme === undefined ? location : location.slice(scheme.length + 1);
  if (rest === '') throw new UsageError(`repository location ${JSON.stringify(location)} names no directory: write e.g. ${scheme ?? 'local'}:/srv/backup/repo`);
  if (scheme === 'file' && rest.startsWith('/')) {
    try {
      return { path: fileURLToPath(new URL(location)) };
    } catch (err) {
      throw new UsageError(`repository location ${location} is not a usable file URL (${errMessage(err)}): write file:///absolute/path or a plain path`);
    }
  }
  return { path: rest };
}

const localFactory: BackendFactory<{ path: string }> = {
  scheme: 'local',
  describe: 'local directories (a path, local:PATH, file:PATH or file:///PATH)',
  accepts(location) {
    const s = schemeOf(location);
    return s === undefined || s === 'local' || s === 'file';
  },
  parse: parseLocal,
  open: (c) => new LocalBackend(c.path),
};

/** S3: s3.ts imports the AWS SDK on the first request, so a local repository never loads it. */
const s3Factory: BackendFactory<S3Location> = {
  scheme: 's3',
  describe: 'S3 (s3:https://HOST[:PORT]/BUCKET[/PREFIX], s3:BUCKET[/PREFIX] on AWS)',
  accepts: (location) => schemeOf(location) === 's3',
  parse: parseS3Location,
  open: (c, credentials) => new S3Backend(credentials !== undefined ? { ...c, credentials } : c),
};

const factories: BackendFactory<unknown>[] = [localFactory as BackendFactory<unknown>, s3Factory as BackendFactory<unknown>];

/**
 * Registers a backend factory; the most recently registered one that accepts a location opens
 * it. Returns a function that unregisters it. A scheme can be registered once.
 */
export function registerBackend<C>(factory: BackendFactory<C>): () => void {
  if (factories.some((f) => f.scheme === factory.scheme)) throw new Error(`a backend for scheme ${factory.scheme}: is already registered`);
  const f = factory as BackendFactory<unknown>;
  factories.push(f);
  return () => {
    const i = factories.indexOf(f);
    if (i >= 0) factories.splice(i, 1);
  };
}

/** The factory for a location; a UsageError naming what is supported when there is none. */
export function factoryFor(location: string): BackendFactory<unknown> {
  for (let i = factories.length - 1; i >= 0; i--) if (factories[i]!.accepts(location)) return factories[i]!;
  const scheme = schemeOf(location);
  const shown = redactLocation(location);
  const hint = scheme !== undefined && PLANNED[scheme] !== undefined ? PLANNED[scheme] : `for a directory whose name has a colon write ./${shown}`;
  throw new UsageError(`no backend for ${shown}: meshback supports ${factories.map((f) => f.describe).join(', ')}; ${hint}`);
}

/** Credentials given with the location (a Kubernetes Secret's keys, say) instead of the process's environment. */
export interface BackendCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  region?: string;
}

export interface OpenBackendOptions extends StackOptions {
  /** credentials of an S3 location (default: the AWS SDK's chain: environment, profile, role) */
  credentials?: BackendCredentials;
  /** false: the concrete backend alone, without the storage stack. */
  stack?: boolean;
  /** Where retries are reported, as warnings (unless `retry.onRetry` is given). */
  events?: EventSink;
}

/** One line about a retry, for a warning. */
export function retryMessage(r: RetryReport): string {
  return `storage: retrying ${r.op}${r.what !== '' ? ` ${r.what}` : ''} in ${(r.delayMs / 1000).toFixed(1)} s (attempt ${r.attempt + 1} of ${r.attempts}) after: ${errMessage(r.error)}`;
}

/** Parses a location and opens its backend (inside the storage stack unless `stack: false`). */
export function openBackend(location: string, opts: OpenBackendOptions = {}): Backend {
  const factory = factoryFor(location);
  const backend = factory.open(factory.parse(location), opts.credentials);
  if (opts.stack === false) return backend;
  const { events } = opts;
  let retry = opts.retry;
  if (retry !== false && retry?.onRetry === undefined && events !== undefined) {
    retry = { ...retry, onRetry: (r) => events({ type: 'warning', message: retryMessage(r) }) };
  }
  return stack(backend, { count: true, ...opts, retry });
}
