/**
 * storage: the storage layer. A Backend stores immutable named files ("blobs" at this layer:
 * opaque byte strings) grouped by type. It knows nothing of encryption, packs or snapshots.
 *
 * Contract every Backend MUST keep (checked by backendConformance in src/storage/conformance.ts):
 * - put is atomic: a reader sees either no file or the whole file, never a prefix, even if
 *   the writer crashes midway.
 * - put never overwrites: putting a name that exists with different content is an error;
 *   putting identical bytes again is a no-op (names of packs, indexes and snapshots are
 *   hashes of their content, so a retry after a crash is idempotent).
 * - a put that resolved is durable (fsynced) and visible to get/stat/list (read-after-write).
 * - get of a missing file rejects with NotFoundError; a range past the end rejects.
 * - list yields each stored file of the type exactly once, never a temporary file.
 *
 * The one exception to "never overwrites" is replace(), which exists for repairs only: it
 * MUST be given nothing but bytes already verified to be the one correct content of that name
 * (a pack rebuilt from parity whose SHA-256 equals its name, or the parity file re-derived
 * from such a pack). It is atomic: a reader sees the old file or the new one, never a mix.
 */

import type { RequestCounter } from './requests.ts';

export type FileType = 'config' | 'key' | 'pack' | 'index' | 'snapshot' | 'lock' | 'parity';

export const FILE_TYPES: readonly FileType[] = ['config', 'key', 'pack', 'index', 'snapshot', 'lock', 'parity'];

/** The file types replace() accepts: those a repair can rebuild and verify. */
export const REPLACEABLE: readonly FileType[] = ['pack', 'parity'];

export interface Handle {
  readonly type: FileType;
  readonly name: string;
}

export interface FileInfo {
  readonly name: string;
  readonly size: number;
}

/** How an Object Lock retention may be lifted: never (compliance), or by a user allowed to bypass it (governance). */
export type LockMode = 'compliance' | 'governance';

/** Immutability for new files: each is kept from deletion and overwriting for `days` after it is written. */
export interface ObjectLockPolicy {
  readonly mode: LockMode;
  readonly days: number;
}

/** A stored file's retention: until when it cannot be deleted (none: undefined), and when it was written. */
export interface FileRetention {
  readonly until?: Date;
  readonly mode?: LockMode;
  readonly modified?: Date;
}

/**
 * Object Lock (write once, read many) of a store that has it (S3 with Object Lock). Files of
 * every type except `lock` are written with a retention date once a policy is set; a file under
 * retention cannot be deleted or overwritten, by anyone (compliance) or by anyone without the
 * right to bypass it (governance), until that date.
 */
export interface ObjectLock {
  /** Checks the store can keep files immutable; undefined when it can, else a one-line reason and what to do. */
  support(): Promise<string | undefined>;
  /** The policy for files written from now on (undefined: no retention). */
  readonly policy: ObjectLockPolicy | undefined;
  setPolicy(p: ObjectLockPolicy | undefined): void;
  /** The retention of a stored file (NotFoundError when it does not exist). */
  retention(h: Handle): Promise<FileRetention>;
  /** Extends the file's retention to `until`, in the policy's mode (a retention is never shortened). */
  extend(h: Handle, until: Date): Promise<void>;
  /**
   * Files of a type that are hidden, not deleted: a delete without a version (by hand, or by a
   * client that was not meshback) put a delete marker over versions that still exist.
   */
  hidden(type: FileType): Promise<HiddenFile[]>;
  /** Removes a hidden file's delete markers: its newest stored version is the file again. */
  unhide(f: HiddenFile): Promise<void>;
}

/** A file hidden behind delete markers (see ObjectLock.hidden). */
export interface HiddenFile {
  readonly type: FileType;
  readonly name: string;
  /** the version ids of the delete markers over it, newest first */
  readonly markers: readonly string[];
  /** the newest stored version: its size, and when it was written */
  readonly size: number;
  readonly modified?: Date;
}

export interface BackendProperties {
  /** How many operations may usefully run at once. */
  readonly connections: number;
  /** True for a store reached over a network (S3): each request costs time and money, so metadata is cached locally (cache.ts). */
  readonly remote?: boolean;
}

export interface Backend {
  /** Human-readable location, without secrets. */
  readonly location: string;
  readonly properties: BackendProperties;
  /**
   * Optional: the counts of the requests this backend sent (a backend that talks to a server
   * counts its own; the stack counts the calls of any other: see requests.ts). Wrappers do not
   * forward it: requestCounter() finds it in a stack.
   */
  readonly requests?: RequestCounter;
  /** True when the repository's config file exists. */
  exists(): Promise<boolean>;
  /** Creates the layout of an empty repository; fails if a config already exists. */
  create(): Promise<void>;
  /** Stores data, given whole or as parts that are written one after another. */
  put(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void>;
  /**
   * Optional: a file written piece by piece as its bytes become known, named when complete
   * (a pack's name is the hash of its bytes). Same guarantees as put once commit resolved.
   */
  openWriter?(type: FileType): Promise<BlobWriter>;
  /**
   * Optional, for repairs only (see the contract above): atomically replaces the file `h`
   * (or creates it) with `data`, durably. Only types in REPLACEABLE are accepted.
   */
  replace?(h: Handle, data: Uint8Array): Promise<void>;
  /**
   * Reads a file, or a range of it. With `into` (at least range.length bytes, or for a whole
   * file at least its size), a backend may read into that buffer and return a view of it instead
   * of allocating (callers reuse one buffer for many reads); a file larger than `into` is read
   * into memory of its own.
   */
  get(h: Handle, range?: { offset: number; length: number }, into?: Buffer): Promise<Buffer>;
  /**
   * Optional: removes temporary files of interrupted writes not modified for olderThanMs (only
   * for a caller holding the repository exclusively).
   */
  removeTemporary?(olderThanMs: number): Promise<{ files: number; bytes: number }>;
  stat(h: Handle): Promise<FileInfo>;
  list(type: FileType): AsyncIterable<FileInfo>;
  delete(h: Handle): Promise<void>;
  /**
   * Optional: delete, synchronously, for exit paths that cannot wait (a signal handler removing
   * the lock file of the process before it exits). A missing file is not an error.
   */
  deleteSync?(h: Handle): void;
  /** Optional: Object Lock, on a store that can keep files immutable. */
  readonly objectLock?: ObjectLock;
  close(): Promise<void>;
}

export interface BlobWriter {
  /** Queues bytes to be appended; they may be released by the caller's GC once written. */
  write(parts: readonly Uint8Array[]): void;
  /** Bytes queued and not yet written. */
  readonly queued: number;
  /** Resolves when the queued bytes are written (or rejects with the first write error). */
  drain(): Promise<void>;
  /** Makes the file durable under its final name, with put's no-overwrite rule. */
  commit(name: string): Promise<void>;
  /** Removes the partial file. */
  abort(): Promise<void>;
}

/**
 * An ObjectLock whose requests (support, retention, extend) each go through `around` (a wrapper's
 * retry or connection slot); setPolicy and policy are the inner one's.
 */
export function wrapObjectLock(inner: ObjectLock, around: <T>(op: 'lockSupport' | 'retention' | 'extendRetention' | 'list' | 'delete', h: Handle | undefined, fn: () => Promise<T>) => Promise<T>): ObjectLock {
  return {
    support: () => around('lockSupport', undefined, () => inner.support()),
    get policy() {
      return inner.policy;
    },
    setPolicy: (p) => inner.setPolicy(p),
    retention: (h) => around('retention', h, () => inner.retention(h)),
    extend: (h, until) => around('extendRetention', h, () => inner.extend(h, until)),
    hidden: (type) => around('list', undefined, () => inner.hidden(type)),
    // removing a marker again is harmless (it is gone), so this is retried like a delete
    unhide: (f) => around('delete', f, () => inner.unhide(f)),
  };
}

/** The bytes of a put, as one buffer. */
export function joinParts(data: Uint8Array | readonly Uint8Array[]): Buffer {
  if (data instanceof Uint8Array) return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.concat(data);
}

/**
 * A Backend that wraps another (retry, connection limit, fault injection: see stack.ts). It
 * delegates every method, and has an optional method exactly when `inner` has it.
 */
export interface Wrapper {
  readonly inner: Backend;
}

function isWrapper(b: Backend): b is Backend & Wrapper {
  return (b as Partial<Wrapper>).inner !== undefined;
}

/** The concrete backend under any wrappers. */
export function unwrap(b: Backend): Backend {
  while (isWrapper(b)) b = b.inner;
  return b;
}

/** The outermost layer of `b` (itself, a wrapper, or the concrete backend) that is a `cls`. */
export function findLayer<T extends Backend>(b: Backend, cls: abstract new (...args: never[]) => T): T | undefined {
  for (let l: Backend | undefined = b; l !== undefined; l = isWrapper(l) ? l.inner : undefined) if (l instanceof cls) return l;
  return undefined;
}

export function handleString(h: Handle): string {
  return h.type === 'config' ? 'config' : `${h.type}/${h.name}`;
}
