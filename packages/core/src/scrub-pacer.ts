import { CORE_ERR, CoreOptionError } from './errors.js';

/**
 * How fast the integrity scrub walks memory. The scrub copies a slice of real memory at
 * an epoch's hold and both nodes hash it; each slice is a request and an answer on the
 * replication link. A fixed slice per epoch makes its cost follow the epoch rate (a busy
 * adaptive primary ends 300-400 epochs/s) and its coverage too (an idle one scrubbed
 * 20 x 32 pages/s). Paced by time instead, a pass over memory takes about
 * `memory pages / pagesPerSecond` seconds whatever the epoch rate, as long as epochs
 * end at least `pagesPerSecond / maxSlice` times a second.
 */
export interface ScrubPacing {
  /** Pages the scrub compares per second. Default 4096 (16 MiB/s: 64 MiB in 4 s, 1 GiB in 64 s). */
  pagesPerSecond: number;
  /** Least pages in a slice: a smaller share waits for a later epoch. Default 32. */
  minSlice: number;
  /** Most pages in a slice (each is copied in the epoch's hold). Default 64 (~30 µs). */
  maxSlice: number;
}

export const SCRUB_PACING: Readonly<ScrubPacing> = Object.freeze({ pagesPerSecond: 4096, minSlice: 32, maxSlice: 64 });

/**
 * Pure: the caller passes the time of each epoch end and gets the slice to scrub with
 * it (0: none this epoch). Credit accrues at pagesPerSecond, at most maxSlice of it; an
 * epoch scrubs once at least minSlice pages are due. The first epoch scrubs minSlice.
 */
export class ScrubPacer {
  readonly pacing: Readonly<ScrubPacing>;
  private credit: number;
  private lastMs: number | undefined;

  constructor(pacing: Partial<ScrubPacing> = {}) {
    const p = { ...SCRUB_PACING, ...pacing };
    if (!(Number.isFinite(p.pagesPerSecond) && p.pagesPerSecond > 0)) throw new CoreOptionError(CORE_ERR.OPTION, `scrub pagesPerSecond must be > 0, got ${p.pagesPerSecond}`);
    if (!Number.isSafeInteger(p.minSlice) || p.minSlice < 1) throw new CoreOptionError(CORE_ERR.OPTION, `scrub minSlice must be an integer >= 1, got ${p.minSlice}`);
    if (!Number.isSafeInteger(p.maxSlice) || p.maxSlice < p.minSlice) throw new CoreOptionError(CORE_ERR.OPTION, `scrub maxSlice must be an integer >= minSlice (${p.minSlice}), got ${p.maxSlice}`);
    this.pacing = Object.freeze(p);
    this.credit = p.minSlice;
  }

  /** Pages to scrub with the epoch ending at `nowMs` (monotonic ms): 0, or minSlice..maxSlice. */
  take(nowMs: number): number {
    const { pagesPerSecond, minSlice, maxSlice } = this.pacing;
    if (this.lastMs !== undefined && nowMs > this.lastMs) this.credit = Math.min(maxSlice, this.credit + ((nowMs - this.lastMs) * pagesPerSecond) / 1000);
    if (this.lastMs === undefined || nowMs > this.lastMs) this.lastMs = nowMs;
    if (this.credit < minSlice) return 0;
    const n = Math.floor(this.credit);
    this.credit -= n;
    return n;
  }
}
