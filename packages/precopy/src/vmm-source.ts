import { RESERVED_PAGES } from '@ftvm/guest-abi';
import type { RunServer, Vmm } from '@ftvm/vmm';
import type { FinalState, PrecopySource } from './engine.js';
import { PrecopyError } from './errors.js';

export interface VmmSourceHooks {
  /** Before the vCPU is held for the stop-and-copy (RunServer: hold off local checkpoints). */
  beforeHold?: () => Promise<void>;
  /** After the vCPU was released again. */
  afterRelease?: () => void;
}

/** A running VMM as the engine's source. */
export class VmmSource implements PrecopySource {
  readonly firstPage: number;
  constructor(readonly vmm: Vmm, private readonly hooks: VmmSourceHooks = {}) {
    // A bytemap-logged guest's low region is its dirty log, never part of an image.
    this.firstPage = vmm.guest.dirtyMode === 'bytemap' ? RESERVED_PAGES : 0;
  }
  memBytes(): number {
    return this.vmm.memBytes;
  }
  startTracking(): Promise<void> {
    // Disk blocks do not travel with the rounds yet: a snapshot or migration of a guest with a
    // disk would restore memory without its disk, so it is refused rather than done wrong.
    if (this.vmm.disk)
      return Promise.reject(new PrecopyError('FTVM_ERR_PRECOPY_DISK', 'the guest has a virtual disk; pre-copy does not carry disk blocks yet, so snapshot and migration are refused'));
    return this.vmm.startDirtyTracking();
  }
  dirtyPages(): Promise<Uint32Array> {
    return this.vmm.dirtyPages();
  }
  readPages(pages: Uint32Array): Promise<Uint8Array> {
    return this.vmm.readPageList(pages);
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
