/**
 * server/rate: token buckets per client, for the API's rate limits (triggers per minute, failed
 * authentications per minute). A bucket holds at most `capacity` tokens and gains `capacity`
 * per `periodMs`; a request takes one; an empty bucket answers how long until the next token.
 * At most `maxClients` buckets are kept: the fullest (least recently limited) go first.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly capacity: number;
  private readonly periodMs: number;
  private readonly maxClients: number;
  private readonly now: () => number;

  constructor(capacity: number, periodMs: number, opts: { maxClients?: number; now?: () => number } = {}) {
    this.capacity = capacity;
    this.periodMs = periodMs;
    this.maxClients = opts.maxClients ?? 10_000;
    this.now = opts.now ?? (() => Date.now());
  }

  private bucket(key: string): { tokens: number; at: number } {
    const t = this.now();
    let b = this.buckets.get(key);
    if (b === undefined) {
      b = { tokens: this.capacity, at: t };
      if (this.buckets.size >= this.maxClients) this.evict();
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.capacity, b.tokens + ((t - b.at) * this.capacity) / this.periodMs);
      b.at = t;
    }
    return b;
  }

  /** seconds until `key` has a token again (0: it has one now) */
  wait(key: string): number {
    const b = this.bucket(key);
    return b.tokens >= 1 ? 0 : Math.max(1, Math.ceil(((1 - b.tokens) * this.periodMs) / this.capacity / 1000));
  }

  /** takes a token of `key`: 0 when there was one, else the seconds until there is one (nothing taken) */
  take(key: string): number {
    const w = this.wait(key);
    if (w === 0) this.buckets.get(key)!.tokens -= 1;
    return w;
  }

  private evict(): void {
    for (const [k, b] of this.buckets) {
      if (this.buckets.size < this.maxClients) return;
      if (b.tokens >= this.capacity - 1) this.buckets.delete(k);
    }
    // all limited: drop the oldest
    while (this.buckets.size >= this.maxClients) this.buckets.delete(this.buckets.keys().next().value!);
  }
}
