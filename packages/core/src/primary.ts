import { CORE_ERR, CoreOptionError, CoreProtocolError } from './errors.js';
import { optEnum, optNumber, rejectUnknown } from './options.js';
import { adaptive, type EpochPolicy } from './policy.js';
import { cloneOffsets, type ConnOffsets, type StateOffsets } from './types.js';

/**
 * The primary's epoch machine: when to end an epoch, what to send, when output may
 * leave. The guarantee it serves: output of epoch N MUST NOT be released before ack(N)
 * while a secondary protects the guest; without one it is released unprotected
 * (`continue`, said loudly) or held (`block`).
 *
 * States:
 * - unprotected: no secondary; epochs commit as soon as collected (policy `continue`).
 * - blocked: no secondary; nothing commits, no epoch ends (policy `block`).
 * - syncing: a secondary joined; the next checkpoint is full, then deltas follow.
 *   Under `continue` epochs still commit unacked until the full checkpoint is acked.
 * - protected: every commit follows the secondary's ack of that epoch.
 * - stopped: fenced or stopped; no more actions.
 */
export type PrimaryState = 'unprotected' | 'blocked' | 'syncing' | 'protected' | 'stopped';

export type SecondaryLostPolicy = 'continue' | 'block';

export interface PrimaryOptions {
  /** Fencing term this primary runs in (given by the proxy's promote; 0 at a fresh bootstrap). */
  term: number;
  /** Epoch of the image the guest starts from: 0 for a fresh boot, the committed epoch after a promotion. */
  startEpoch?: number;
  /** Clock reading at start, ms: the first epoch begins here. */
  nowMs: number;
  /** When to end epochs. Default adaptive() with its defaults. */
  policy?: EpochPolicy;
  /** Most epochs collected and not yet acked. Default 8. A full window stops epochs from ending. */
  maxInFlightEpochs?: number;
  /** Most staged bytes of epochs collected and not yet acked. Default 256 MiB. */
  maxInFlightBytes?: number;
  /** What to do when the secondary is lost. Default 'continue'. */
  onSecondaryLost?: SecondaryLostPolicy;
  /** Secondary silent (no message at all, heartbeats included) for this long: lost, ms. Default 1000. */
  secondaryTimeoutMs?: number;
  /**
   * A secondary that heartbeats but acks nothing for this long (plus its checkpoint's apply
   * allowance, minApplyBytesPerMs) is stuck, not slow: lost, ms. Below it a slow secondary
   * only makes epochs longer (the in-flight window fills). Default 30000, at least
   * secondaryTimeoutMs.
   */
  secondaryStallTimeoutMs?: number;
  /**
   * Slowest rate at which a live secondary is expected to stage and apply a checkpoint,
   * bytes/ms: a checkpoint of B bytes gets B / rate ms on top of secondaryTimeoutMs for its
   * ack (a 1 GiB full sync has work to do before it can be acked, a 40 KiB epoch has none).
   * Silence still counts after secondaryTimeoutMs whatever the size. Default 32 MiB/s (33,554 bytes/ms).
   */
  minApplyBytesPerMs?: number;
  /**
   * Guest faults rolled back within guestFaultWindowMs at most; one more and the guest is
   * contained (held at its rollback image, not run) until the oldest of them leaves the
   * window. Default 10.
   */
  maxGuestFaults?: number;
  /** The window of maxGuestFaults, ms. Default 60000. */
  guestFaultWindowMs?: number;
}

/**
 * Actions, in the order they must be performed. Ordering rules for the runtime:
 * - `collect{epoch}`: at the next event boundary copy the dirty pages (every page if
 *   `full`) and device state, then let the vCPU run epoch+1 at once unless a
 *   `pauseVcpu` is in force; report with epochCollected(). Output the guest produces up
 *   to that boundary is tagged `epoch`, after it epoch+1.
 * - `sendCheckpoint{epoch}`: send the staged checkpoint; checkpoints go out in epoch order.
 * - `commit{epoch}`: send it to the proxy AFTER every output of epochs <= epoch has been
 *   sent on the same (ordered) net link. It is emitted only after ack(epoch) unless
 *   `acked` is false (no secondary: the guest runs unprotected). Staged copies of
 *   epochs <= epoch may be freed.
 * - `pauseVcpu` holds the vCPU at the next event boundary until `resumeVcpu`.
 * - `cancelCheckpoints`: drop every staged checkpoint not yet sent (the secondary will
 *   not take them any more).
 * - `disconnectSecondary`: close the replication link (a silent secondary must come back
 *   through secondaryConnected, which starts a full sync).
 * - `stop`: stop the guest now; commit nothing more.
 * - `rollback{epoch, conn}`: the guest faulted. Restore the vCPU from the image of the last
 *   collected epoch `epoch` (every epoch up to it is sent or committed; the secondary holds
 *   or will hold it), tell the proxy on the net link BEFORE any output of the restored guest
 *   (held output past `epoch` is void), close `conn` in the guest (its input past `epoch` is
 *   dropped, never replayed), replay every other connection's input past `epoch`, then call
 *   guestRestored(). No collect is asked for in between. The term and role stay.
 * - `guestContained`: too many faults in the window: the guest stays faulted (nothing runs,
 *   nothing is collected, the committed image stays) until a `rollback` follows.
 */
export type PrimaryAction =
  | { type: 'collect'; epoch: number; full: boolean }
  | { type: 'pauseVcpu'; reason: string }
  | { type: 'resumeVcpu' }
  | { type: 'startFullSync'; epoch: number }
  | { type: 'sendCheckpoint'; term: number; epoch: number; full: boolean }
  | { type: 'cancelCheckpoints'; reason: string }
  /** The secondary stopped answering: close the replication link; a reconnect starts a full sync. */
  | { type: 'disconnectSecondary'; reason: string }
  | { type: 'commit'; term: number; epoch: number; acked: boolean; offsets: StateOffsets }
  | { type: 'protectionChanged'; protected: boolean; reason: string }
  /**
   * Handover (see startHandover): the vCPU is held and the secondary acked `epoch`, the last
   * epoch, after its commit went out: its image is exactly this primary's state. The runtime
   * asks the proxy to promote the secondary (after the commit, on the same link).
   */
  | { type: 'handoverReady'; term: number; epoch: number }
  /** The handover cannot go on (the secondary was lost or refused an epoch before its ack); the vCPU was resumed. */
  | { type: 'handoverAborted'; reason: string }
  | { type: 'stop'; reason: string }
  | { type: 'rollback'; term: number; epoch: number; conn: number | undefined; code: string }
  | { type: 'guestContained'; faults: number; untilMs: number; reason: string };

export interface EpochCollected {
  epoch: number;
  nowMs: number;
  /** Bytes staged for this checkpoint (pages + device state). */
  bytes: number;
  offsets: StateOffsets;
}

interface InFlight {
  epoch: number;
  bytes: number;
  offsets: StateOffsets;
  collectedAtMs: number;
  sentAtMs: number | undefined;
  full: boolean;
}

const MiB = 1024 * 1024;
/** After this many full checkpoints refused in a row, the secondary counts as lost. */
const MAX_FAILED_FULL_SYNCS = 3;

export class PrimaryCore {
  readonly options: Readonly<Required<Omit<PrimaryOptions, 'nowMs' | 'term' | 'startEpoch'>>>;
  private _state: PrimaryState;
  private readonly _term: number;
  private running: number;
  private collecting: { epoch: number; full: boolean } | undefined;
  private _committedEpoch: number;
  /** Highest epoch committed without an ack; protection is regained once an ack reaches it. */
  private unackedCommit = 0;
  private protectedAnnounced = false;
  private inFlight: InFlight[] = [];
  private inFlightBytes = 0;
  private fullSyncEpoch: number | undefined;
  /** Sync-io: the vCPU is held until this epoch is acked (or the hold is released). */
  private holdUntil: number | undefined;
  private epochStartMs: number;
  private lastEpochEndMs = -Infinity;
  /** First output time per epoch not yet collected (running, and running+1 during a collect). */
  private outputSince = new Map<number, number>();
  private dirtyBytes = 0;
  private lastSecondaryHeardMs = -Infinity;
  private lastAckMs = -Infinity;
  /** Full checkpoints refused in a row by the secondary. */
  private failedFullSyncs = 0;
  private policyDeadline: number | undefined;
  private actions: PrimaryAction[] = [];
  /**
   * A planned handover: the vCPU is held (no epoch ends but the last), `finalEpoch` is the
   * last epoch once its collect began; `readySent` once handoverReady went out (from then on
   * only the runtime's abortHandover or a fence ends it: the proxy decides).
   */
  private handover: { finalEpoch: number | undefined; readySent: boolean } | undefined;
  /** Times of the guest faults rolled back within the window. */
  private faultTimes: number[] = [];
  /**
   * A guest fault is being recovered: 'rollingBack' until guestRestored(), 'contained' until
   * the fault budget allows the rollback (then `pendingFault` is rolled back).
   */
  private recovery: 'rollingBack' | 'contained' | undefined;
  private pendingFault: { conn: number | undefined; code: string; untilMs: number } | undefined;

  constructor(opts: PrimaryOptions) {
    const o = opts as unknown as Record<string, unknown>;
    rejectUnknown('primary', o, ['term', 'startEpoch', 'nowMs', 'policy', 'maxInFlightEpochs', 'maxInFlightBytes', 'onSecondaryLost', 'secondaryTimeoutMs', 'secondaryStallTimeoutMs', 'minApplyBytesPerMs', 'maxGuestFaults', 'guestFaultWindowMs']);
    this._term = optNumber('primary', o, 'term', NaN, { min: 0, integer: true });
    if (Number.isNaN(this._term)) throw new CoreOptionError(CORE_ERR.OPTION, 'primary.term is required (an integer >= 0)');
    const startEpoch = optNumber('primary', o, 'startEpoch', 0, { min: 0, integer: true });
    const nowMs = optNumber('primary', o, 'nowMs', NaN);
    if (Number.isNaN(nowMs)) throw new CoreOptionError(CORE_ERR.OPTION, 'primary.nowMs is required (a finite number, ms)');
    if (opts.policy !== undefined && typeof opts.policy?.decide !== 'function') {
      throw new CoreOptionError(CORE_ERR.OPTION, 'primary.policy must be an EpochPolicy (see createPolicy)');
    }
    this.options = {
      policy: opts.policy ?? adaptive(),
      maxInFlightEpochs: optNumber('primary', o, 'maxInFlightEpochs', 8, { min: 1, integer: true }),
      maxInFlightBytes: optNumber('primary', o, 'maxInFlightBytes', 256 * MiB, { min: 1 }),
      onSecondaryLost: optEnum('primary', o, 'onSecondaryLost', ['continue', 'block'] as const, 'continue'),
      secondaryTimeoutMs: optNumber('primary', o, 'secondaryTimeoutMs', 1000, { minExclusive: 0 }),
      secondaryStallTimeoutMs: optNumber('primary', o, 'secondaryStallTimeoutMs', 30_000, { minExclusive: 0 }),
      minApplyBytesPerMs: optNumber('primary', o, 'minApplyBytesPerMs', (32 * MiB) / 1000, { minExclusive: 0 }),
      maxGuestFaults: optNumber('primary', o, 'maxGuestFaults', 10, { min: 1, integer: true }),
      guestFaultWindowMs: optNumber('primary', o, 'guestFaultWindowMs', 60_000, { minExclusive: 0 }),
    };
    if (this.options.secondaryStallTimeoutMs < this.options.secondaryTimeoutMs) {
      throw new CoreOptionError(CORE_ERR.OPTION, `primary.secondaryStallTimeoutMs (${this.options.secondaryStallTimeoutMs}) must be at least secondaryTimeoutMs (${this.options.secondaryTimeoutMs})`);
    }
    this.running = startEpoch + 1;
    this._committedEpoch = startEpoch;
    this.epochStartMs = nowMs;
    this._state = this.options.onSecondaryLost === 'continue' ? 'unprotected' : 'blocked';
    this.actions.push({
      type: 'protectionChanged',
      protected: false,
      reason: this._state === 'blocked' ? 'no secondary yet; output held (block)' : 'no secondary yet; running unprotected',
    });
  }

  get state(): PrimaryState {
    return this._state;
  }
  get term(): number {
    return this._term;
  }
  /** The epoch the vCPU is running (its output is tagged with it). */
  get runningEpoch(): number {
    return this.running;
  }
  get committedEpoch(): number {
    return this._committedEpoch;
  }
  get inFlightEpochs(): number {
    return this.inFlight.length;
  }
  get isProtected(): boolean {
    return this.protectedAnnounced;
  }
  /** The vCPU is held: by sync-io until an ack, or by a handover. */
  get vcpuHeld(): boolean {
    return this.holdUntil !== undefined || this.handover !== undefined;
  }
  /** The guest faulted and is being rolled back, or is contained (fault budget spent). */
  get recovering(): 'rollingBack' | 'contained' | undefined {
    return this.recovery;
  }
  /** A handover is under way (startHandover until abortHandover, a fence or an abort). */
  get handingOver(): boolean {
    return this.handover !== undefined;
  }

  /** A snapshot for status pages and metrics. */
  status(): {
    state: PrimaryState;
    term: number;
    runningEpoch: number;
    committedEpoch: number;
    inFlightEpochs: number;
    inFlightBytes: number;
    protected: boolean;
    vcpuHeld: boolean;
    policy: string;
  } {
    return {
      state: this._state,
      term: this._term,
      runningEpoch: this.running,
      committedEpoch: this._committedEpoch,
      inFlightEpochs: this.inFlight.length,
      inFlightBytes: this.inFlightBytes,
      protected: this.protectedAnnounced,
      vcpuHeld: this.holdUntil !== undefined,
      policy: this.options.policy.name,
    };
  }

  takeActions(): PrimaryAction[] {
    const a = this.actions;
    this.actions = [];
    return a;
  }

  /** When tick() should next be called (ms), if no other event comes first. */
  nextDeadline(): number | undefined {
    let d = this.policyDeadline;
    const t = this.secondaryDeadline();
    if (t !== undefined && (d === undefined || t < d)) d = t;
    const f = this.pendingFault?.untilMs;
    if (f !== undefined && (d === undefined || f < d)) d = f;
    return d;
  }

  // ---- events ----

  tick(nowMs: number): void {
    if (this._state === 'stopped') return;
    const t = this.secondaryDeadline();
    if (t !== undefined && nowMs >= t) {
      const oldest = this.inFlight[0];
      const reason =
        oldest?.sentAtMs !== undefined && nowMs - this.lastSecondaryHeardMs < this.options.secondaryTimeoutMs
          ? `no ack of epoch ${oldest.epoch} (${oldest.bytes} bytes) from the secondary for ${Math.round(nowMs - Math.max(oldest.sentAtMs, this.lastAckMs))} ms (stuck)`
          : `no progress from the secondary for ${this.options.secondaryTimeoutMs} ms`;
      this.secondaryLost(reason);
      this.actions.push({ type: 'disconnectSecondary', reason });
    }
    const f = this.pendingFault;
    if (this.recovery === 'contained' && f !== undefined && nowMs >= f.untilMs) this.startRollback(f.conn, f.code, nowMs);
    this.evaluate(nowMs);
  }

  /**
   * The guest faulted (trap, event timeout, store into the dirty log, memory limit): the
   * application's fault, not the host's. The vCPU is rolled back to the last collected
   * epoch (a collect under way is void), the faulting connection `conn` is closed, and this
   * node goes on as primary in the same term. Past the fault budget the guest is contained
   * first. A fault while already recovering (during the replay) is the same: another rollback.
   */
  guestFaulted(ev: { conn: number | undefined; code: string; nowMs: number }): void {
    if (this._state === 'stopped') return;
    // The epoch being collected ends at no boundary: the faulted run is void.
    this.collecting = undefined;
    // A full sync whose collect was void starts again after the restore.
    if (this.fullSyncEpoch !== undefined && this.fullSyncEpoch >= this.running) this.fullSyncEpoch = undefined;
    for (const e of [...this.outputSince.keys()]) if (e >= this.running) this.outputSince.delete(e);
    this.dirtyBytes = 0;
    if (this.handover !== undefined && !this.handover.readySent) {
      this.handover = undefined;
      this.actions.push({ type: 'handoverAborted', reason: `guest fault ${ev.code}` });
    }
    const w = this.options.guestFaultWindowMs;
    this.faultTimes = this.faultTimes.filter((t) => t > ev.nowMs - w);
    if (this.recovery === 'contained') {
      // Still contained (a fault of a restore that was not asked for cannot happen): keep the first.
      return;
    }
    if (this.faultTimes.length >= this.options.maxGuestFaults) {
      const untilMs = this.faultTimes[0]! + w;
      this.recovery = 'contained';
      this.pendingFault = { conn: ev.conn, code: ev.code, untilMs };
      this.policyDeadline = undefined;
      this.actions.push({
        type: 'guestContained',
        faults: this.faultTimes.length + 1,
        untilMs,
        reason: `${this.faultTimes.length + 1} guest faults within ${w} ms (last ${ev.code}): the guest is held at epoch ${this.running - 1} for ${Math.round(untilMs - ev.nowMs)} ms`,
      });
      return;
    }
    this.startRollback(ev.conn, ev.code, ev.nowMs);
  }

  /** The runtime restored the vCPU and queued the replay (after a `rollback`). */
  guestRestored(nowMs: number): void {
    if (this._state === 'stopped' || this.recovery !== 'rollingBack') return;
    this.recovery = undefined;
    this.epochStartMs = nowMs;
    // The fresh vCPU runs: hold it again if sync-io or a handover held the old one.
    if (this.vcpuHeld) this.actions.push({ type: 'pauseVcpu', reason: 'held before the guest fault' });
    this.evaluate(nowMs);
  }

  private startRollback(conn: number | undefined, code: string, nowMs: number): void {
    this.faultTimes.push(nowMs);
    this.recovery = 'rollingBack';
    this.pendingFault = undefined;
    this.policyDeadline = undefined;
    // A sync-io hold on the faulted epoch is void with it.
    if (this.holdUntil !== undefined && this.holdUntil >= this.running) this.holdUntil = undefined;
    this.actions.push({ type: 'rollback', term: this._term, epoch: this.running - 1, conn, code });
  }

  /** The guest produced output tagged `epoch` (the runtime has sent it to the proxy). */
  outputProduced(ev: { epoch: number; nowMs: number }): void {
    if (this._state === 'stopped') return;
    if (ev.epoch < this.running) return; // belongs to an epoch already collected or being collected
    if (!this.outputSince.has(ev.epoch)) this.outputSince.set(ev.epoch, ev.nowMs);
    this.evaluate(ev.nowMs);
  }

  /** How many bytes the running epoch has dirtied so far (an estimate; runtime's choice of rate). */
  dirtyEstimate(bytes: number, nowMs: number): void {
    if (this._state === 'stopped') return;
    this.dirtyBytes = bytes;
    this.evaluate(nowMs);
  }

  epochCollected(ev: EpochCollected): void {
    if (this._state === 'stopped') return;
    if (this.collecting === undefined || ev.epoch !== this.collecting.epoch) {
      throw new CoreProtocolError(CORE_ERR.ORDER, `epochCollected(${ev.epoch}) but ${this.collecting === undefined ? 'no collect is pending' : `collect ${this.collecting.epoch} is pending`}`);
    }
    const full = this.collecting.full;
    this.collecting = undefined;
    this.running = ev.epoch + 1;
    this.epochStartMs = ev.nowMs;
    this.lastEpochEndMs = ev.nowMs;
    this.dirtyBytes = 0;
    for (const e of [...this.outputSince.keys()]) if (e <= ev.epoch) this.outputSince.delete(e);
    const rec: InFlight = { epoch: ev.epoch, bytes: ev.bytes, offsets: cloneOffsets(ev.offsets), collectedAtMs: ev.nowMs, sentAtMs: undefined, full };

    switch (this._state) {
      case 'unprotected':
        this.commit(ev.epoch, false, rec.offsets);
        break;
      case 'blocked':
        // Only a collect issued before the secondary was lost lands here; the next full sync covers it.
        break;
      case 'syncing':
        if (!full && this.fullSyncEpoch === undefined) {
          // A delta begun before the secondary joined: it cannot go to the new secondary.
          if (this.options.onSecondaryLost === 'continue') this.commit(ev.epoch, false, rec.offsets);
          break;
        }
        this.track(rec);
        if (this.options.onSecondaryLost === 'continue' && ev.epoch > this._committedEpoch) {
          // Still unprotected until the full image is acked: keep output flowing.
          this.commit(ev.epoch, false, rec.offsets);
        }
        break;
      case 'protected':
        this.track(rec);
        break;
    }
    if (this.holdUntil !== undefined && this.holdUntil === ev.epoch && (this._state === 'unprotected' || this._committedEpoch >= ev.epoch)) {
      this.release();
    }
    this.evaluate(ev.nowMs);
  }

  /** The runtime finished writing checkpoint `epoch` to the replication link. */
  checkpointSent(ev: { epoch: number; nowMs: number }): void {
    const f = this.inFlight.find((x) => x.epoch === ev.epoch);
    if (f !== undefined && f.sentAtMs === undefined) f.sentAtMs = ev.nowMs;
  }

  /** Any message from the secondary (heartbeat included) proves it is alive. */
  secondaryHeard(nowMs: number): void {
    this.lastSecondaryHeardMs = Math.max(this.lastSecondaryHeardMs, nowMs);
  }

  ack(ev: { term: number; epoch: number; nowMs: number }): void {
    if (this._state !== 'protected' && this._state !== 'syncing') return;
    if (ev.term !== this._term) return;
    this.secondaryHeard(ev.nowMs);
    const done = this.inFlight.filter((x) => x.epoch <= ev.epoch);
    if (done.length === 0) return; // duplicate or for a discarded epoch
    this.lastAckMs = ev.nowMs;
    this.inFlight = this.inFlight.filter((x) => x.epoch > ev.epoch);
    for (const d of done) this.inFlightBytes -= d.bytes;
    if (this._state === 'syncing' && this.fullSyncEpoch !== undefined && ev.epoch >= this.fullSyncEpoch) {
      this.failedFullSyncs = 0;
      this._state = 'protected';
      this.fullSyncEpoch = undefined;
    }
    if (ev.epoch > this._committedEpoch) this.commit(ev.epoch, true, mergeOffsets(done));
    if (this._state === 'protected' && !this.protectedAnnounced && ev.epoch >= this.unackedCommit) {
      this.protectedAnnounced = true;
      this.actions.push({ type: 'protectionChanged', protected: true, reason: `secondary holds epoch ${ev.epoch}` });
    }
    if (this.holdUntil !== undefined && ev.epoch >= this.holdUntil) this.release();
    const h = this.handover;
    if (h !== undefined && !h.readySent && h.finalEpoch !== undefined && this._state === 'protected' && this._committedEpoch >= h.finalEpoch) {
      h.readySent = true;
      this.actions.push({ type: 'handoverReady', term: this._term, epoch: h.finalEpoch });
    }
    this.evaluate(ev.nowMs);
  }

  /**
   * A planned handover to the secondary (a migration): hold the vCPU at the next event
   * boundary, end one last epoch there, and once the secondary acked it say handoverReady.
   * The vCPU stays held until abortHandover() or a fence (the proxy promoted the secondary).
   * Only a protected primary can hand over: its secondary must hold every committed epoch.
   */
  startHandover(nowMs: number): void {
    if (this._state !== 'protected' || !this.protectedAnnounced) {
      throw new CoreProtocolError(CORE_ERR.ORDER, `startHandover needs a protected primary (state ${this._state})`);
    }
    if (this.handover !== undefined) throw new CoreProtocolError(CORE_ERR.ORDER, 'a handover is already under way');
    this.handover = { finalEpoch: undefined, readySent: false };
    this.actions.push({ type: 'pauseVcpu', reason: 'handover: the guest is held for its last epoch' });
    this.evaluate(nowMs);
  }

  /** The handover will not happen (the proxy refused, or did not answer): resume the guest. */
  abortHandover(nowMs: number): void {
    if (this.handover === undefined || this._state === 'stopped') return;
    this.handover = undefined;
    if (this.holdUntil === undefined) this.actions.push({ type: 'resumeVcpu' });
    this.evaluate(nowMs);
  }

  /** The secondary refused `epoch` (gap, digest mismatch...): it needs a full sync. */
  nack(ev: { term: number; epoch: number; code: string; nowMs: number }): void {
    if (this._state !== 'protected' && this._state !== 'syncing') return;
    if (ev.term !== this._term) return;
    this.secondaryHeard(ev.nowMs);
    const refused = this.inFlight.find((x) => x.epoch === ev.epoch);
    if (refused === undefined) return; // about an epoch already abandoned
    const reason = `secondary refused epoch ${ev.epoch} (${ev.code})`;
    this.failedFullSyncs = refused.full ? this.failedFullSyncs + 1 : 0;
    if (this.failedFullSyncs >= MAX_FAILED_FULL_SYNCS) {
      // A secondary that cannot take our full image would be re-synced forever, O(memory) each time.
      this.failedFullSyncs = 0;
      const why = `${reason}: ${MAX_FAILED_FULL_SYNCS} full syncs in a row refused`;
      this.secondaryLost(why);
      this.actions.push({ type: 'disconnectSecondary', reason: why });
    } else {
      this.abandonInFlight(reason);
      this.enterSyncing();
    }
    this.evaluate(ev.nowMs);
  }

  secondaryConnected(nowMs: number): void {
    if (this._state === 'stopped') return;
    if (this._state === 'protected' || this._state === 'syncing') this.abandonInFlight('secondary reconnected');
    this.lastSecondaryHeardMs = nowMs;
    this.enterSyncing();
    this.evaluate(nowMs);
  }

  secondaryDisconnected(nowMs: number, reason = 'replication link closed'): void {
    if (this._state !== 'protected' && this._state !== 'syncing') return;
    this.secondaryLost(reason);
    this.evaluate(nowMs);
  }

  /**
   * The proxy (or the secondary) says another node is primary in `term`: this primary must
   * stop. A fence for our own term counts too: the proxy gave the term to someone else
   * (two nodes claimed it). Only an older term is ignored (a stale fence).
   */
  fenced(term: number, _nowMs: number): void {
    if (this._state === 'stopped' || term < this._term) return;
    this._state = 'stopped';
    this.handover = undefined;
    this.recovery = undefined;
    this.pendingFault = undefined;
    this.inFlight = [];
    this.inFlightBytes = 0;
    this.policyDeadline = undefined;
    this.actions.push({ type: 'cancelCheckpoints', reason: `fenced by term ${term}` });
    this.actions.push({ type: 'stop', reason: `fenced: term ${term} belongs to another node (ours: ${this._term})` });
  }

  // ---- internals ----

  private track(rec: InFlight): void {
    this.inFlight.push(rec);
    this.inFlightBytes += rec.bytes;
    this.actions.push({ type: 'sendCheckpoint', term: this._term, epoch: rec.epoch, full: rec.full });
  }

  private commit(epoch: number, acked: boolean, offsets: StateOffsets): void {
    this._committedEpoch = epoch;
    if (!acked) this.unackedCommit = epoch;
    this.actions.push({ type: 'commit', term: this._term, epoch, acked, offsets });
  }

  private release(): void {
    this.holdUntil = undefined;
    if (this.handover === undefined) this.actions.push({ type: 'resumeVcpu' });
  }

  private enterSyncing(): void {
    this._state = 'syncing';
    this.fullSyncEpoch = undefined;
  }

  /** Epochs sent but never to be acked: drop them; under `continue` their output is released unprotected. */
  private abandonInFlight(reason: string): void {
    if (this.handover !== undefined && !this.handover.readySent) {
      // The last epoch will not be acked: no handover. (After handoverReady the proxy
      // decides: the promoted secondary itself closes this link.)
      this.handover = undefined;
      this.actions.push({ type: 'handoverAborted', reason });
      if (this.holdUntil === undefined) this.actions.push({ type: 'resumeVcpu' });
    }
    const last = this.inFlight[this.inFlight.length - 1];
    this.inFlight = [];
    this.inFlightBytes = 0;
    this.actions.push({ type: 'cancelCheckpoints', reason });
    if (this.protectedAnnounced || this._state === 'protected') {
      this.protectedAnnounced = false;
      this.actions.push({
        type: 'protectionChanged',
        protected: false,
        reason: this.options.onSecondaryLost === 'continue' ? `${reason}; running unprotected` : `${reason}; output held (block)`,
      });
    }
    if (this.options.onSecondaryLost === 'continue') {
      if (last !== undefined && last.epoch > this._committedEpoch) this.commit(last.epoch, false, last.offsets);
      if (this.holdUntil !== undefined && this.holdUntil <= this._committedEpoch) this.release();
    }
  }

  private secondaryLost(reason: string): void {
    if (this._state !== 'protected' && this._state !== 'syncing') return;
    const wasAnnounced = this.protectedAnnounced || this._state === 'protected';
    this.abandonInFlight(reason);
    this.fullSyncEpoch = undefined;
    this._state = this.options.onSecondaryLost === 'continue' ? 'unprotected' : 'blocked';
    if (!wasAnnounced) {
      // Was still syncing: say again that protection did not come back.
      this.actions.push({ type: 'protectionChanged', protected: false, reason: `${reason} during full sync` });
    }
  }

  /**
   * When the secondary counts as lost: silent (no message at all) for secondaryTimeoutMs,
   * or alive but stuck: the oldest sent checkpoint unacked for secondaryStallTimeoutMs
   * since it was sent or since the last ack, whichever is later. Heartbeats prove
   * liveness, not progress, so they do not extend the second limit, but it is long (slow is
   * not dead: a slow secondary only fills the window, which makes epochs longer) and grows
   * with the checkpoint's size (minApplyBytesPerMs). A checkpoint still being written has no
   * ack deadline yet (the link's own liveness covers it).
   */
  private secondaryDeadline(): number | undefined {
    if (this._state !== 'protected' && this._state !== 'syncing') return undefined;
    const t = this.options.secondaryTimeoutMs;
    let d = this.lastSecondaryHeardMs + t;
    const oldest = this.inFlight[0];
    if (oldest?.sentAtMs !== undefined) d = Math.min(d, Math.max(oldest.sentAtMs, this.lastAckMs) + this.options.secondaryStallTimeoutMs + oldest.bytes / this.options.minApplyBytesPerMs);
    return d;
  }

  /** Asks the policy whether to end the running epoch; emits collect when it says so. */
  private evaluate(nowMs: number): void {
    this.policyDeadline = undefined;
    if (this._state === 'stopped' || this._state === 'blocked' || this.collecting !== undefined || this.recovery !== undefined) return;
    if (this._state === 'syncing' && this.fullSyncEpoch === undefined) {
      // A secondary waits for its full image: end an epoch now, whatever the policy or window.
      this.fullSyncEpoch = this.running;
      this.actions.push({ type: 'startFullSync', epoch: this.running });
      this.startCollect(true);
      return;
    }
    if (this.handover !== undefined) {
      // Held for a handover: one last epoch, ended at the hold; then nothing more.
      if (this.handover.finalEpoch === undefined && this._state === 'protected') {
        this.handover.finalEpoch = this.running;
        this.startCollect(false);
      }
      return;
    }
    if (this.holdUntil !== undefined) return; // sync-io: nothing runs, nothing to end
    const since = this.outputSince.get(this.running);
    const decision = this.options.policy.decide({
      nowMs,
      epochStartMs: this.epochStartMs,
      lastEpochEndMs: this.lastEpochEndMs,
      outputPending: since !== undefined,
      outputPendingSinceMs: since,
      dirtyBytesEstimate: this.dirtyBytes,
      inFlight: this.inFlight.length,
      awaitingAckSinceMs: this._state === 'protected' ? this.inFlight[0]?.collectedAtMs : undefined,
      windowFull: this.inFlight.length >= this.options.maxInFlightEpochs || this.inFlightBytes >= this.options.maxInFlightBytes,
    });
    if (!decision.endEpoch) {
      this.policyDeadline = decision.nextDeadlineMs;
      return;
    }
    if (decision.waitForAck && this._state !== 'unprotected') {
      this.holdUntil = this.running;
      this.actions.push({ type: 'pauseVcpu', reason: `sync-io: epoch ${this.running} waits for its ack` });
    }
    this.startCollect(false);
  }

  private startCollect(full: boolean): void {
    this.collecting = { epoch: this.running, full };
    this.actions.push({ type: 'collect', epoch: this.running, full });
  }
}

/** One commit covering several epochs: the latest offsets of each connection, closes included. */
function mergeOffsets(epochs: InFlight[]): StateOffsets {
  const last = epochs[epochs.length - 1]!;
  if (epochs.length === 1) return last.offsets;
  const byConn = new Map<number, ConnOffsets>();
  for (const e of epochs) for (const c of e.offsets.conns) byConn.set(c.conn, c);
  return { epoch: last.offsets.epoch, maxConnId: last.offsets.maxConnId, conns: [...byConn.values()].sort((a, b) => a.conn - b.conn) };
}
