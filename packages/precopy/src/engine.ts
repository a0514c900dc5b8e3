/**
 * The pre-copy engine. Round 0 sends every page while the guest runs; round k sends the
 * pages dirtied during round k-1; a stop rule decides when to hold the vCPU and send the
 * rest (stop-and-copy). One engine serves every destination through `PrecopySink`: a
 * remote target (migration), a local file (live snapshot), a new secondary.
 *
 * Time is an input (`PrecopyClock`), so the engine runs against a simulated guest and a
 * manual clock in tests, and against a real VMM with the wall clock in production.
 */
import type { DeviceState, GlobalValue } from '@ftvm/vmm';
import { MAX_BATCH_PAGES } from '@ftvm/protocol';
import { PrecopyError } from './errors.js';
import { makeStopRule, type StopDecision, type StopRuleName, type StopRuleOptions } from './stop-rules.js';
import { ThrottleController, type ThrottleMode } from './throttle.js';

/** The guest side: a running VMM (see vmm-source.ts) or a simulation. */
export interface PrecopySource {
  /** Pages below it are never sent (the dirty log's reserved region). */
  readonly firstPage: number;
  /** Current guest memory, bytes. */
  memBytes(): number;
  /** Starts dirty tracking: dirtyPages() reports writes from here on. */
  startTracking(): Promise<void>;
  /** Pages written since the previous call (or since startTracking), sorted. */
  dirtyPages(): Promise<Uint32Array>;
  /** Copies pages (at one event boundary, or while held). */
  readPages(pages: Uint32Array): Promise<Uint8Array>;
  /** A buffer readPages returned is no longer used: the source may fill it again. */
  recycle?(data: Uint8Array): void;
  /** Delays the guest's event dispatch, ms (0: off). */
  throttle(delayMs: number): void;
  /** Holds the vCPU; returns the remainder (pages dirtied since the last dirtyPages) and the state. */
  stopAndCopy(): Promise<FinalState>;
  /** Releases the vCPU held by stopAndCopy (a snapshot is done, or a migration failed). */
  resume(): void;
  /** Ends tracking (after a failure or a live snapshot). */
  stopTracking(): void;
  /** The virtual disk's size in 4 KiB blocks; absent or 0: the guest has no disk. */
  readonly diskBlocks?: number;
  /** Disk blocks written up to the last dirtyPages() call since the one before (sorted). */
  dirtyBlocks?(): Uint32Array;
  /** Reads disk blocks while the guest runs (or while held), block i at i * 4096. */
  readBlocks?(blocks: Uint32Array): Promise<Uint8Array>;
  /** Makes the disk's writes durable (shared storage: the destination opens the same file next). */
  flushDisk?(): Promise<void>;
}

/**
 * How the disk moves. `copy`: PUSH (every block in round 0, the blocks written since in each
 * later round), the remaining dirty bitmap with the stop-and-copy, then PULL (the destination
 * runs and fetches what it still misses on demand while the rest is pushed in the background).
 * `shared`: both ends open the same file (shared storage); no block is sent.
 */
export type DiskMode = 'copy' | 'shared';

/** What a round carries of the disk (absent: no disk). */
export interface RoundDisk {
  mode: DiskMode;
  totalBlocks: number;
  /** Blocks whose data this round carries. */
  blockCount: number;
  /** Stop-and-copy round: the blocks the destination does not hold yet (it pulls them). */
  missing?: Uint32Array;
}

/** The PULL phase, as the sink reports it. */
export interface PullStats {
  /** Blocks the destination waited for (fetched on demand). */
  demandBlocks: number;
  /** Blocks pushed in the background. */
  pushedBlocks: number;
  wireBytes: number;
  ms: number;
}

export interface FinalState {
  epoch: number;
  memBytes: number;
  pages: Uint32Array;
  /** Disk blocks written since the last dirtyPages() (absent without a disk). */
  blocks?: Uint32Array;
  globals: GlobalValue[];
  devices: DeviceState;
}

/** Where pages go. Calls come strictly in order: (beginRound pages* endRound)* commit | abort. */
export interface PrecopySink {
  /** `final`: the stop-and-copy round, with the state the destination resumes from. */
  beginRound(round: number, memBytes: number, pageCount: number, final: FinalState | null, disk?: RoundDisk): Promise<void>;
  /** Encodes and writes a batch (<= MAX_BATCH_PAGES); resolves with the wire bytes once the sink can take more. */
  pages(pages: Uint32Array, data: Uint8Array): Promise<{ wireBytes: number; nonZeroPages: number; nonZeroBytes: number }>;
  /** Sinks that carry a disk: a batch of blocks of the current round (after its pages). Absent: a guest with a disk is refused. */
  blocks?(blocks: Uint32Array, data: Uint8Array): Promise<{ wireBytes: number }>;
  /**
   * After commit (the destination runs): serves the destination's demand fetches of `missing`
   * blocks and pushes the rest, reading them from the held source; resolves when the
   * destination holds every block. A rejection is a failed migration (the source resumes).
   */
  pull?(missing: Uint32Array, read: (blocks: Uint32Array) => Promise<Uint8Array>, bandwidthLimit: number): Promise<PullStats>;
  /**
   * pull() runs while the source is still held and counts as downtime (a snapshot file: the
   * remaining blocks are read from the held guest), which also lets a stop-the-world transfer
   * carry a disk (every block in pull()).
   */
  readonly pullHeld?: boolean;
  endRound(round: number): Promise<void>;
  /** The state after the final round; resolves once the destination holds a complete image. */
  commit(state: FinalState): Promise<void>;
  abort(err: Error): Promise<void>;
}

export interface PrecopyClock {
  /** ms, monotonic. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const wallClock: PrecopyClock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
};

export interface PrecopyOptions extends StopRuleOptions {
  /** Default 'mp'. */
  stopRule?: StopRuleName;
  /** Wire bytes per second, 0: unlimited. Default 0. */
  bandwidthLimit?: number;
  /** Default 'off'. */
  throttle?: ThrottleMode;
  /** false: stop-the-world (no rounds: hold the vCPU and send everything). Default true. */
  live?: boolean;
  /** Pages read from the guest per event boundary. Default 1024 (4 MiB: ~1 ms of copying). */
  chunkPages?: number;
  /** How a virtual disk moves (ignored without one). Default 'copy'. */
  diskMode?: DiskMode;
  onProgress?: (p: PrecopyProgress) => void;
}

export interface PrecopyProgress {
  phase: 'round' | 'stop-and-copy' | 'pull' | 'done' | 'failed';
  round: number;
  /** Pages of the current round still to send. */
  pagesLeft: number;
  /** Pages of the current round. */
  roundPages: number;
  /** Pages dirtied per second during the last round. */
  dirtyPagesPerSec: number;
  throttleMs: number;
  wireBytes: number;
  /** Rough time to completion at the current rate, ms (NaN when unknown). */
  etaMs: number;
}

export interface RoundStat {
  round: number;
  pages: number;
  wireBytes: number;
  ms: number;
  /** Pages dirtied while it ran. */
  dirtied: number;
  throttleMs: number;
  decision: StopDecision['action'];
  reason: StopDecision['reason'];
  estimatedDowntimeMs: number;
}

export interface PrecopyResult {
  ok: boolean;
  stopRule: StopRuleName;
  /** Why it entered stop-and-copy (fits, pattern, max-rounds, stop-the-world) or why it failed. */
  reason: string;
  /** Live rounds run (0 for stop-the-world). */
  rounds: number;
  totalMs: number;
  /** vCPU held: stop-and-copy until the destination held the image, ms (0 when it failed before). */
  downtimeMs: number;
  /**
   * The downtime's parts, ms: reaching the hold (the next event boundary; a shared disk's
   * flush), sending the last round, and the destination starting the guest until its ack.
   */
  downtimeParts?: { holdMs: number; sendMs: number; startMs: number };
  estimatedDowntimeMs: number;
  wireBytes: number;
  pagesSent: number;
  finalPages: number;
  /** Largest dispatch delay applied, ms. */
  maxThrottleMs: number;
  roundStats: RoundStat[];
  /** The disk's part (absent without a disk). */
  disk?: DiskResult;
  error?: { code: string; message: string };
}

export interface DiskResult {
  mode: DiskMode;
  totalBlocks: number;
  /** PUSH: blocks sent during the live rounds, their wire bytes. */
  pushBlocks: number;
  pushWireBytes: number;
  /** Blocks left for PULL (the dirty bitmap sent with the stop-and-copy). */
  missingBlocks: number;
  /** PULL (absent when it did not start). */
  pull?: PullStats;
}

interface Resolved {
  diskMode: DiskMode;
  stopRule: StopRuleName;
  bandwidthLimit: number;
  throttle: ThrottleMode;
  live: boolean;
  chunkPages: number;
}

function resolve(o: PrecopyOptions): Resolved {
  const r: Resolved = {
    stopRule: o.stopRule ?? 'mp',
    bandwidthLimit: o.bandwidthLimit ?? 0,
    throttle: o.throttle ?? 'off',
    live: o.live ?? true,
    chunkPages: o.chunkPages ?? 1024,
    diskMode: o.diskMode ?? 'copy',
  };
  if (r.diskMode !== 'copy' && r.diskMode !== 'shared') throw new PrecopyError('FTVM_ERR_PRECOPY_OPTION', `diskMode must be copy or shared, got ${String(r.diskMode)}`);
  if (!Number.isFinite(r.bandwidthLimit) || r.bandwidthLimit < 0)
    throw new PrecopyError('FTVM_ERR_PRECOPY_OPTION', `bandwidthLimit must be a number >= 0 (bytes/s), got ${r.bandwidthLimit}`);
  if (!Number.isInteger(r.chunkPages) || r.chunkPages < 1 || r.chunkPages > MAX_BATCH_PAGES)
    throw new PrecopyError('FTVM_ERR_PRECOPY_OPTION', `chunkPages must be an integer in [1, ${MAX_BATCH_PAGES}], got ${r.chunkPages}`);
  return r;
}

/** Runs one pre-copy from `source` to `sink`. Never throws for a failed transfer: the result says so. */
export async function runPrecopy(source: PrecopySource, sink: PrecopySink, opts: PrecopyOptions = {}, clock: PrecopyClock = wallClock): Promise<PrecopyResult> {
  const o = resolve(opts);
  const rule = makeStopRule(o.stopRule, opts);
  const throttle = new ThrottleController({ mode: o.throttle });
  const t0 = clock.now();
  const res: PrecopyResult = {
    ok: false, stopRule: o.stopRule, reason: '', rounds: 0, totalMs: 0, downtimeMs: 0, estimatedDowntimeMs: 0,
    wireBytes: 0, pagesSent: 0, finalPages: 0, maxThrottleMs: 0, roundStats: [],
  };
  let held = false;
  let tracking = false;
  const totalBlocks = source.diskBlocks ?? 0;
  const hasDisk = totalBlocks > 0;
  const copyDisk = hasDisk && o.diskMode === 'copy';
  const diskRes: DiskResult | undefined = hasDisk ? { mode: o.diskMode, totalBlocks, pushBlocks: 0, pushWireBytes: 0, missingBlocks: 0 } : undefined;
  if (diskRes) res.disk = diskRes;
  let dirtyRate = 0;
  const progress = (p: Omit<PrecopyProgress, 'throttleMs' | 'wireBytes' | 'dirtyPagesPerSec'>): void =>
    opts.onProgress?.({ ...p, throttleMs: throttle.delayMs, wireBytes: res.wireBytes, dirtyPagesPerSec: dirtyRate });

  /** Sends `pages` in chunks, pacing to the bandwidth limit; returns bytes, time and non-zero stats. */
  const sendRound = async (round: number, pages: Uint32Array, finalState: FinalState | null, blocks: Uint32Array = NONE, missing?: Uint32Array) => {
    const final = finalState !== null;
    const start = clock.now();
    const disk: RoundDisk | undefined = hasDisk ? { mode: o.diskMode, totalBlocks, blockCount: blocks.length, ...(missing ? { missing } : {}) } : undefined;
    await sink.beginRound(round, finalState?.memBytes ?? source.memBytes(), pages.length, finalState, disk);
    let wire = 0;
    let nz = 0;
    let nzBytes = 0;
    // One read ahead: the vCPU thread copies the next chunk while this one is encoded and sent.
    const chunkAt = (i: number) => pages.subarray(i, Math.min(pages.length, i + o.chunkPages));
    const readAt = (i: number): Promise<Uint8Array> | null => {
      if (i >= pages.length) return null;
      const r = source.readPages(chunkAt(i));
      r.catch(() => undefined); // awaited below; a read left in flight by a failed send must not go unhandled
      return r;
    };
    let next = readAt(0);
    for (let i = 0; i < pages.length; i += o.chunkPages) {
      const chunk = chunkAt(i);
      const data = await next!;
      next = readAt(i + o.chunkPages);
      const w = await sink.pages(chunk, data).finally(() => source.recycle?.(data));
      wire += w.wireBytes;
      nz += w.nonZeroPages;
      nzBytes += w.nonZeroBytes;
      if (o.bandwidthLimit > 0) {
        const due = (wire / o.bandwidthLimit) * 1000 - (clock.now() - start);
        if (due > 0) await clock.sleep(due);
      }
      const left = pages.length - i - chunk.length;
      const elapsed = clock.now() - start;
      progress({ phase: final ? 'stop-and-copy' : 'round', round, pagesLeft: left, roundPages: pages.length, etaMs: left > 0 ? (elapsed / (i + chunk.length)) * left : 0 });
    }
    // The round's disk blocks follow its pages (PUSH).
    let blockWire = 0;
    for (let i = 0; i < blocks.length; i += o.chunkPages) {
      const chunk = blocks.subarray(i, Math.min(blocks.length, i + o.chunkPages));
      const data = await source.readBlocks!(chunk);
      const w = await sink.blocks!(chunk, data);
      blockWire += w.wireBytes;
      if (o.bandwidthLimit > 0) {
        const due = ((wire + blockWire) / o.bandwidthLimit) * 1000 - (clock.now() - start);
        if (due > 0) await clock.sleep(due);
      }
      const left = blocks.length - i - chunk.length;
      const elapsed = clock.now() - start;
      progress({ phase: final ? 'stop-and-copy' : 'round', round, pagesLeft: left, roundPages: blocks.length, etaMs: left > 0 ? (elapsed / (i + chunk.length)) * left : 0 });
    }
    if (diskRes && blocks.length) {
      diskRes.pushBlocks += blocks.length;
      diskRes.pushWireBytes += blockWire;
    }
    wire += blockWire;
    await sink.endRound(round);
    res.wireBytes += wire;
    res.pagesSent += pages.length;
    return { wire, ms: clock.now() - start, nz, nzBytes };
  };

  try {
    if (hasDisk && (!sink.blocks || !sink.pull || !source.readBlocks || !source.dirtyBlocks))
      throw new PrecopyError('FTVM_ERR_PRECOPY_DISK', 'the guest has a virtual disk and this destination cannot carry its blocks');
    if (hasDisk && !o.live && !(copyDisk && sink.pullHeld)) throw new PrecopyError('FTVM_ERR_PRECOPY_DISK', 'a stop-the-world migration of a guest with a virtual disk is not supported (a stop-the-world snapshot is)');
    let pages: Uint32Array = new Uint32Array(0);
    let blocks: Uint32Array = NONE;
    if (o.live) {
      await source.startTracking();
      tracking = true;
      const first = source.firstPage;
      const n = source.memBytes() / 4096 - first;
      pages = new Uint32Array(Math.max(0, n));
      for (let i = 0; i < pages.length; i++) pages[i] = first + i;
      if (copyDisk) {
        blocks = new Uint32Array(totalBlocks);
        for (let i = 0; i < totalBlocks; i++) blocks[i] = i;
      }
      let bytesPerPage = 4096;
      for (let round = 0; ; round++) {
        const sent = await sendRound(round, pages, null, blocks);
        const dirty = await source.dirtyPages();
        const dirtyBlocks = copyDisk ? source.dirtyBlocks!() : NONE;
        res.rounds = round + 1;
        dirtyRate = sent.ms > 0 ? (dirty.length / sent.ms) * 1000 : 0;
        if (sent.nz > 0) bytesPerPage = sent.nzBytes / sent.nz;
        let bytesPerMs = sent.ms > 0 ? sent.wire / sent.ms : Infinity;
        if (o.bandwidthLimit > 0) bytesPerMs = Math.min(bytesPerMs, o.bandwidthLimit / 1000);
        const d = rule.decide({ round, dirty, bytesPerMs, bytesPerPage });
        // Throttle before giving up or settling for a long stop-and-copy (Improved Live Save):
        // while the guest still outruns the rounds and the throttle can step up, iterate.
        if (d.action !== 'continue' && d.reason !== 'fits' && throttle.canStepUp && throttle.outrunBy(pages.length, dirty.length)) {
          d.action = 'continue';
          d.reason = 'iterate';
        }
        const delay = d.action === 'continue' ? throttle.afterRound(round, pages.length, dirty.length) : throttle.delayMs;
        res.roundStats.push({
          round, pages: pages.length, wireBytes: sent.wire, ms: sent.ms, dirtied: dirty.length, throttleMs: throttle.delayMs,
          decision: d.action, reason: d.reason, estimatedDowntimeMs: d.estimatedDowntimeMs,
        });
        res.estimatedDowntimeMs = d.estimatedDowntimeMs;
        if (d.action === 'fail') {
          res.reason = `did not converge within ${res.rounds} rounds (remainder ${dirty.length} pages, about ${Math.round(d.estimatedDowntimeMs)} ms at the measured bandwidth)`;
          throw new PrecopyError('FTVM_ERR_PRECOPY_NO_CONVERGENCE', res.reason);
        }
        pages = dirty;
        blocks = dirtyBlocks;
        if (d.action === 'stop') {
          res.reason = d.reason;
          break;
        }
        if (delay !== res.maxThrottleMs && delay > 0) source.throttle(delay);
        res.maxThrottleMs = Math.max(res.maxThrottleMs, delay);
      }
    } else {
      // Stop-the-world (`save`): tracking only so the final hold can report the whole image.
      await source.startTracking();
      tracking = true;
      res.reason = 'stop-the-world';
    }
    // Shared storage: flush while the guest still runs, so the flush inside the hold has only
    // the writes since (a freshly written disk's page cache took ~0.7 s to sync when held).
    if (hasDisk && o.diskMode === 'shared') await source.flushDisk?.();
    const hold0 = clock.now();
    const final = await source.stopAndCopy();
    held = true;
    tracking = false;
    // The remainder: the last round's dirty set plus what was written until the hold.
    let finalPages = unionSorted(pages, final.pages);
    if (!o.live) {
      finalPages = new Uint32Array(Math.max(0, final.memBytes / 4096 - source.firstPage));
      for (let i = 0; i < finalPages.length; i++) finalPages[i] = source.firstPage + i;
    }
    res.finalPages = finalPages.length;
    progress({ phase: 'stop-and-copy', round: res.rounds, pagesLeft: finalPages.length, roundPages: finalPages.length, etaMs: NaN });
    const finalState = { ...final, pages: finalPages };
    // The disk's remainder is not sent now: its bitmap goes with the state, the destination pulls.
    // Stop-the-world: no block was sent, all of them remain.
    const missing = !copyDisk ? NONE : o.live ? unionSorted(blocks, final.blocks ?? NONE) : Uint32Array.from({ length: totalBlocks }, (_, i) => i);
    if (diskRes) diskRes.missingBlocks = missing.length;
    if (hasDisk && o.diskMode === 'shared') await source.flushDisk?.();
    const flushed = clock.now();
    await sendRound(res.rounds, finalPages, finalState, NONE, hasDisk ? missing : undefined);
    const sent0 = clock.now();
    await sink.commit(finalState);
    res.downtimeMs = clock.now() - hold0;
    res.downtimeParts = { holdMs: flushed - hold0, sendMs: sent0 - flushed, startMs: clock.now() - sent0 };
    if (copyDisk) {
      progress({ phase: 'pull', round: res.rounds, pagesLeft: missing.length, roundPages: missing.length, etaMs: NaN });
      diskRes!.pull = await sink.pull!(missing, (b) => source.readBlocks!(b), o.bandwidthLimit);
      res.wireBytes += diskRes!.pull.wireBytes;
      // Still held: the blocks are part of the downtime (and of the send).
      if (sink.pullHeld) {
        res.downtimeMs = clock.now() - hold0;
        res.downtimeParts.sendMs += diskRes!.pull.ms;
      }
    }
    res.ok = true;
    res.totalMs = clock.now() - t0;
    if (res.maxThrottleMs > 0) source.throttle(0);
    progress({ phase: 'done', round: res.rounds, pagesLeft: 0, roundPages: finalPages.length, etaMs: 0 });
    return res;
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    res.error = { code: (err as { code?: string }).code ?? 'FTVM_ERR_PRECOPY_FAILED', message: err.message };
    // A failure after the hold (the destination's start, PULL) replaces the reason it stopped for.
    if (!res.reason || held) res.reason = err.message;
    res.totalMs = clock.now() - t0;
    await sink.abort(err).catch(() => undefined);
    if (tracking) source.stopTracking();
    if (res.maxThrottleMs > 0) source.throttle(0);
    // A failed migration leaves the guest where it was, running.
    if (held) source.resume();
    progress({ phase: 'failed', round: res.rounds, pagesLeft: 0, roundPages: 0, etaMs: NaN });
    return res;
  }
}

const NONE = new Uint32Array(0);

/** Union of two sorted page lists, sorted, without duplicates. */
export function unionSorted(a: Uint32Array, b: Uint32Array): Uint32Array {
  if (b.length === 0) return a;
  if (a.length === 0) return b;
  const out = new Uint32Array(a.length + b.length);
  let i = 0, j = 0, n = 0;
  while (i < a.length || j < b.length) {
    const x = i < a.length ? a[i]! : Infinity;
    const y = j < b.length ? b[j]! : Infinity;
    const v = x <= y ? x : y;
    if (x === v) i++;
    if (y === v) j++;
    out[n++] = v;
  }
  return out.subarray(0, n);
}
