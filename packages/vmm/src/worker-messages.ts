/**
 * Messages between the VMM (main thread: I/O loop) and the vCPU worker. The worker owns
 * guest memory; the main thread never touches it. Messages are handled strictly in order,
 * so a command (collect, pause) takes effect at the next event boundary.
 */
import type { ClockMode, PvclockFields } from '@ftvm/clock';
import type { DeviceState, GlobalValue } from './checkpoint.js';

export type GuestEvent =
  | { k: 'open'; conn: number }
  | { k: 'data'; conn: number; data: Uint8Array }
  | { k: 'close'; conn: number }
  | { k: 'timer' };

export interface WorkerInit {
  wasm: Uint8Array;
  /** 'bytemap': instrumented module; 'shadow': O(memory) compare fallback. */
  dirtyMode: 'bytemap' | 'shadow';
  globalExports: string[];
  /** Wall-anchored host clock: hostNs = anchorWallNs + (hrtime - anchorHrNs), same in both threads. */
  anchorWallNs: bigint;
  anchorHrNs: bigint;
  /** The clock device: the compensator runs in the worker, where the vCPU stops (see vcpu-worker.ts). */
  clock: WorkerClockInit;
  /** Present when restoring: the guest is not initialised again. */
  restore?: {
    memory: Uint8Array;
    memBytes: number;
    globals: GlobalValue[];
    devices: DeviceState;
    epoch: number;
    /** A prestarted vCPU's memory holds the image already ('image' messages): `memory` is empty, nothing is copied. */
    inPlace?: boolean;
  };
  /** Shared Int32Array(4): [busy flag, event seq, conn (+1, 0 none), unused] for the watchdog. */
  watch: SharedArrayBuffer;
  /** Hold the vCPU after each event that produced output (VmmOptions.syncEachOutput). */
  syncEachOutput: boolean;
  /** Copy dirty pages between events, ahead of the epoch's collect (VmmOptions.earlyCopy). */
  earlyCopy: boolean;
  /** Scheduling class of the vCPU thread, set before the guest is instantiated (VmmOptions.vcpuSched). */
  vcpuSched: 'normal' | 'fifo';
  /** The virtual disk (absent: none; disk_blocks() is 0). undo: see BlockDeviceOptions. */
  disk?: WorkerDiskInit;
  /**
   * Vmm.prestart: instantiate the module, grow its memory to memBytes and touch every page,
   * post 'prestarted', then wait for a 'start' message with the restore (and disk) before
   * anything else. memBytes must not exceed the checkpoint's (memory only grows).
   */
  prestart?: { memBytes: number };
  /** The vCPU runs on the main thread (InlineVcpu): it stops a runaway event itself, by fuel. */
  inline: boolean;
  /** VmmOptions.eventTimeoutMs: an inline vCPU's fuel check stops an event running longer. */
  eventTimeoutMs: number;
}

export type WorkerRestoreInit = NonNullable<WorkerInit['restore']>;
export type WorkerDiskInit = { path: string; blocks: number; undo: 'off' | 'fresh' | 'apply'; fds: { disk: number; undo: number }; pull?: SharedArrayBuffer };

export interface WorkerClockInit {
  mode: ClockMode;
  maxSlewPpm: number;
  stepThresholdMs: number;
  slewHorizonMs: number;
  /** Period of the compensator's tick while it slews, ms. */
  tickMs: number;
  /** This host's clock = base + offsetNs + (base - anchorNs) * ratePpm / 1e6 (test/drill skew; 0 normally). */
  skewOffsetNs: bigint;
  skewRatePpm: number;
  skewAnchorNs: bigint;
}

/** The clock device's view after an update, for metrics: drift = guest time minus reference. */
export interface ClockReport {
  mode: ClockMode;
  /** Host time of this report on this process's (possibly skewed) host clock, ns. */
  hostNs: bigint;
  guestNs: bigint;
  driftNs: bigint;
  ratePpm: number;
  paused: boolean;
  steps: number;
  steppedNs: bigint;
  pauses: number;
  pausedNs: bigint;
  /** The guest time was pinned by Vmm.setClock (a test hook): the compensator no longer publishes. */
  pinned: boolean;
}

export type ToWorker =
  /** Completes a prestart (WorkerInit.prestart). */
  | { t: 'start'; restore: WorkerRestoreInit; disk?: WorkerDiskInit }
  /**
   * Before 'start' of a prestart: write image bytes into the guest memory, grown to memBytes
   * first (never shrunk). `pages`: data holds those 4 KiB pages in order; else data goes at byte `at`.
   */
  | { t: 'image'; memBytes: number; pages?: Uint32Array; at?: number; data: Uint8Array }
  /** One loop turn's events, packed (see packEvents): no object graph to clone. */
  | { t: 'events'; meta: Int32Array; data: Uint8Array }
  | { t: 'collect'; id: number; resume: boolean; full: boolean; scrub?: { fromPage: number; count: number }; background?: boolean }
  /** An epoch-copy buffer the main thread is done with (Vmm.recycle), transferred back for reuse. */
  | { t: 'recycle'; buf: ArrayBuffer }
  | { t: 'mark'; pages: number[] }
  | { t: 'pause'; id: number }
  | { t: 'resume' }
  | { t: 'clock'; fields: PvclockFields | null; tscOffset: bigint }
  | { t: 'clockReport'; id: number }
  | { t: 'read'; id: number; fromPage: number; count: number }
  | { t: 'stop' }
  // Pre-copy (migration, live snapshot): a second consumer of the dirty log, see vcpu-worker.ts.
  | { t: 'dirty'; id: number; start: boolean }
  | { t: 'dirtyStop' }
  /** `into`: a buffer (transferred) to copy into when large enough, so a transfer reuses warm memory. */
  | { t: 'readList'; id: number; pages: Uint32Array; into?: ArrayBuffer }
  | { t: 'final'; id: number }
  | { t: 'throttle'; delayMs: number };

/** The vCPU held for a pre-copy's stop-and-copy: the remainder and the state at that boundary. */
export interface PrecopyFinal {
  /** Epoch the vCPU was executing (a restore continues with epoch + 1). */
  epoch: number;
  memBytes: number;
  /** Sorted pages dirtied since the last dirtyPages() (read them with readPageList while held). */
  pages: Uint32Array;
  /** Sorted disk blocks written since the last dirtyPages() (empty without a disk): a migration pulls them. */
  blocks: Uint32Array;
  globals: GlobalValue[];
  devices: DeviceState;
}

export interface OutputItem {
  conn: number;
  data: Uint8Array;
  /** Output byte offset of data[0] on this connection. */
  offset: number;
  epoch: number;
}

export interface Collected {
  epoch: number;
  memBytes: number;
  /**
   * 4 KiB page numbers, each once; for a full capture, every page, sorted. An incremental
   * collect lists them in copy order (early copy: not sorted).
   */
  pages: Uint32Array;
  /** pages.length * 4096 bytes, page i at i*4096. */
  data: Uint8Array;
  globals: GlobalValue[];
  devices: DeviceState;
  /** Time the vCPU was held for this collection, ms. */
  pauseMs: number;
  reservedWrites: number;
  /** Pages copied between events ahead of this collect (early copy; a page copied twice counts twice). */
  earlyPages: number;
  /** Copy of a slice of memory at this boundary, for the integrity scrub (pages within memory only). */
  scrub?: { fromPage: number; count: number; data: Uint8Array };
  /**
   * The disk at this boundary (absent without a disk): the blocks written during the epoch
   * (a full collect: every non-zero block; the others are zero), sorted, and their
   * contents, block i at i * 4096. totalBlocks is the disk's size.
   */
  disk?: { totalBlocks: number; blocks: Uint32Array; data: Uint8Array };
}

/** Event kinds in a packed batch (packEvents). */
export const EV_OPEN = 0;
export const EV_DATA = 1;
export const EV_CLOSE = 2;
export const EV_TIMER = 3;
/** Int32 words per event in a packed batch: kind, conn, data length. */
export const EV_META = 3;
/** Numbers per output item in an 'out' message: conn, offset, epoch, data length. */
export const OUT_META = 4;

/** Packs events into one meta array and one byte array (the input bytes copied once, back to back). */
export function packEvents(events: readonly GuestEvent[]): { meta: Int32Array; data: Uint8Array } {
  let bytes = 0;
  for (const ev of events) if (ev.k === 'data') bytes += ev.data.length;
  const meta = new Int32Array(events.length * EV_META);
  const data = new Uint8Array(bytes);
  let at = 0;
  for (let i = 0; i < events.length; i++) {
    const ev = events[i]!;
    const j = i * EV_META;
    switch (ev.k) {
      case 'open':
        meta[j] = EV_OPEN;
        meta[j + 1] = ev.conn;
        break;
      case 'data':
        meta[j] = EV_DATA;
        meta[j + 1] = ev.conn;
        meta[j + 2] = ev.data.length;
        data.set(ev.data, at);
        at += ev.data.length;
        break;
      case 'close':
        meta[j] = EV_CLOSE;
        meta[j + 1] = ev.conn;
        break;
      case 'timer':
        meta[j] = EV_TIMER;
        break;
    }
  }
  return { meta, data };
}

/** The events of a packed batch; data events' bytes are views into `data` (no copy). */
export function unpackEvents(meta: Int32Array, data: Uint8Array): GuestEvent[] {
  const out: GuestEvent[] = new Array(meta.length / EV_META);
  let at = 0;
  for (let i = 0, j = 0; j < meta.length; i++, j += EV_META) {
    const conn = meta[j + 1]!;
    switch (meta[j]) {
      case EV_OPEN:
        out[i] = { k: 'open', conn };
        break;
      case EV_DATA: {
        const n = meta[j + 2]!;
        out[i] = { k: 'data', conn, data: data.subarray(at, at + n) };
        at += n;
        break;
      }
      case EV_CLOSE:
        out[i] = { k: 'close', conn };
        break;
      default:
        out[i] = { k: 'timer' };
    }
  }
  return out;
}

export type FromWorker =
  | { t: 'ready'; epoch: number; memBytes: number }
  | { t: 'prestarted'; memBytes: number }
  /** An 'image' message's buffer, handed back once written: reused or freed by the main thread (an idle worker collects late). */
  | { t: 'imageDone'; buf: ArrayBuffer }
  | {
      t: 'out';
      /** The batch's outputs, packed: OUT_META numbers per item (conn, offset, epoch, length) and their bytes back to back. */
      meta: Float64Array;
      data: Uint8Array;
      closes: Array<{ conn: number; epoch: number; offset: number }>;
      timer: bigint | null;
      guestNow: bigint;
      consumed: number;
      /** syncEachOutput: the vCPU held itself after these outputs; later events wait for resume. */
      held?: boolean;
    }
  | { t: 'collected'; id: number; c: Collected }
  | { t: 'paused'; id: number }
  | { t: 'read'; id: number; data: Uint8Array }
  | { t: 'log'; level: number; msg: string }
  | { t: 'clock'; r: ClockReport }
  | { t: 'clockReport'; id: number; r: ClockReport }
  | { t: 'fault'; code: string; message: string; conn: number | null }
  | { t: 'dirty'; id: number; pages: Uint32Array; blocks: Uint32Array; memBytes: number }
  /** Migration PULL: the vCPU waits for these blocks (see PullState in disk.ts). */
  | { t: 'diskFetch'; block: number; n: number }
  | { t: 'final'; id: number; f: PrecopyFinal }
  /** One request failed (the vCPU is fine): rejects that request only. */
  | { t: 'reqError'; id: number; code: string; message: string }
  | { t: 'error'; code: string; message: string };
