/**
 * util/buffer-pool: a fixed ring of memory for a data path that holds a bounded number of bytes
 * at once (a window) and lets them go roughly in the order it took them: the archiver's chunks,
 * copied out of the read buffer, handed to the content store, done once stored.
 *
 * Why: a Buffer's memory is freed only when V8 collects the object that owns it; at gigabytes per
 * minute of 1 MiB chunks the dead ones pile up between collections (peak RSS), and every
 * allocation goes through malloc and the kernel (page faults). The ring is allocated once; take(n)
 * hands out the next n contiguous bytes, give() marks them done, and the start of the ring moves
 * past every done piece in order. A piece that cannot be had contiguously (the oldest piece still
 * held, the ring full) is a fresh allocation instead, counted in `stats.outside`: correctness never
 * waits on the order of release, only the memory saving does.
 *
 * A view from take() must be given back at most once, and not used after.
 */

interface Piece {
  start: number;
  end: number;
  done: boolean;
}

export class BufferRing {
  private readonly ring: Buffer;
  /** pieces held or done but not yet passed, oldest first */
  private readonly pieces: Piece[] = [];
  private first = 0;
  private readonly byStart = new Map<number, Piece>();
  /** where the next piece goes */
  private tail = 0;
  readonly stats = { taken: 0, outside: 0 };

  /** `capacity`: the ring's bytes (the window, plus one largest piece for the wrap) */
  constructor(capacity: number) {
    this.ring = Buffer.allocUnsafeSlow(capacity);
  }

  private get head(): number {
    return this.first < this.pieces.length ? this.pieces[this.first]!.start : this.tail;
  }

  /** A buffer of exactly `n` bytes (contents undefined). */
  take(n: number): Buffer {
    this.stats.taken++;
    const cap = this.ring.length;
    if (this.first === this.pieces.length) {
      // nothing held: start over at the beginning
      this.pieces.length = 0;
      this.first = 0;
      this.tail = 0;
    }
    const head = this.head;
    let start: number | undefined;
    if (this.first === this.pieces.length) start = n <= cap ? 0 : undefined;
    else if (this.tail > head) {
      // [head, tail) is held: room after the tail, else from the beginning up to the head
      if (cap - this.tail >= n) start = this.tail;
      else if (head >= n) start = 0;
    } else if (head - this.tail >= n) start = this.tail; // wrapped: room between the tail and the head
    if (start === undefined) {
      this.stats.outside++;
      return Buffer.allocUnsafeSlow(n);
    }
    const piece = { start, end: start + n, done: false };
    this.pieces.push(piece);
    this.byStart.set(start, piece);
    this.tail = start + n;
    return this.ring.subarray(start, start + n);
  }

  /** Gives a buffer from take() back. */
  give(b: Buffer): void {
    if (b.buffer !== this.ring.buffer) return; // made outside the ring: the collector has it
    const piece = this.byStart.get(b.byteOffset);
    if (piece === undefined || piece.done) return;
    piece.done = true;
    this.byStart.delete(piece.start);
    while (this.first < this.pieces.length && this.pieces[this.first]!.done) this.first++;
    if (this.first > 1024 && this.first * 2 > this.pieces.length) {
      this.pieces.splice(0, this.first);
      this.first = 0;
    }
  }
}

/**
 * Copies of small byte strings that live long (paths kept for the end of a restore), back to back
 * in blocks of their own. A small Buffer from Node's shared pool keeps the pool's whole 64 KiB
 * slab alive: kept one per directory while file paths are made in between, each pinned a slab
 * (measured: 59 MiB of slabs for the directories of 250,000 files). Here a copy pins only its
 * block, which is full of other kept copies.
 */
export class ByteArena {
  private block: Buffer | undefined;
  private fill = 0;
  private readonly blockSize: number;

  constructor(blockSize = 64 * 1024) {
    this.blockSize = blockSize;
  }

  /** A copy of `b` in the arena's memory. */
  copy(b: Uint8Array): Buffer {
    if (b.byteLength > this.blockSize / 4) {
      const own = Buffer.allocUnsafeSlow(b.byteLength);
      own.set(b);
      return own;
    }
    if (this.block === undefined || this.fill + b.byteLength > this.block.length) {
      this.block = Buffer.allocUnsafeSlow(this.blockSize);
      this.fill = 0;
    }
    const out = this.block.subarray(this.fill, this.fill + b.byteLength);
    out.set(b);
    this.fill += b.byteLength;
    return out;
  }
}
