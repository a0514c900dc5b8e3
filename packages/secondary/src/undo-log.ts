import { PAGE_BYTES } from '@ftvm/guest-abi';
import type { GuestImage } from '@ftvm/vmm';

/** Pages per chunk: 1 MiB, so the log grows without ever copying what it holds. */
const CHUNK_PAGES = 256;

/**
 * The before-images of the pages an incremental checkpoint overwrote in place. The
 * secondary writes each staged page straight into its committed image (no staging copy,
 * and nothing to copy at commit, which had been one event-loop lump of O(epoch) on a
 * 256 MiB epoch); committing drops this log, discarding writes it back.
 */
export class PageUndoLog {
  private pages: Uint32Array[] = [];
  private data: Uint8Array[] = [];
  count = 0;

  /** Saves the page's current bytes (`mem` holds it at page * PAGE_BYTES) before it is overwritten. */
  save(page: number, mem: Uint8Array): void {
    const slot = this.count % CHUNK_PAGES;
    if (slot === 0) {
      this.pages.push(new Uint32Array(CHUNK_PAGES));
      this.data.push(new Uint8Array(CHUNK_PAGES * PAGE_BYTES));
    }
    const c = this.pages.length - 1;
    this.pages[c]![slot] = page;
    this.data[c]!.set(mem.subarray(page * PAGE_BYTES, (page + 1) * PAGE_BYTES), slot * PAGE_BYTES);
    this.count++;
  }

  /** Writes every saved page back, newest first: a page saved twice ends as it was first. */
  restore(img: GuestImage): void {
    for (let i = this.count - 1; i >= 0; i--) {
      const c = Math.floor(i / CHUNK_PAGES);
      const slot = i % CHUNK_PAGES;
      img.writePage(this.pages[c]![slot]!, this.data[c]!, slot * PAGE_BYTES);
    }
    this.pages = [];
    this.data = [];
    this.count = 0;
  }
}
