import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PAGE_BYTES } from '@ftvm/guest-abi';
import { EpochCopy } from '../src/epoch-copy.js';
import { GuestImage, Vmm, checkpointDigest, prepareGuest, readGuest } from '@ftvm/vmm';

const PAGES = 64;

describe('EpochCopy', () => {
  it('yields the memory at the hold for every dirty page, however writes interleave with early copies', () => {
    // A script of steps: write a page (it becomes dirty in the "log"), take the log, copy a slice.
    const step = fc.oneof(
      fc.record({ k: fc.constant('write' as const), page: fc.integer({ min: 0, max: PAGES - 1 }), v: fc.integer({ min: 1, max: 255 }) }),
      fc.record({ k: fc.constant('take' as const) }),
      fc.record({ k: fc.constant('step' as const), n: fc.integer({ min: 1, max: 8 }) }),
    );
    fc.assert(
      fc.property(fc.array(fc.array(step, { maxLength: 60 }), { minLength: 1, maxLength: 4 }), (epochs) => {
        const mem = new Uint8Array(PAGES * PAGE_BYTES);
        const base = mem.slice(); // the image as of the previous collect
        const ec = new EpochCopy();
        for (const script of epochs) {
          let log = new Set<number>();
          const dirtyThisEpoch = new Set<number>();
          for (const s of script) {
            if (s.k === 'write') {
              mem.fill(s.v, s.page * PAGE_BYTES + (s.v % 100), s.page * PAGE_BYTES + (s.v % 100) + 50);
              log.add(s.page);
              dirtyThisEpoch.add(s.page);
            } else if (s.k === 'take') {
              ec.take(Uint32Array.from(log));
              log = new Set();
            } else {
              ec.step(mem, s.n);
            }
          }
          const got = ec.finish(mem, Uint32Array.from(log));
          expect(new Set(got.pages)).toEqual(dirtyThisEpoch);
          expect(got.pages.length).toBe(dirtyThisEpoch.size);
          for (let i = 0; i < got.pages.length; i++) {
            const p = got.pages[i]!;
            base.set(got.data.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES), p * PAGE_BYTES);
          }
          expect(Buffer.from(base).equals(Buffer.from(mem))).toBe(true);
        }
      }),
      { numRuns: 300, seed: 7 },
    );
  });
});

describe('early copy in the vCPU worker', () => {
  it('copies pages between events, and full + incremental collects still rebuild the live memory exactly', async () => {
    const { name, wasm } = readGuest('dirtier');
    const vmm = await Vmm.boot(prepareGuest(name, wasm));
    try {
      const img = new GuestImage();
      img.apply(await vmm.collect(true));
      vmm.open(1);
      vmm.input(1, Buffer.from('SET ws_pages=2048 rate=20000 pattern=random tick_ms=1\n'));
      let early = 0;
      let dirty = 0;
      for (let i = 0; i < 15; i++) {
        await new Promise((r) => setTimeout(r, 40));
        const c = await vmm.collect();
        early += c.earlyPages;
        dirty += c.pages.length;
        img.apply(c);
      }
      vmm.input(1, Buffer.from('STOP\n'));
      img.apply(await vmm.collect());
      const live = await vmm.capture();
      expect(img.memBytes).toBe(live.memBytes);
      expect(checkpointDigest({ ...live, memory: img.memory() })).toBe(checkpointDigest(live));
      expect(dirty).toBeGreaterThan(1000);
      expect(early).toBeGreaterThan(0);
    } finally {
      await vmm.stop();
    }
  });

  it('is off with earlyCopy: false (every page is copied in the hold)', async () => {
    const { name, wasm } = readGuest('dirtier');
    const vmm = await Vmm.boot(prepareGuest(name, wasm), { earlyCopy: false });
    try {
      await vmm.collect(true);
      vmm.open(1);
      vmm.input(1, Buffer.from('SET ws_pages=512 rate=20000 pattern=random tick_ms=1\n'));
      await new Promise((r) => setTimeout(r, 60));
      const c = await vmm.collect();
      expect(c.pages.length).toBeGreaterThan(0);
      expect(c.earlyPages).toBe(0);
    } finally {
      await vmm.stop();
    }
  });
});

describe('a full collect in the background', () => {
  it('copies every page while the guest runs, and the result plus later epochs rebuilds the live memory exactly', async () => {
    const { name, wasm } = readGuest('dirtier');
    const vmm = await Vmm.boot(prepareGuest(name, wasm));
    try {
      vmm.open(1);
      vmm.input(1, Buffer.from('SET ws_pages=4096 rate=0\nFILL\n'));
      await vmm.collect();
      vmm.input(1, Buffer.from('SET ws_pages=4096 rate=40000 pattern=random tick_ms=1\n'));
      await new Promise((r) => setTimeout(r, 30));
      const full = await vmm.collect(true, true, undefined, { background: true });
      // Every page went through the background copy; pages are each listed once, sorted.
      expect(full.pages.length).toBe(full.memBytes / PAGE_BYTES - full.pages[0]!);
      expect(full.earlyPages).toBeGreaterThanOrEqual(full.pages.length);
      for (let i = 1; i < full.pages.length; i++) expect(full.pages[i]).toBe(full.pages[i - 1]! + 1);
      const img = new GuestImage();
      img.apply(full);
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 20));
        img.apply(await vmm.collect());
      }
      vmm.input(1, Buffer.from('STOP\n'));
      img.apply(await vmm.collect());
      const live = await vmm.capture();
      expect(checkpointDigest({ ...live, memory: img.memory() })).toBe(checkpointDigest(live));
    } finally {
      await vmm.stop();
    }
  });

  it('completes in the hold when the vCPU is paused meanwhile (nothing waits for a guest that cannot run)', async () => {
    const { name, wasm } = readGuest('dirtier');
    const vmm = await Vmm.boot(prepareGuest(name, wasm));
    try {
      vmm.open(1);
      vmm.input(1, Buffer.from('SET ws_pages=8192 rate=0\nFILL\n'));
      await vmm.collect();
      const fullP = vmm.collect(true, true, undefined, { background: true });
      await vmm.pause();
      const full = await fullP;
      expect(full.pages.length).toBe(full.memBytes / PAGE_BYTES - full.pages[0]!);
      const before = await vmm.collectDirty();
      expect(before.pages.length).toBe(0);
      vmm.resume();
    } finally {
      await vmm.stop();
    }
  });
});
