import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { PAGE_BYTES, RESERVED_PAGES } from '@ftvm/guest-abi';
import { BytemapDirtyLog, copyPages, pagesInRange, ShadowDirtyLog } from '../src/index.js';

const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
};

describe('ShadowDirtyLog', () => {
  test('finds exactly the changed pages (property, seeded)', () => {
    const nPages = 64;
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.nat(nPages * PAGE_BYTES - 1), v: fc.integer({ min: 0, max: 255 }) }), { maxLength: 60 }),
        (writes) => {
          const mem = new Uint8Array(nPages * PAGE_BYTES);
          for (let i = 0; i < mem.length; i += 97) mem[i] = i & 0xff;
          const log = new ShadowDirtyLog(mem);
          const before = mem.slice();
          for (const w of writes) mem[w.at] = w.v;
          const want: number[] = [];
          for (let p = 0; p < nPages; p++) {
            const o = p * PAGE_BYTES;
            if (Buffer.compare(mem.subarray(o, o + PAGE_BYTES), before.subarray(o, o + PAGE_BYTES)) !== 0) want.push(p);
          }
          expect([...log.collect(mem).pages]).toEqual(want);
          expect([...log.collect(mem).pages]).toEqual([]); // the shadow was updated
        },
      ),
      { seed: 42, numRuns: 200 },
    );
  });

  test('reports non-zero pages that appeared when memory grew', () => {
    const log = new ShadowDirtyLog(new Uint8Array(4 * PAGE_BYTES));
    const grown = new Uint8Array(8 * PAGE_BYTES);
    grown[6 * PAGE_BYTES + 1] = 1;
    expect([...log.collect(grown).pages]).toEqual([6]);
  });

  test('reports reserved-region pages as ordinary pages (no bytemap there)', () => {
    const mem = new Uint8Array(4 * PAGE_BYTES);
    const log = new ShadowDirtyLog(mem);
    mem[5] = 1;
    const r = log.collect(mem);
    expect([...r.pages]).toEqual([0]);
    expect(r.reservedPages.length).toBe(0);
  });
});

describe('BytemapDirtyLog', () => {
  const MEM_PAGES = RESERVED_PAGES + 70; // not a multiple of 4: exercises the byte tail after the word scan

  test('returns marked pages sorted, splits out reserved ones, and clears the marks', () => {
    const mem = new Uint8Array(MEM_PAGES * PAGE_BYTES);
    for (const p of [RESERVED_PAGES + 69, RESERVED_PAGES, 3, RESERVED_PAGES + 4, RESERVED_PAGES + 5]) mem[p] = 1;
    const log = new BytemapDirtyLog();
    const r = log.collect(mem);
    expect([...r.pages]).toEqual([RESERVED_PAGES, RESERVED_PAGES + 4, RESERVED_PAGES + 5, RESERVED_PAGES + 69]);
    expect([...r.reservedPages]).toEqual([3]);
    expect(mem.subarray(0, MEM_PAGES).every((b) => b === 0)).toBe(true);
    expect(log.collect(mem).pages.length).toBe(0);
  });

  test('reports and clears non-1 garbage bytes a guest left in the bytemap', () => {
    const mem = new Uint8Array(MEM_PAGES * PAGE_BYTES);
    mem[RESERVED_PAGES + 9] = 0xff;
    mem[RESERVED_PAGES + 17] = 0x7f; // with the next byte: a NaN-patterned word
    mem[RESERVED_PAGES + 23] = 0xff;
    const r = new BytemapDirtyLog().collect(mem);
    expect([...r.pages]).toEqual([RESERVED_PAGES + 9, RESERVED_PAGES + 17, RESERVED_PAGES + 23]);
    expect(mem.subarray(0, MEM_PAGES).every((b) => b === 0)).toBe(true);
  });

  test('scans only the bytemap of the current memory size', () => {
    const mem = new Uint8Array(MEM_PAGES * PAGE_BYTES);
    mem[RESERVED_PAGES + 60] = 1;
    const r = new BytemapDirtyLog().collect(mem, (RESERVED_PAGES + 40) * PAGE_BYTES);
    expect(r.pages.length).toBe(0);
    expect(mem[RESERVED_PAGES + 60]).toBe(1);
  });

  test('collects many pages past its initial buffer', () => {
    const mem = new Uint8Array((RESERVED_PAGES + 5000) * PAGE_BYTES);
    mem.fill(1, RESERVED_PAGES, RESERVED_PAGES + 5000);
    expect(new BytemapDirtyLog().collect(mem).pages.length).toBe(5000);
  });

  test('rejects a byteLength that is not whole pages or exceeds the memory', () => {
    const mem = new Uint8Array(RESERVED_PAGES * PAGE_BYTES);
    expect(code(() => new BytemapDirtyLog().collect(mem, 100))).toBe('FTVM_ERR_DIRTYLOG_MEMORY');
    expect(code(() => new BytemapDirtyLog().collect(mem, mem.length + PAGE_BYTES))).toBe('FTVM_ERR_DIRTYLOG_MEMORY');
  });
});

describe('pagesInRange', () => {
  test('covers every page touching [from, to)', () => {
    expect([...pagesInRange(65536, 131072)]).toEqual(Array.from({ length: 16 }, (_, i) => 16 + i));
    expect([...pagesInRange(4095, 4097)]).toEqual([0, 1]);
    expect(pagesInRange(10, 10).length).toBe(0);
    expect(code(() => pagesInRange(10, 5))).toBe('FTVM_ERR_DIRTYLOG_RANGE');
  });
});

describe('copyPages', () => {
  test('copies pages contiguously in the given order, coalescing runs', () => {
    const mem = new Uint8Array(10 * PAGE_BYTES);
    for (let p = 0; p < 10; p++) mem.fill(p + 1, p * PAGE_BYTES, (p + 1) * PAGE_BYTES);
    const out = copyPages(mem, [2, 3, 4, 7, 1]);
    expect(out.length).toBe(5 * PAGE_BYTES);
    expect([0, 1, 2, 3, 4].map((i) => out[i * PAGE_BYTES + 17])).toEqual([3, 4, 5, 8, 2]);
  });

  test('fills a caller buffer and refuses one too small or a page outside memory', () => {
    const mem = new Uint8Array(4 * PAGE_BYTES).fill(9);
    const buf = new Uint8Array(3 * PAGE_BYTES);
    expect(copyPages(mem, [1, 2], buf).length).toBe(2 * PAGE_BYTES);
    expect(buf[PAGE_BYTES]).toBe(9);
    expect(code(() => copyPages(mem, [1, 2], new Uint8Array(PAGE_BYTES)))).toBe('FTVM_ERR_DIRTYLOG_OUT_TOO_SMALL');
    expect(code(() => copyPages(mem, [3, 4]))).toBe('FTVM_ERR_DIRTYLOG_RANGE');
  });
});

describe('the @ftvm/instrument/dirty-log entry point', () => {
  test('imports nothing that loads binaryen (the vCPU worker imports it on every restore)', async () => {
    const { readFileSync } = await import('node:fs');
    const seen = new Set<string>();
    const visit = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      const src = readFileSync(new URL(`../src/${file}`, import.meta.url), 'utf8');
      for (const [, spec] of src.matchAll(/from '([^']+)'/g)) {
        expect(spec).not.toBe('binaryen');
        if (spec!.startsWith('./')) visit(spec!.slice(2).replace(/\.js$/, '.ts'));
        else expect(spec).toBe('@ftvm/guest-abi');
      }
    };
    visit('dirty-log.ts');
    expect([...seen].sort()).toEqual(['dirty-log.ts', 'errors.ts']);
  });
});
