/** A seeded random source (mulberry32): same seed, same run. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  int(lo: number, hiInclusive: number): number {
    return lo + Math.floor(this.next() * (hiInclusive - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

interface Scheduled {
  at: number;
  seq: number;
  fn: () => void;
}

/** A manual clock with an ordered event queue: nothing happens until run() advances time. */
export class SimClock {
  now = 0;
  private q: Scheduled[] = [];
  private seq = 0;

  at(t: number, fn: () => void): void {
    const e = { at: Math.max(t, this.now), seq: this.seq++, fn };
    // Binary insert keeps (at, seq) order: same-time events run in scheduling order.
    let lo = 0;
    let hi = this.q.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const m = this.q[mid]!;
      if (m.at < e.at || (m.at === e.at && m.seq < e.seq)) lo = mid + 1;
      else hi = mid;
    }
    this.q.splice(lo, 0, e);
  }

  after(ms: number, fn: () => void): void {
    this.at(this.now + ms, fn);
  }

  /** Runs every event due up to now + ms, in order, then sets the clock there. */
  run(ms: number): void {
    const end = this.now + ms;
    let guard = 0;
    while (this.q.length > 0 && this.q[0]!.at <= end) {
      const e = this.q.shift()!;
      this.now = e.at;
      e.fn();
      if (++guard > 5_000_000) throw new Error('simulation does not settle (event storm)');
    }
    this.now = end;
  }
}
