import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Reservoir, Ring } from '../src/index.js';

describe('Ring', () => {
  it('keeps exactly the newest min(n, capacity) items, oldest first', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 50 }), fc.array(fc.integer(), { maxLength: 200 }), (cap, xs) => {
      const r = new Ring<number>(cap);
      for (const x of xs) r.push(x);
      const want = xs.slice(Math.max(0, xs.length - cap));
      expect(r.toArray()).toEqual(want);
      expect(r.length).toBe(want.length);
      expect(r.first()).toBe(want[0]);
      expect(r.last()).toBe(want[want.length - 1]);
    }));
  });

  it('refuses a zero or fractional capacity', () => {
    expect(() => new Ring(0)).toThrow(expect.objectContaining({ code: 'FTVM_ERR_INVALID_OPTION' }));
    expect(() => new Ring(1.5)).toThrow(expect.objectContaining({ code: 'FTVM_ERR_INVALID_OPTION' }));
  });
});

describe('Reservoir', () => {
  it('gives nearest-rank percentiles of a small interval exactly', () => {
    const r = new Reservoir(100);
    for (let i = 1; i <= 100; i++) r.add(i);
    expect(r.percentile(0.5)).toBe(50);
    expect(r.percentile(0.99)).toBe(99);
    expect(r.percentile(1)).toBe(100);
    expect(r.max).toBe(100);
    expect(r.count).toBe(100);
  });

  it('returns null when nothing was observed since the last reset', () => {
    const r = new Reservoir(8);
    r.add(5);
    r.reset();
    expect(r.percentile(0.5)).toBeNull();
    expect(r.count).toBe(0);
  });

  it('keeps a bounded, representative sample of a long interval and the true max', () => {
    const r = new Reservoir(256);
    for (let i = 0; i < 100_000; i++) r.add(i % 1000);
    r.add(5000);
    expect(r.count).toBe(100_001);
    expect(r.max).toBe(5000);
    const p50 = r.percentile(0.5)!;
    expect(p50).toBeGreaterThan(350);
    expect(p50).toBeLessThan(650);
  });
});
