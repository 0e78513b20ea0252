/**
 * requests: counts of the requests a repository's store was sent, by kind, as object storage
 * bills them (PUT, GET, HEAD, LIST, DELETE, COPY; OTHER for anything else).
 *
 * - A backend that talks to a server counts its own requests (S3Backend: every HTTP request it
 *   sends, each attempt of a retried call and each page of a listing) in a RequestCounter it
 *   exposes as `requests` (Backend.requests).
 * - For any other backend the stack puts a CountingBackend directly on it (stack.ts): it counts
 *   the calls that reach the backend under the same names (put and a writer's commit PUT, get
 *   GET, stat and exists HEAD, one listing LIST, delete DELETE, create and removeTemporary OTHER;
 *   the Object Lock calls as S3 makes them: support GET, retention HEAD, extend PUT, hidden LIST,
 *   unhide DELETE).
 *
 * requestCounter(b) finds the counter in a stack. GETs are also counted per file type, which
 * says what a metadata cache saved (a warm `snapshots` fetches the key and config, nothing else).
 */
import type { Backend, BlobWriter, FileInfo, FileType, Handle, ObjectLock, Wrapper } from './backend.ts';
import { wrapObjectLock } from './backend.ts';

export type RequestKind = 'PUT' | 'GET' | 'HEAD' | 'LIST' | 'DELETE' | 'COPY' | 'OTHER';
export const REQUEST_KINDS: readonly RequestKind[] = ['PUT', 'GET', 'HEAD', 'LIST', 'DELETE', 'COPY', 'OTHER'];

export interface RequestCounts {
  /** Requests of each kind (every kind present, 0 when none). */
  readonly counts: Record<RequestKind, number>;
  /** GETs per file type (only the types fetched). */
  readonly getsByType: Partial<Record<FileType, number>>;
  /** Bytes received by GETs. */
  readonly bytesDown: number;
}

export class RequestCounter {
  private readonly counts: Record<RequestKind, number> = { PUT: 0, GET: 0, HEAD: 0, LIST: 0, DELETE: 0, COPY: 0, OTHER: 0 };
  private readonly gets: Partial<Record<FileType, number>> = {};
  private bytes = 0;

  /** One request of `kind` (about a file of `type`, when it is about one). */
  add(kind: RequestKind, type?: FileType): void {
    this.counts[kind]++;
    if (kind === 'GET' && type !== undefined) this.gets[type] = (this.gets[type] ?? 0) + 1;
  }

  /** Bytes a GET received. */
  received(n: number): void {
    this.bytes += n;
  }

  get total(): number {
    let n = 0;
    for (const k of REQUEST_KINDS) n += this.counts[k];
    return n;
  }

  snapshot(): RequestCounts {
    return { counts: { ...this.counts }, getsByType: { ...this.gets }, bytesDown: this.bytes };
  }
}

function isWrapper(b: Backend): b is Backend & Wrapper {
  return (b as Partial<Wrapper>).inner !== undefined;
}

/** The counter of a stack: of the outermost layer that has one (a CountingBackend or the concrete backend). */
export function requestCounter(b: Backend): RequestCounter | undefined {
  for (let l: Backend | undefined = b; l !== undefined; l = isWrapper(l) ? l.inner : undefined) if (l.requests instanceof RequestCounter) return l.requests;
  return undefined;
}

/** "1,204 PUT, 310 GET (index 3, pack 290, ...), 12 HEAD, 4 LIST, 0 DELETE" (COPY and OTHER only when made). */
export function formatRequests(r: RequestCounts): string {
  const n = (x: number): string => x.toLocaleString('en-US');
  const parts: string[] = [];
  for (const k of REQUEST_KINDS) {
    if ((k === 'COPY' || k === 'OTHER') && r.counts[k] === 0) continue;
    let s = `${n(r.counts[k])} ${k}`;
    if (k === 'GET') {
      const by = Object.entries(r.getsByType).filter(([, v]) => v > 0);
      if (by.length > 0) s += ` (${by.map(([t, v]) => `${t} ${n(v)}`).join(', ')})`;
    }
    parts.push(s);
  }
  return parts.join(', ');
}

function countedWriter(w: BlobWriter, c: RequestCounter): BlobWriter {
  return {
    write: (parts) => w.write(parts),
    get queued() {
      return w.queued;
    },
    drain: () => w.drain(),
    commit: (name) => {
      c.add('PUT', 'pack');
      return w.commit(name);
    },
    abort: () => w.abort(),
  };
}

/** Counts the calls that reach a backend that does not count its own requests (see the module comment). */
export class CountingBackend implements Backend, Wrapper {
  readonly inner: Backend;
  readonly requests = new RequestCounter();
  readonly openWriter?: (type: FileType) => Promise<BlobWriter>;
  readonly replace?: (h: Handle, data: Uint8Array) => Promise<void>;
  readonly removeTemporary?: (olderThanMs: number) => Promise<{ files: number; bytes: number }>;
  readonly deleteSync?: (h: Handle) => void;
  readonly objectLock?: ObjectLock;

  constructor(inner: Backend) {
    this.inner = inner;
    const c = this.requests;
    const { openWriter, replace, removeTemporary, deleteSync } = inner;
    if (openWriter !== undefined) this.openWriter = async (type) => countedWriter(await openWriter.call(inner, type), c);
    if (replace !== undefined) {
      this.replace = (h, data) => {
        c.add('PUT', h.type);
        return replace.call(inner, h, data);
      };
    }
    if (removeTemporary !== undefined) {
      this.removeTemporary = (ms) => {
        c.add('OTHER');
        return removeTemporary.call(inner, ms);
      };
    }
    if (deleteSync !== undefined) {
      this.deleteSync = (h) => {
        c.add('DELETE', h.type);
        deleteSync.call(inner, h);
      };
    }
    if (inner.objectLock !== undefined) {
      const kinds = { lockSupport: 'GET', retention: 'HEAD', extendRetention: 'PUT', list: 'LIST', delete: 'DELETE' } as const;
      this.objectLock = wrapObjectLock(inner.objectLock, (op, h, fn) => {
        c.add(kinds[op], h?.type);
        return fn();
      });
    }
  }

  get location(): string {
    return this.inner.location;
  }
  get properties(): Backend['properties'] {
    return this.inner.properties;
  }
  exists(): Promise<boolean> {
    this.requests.add('HEAD', 'config');
    return this.inner.exists();
  }
  create(): Promise<void> {
    this.requests.add('OTHER');
    return this.inner.create();
  }
  put(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    this.requests.add('PUT', h.type);
    return this.inner.put(h, data);
  }
  async get(h: Handle, range?: { offset: number; length: number }, into?: Buffer): Promise<Buffer> {
    this.requests.add('GET', h.type);
    const b = await this.inner.get(h, range, into);
    this.requests.received(b.length);
    return b;
  }
  stat(h: Handle): Promise<FileInfo> {
    this.requests.add('HEAD', h.type);
    return this.inner.stat(h);
  }
  list(type: FileType): AsyncIterable<FileInfo> {
    const { inner, requests } = this;
    return {
      [Symbol.asyncIterator]: () => {
        requests.add('LIST', type);
        return inner.list(type)[Symbol.asyncIterator]();
      },
    };
  }
  delete(h: Handle): Promise<void> {
    this.requests.add('DELETE', h.type);
    return this.inner.delete(h);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
