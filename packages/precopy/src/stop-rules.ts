/**
 * Stop rules of the pre-copy engine: after each round they decide whether to iterate
 * again, enter stop-and-copy, or give up. Pure: every input is in the round report.
 */
import { PrecopyError } from './errors.js';

export const STOP_RULES = ['plain', 'mp'] as const;
export type StopRuleName = (typeof STOP_RULES)[number];

/** What the engine knows after round `round` (0 = the full pass). */
export interface RoundReport {
  round: number;
  /** Pages dirtied while the round ran: what the next round (or the stop-and-copy) must send. */
  dirty: Uint32Array;
  /** Wire bytes per ms the last round achieved (already capped by any bandwidth limit). */
  bytesPerMs: number;
  /** Wire bytes one dirty page is expected to cost (from the last round's non-zero pages). */
  bytesPerPage: number;
}

export interface StopDecision {
  action: 'continue' | 'stop' | 'fail';
  /** fits: the remainder fits the downtime limit; pattern: MP saw the same regions come back; max-rounds. */
  reason: 'fits' | 'pattern' | 'max-rounds' | 'iterate';
  /** Expected stop-and-copy time for the remainder at the measured bandwidth, ms. */
  estimatedDowntimeMs: number;
}

export interface StopRuleOptions {
  /** The remainder must be sendable within this, ms. Default 300 (QEMU's default). */
  downtimeLimitMs?: number;
  /** Most rounds, round 0 included; plain fails past it, mp enters stop-and-copy. Default 30. */
  maxRounds?: number;
  /** mp: pages per region of the dirty history. Default 64 (256 KiB). */
  regionPages?: number;
  /** mp: a region is hot when it was dirty in at least this many of the last `historyRounds` rounds. Default 2. */
  hotRounds?: number;
  /** mp: rounds of history kept per region. Default 3. */
  historyRounds?: number;
  /** mp: stop when at least this fraction of the dirty pages lie in hot regions... Default 0.8. */
  hotFraction?: number;
  /** mp: ...and the dirty set shrank by less than this fraction since the previous round. Default 0.3. */
  minShrink?: number;
}

export type ResolvedStopRuleOptions = Required<StopRuleOptions>;

export const STOP_RULE_DEFAULTS: ResolvedStopRuleOptions = {
  downtimeLimitMs: 300,
  maxRounds: 30,
  regionPages: 64,
  hotRounds: 2,
  historyRounds: 3,
  hotFraction: 0.8,
  minShrink: 0.3,
};

function check(cond: boolean, msg: string): void {
  if (!cond) throw new PrecopyError('FTVM_ERR_PRECOPY_OPTION', msg);
}

export function resolveStopRuleOptions(o: StopRuleOptions = {}): ResolvedStopRuleOptions {
  const r = { ...STOP_RULE_DEFAULTS, ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) } as ResolvedStopRuleOptions;
  check(Number.isFinite(r.downtimeLimitMs) && r.downtimeLimitMs >= 0, `downtimeLimitMs must be a number >= 0 (ms), got ${r.downtimeLimitMs}`);
  check(Number.isInteger(r.maxRounds) && r.maxRounds >= 1 && r.maxRounds <= 10_000, `maxRounds must be an integer in [1, 10000], got ${r.maxRounds}`);
  check(Number.isInteger(r.regionPages) && r.regionPages >= 1 && r.regionPages <= 65536, `regionPages must be an integer in [1, 65536], got ${r.regionPages}`);
  check(Number.isInteger(r.historyRounds) && r.historyRounds >= 1 && r.historyRounds <= 15, `historyRounds must be an integer in [1, 15], got ${r.historyRounds}`);
  check(Number.isInteger(r.hotRounds) && r.hotRounds >= 1 && r.hotRounds <= r.historyRounds, `hotRounds must be an integer in [1, historyRounds], got ${r.hotRounds}`);
  check(r.hotFraction > 0 && r.hotFraction <= 1, `hotFraction must be in (0, 1], got ${r.hotFraction}`);
  check(r.minShrink >= 0 && r.minShrink < 1, `minShrink must be in [0, 1), got ${r.minShrink}`);
  return r;
}

export interface StopRule {
  readonly name: StopRuleName;
  decide(r: RoundReport): StopDecision;
}

export function estimateDowntimeMs(r: RoundReport): number {
  if (r.dirty.length === 0) return 0;
  return r.bytesPerMs > 0 ? (r.dirty.length * r.bytesPerPage) / r.bytesPerMs : Infinity;
}

/**
 * QEMU-like: stop when the remainder fits the downtime limit at the measured bandwidth;
 * else iterate, and give up after maxRounds (QEMU would iterate forever).
 */
export class PlainRule implements StopRule {
  readonly name = 'plain';
  readonly opts: ResolvedStopRuleOptions;
  constructor(opts: StopRuleOptions = {}) {
    this.opts = resolveStopRuleOptions(opts);
  }
  decide(r: RoundReport): StopDecision {
    const est = estimateDowntimeMs(r);
    if (est <= this.opts.downtimeLimitMs) return { action: 'stop', reason: 'fits', estimatedDowntimeMs: est };
    if (r.round + 1 >= this.opts.maxRounds) return { action: 'fail', reason: 'max-rounds', estimatedDowntimeMs: est };
    return { action: 'continue', reason: 'iterate', estimatedDowntimeMs: est };
  }
}

/**
 * MP (memory pattern): keeps, per region of `regionPages` pages, a bit history of the
 * rounds it was dirty in. When most dirty pages fall in regions that keep coming back
 * (hot: dirty in >= hotRounds of the last historyRounds rounds) and the dirty set no
 * longer shrinks, more rounds would resend the same working set: stop early and accept a
 * longer stop-and-copy. Also stops when the remainder fits the limit, and at maxRounds
 * (never fails: a migration that started completes).
 */
export class MpRule implements StopRule {
  readonly name = 'mp';
  readonly opts: ResolvedStopRuleOptions;
  /** Bit i of history[region] = dirty in the round i rounds ago (bit 0: the latest). */
  private history = new Uint16Array(0);
  private lastDirty = -1;
  /** The hot fraction and shrink of the last decision, for reports and tests. */
  lastHotFraction = 0;
  lastShrink = 0;

  constructor(opts: StopRuleOptions = {}) {
    this.opts = resolveStopRuleOptions(opts);
  }

  decide(r: RoundReport): StopDecision {
    const o = this.opts;
    const est = estimateDowntimeMs(r);
    const shift = Math.log2(o.regionPages);
    const regionOf = Number.isInteger(shift) ? (p: number) => p >>> shift : (p: number) => Math.floor(p / o.regionPages);
    let top = 0;
    for (let i = 0; i < r.dirty.length; i++) top = Math.max(top, regionOf(r.dirty[i]!) + 1);
    if (top > this.history.length) {
      const next = new Uint16Array(Math.max(top, this.history.length * 2));
      next.set(this.history);
      this.history = next;
    }
    const mask = (1 << o.historyRounds) - 1;
    // Age every region by one round, then set bit 0 of this round's dirty regions.
    for (let i = 0; i < this.history.length; i++) this.history[i] = (this.history[i]! << 1) & mask;
    for (let i = 0; i < r.dirty.length; i++) this.history[regionOf(r.dirty[i]!)]! |= 1;
    let hotPages = 0;
    for (let i = 0; i < r.dirty.length; i++) if (popcount(this.history[regionOf(r.dirty[i]!)]!) >= o.hotRounds) hotPages++;
    this.lastHotFraction = r.dirty.length ? hotPages / r.dirty.length : 0;
    this.lastShrink = this.lastDirty > 0 ? 1 - r.dirty.length / this.lastDirty : 0;
    const prev = this.lastDirty;
    this.lastDirty = r.dirty.length;
    if (est <= o.downtimeLimitMs) return { action: 'stop', reason: 'fits', estimatedDowntimeMs: est };
    if (r.round >= 1 && prev > 0 && this.lastHotFraction >= o.hotFraction && this.lastShrink < o.minShrink)
      return { action: 'stop', reason: 'pattern', estimatedDowntimeMs: est };
    if (r.round + 1 >= o.maxRounds) return { action: 'stop', reason: 'max-rounds', estimatedDowntimeMs: est };
    return { action: 'continue', reason: 'iterate', estimatedDowntimeMs: est };
  }
}

function popcount(v: number): number {
  let n = 0;
  for (; v; v &= v - 1) n++;
  return n;
}

export function makeStopRule(name: StopRuleName, opts: StopRuleOptions = {}): StopRule {
  if (name === 'plain') return new PlainRule(opts);
  if (name === 'mp') return new MpRule(opts);
  throw new PrecopyError('FTVM_ERR_PRECOPY_OPTION', `stopRule must be one of ${STOP_RULES.join(', ')}, got '${String(name)}'`);
}
