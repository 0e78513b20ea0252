/**
 * maintenance: the operations that rewrite or remove repository files: prune (drop data no
 * snapshot references, repack partly used packs), repair index (rebuild the index from pack
 * headers) and repair snapshots (rewrite snapshots without what is lost). Each writes its new
 * files durably before it deletes anything, so a crash at any instant leaves a valid
 * repository (see docs/design.md, "Prune" and "Repair").
 *
 * This file: what they share: an index-file writer, the phase hook used to test crash points,
 * and the per-pack view of the in-memory index.
 */
import type { Backend } from '../storage/backend.ts';
import type { ChunkIndex } from '../content/index-table.ts';
import { encodeIndexRecords, sha256hex } from '../content/pack.ts';
import type { PackEntry } from '../content/pack.ts';
import { SEAL_OVERHEAD } from '../crypto/index.ts';
import type { EventSink } from '../events/index.ts';

/** index records gathered before one index file is written (as the content store does) */
export const INDEX_FILE_BYTES = 4 * 1024 * 1024;
/** bytes of an index record per pack (id, size, count) and per blob entry */
export const INDEX_PACK_BYTES = 32 + 8;
export const INDEX_ENTRY_BYTES = 1 + 32 + 12;
/** sealed index file overhead: seal + magic, version, pack count */
export const INDEX_FILE_OVERHEAD = SEAL_OVERHEAD + 9;

/**
 * Writes pack records (encodeIndexRecord) as sealed index files of about INDEX_FILE_BYTES each.
 * A resolved add()/finish() means the files written so far are durable (Backend.put). In a dry
 * run nothing is stored, but names and sizes are computed the same way.
 */
export class IndexWriter {
  private readonly backend: Backend;
  private readonly encKey: Buffer;
  private readonly dryRun: boolean;
  private records: Buffer[] = [];
  private bytes = 0;
  readonly written: string[] = [];
  bytesWritten = 0;
  packs = 0;

  constructor(backend: Backend, encKey: Buffer, dryRun = false) {
    this.backend = backend;
    this.encKey = encKey;
    this.dryRun = dryRun;
  }

  async add(record: Buffer): Promise<void> {
    this.records.push(record);
    this.bytes += record.length;
    this.packs++;
    if (this.bytes >= INDEX_FILE_BYTES) await this.write();
  }

  async finish(): Promise<void> {
    await this.write();
  }

  private async write(): Promise<void> {
    if (this.records.length === 0) return;
    const file = encodeIndexRecords(this.encKey, this.records);
    this.records = [];
    this.bytes = 0;
    const name = sha256hex(file);
    if (!this.dryRun) await this.backend.put({ type: 'index', name }, file);
    this.written.push(name);
    this.bytesWritten += file.length;
  }
}

/**
 * Environment variable naming a phase at which prune or repair stops and waits forever, after
 * emitting the warning `MESHBACK_TEST_PRUNE_PAUSE: paused at phase <phase>`: a test can then
 * kill the process at exactly that point (see the phase lists in prune.ts and repair.ts).
 */
export const PAUSE_ENV = 'MESHBACK_TEST_PRUNE_PAUSE';

/** Calls the caller's hook, then pauses if PAUSE_ENV names this phase. */
export async function reachPhase<P extends string>(phase: P, emit: EventSink, onPhase?: (phase: P) => void | Promise<void>): Promise<void> {
  if (onPhase !== undefined) await onPhase(phase);
  if (process.env[PAUSE_ENV] === phase) {
    emit({ type: 'warning', message: `${PAUSE_ENV}: paused at phase ${phase}` });
    // an interval keeps the process alive; the promise never settles
    await new Promise<never>(() => setInterval(() => undefined, 1 << 30));
  }
}

/**
 * The entries of a ChunkIndex grouped by pack number, without an object per blob: `order`
 * holds entry numbers sorted by pack (counting sort), `start[pn]..start[pn+1]` the range of
 * pack pn.
 */
export class EntriesByPack {
  readonly order: Uint32Array;
  readonly start: Uint32Array;
  private readonly index: ChunkIndex;

  constructor(index: ChunkIndex) {
    this.index = index;
    const packs = index.packs.length;
    const n = index.size;
    const start = new Uint32Array(packs + 1);
    for (let e = 0; e < n; e++) start[index.packOf(e) + 1]!++;
    for (let p = 0; p < packs; p++) start[p + 1]! += start[p]!;
    const fill = start.slice(0, packs);
    const order = new Uint32Array(n);
    for (let e = 0; e < n; e++) order[fill[index.packOf(e)]!++] = e;
    this.order = order;
    this.start = start;
  }

  count(pn: number): number {
    return this.start[pn + 1]! - this.start[pn]!;
  }

  /** Entry numbers of pack pn. */
  entries(pn: number): Uint32Array {
    return this.order.subarray(this.start[pn]!, this.start[pn + 1]!);
  }

  /** The index's entries of pack pn as PackEntry objects (ids copied), for encodeIndexRecord. */
  packEntries(pn: number): PackEntry[] {
    const ix = this.index;
    return Array.from(this.entries(pn), (e) => ({ type: ix.typeOf(e), id: Buffer.from(ix.idOf(e)), offset: ix.offsetOf(e), length: ix.lengthOf(e), rawLength: ix.rawLengthOf(e) }));
  }
}

/** A bit per index entry. */
export class EntryBits {
  private readonly bits: Uint8Array;
  constructor(n: number) {
    this.bits = new Uint8Array((n + 7) >>> 3);
  }
  has(e: number): boolean {
    return (this.bits[e >>> 3]! & (1 << (e & 7))) !== 0;
  }
  set(e: number): void {
    this.bits[e >>> 3]! |= 1 << (e & 7);
  }
}
