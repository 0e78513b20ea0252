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

/** A storage operation failed; `retryable` is decided at the backend boundary only. */
export class BackendError extends MeshbackError {
  readonly retryable: boolean;
  constructor(message: string, options: { cause?: unknown; retryable: boolean; data?: Record<string, unknown> }) {
    super('BACKEND', message, options);
    this.name = 'BackendError';
    this.retryable = options.retryable;
  }
}

/** The device is full (ENOSPC, EDQUOT). `what to do` defaults to the advice for the repository's device. */
export class NoSpaceError extends MeshbackError {
  constructor(where: string, cause?: unknown, whatToDo = 'free some space (or prune old snapshots) and run again; nothing already stored was changed') {
    super('NO_SPACE', `no space left on the device holding ${where}: ${whatToDo}`, { cause });
    this.name = 'NoSpaceError';
  }
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
