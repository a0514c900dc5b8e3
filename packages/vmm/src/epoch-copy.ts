import { PAGE_BYTES } from '@ftvm/guest-abi';

/** Returned buffers kept for reuse at most (Vmm.recycle); a primary has one or two epochs between collect and encode. */
export const EPOCH_COPY_POOL_MAX = 4;
/** Larger returned buffers are dropped (16,384 pages: a pooled buffer is memory held between epochs). */
export const EPOCH_COPY_POOL_MAX_BYTES = 64 << 20;
/**
 * A pooled buffer serves an epoch only when at most this many times the size it asks for.
 * Every buffer that crosses threads counts in full as new external memory where it lands,
 * and that count is what starts a scavenge: a 16 MiB buffer carrying a 6-page epoch back and
 * forth would trigger far more of them than the 64 KiB the epoch would allocate.
 */
const POOL_FIT = 2;

/** Whether a buffer of `byteLength` may serve a request of `bytes`: large enough, and at most POOL_FIT times larger. */
function fits(byteLength: number, bytes: number): boolean {
  return byteLength >= bytes && byteLength <= POOL_FIT * bytes;
}

/** Whether a returned buffer of this size is worth keeping: at least the smallest epoch buffer, at most EPOCH_COPY_POOL_MAX_BYTES. */
export function poolable(byteLength: number): boolean {
  return byteLength >= EPOCH_COPY_HEADROOM * PAGE_BYTES && byteLength <= EPOCH_COPY_POOL_MAX_BYTES;
}

/** Free slots kept ahead of the hold, at least (a quarter of the epoch's pages when more); also the smallest buffer (64 KiB): kv epochs of ~20 pages at 100+ epochs/s must not allocate MiBs each. */
const EPOCH_COPY_HEADROOM = 16;

/**
 * The running epoch's copy of its dirty pages, filled ahead of the collect.
 *
 * Between events the vCPU worker takes the pages dirtied so far from the dirty log and
 * copies them here a slice at a time (`take`, `step`); at the epoch's end, with the vCPU
 * held, `finish` copies only what is still pending plus what was written since (the log's
 * pages), each into its page's slot. A page written again after its early copy is marked
 * in the log again, so its slot is overwritten at the latest by `finish`: the result is
 * the memory at the hold, as a copy of every dirty page at the hold would be.
 */
export class EpochCopy {
  /**
   * `touchAhead` (default true): `step` and `prepare` fault in the free slots the hold may write.
   * Off for a full sync's background copy: every page already has its slot before the hold, and
   * touching the headroom of each doubling cost it a quarter more faults (a 256 MiB background
   * collect took 2.5–3.3 s with it against 2.0–2.6 s without, scratch).
   */
  constructor(private readonly touchAhead = true) {}

  /** slotOf[page] = slot + 1 (0: no slot this epoch). */
  private slotOf = new Int32Array(0);
  private pages = new Uint32Array(0);
  private data = new Uint8Array(0);
  private count = 0;
  /** Free slots (from `count` on) below this are faulted in by `ensure`; slots below `count` hold pages. */
  private touchedTo = 0;
  private pending: ArrayLike<number> = new Uint32Array(0);
  private head = 0;
  /** Pages copied ahead of a collect this epoch (a page copied twice counts twice). */
  copiedEarly = 0;
  /** Slots the previous epoch used: the first allocation of this one makes room for as many. */
  private sizeHint = 0;
  /**
   * Buffers of earlier epochs handed back by their reader (`give`). A fresh multi-MiB buffer
   * per epoch costs page faults on first touch and, as external memory, pushes the worker's
   * heap into a scavenge ("external memory pressure") that may land inside a hold; a reused
   * one does neither.
   */
  private pool: ArrayBuffer[] = [];
  /** Set aside by `prepare` for the next hold's scrub slice (`lend`). */
  private spare: ArrayBuffer | null = null;

  /** Buffers waiting in the pool. */
  get pooled(): number {
    return this.pool.length;
  }

  /** Takes back a buffer an earlier `finish` returned (its reader is done with it). */
  give(buf: ArrayBuffer): void {
    if (!poolable(buf.byteLength)) return;
    this.pool.push(buf);
    // The oldest goes first: recent epochs tell the sizes the next ones will ask for.
    if (this.pool.length > EPOCH_COPY_POOL_MAX) this.pool.shift();
  }

  /** Pages taken from the dirty log and not yet copied. */
  get pendingCount(): number {
    return this.pending.length - this.head;
  }

  /** Queues pages (just taken from the dirty log) for copying; `pending` is copied first. */
  take(pages: ArrayLike<number>): void {
    if (this.pendingCount > 0) {
      const merged = new Uint32Array(this.pendingCount + pages.length);
      for (let i = this.head; i < this.pending.length; i++) merged[i - this.head] = this.pending[i]!;
      for (let i = 0; i < pages.length; i++) merged[this.pendingCount + i] = pages[i]!;
      this.pending = merged;
    } else {
      this.pending = pages;
    }
    this.head = 0;
  }

  /** Copies up to `maxPages` pending pages from `mem`; returns whether some remain. */
  step(mem: Uint8Array, maxPages: number): boolean {
    const end = Math.min(this.pending.length, this.head + maxPages);
    for (; this.head < end; this.head++) {
      this.copy(mem, this.pending[this.head]!);
      this.copiedEarly++;
    }
    // Room for the pages the hold will add, made now: growing inside the hold copies the whole buffer.
    this.ensure(this.count + Math.max(EPOCH_COPY_HEADROOM, this.count >>> 2), this.touchAhead);
    return this.head < this.pending.length;
  }

  /**
   * Between events after a hold: makes the room the next hold will write into, so the hold
   * neither allocates nor touches a fresh page. The epoch's buffer gets the last epoch's size
   * and a quarter (an epoch the early copy never stepped is copied whole in its hold), and,
   * when the hold copies a scrub slice of `scrubBytes`, a buffer for it is set aside (`lend`).
   * The free slots are touched a page at a time here: on the bench VM the first write to a
   * fresh page costs a fault of ~15 µs, 1,000 of them 15 ms (a page already mapped costs a write).
   */
  prepare(scrubBytes = 0): void {
    this.ensure(Math.max(this.count + EPOCH_COPY_HEADROOM, this.sizeHint + (this.sizeHint >>> 2)), this.touchAhead);
    if (scrubBytes > 0 && !(this.spare && fits(this.spare.byteLength, scrubBytes))) {
      if (this.spare) this.give(this.spare);
      const want = Math.ceil((scrubBytes * 3) / 2 / PAGE_BYTES) * PAGE_BYTES;
      const spare = this.fromPool(want) ?? new Uint8Array(want);
      touched(spare, 0, want / PAGE_BYTES);
      this.spare = spare.buffer;
    }
  }

  /**
   * At the hold: copies the pending pages and `dirty` (written since they were taken) and
   * returns every page of the epoch with its bytes (page i at i * PAGE_BYTES), in slot
   * order. The epoch's buffers go to the caller; the next epoch starts empty.
   */
  finish(mem: Uint8Array, dirty: ArrayLike<number>): { pages: Uint32Array; data: Uint8Array } {
    for (; this.head < this.pending.length; this.head++) this.copy(mem, this.pending[this.head]!);
    for (let i = 0; i < dirty.length; i++) this.copy(mem, dirty[i]!);
    const out = { pages: this.pages.subarray(0, this.count), data: this.data.subarray(0, this.count * PAGE_BYTES) };
    const last = this.count;
    // The buffers go out with the result (reset would pool them).
    this.data = new Uint8Array(0);
    this.reset();
    // The next epoch's buffers are sized like this one's when first needed (between events, not in this hold).
    this.sizeHint = last;
    return out;
  }

  /** Forgets the epoch (a full collect copies everything; a restarted vCPU starts over). */
  reset(): void {
    for (let i = 0; i < this.count; i++) this.slotOf[this.pages[i]!] = 0;
    if (this.data.length > 0) this.give(this.data.buffer as ArrayBuffer);
    this.pages = new Uint32Array(0);
    this.data = new Uint8Array(0);
    this.count = 0;
    this.touchedTo = 0;
    this.pending = new Uint32Array(0);
    this.head = 0;
    this.copiedEarly = 0;
  }

  private copy(mem: Uint8Array, page: number): void {
    const from = page * PAGE_BYTES;
    // A page past the end of memory cannot be dirty; the log only reports pages inside it.
    if (from + PAGE_BYTES > mem.length) throw new RangeError(`page ${page} is outside memory (${mem.length} bytes)`);
    if (page >= this.slotOf.length) {
      const next = new Int32Array(Math.max(page + 1, this.slotOf.length * 2, 1024));
      next.set(this.slotOf);
      this.slotOf = next;
    }
    let slot = this.slotOf[page]! - 1;
    if (slot < 0) {
      this.ensure(this.count + 1, false);
      slot = this.count++;
      this.pages[slot] = page;
      this.slotOf[page] = slot + 1;
    }
    this.data.set(mem.subarray(from, from + PAGE_BYTES), slot * PAGE_BYTES);
  }

  /** A pooled buffer for another copy of the hold (the integrity scrub's slice): a view of exactly `bytes`, or null. */
  lend(bytes: number): Uint8Array<ArrayBuffer> | null {
    const spare = this.spare;
    if (spare && fits(spare.byteLength, bytes)) {
      this.spare = null;
      return new Uint8Array(spare, 0, bytes);
    }
    const got = this.fromPool(bytes);
    return got ? got.subarray(0, bytes) : null;
  }

  /** The smallest pooled buffer of `bytes` up to POOL_FIT times that (whole pages), taken out of the pool. */
  private fromPool(bytes: number): Uint8Array<ArrayBuffer> | null {
    let best = -1;
    for (let i = 0; i < this.pool.length; i++) {
      const n = this.pool[i]!.byteLength;
      if (fits(n, bytes) && (best < 0 || n < this.pool[best]!.byteLength)) best = i;
    }
    if (best < 0) return null;
    const [buf] = this.pool.splice(best, 1);
    return new Uint8Array(buf!, 0, Math.floor(buf!.byteLength / PAGE_BYTES) * PAGE_BYTES);
  }

  /**
   * Makes room for `slots` pages; `touch` (between events only) also faults in the free slots up
   * to `slots` now, not the whole capacity: a full sync's buffer grows by doubling, and touching
   * its unused half would fault in (and make resident) up to the guest's memory size again.
   */
  private ensure(slots: number, touch: boolean): void {
    if (slots <= this.pages.length) {
      // Never below count: a copy past touchedTo (a slice larger than the room made) filled those slots.
      const from = Math.max(this.touchedTo, this.count);
      if (touch && slots > from) this.touchedTo = touched(this.data, from, slots);
      return;
    }
    const cap = Math.max(slots, this.pages.length * 2, this.sizeHint + (this.sizeHint >>> 2), EPOCH_COPY_HEADROOM);
    const data = this.fromPool(cap * PAGE_BYTES) ?? new Uint8Array(cap * PAGE_BYTES);
    // The slots copied below are written; a pooled buffer's others may never have been (one made in a hold).
    this.touchedTo = touch ? touched(data, this.count, slots) : this.count;
    const pages = new Uint32Array(data.length / PAGE_BYTES);
    pages.set(this.pages.subarray(0, this.count));
    data.set(this.data.subarray(0, this.count * PAGE_BYTES));
    if (this.data.length > 0) this.give(this.data.buffer as ArrayBuffer);
    this.pages = pages;
    this.data = data;
  }
}

/** Writes a zero into slots [from, to) of `buf`: the kernel maps their pages now, not at the first copy into them. Returns `to`. */
function touched(buf: Uint8Array, from: number, to: number): number {
  for (let slot = from; slot < to; slot++) buf[slot * PAGE_BYTES] = 0;
  return to;
}
