import { PAGE_BYTES } from '@ftvm/guest-abi';
import type { GuestImage, Vmm } from '@ftvm/vmm';

/** Bytes of the image one step of the initial copy moves into the vCPU (one event-loop turn). */
const COPY_SLICE_BYTES = 16 << 20;
/** Slices of the initial copy posted to the vCPU and not yet written there. */
const COPY_IN_FLIGHT = 2;
/** How long the initial copy waits while an epoch is staged (staged pages sit in the image). */
const STAGED_RETRY_MS = 5;

export interface ReadyVcpuOptions {
  /**
   * Starts a vCPU of this guest, not running (Vmm.prestart with 0 bytes: its memory grows with
   * the image's first write, so each page is touched once, by the copy).
   */
  prestart: () => Promise<Vmm>;
  /** The committed image (the secondary swaps it on a full sync). */
  image: () => GuestImage;
  /** No epoch is staged: every byte of the image is committed. */
  committedOnly: () => boolean;
  log: (level: 'warn' | 'info' | 'debug', msg: string, fields?: Record<string, unknown>) => void;
}

/**
 * A copy of the secondary's committed image kept inside a prestarted vCPU, so a promotion
 * only tells it to run: no worker start, module compile, allocation or image copy on the
 * promotion's path. After a full image (first sync, re-sync, a shrink) a vCPU is prestarted
 * and the image copied into it in slices; every committed epoch's pages follow it.
 * Only committed bytes reach it: the slices wait while an epoch is staged, since staged
 * pages are written into the image in place until the epoch commits or is undone.
 */
export class ReadyVcpu {
  private vmm: Vmm | null = null;
  /** Bumped on every reset and stop: a prestart or copy step of an older one does nothing. */
  private gen = 0;
  /** The image's bytes [0, copied) are in the vCPU (committed pages beyond follow with the copy). */
  private copied = 0;
  private ready = false;
  /** The vCPU's memory size. */
  private vcpuBytes = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Pages of committed epochs not yet copied into the vCPU (see committed()). */
  private pending: Uint32Array[] = [];
  private flushQueued = false;

  constructor(private readonly opts: ReadyVcpuOptions) {}

  /** Whether take() would return a vCPU holding the committed image now. */
  get isReady(): boolean {
    return this.ready && this.vmm?.state === 'prestarted' && this.vcpuBytes === this.opts.image().memBytes;
  }

  /**
   * An epoch committed: `pages` are the pages it wrote (the image's, in place), or null when the
   * image was replaced whole (a full sync). Called with no epoch staged. The pages are copied to
   * the vCPU on the next turn of the loop (after the epoch's ack leaves), or by flush() first.
   */
  committed(pages: Uint32Array | null): void {
    if (this.stopped) return;
    const img = this.opts.image();
    // wasm memory never shrinks: a smaller image needs a new vCPU.
    if (pages === null || img.memBytes < this.vcpuBytes) {
      this.pending = [];
      this.reset(img.memBytes);
      return;
    }
    this.pending.push(pages);
    if (!this.flushQueued) {
      this.flushQueued = true;
      setImmediate(() => {
        this.flushQueued = false;
        this.flush();
      });
    }
  }

  /**
   * Copies the pages of committed epochs still pending into the vCPU. The secondary calls it
   * before it stages anything in the image again (those pages must still hold committed bytes).
   */
  flush(): void {
    const lists = this.pending;
    if (lists.length === 0) return;
    this.pending = [];
    const vmm = this.vmm;
    if (this.stopped || vmm === null || vmm.state !== 'prestarted') return;
    const img = this.opts.image();
    // Pages past `copied` are read by the copy when it gets there.
    const limit = this.ready ? Infinity : this.copied;
    let n = 0;
    for (const pages of lists) for (const p of pages) if (p * PAGE_BYTES < limit) n++;
    if (n === 0 && img.memBytes === this.vcpuBytes) return;
    const list = new Uint32Array(n);
    const data = vmm.imageBuffer(n * PAGE_BYTES);
    const mem = img.memory();
    let i = 0;
    for (const pages of lists) {
      for (const p of pages) {
        if (p * PAGE_BYTES >= limit) continue;
        list[i] = p;
        data.set(mem.subarray(p * PAGE_BYTES, (p + 1) * PAGE_BYTES), i * PAGE_BYTES);
        i++;
      }
    }
    vmm.writeImage(img.memBytes, list, data);
    this.vcpuBytes = Math.max(this.vcpuBytes, img.memBytes);
  }

  /** The vCPU, given up to the caller, when it holds the committed image; else null (then restore the image as before). */
  take(): Vmm | null {
    this.flush();
    const v = this.isReady ? this.vmm : null;
    if (v) this.vmm = null;
    this.stop();
    return v;
  }

  stop(): void {
    this.stopped = true;
    this.drop();
  }

  private drop(): void {
    this.gen++;
    this.pending = [];
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const v = this.vmm;
    this.vmm = null;
    this.ready = false;
    this.copied = 0;
    this.vcpuBytes = 0;
    if (v) void v.stop();
  }

  private reset(memBytes: number): void {
    this.drop();
    if (memBytes === 0 || this.stopped) return;
    const gen = this.gen;
    const t0 = performance.now();
    this.opts.prestart().then(
      (v) => {
        if (gen !== this.gen) {
          void v.stop();
          return;
        }
        this.vmm = v;
        this.opts.log('debug', 'ready vCPU prestarted; copying the committed image into it', { memBytes, ms: Math.round(performance.now() - t0) });
        this.copyStep(gen);
      },
      (e: Error) => {
        if (gen === this.gen) this.opts.log('warn', 'cannot prestart a vCPU for the committed image: a promotion will restore it instead', { message: e.message });
      },
    );
  }

  private copyStep(gen: number): void {
    this.timer = null;
    if (gen !== this.gen || this.vmm?.state !== 'prestarted') return;
    if (!this.opts.committedOnly()) {
      this.timer = setTimeout(() => this.copyStep(gen), STAGED_RETRY_MS);
      return;
    }
    // At most COPY_IN_FLIGHT slices wait for the worker (memory bounded; their buffers come back for reuse).
    if (this.vmm.imageWritesInFlight >= COPY_IN_FLIGHT) {
      this.timer = setTimeout(() => this.copyStep(gen), 1);
      return;
    }
    const img = this.opts.image();
    const end = Math.min(img.memBytes, this.copied + COPY_SLICE_BYTES);
    if (end > this.copied) {
      const data = this.vmm.imageBuffer(end - this.copied);
      data.set(img.memory().subarray(this.copied, end));
      this.vmm.writeImage(img.memBytes, this.copied, data);
      this.vcpuBytes = Math.max(this.vcpuBytes, img.memBytes);
      this.copied = end;
    }
    if (this.copied < img.memBytes) {
      this.timer = setTimeout(() => this.copyStep(gen), 0);
      return;
    }
    this.ready = true;
    this.opts.log('info', 'ready vCPU holds the committed image', { memBytes: img.memBytes, epoch: img.epoch });
  }
}
