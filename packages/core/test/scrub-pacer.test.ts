import { describe, expect, it } from 'vitest';
import { SCRUB_PACING, ScrubPacer } from '../src/scrub-pacer.js';
import { CoreOptionError } from '../src/errors.js';

/** Pages scrubbed over `seconds` with an epoch every `everyMs`. */
function scrubbed(p: ScrubPacer, everyMs: number, seconds: number): { pages: number; slices: number[] } {
  const slices: number[] = [];
  for (let t = 0; t <= seconds * 1000; t += everyMs) {
    const n = p.take(t);
    if (n > 0) slices.push(n);
  }
  return { pages: slices.reduce((a, b) => a + b, 0), slices };
}

describe('ScrubPacer', () => {
  it('scrubs minSlice with the first epoch', () => {
    expect(new ScrubPacer().take(1000)).toBe(SCRUB_PACING.minSlice);
  });

  it('walks memory at pagesPerSecond whatever the epoch rate, in slices of minSlice..maxSlice', () => {
    for (const everyMs of [2.5, 3, 5, 10, 15]) {
      const { pages, slices } = scrubbed(new ScrubPacer(), everyMs, 10);
      // 10 s at 4096 pages/s, plus the first slice; at most one slice of rounding short.
      expect(pages).toBeGreaterThan(40_960 - 64);
      expect(pages).toBeLessThanOrEqual(40_960 + 32);
      for (const n of slices) {
        expect(n).toBeGreaterThanOrEqual(32);
        expect(n).toBeLessThanOrEqual(64);
      }
    }
  });

  it('a busy primary (370 epochs/s) scrubs in about one epoch of three, not every epoch', () => {
    const { slices } = scrubbed(new ScrubPacer(), 1000 / 370, 10);
    expect(slices.length).toBeGreaterThan(1100);
    expect(slices.length).toBeLessThan(1400);
  });

  it('slow epochs scrub maxSlice each: coverage is maxSlice x epochs/s below pagesPerSecond / maxSlice epochs/s', () => {
    // Adaptive's longest epoch (50 ms): 20 epochs/s x 64 = 1280 pages/s; credit never piles up past one slice.
    const { pages, slices } = scrubbed(new ScrubPacer(), 50, 10);
    expect(slices[0]).toBe(32);
    expect(slices.slice(1).every((n) => n === 64)).toBe(true);
    expect(pages).toBe(32 + 200 * 64);
  });

  it('a clock that stands still or steps back adds no credit', () => {
    const p = new ScrubPacer();
    expect(p.take(100)).toBe(32);
    expect(p.take(100)).toBe(0);
    expect(p.take(50)).toBe(0);
    // 100 -> 110 ms: 41 pages due.
    expect(p.take(110)).toBe(40);
  });

  it('rejects nonsense pacing with a coded error', () => {
    expect(() => new ScrubPacer({ pagesPerSecond: 0 })).toThrow(CoreOptionError);
    expect(() => new ScrubPacer({ minSlice: 0 })).toThrow(/minSlice/);
    expect(() => new ScrubPacer({ minSlice: 64, maxSlice: 32 })).toThrow(/maxSlice/);
    expect(() => new ScrubPacer({ pagesPerSecond: Number.NaN })).toThrow(/pagesPerSecond/);
  });
});
