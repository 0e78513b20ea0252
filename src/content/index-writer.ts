/**
 * content/index-writer: the one writer of index files. Pack records (encodeIndexRecord) are
 * gathered and written as sealed index files of about INDEX_FILE_BYTES each, named by the SHA-256
 * of their bytes. A backup writes through it as its packs become durable (content/store.ts);
 * prune and repair write the rebuilt index through it (maintenance/).
 *
 * Writes are serialised: a flush waits for the one before it. A resolved add() or flush() means
 * every file written so far is durable (Backend.put). In a dry run nothing is stored, but names
 * and sizes are computed the same way.
 */
import type { Backend } from '../storage/backend.ts';
import { SEAL_OVERHEAD } from '../crypto/index.ts';
import { encodeIndexRecords, sha256hex } from './pack.ts';

/** index records gathered before one index file is written (about 90,000 blobs) */
export const INDEX_FILE_BYTES = 4 * 1024 * 1024;
/** bytes of an index record per pack (id, size, count) and per blob entry */
export const INDEX_PACK_BYTES = 32 + 8;
export const INDEX_ENTRY_BYTES = 1 + 32 + 12;
/** sealed index file overhead: seal + magic, version, pack count */
export const INDEX_FILE_OVERHEAD = SEAL_OVERHEAD + 9;

export interface IndexWriterOptions {
  /** compute names and sizes, store nothing */
  dryRun?: boolean;
  /** called for each file once it is durable */
  onWritten?: (name: string, bytes: number) => void;
}

export class IndexWriter {
  private readonly backend: Backend;
  private readonly encKey: Buffer;
  private readonly opts: IndexWriterOptions;
  private records: Buffer[] = [];
  private bytes = 0;
  private writing: Promise<void> = Promise.resolve();
  /** names of the files written, in order */
  readonly written: string[] = [];
  bytesWritten = 0;
  /** pack records added */
  packs = 0;

  constructor(backend: Backend, encKey: Buffer, opts: IndexWriterOptions = {}) {
    this.backend = backend;
    this.encKey = encKey;
    this.opts = opts;
  }

  /** Adds one pack's record; writes a file when enough records are gathered. */
  async add(record: Buffer): Promise<void> {
    this.records.push(record);
    this.bytes += record.length;
    this.packs++;
    if (this.bytes >= INDEX_FILE_BYTES) await this.flush();
  }

  /** Writes the records gathered so far as one file (none: nothing), after any write before it. */
  flush(): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.records.length === 0) return;
      const file = encodeIndexRecords(this.encKey, this.records);
      this.records = [];
      this.bytes = 0;
      const name = sha256hex(file);
      if (this.opts.dryRun !== true) await this.backend.put({ type: 'index', name }, file);
      this.written.push(name);
      this.bytesWritten += file.length;
      this.opts.onWritten?.(name, file.length);
    };
    this.writing = this.writing.then(run, run);
    return this.writing;
  }
}
