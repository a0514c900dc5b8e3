/**
 * The vCPU: runs the guest one event at a time in a worker thread. It owns guest memory,
 * the dirty log and the guest-side device state (connection offsets, timer, pvclock page),
 * so everything it reports for an epoch is consistent with memory at that boundary.
 *
 * The clock device (the time-drift compensator) lives here too, not on the main thread:
 * the compensator's publication contract says new pvclock fields must be in guest memory
 * before the guest can read the clock again, and only this thread knows when the vCPU
 * stops and restarts (a collect resumes the guest at once, before the main thread hears of
 * it). So every hold (collect, pause) is pause(h)/resume(h) on the compensator, and the
 * fields are written before the next guest event runs.
 */
import { execFileSync } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { randomFillSync } from 'node:crypto';
import {
  EXPORT_ABI_VERSION,
  IMPORT_MODULE,
  PAGE_BYTES,
  PAGE_SHIFT,
  PVCLOCK,
  RESERVED_BYTES,
  RESERVED_PAGES,
} from '@ftvm/guest-abi';
// The dirty-log collectors only: the package root would load binaryen (~1 s) into every vCPU.
import { BytemapDirtyLog, ShadowDirtyLog, copyPages, pagesInRange } from '@ftvm/instrument/dirty-log';
import { FUEL_IMPORT } from '@ftvm/instrument/fuel';
import { EpochCopy } from './epoch-copy.js';
import type { ClockState, PvclockFields } from '@ftvm/clock';
import { ClockCompensator, pvclockTimeNs, writePvclock } from '@ftvm/clock';
import type { ClockDeviceState, ConnState, DeviceState, GlobalValue } from './checkpoint.js';
import type { ClockReport, Collected, FromWorker, GuestEvent, ToWorker, WorkerDiskInit, WorkerInit, WorkerRestoreInit } from './worker-messages.js';
import { OUT_META, unpackEvents } from './worker-messages.js';
import { BlockDevice, DISK_BLOCK_BYTES, DiskStatus } from './disk.js';
import { takeVcpuHost } from './vcpu-host.js';

// A worker thread's, or an InlineVcpu's on the main thread (whose timers stop when it is terminated).
const host = takeVcpuHost();
const init: WorkerInit = host.init;
const port = host.port;
const { setTimeout, clearTimeout, setImmediate } = host.timers;
const post = (m: FromWorker, transfer?: ArrayBuffer[]): void => port.postMessage(m, transfer);

/** Largest chunk handed to ftvm_on_data at once, bytes: bounds the guest's input buffer. */
const MAX_DATA_CHUNK = 64 * 1024;

const watch = new BigInt64Array(init.watch);
/** This process's unskewed wall-anchored clock, ns: the watchdog compares against it. */
const baseNs = () => init.anchorWallNs + (process.hrtime.bigint() - init.anchorHrNs);
const ck = init.clock;
const skewPpb = BigInt(Math.round(ck.skewRatePpm * 1000));
/** The host clock the compensator sees: identical to Vmm.hostClock on the main thread. */
const hostNs = (): bigint => {
  const b = baseNs();
  return b + ck.skewOffsetNs + ((b - ck.skewAnchorNs) * skewPpb) / 1_000_000_000n;
};

/** The virtual TSC runs at 1 GHz: tsc = host ns + tscOffset (the compensator's tscOffset()). */
let tscOffset = 0n;
const rdtsc = () => hostNs() + tscOffset;
let pvclockAddr = 0;
/** The fields in force: what the guest reads (written into its page once it registered one). */
let pvFields!: PvclockFields;
let pvVersion = 0;
/**
 * pvFields changed since they were last written into the page. The page is written just
 * before the next guest event instead of at once, so an idle guest's page stays clean
 * (no dirty page per epoch); the guest cannot read the clock without an event.
 */
let pvPending = false;
let comp!: ClockCompensator;
/** The compensator is paused: the vCPU is held (collect, pause) or not yet started after a restore. */
let clockHeld = false;
/** Vmm.setClock pinned the fields and TSC (a test hook): the compensator stops publishing. */
let pinned = false;
let tickTimer: NodeJS.Timeout | null = null;
let timerDeadline: bigint | null = null;
const conns = new Map<number, ConnState>();
let epoch = 1;
let paused = false;
/** syncEachOutput: the vCPU held itself after an output since the last flush. */
let heldForOutput = false;
let faulted = false;
const queue: GuestEvent[] = [];
// The batch's outputs, packed as the 'out' message carries them (OUT_META numbers per item),
// their bytes copied back to back: two buffers per batch instead of one per send.
const OUT_BYTES_KEEP = 1 << 20;
let outBytes = new Uint8Array(64 * 1024);
let outLen = 0;
let outMeta = new Float64Array(256 * OUT_META);
let outCount = 0;
let closes: Array<{ conn: number; epoch: number; offset: number }> = [];
let consumedSincePost = 0;
let seq = 0n;

let memory!: WebAssembly.Memory;
let ex!: Record<string, unknown>;
let globals: WebAssembly.Global[] = [];
const bytemap = init.dirtyMode === 'bytemap' ? new BytemapDirtyLog() : null;
const shadow = init.dirtyMode === 'shadow' ? new ShadowDirtyLog() : null;
/** The epoch's pages copied between events (VmmOptions.earlyCopy; bytemap guests only). */
let early = init.earlyCopy && bytemap ? new EpochCopy() : null;
let earlyScheduled = false;
/** Events ran (or pages were marked) since the last early scan of the log. */
let earlyDirty = false;
/** Pages per early-copy slice: ~0.1 ms of copying between two looks at the event queue. */
const EARLY_SLICE_PAGES = 64;
/**
 * Least time between two early scans of the log, ms. A scan after every batch of events
 * re-copied a server's hot pages (stack, allocator, hash buckets) after every request: kv
 * under redis-benchmark ran ~10 scans per 3 ms epoch, and the early copy cost more throughput
 * than it saved in holds. Every 2 ms, a page written all the time is copied once or twice per
 * epoch, and the hold still copies only what was written since the last scan.
 */
const EARLY_SCAN_GAP_MS = 2;
/** When the last early scan took pages from the log (performance.now()). */
let lastEarlyScan = -Infinity;
/**
 * A full collect in the background (a new secondary's full sync): every page is copied
 * between events while the guest runs, the log records what it writes meanwhile, and the
 * hold copies only that. Meanwhile the per-epoch early copy stands aside (it would clear
 * those marks).
 */
let bgFull: { id: number; resume: boolean; copy: EpochCopy; memBytes: number } | null = null;
let bgScheduled = false;
/** Where the next scrub slice probably starts (the primary's cursor moves on by each slice) and its size, read ahead by afterHold. */
let scrubAhead: { fromPage: number; count: number } | null = null;
/** Sum of the bytes afterHold read ahead: kept so the reads are not optimised away. */
let touchedSum = 0;
/** Pages per background slice: ~0.3 ms of copying between two looks at the event queue. */
const BG_SLICE_PAGES = 256;

let memView: Uint8Array | null = null;
/** A view of guest memory, made again only after memory.grow (which replaces the buffer). */
const mem = (): Uint8Array => {
  const b = memory.buffer;
  if (memView === null || memView.buffer !== b) memView = new Uint8Array(b);
  return memView;
};

/** The virtual disk, opened at boot (before the guest can call disk_*). */
let disk: BlockDevice | null = null;

/** Validates a disk request's guest buffer: DiskStatus.OK or BAD_BUFFER. Reads may not land in the reserved region (the dirty log). */
function diskBuffer(ptr: number, n: number, forRead: boolean): number {
  const end = ptr + n * DISK_BLOCK_BYTES;
  if (n < 1 || end > memory.buffer.byteLength || (forRead && ptr < RESERVED_BYTES)) return DiskStatus.BAD_BUFFER;
  return DiskStatus.OK;
}

// ---- pre-copy (migration, live snapshot) ----
// The dirty log has two consumers: epoch collects (checkpoints, local rollback points) and a
// pre-copy's rounds. Each takes the bytemap and leaves what it took to the other, so neither
// misses a page: pcMarks[p] = 1 for pages an epoch collect took since the last 'dirty' (the
// next round still sends them), carryMarks[p] = 1 for pages a 'dirty' took since the last
// collect (the next epoch still carries them). Both are one byte per 4 KiB page (256 KiB
// per GiB of memory); pcMarks exists only while a pre-copy tracks.
let pcMarks: Uint8Array<ArrayBufferLike> | null = null;
let pcKnownMemBytes = 0;
let carryMarks: Uint8Array<ArrayBufferLike> = new Uint8Array(0);
let carryAny = false;
/** Delay of event dispatch, ms (0: none): the auto-converge / CPU-cap analogue. */
let throttleMs = 0;
let throttled: GuestEvent[] = [];
let throttleTimer: NodeJS.Timeout | null = null;

let reservedView: Uint32Array | null = null;
/**
 * Whether any page of the reserved region is marked: checked after every event (64
 * words), so a store into the dirty log is attributed to the event that made it.
 */
function reservedMarked(): boolean {
  if (!bytemap) return false;
  if (!reservedView || reservedView.buffer !== memory.buffer) reservedView = new Uint32Array(memory.buffer, 0, RESERVED_PAGES / 4);
  for (let i = 0; i < reservedView.length; i++) if (reservedView[i] !== 0) return true;
  return false;
}

/** Host writes into guest memory mark their pages so they travel with the epoch. */
function markHostWrite(addr: number, len: number): void {
  if (!bytemap || len <= 0) return;
  const m = mem();
  for (let p = addr >>> PAGE_SHIFT; p <= (addr + len - 1) >>> PAGE_SHIFT; p++) m[p] = 1;
}

function guestNowNs(): bigint {
  return pvclockTimeNs(pvFields, rdtsc());
}

function writeClockPage(): void {
  if (!pvclockAddr) return;
  pvVersion += 2;
  writePvclock(new DataView(memory.buffer), pvclockAddr, pvFields, pvVersion);
  markHostWrite(pvclockAddr, PVCLOCK.size);
}

function report(h: bigint): ClockReport {
  const st = comp.stats(h);
  return {
    mode: st.mode,
    hostNs: h,
    guestNs: pinned ? pvclockTimeNs(pvFields, h + tscOffset) : comp.guestNowNs(h),
    driftNs: st.driftNs,
    ratePpm: st.ratePpm,
    paused: st.paused,
    steps: st.steps,
    steppedNs: st.steppedNs,
    pauses: st.pauses,
    pausedNs: st.pausedNs,
    pinned,
  };
}

/** Takes the compensator's fields if they changed; they reach the page before the next guest event. */
function publish(h: bigint): void {
  if (pinned) return;
  const { fields, changed } = comp.fields(h);
  if (!changed) return;
  pvFields = fields;
  pvPending = true;
}

function flushClockPage(): void {
  if (!pvPending) return;
  pvPending = false;
  writeClockPage();
}

/** The vCPU stops at host time h: guest time freezes (the mode decides what happens at release). */
function holdClock(h: bigint): void {
  if (clockHeld) return;
  clockHeld = true;
  if (tickTimer) clearTimeout(tickTimer);
  tickTimer = null;
  comp.pause(h);
}

/** The vCPU restarts at host time h: resume the compensator and publish before any event runs. */
function releaseClock(h: bigint): void {
  if (!clockHeld) return;
  clockHeld = false;
  comp.resume(h);
  publish(h);
  post({ t: 'clock', r: report(h) });
  scheduleTick();
}

/** While the guest's rate differs from the host's, re-plan every tickMs so the lag converges without overshoot. */
function scheduleTick(): void {
  if (tickTimer || clockHeld || pinned || comp.ratePpm() === 0) return;
  tickTimer = setTimeout(() => {
    tickTimer = null;
    if (clockHeld || faulted) return;
    const h = hostNs();
    comp.tick(h);
    publish(h);
    post({ t: 'clock', r: report(h) });
    scheduleTick();
  }, ck.tickMs);
}

function clockOptions() {
  return { mode: ck.mode, maxSlewPpm: ck.maxSlewPpm, stepThresholdMs: ck.stepThresholdMs, slewHorizonMs: ck.slewHorizonMs };
}

/** A compensator for a first boot: guest time starts at this host's wall time (ns since the Unix epoch). */
function bootClock(h: bigint): ClockCompensator {
  return new ClockCompensator(h, { ...clockOptions(), initialGuestNs: h });
}

/**
 * The compensator of a restored guest, paused since capture (released when the vCPU starts).
 * A checkpoint without compensator state (written by hand or by an older VMM) is read as a
 * clock captured at wallNsAtCapture showing guestNsAtCapture with no drift.
 */
function restoreClock(c: ClockDeviceState, h: bigint): ClockCompensator {
  const state: ClockState =
    (c.compensator as ClockState | undefined) ?? {
      v: 1,
      ...clockOptions(),
      tscHz: 1_000_000_000,
      hostNs: c.wallNsAtCapture,
      guestNs: c.guestNsAtCapture < 0n ? 0n : c.guestNsAtCapture,
      referenceNs: c.guestNsAtCapture,
      tsc: c.tscAtCapture < 0n ? 0n : c.tscAtCapture,
      paused: true,
      ratePpb: 0,
      lastIntervalNs: 0n,
      fields: { tscTimestamp: 0n, systemTime: 0n, mul: 0, shift: 0, flags: 0 },
    };
  return ClockCompensator.restore(state, h, clockOptions());
}

/** Highest connection id ever opened: ids are never reused, so one <= it that is gone was closed. */
let maxConnId = 0;


const decoder = new TextDecoder();

/** Fuel units between two looks at the clock: ~1 ms of a tight loop, so a look (~0.1 µs) costs nothing. */
const FUEL_REFILL = 1 << 20;
const eventTimeoutNs = BigInt(init.eventTimeoutMs) * 1_000_000n;
/** Thrown out of the guest by fuel() when its event ran past eventTimeoutMs (inline vCPUs only). */
class EventTimeout extends Error {}
/** The event's timeout as the watchdog reports it (vmm.ts startWatchdog). */
const timeoutMessage = () => `guest event ran longer than eventTimeoutMs (${init.eventTimeoutMs} ms); vCPU stopped`;
let timedOut = false;

/**
 * The guest ran out of fuel. A worker vCPU refills (the main thread's watchdog stops a runaway
 * event by terminating the thread); an inline one checks the running event's time here.
 */
function fuel(): number {
  if (!init.inline) return FUEL_REFILL;
  if (timedOut || (Atomics.load(watch, 0) === 1n && baseNs() - watch[3]! > eventTimeoutNs)) {
    timedOut = true;
    throw new EventTimeout(timeoutMessage());
  }
  return FUEL_REFILL;
}

const imports = {
  [FUEL_IMPORT.module]: { [FUEL_IMPORT.name]: fuel },
  [IMPORT_MODULE]: {
    send(c: number, ptr: number, len: number): void {
      const s = conns.get(c);
      if (!s || s.closed || len <= 0) return;
      ptr >>>= 0;
      len >>>= 0;
      const m = mem();
      if (ptr + len > m.length) throw new WebAssembly.RuntimeError(`send(${ptr}, ${len}) reaches past guest memory`);
      if (outLen + len > outBytes.length) {
        const next = new Uint8Array(Math.max(outLen + len, outBytes.length * 2));
        next.set(outBytes.subarray(0, outLen));
        outBytes = next;
      }
      outBytes.set(m.subarray(ptr, ptr + len), outLen);
      outLen += len;
      if ((outCount + 1) * OUT_META > outMeta.length) {
        const next = new Float64Array(outMeta.length * 2);
        next.set(outMeta);
        outMeta = next;
      }
      const j = outCount++ * OUT_META;
      outMeta[j] = c;
      outMeta[j + 1] = s.outProduced;
      outMeta[j + 2] = epoch;
      outMeta[j + 3] = len;
      s.outProduced += len;
    },
    close(c: number): void {
      const s = conns.get(c);
      if (!s || s.closed) return;
      s.closed = true;
      closes.push({ conn: c, epoch, offset: s.outProduced });
    },
    clock_register(ptr: number): void {
      ptr >>>= 0;
      if (ptr < RESERVED_BYTES || ptr + PVCLOCK.size > memory.buffer.byteLength || ptr % 4 !== 0)
        throw new WebAssembly.RuntimeError(`clock_register(${ptr}): the pvclock page must be 4-byte aligned, above the reserved region and inside memory`);
      pvclockAddr = ptr;
      pvPending = false;
      writeClockPage();
    },
    rdtsc: (): bigint => rdtsc(),
    timer_set(deadline: bigint): void {
      timerDeadline = deadline > 0n ? deadline : null;
    },
    disk_read(block: number, ptr: number, n: number): number {
      if (!disk) return DiskStatus.NO_DISK;
      ptr >>>= 0;
      const r = disk.check(block, n);
      if (r !== DiskStatus.OK) return r;
      if (diskBuffer(ptr, n, true) !== DiskStatus.OK) return DiskStatus.BAD_BUFFER;
      const st = disk.read(block, n, mem(), ptr);
      if (st === DiskStatus.OK) markHostWrite(ptr, n * DISK_BLOCK_BYTES);
      return st;
    },
    disk_write(block: number, ptr: number, n: number): number {
      if (!disk) return DiskStatus.NO_DISK;
      ptr >>>= 0;
      const r = disk.check(block, n);
      if (r !== DiskStatus.OK) return r;
      if (diskBuffer(ptr, n, false) !== DiskStatus.OK) return DiskStatus.BAD_BUFFER;
      return disk.write(block, n, mem(), ptr);
    },
    disk_blocks: (): number => disk?.blocks ?? 0,
    random(ptr: number, len: number): void {
      randomFillSync(mem(), ptr >>> 0, len >>> 0);
      markHostWrite(ptr >>> 0, len >>> 0);
    },
    log(level: number, ptr: number, len: number): void {
      post({ t: 'log', level, msg: decoder.decode(mem().subarray(ptr >>> 0, (ptr >>> 0) + Math.min(len >>> 0, 4096))) });
    },
  },
};

function fn(name: string): (...a: number[]) => number {
  return ex[name] as (...a: number[]) => number;
}

function dispatch(ev: GuestEvent): void {
  switch (ev.k) {
    case 'open':
      if (conns.has(ev.conn) || ev.conn <= maxConnId) return;
      conns.set(ev.conn, { conn: ev.conn, inConsumed: 0, outProduced: 0, closed: false });
      maxConnId = ev.conn;
      fn('ftvm_on_open')(ev.conn);
      return;
    case 'data': {
      const s = conns.get(ev.conn);
      if (!s || s.closed) return;
      for (let off = 0; off < ev.data.length; off += MAX_DATA_CHUNK) {
        const chunk = ev.data.subarray(off, off + MAX_DATA_CHUNK);
        const ptr = fn('ftvm_alloc')(chunk.length) >>> 0;
        if (ptr < RESERVED_BYTES || ptr + chunk.length > memory.buffer.byteLength)
          throw new WebAssembly.RuntimeError(`ftvm_alloc(${chunk.length}) returned ${ptr}, outside guest memory`);
        mem().set(chunk, ptr);
        markHostWrite(ptr, chunk.length);
        fn('ftvm_on_data')(ev.conn, ptr, chunk.length);
        s.inConsumed += chunk.length;
        consumedSincePost += chunk.length;
      }
      return;
    }
    case 'close': {
      const s = conns.get(ev.conn);
      if (s && !s.closed) {
        s.closed = true;
        fn('ftvm_on_close')(ev.conn);
      }
      return;
    }
    case 'timer':
      if (timerDeadline !== null && guestNowNs() >= timerDeadline) {
        timerDeadline = null;
        fn('ftvm_on_timer')();
      }
      return;
  }
}

function flush(): void {
  if (outCount === 0 && closes.length === 0 && consumedSincePost === 0) {
    post({ t: 'out', meta: new Float64Array(0), data: new Uint8Array(0), closes: [], timer: timerDeadline, guestNow: guestNowNs(), consumed: 0 });
    return;
  }
  const held = heldForOutput;
  heldForOutput = false;
  const meta = outMeta.slice(0, outCount * OUT_META);
  const data = outBytes.slice(0, outLen);
  post({ t: 'out', meta, data, closes, timer: timerDeadline, guestNow: guestNowNs(), consumed: consumedSincePost, held }, [meta.buffer, data.buffer]);
  outCount = 0;
  outLen = 0;
  // A large reply grew the staging buffer: give it back rather than keep it for good.
  if (outBytes.length > OUT_BYTES_KEEP) outBytes = new Uint8Array(64 * 1024);
  closes = [];
  consumedSincePost = 0;
}

function runEvents(events: GuestEvent[]): void {
  if (!paused) flushClockPage();
  for (const ev of events) {
    if (faulted) return;
    if (paused) {
      queue.push(ev);
      continue;
    }
    const mark = outCount;
    const markBytes = outLen;
    const markCloses = closes.length;
    const c = ev.k === 'timer' ? -1 : ev.conn;
    seq++;
    watch[3] = baseNs();
    watch[2] = BigInt(c + 1);
    watch[1] = seq;
    Atomics.store(watch, 0, 1n);
    let fault: { code: string; message: string } | null = null;
    try {
      dispatch(ev);
      if (reservedMarked()) fault = { code: 'FTVM_ERR_GUEST_RESERVED_WRITE', message: 'guest stored into the reserved region [0, 1 MiB) that holds its dirty log' };
    } catch (e) {
      fault = e instanceof EventTimeout ? { code: 'FTVM_ERR_GUEST_TIMEOUT', message: timeoutMessage() } : { code: 'FTVM_ERR_GUEST_TRAP', message: `guest trapped: ${(e as Error).message}` };
    }
    if (fault) {
      Atomics.store(watch, 0, 0n);
      // Output of the faulting event is partial: it never leaves.
      outCount = mark;
      outLen = markBytes;
      closes.length = markCloses;
      flush();
      faulted = true;
      post({ t: 'fault', ...fault, conn: c >= 0 ? c : null });
      return;
    }
    Atomics.store(watch, 0, 0n);
    earlyDirty = true;
    if (init.syncEachOutput && outCount > mark) {
      // Kemari: the output must not leave before a checkpoint that covers it; the guest waits
      // here, events behind this one queue until the main thread resumes the vCPU.
      paused = true;
      holdClock(hostNs());
      heldForOutput = true;
    }
  }
  flush();
  scheduleEarlyCopy();
}

/**
 * Early copy, between events: takes the pages dirtied so far from the log and copies them a
 * slice at a time, yielding to the event queue after each slice (setImmediate runs after the
 * worker's pending messages). Their marks are cleared by the take, so the collect's hold
 * copies only pages written after it (and the ones still pending).
 */
function scheduleEarlyCopy(): void {
  if (!early || earlyScheduled || paused || faulted || bgFull) return;
  earlyScheduled = true;
  // Copying what a scan took goes on at once; the next scan waits for its gap.
  const wait = early.pendingCount > 0 ? 0 : lastEarlyScan + EARLY_SCAN_GAP_MS - performance.now();
  if (wait > 0) setTimeout(earlyCopyStep, Math.ceil(wait));
  else setImmediate(earlyCopyStep);
}

function earlyCopyStep(): void {
  earlyScheduled = false;
  if (!early || paused || faulted || bgFull) return;
  const m = mem();
  if (early.pendingCount === 0) {
    if (!earlyDirty) return;
    earlyDirty = false;
    lastEarlyScan = performance.now();
    const r = bytemap!.collect(m, m.length);
    // A write into the reserved region faults its event (reservedMarked) before a scan sees it.
    if (r.reservedPages.length) m.fill(0, 0, RESERVED_BYTES);
    if (r.pages.length === 0) return;
    // The pre-copy consumer (a migration's rounds) must still see these pages.
    if (pcMarks) pcMarks = markInto(pcMarks, r.pages);
    early.take(r.pages);
  }
  if (early.step(m, EARLY_SLICE_PAGES)) scheduleEarlyCopy();
}

function readGlobals(): GlobalValue[] {
  return globals.map((g) => g.value as GlobalValue);
}

/** Device state at host time h, with the vCPU (and the compensator) held. */
function deviceState(h: bigint): DeviceState {
  const tsc = h + tscOffset;
  return {
    conns: [...conns.values()].map((s) => ({ ...s })),
    maxConnId,
    timerDeadlineNs: timerDeadline,
    clock: {
      pvclockAddr,
      tscAtCapture: tsc,
      wallNsAtCapture: h,
      guestNsAtCapture: pvclockTimeNs(pvFields, tsc),
      compensator: comp.snapshot(h),
    },
  };
}

/** Starts a full collect in the background (bytemap guests): see bgFull. */
function startBackgroundFull(id: number, resume: boolean): void {
  const m = mem();
  // Marks so far are covered by the copy of every page; marks from here on are what the hold copies again.
  const r = bytemap!.collect(m, m.length);
  if (r.reservedPages.length) m.fill(0, 0, RESERVED_BYTES);
  if (pcMarks) pcMarks = markInto(pcMarks, r.pages);
  early?.reset();
  const copy = new EpochCopy(false);
  const all = new Uint32Array(m.length / PAGE_BYTES - RESERVED_PAGES);
  for (let i = 0; i < all.length; i++) all[i] = RESERVED_PAGES + i;
  copy.take(all);
  bgFull = { id, resume, copy, memBytes: m.length };
  scheduleBackgroundFull();
}

function scheduleBackgroundFull(): void {
  if (bgScheduled || !bgFull) return;
  bgScheduled = true;
  setImmediate(backgroundFullStep);
}

/** Ends a background full collect in a hold now (another command needs the dirty log or a collect). */
function finishBackgroundNow(): void {
  const bg = bgFull;
  if (!bg) return;
  bgFull = null;
  collect(bg.id, true, bg.resume, undefined, bg);
}

function backgroundFullStep(): void {
  bgScheduled = false;
  const bg = bgFull;
  if (!bg || faulted) return;
  // Held (sync-io, a pause): the guest does not run, so the rest is copied in this hold at once.
  if (!paused && bg.copy.step(mem(), BG_SLICE_PAGES)) {
    scheduleBackgroundFull();
    return;
  }
  bgFull = null;
  collect(bg.id, true, bg.resume, undefined, bg);
}

function collect(id: number, full: boolean, resume: boolean, scrub?: { fromPage: number; count: number }, bg?: { copy: EpochCopy; memBytes: number }): void {
  const t0 = performance.now();
  // The vCPU is held from here (the event boundary) until the copy ends (see below).
  const h0 = hostNs();
  holdClock(h0);
  const m = mem();
  const memBytes = m.length;
  let pages: Uint32Array;
  let reservedWrites = 0;
  if (bytemap) {
    const r = bytemap.collect(m, memBytes);
    reservedWrites = r.reservedPages.length;
    // Pages memory.grow added are not dirty for that: they are zero until written, every image
    // grows zero-filled with memBytes (GuestImage.resize), and a write to one is in the bytemap
    // like any other. (Counting them copied every grown zero page in the hold, each a fault on
    // both sides of the copy: 530 ms after a 64 MiB growth, 9.7 s after 1 GiB; now 0.3 / 2.2 ms.)
    pages = r.pages;
    if (reservedWrites) m.fill(0, 0, RESERVED_BYTES);
  } else {
    pages = shadow!.collect(m, memBytes).pages;
  }
  if (pcMarks) pcMarks = markInto(pcMarks, pages);
  if (carryAny) pages = mergeCarry(pages);
  // Written since the background copy began (bg): the hold copies these again.
  const dirtyNow = pages;
  if (full) {
    // The reserved region is the dirty log (all zero after a scan): only a shadow-logged guest owns it.
    const first = bytemap ? RESERVED_PAGES : 0;
    const n = memBytes / PAGE_BYTES - first;
    pages = new Uint32Array(n);
    for (let i = 0; i < n; i++) pages[i] = first + i;
  }
  let data: Uint8Array;
  const earlyPages = bg ? bg.copy.copiedEarly : (early?.copiedEarly ?? 0);
  if (early && !full) {
    // The early copies hold most of the epoch; the hold copies the rest.
    const got = early.finish(m, pages);
    pages = got.pages;
    data = got.data;
  } else if (bg) {
    // Every page was copied in the background: the hold copies the pages written since (and any grown).
    const grown = memBytes > bg.memBytes ? pagesInRange(bg.memBytes, memBytes) : new Uint32Array(0);
    const redo = new Uint32Array(dirtyNow.length + grown.length);
    redo.set(dirtyNow);
    redo.set(grown, dirtyNow.length);
    const got = bg.copy.finish(m, redo);
    pages = got.pages;
    data = got.data;
  } else {
    early?.reset();
    data = copyPages(m, pages);
  }
  let scrubCopy: Collected['scrub'];
  if (scrub) {
    const from = Math.min(scrub.fromPage, memBytes / PAGE_BYTES);
    const count = Math.max(0, Math.min(scrub.count, memBytes / PAGE_BYTES - from));
    // Into a buffer handed back from an earlier epoch when one fits: a fresh one is faulted in
    // page by page inside the hold (measured: 0.8-4.5 ms for 32-64 pages on the bench VM).
    const data = early?.lend(count * PAGE_BYTES) ?? new Uint8Array(count * PAGE_BYTES);
    data.set(m.subarray(from * PAGE_BYTES, (from + count) * PAGE_BYTES));
    scrubCopy = { fromPage: from, count, data };
  }
  let diskCopy: Collected['disk'];
  if (disk) {
    // The epoch's blocks, read at this boundary: the file holds exactly what the guest wrote up to here.
    const dirty = disk.takeDirty();
    diskCopy = full ? { totalBlocks: disk.blocks, ...disk.readNonZero() } : { totalBlocks: disk.blocks, blocks: dirty, data: disk.readList(dirty) };
  }
  const c: Collected = {
    epoch,
    memBytes,
    scrub: scrubCopy,
    disk: diskCopy,
    pages,
    data,
    globals: readGlobals(),
    devices: deviceState(h0),
    pauseMs: 0,
    reservedWrites,
    earlyPages,
  };
  // A closed connection is reported in the checkpoint that saw it close, then forgotten:
  // device state stays bounded by the open connections.
  for (const [id, st] of conns) if (st.closed) conns.delete(id);
  epoch++;
  c.pauseMs = performance.now() - t0;
  // The hold ends with the copy (pauseMs): posting the result is host work between events,
  // like idle time, so guest time runs again from here. Then freeze drifts by exactly the
  // summed pauseMs. The new fields still reach the page before the next event (publish()).
  if (resume || !paused) releaseClock(hostNs());
  const transfer = [data.buffer as ArrayBuffer, pages.buffer as ArrayBuffer];
  if (scrubCopy) transfer.push(scrubCopy.data.buffer as ArrayBuffer);
  if (diskCopy) transfer.push(diskCopy.blocks.buffer as ArrayBuffer, diskCopy.data.buffer as ArrayBuffer);
  post({ t: 'collected', id, c }, transfer);
  if (resume) doResume();
  if (early && !full) {
    scrubAhead = scrubCopy ? { fromPage: scrubCopy.fromPage + scrubCopy.count, count: scrubCopy.count } : null;
    setImmediate(afterHold);
  }
}

/**
 * A young-generation collection now, between events, when the young generation is past
 * SCAVENGE_AHEAD_SHARE full: otherwise the allocation that fills it may fall in a hold (a
 * scavenge of this thread takes ~0.6 ms on the bench VM; with the dirtier at ~1,000 pages per
 * epoch, 2 of 78 landed in a hold). At most one extra scavenge per SCAVENGE_AHEAD_SHARE of the
 * young generation, and one look at the heap statistics (~8 µs) per hold.
 */
function scavengeAhead(): void {
  const young = getHeapSpaceStatistics().find((sp) => sp.space_name === 'new_space');
  if (!young || young.space_used_size < SCAVENGE_AHEAD_SHARE * young.space_size) return;
  // Node exposes no collection call without --expose-gc: the flag exposes gc() to contexts made after it.
  minorGc ??= (setFlagsFromString('--expose-gc'), runInNewContext('gc')) as (o: { type: 'minor' }) => void;
  minorGc({ type: 'minor' });
}
const SCAVENGE_AHEAD_SHARE = 0.5;
let minorGc: ((o: { type: 'minor' }) => void) | null = null;

/**
 * Between events after a hold: the next hold's buffers are made (EpochCopy.prepare), and the
 * pages of the next scrub slice are read once. The scrub walks memory in order, and a page the
 * guest never touched faults on its first read (the kernel maps the zero page): on the bench VM,
 * a 64-page slice of untouched memory took ~1 ms to copy inside a hold.
 */
function afterHold(): void {
  if (!early || faulted || bgFull) return;
  scavengeAhead();
  early.prepare(scrubAhead ? scrubAhead.count * PAGE_BYTES : 0);
  if (!scrubAhead) return;
  const m = mem();
  const end = Math.min(m.length, (scrubAhead.fromPage + Math.ceil(scrubAhead.count * 1.5)) * PAGE_BYTES);
  let sum = 0;
  for (let i = scrubAhead.fromPage * PAGE_BYTES; i < end; i += PAGE_BYTES) sum += m[i]!;
  touchedSum += sum;
}

/** Sets marks[p] = 1 for each page, growing marks to cover them; returns the (maybe new) array. */
function markInto(marks: Uint8Array, pages: ArrayLike<number>): Uint8Array {
  let top = 0;
  for (let i = 0; i < pages.length; i++) top = Math.max(top, pages[i]! + 1);
  if (top > marks.length) {
    const next = new Uint8Array(Math.max(top, marks.length * 2));
    next.set(marks);
    marks = next;
  }
  for (let i = 0; i < pages.length; i++) marks[pages[i]!] = 1;
  return marks;
}

/** Sorted pages marked in `marks`, which are cleared. O(marks.length / 8) word reads + O(pages). */
function takeMarks(marks: Uint8Array): Uint32Array {
  const out: number[] = [];
  const words = new Float64Array(marks.buffer, 0, marks.length >>> 3);
  for (let w = 0; w < words.length; w++) {
    if (words[w] === 0) continue;
    for (let k = 0; k < 8; k++) if (marks[(w << 3) + k] !== 0) out.push((w << 3) + k);
    words[w] = 0;
  }
  for (let p = words.length << 3; p < marks.length; p++) if (marks[p] !== 0) out.push(p);
  marks.fill(0);
  return Uint32Array.from(out);
}

/** `pages` (sorted) plus the pages a pre-copy round took from the log since the last collect. */
function mergeCarry(pages: Uint32Array): Uint32Array {
  carryMarks = markInto(carryMarks, pages);
  carryAny = false;
  return takeMarks(carryMarks);
}

/**
 * A pre-copy round's dirty set: pages written since the previous call (or since tracking
 * started), including pages an epoch collect took meanwhile and pages memory.grow added.
 */
function precopyDirty(start: boolean): Uint32Array {
  const m = mem();
  const memBytes = m.length;
  if (start || !pcMarks) {
    pcMarks = new Uint8Array(memBytes / PAGE_BYTES);
    pcKnownMemBytes = memBytes;
  }
  const got = bytemap ? bytemap.collect(m, memBytes).pages : shadow!.collect(m, memBytes).pages;
  if (got.length) {
    carryMarks = markInto(carryMarks, got);
    carryAny = true;
  }
  pcMarks = markInto(pcMarks, got);
  if (memBytes > pcKnownMemBytes) pcMarks = markInto(pcMarks, pagesInRange(pcKnownMemBytes, memBytes));
  pcKnownMemBytes = memBytes;
  const all = takeMarks(pcMarks);
  if (start) return new Uint32Array(0);
  // The reserved region is the dirty log itself: never part of an image (as in a full collect).
  return bytemap ? all.filter((p) => p >= RESERVED_PAGES) : all;
}

/** Runs events the throttle held back (before a command that needs every earlier event handled). */
function drainThrottled(): void {
  if (throttleTimer) clearTimeout(throttleTimer);
  throttleTimer = null;
  if (throttled.length) runEvents(throttled.splice(0));
}

/** Moves events the throttle holds to the paused queue, ahead of anything queued later. */
function holdThrottled(): void {
  if (throttleTimer) clearTimeout(throttleTimer);
  throttleTimer = null;
  if (throttled.length === 0) return;
  const later = queue.splice(0);
  for (const ev of throttled.splice(0)) queue.push(ev);
  for (const ev of later) queue.push(ev);
}

function onEvents(events: GuestEvent[]): void {
  if (throttleMs <= 0 || paused) {
    runEvents(events);
    return;
  }
  // Events of the delay window run together when it ends: at most one dispatch per throttleMs.
  for (const ev of events) throttled.push(ev);
  if (!throttleTimer) {
    throttleTimer = setTimeout(() => {
      throttleTimer = null;
      if (throttled.length) runEvents(throttled.splice(0));
    }, throttleMs);
  }
}

function doResume(): void {
  paused = false;
  releaseClock(hostNs());
  if (queue.length) runEvents(queue.splice(0));
}

/**
 * Puts this thread on SCHED_FIFO priority 1 (VmmOptions.vcpuSched 'fifo'). Node has no call for
 * a thread's scheduling policy, so util-linux's chrt sets it on this thread's id, once, at boot.
 */
function setupSched(): void {
  if (init.vcpuSched !== 'fifo') return;
  // "<pid>/task/<tid>": the id of the thread that reads the link, this one.
  const tid = readlinkSync('/proc/thread-self').split('/').pop()!;
  try {
    execFileSync('chrt', ['--fifo', '--pid', '1', tid], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 5000 });
  } catch (e) {
    const err = e as { code?: string; stderr?: Buffer; message: string };
    const why = err.code === 'ENOENT' ? 'chrt (util-linux) is not installed' : (err.stderr?.toString().trim() || err.message);
    throw new SchedError(`cannot put the vCPU thread (tid ${tid}) on SCHED_FIFO: ${why} (needs CAP_SYS_NICE, e.g. root)`);
  }
}

class SchedError extends Error {}

async function boot(): Promise<void> {
  setupSched();
  if (init.prestart) {
    // A migration target during its rounds: instantiate and fault the memory in now, so the
    // restore ('start') pays only the copy. A start function runs on a boot clock; the
    // restore replaces memory, globals, devices and clock.
    setupClock(undefined);
    await instantiate();
    const cur = memory.buffer.byteLength;
    if (init.prestart.memBytes > cur) memory.grow((init.prestart.memBytes - cur) / 65536);
    const m = mem();
    for (let at = 0; at < m.length; at += PAGE_BYTES) m[at] = 0;
    post({ t: 'prestarted', memBytes: memory.buffer.byteLength });
    return;
  }
  setupDisk();
  setupClock(init.restore);
  await instantiate();
  finishBoot();
}

/** Completes a prestart with the checkpoint (and the disk) it waited for. */
function startPrestarted(restore: WorkerRestoreInit, diskInit: WorkerDiskInit | undefined): void {
  try {
    init.restore = restore;
    init.disk = diskInit;
    if (restore.memBytes < memory.buffer.byteLength) throw new Error(`the checkpoint has ${restore.memBytes} bytes of memory, less than the ${memory.buffer.byteLength} prestarted`);
    if (restore.inPlace && imageFailed) throw new Error(`the image in place is incomplete: ${imageFailed}`);
    if (restore.inPlace && restore.memBytes !== memory.buffer.byteLength) throw new Error(`the image in place has ${memory.buffer.byteLength} bytes of memory, the checkpoint ${restore.memBytes}`);
    setupDisk();
    setupClock(restore);
    finishBoot();
  } catch (e) {
    post({ t: 'error', code: 'FTVM_ERR_GUEST_INIT', message: `guest failed to start: ${(e as Error).message}` });
  }
}

/** Why an 'image' write failed (the memory no longer holds the image). */
let imageFailed: string | null = null;

/** Writes committed image bytes into a prestarted vCPU's memory (see ToWorker 'image'). */
function writeImage(m: Extract<ToWorker, { t: 'image' }>): void {
  if (init.prestart && !init.restore && !imageFailed) {
    try {
      const cur = memory.buffer.byteLength;
      if (m.memBytes > cur) memory.grow((m.memBytes - cur) / 65536);
      const to = mem();
      if (m.pages) for (let i = 0; i < m.pages.length; i++) to.set(m.data.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES), m.pages[i]! * PAGE_BYTES);
      else to.set(m.data, m.at ?? 0);
    } catch (e) {
      // Reported by the in-place start that would have used this memory.
      imageFailed = (e as Error).message;
    }
  }
  const buf = m.data.buffer as ArrayBuffer;
  post({ t: 'imageDone', buf }, [buf]);
}

function setupDisk(): void {
  if (init.disk) {
    let waitStart = 0n;
    disk = new BlockDevice({ path: init.disk.path, blocks: init.disk.blocks }, {
      undo: init.disk.undo,
      fds: init.disk.fds,
      pull: init.disk.pull && new Int32Array(init.disk.pull),
      onFetch: (block, n) => post({ t: 'diskFetch', block, n }),
      // A guest waiting for a fetched block is not running away: the watchdog skips the wait
      // (busy = 2) and the event's start moves forward by it.
      onWait: (waiting) => {
        if (waiting) {
          waitStart = baseNs();
          if (Atomics.load(watch, 0) === 1n) Atomics.store(watch, 0, 2n);
        } else {
          watch[3] = watch[3]! + (baseNs() - waitStart);
          if (Atomics.load(watch, 0) === 2n) Atomics.store(watch, 0, 1n);
        }
      },
    });
  }
}

function setupClock(r0: WorkerInit['restore']): void {
  // Before instantiation: ftvm_init registers the pvclock page and may read the clock.
  comp = r0 ? restoreClock(r0.devices.clock, hostNs()) : bootClock(hostNs());
  clockHeld = comp.isPaused();
  tscOffset = comp.tscOffset();
  pvFields = comp.fields(hostNs()).fields;
}

async function instantiate(): Promise<void> {
  const { instance } = await WebAssembly.instantiate(init.wasm, imports);
  ex = instance.exports as Record<string, unknown>;
  memory = ex.memory as WebAssembly.Memory;
  globals = init.globalExports.map((n) => ex[n] as WebAssembly.Global);
  void ex[EXPORT_ABI_VERSION];
}

function finishBoot(): void {
  const r = init.restore;
  if (r) {
    const cur = memory.buffer.byteLength;
    if (r.memBytes > cur) memory.grow((r.memBytes - cur) / 65536);
    if (!r.inPlace) mem().set(r.memory);
    r.globals.forEach((v, i) => {
      globals[i]!.value = v;
    });
    conns.clear();
    for (const s of r.devices.conns) if (!s.closed) conns.set(s.conn, { ...s });
    maxConnId = r.devices.maxConnId;
    timerDeadline = r.devices.timerDeadlineNs;
    pvclockAddr = r.devices.clock.pvclockAddr;
    // The seqlock version continues from the page (a reader mid-read must see it change).
    if (pvclockAddr) pvVersion = new DataView(memory.buffer).getUint32(pvclockAddr + PVCLOCK.version, true);
    epoch = r.epoch + 1;
    // The image now equals the checkpoint: nothing is dirty.
    if (bytemap) mem().fill(0, 0, RESERVED_BYTES);
  } else {
    // Timed like an event (an inline vCPU's fuel stops a runaway init; a worker's watchdog starts after it).
    watch[3] = baseNs();
    Atomics.store(watch, 0, 1n);
    try {
      fn('ftvm_init')();
    } finally {
      Atomics.store(watch, 0, 0n);
    }
  }
  const memBytes = memory.buffer.byteLength;
  if (shadow) shadow.resetTo(mem(), memBytes);
  if (bytemap && r) bytemap.collect(mem(), memBytes);
  // A restored vCPU starts now: the compensator applies its mode to the gap since capture
  // (never backwards), and the new fields are written (and marked dirty) before any event.
  if (clockHeld) releaseClock(hostNs());
  else {
    publish(hostNs());
    scheduleTick();
  }
  post({ t: 'ready', epoch, memBytes });
}

port.on('message', (m: ToWorker) => onMessage(m));

// An inline vCPU's module instance outlives it (ES modules are never unloaded): it lets go of
// the guest's memory, instance and buffers when terminated.
host.onTerminate(() => {
  faulted = true;
  memory = undefined as unknown as WebAssembly.Memory;
  ex = {};
  globals = [];
  memView = null;
  reservedView = null;
  queue.length = 0;
  throttled = [];
  pcMarks = null;
  carryMarks = new Uint8Array(0);
  outBytes = new Uint8Array(0);
  disk = null;
  bgFull = null;
  early = null;
  init.restore = undefined;
  conns.clear();
});

function onMessage(m: ToWorker): void {
  switch (m.t) {
    case 'start':
      startPrestarted(m.restore, m.disk);
      return;
    case 'image':
      writeImage(m);
      return;
    case 'events':
      onEvents(unpackEvents(m.meta, m.data));
      return;
    case 'collect':
      drainThrottled();
      finishBackgroundNow();
      if (m.full && m.background && bytemap && !paused && !bgFull) startBackgroundFull(m.id, m.resume);
      else collect(m.id, m.full, m.resume, m.scrub);
      return;
    case 'recycle':
      early?.give(m.buf);
      return;
    case 'mark':
      // Pages the integrity scrub found different on the secondary: resend them next epoch.
      if (bytemap) for (const p of m.pages) if (p >= RESERVED_PAGES && p * PAGE_BYTES < memory.buffer.byteLength) mem()[p] = 1;
      earlyDirty = true;
      return;
    case 'pause':
      drainThrottled();
      paused = true;
      holdClock(hostNs());
      post({ t: 'paused', id: m.id });
      return;
    case 'resume':
      doResume();
      return;
    case 'clock':
      pinned = true;
      if (tickTimer) clearTimeout(tickTimer);
      tickTimer = null;
      tscOffset = m.tscOffset;
      if (m.fields) {
        pvFields = m.fields;
        pvPending = false;
        writeClockPage();
      }
      return;
    case 'clockReport':
      post({ t: 'clockReport', id: m.id, r: report(hostNs()) });
      return;
    case 'read': {
      const from = m.fromPage * PAGE_BYTES;
      const data = mem().slice(from, Math.min(from + m.count * PAGE_BYTES, memory.buffer.byteLength));
      post({ t: 'read', id: m.id, data }, [data.buffer as ArrayBuffer]);
      return;
    }
    case 'stop':
      port.close();
      return;
    case 'dirty': {
      finishBackgroundNow(); // the pre-copy takes marks the background copy still needs
      if (!m.start && !pcMarks) {
        post({ t: 'reqError', id: m.id, code: 'FTVM_ERR_PRECOPY_NOT_TRACKING', message: 'dirtyPages() before startDirtyTracking() (or the vCPU was restarted)' });
        return;
      }
      const pages = precopyDirty(m.start);
      if (m.start) disk?.startPrecopyTracking();
      const blocks = disk ? disk.takePrecopyDirty() : new Uint32Array(0);
      post({ t: 'dirty', id: m.id, pages, blocks, memBytes: memory.buffer.byteLength }, [pages.buffer as ArrayBuffer, blocks.buffer as ArrayBuffer]);
      return;
    }
    case 'dirtyStop':
      pcMarks = null;
      disk?.stopPrecopyTracking();
      return;
    case 'readList': {
      try {
        const into = m.into && m.into.byteLength >= m.pages.length * PAGE_BYTES ? new Uint8Array(m.into) : undefined;
        const data = copyPages(mem(), m.pages, into);
        post({ t: 'read', id: m.id, data }, [data.buffer as ArrayBuffer]);
      } catch (e) {
        post({ t: 'reqError', id: m.id, code: 'FTVM_ERR_PRECOPY_RANGE', message: (e as Error).message });
      }
      return;
    }
    case 'final': {
      finishBackgroundNow();
      if (!pcMarks) {
        post({ t: 'reqError', id: m.id, code: 'FTVM_ERR_PRECOPY_NOT_TRACKING', message: 'precopyFinal() without dirty tracking (or the vCPU was restarted)' });
        return;
      }
      // Events the throttle still holds are not run first: they would write a whole delay
      // window's worth of pages into the remainder right before the hold. They stay queued
      // after it (state at the hold = before them): run on resume() (a snapshot, a failed
      // migration) or gone with this vCPU (a migration: the target's timer re-fires from the
      // device state; client data was never answered, as for input during the downtime).
      holdThrottled();
      // Held from this event boundary until resume(): the stop-and-copy's downtime.
      paused = true;
      const h = hostNs();
      holdClock(h);
      const pages = precopyDirty(false);
      pcMarks = null;
      const blocks = disk ? disk.takePrecopyDirty() : new Uint32Array(0);
      disk?.stopPrecopyTracking();
      const f = { epoch, memBytes: memory.buffer.byteLength, pages, blocks, globals: readGlobals(), devices: deviceState(h) };
      post({ t: 'final', id: m.id, f }, [pages.buffer as ArrayBuffer, blocks.buffer as ArrayBuffer]);
      return;
    }
    case 'throttle':
      throttleMs = Math.max(0, m.delayMs);
      if (throttleMs === 0) drainThrottled();
      return;
  }
}

boot().catch((e: unknown) => {
  if (e instanceof SchedError) post({ t: 'error', code: 'FTVM_ERR_VCPU_SCHED', message: e.message });
  else post({ t: 'error', code: 'FTVM_ERR_GUEST_INIT', message: `guest failed to start: ${(e as Error).message}` });
});
