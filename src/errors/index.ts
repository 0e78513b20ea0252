/**
 * errors: the typed error vocabulary of meshback.
 *
 * Every error a user can cause is a MeshbackError with a stable `code`. Only the CLI maps
 * codes to process exit codes (see cli/exit.ts and the README). Messages are one line that
 * says what happened and what to do next.
 */

export type ErrorCode =
  | 'USAGE'
  | 'REPO_NOT_FOUND'
  | 'REPO_EXISTS'
  | 'WRONG_PASSWORD'
  | 'NO_PASSWORD'
  | 'NOT_FOUND'
  | 'INTEGRITY'
  | 'NO_SPACE'
  | 'BACKEND'
  | 'LOCKED'
  | 'UNSUPPORTED_FORMAT'
  | 'TARGET'
  | 'HOOK'
  | 'INCOMPLETE'
  /** a meshback server cannot be reached, or answered what is not its API (meshback trigger) */
  | 'SERVER'
  /** a meshback server refused the request: wrong or missing token, rate limit, the policy running, the server stopping */
  | 'REFUSED'
  /** waited as long as asked (--timeout) for something that goes on */
  | 'TIMEOUT'
  /** no Kubernetes API server reachable, or no kubeconfig to find one (meshback k8s) */
  | 'CLUSTER'
  /** the Kubernetes API server refused a request (RBAC 403, or 401) (meshback k8s) */
  | 'FORBIDDEN'
  /** a VolumeBackup or VolumeRestore ended Failed in the cluster (its reason and message say why) (meshback k8s restore) */
  | 'K8S_FAILED'
  | 'INTERNAL';

export class MeshbackError extends Error {
  readonly code: ErrorCode;
  readonly data: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; data?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MeshbackError';
    this.code = code;
    this.data = options?.data ?? {};
  }
  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...this.data };
  }
}

export class UsageError extends MeshbackError {
  constructor(message: string) {
    super('USAGE', message);
    this.name = 'UsageError';
  }
}

export class NotFoundError extends MeshbackError {
  constructor(message: string, data?: Record<string, unknown>) {
    super('NOT_FOUND', message, { data: data ?? {} });
    this.name = 'NotFoundError';
  }
}

/** Data read back failed authentication or its hash does not match its id. */
export class IntegrityError extends MeshbackError {
  constructor(message: string, data?: Record<string, unknown>) {
    super('INTEGRITY', message, { data: data ?? {} });
    this.name = 'IntegrityError';
  }
}

/**
 * A storage operation failed; `retryable` is decided at the backend boundary only: true when the
 * same call may succeed if made again (a passing condition: see isTransientErrno), false when it
 * will fail the same way (permission denied, a refused overwrite, a damaged file). The retry
 * wrapper (src/storage/retry.ts) retries exactly the errors isRetryable() accepts.
 */
export class BackendError extends MeshbackError {
  readonly retryable: boolean;
  constructor(message: string, options: { cause?: unknown; retryable: boolean; data?: Record<string, unknown> }) {
    super('BACKEND', message, options);
    this.name = 'BackendError';
    this.retryable = options.retryable;
  }
}

/** A delete or overwrite the store refused because the file is under Object Lock retention until `until`. */
export class ObjectLockedError extends BackendError {
  readonly until: Date | undefined;
  constructor(message: string, until?: Date, cause?: unknown) {
    super(message, { retryable: false, cause, data: until !== undefined ? { until: until.toISOString() } : {} });
    this.name = 'ObjectLockedError';
    this.until = until;
  }
}

/** The device is full (ENOSPC, EDQUOT). `what to do` defaults to the advice for the repository's device. */
export class NoSpaceError extends MeshbackError {
  constructor(where: string, cause?: unknown, whatToDo = 'free some space (or prune old snapshots) and run again; nothing already stored was changed') {
    super('NO_SPACE', `no space left on the device holding ${where}: ${whatToDo}`, { cause });
    this.name = 'NoSpaceError';
  }
}

/**
 * errno codes of passing conditions: a busy or exhausted resource (EAGAIN, EBUSY, EMFILE, ENFILE,
 * EINTR) or a network that failed this once (connection reset, refused, aborted, timed out, a
 * broken pipe, an unreachable network or host, a failed DNS lookup). Not EIO: from a local disk
 * it is persistent (a bad sector, a btrfs checksum), and a network filesystem has already retried
 * (NFS timeo/retrans) before it returns one; a network backend that knows an I/O error came from
 * its connection marks that error retryable itself. Never here either: ENOENT, EEXIST, EACCES,
 * EPERM, EROFS, ENOSPC, EDQUOT (retrying cannot help; ENOSPC and EDQUOT are NoSpaceError anyway).
 */
const TRANSIENT_ERRNO: ReadonlySet<string> = new Set(['EAGAIN', 'EBUSY', 'EMFILE', 'ENFILE', 'EINTR', 'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'ENETDOWN', 'ENETUNREACH', 'ENETRESET', 'EHOSTUNREACH', 'EHOSTDOWN', 'EAI_AGAIN']);

/** For backends classifying an errno error: true when retrying the call may succeed. */
export function isTransientErrno(code: string | undefined): boolean {
  return code !== undefined && TRANSIENT_ERRNO.has(code);
}

/**
 * True only for a BackendError its backend marked retryable. Never for NotFoundError,
 * NoSpaceError, a refused overwrite, a usage error, or an error no backend classified.
 */
export function isRetryable(err: unknown): boolean {
  return err instanceof BackendError && err.retryable;
}

export function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null) {
    const c = (err as { code?: unknown }).code;
    if (typeof c === 'string') return c;
  }
  return undefined;
}

export function errMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
