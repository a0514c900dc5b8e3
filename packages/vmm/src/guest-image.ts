import { PAGE_BYTES } from '@ftvm/guest-abi';
import type { Checkpoint, DeviceState, GlobalValue } from './checkpoint.js';
import type { Collected } from './worker-messages.js';

/**
 * A committed copy of the guest's state, kept outside the vCPU: the rollback point of an
 * unprotected guest and the secondary's committed image. Applying an epoch costs
 * O(dirty pages); the memory buffer grows geometrically, never per page.
 */
/** wasm32's largest memory: 65,536 pages of 64 KiB. */
const MAX_IMAGE_BYTES = 2 ** 32;
type ResizableArrayBufferCtor = new (bytes: number, opts: { maxByteLength: number }) => ArrayBuffer;

export class GuestImage {
  /**
   * A resizable buffer reserving wasm32's whole range: growing it is in place (no copy of
   * the image; the pages are committed by the OS as they are written). A copy on growth had
   * held a secondary's event loop 1–2 s each time a 1 GiB guest grew by 64 MiB.
   */
  private buf: ArrayBuffer | null;
  /** Tracks buf's length; or, for an adopted image (buf null), the checkpoint's memory itself. */
  private mem: Uint8Array;
  memBytes = 0;
  /**
   * Bytes at or past this offset were never inside the image since the buffer was allocated
   * or grown: still zero. Growing memory zero-fills only below it (what a shrink left behind),
   * not fresh bytes: filling a fresh 256 MiB for a full sync touched every page at once, a
   * 1.3 s stall of the event loop on this VM.
   */
  private zeroFrom = 0;
  epoch = 0;
  globals: GlobalValue[] = [];
  devices: DeviceState | null = null;

  constructor(initialBytes = 0) {
    this.buf = new (ArrayBuffer as unknown as ResizableArrayBufferCtor)(initialBytes, { maxByteLength: MAX_IMAGE_BYTES });
    this.mem = new Uint8Array(this.buf);
  }

  /**
   * An image over `c.memory` itself, no copy: the caller gives the bytes up (a migration's
   * received image; a vCPU worker may still read them while it boots, nobody else writes
   * them). The first growth past them moves the image to a resizable buffer.
   */
  static adopt(c: Checkpoint): GuestImage {
    const img = new GuestImage(0);
    img.buf = null;
    img.mem = c.memory.subarray(0, c.memBytes);
    img.memBytes = c.memBytes;
    img.zeroFrom = c.memBytes;
    img.epoch = c.epoch;
    img.globals = c.globals;
    img.devices = c.devices;
    return img;
  }

  static fromCheckpoint(c: Checkpoint): GuestImage {
    const img = new GuestImage(c.memBytes);
    img.mem.set(c.memory);
    img.memBytes = c.memBytes;
    img.zeroFrom = c.memBytes;
    img.epoch = c.epoch;
    img.globals = c.globals;
    img.devices = c.devices;
    return img;
  }

  private ensure(bytes: number): void {
    if (bytes <= this.mem.length) return;
    if (bytes > MAX_IMAGE_BYTES) throw new RangeError(`an image of ${bytes} bytes exceeds wasm32's ${MAX_IMAGE_BYTES}`);
    if (this.buf === null) {
      // An adopted image grows: into a resizable buffer of its own, once.
      const old = this.mem;
      this.buf = new (ArrayBuffer as unknown as ResizableArrayBufferCtor)(bytes, { maxByteLength: MAX_IMAGE_BYTES });
      this.mem = new Uint8Array(this.buf);
      this.mem.set(old.subarray(0, this.memBytes));
      return;
    }
    (this.buf as unknown as { resize(n: number): void }).resize(bytes);
  }

  /**
   * Sets the memory size (growth reads as zero) without touching epoch, globals or devices:
   * a full image is staged page by page straight into a fresh GuestImage (no second copy).
   */
  resize(memBytes: number): void {
    this.ensure(memBytes);
    // Bytes from zeroFrom on are fresh zeros: only what a shrink left behind needs the fill.
    if (memBytes > this.memBytes && this.memBytes < this.zeroFrom) this.mem.fill(0, this.memBytes, Math.min(memBytes, this.zeroFrom));
    this.memBytes = memBytes;
    if (memBytes > this.zeroFrom) this.zeroFrom = memBytes;
  }

  /** Writes one 4 KiB page (`src` holds PAGE_BYTES at `offset`) inside the current size. */
  writePage(page: number, src: Uint8Array, offset = 0): void {
    const at = page * PAGE_BYTES;
    if (at + PAGE_BYTES > this.memBytes) throw new RangeError(`page ${page} is outside the image (${this.memBytes} bytes)`);
    this.mem.set(src.subarray(offset, offset + PAGE_BYTES), at);
  }

  /** Applies one collected epoch (dirty pages + globals + devices). */
  apply(c: Pick<Collected, 'epoch' | 'memBytes' | 'pages' | 'data' | 'globals' | 'devices'>): void {
    this.resize(c.memBytes);
    for (let i = 0; i < c.pages.length; i++) {
      this.mem.set(c.data.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES), c.pages[i]! * PAGE_BYTES);
    }
    this.epoch = c.epoch;
    this.globals = c.globals;
    this.devices = c.devices;
  }

  /**
   * apply() in slices of `slicePages` pages, yielding to the event loop between them: a full
   * capture of a large guest is a copy (and, into fresh image pages, a page fault per page)
   * that held the I/O loop ~1 s for 256 MiB. The image is at `c.epoch` once it resolves.
   */
  async applySliced(c: Pick<Collected, 'epoch' | 'memBytes' | 'pages' | 'data' | 'globals' | 'devices'>, slicePages = 2048): Promise<void> {
    if (c.pages.length <= slicePages) return this.apply(c);
    this.resize(c.memBytes);
    for (let i = 0; i < c.pages.length; i += slicePages) {
      const end = Math.min(c.pages.length, i + slicePages);
      for (let k = i; k < end; k++) this.mem.set(c.data.subarray(k * PAGE_BYTES, (k + 1) * PAGE_BYTES), c.pages[k]! * PAGE_BYTES);
      await new Promise<void>((r) => setImmediate(r));
    }
    this.epoch = c.epoch;
    this.globals = c.globals;
    this.devices = c.devices;
  }

  /**
   * toCheckpoint() with its memory copied in slices of `sliceBytes`, yielding between them,
   * into a plain ArrayBuffer the caller may transfer (Vmm.rollback's `transfer`).
   */
  async toCheckpointSliced(moduleDigest: string, sliceBytes = 8 << 20): Promise<Checkpoint> {
    const meta = this.checkpointMeta(moduleDigest);
    const memory = new Uint8Array(this.memBytes);
    for (let at = 0; at < this.memBytes; at += sliceBytes) {
      memory.set(this.mem.subarray(at, Math.min(this.memBytes, at + sliceBytes)), at);
      if (at + sliceBytes < this.memBytes) await new Promise<void>((r) => setImmediate(r));
    }
    return { ...meta, memory };
  }

  /** The bytes of the image; valid until the next apply(). */
  memory(): Uint8Array {
    return this.mem.subarray(0, this.memBytes);
  }

  toCheckpoint(moduleDigest: string): Checkpoint {
    return { ...this.checkpointMeta(moduleDigest), memory: this.mem.slice(0, this.memBytes) };
  }

  /** toCheckpoint() without the memory (empty): for a vCPU whose memory holds the image already. */
  checkpointMeta(moduleDigest: string): Checkpoint {
    if (!this.devices) throw new Error('GuestImage has no epoch applied yet');
    return {
      format: 1,
      moduleDigest,
      epoch: this.epoch,
      memBytes: this.memBytes,
      memory: new Uint8Array(0),
      globals: this.globals,
      devices: this.devices,
    };
  }
}
