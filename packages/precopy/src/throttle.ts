/**
 * Auto-converge analogue: when the guest dirties pages faster than the rounds send them,
 * delay its event dispatch in steps. Pure; the engine applies the delay to the source.
 */
import { PrecopyError } from './errors.js';

export const THROTTLE_MODES = ['auto', 'off'] as const;
export type ThrottleMode = (typeof THROTTLE_MODES)[number];

/**
 * Dispatch delays, ms, one step at a time (QEMU steps its CPU throttle 20%, +10%...).
 * They reach past 100 ms because a rate-based guest catches up on the time a delay cost
 * (the dirtier up to 100 ms per tick): only longer delays lower its dirty rate. The last
 * steps (3.2, 6.4 s: ~98.5% of the guest's time held, QEMU's throttle goes to 99%) are for a
 * guest that still outruns the copy at 1.6 s (the dirtier at 400k pages/s on 1 GiB).
 */
export const THROTTLE_STEPS_MS: readonly number[] = [0, 10, 25, 50, 100, 200, 400, 800, 1600, 3200, 6400];

export interface ThrottleOptions {
  mode?: ThrottleMode;
  /** Dirtied / sent pages ratio above which a round counts as outrun. Default 0.5 (QEMU's). */
  triggerRatio?: number;
  /** Consecutive outrun rounds before a step up. Default 1 (QEMU waits for 2 of its 1 s periods; a round here is longer). */
  triggerRounds?: number;
}

export class ThrottleController {
  readonly mode: ThrottleMode;
  readonly triggerRatio: number;
  readonly triggerRounds: number;
  private step = 0;
  private outrun = 0;

  constructor(o: ThrottleOptions = {}) {
    this.mode = o.mode ?? 'off';
    this.triggerRatio = o.triggerRatio ?? 0.5;
    this.triggerRounds = o.triggerRounds ?? 1;
    if (!(THROTTLE_MODES as readonly string[]).includes(this.mode))
      throw new PrecopyError('FTVM_ERR_PRECOPY_OPTION', `throttle must be one of ${THROTTLE_MODES.join(', ')}, got '${String(this.mode)}'`);
    if (!(this.triggerRatio > 0)) throw new PrecopyError('FTVM_ERR_PRECOPY_OPTION', `throttle triggerRatio must be > 0, got ${this.triggerRatio}`);
    if (!Number.isInteger(this.triggerRounds) || this.triggerRounds < 1)
      throw new PrecopyError('FTVM_ERR_PRECOPY_OPTION', `throttle triggerRounds must be a positive integer, got ${this.triggerRounds}`);
  }

  /** The delay in force, ms. */
  get delayMs(): number {
    return THROTTLE_STEPS_MS[this.step]!;
  }

  /** Whether another step up is possible (auto mode, below the last step). */
  get canStepUp(): boolean {
    return this.mode === 'auto' && this.step < THROTTLE_STEPS_MS.length - 1;
  }

  /** Whether a round that sent `sent` pages while `dirtied` were written was outrun. */
  outrunBy(sent: number, dirtied: number): boolean {
    return sent > 0 && dirtied / sent > this.triggerRatio;
  }

  /**
   * After a round that sent `sent` pages while `dirtied` were written: returns the delay to
   * apply, ms. Round 0 counts too: a guest that re-dirties half of memory during the full
   * pass outruns the copy.
   */
  afterRound(_round: number, sent: number, dirtied: number): number {
    if (this.mode === 'off') return this.delayMs;
    if (this.outrunBy(sent, dirtied)) this.outrun++;
    else this.outrun = 0;
    if (this.outrun >= this.triggerRounds && this.step < THROTTLE_STEPS_MS.length - 1) {
      this.step++;
      this.outrun = 0;
    }
    return this.delayMs;
  }
}
