import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PAGE_BYTES } from '@ftvm/guest-abi';
import { ImageDigest, digestEquals, digestImage, pageHash } from '../src/index.js';

describe('image digest', () => {
  it('equals the from-scratch digest after any sequence of page updates (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ page: fc.integer({ min: 0, max: 31 }), at: fc.integer({ min: 0, max: PAGE_BYTES - 1 }), value: fc.integer({ min: 0, max: 255 }) }), { maxLength: 60 }),
        (writes) => {
          const image = new Uint8Array(32 * PAGE_BYTES);
          const d = new ImageDigest();
          for (const w of writes) {
            image[w.page * PAGE_BYTES + w.at] = w.value;
            d.update(w.page, image, w.page * PAGE_BYTES);
          }
          expect(digestEquals(d.value(), digestImage(image))).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a transaction rolls back updates, growth and truncation exactly, and commit keeps them (property)', () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant('set' as const), page: fc.integer({ min: 0, max: 47 }), value: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ k: fc.constant('grow' as const), pages: fc.integer({ min: 0, max: 64 }) }),
      fc.record({ k: fc.constant('truncate' as const), pages: fc.integer({ min: 0, max: 48 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 20 }), fc.array(op, { maxLength: 20 }), fc.boolean(), (before, during, keep) => {
        const d = new ImageDigest();
        const run = (ops: typeof before, target: ImageDigest): void => {
          for (const o of ops) {
            if (o.k === 'set') target.update(o.page, new Uint8Array(PAGE_BYTES).fill(o.value));
            else if (o.k === 'grow') target.grow(o.pages);
            else target.truncate(o.pages);
          }
        };
        run(before, d);
        const snapshot = d.clone();
        const expectedAfter = d.clone();
        run(during, expectedAfter);
        d.begin();
        expect(d.inTransaction).toBe(true);
        run(during, d);
        if (keep) d.commit();
        else d.rollback();
        expect(d.inTransaction).toBe(false);
        const want = keep ? expectedAfter : snapshot;
        expect(Buffer.from(d.value()).toString('hex')).toBe(Buffer.from(want.value()).toString('hex'));
        expect(d.pageCount).toBe(want.pageCount);
        expect(Buffer.compare(d.hashes8(0, 64), want.hashes8(0, 64))).toBe(0);
        // The digest goes on correctly after the transaction.
        d.update(50, new Uint8Array(PAGE_BYTES).fill(9));
        want.update(50, new Uint8Array(PAGE_BYTES).fill(9));
        expect(Buffer.compare(d.value(), want.value())).toBe(0);
      }),
      { numRuns: 300 },
    );
    const d = new ImageDigest();
    d.begin();
    expect(() => d.begin()).toThrow(/already open/);
  });

  it('does not depend on the order pages were updated in', () => {
    const a = new ImageDigest();
    const b = new ImageDigest();
    const p1 = new Uint8Array(PAGE_BYTES).fill(1);
    const p2 = new Uint8Array(PAGE_BYTES).fill(2);
    a.update(5, p1);
    a.update(9, p2);
    b.update(9, p2);
    b.update(5, p1);
    expect(a.value()).toEqual(b.value());
  });

  it('changes when one byte of one page changes, and when a page moves', () => {
    const image = new Uint8Array(8 * PAGE_BYTES);
    image[3 * PAGE_BYTES + 17] = 1;
    const before = digestImage(image);
    image[3 * PAGE_BYTES + 18] = 1;
    expect(digestImage(image)).not.toEqual(before);
    const moved = new Uint8Array(8 * PAGE_BYTES);
    moved[4 * PAGE_BYTES + 17] = 1;
    moved[4 * PAGE_BYTES + 18] = 1;
    expect(digestImage(moved)).not.toEqual(digestImage(image));
  });

  it('ignores trailing zero pages, so growing memory keeps the digest', () => {
    const small = new Uint8Array(4 * PAGE_BYTES);
    small[5] = 7;
    const big = new Uint8Array(64 * PAGE_BYTES);
    big[5] = 7;
    expect(digestImage(big)).toEqual(digestImage(small));
    expect(digestImage(new Uint8Array(PAGE_BYTES))).toEqual(new Uint8Array(32));
  });

  it('truncate removes the dropped pages from the digest', () => {
    const image = new Uint8Array(8 * PAGE_BYTES).fill(3);
    const d = new ImageDigest();
    for (let p = 0; p < 8; p++) d.update(p, image, p * PAGE_BYTES);
    d.truncate(4);
    expect(d.value()).toEqual(digestImage(image.subarray(0, 4 * PAGE_BYTES)));
    expect(d.pageCount).toBe(4);
  });

  it('remove makes a page count as zero', () => {
    const d = new ImageDigest();
    d.update(0, new Uint8Array(PAGE_BYTES).fill(1));
    const one = d.value();
    d.update(3, new Uint8Array(PAGE_BYTES).fill(2));
    d.remove(3);
    expect(d.value()).toEqual(one);
  });

  it('clone is independent of the original', () => {
    const d = new ImageDigest();
    d.update(0, new Uint8Array(PAGE_BYTES).fill(1));
    const c = d.clone();
    c.update(1, new Uint8Array(PAGE_BYTES).fill(2));
    expect(d.value()).not.toEqual(c.value());
    expect(d.value()).toEqual(digestImage(new Uint8Array(PAGE_BYTES).fill(1)));
  });

  it('serves per-page hashes for a scrub slice, zero pages beyond the image', () => {
    const page = new Uint8Array(PAGE_BYTES).fill(9);
    const d = new ImageDigest();
    d.update(2, page);
    const h = d.hashes8(1, 3);
    expect(h.length).toBe(24);
    expect(h.subarray(8, 16)).toEqual(pageHash(page));
    expect(h.subarray(0, 8)).toEqual(pageHash(new Uint8Array(PAGE_BYTES)));
    expect(h.subarray(16, 24)).toEqual(pageHash(new Uint8Array(PAGE_BYTES)));
  });

  it('hashes an unaligned page like an aligned copy of it', () => {
    const buf = new Uint8Array(PAGE_BYTES + 1);
    for (let i = 0; i < buf.length; i++) buf[i] = (i * 31) & 0xff;
    const unaligned = buf.subarray(1);
    expect(pageHash(unaligned)).toEqual(pageHash(new Uint8Array(unaligned)));
  });

  it('refuses an image whose length is not whole pages', () => {
    expect(() => digestImage(new Uint8Array(100))).toThrow(expect.objectContaining({ code: 'FTVM_ERR_INVALID_OPTION' }));
  });
});
