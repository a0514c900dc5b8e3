import { RESERVED_PAGES } from '@ftvm/guest-abi';
import type { RunServer, Vmm } from '@ftvm/vmm';
import type { FinalState, PrecopySource } from './engine.js';

export interface VmmSourceHooks {
  /** Before the vCPU is held for the stop-and-copy (RunServer: hold off local checkpoints). */
  beforeHold?: () => Promise<void>;
  /** After the vCPU was released again. */
  afterRelease?: () => void;
}

/** A running VMM as the engine's source. */
export class VmmSource implements PrecopySource {
  readonly firstPage: number;
  readonly diskBlocks: number;
  private lastBlocks: Uint32Array = new Uint32Array(0);
  /** Read buffers handed back by the engine, filled again by the next reads (warm pages). */
  private readonly spare: ArrayBuffer[] = [];
  constructor(readonly vmm: Vmm, private readonly hooks: VmmSourceHooks = {}) {
    this.diskBlocks = vmm.disk?.blocks ?? 0;
    // A bytemap-logged guest's low region is its dirty log, never part of an image.
    this.firstPage = vmm.guest.dirtyMode === 'bytemap' ? RESERVED_PAGES : 0;
  }
  memBytes(): number {
    return this.vmm.memBytes;
  }
  startTracking(): Promise<void> {
    return this.vmm.startDirtyTracking();
  }
  async dirtyPages(): Promise<Uint32Array> {
    const d = await this.vmm.dirtySets();
    this.lastBlocks = d.blocks;
    return d.pages;
  }
  dirtyBlocks(): Uint32Array {
    const b = this.lastBlocks;
    this.lastBlocks = new Uint32Array(0);
    return b;
  }
  readBlocks(blocks: Uint32Array): Promise<Uint8Array> {
    return this.vmm.readBlockList(blocks);
  }
  flushDisk(): Promise<void> {
    return this.vmm.syncDisk();
  }
  readPages(pages: Uint32Array): Promise<Uint8Array> {
    return this.vmm.readPageList(pages, this.spare.pop());
  }
  recycle(data: Uint8Array): void {
    // Two spares: one read in flight, one being encoded.
    if (this.spare.length < 2 && data.buffer instanceof ArrayBuffer && data.byteOffset === 0) this.spare.push(data.buffer);
  }
  throttle(delayMs: number): void {
    this.vmm.throttle(delayMs);
  }
  async stopAndCopy(): Promise<FinalState> {
    await this.hooks.beforeHold?.();
    try {
      return await this.vmm.precopyFinal();
    } catch (e) {
      this.hooks.afterRelease?.();
      throw e;
    }
  }
  resume(): void {
    this.vmm.resume();
    this.hooks.afterRelease?.();
  }
  stopTracking(): void {
    this.vmm.stopDirtyTracking();
  }
}

/** The guest of a RunServer (`ftvm run`, restore, receive) as a source: local checkpoints pause during the hold. */
export function runServerSource(server: RunServer): VmmSource {
  return new VmmSource(server.guestVmm, {
    beforeHold: () => server.holdCheckpoints(true),
    afterRelease: () => void server.holdCheckpoints(false),
  });
}
