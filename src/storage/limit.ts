/**
 * limit: a Backend wrapper that lets at most N calls run in the wrapped backend at once
 * (default: its properties.connections); the others wait their turn, first come, first served.
 *
 * What counts as one call: exists, create, put, get, stat, delete, replace, removeTemporary,
 * opening a writer, a writer's commit and abort, and each step of a listing (one next() of the
 * inner iterator: a listing holds no slot while its consumer works on what it yielded, so a
 * loop that reads each listed file cannot deadlock on the limit). A writer's write() and
 * drain() are not counted: they stream into a file the writer already holds open (a backend
 * whose writer issues requests of its own bounds them itself). deleteSync is synchronous and
 * cannot wait (exit paths): it is passed through.
 *
 * In the stack (stack.ts) the limit sits below retry, next to the store, so every attempt of a
 * retried call counts as one request and a call waiting out its backoff holds no slot.
 *
 * Cost on the happy path: one closure and one async frame per call; a free slot is taken
 * without allocating (Semaphore.tryAcquire).
 */
import type { Backend, BlobWriter, FileInfo, FileType, Handle, ObjectLock, Wrapper } from './backend.ts';
import { wrapObjectLock } from './backend.ts';
import { Semaphore } from '../util/semaphore.ts';

function limitedWriter(w: BlobWriter, sem: Semaphore): BlobWriter {
  return {
    write: (parts) => w.write(parts),
    get queued() {
      return w.queued;
    },
    drain: () => w.drain(),
    commit: (name) => sem.run(() => w.commit(name)),
    abort: () => sem.run(() => w.abort()),
  };
}

export class LimitBackend implements Backend, Wrapper {
  readonly inner: Backend;
  /** The slots (tests read inUse and waiting). */
  readonly slots: Semaphore;
  readonly openWriter?: (type: FileType) => Promise<BlobWriter>;
  readonly replace?: (h: Handle, data: Uint8Array) => Promise<void>;
  readonly removeTemporary?: (olderThanMs: number) => Promise<{ files: number; bytes: number }>;
  readonly deleteSync?: (h: Handle) => void;
  readonly objectLock?: ObjectLock;

  constructor(inner: Backend, connections: number = inner.properties.connections) {
    this.inner = inner;
    this.slots = new Semaphore(connections);
    const sem = this.slots;
    const { openWriter, replace, removeTemporary, deleteSync } = inner;
    if (openWriter !== undefined) this.openWriter = async (type) => limitedWriter(await sem.run(() => openWriter.call(inner, type)), sem);
    if (replace !== undefined) this.replace = (h, data) => sem.run(() => replace.call(inner, h, data));
    if (removeTemporary !== undefined) this.removeTemporary = (ms) => sem.run(() => removeTemporary.call(inner, ms));
    if (deleteSync !== undefined) this.deleteSync = (h) => deleteSync.call(inner, h);
    if (inner.objectLock !== undefined) this.objectLock = wrapObjectLock(inner.objectLock, (_op, _h, fn) => sem.run(fn));
  }

  get location(): string {
    return this.inner.location;
  }
  get properties(): Backend['properties'] {
    return this.inner.properties;
  }

  exists(): Promise<boolean> {
    return this.slots.run(() => this.inner.exists());
  }
  create(): Promise<void> {
    return this.slots.run(() => this.inner.create());
  }
  put(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    return this.slots.run(() => this.inner.put(h, data));
  }
  get(h: Handle, range?: { offset: number; length: number }, into?: Buffer): Promise<Buffer> {
    return this.slots.run(() => this.inner.get(h, range, into));
  }
  stat(h: Handle): Promise<FileInfo> {
    return this.slots.run(() => this.inner.stat(h));
  }
  delete(h: Handle): Promise<void> {
    return this.slots.run(() => this.inner.delete(h));
  }
  /**
   * A slot per step of the inner listing. Written as a plain async iterator, not an async
   * generator: one promise per file instead of a generator's several (listings run to 100,000s).
   */
  list(type: FileType): AsyncIterable<FileInfo> {
    const { inner, slots } = this;
    const release = (): void => slots.release();
    return {
      [Symbol.asyncIterator](): AsyncIterator<FileInfo> {
        const it = inner.list(type)[Symbol.asyncIterator]();
        const step = (): Promise<IteratorResult<FileInfo>> => {
          let p: Promise<IteratorResult<FileInfo>>;
          try {
            p = it.next();
          } catch (err) {
            release();
            return Promise.reject(err);
          }
          p.then(release, release);
          return p;
        };
        return {
          next: () => (slots.tryAcquire() ? step() : slots.acquire().then(step)),
          // the consumer stopped early: let the inner listing clean up
          return: async (value?: unknown) => (it.return !== undefined ? it.return(value) : { done: true, value: undefined }),
        };
      },
    };
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
