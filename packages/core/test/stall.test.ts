import { describe, expect, it } from 'vitest';
import { StallWatch } from '../src/stall.js';

describe('StallWatch', () => {
  it('reports only gaps past the interval by the threshold, and keeps the longest gap', () => {
    const w = new StallWatch(100, 300);
    expect(w.tick(0)).toBeUndefined();
    expect(w.tick(100)).toBeUndefined();
    expect(w.tick(450)).toBeUndefined(); // blocked 250 ms
    expect(w.tick(850)).toBe(300);
    expect(w.tick(950)).toBeUndefined();
    expect(w.maxGapMs).toBe(400);
  });
});
