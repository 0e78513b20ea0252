/**
 * Semaphore: at most `limit` units held at once (a unit is one operation, or a byte, ...).
 * Waiters are served first come, first served, and a released unit is handed straight to the
 * next waiter (a newcomer never overtakes a waiter). One request larger than the whole limit
 * still runs, alone, so no request waits forever.
 *
 * tryAcquire() is the allocation-free fast path; acquire() returns a promise only to wait.
 */
export class Semaphore {
  readonly limit: number;
  private used = 0;
  /** FIFO of waiters; `head` is the next one (no O(n) shift per wake). */
  private waiters: { n: number; wake: () => void }[] = [];
  private head = 0;

  constructor(limit: number) {
    if (!Number.isFinite(limit) || limit < 1) throw new RangeError(`a semaphore needs a limit of at least 1, not ${limit}`);
    this.limit = Math.floor(limit);
  }

  /** Units held now. */
  get inUse(): number {
    return this.used;
  }

  /** Requests waiting now. */
  get waiting(): number {
    return this.waiters.length - this.head;
  }

  private fits(n: number): boolean {
    return this.used === 0 || this.used + n <= this.limit;
  }

  /** Takes `n` units if they are free and nobody waits; false otherwise. */
  tryAcquire(n = 1): boolean {
    if (this.head === this.waiters.length && this.fits(n)) {
      this.used += n;
      return true;
    }
    return false;
  }

  /** Resolves once `n` units are held by the caller, who must release(n) them. */
  acquire(n = 1): Promise<void> {
    if (this.tryAcquire(n)) return Promise.resolve();
    return new Promise<void>((wake) => this.waiters.push({ n, wake }));
  }

  release(n = 1): void {
    this.used -= n;
    if (this.used < 0) throw new Error('semaphore released more than was acquired');
    while (this.head < this.waiters.length) {
      const w = this.waiters[this.head]!;
      if (!this.fits(w.n)) break;
      this.waiters[this.head++] = undefined as never;
      this.used += w.n;
      w.wake();
    }
    if (this.head === this.waiters.length) {
      if (this.head > 0) this.waiters = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.waiters.length) {
      this.waiters = this.waiters.slice(this.head);
      this.head = 0;
    }
  }

  /** Runs fn holding one unit. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.tryAcquire()) await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
}
