import { CORE_ERR, CoreOptionError } from './errors.js';
import { optNumber, rejectUnknown } from './options.js';

/**
 * The secondary's machine: stages checkpoints and decides when one may become the
 * committed image. Rules:
 * - A checkpoint is applied only when complete (begin, every page batch in order, end)
 *   and its digest verified; a partial one is never applied. A new begin, a gap or a
 *   term change discards the staging.
 * - A delta applies only on top of the image it was computed against: same term line,
 *   epoch = committed + 1. Anything else needs a full sync (nack).
 * - Apply BEFORE ack: an ack promises the image holds that epoch.
 * - Checkpoints from an older term than the newest seen are refused.
 *
 * States: empty (no committed image, cannot be promoted), standby (holds a committed
 * image), promoted (restored the image as primary; takes no more checkpoints).
 */
export type SecondaryState = 'empty' | 'standby' | 'promoted';

export interface SecondaryOptions {
  /** Clock reading at start, ms. */
  nowMs: number;
  /** Newest term known at start. Default 0. */
  term?: number;
  /** Silence from the primary after which promotion is requested, ms. Default 1000. */
  primaryTimeoutMs?: number;
  /** Largest staged checkpoint, bytes. Default 4 GiB (a full image of the largest guest). */
  maxStagingBytes?: number;
  /** Least time between two reports of the committed epoch to the proxy, ms. Default 100. */
  reportIntervalMs?: number;
}

/**
 * Actions, in order. Ordering rules for the runtime:
 * - `apply` makes the staged checkpoint the committed image atomically, and happens
 *   BEFORE the `ack` that follows it is sent.
 * - `stageBegin` replaces any staging; `stageDiscard` drops it; `stagePages` keeps a batch.
 * - `restore`: start the guest from the committed image (epoch), become primary in
 *   `term`, and answer the proxy with the image's offsets.
 */
export type SecondaryAction =
  | { type: 'stageBegin'; term: number; epoch: number; full: boolean }
  | { type: 'stagePages'; term: number; epoch: number; seq: number }
  | { type: 'stageDiscard'; reason: string }
  | { type: 'apply'; term: number; epoch: number; full: boolean }
  | { type: 'ack'; term: number; epoch: number }
  | { type: 'nack'; term: number; epoch: number; code: string; reason: string }
  /** The sender's term is older than ours: tell it (it has been fenced). */
  | { type: 'reject'; term: number; reason: string }
  /** `imageTerm`: term of the primary whose checkpoints built the image (the proxy promotes only the serving line). */
  /** `repeat`: the same loss was asked about before (the runtime logs only the first request). */
  | { type: 'promoteRequest'; term: number; committedEpoch: number; imageTerm: number; reason: string; repeat: boolean }
  /** The proxy refused a promotion; the next request waits `retryMs`. */
  | { type: 'promoteDenied'; term: number; reason: string; retryMs: number }
  | { type: 'reportCommitted'; term: number; epoch: number; imageTerm: number }
  | { type: 'restore'; term: number; epoch: number }
  | { type: 'refusePromote'; term: number; reason: string };

interface Staging {
  term: number;
  epoch: number;
  full: boolean;
  nextSeq: number;
  pages: number;
  bytes: number;
}

const GiB = 1024 * 1024 * 1024;
/** Longest wait between two promotion requests after refusals, ms. */
export const MAX_REQUEST_INTERVAL_MS = 30_000;

export class SecondaryCore {
  readonly options: Readonly<Required<Omit<SecondaryOptions, 'nowMs' | 'term'>>>;
  private _state: SecondaryState = 'empty';
  private _term: number;
  private _committedEpoch = 0;
  /** Term of the primary whose checkpoints built the committed image (its delta line); -1: none. */
  private _imageTerm = -1;
  private staging: Staging | undefined;
  /** The last refused checkpoint: its later messages are ignored rather than nacked again. */
  private refused: { term: number; epoch: number } | undefined;
  private primaryUp = false;
  private lastHeardMs: number;
  private lastRequestMs = -Infinity;
  /** Spacing of promotion requests: primaryTimeoutMs, doubled by each refusal up to MAX_REQUEST_INTERVAL_MS. */
  private requestIntervalMs: number;
  /** Requests since the primary was last heard (0: the next one is the first of this loss). */
  private requests = 0;
  private lastReportMs = -Infinity;
  private reportedEpoch = 0;
  private actions: SecondaryAction[] = [];

  constructor(opts: SecondaryOptions) {
    const o = opts as unknown as Record<string, unknown>;
    rejectUnknown('secondary', o, ['nowMs', 'term', 'primaryTimeoutMs', 'maxStagingBytes', 'reportIntervalMs']);
    const nowMs = optNumber('secondary', o, 'nowMs', NaN);
    if (Number.isNaN(nowMs)) throw new CoreOptionError(CORE_ERR.OPTION, 'secondary.nowMs is required (a finite number, ms)');
    this._term = optNumber('secondary', o, 'term', 0, { min: 0, integer: true });
    this.options = {
      primaryTimeoutMs: optNumber('secondary', o, 'primaryTimeoutMs', 1000, { minExclusive: 0 }),
      maxStagingBytes: optNumber('secondary', o, 'maxStagingBytes', 4 * GiB, { min: 1 }),
      reportIntervalMs: optNumber('secondary', o, 'reportIntervalMs', 100, { min: 0 }),
    };
    this.lastHeardMs = nowMs;
    this.requestIntervalMs = this.options.primaryTimeoutMs;
  }

  get state(): SecondaryState {
    return this._state;
  }
  get term(): number {
    return this._term;
  }
  get committedEpoch(): number {
    return this._committedEpoch;
  }
  /** Term of the primary whose checkpoints built the committed image; -1 without an image. */
  get imageTerm(): number {
    return this._imageTerm;
  }
  /** Epoch being staged, if any. */
  get stagingEpoch(): number | undefined {
    return this.staging?.epoch;
  }

  /** A snapshot for status pages and metrics. */
  status(): { state: SecondaryState; term: number; committedEpoch: number; imageTerm: number; stagingEpoch: number | undefined; primaryUp: boolean } {
    return { state: this._state, term: this._term, committedEpoch: this._committedEpoch, imageTerm: this._imageTerm, stagingEpoch: this.staging?.epoch, primaryUp: this.primaryUp };
  }

  takeActions(): SecondaryAction[] {
    const a = this.actions;
    this.actions = [];
    return a;
  }

  nextDeadline(): number | undefined {
    if (this._state !== 'standby') return undefined;
    let d: number | undefined;
    if (this.reportedEpoch < this._committedEpoch) d = this.lastReportMs + this.options.reportIntervalMs;
    // Promotion is (re)requested once the primary is silent, at most once per timeout.
    const silentAt = this.primaryUp ? this.lastHeardMs + this.options.primaryTimeoutMs : -Infinity;
    const lostAt = Math.max(silentAt, this.lastRequestMs + this.requestIntervalMs);
    return d === undefined ? lostAt : Math.min(d, lostAt);
  }

  // ---- events ----

  primaryConnected(nowMs: number): void {
    this.primaryUp = true;
    this.lastHeardMs = nowMs;
    this.requestIntervalMs = this.options.primaryTimeoutMs;
    this.requests = 0;
  }

  /**
   * The proxy refused to promote this node (`term`: the proxy's). Its term is adopted, and
   * each refusal doubles the wait before the next request (a node the proxy will not promote,
   * e.g. one a migration left behind, must not ask once a second forever).
   */
  promoteDenied(ev: { term: number; reason: string }): void {
    this.fence({ term: ev.term });
    if (this._state !== 'standby') return;
    this.requestIntervalMs = Math.min(MAX_REQUEST_INTERVAL_MS, this.requestIntervalMs * 2);
    this.actions.push({ type: 'promoteDenied', term: this._term, reason: ev.reason, retryMs: this.requestIntervalMs });
  }

  primaryDisconnected(nowMs: number): void {
    this.primaryUp = false;
    if (this.staging !== undefined) this.discard('replication link closed');
    this.maybeRequestPromotion(nowMs, 'replication link closed');
  }

  heartbeat(ev: { term: number; nowMs: number }): void {
    if (!this.checkTerm(ev.term, 'heartbeat')) return;
    this.lastHeardMs = ev.nowMs;
  }

  begin(ev: { term: number; epoch: number; full: boolean; nowMs: number }): void {
    if (!this.checkTerm(ev.term, 'checkpoint')) return;
    this.lastHeardMs = ev.nowMs;
    if (this.staging !== undefined) this.discard(`new checkpoint ${ev.epoch} began before ${this.staging.epoch} ended`);
    this.refused = undefined;
    if (!ev.full && !(ev.term === this._imageTerm && ev.epoch === this._committedEpoch + 1)) {
      this.refuse(ev.term, ev.epoch, CORE_ERR.NEED_FULL_SYNC, `delta ${ev.epoch} (term ${ev.term}) does not follow the image (epoch ${this._committedEpoch}, term ${this._imageTerm})`);
      return;
    }
    if (ev.full && ev.epoch < 1) {
      this.refuse(ev.term, ev.epoch, CORE_ERR.CHECKPOINT_GAP, `full checkpoint with epoch ${ev.epoch} < 1`);
      return;
    }
    this.staging = { term: ev.term, epoch: ev.epoch, full: ev.full, nextSeq: 0, pages: 0, bytes: 0 };
    this.actions.push({ type: 'stageBegin', term: ev.term, epoch: ev.epoch, full: ev.full });
  }

  /** One batch of `pageCount` pages, `bytes` long on the wire, batch number `seq` (from 0). */
  pages(ev: { term: number; epoch: number; seq: number; pageCount: number; bytes: number; nowMs: number }): void {
    if (!this.checkTerm(ev.term, 'checkpoint')) return;
    this.lastHeardMs = ev.nowMs;
    if (this.isRefused(ev.term, ev.epoch)) return;
    const s = this.staging;
    if (s === undefined || s.term !== ev.term || s.epoch !== ev.epoch || s.nextSeq !== ev.seq) {
      const want = s === undefined ? 'no checkpoint staged' : `expected epoch ${s.epoch} batch ${s.nextSeq}`;
      this.refuse(ev.term, ev.epoch, CORE_ERR.CHECKPOINT_GAP, `page batch ${ev.seq} of epoch ${ev.epoch}: ${want}`);
      return;
    }
    if (s.bytes + ev.bytes > this.options.maxStagingBytes) {
      this.refuse(ev.term, ev.epoch, CORE_ERR.STAGING_LIMIT, `checkpoint ${ev.epoch} exceeds maxStagingBytes (${this.options.maxStagingBytes})`);
      return;
    }
    s.nextSeq += 1;
    s.pages += ev.pageCount;
    s.bytes += ev.bytes;
    this.actions.push({ type: 'stagePages', term: ev.term, epoch: ev.epoch, seq: ev.seq });
  }

  /**
   * The checkpoint's end. `digestOk`: the runtime computed the digest of the image the
   * staging would produce and compared it with the primary's (a pure input here).
   */
  end(ev: { term: number; epoch: number; pageCount: number; digestOk: boolean; nowMs: number }): void {
    if (!this.checkTerm(ev.term, 'checkpoint')) return;
    this.lastHeardMs = ev.nowMs;
    if (this.isRefused(ev.term, ev.epoch)) return;
    const s = this.staging;
    if (s === undefined || s.term !== ev.term || s.epoch !== ev.epoch) {
      this.refuse(ev.term, ev.epoch, CORE_ERR.CHECKPOINT_GAP, `end of epoch ${ev.epoch} but ${s === undefined ? 'nothing' : `epoch ${s.epoch}`} is staged`);
      return;
    }
    if (s.pages !== ev.pageCount) {
      this.refuse(ev.term, ev.epoch, CORE_ERR.CHECKPOINT_GAP, `epoch ${ev.epoch}: ${s.pages} pages staged, end says ${ev.pageCount}`);
      return;
    }
    if (!ev.digestOk) {
      this.refuse(ev.term, ev.epoch, CORE_ERR.DIGEST_MISMATCH, `epoch ${ev.epoch}: image digest does not match the primary's`);
      return;
    }
    this.staging = undefined;
    this._committedEpoch = ev.epoch;
    this._imageTerm = ev.term;
    this._state = 'standby';
    this.actions.push({ type: 'apply', term: ev.term, epoch: ev.epoch, full: s.full });
    this.actions.push({ type: 'ack', term: ev.term, epoch: ev.epoch });
    this.report(ev.nowMs, false);
  }

  /** The proxy promotes this node in `term`. */
  promote(ev: { term: number; nowMs: number }): void {
    if (this._state === 'promoted') {
      if (ev.term !== this._term) this.actions.push({ type: 'refusePromote', term: ev.term, reason: `already promoted in term ${this._term}` });
      return;
    }
    if (ev.term <= this._term) {
      this.actions.push({ type: 'refusePromote', term: ev.term, reason: `term ${ev.term} is not newer than ${this._term}` });
      return;
    }
    this._term = ev.term;
    if (this.staging !== undefined) this.discard(`promoted in term ${ev.term}`);
    if (this._state === 'empty') {
      this.actions.push({ type: 'refusePromote', term: ev.term, reason: 'no committed image' });
      return;
    }
    this._state = 'promoted';
    this.actions.push({ type: 'restore', term: ev.term, epoch: this._committedEpoch });
  }

  /** A newer term exists (told by the proxy or a primary): checkpoints of older terms are refused from now on. */
  fence(ev: { term: number }): void {
    if (ev.term <= this._term) return;
    this._term = ev.term;
    if (this.staging !== undefined && this.staging.term < ev.term) this.discard(`term ${ev.term} began`);
  }

  tick(nowMs: number): void {
    if (this._state !== 'standby') return;
    this.report(nowMs, false);
    if (!this.primaryUp || nowMs >= this.lastHeardMs + this.options.primaryTimeoutMs) {
      this.maybeRequestPromotion(nowMs, this.primaryUp ? `no message from the primary for ${this.options.primaryTimeoutMs} ms` : 'replication link down');
    }
  }

  // ---- internals ----

  /** Older terms are refused; a newer term is adopted and drops staging of the old one. */
  private checkTerm(term: number, what: string): boolean {
    if (this._state === 'promoted' || term < this._term) {
      this.actions.push({ type: 'reject', term: this._term, reason: `${what} with term ${term}: ${this._state === 'promoted' ? 'this node is primary' : 'older than'} term ${this._term}` });
      return false;
    }
    if (term > this._term) this.fence({ term });
    return true;
  }

  private isRefused(term: number, epoch: number): boolean {
    return this.refused !== undefined && this.refused.term === term && this.refused.epoch === epoch;
  }

  private refuse(term: number, epoch: number, code: string, reason: string): void {
    if (this.staging !== undefined) this.discard(reason);
    this.refused = { term, epoch };
    this.actions.push({ type: 'nack', term, epoch, code, reason });
  }

  private discard(reason: string): void {
    this.staging = undefined;
    this.actions.push({ type: 'stageDiscard', reason });
  }

  private report(nowMs: number, force: boolean): void {
    if (this.reportedEpoch >= this._committedEpoch) return;
    if (!force && nowMs < this.lastReportMs + this.options.reportIntervalMs) return;
    this.lastReportMs = nowMs;
    this.reportedEpoch = this._committedEpoch;
    this.actions.push({ type: 'reportCommitted', term: this._term, epoch: this._committedEpoch, imageTerm: this._imageTerm });
  }

  private maybeRequestPromotion(nowMs: number, reason: string): void {
    if (this._state !== 'standby') return;
    if (nowMs < this.lastRequestMs + this.requestIntervalMs) return;
    this.lastRequestMs = nowMs;
    this.report(nowMs, true);
    this.actions.push({ type: 'promoteRequest', term: this._term, committedEpoch: this._committedEpoch, imageTerm: this._imageTerm, reason, repeat: this.requests++ > 0 });
  }
}
