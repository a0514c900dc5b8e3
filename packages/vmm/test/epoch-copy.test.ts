import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PAGE_BYTES } from '@ftvm/guest-abi';
import { EPOCH_COPY_POOL_MAX, EPOCH_COPY_POOL_MAX_BYTES, EpochCopy } from '../src/epoch-copy.js';
import { GuestImage, Vmm, checkpointDigest, prepareGuest, readGuest } from '@ftvm/vmm';

const PAGES = 64;

describe('EpochCopy', () => {
  it('yields the memory at the hold for every dirty page, however writes interleave with early copies', () => {
    // A script of steps: write a page (it becomes dirty in the "log"), take the log, copy a slice.
    const step = fc.oneof(
      fc.record({ k: fc.constant('write' as const), page: fc.integer({ min: 0, max: PAGES - 1 }), v: fc.integer({ min: 1, max: 255 }) }),
      fc.record({ k: fc.constant('take' as const) }),
      fc.record({ k: fc.constant('step' as const), n: fc.integer({ min: 1, max: 40 }) }),
      fc.record({ k: fc.constant('prepare' as const), scrub: fc.integer({ min: 0, max: 8 }) }),
    );
    fc.assert(
      fc.property(fc.array(fc.array(step, { maxLength: 60 }), { minLength: 1, maxLength: 4 }), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }), (epochs, giveBack) => {
        const mem = new Uint8Array(PAGES * PAGE_BYTES);
        const base = mem.slice(); // the image as of the previous collect
        const ec = new EpochCopy();
        for (const [e, script] of epochs.entries()) {
          let log = new Set<number>();
          const dirtyThisEpoch = new Set<number>();
          for (const s of script) {
            if (s.k === 'write') {
              mem.fill(s.v, s.page * PAGE_BYTES + (s.v % 100), s.page * PAGE_BYTES + (s.v % 100) + 50);
              // A page's first byte too: it is the one a touch-ahead writes into a free slot.
              mem[s.page * PAGE_BYTES] = s.v;
              log.add(s.page);
              dirtyThisEpoch.add(s.page);
            } else if (s.k === 'take') {
              ec.take(Uint32Array.from(log));
              log = new Set();
            } else if (s.k === 'step') {
              ec.step(mem, s.n);
            } else {
              ec.prepare(s.scrub * PAGE_BYTES);
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
          // A reader done with the epoch hands its buffer back: stale bytes must never reach a later epoch.
          if (giveBack[e]) {
            new Uint8Array(got.data.buffer).fill(0xa5);
            ec.give(got.data.buffer as ArrayBuffer);
          }
        }
      }),
      { numRuns: 300, seed: 7 },
    );
  });
});

describe('EpochCopy touch-ahead', () => {
  it('never writes into a slot already copied, when a step copies more pages than the room it made before', () => {
    const pages = 100;
    const mem = new Uint8Array(pages * PAGE_BYTES);
    // Every byte of every page non-zero: a touch-ahead (a zero into a slot's first byte) shows.
    for (let p = 0; p < pages; p++) mem.fill(p + 1, p * PAGE_BYTES, (p + 1) * PAGE_BYTES);
    const ec = new EpochCopy();
    ec.take(Uint32Array.from({ length: pages }, (_, i) => i));
    // 40 pages a step: past the 16 free slots the first step's growth leaves, then more room asked for.
    while (ec.step(mem, 40));
    const got = ec.finish(mem, Uint32Array.of());
    expect(got.pages.length).toBe(pages);
    for (let i = 0; i < pages; i++) {
      const p = got.pages[i]!;
      expect(Buffer.compare(got.data.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES), mem.subarray(p * PAGE_BYTES, (p + 1) * PAGE_BYTES))).toBe(0);
    }
  });
});

describe('EpochCopy buffer pool', () => {
  const page = (v: number) => new Uint8Array(PAGE_BYTES).fill(v);
  it('reuses a handed-back buffer for the next epoch instead of allocating', () => {
    const mem = new Uint8Array(PAGES * PAGE_BYTES);
    for (let p = 0; p < PAGES; p++) mem.set(page(p + 1), p * PAGE_BYTES);
    const ec = new EpochCopy();
    // 48 pages: what an epoch of a few pages grows to ask for (32 pages), within twice that.
    const buf = new ArrayBuffer(48 * PAGE_BYTES);
    ec.give(buf);
    for (const epoch of [[3, 4, 5], [9, 10]]) {
      ec.take(Uint32Array.from(epoch.slice(0, -1)));
      ec.step(mem, 8);
      const got = ec.finish(mem, Uint32Array.of(epoch.at(-1)!));
      expect(got.data.buffer).toBe(buf);
      expect([...got.pages]).toEqual(epoch);
      for (const [i, p] of epoch.entries()) expect(Buffer.compare(got.data.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES), page(p + 1))).toBe(0);
      // The reader is done: poison the bytes and hand the buffer back.
      new Uint8Array(buf).fill(0xa5);
      ec.give(buf);
    }
  });

  it('keeps the EPOCH_COPY_POOL_MAX most recent buffers, refuses tiny and huge ones, and never lends one far larger than asked', () => {
    const ec = new EpochCopy();
    ec.give(new ArrayBuffer(PAGE_BYTES));
    ec.give(new ArrayBuffer(EPOCH_COPY_POOL_MAX_BYTES + PAGE_BYTES));
    expect(ec.pooled).toBe(0);
    // 1,024 pages (the oldest, dropped), then 64, 128, 256, 512.
    for (const pages of [1024, 64, 128, 256, 512]) ec.give(new ArrayBuffer(pages * PAGE_BYTES));
    expect(ec.pooled).toBe(EPOCH_COPY_POOL_MAX);
    const mem = new Uint8Array(1024 * PAGE_BYTES);
    const epoch = (n: number) => {
      ec.take(Uint32Array.from({ length: n }, (_, i) => i));
      ec.step(mem, n);
      return ec.finish(mem, Uint32Array.of());
    };
    // 600 pages (plus headroom) ask for more than any pooled buffer holds: a fresh one.
    const big = epoch(600);
    expect(ec.pooled).toBe(EPOCH_COPY_POOL_MAX);
    expect(big.data.buffer.byteLength).toBeGreaterThan(512 * PAGE_BYTES);
    // 4 pages ask for 32 at most (with headroom): a 128-page buffer is more than twice that.
    const fresh = new EpochCopy();
    fresh.give(new ArrayBuffer(128 * PAGE_BYTES));
    const small = (() => {
      fresh.take(Uint32Array.from({ length: 4 }, (_, i) => i));
      fresh.step(mem, 4);
      return fresh.finish(mem, Uint32Array.of());
    })();
    expect(small.data.buffer.byteLength).toBeLessThan(128 * PAGE_BYTES);
  });
});

describe('EpochCopy.lend (the scrub slice copied in the hold)', () => {
  it('lends a pooled buffer as a view of exactly the bytes asked for, or null when none fits', () => {
    const ec = new EpochCopy();
    expect(ec.lend(32 * PAGE_BYTES)).toBeNull();
    const buf = new ArrayBuffer(64 * PAGE_BYTES);
    ec.give(buf);
    // 16 pages: the 64-page buffer is more than twice that.
    expect(ec.lend(16 * PAGE_BYTES)).toBeNull();
    const got = ec.lend(48 * PAGE_BYTES)!;
    expect(got.buffer).toBe(buf);
    expect(got.length).toBe(48 * PAGE_BYTES);
    expect(ec.pooled).toBe(0);
  });
});

describe('EpochCopy.prepare (the next hold\'s room, made between events)', () => {
  it('allocates the next epoch\'s buffer ahead, sized like the last epoch, so an epoch no step reached is copied into it', () => {
    const mem = new Uint8Array(256 * PAGE_BYTES);
    for (let p = 0; p < 256; p++) mem[p * PAGE_BYTES] = p + 1;
    const ec = new EpochCopy();
    const pages = Uint32Array.from({ length: 100 }, (_, i) => i);
    ec.finish(mem, pages); // sizes the next epoch (100 pages)
    ec.prepare();
    // Handed back after prepare: an epoch that allocated only in its hold would take this one.
    const late = new ArrayBuffer(150 * PAGE_BYTES);
    ec.give(late);
    const got = ec.finish(mem, pages);
    expect(got.data.buffer).not.toBe(late);
    expect(got.data.buffer.byteLength).toBeGreaterThanOrEqual(125 * PAGE_BYTES);
    for (let i = 0; i < 100; i++) expect(got.data[i * PAGE_BYTES]).toBe(i + 1);
  });

  it('sets a buffer aside for the next scrub slice, which lend hands out once', () => {
    const ec = new EpochCopy();
    expect(ec.lend(32 * PAGE_BYTES)).toBeNull();
    ec.prepare(32 * PAGE_BYTES);
    const got = ec.lend(32 * PAGE_BYTES)!;
    expect(got.length).toBe(32 * PAGE_BYTES);
    expect(ec.lend(32 * PAGE_BYTES)).toBeNull();
    // The fit rule holds for the spare too: 48 pages are more than twice 16.
    ec.prepare(32 * PAGE_BYTES);
    expect(ec.lend(16 * PAGE_BYTES)).toBeNull();
    expect(ec.lend(40 * PAGE_BYTES)!.length).toBe(40 * PAGE_BYTES);
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
      let handedBack: Uint8Array | null = null;
      for (let i = 0; i < 15; i++) {
        await new Promise((r) => setTimeout(r, 40));
        const c = await vmm.collect();
        early += c.earlyPages;
        dirty += c.pages.length;
        img.apply(c);
        // Every other epoch's buffer goes back for reuse: the image must stay exact all the same.
        handedBack = i % 2 === 0 && c.data.buffer.byteLength >= 64 * 1024 && c.data.buffer.byteLength <= EPOCH_COPY_POOL_MAX_BYTES ? c.data : null;
        if (handedBack) {
          vmm.recycle(handedBack);
          // Transferred to the vCPU at once (and reused there): nothing of it is left here.
          expect(handedBack.length).toBe(0);
        }
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
