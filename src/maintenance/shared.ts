/**
 * maintenance: the operations that rewrite or remove repository files: prune (drop data no
 * snapshot references, repack partly used packs), repair index (rebuild the index from pack
 * headers) and repair snapshots (rewrite snapshots without what is lost). Each writes its new
 * files durably before it deletes anything, so a crash at any instant leaves a valid
 * repository (see docs/design.md, "Prune" and "Repair").
 *
 * This file: what they share: the phase hook used to test crash points and the per-pack view of
 * the in-memory index (index files are written by content/index-writer.ts).
 */
import type { ChunkIndex } from '../content/index-table.ts';
import type { PackEntry } from '../content/pack.ts';
import type { EventSink } from '../events/index.ts';

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
