import { EventEmitter } from 'node:events';
import { fdatasync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { CLOCK_DEFAULTS, ClockCompensator, type ClockMode, type HostClock, type PvclockFields } from '@ftvm/clock';
import { PAGE_BYTES } from '@ftvm/guest-abi';
import type { Checkpoint } from './checkpoint.js';
import { closeDiskFds, openDiskFds, readBlocksAsync, type DiskFds, type DiskSpec } from './disk.js';
import { poolable } from './epoch-copy.js';
import { VmmError } from './errors.js';
import type { PreparedGuest } from './prepare.js';
import type { ClockReport, Collected, FromWorker, GuestEvent, OutputItem, PrecopyFinal, ToWorker, WorkerClockInit, WorkerInit } from './worker-messages.js';
import { OUT_META, packEvents } from './worker-messages.js';
import { InlineVcpu } from './inline-vcpu.js';

export interface VmmOptions {
  /** An event running longer than this is stopped and reported as FTVM_ERR_GUEST_TIMEOUT, ms. Default 2000. */
  eventTimeoutMs?: number;
  /**
   * The virtual disk (see disk.ts; prepareDisk creates or extends the file). Default: none.
   * The VMM opens it on start and closes it in stop().
   */
  disk?: DiskSpec;
  /**
   * Keep an undo file so rollback() also rolls the disk back to the checkpoint of the last
   * collect (a guest fault's rollback: ftvm run's, and a replicated primary's, which
   * rolls back to its last collected epoch). Default false: no disk rollback, and no extra
   * read and write per block.
   */
  diskUndo?: boolean;
  /**
   * Migration PULL on the destination: the disk's per-block states (an Int32Array's buffer,
   * see PullState in disk.ts), kept by whoever receives the blocks. A guest access to a block
   * that is not PRESENT emits 'diskFetch' and waits until it is. Default: none (complete disk).
   */
  diskPull?: SharedArrayBuffer;
  /**
   * Kemari-style I/O synchronisation (the sync-io policy): the vCPU holds itself right after an
   * event that produced output, before running the events queued behind it, until resume().
   * `heldForOutput` says when it did. Default false: a batch of events runs to its end.
   */
  syncEachOutput?: boolean;
  /**
   * Copy the pages dirtied so far into the epoch's buffer while the vCPU is idle between
   * events (bytemap guests), so the collect's pause copies only what was written since.
   * Pages rewritten after their early copy are copied again. Default true.
   */
  earlyCopy?: boolean;
  /** The clock device (time-drift compensator). Default: the process default (setDefaultClockOptions). */
  clock?: VmmClockOptions;
  /**
   * Scheduling class of the vCPU thread. 'fifo' puts it on SCHED_FIFO priority 1 (as libvirt's
   * `<vcpusched scheduler='fifo'>` does for a KVM vCPU): no ordinary thread of the host preempts
   * it, so a checkpoint hold is not stretched by a time slice of another process. Needs
   * CAP_SYS_NICE (root) and util-linux's `chrt`; a refusal fails the boot (FTVM_ERR_VCPU_SCHED).
   * The thread then runs the guest ahead of every ordinary thread on its core: meant for a host
   * with a core to spare per guest. Default: the process default (setDefaultVcpuSched), 'normal'.
   */
  vcpuSched?: VcpuSched;
  /**
   * Vmm.restore: the caller gives `ckpt.memory` up. An ArrayBuffer moves to the vCPU worker
   * (transferred: detached here) instead of being cloned; a SharedArrayBuffer is shared anyway
   * (RunServer then keeps it as its rollback image). A structured clone copies the view's
   * whole backing buffer (a receive image grown by doubling: up to twice the memory) and took
   * ~0.75 s of a migration's downtime for a 175 MiB guest. Default false.
   */
  transferRestoreMemory?: boolean;
  /**
   * Where the vCPU runs. 'worker': a worker thread (a runaway event is stopped by terminating
   * it). 'inline': on this thread (inline-vcpu.ts), which saves the two thread wake-ups of each
   * request; a runaway event is stopped by the guest's fuel. A vCPU that cannot run inline runs
   * as a worker (see vcpuKind): a guest that is not interruptible (PreparedGuest), a prestarted
   * migration target (its disk may wait on this thread), a disk PULL, vcpuSched 'fifo'.
   * Default 'worker'.
   */
  vcpu?: VcpuMode;
}

/** Where a vCPU runs (VmmOptions.vcpu). */
export type VcpuMode = 'worker' | 'inline';
export const VCPU_MODES: readonly VcpuMode[] = ['worker', 'inline'];

/**
 * The clock device's options. mode, maxSlewPpm, stepThresholdMs and slewHorizonMs are the
 * compensator's (@ftvm/clock, defaults there except slewHorizonMs); they may differ between
 * primary and secondary (a restore takes the restoring VMM's).
 */
export interface VmmClockOptions {
  /** freeze | step | slew. Default 'slew'. */
  mode?: ClockMode;
  /** Largest rate change used to absorb a lag, ppm, in (0, 500000]. Default 50000. */
  maxSlewPpm?: number;
  /** slew: a lag above this is stepped (forward only), ms. Default 1000. */
  stepThresholdMs?: number;
  /**
   * Shortest time over which a lag is absorbed, ms. Default 10 (= tickMs): with ticks at the
   * horizon, a pause's lag is gone one tick after the resume (the compensator's own default,
   * 50 ms, leaves ~40 % of the lag of a 25 ms epoch for the next pause).
   */
  slewHorizonMs?: number;
  /** Period of the compensator's tick while the guest's rate differs from the host's, ms, in [1, 1000]. Default 10. */
  tickMs?: number;
  /**
   * Testing and failover drills only: this process's host clock is the system clock plus
   * offsetNs, running ratePpm fast (another host's skewed clock). Both threads use it.
   */
  skew?: { offsetNs?: bigint; ratePpm?: number };
}

export interface ResolvedClockOptions {
  mode: ClockMode;
  maxSlewPpm: number;
  stepThresholdMs: number;
  slewHorizonMs: number;
  tickMs: number;
  skew: { offsetNs: bigint; ratePpm: number };
}

const VMM_CLOCK_DEFAULTS: ResolvedClockOptions = {
  mode: CLOCK_DEFAULTS.mode,
  maxSlewPpm: CLOCK_DEFAULTS.maxSlewPpm,
  stepThresholdMs: CLOCK_DEFAULTS.stepThresholdMs,
  slewHorizonMs: 10,
  tickMs: 10,
  skew: { offsetNs: 0n, ratePpm: 0 },
};

let processClock: ResolvedClockOptions = VMM_CLOCK_DEFAULTS;

/** Scheduling class of a vCPU thread (VmmOptions.vcpuSched). */
export type VcpuSched = 'normal' | 'fifo';
export const VCPU_SCHEDS: readonly VcpuSched[] = ['normal', 'fifo'];
let processVcpuSched: VcpuSched = 'normal';

/** Sets the vCPU scheduling class of every Vmm of this process not given its own (the CLI's --vcpu-sched). */
export function setDefaultVcpuSched(s: VcpuSched): void {
  processVcpuSched = checkVcpuSched(s);
}

function checkVcpuSched(s: VcpuSched): VcpuSched {
  if (!VCPU_SCHEDS.includes(s)) throw new VmmError('FTVM_ERR_VMM_OPTION', `vcpuSched must be one of ${VCPU_SCHEDS.join(', ')}, got ${String(s)}`);
  return s;
}

/** Validates clock options; messages name the option. */
export function resolveClockOptions(o: VmmClockOptions = {}, base: ResolvedClockOptions = VMM_CLOCK_DEFAULTS): ResolvedClockOptions {
  const r: ResolvedClockOptions = {
    mode: o.mode ?? base.mode,
    maxSlewPpm: o.maxSlewPpm ?? base.maxSlewPpm,
    stepThresholdMs: o.stepThresholdMs ?? base.stepThresholdMs,
    slewHorizonMs: o.slewHorizonMs ?? base.slewHorizonMs,
    tickMs: o.tickMs ?? base.tickMs,
    skew: { offsetNs: o.skew?.offsetNs ?? base.skew.offsetNs, ratePpm: o.skew?.ratePpm ?? base.skew.ratePpm },
  };
  try {
    // The compensator validates its own options (mode, maxSlewPpm, stepThresholdMs, slewHorizonMs).
    new ClockCompensator(0n, { mode: r.mode, maxSlewPpm: r.maxSlewPpm, stepThresholdMs: r.stepThresholdMs, slewHorizonMs: r.slewHorizonMs });
  } catch (e) {
    throw new VmmError('FTVM_ERR_VMM_OPTION', `clock.${(e as Error).message}`, { cause: e });
  }
  if (!Number.isInteger(r.tickMs) || r.tickMs < 1 || r.tickMs > 1000)
    throw new VmmError('FTVM_ERR_VMM_OPTION', `clock.tickMs must be an integer in [1, 1000] (ms), got ${r.tickMs}`);
  if (typeof r.skew.offsetNs !== 'bigint')
    throw new VmmError('FTVM_ERR_VMM_OPTION', `clock.skew.offsetNs must be a bigint (ns), got ${typeof r.skew.offsetNs}`);
  if (typeof r.skew.ratePpm !== 'number' || !Number.isFinite(r.skew.ratePpm) || r.skew.ratePpm <= -500_000 || r.skew.ratePpm >= 500_000)
    throw new VmmError('FTVM_ERR_VMM_OPTION', `clock.skew.ratePpm must be a number in (-500000, 500000), got ${r.skew.ratePpm}`);
  return r;
}

/**
 * Sets the clock options of every Vmm of this process that is not given its own (the CLI
 * calls it once, before any role starts: the runtimes create VMMs on boot and promotion).
 * Returns the resolved options.
 */
export function setDefaultClockOptions(o: VmmClockOptions): ResolvedClockOptions {
  processClock = resolveClockOptions(o);
  return processClock;
}

export interface VmmEvents {
  output: [item: OutputItem];
  close: [conn: number, epoch: number, offset: number];
  fault: [err: VmmError];
  log: [level: number, msg: string];
  /** A batch of events was handled; `consumed` input bytes were dispatched. */
  progress: [consumed: number];
  /** The clock device updated the guest's clock (each resume of the vCPU and each slew tick). */
  clock: [r: ClockReport];
  /** PULL: the vCPU waits for blocks [block, block + n) that have not arrived (VmmOptions.diskPull). */
  diskFetch: [block: number, n: number];
}

const WORKER_PATH = fileURLToPath(new URL('./vcpu-worker.js', import.meta.url).href.replace('/src/vcpu-worker.js', '/dist/vcpu-worker.js'));

/**
 * Wall-anchored monotonic host time, one anchor for the whole process (every VMM and its
 * worker thread read the same hrtime), so a VMM restored in this process agrees with the
 * clock its checkpoint was taken on. hrtime is read around the wall read to halve the error.
 */
const PROCESS_ANCHOR = ((): { anchorWallNs: bigint; anchorHrNs: bigint } => {
  const hr0 = process.hrtime.bigint();
  const wallMs = performance.timeOrigin + performance.now();
  const hr1 = process.hrtime.bigint();
  return { anchorWallNs: BigInt(Math.round(wallMs * 1000)) * 1000n, anchorHrNs: (hr0 + hr1) / 2n };
})();

const baseNowNs = (): bigint => PROCESS_ANCHOR.anchorWallNs + (process.hrtime.bigint() - PROCESS_ANCHOR.anchorHrNs);

/** The host clock a VMM with these skew options runs on (the worker computes the same function). */
function skewedHostClock(skew: ResolvedClockOptions['skew']): HostClock {
  const ppb = BigInt(Math.round(skew.ratePpm * 1000));
  const anchor = PROCESS_ANCHOR.anchorWallNs;
  return {
    nowNs: () => {
      const b = baseNowNs();
      return b + skew.offsetNs + ((b - anchor) * ppb) / 1_000_000_000n;
    },
  };
}

/** Bytes of writeImage() buffers a VMM keeps for reuse (see imageBuffer). */
const IMAGE_POOL_BYTES = 64 << 20;

type State = 'starting' | 'prestarted' | 'running' | 'faulted' | 'stopped';

/**
 * A guest VM: a vCPU worker running the instrumented module, driven from the main
 * thread's I/O loop. Events are queued in order; commands (collect, pause) take effect
 * at the next event boundary.
 */
/** Guest log lines kept while nobody listens (the boot's), at most. */
const MAX_EARLY_LOGS = 256;

export class Vmm extends EventEmitter<VmmEvents> {
  /** Guest log lines that arrived with no 'log' listener, oldest first. */
  private earlyLogs: [number, string][] = [];
  readonly guest: PreparedGuest;
  readonly eventTimeoutMs: number;
  readonly disk: DiskSpec | undefined;
  private readonly diskUndo: boolean;
  private diskPull: SharedArrayBuffer | undefined;
  /** The start (or prestart, or restoreInto) waiting for the worker's answer. */
  private starting: { resolve: () => void; reject: (e: VmmError) => void } | null = null;
  private readonly transferRestoreMemory: boolean;
  private readonly syncEachOutput: boolean;
  private readonly earlyCopy: boolean;
  private readonly vcpuSched: VcpuSched;
  private held = false;
  /** The disk's descriptors: opened by the first start, reused by every rollback's vCPU, closed by stop(). */
  private diskFds: DiskFds | null = null;
  private worker!: Worker | InlineVcpu;
  private readonly vcpuMode: VcpuMode;
  /** Where the current vCPU runs, and why not inline when it was asked for. */
  vcpuKind: VcpuMode = 'worker';
  vcpuWhyWorker: string | null = null;
  private watch!: BigInt64Array;
  private watchdog: NodeJS.Timeout | null = null;
  private pending = new Map<number, { resolve: (v: never) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private batch: GuestEvent[] = [];
  private batchQueued = false;
  /** A batch went to the vCPU and no 'out' came back since: later events wait and go together (flushEvents). */
  private batchInFlight = false;
  /** Events in the last batch sent. */
  private lastBatch = 0;
  private timer: NodeJS.Timeout | null = null;
  private timerDeadline: bigint | null = null;
  private readonly anchor = PROCESS_ANCHOR;
  /** The clock device's options, validated. */
  readonly clockOptions: ResolvedClockOptions;
  /** This VMM's host clock (skewed in drills): the clock its compensator runs on, ns since the Unix epoch. */
  readonly hostClock: HostClock;
  private lastClock: ClockReport | null = null;
  state: State = 'starting';
  /** Epoch the vCPU is executing now (outputs carry it). */
  epoch = 1;
  memBytes = 0;

  private constructor(guest: PreparedGuest, opts: VmmOptions) {
    super();
    (this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event !== 'log' || this.earlyLogs.length === 0) return;
      // After the listener is added (newListener fires before): hand it what was kept.
      queueMicrotask(() => {
        const kept = this.earlyLogs.splice(0);
        for (const [level, msg] of kept) this.emit('log', level, msg);
      });
    });
    this.guest = guest;
    this.eventTimeoutMs = opts.eventTimeoutMs ?? 2000;
    this.disk = opts.disk;
    this.diskUndo = opts.diskUndo ?? false;
    this.diskPull = opts.diskPull;
    this.transferRestoreMemory = opts.transferRestoreMemory ?? false;
    this.syncEachOutput = opts.syncEachOutput ?? false;
    this.earlyCopy = opts.earlyCopy ?? true;
    this.vcpuSched = checkVcpuSched(opts.vcpuSched ?? processVcpuSched);
    this.vcpuMode = opts.vcpu ?? 'worker';
    if (!VCPU_MODES.includes(this.vcpuMode)) throw new VmmError('FTVM_ERR_VMM_OPTION', `vcpu must be one of ${VCPU_MODES.join(', ')}, got ${String(opts.vcpu)}`);
    if (!Number.isInteger(this.eventTimeoutMs) || this.eventTimeoutMs < 1)
      throw new VmmError('FTVM_ERR_VMM_OPTION', `eventTimeoutMs must be a positive integer (ms), got ${opts.eventTimeoutMs}`);
    this.clockOptions = opts.clock ? resolveClockOptions(opts.clock, processClock) : processClock;
    this.hostClock = skewedHostClock(this.clockOptions.skew);
  }

  /** First boot: instantiates the guest and runs ftvm_init. */
  static async boot(guest: PreparedGuest, opts: VmmOptions = {}): Promise<Vmm> {
    const v = new Vmm(guest, opts);
    await v.start(undefined);
    return v;
  }

  /** Resumes a checkpoint (ftvm_init is not run again). */
  static async restore(guest: PreparedGuest, ckpt: Checkpoint, opts: VmmOptions = {}): Promise<Vmm> {
    const v = new Vmm(guest, opts);
    await v.start(ckpt);
    return v;
  }

  /**
   * A vCPU for a guest that arrives later (a migration target during its rounds): the module
   * is instantiated and its memory grown to `memBytes` and faulted in now, so restoreInto()
   * pays only the copy into it. `memBytes` is at most the checkpoint's (the source's memory
   * at round 0: memory only grows). Nothing runs until restoreInto(); stop() discards it.
   */
  static async prestart(guest: PreparedGuest, memBytes: number, opts: VmmOptions = {}): Promise<Vmm> {
    if (!Number.isSafeInteger(memBytes) || memBytes < 0 || memBytes % 65536 !== 0 || memBytes > 2 ** 32)
      throw new VmmError('FTVM_ERR_VMM_OPTION', `prestart memBytes must be whole 64 KiB wasm pages up to 4 GiB, got ${memBytes}`);
    const v = new Vmm(guest, opts);
    await v.start(undefined, false, memBytes);
    return v;
  }

  /**
   * Completes prestart() with the checkpoint (as Vmm.restore would start it) and, for a
   * migration's PULL, the disk's per-block states known only at the stop-and-copy; `inPlace`: the
   * memory holds the image already (writeImage), only its size, globals and devices are used.
   */
  restoreInto(ckpt: Checkpoint, late: { diskPull?: SharedArrayBuffer; inPlace?: boolean } = {}): Promise<void> {
    if (this.state !== 'prestarted') return Promise.reject(new VmmError('FTVM_ERR_VMM_OPTION', `restoreInto() needs a prestarted VMM (this one is ${this.state})`));
    if (ckpt.moduleDigest !== this.guest.digest)
      return Promise.reject(new VmmError('FTVM_ERR_CHECKPOINT_INVALID', `checkpoint is of module ${ckpt.moduleDigest.slice(0, 12)}, guest is ${this.guest.digest.slice(0, 12)}`));
    if (late.diskPull) this.diskPull = late.diskPull;
    this.state = 'starting';
    // In place: writeImage() put the image in the vCPU's memory already; ckpt.memory is not sent.
    const { restore, transfer } = late.inPlace
      ? { restore: { memory: new Uint8Array(0), memBytes: ckpt.memBytes, globals: ckpt.globals, devices: ckpt.devices, epoch: ckpt.epoch, inPlace: true }, transfer: [] }
      : this.restoreInit(ckpt, false);
    const disk = this.diskInit(false);
    return new Promise<void>((resolve, reject) => {
      this.starting = { resolve, reject };
      const msg: ToWorker = { t: 'start', restore, disk };
      this.worker.postMessage(msg, transfer);
    });
  }

  /**
   * Writes committed image bytes into a prestarted vCPU's memory, grown to `memBytes` first
   * (a secondary keeps its image there: see ReadyVcpu). `data` is transferred. `pages`: data
   * holds those 4 KiB pages in order; a number: data goes at that byte offset.
   */
  writeImage(memBytes: number, where: Uint32Array | number, data: Uint8Array): void {
    if (this.state !== 'prestarted') throw new VmmError('FTVM_ERR_VMM_OPTION', `writeImage() needs a prestarted VMM (this one is ${this.state})`);
    const msg: ToWorker = typeof where === 'number' ? { t: 'image', memBytes, at: where, data } : { t: 'image', memBytes, pages: where, data };
    this.imageWritesInFlight++;
    this.worker.postMessage(msg, [data.buffer as ArrayBuffer]);
  }

  /**
   * A buffer of `bytes` for writeImage(): one the worker handed back when one is large enough
   * (its pages are mapped already, and nothing is left for an idle worker's late GC), else new.
   */
  imageBuffer(bytes: number): Uint8Array {
    const i = this.imagePool.findIndex((b) => b.byteLength >= bytes);
    if (i < 0) return new Uint8Array(bytes);
    const [b] = this.imagePool.splice(i, 1);
    this.imagePoolBytes -= b!.byteLength;
    return new Uint8Array(b!, 0, bytes);
  }

  /** writeImage() calls the worker has not finished yet. */
  imageWritesInFlight = 0;
  private imagePool: ArrayBuffer[] = [];
  private imagePoolBytes = 0;

  /** The worker's view of a checkpoint, and what moves to it (transferRestoreMemory). */
  private restoreInit(ckpt: Checkpoint, rollingBack: boolean, giveUp = false): { restore: NonNullable<WorkerInit['restore']>; transfer: ArrayBuffer[] } {
    const buf = ckpt.memory.buffer;
    const transfer = (giveUp || (!rollingBack && this.transferRestoreMemory)) && buf instanceof ArrayBuffer && !(buf as { resizable?: boolean }).resizable;
    return {
      restore: { memory: ckpt.memory, memBytes: ckpt.memBytes, globals: ckpt.globals, devices: ckpt.devices, epoch: ckpt.epoch },
      transfer: transfer ? [buf] : [],
    };
  }

  private diskInit(rollingBack: boolean): WorkerInit['disk'] {
    return this.disk && { path: this.disk.path, blocks: this.disk.blocks, undo: !this.diskUndo ? 'off' : rollingBack ? 'apply' : 'fresh', fds: this.openDisk(), pull: this.diskPull };
  }

  private start(ckpt: Checkpoint | undefined, rollingBack = false, prestartBytes?: number, giveUp = false): Promise<void> {
    if (ckpt && ckpt.moduleDigest !== this.guest.digest)
      throw new VmmError('FTVM_ERR_CHECKPOINT_INVALID', `checkpoint is of module ${ckpt.moduleDigest.slice(0, 12)}, guest is ${this.guest.digest.slice(0, 12)}`);
    const pre = prestartBytes !== undefined;
    const r = ckpt && this.restoreInit(ckpt, rollingBack, giveUp);
    const sab = new SharedArrayBuffer(4 * 8);
    this.watch = new BigInt64Array(sab);
    const init: WorkerInit = {
      wasm: this.guest.wasm,
      dirtyMode: this.guest.dirtyMode,
      globalExports: this.guest.globalExports,
      ...this.anchor,
      clock: this.workerClock(),
      watch: sab,
      syncEachOutput: this.syncEachOutput,
      earlyCopy: this.earlyCopy,
      vcpuSched: this.vcpuSched,
      // A prestart gets the disk with the checkpoint (restoreInto).
      disk: pre ? undefined : this.diskInit(rollingBack),
      restore: r?.restore,
      prestart: pre ? { memBytes: prestartBytes } : undefined,
      inline: false,
      eventTimeoutMs: this.eventTimeoutMs,
    };
    this.state = 'starting';
    this.batchInFlight = false;
    this.vcpuWhyWorker = this.vcpuMode === 'inline' ? this.whyNotInline(pre) : null;
    this.vcpuKind = this.vcpuMode === 'inline' && this.vcpuWhyWorker === null ? 'inline' : 'worker';
    init.inline = this.vcpuKind === 'inline';
    this.worker = init.inline
      ? new InlineVcpu(WORKER_PATH, init, r?.transfer ?? [])
      : new Worker(WORKER_PATH, { workerData: init, transferList: r?.transfer.length ? r.transfer : undefined });
    const worker = this.worker;
    return new Promise<void>((resolve, reject) => {
      this.starting = { resolve, reject };
      const settle = (err?: VmmError): void => {
        const s = this.starting;
        this.starting = null;
        if (err) s?.reject(err);
        else s?.resolve();
      };
      const onMsg = (m: FromWorker) => {
        if (worker !== this.worker) return;
        if (m.t === 'prestarted') {
          this.state = 'prestarted';
          settle();
          return;
        }
        if (m.t === 'ready') {
          this.state = 'running';
          this.epoch = m.epoch;
          this.memBytes = m.memBytes;
          // An inline vCPU stops its own runaway events (its fuel): this thread is the one they block.
          if (this.vcpuKind === 'worker') this.startWatchdog();
          settle();
          return;
        }
        if (m.t === 'error' && this.state === 'starting') {
          this.state = 'stopped';
          void worker.terminate();
          settle(new VmmError(m.code, m.message));
          return;
        }
        this.onWorker(m);
      };
      worker.on('message', onMsg);
      worker.on('error', (e) => {
        if (worker !== this.worker) return;
        if (this.state === 'starting' || this.state === 'prestarted') {
          this.state = 'stopped';
          settle(new VmmError('FTVM_ERR_GUEST_INIT', `guest failed to start: ${e.message}`, { cause: e }));
          return;
        }
        this.fail(new VmmError('FTVM_ERR_GUEST_TRAP', `vCPU worker failed: ${e.message}`, { cause: e }));
      });
    });
  }

  /** Why a vCPU asked to run inline runs as a worker, or null when it can run inline. */
  private whyNotInline(prestart: boolean): string | null {
    if (!this.guest.interruptible) return `guest ${this.guest.name} carries no fuel counter (shadow dirty log) or has exception handlers`;
    if (prestart) return 'a prestarted migration target';
    if (this.diskPull) return 'a disk PULL waits on the vCPU thread';
    if (this.vcpuSched === 'fifo') return 'vcpuSched fifo schedules a thread of its own';
    return null;
  }

  private openDisk(): DiskFds {
    this.diskFds ??= openDiskFds(this.disk!, this.diskUndo);
    return this.diskFds;
  }

  private closeDisk(): void {
    if (this.diskFds) closeDiskFds(this.diskFds, this.disk!);
    this.diskFds = null;
  }

  private workerClock(): WorkerClockInit {
    const c = this.clockOptions;
    return {
      mode: c.mode,
      maxSlewPpm: c.maxSlewPpm,
      stepThresholdMs: c.stepThresholdMs,
      slewHorizonMs: c.slewHorizonMs,
      tickMs: c.tickMs,
      skewOffsetNs: c.skew.offsetNs,
      skewRatePpm: c.skew.ratePpm,
      skewAnchorNs: this.anchor.anchorWallNs,
    };
  }

  private startWatchdog(): void {
    const period = Math.max(5, Math.min(250, Math.floor(this.eventTimeoutMs / 4)));
    this.watchdog = setInterval(() => {
      if (this.state !== 'running' || Atomics.load(this.watch, 0) !== 1n) return;
      const started = this.watch[3]!;
      const now = this.anchor.anchorWallNs + (process.hrtime.bigint() - this.anchor.anchorHrNs);
      if (now - started > BigInt(this.eventTimeoutMs) * 1_000_000n) {
        const c = Number(this.watch[2]!) - 1;
        void this.worker.terminate();
        this.fail(
          new VmmError('FTVM_ERR_GUEST_TIMEOUT', `guest event ran longer than eventTimeoutMs (${this.eventTimeoutMs} ms); vCPU stopped`, {
            conn: c >= 0 ? c : undefined,
          }),
        );
      }
    }, period);
    this.watchdog.unref();
  }

  private fail(err: VmmError): void {
    if (this.state === 'faulted' || this.state === 'stopped') return;
    this.state = 'faulted';
    this.stopTimers();
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.batch = [];
    this.emit('fault', err);
  }

  private stopTimers(): void {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerDeadline = null;
  }

  private onWorker(m: FromWorker): void {
    switch (m.t) {
      case 'out':
        // Before the outputs: their listeners see the vCPU held (syncEachOutput).
        if (m.held) this.held = true;
        for (let j = 0, at = 0; j < m.meta.length; j += OUT_META) {
          const n = m.meta[j + 3]!;
          const it: OutputItem = { conn: m.meta[j]!, offset: m.meta[j + 1]!, epoch: m.meta[j + 2]!, data: m.data.subarray(at, at + n) };
          at += n;
          this.emit('output', it);
        }
        for (const c of m.closes) this.emit('close', c.conn, c.epoch, c.offset);
        this.armTimer(m.timer, m.guestNow);
        this.batchInFlight = false;
        if (this.batch.length && !this.batchQueued) {
          this.batchQueued = true;
          setImmediate(this.flushEvents);
        }
        this.emit('progress', m.consumed);
        return;
      case 'collected': {
        this.epoch = m.c.epoch + 1;
        this.memBytes = m.c.memBytes;
        this.settle(m.id, m.c);
        return;
      }
      case 'paused':
        this.settle(m.id, undefined);
        return;
      case 'read':
        this.settle(m.id, m.data);
        return;
      case 'log':
        // A guest logs from ftvm_init, before the caller of boot() can listen: keep those lines.
        if (this.listenerCount('log') > 0) this.emit('log', m.level, m.msg);
        else if (this.earlyLogs.length < MAX_EARLY_LOGS) this.earlyLogs.push([m.level, m.msg]);
        return;
      case 'clock':
        this.lastClock = m.r;
        this.emit('clock', m.r);
        return;
      case 'clockReport':
        this.lastClock = m.r;
        this.settle(m.id, m.r);
        return;
      case 'fault':
        this.fail(new VmmError(m.code, m.message, { conn: m.conn ?? undefined }));
        return;
      case 'error':
        this.fail(new VmmError(m.code, m.message));
        return;
      case 'dirty':
        this.memBytes = m.memBytes;
        this.settle(m.id, { pages: m.pages, blocks: m.blocks });
        return;
      case 'diskFetch':
        this.emit('diskFetch', m.block, m.n);
        return;
      case 'final':
        this.memBytes = m.f.memBytes;
        this.settle(m.id, m.f);
        return;
      case 'reqError': {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        p.reject(new VmmError(m.code, m.message));
        return;
      }
      case 'ready':
        return;
      case 'imageDone':
        this.imageWritesInFlight--;
        // Kept for imageBuffer() up to IMAGE_POOL_BYTES; the rest is this thread's GC's.
        if (this.imagePoolBytes + m.buf.byteLength <= IMAGE_POOL_BYTES) {
          this.imagePool.push(m.buf);
          this.imagePoolBytes += m.buf.byteLength;
        }
        return;
    }
  }

  private settle(id: number, v: unknown): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    p.resolve(v as never);
  }

  private armTimer(deadline: bigint | null, guestNow: bigint): void {
    if (deadline === this.timerDeadline) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerDeadline = deadline;
    if (deadline === null || this.state !== 'running') return;
    const ms = Number(deadline - guestNow) / 1e6;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerDeadline = null;
      this.enqueue({ k: 'timer' });
    }, Math.max(0, Math.ceil(ms)));
  }

  private send(m: ToWorker, transfer?: ArrayBuffer[]): void {
    this.worker.postMessage(m, transfer ?? []);
  }

  private request<T>(make: (id: number) => ToWorker, transfer?: ArrayBuffer[]): Promise<T> {
    if (this.state !== 'running')
      return Promise.reject(new VmmError('FTVM_ERR_GUEST_STOPPED', `the guest is ${this.state}`));
    this.flushEvents(true);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: never) => void, reject });
      this.send(make(id), transfer);
    });
  }

  /**
   * Queues a guest event. While a batch is in flight, events of the turn wait and go as one
   * message (see flushEvents). The input's bytes are copied once, when the batch is packed;
   * until then `ev.data` must not change.
   */
  enqueue(ev: GuestEvent): void {
    if (this.state !== 'running') return;
    this.batch.push(ev);
    if (this.batchQueued) return;
    this.batchQueued = true;
    // Nothing in flight, the last batch was a lone event (one client) and none went this loop
    // turn yet: this one goes right after the callback that queued it. Otherwise after the poll
    // phase, with the rest of the turn (an inline vCPU is never in flight at a socket callback:
    // the turn's first event tells it that more are arriving).
    if (this.batchInFlight || this.lastBatch > 1 || this.flushedThisTurn) setImmediate(this.flushEvents);
    else {
      this.flushedThisTurn = true;
      setImmediate(this.newTurn);
      queueMicrotask(this.flushEvents);
    }
  }

  /** A lone event was sent at once this loop turn (enqueue); cleared in the turn's check phase. */
  private flushedThisTurn = false;
  private newTurn = (): void => {
    this.flushedThisTurn = false;
  };

  /**
   * Sends the queued events as one message. While the vCPU still runs the previous batch,
   * they wait for its 'out' (which flushes again): under load a batch carries everything that
   * arrived meanwhile, and each thread wakes once per batch instead of once per loop turn.
   * With nothing in flight (one client) the events go at once. A command flushes regardless
   * (`force`): it must follow the events queued before it.
   */
  private flushEvents = (force?: unknown): void => {
    this.batchQueued = false;
    if (this.batch.length === 0 || this.state !== 'running') return;
    if (this.batchInFlight && force !== true) return;
    this.batchInFlight = true;
    this.lastBatch = this.batch.length;
    const { meta, data } = packEvents(this.batch);
    this.batch = [];
    this.send({ t: 'events', meta, data }, [meta.buffer as ArrayBuffer, data.buffer as ArrayBuffer]);
  };

  open(conn: number): void {
    this.enqueue({ k: 'open', conn });
  }
  input(conn: number, data: Uint8Array): void {
    this.enqueue({ k: 'data', conn, data });
  }
  close(conn: number): void {
    this.enqueue({ k: 'close', conn });
  }

  /**
   * Ends the current epoch at the next event boundary: copies dirty pages (or every page
   * when full) with globals and device state, clears the dirty log and resumes at once
   * (or stays paused when `resume` is false).
   *
   * `background` (full only, bytemap guests): every page is copied between events while the
   * guest runs on, then the epoch ends in a hold that copies only the pages written meanwhile,
   * so a full sync holds the vCPU O(pages written during the copy), not O(memory). The result
   * is the memory at that hold, as a plain full collect's is at its own.
   */
  collect(full = false, resume = true, scrub?: { fromPage: number; count: number }, opts: { background?: boolean } = {}): Promise<Collected> {
    if (resume) this.held = false;
    return this.request<Collected>((id) => ({ t: 'collect', id, full, resume, scrub, background: opts.background }));
  }

  /**
   * Hands back a `Collected.data` (or `scrub.data`) the caller has finished reading: the vCPU
   * reuses its buffer for a later copy instead of allocating (and faulting in) a fresh one. The
   * buffer is transferred at once, so `data` (and every view of its buffer) is empty from then
   * on. Not with the next collect: a buffer arriving in a thread counts as new external memory
   * there, and the scavenge that starts would land in that collect's hold (measured: 10 of 53
   * worker scavenges of ~0.6 ms fell in holds that way, 2 of 78 with the buffer sent at once).
   * Buffers too small or too large to keep are left alone.
   */
  recycle(data: Uint8Array): void {
    const buf = data.buffer;
    if (!this.earlyCopy || this.state !== 'running' || !(buf instanceof ArrayBuffer) || !poolable(buf.byteLength)) return;
    this.send({ t: 'recycle', buf }, [buf]);
  }

  /** Marks pages dirty so the next epoch carries them again (a scrub repair). */
  markDirty(pages: number[]): void {
    if (this.state === 'running' && pages.length) this.send({ t: 'mark', pages });
  }

  /** Holds the vCPU at the next event boundary; events queue until resume(). */
  pause(): Promise<void> {
    return this.request<void>((id) => ({ t: 'pause', id }));
  }

  /** Collects while paused and stays paused. */
  collectDirty(): Promise<Collected> {
    return this.request<Collected>((id) => ({ t: 'collect', id, full: false, resume: false }));
  }

  /** The vCPU held itself after an output (syncEachOutput) and waits for resume(). */
  get heldForOutput(): boolean {
    return this.held;
  }

  resume(): void {
    this.held = false;
    if (this.state === 'running') this.send({ t: 'resume' });
  }

  /** Reads pages of live guest memory (for the integrity scrub). */
  readPages(fromPage: number, count: number): Promise<Uint8Array> {
    return this.request<Uint8Array>((id) => ({ t: 'read', id, fromPage, count }));
  }

  // ---- pre-copy (migration, live snapshot); see vcpu-worker.ts for how the dirty log is shared ----

  /**
   * Starts a pre-copy's dirty tracking at the next event boundary: from here on,
   * dirtyPages() returns the pages written since its previous call, whatever epoch collects
   * happen in between (they keep their own pages). A rollback or restart ends tracking.
   */
  async startDirtyTracking(): Promise<void> {
    await this.request<unknown>((id) => ({ t: 'dirty', id, start: true }));
  }

  /**
   * Returns and clears the pre-copy dirty set at the next event boundary (sorted page
   * numbers; pages memory.grow added count as dirty). No page data is copied.
   * FTVM_ERR_PRECOPY_NOT_TRACKING without startDirtyTracking().
   */
  async dirtyPages(): Promise<Uint32Array> {
    return (await this.dirtySets()).pages;
  }

  /** dirtyPages() and, with a disk, the blocks written since the previous call (sorted), taken at one boundary. */
  dirtySets(): Promise<{ pages: Uint32Array; blocks: Uint32Array }> {
    return this.request<{ pages: Uint32Array; blocks: Uint32Array }>((id) => ({ t: 'dirty', id, start: false }));
  }

  /** Makes the disk's writes durable (fdatasync; nothing without a disk). */
  syncDisk(): Promise<void> {
    if (!this.disk) return Promise.resolve();
    const fd = this.openDisk().disk;
    return new Promise((resolve, reject) => fdatasync(fd, (e) => (e ? reject(e) : resolve())));
  }

  /**
   * Reads disk blocks from the file on this (main) thread, through libuv's pool: the guest
   * keeps running. A block the guest writes meanwhile is in the next dirtySets(), so a torn
   * read is always sent again. Empty without a disk.
   */
  readBlockList(blocks: ArrayLike<number>): Promise<Uint8Array> {
    if (!this.disk) return Promise.resolve(new Uint8Array(0));
    return readBlocksAsync(this.openDisk().disk, blocks);
  }

  /** Ends dirty tracking (a pre-copy finished or gave up). */
  stopDirtyTracking(): void {
    if (this.state === 'running') this.send({ t: 'dirtyStop' });
  }

  /**
   * Copies the listed pages at one event boundary (the guest runs between two calls).
   * Keep a call to a few MiB: the vCPU does not run during the copy. `into` (transferred to
   * the worker) is filled instead of a fresh buffer when it is large enough: a buffer used
   * before has its pages mapped, a fresh one faults each in during the copy.
   */
  readPageList(pages: Uint32Array, into?: ArrayBuffer): Promise<Uint8Array> {
    return this.request<Uint8Array>((id) => ({ t: 'readList', id, pages, into }), into ? [into] : undefined);
  }

  /**
   * The stop-and-copy: holds the vCPU at the next event boundary (until resume()) and
   * returns the pages dirtied since the last dirtyPages() with globals and device state.
   * Read those pages with readPageList() while held. Ends dirty tracking.
   */
  precopyFinal(): Promise<PrecopyFinal> {
    return this.request<PrecopyFinal>((id) => ({ t: 'final', id }));
  }

  /**
   * Delays event dispatch by `delayMs` (0: off): events arriving within the delay run
   * together when it ends, so the guest runs at most one batch per delayMs. The CPU-cap /
   * auto-converge analogue that bounds a guest's dirty rate; commands are not delayed.
   */
  throttle(delayMs: number): void {
    if (!Number.isFinite(delayMs) || delayMs < 0 || delayMs > 10_000)
      throw new VmmError('FTVM_ERR_VMM_OPTION', `throttle delayMs must be in [0, 10000] (ms), got ${delayMs}`);
    if (this.state === 'running') this.send({ t: 'throttle', delayMs });
  }

  /**
   * Pins the pvclock fields the guest sees and the virtual TSC offset (tsc = host ns +
   * tscOffset), overriding the compensator until this VMM is restored or rolled back: a test
   * hook (deterministic guest time on two sides), never used by the runtimes.
   */
  setClock(fields: PvclockFields | null, tscOffset: bigint): void {
    if (this.state === 'running') this.send({ t: 'clock', fields, tscOffset });
  }

  /** The clock device's latest report (after the last resume or slew tick), or null before the first. */
  get clock(): ClockReport | null {
    return this.lastClock;
  }

  /** The clock device's state now (guest time, drift against the reference, rate). */
  clockReport(): Promise<ClockReport> {
    return this.request<ClockReport>((id) => ({ t: 'clockReport', id }));
  }

  /** A full checkpoint of the guest at the next event boundary (ends the epoch). */
  async capture(): Promise<Checkpoint> {
    const c = await this.collect(true);
    const memory = new Uint8Array(c.memBytes);
    for (let i = 0; i < c.pages.length; i++) memory.set(c.data.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES), c.pages[i]! * PAGE_BYTES);
    return { format: 1, moduleDigest: this.guest.digest, epoch: c.epoch, memBytes: c.memBytes, memory, globals: c.globals, devices: c.devices };
  }

  /**
   * Replaces the vCPU with one restored from `ckpt` (after a fault, or to roll back), then
   * queues `replay` events. Listeners stay attached. `transfer`: the caller gives
   * `ckpt.memory` up (a plain ArrayBuffer moves to the worker instead of being cloned on this
   * thread).
   */
  async rollback(ckpt: Checkpoint, replay: GuestEvent[] = [], opts: { transfer?: boolean } = {}): Promise<void> {
    this.stopTimers();
    for (const p of this.pending.values()) p.reject(new VmmError('FTVM_ERR_GUEST_STOPPED', 'rolled back'));
    this.pending.clear();
    this.batch = [];
    const old = this.worker;
    this.state = 'stopped';
    await old.terminate();
    // With an undo file the disk returns to the checkpoint too (the new vCPU applies it before the guest runs).
    await this.start(ckpt, true, undefined, opts.transfer === true);
    for (const ev of replay) this.enqueue(ev);
  }

  async stop(): Promise<void> {
    this.stopTimers();
    this.state = 'stopped';
    for (const p of this.pending.values()) p.reject(new VmmError('FTVM_ERR_GUEST_STOPPED', 'the VMM was stopped'));
    this.pending.clear();
    await this.worker.terminate();
    // After the vCPU is gone: no write can reach a closed (maybe reused) descriptor.
    this.closeDisk();
  }
}
