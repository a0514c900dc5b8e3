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
});
