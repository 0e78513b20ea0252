/**
 * repository/open: opening a repository the way every front end does: the backend by location
 * from the storage registry (or one already opened), the password asked only once the repository
 * is known to exist, the lock taken, then the index read under it. The library API exports it;
 * the CLI opens through it too.
 */
import { MeshbackError } from '../errors/index.ts';
import type { EventSink } from '../events/index.ts';
import type { Backend } from '../storage/backend.ts';
import { openBackend } from '../storage/registry.ts';
import type { OpenBackendOptions } from '../storage/registry.ts';
import { Repository } from './index.ts';
import { acquireLock } from './lock.ts';

export interface OpenRepositoryOptions {
  /** 'none' (read snapshots only), 'shared' (backup, check, restore) or 'exclusive' (forget, prune, repair) */
  lock?: 'none' | 'shared' | 'exclusive';
  /** the command named in the lock file (default 'library') */
  command?: string;
  /** keep trying a locked repository this long (milliseconds; default 0: fail at once) */
  retryLockMs?: number;
  /** load the index of the repository's blobs (default true; false for snapshot listings) */
  loadIndex?: boolean;
  events?: EventSink;
  /** options of the storage stack (retries, connection limit) */
  storage?: OpenBackendOptions;
}

export interface OpenRepository {
  repo: Repository;
  /** releases the lock and closes the backend */
  close(): Promise<void>;
}

/**
 * Opens a repository: `location` (a path, `file:`, `s3:` or another registered scheme) or a backend
 * already opened. The password may be a function, asked only once the repository is known to
 * exist (a CLI prompts then). The lock is taken before the index is read, so the index is read
 * under it.
 */
export async function openRepository(location: string | Backend, password: string | (() => Promise<string>), opts: OpenRepositoryOptions = {}): Promise<OpenRepository> {
  const backend = typeof location === 'string' ? openBackend(location, opts.storage ?? {}) : location;
  try {
    if (!(await backend.exists())) {
      throw new MeshbackError('REPO_NOT_FOUND', `no repository at ${backend.location}: check --repo / MESHBACK_REPO, or create one with 'meshback init'`);
    }
    const repo = await Repository.open(backend, typeof password === 'string' ? password : await password(), { loadIndex: false });
    const lock = opts.lock !== undefined && opts.lock !== 'none' ? await acquireLock(repo, { exclusive: opts.lock === 'exclusive', command: opts.command ?? 'library', retryMs: opts.retryLockMs ?? 0, ...(opts.events !== undefined ? { events: opts.events } : {}) }) : undefined;
    if (opts.loadIndex !== false) await repo.store.loadIndex();
    return {
      repo,
      close: async () => {
        await lock?.release();
        await backend.close();
      },
    };
  } catch (err) {
    await backend.close().catch(() => undefined);
    throw err;
  }
}

