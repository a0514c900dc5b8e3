import { describe, expect, it } from 'vitest';
import { PAGE_BYTES } from '@ftvm/guest-abi';
import { GuestImage } from '@ftvm/vmm';
import { PageUndoLog } from '../src/undo-log.js';

describe('PageUndoLog', () => {
  it('restores every overwritten page across chunk boundaries, a page saved twice to its first bytes', () => {
    const pages = 600;
    const img = new GuestImage();
    img.resize(pages * PAGE_BYTES);
    for (let p = 0; p < pages; p++) img.writePage(p, new Uint8Array(PAGE_BYTES).fill(p & 0xff));
    const before = img.memory().slice();
    const log = new PageUndoLog();
    const touched = [...Array.from({ length: 300 }, (_, i) => i * 2), 4, 4, 598];
    for (const p of touched) {
      log.save(p, img.memory());
      img.writePage(p, new Uint8Array(PAGE_BYTES).fill(0xee));
    }
    expect(log.count).toBe(touched.length);
    expect(Buffer.from(img.memory()).equals(Buffer.from(before))).toBe(false);
    log.restore(img);
    expect(log.count).toBe(0);
    expect(Buffer.from(img.memory()).equals(Buffer.from(before))).toBe(true);
  });

  it('is reused across epochs: reset keeps at most 4 MiB allocated, and a restore after reuse is exact', () => {
    const pages = 2000;
    const img = new GuestImage();
    img.resize(pages * PAGE_BYTES);
    for (let p = 0; p < pages; p++) img.writePage(p, new Uint8Array(PAGE_BYTES).fill((p * 7) & 0xff));
    const log = new PageUndoLog();
    // A large epoch (1,500 pages: 6 chunks), committed: its extra chunks are dropped.
    for (let p = 0; p < 1500; p++) log.save(p, img.memory());
    expect(log.allocatedBytes).toBe(6 * 256 * PAGE_BYTES);
    log.reset();
    expect(log.count).toBe(0);
    expect(log.allocatedBytes).toBe(4 * 256 * PAGE_BYTES);
    // Small epochs reuse the kept chunks: nothing new is allocated.
    for (let e = 0; e < 50; e++) {
      for (let p = 0; p < 30; p++) log.save(p, img.memory());
      log.reset();
    }
    expect(log.allocatedBytes).toBe(4 * 256 * PAGE_BYTES);
    // The kept chunks still hold the old epochs' bytes: a restore must write only this epoch's saves.
    const before = img.memory().slice();
    for (const p of [1999, 5, 5, 1000]) {
      log.save(p, img.memory());
      img.writePage(p, new Uint8Array(PAGE_BYTES).fill(0xee));
    }
    log.restore(img);
    expect(Buffer.compare(img.memory(), before)).toBe(0);
    expect(log.count).toBe(0);
  });
});
