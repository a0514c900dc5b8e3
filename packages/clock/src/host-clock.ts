/**
 * Host clocks: the compensator never reads time itself; runtimes read a HostClock and
 * pass the value in. Every HostClock returns ns since the Unix epoch, never decreasing.
 */
import { clockError } from './errors.js';

export interface HostClock {
  /** ns since the Unix epoch; non-decreasing across calls on one instance. */
  nowNs(): bigint;
}

/**
 * The real clock of this process: a monotonic hrtime counter anchored once to wall time.
 *
 * Why this shape: hrtime alone has an arbitrary origin per boot, so two processes (the
 * primary and the secondary of `ftvm up`, or two hosts) could not compare values; Date.now()
 * alone is wall time but can step backwards under NTP. The anchor is read at creation from
 * `performance.timeOrigin + performance.now()` (µs resolution) next to hrtime, so two
 * processes on one machine agree to within a few µs plus whatever the system clock was
 * slewed between their creations; across machines they differ by the hosts' clock skew,
 * which the compensator tolerates (restore never moves guest time backwards).
 */
export function createSystemHostClock(): HostClock {
  const hr0 = process.hrtime.bigint();
  const wallMs = performance.timeOrigin + performance.now();
  const hr1 = process.hrtime.bigint();
  const anchorHr = (hr0 + hr1) / 2n;
  const anchorWallNs = BigInt(Math.round(wallMs * 1000)) * 1000n;
  return { nowNs: () => anchorWallNs + (process.hrtime.bigint() - anchorHr) };
}

export const systemHostClock: HostClock = createSystemHostClock();

/** A clock that moves only when told to (tests, simulations). */
export class ManualClock implements HostClock {
  private now: bigint;

  constructor(startNs: bigint = 0n) {
    if (typeof startNs !== 'bigint') throw clockError('FTVM_ERR_CLOCK_OPTION', `startNs must be a bigint, got ${typeof startNs}`);
    this.now = startNs;
  }

  nowNs(): bigint {
    return this.now;
  }

  /** Moves to `ns`; moving backwards is FTVM_ERR_CLOCK_HOST_BACKWARDS (host clocks never do). */
  set(ns: bigint): void {
    if (ns < this.now) throw clockError('FTVM_ERR_CLOCK_HOST_BACKWARDS', `ManualClock.set(${ns}) is before now (${this.now})`);
    this.now = ns;
  }

  advance(deltaNs: bigint): void {
    if (deltaNs < 0n) throw clockError('FTVM_ERR_CLOCK_OPTION', `ManualClock.advance deltaNs must be >= 0, got ${deltaNs}`);
    this.now += deltaNs;
  }
}

export interface SkewOptions {
  /** Constant offset added to the base clock, ns (positive: this host's clock is ahead). */
  offsetNs?: bigint;
  /** Rate error, ppm (positive: runs fast). Must be > -1e6 so the clock never runs backwards. */
  ratePpm?: number;
  /** Base time at which the rate error has accumulated nothing, ns. Default: the base's time at construction. */
  anchorNs?: bigint;
}

/**
 * Another host's view of `base`: now = base + offset + (base - anchor) * ratePpm / 1e6.
 * Non-decreasing whenever base is, because the rate term is truncated monotonically.
 */
export class SkewedClock implements HostClock {
  readonly offsetNs: bigint;
  readonly ratePpm: number;
  private readonly ratePpb: bigint;
  private readonly anchorNs: bigint;

  constructor(
    private readonly base: HostClock,
    options: SkewOptions = {},
  ) {
    const offsetNs = options.offsetNs ?? 0n;
    const ratePpm = options.ratePpm ?? 0;
    if (typeof offsetNs !== 'bigint') throw clockError('FTVM_ERR_CLOCK_OPTION', `offsetNs must be a bigint, got ${typeof offsetNs}`);
    if (!Number.isFinite(ratePpm) || ratePpm <= -1e6 || ratePpm >= 1e6) {
      throw clockError('FTVM_ERR_CLOCK_OPTION', `ratePpm must be a finite number in (-1e6, 1e6), got ${ratePpm}`);
    }
    this.offsetNs = offsetNs;
    this.ratePpm = ratePpm;
    this.ratePpb = BigInt(Math.round(ratePpm * 1000));
    this.anchorNs = options.anchorNs ?? base.nowNs();
  }

  nowNs(): bigint {
    const b = this.base.nowNs();
    return b + this.offsetNs + ((b - this.anchorNs) * this.ratePpb) / 1_000_000_000n;
  }
}
