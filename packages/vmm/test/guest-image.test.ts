import { describe, expect, it } from 'vitest';
import { PAGE_BYTES } from '@ftvm/guest-abi';
import { GuestImage } from '../src/index.js';

const page = (v: number) => new Uint8Array(PAGE_BYTES).fill(v);
const allZero = (b: Uint8Array) => b.every((x) => x === 0);

describe('GuestImage growth', () => {
  it('reads zero wherever memory grows: fresh bytes, and bytes a shrink left behind', () => {
    const img = new GuestImage(8 * PAGE_BYTES);
    img.resize(4 * PAGE_BYTES);
    img.writePage(3, page(7));
    // Shrink below the written page, then grow again past it: the old bytes must not come back.
    img.resize(2 * PAGE_BYTES);
    img.resize(16 * PAGE_BYTES);
    expect(img.memBytes).toBe(16 * PAGE_BYTES);
    expect(allZero(img.memory().subarray(2 * PAGE_BYTES))).toBe(true);
    // The same through apply (an epoch that grows memory), after a shrink by apply.
    img.writePage(10, page(9));
    img.apply({ epoch: 1, memBytes: 8 * PAGE_BYTES, pages: new Uint32Array(0), data: new Uint8Array(0), globals: [], devices: null as never });
    img.apply({ epoch: 2, memBytes: 32 * PAGE_BYTES, pages: Uint32Array.of(20), data: page(5), globals: [], devices: null as never });
    const m = img.memory();
    expect(allZero(m.subarray(8 * PAGE_BYTES, 20 * PAGE_BYTES))).toBe(true);
    expect(m[20 * PAGE_BYTES]).toBe(5);
    expect(allZero(m.subarray(21 * PAGE_BYTES))).toBe(true);
  });

  it('an adopted image grows into its own buffer with the old bytes kept and the new ones zero', () => {
    const memory = new Uint8Array(4 * PAGE_BYTES).fill(3);
    const img = GuestImage.adopt({ epoch: 1, memBytes: 4 * PAGE_BYTES, memory, globals: [], devices: null as never } as never);
    img.resize(2 * PAGE_BYTES);
    img.resize(8 * PAGE_BYTES);
    const m = img.memory();
    expect(m.subarray(0, 2 * PAGE_BYTES).every((x) => x === 3)).toBe(true);
    expect(allZero(m.subarray(2 * PAGE_BYTES))).toBe(true);
  });
});
