import { MetricsError } from './errors.js';

/** A fixed-capacity ring: pushing past capacity drops the oldest item. */
export class Ring<T> {
  private readonly items: (T | undefined)[];
  private start = 0;
  private size = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1_000_000) {
      throw new MetricsError('FTVM_ERR_INVALID_OPTION', `ring capacity must be an integer in 1..1000000, got ${String(capacity)}`);
    }
    this.items = new Array<T | undefined>(capacity);
  }

  get length(): number {
    return this.size;
  }

  push(item: T): void {
    if (this.size < this.capacity) {
      this.items[(this.start + this.size) % this.capacity] = item;
      this.size++;
    } else {
      this.items[this.start] = item;
      this.start = (this.start + 1) % this.capacity;
    }
  }

  /** Oldest first. */
  toArray(): T[] {
    const out: T[] = new Array<T>(this.size);
    for (let i = 0; i < this.size; i++) out[i] = this.items[(this.start + i) % this.capacity] as T;
    return out;
  }

  /** The oldest item (the next one dropped). */
  first(): T | undefined {
    return this.size === 0 ? undefined : this.items[this.start];
  }

  last(): T | undefined {
    return this.size === 0 ? undefined : this.items[(this.start + this.size - 1) % this.capacity];
  }
}

/**
 * Observations of one sampling interval, for percentiles on the status page. Holds at most
 * `capacity` values: past that it keeps a uniform random sample (reservoir sampling), so a
 * burst of 100k epochs per second costs the same memory as 100.
 */
export class Reservoir {
  private readonly values: Float64Array;
  private n = 0;
  private maxSeen = 0;
  private rng = 0x9e3779b9;

  constructor(readonly capacity = 1024) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1_000_000) {
      throw new MetricsError('FTVM_ERR_INVALID_OPTION', `reservoir capacity must be an integer in 1..1000000, got ${String(capacity)}`);
    }
    this.values = new Float64Array(capacity);
  }

  /** Observations since the last reset (not only the kept ones). */
  get count(): number {
    return this.n;
  }

  get max(): number {
    return this.maxSeen;
  }

  add(v: number): void {
    if (this.n === 0 || v > this.maxSeen) this.maxSeen = v;
    if (this.n < this.capacity) {
      this.values[this.n] = v;
    } else {
      const j = this.nextRandom() % (this.n + 1);
      if (j < this.capacity) this.values[j] = v;
    }
    this.n++;
  }

  /** Nearest-rank percentile (p in 0..1) of the kept values; null when empty. */
  percentile(p: number): number | null {
    const kept = Math.min(this.n, this.capacity);
    if (kept === 0) return null;
    const sorted = this.values.slice(0, kept).sort();
    const rank = Math.min(kept - 1, Math.max(0, Math.ceil(p * kept) - 1));
    return sorted[rank]!;
  }

  reset(): void {
    this.n = 0;
    this.maxSeen = 0;
  }

  // xorshift32: deterministic, allocation-free; statistical quality is ample for sampling.
  private nextRandom(): number {
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    return this.rng;
  }
}
