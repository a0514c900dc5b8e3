import { PAGE_BYTES } from '@ftvm/guest-abi';
import type { GuestImage } from '@ftvm/vmm';

/** Pages per chunk: 1 MiB, so the log grows without ever copying what it holds. */
const CHUNK_PAGES = 256;
/**
 * Chunks kept allocated across epochs (4 MiB). A secondary stages hundreds of small epochs a
 * second: a fresh zeroed 1 MiB chunk per epoch was 10-13 % of its CPU in garbage collection
 * and page faults. A larger epoch's extra chunks are dropped when it ends.
 */
const KEEP_CHUNKS = 4;

/**
 * The before-images of the pages an incremental checkpoint overwrote in place. The
 * secondary writes each staged page straight into its committed image (no staging copy,
 * and nothing to copy at commit, which had been one event-loop lump of O(epoch) on a
 * 256 MiB epoch); committing resets this log, discarding writes it back. One log serves
 * every epoch (reset between them).
 */
export class PageUndoLog {
  private pages: Uint32Array[] = [];
  private data: Uint8Array[] = [];
  count = 0;

  /** Saves the page's current bytes (`mem` holds it at page * PAGE_BYTES) before it is overwritten. */
  save(page: number, mem: Uint8Array): void {
    const c = Math.floor(this.count / CHUNK_PAGES);
    const slot = this.count % CHUNK_PAGES;
    if (c === this.pages.length) {
      this.pages.push(new Uint32Array(CHUNK_PAGES));
      this.data.push(new Uint8Array(CHUNK_PAGES * PAGE_BYTES));
    }
    this.pages[c]![slot] = page;
    this.data[c]!.set(mem.subarray(page * PAGE_BYTES, (page + 1) * PAGE_BYTES), slot * PAGE_BYTES);
    this.count++;
  }

  /** Writes every saved page back, newest first: a page saved twice ends as it was first. Then resets. */
  restore(img: GuestImage): void {
    for (let i = this.count - 1; i >= 0; i--) {
      const c = Math.floor(i / CHUNK_PAGES);
      const slot = i % CHUNK_PAGES;
      img.writePage(this.pages[c]![slot]!, this.data[c]!, slot * PAGE_BYTES);
    }
    this.reset();
  }

  /** The pages saved since the last reset, in save order (a page saved twice is listed twice). */
  savedPages(): Uint32Array {
    const out = new Uint32Array(this.count);
    for (let c = 0; c * CHUNK_PAGES < this.count; c++) out.set(this.pages[c]!.subarray(0, Math.min(CHUNK_PAGES, this.count - c * CHUNK_PAGES)), c * CHUNK_PAGES);
    return out;
  }

  /** Forgets every saved page (the epoch committed); keeps up to KEEP_CHUNKS chunks for the next one. */
  reset(): void {
    this.count = 0;
    if (this.pages.length > KEEP_CHUNKS) {
      this.pages.length = KEEP_CHUNKS;
      this.data.length = KEEP_CHUNKS;
    }
  }

  /** Bytes the log holds allocated (for tests and bounds). */
  get allocatedBytes(): number {
    return this.data.length * CHUNK_PAGES * PAGE_BYTES;
  }
}
