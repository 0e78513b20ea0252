/** An in-memory Backend for unit tests and dry runs. It keeps the same contract as the local one. */
import type { Backend, FileInfo, FileType, Handle } from './backend.ts';
import { REPLACEABLE, handleString, joinParts } from './backend.ts';
import { BackendError, NotFoundError } from '../errors/index.ts';

export class MemoryBackend implements Backend {
  readonly location = 'memory:';
  readonly properties = { connections: 8 };
  private readonly files = new Map<string, Buffer>();
  private created = false;

  async exists(): Promise<boolean> {
    return this.files.has('config');
  }
  async create(): Promise<void> {
    if (this.files.has('config')) throw new BackendError('a repository already exists in memory', { retryable: false });
    this.created = true;
  }
  async put(h: Handle, parts: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const data = joinParts(parts);
    const k = handleString(h);
    const old = this.files.get(k);
    if (old !== undefined) {
      if (!old.equals(data)) throw new BackendError(`refusing to overwrite ${k}`, { retryable: false });
      return;
    }
    this.files.set(k, Buffer.from(data));
  }
  /** Repairs only (see Backend.replace). */
  async replace(h: Handle, data: Uint8Array): Promise<void> {
    if (!REPLACEABLE.includes(h.type)) throw new BackendError(`replace is only for repairs of packs and parity files, not ${h.type}`, { retryable: false });
    this.files.set(handleString(h), Buffer.from(data));
  }
  async get(h: Handle, range?: { offset: number; length: number }): Promise<Buffer> {
    const b = this.files.get(handleString(h));
    if (b === undefined) throw new NotFoundError(`${handleString(h)} does not exist`);
    if (range === undefined) return Buffer.from(b);
    if (range.offset + range.length > b.length) throw new BackendError(`${handleString(h)} is shorter than expected`, { retryable: false });
    return Buffer.from(b.subarray(range.offset, range.offset + range.length));
  }
  async stat(h: Handle): Promise<FileInfo> {
    const b = this.files.get(handleString(h));
    if (b === undefined) throw new NotFoundError(`${handleString(h)} does not exist`);
    return { name: h.name, size: b.length };
  }
  async *list(type: FileType): AsyncIterable<FileInfo> {
    const prefix = type === 'config' ? 'config' : `${type}/`;
    for (const [k, v] of [...this.files.entries()].sort()) {
      if (type === 'config' ? k === 'config' : k.startsWith(prefix)) yield { name: type === 'config' ? 'config' : k.slice(prefix.length), size: v.length };
    }
  }
  async delete(h: Handle): Promise<void> {
    this.files.delete(handleString(h));
  }
  deleteSync(h: Handle): void {
    this.files.delete(handleString(h));
  }
  async close(): Promise<void> {
    void this.created;
  }
  /** Test helper: direct access to a stored file, to damage it. */
  raw(h: Handle): Buffer | undefined {
    return this.files.get(handleString(h));
  }
}
