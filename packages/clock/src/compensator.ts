/**
 * The time-drift compensator: owns the guest's pvclock fields and decides how guest time
 * relates to the reference across pauses, checkpoints and failover. Pure: every event
 * takes the host time (ns, from a HostClock) as an argument.
 *
 * Model (all times ns, bigint):
 * - Virtual TSC: tsc(h) = tscBase + floor((h - hostBase) * tscHz / 1e9). It runs during
 *   pauses and, after a restore, continues from the checkpointed value (never backwards).
 * - Guest time G(h) = pvclockTimeNs(fields, tsc(h)). The fields are the single source of
 *   truth: what the guest reads is exactly what guestNowNs() reports.
 * - Reference R(h) = refBase + (h - refHost): the time the guest should show, i.e. its
 *   boot time plus wall time elapsed since, continuous across pauses and failover.
 * - Drift = G - R (negative: the guest lags).
 *
 * While paused, the fields are frozen (mul = 0, GUEST_STOPPED set): guest time stops, as
 * under QEMU's stop/cont. Every change of rate re-anchors the fields at the current
 * (tsc, G), so G is continuous; only a step (forward only) makes it jump.
 *
 * Publication contract: fields returned by fields(h) are valid from host time h on. The
 * VMM must write them into the guest page before the guest can read the clock at a later
 * TSC, i.e. call pause/resume/tick/fields while the vCPU is stopped (at the epoch
 * boundary) and write the result before resuming it. Otherwise a guest reading the old,
 * faster line after h could see time go back once the new, slower one is published.
 */
import { PVCLOCK } from '@ftvm/guest-abi';
import { clockError } from './errors.js';
import { pvclockTimeNs, timeScale, type PvclockFields, type TimeScale } from './pvclock.js';

export type ClockMode = 'freeze' | 'step' | 'slew';
export const CLOCK_MODES: readonly ClockMode[] = ['freeze', 'step', 'slew'];

export interface ClockOptions {
  /** Default 'slew'. */
  mode?: ClockMode;
  /** Virtual TSC frequency, ticks/s. Integer in [1e6, 1e11]. Default 1e9 (1 tick = 1 ns, exact scale). */
  tscHz?: number;
  /**
   * Largest rate change used to absorb a lag, ppm, in (0, 500000]. Default 50000 (5 %).
   * Why that high: an FT primary pauses at every epoch end (e.g. 0.5 ms per 25 ms = 2 %
   * of the time); slewing keeps up only while the paused fraction of time stays below
   * maxSlewPpm / 1e6, otherwise the lag grows until it crosses stepThresholdMs.
   * At 50000 ppm a 1 ms lag is absorbed in 20 ms. (chrony's default limit is 83333 ppm.)
   */
  maxSlewPpm?: number;
  /** slew mode: a lag (guest behind) larger than this, ms, is stepped instead. >= 0. Default 1000. */
  stepThresholdMs?: number;
  /**
   * Shortest time over which a lag is scheduled to be absorbed, ms. The rate is chosen to
   * absorb the lag over max(slewHorizonMs, last tick interval), so ticks arriving at that
   * interval converge without overshoot. > 0. Default 50.
   */
  slewHorizonMs?: number;
  /** Guest time at construction, ns (kvmclock system_time counts from guest boot). Default 0. */
  initialGuestNs?: bigint;
}

interface ResolvedOptions {
  mode: ClockMode;
  tscHz: number;
  maxSlewPpm: number;
  stepThresholdMs: number;
  slewHorizonMs: number;
}

export const CLOCK_DEFAULTS: Readonly<ResolvedOptions> = Object.freeze({
  mode: 'slew',
  tscHz: 1_000_000_000,
  maxSlewPpm: 50_000,
  stepThresholdMs: 1000,
  slewHorizonMs: 50,
});

/** |lag| at or below this (ns) counts as converged: the rate goes back to exactly 1. */
export const SLEW_DEADBAND_NS = 1000n;

/**
 * The compensator's state as it travels in every checkpoint. Plain data (bigint, number,
 * string, boolean) so msgpackr encodes it; restore() also accepts integers as numbers or
 * decimal strings for the bigint fields.
 */
export interface ClockState {
  v: 1;
  mode: ClockMode;
  tscHz: number;
  maxSlewPpm: number;
  stepThresholdMs: number;
  slewHorizonMs: number;
  /** The capturing host's clock at capture, ns since the Unix epoch. */
  hostNs: bigint;
  /** Guest time at capture, ns. */
  guestNs: bigint;
  /** Reference at capture, ns. */
  referenceNs: bigint;
  /** Virtual TSC at capture, ticks. */
  tsc: bigint;
  /** Whether the vCPU was paused at capture (it normally is: capture happens at the epoch boundary). */
  paused: boolean;
  /** Slew rate in force at capture, parts per billion. */
  ratePpb: number;
  /** Interval between the last two control updates, ns (sets the slew horizon). */
  lastIntervalNs: bigint;
  /** The fields in force at capture. */
  fields: PvclockFields;
}

export interface ClockStats {
  mode: ClockMode;
  paused: boolean;
  /** Guest time minus reference, ns (negative: the guest lags). */
  driftNs: bigint;
  /** Current rate offset of guest time, ppm (0: runs at host rate). */
  ratePpm: number;
  /** Forward steps taken, and their total size (ns). */
  steps: number;
  steppedNs: bigint;
  /** Completed pauses and their total length (host ns). A restore counts as one pause. */
  pauses: number;
  pausedNs: bigint;
}

const NS_PER_S = 1_000_000_000n;
const NS_PER_MS = 1_000_000;

function optionError(message: string): Error {
  return clockError('FTVM_ERR_CLOCK_OPTION', message);
}

function resolveOptions(options: ClockOptions, base: Readonly<ResolvedOptions> = CLOCK_DEFAULTS): ResolvedOptions {
  if (options === null || typeof options !== 'object') throw optionError('options must be an object');
  const mode = options.mode ?? base.mode;
  if (!CLOCK_MODES.includes(mode)) throw optionError(`mode must be one of ${CLOCK_MODES.join(', ')}, got ${String(mode)}`);
  const tscHz = options.tscHz ?? base.tscHz;
  if (!Number.isSafeInteger(tscHz) || tscHz < 1e6 || tscHz > 1e11) {
    throw optionError(`tscHz must be an integer in [1e6, 1e11], got ${tscHz}`);
  }
  const maxSlewPpm = options.maxSlewPpm ?? base.maxSlewPpm;
  if (typeof maxSlewPpm !== 'number' || !Number.isFinite(maxSlewPpm) || maxSlewPpm <= 0 || maxSlewPpm > 500_000) {
    throw optionError(`maxSlewPpm must be a number in (0, 500000], got ${maxSlewPpm}`);
  }
  const stepThresholdMs = options.stepThresholdMs ?? base.stepThresholdMs;
  if (typeof stepThresholdMs !== 'number' || !Number.isFinite(stepThresholdMs) || stepThresholdMs < 0 || stepThresholdMs > 86_400_000) {
    throw optionError(`stepThresholdMs must be a number in [0, 86400000], got ${stepThresholdMs}`);
  }
  const slewHorizonMs = options.slewHorizonMs ?? base.slewHorizonMs;
  if (typeof slewHorizonMs !== 'number' || !Number.isFinite(slewHorizonMs) || slewHorizonMs <= 0 || slewHorizonMs > 3_600_000) {
    throw optionError(`slewHorizonMs must be a number in (0, 3600000], got ${slewHorizonMs}`);
  }
  return { mode, tscHz, maxSlewPpm, stepThresholdMs, slewHorizonMs };
}

function toBigInt(name: string, v: unknown): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
  if (typeof v === 'string' && /^-?\d{1,30}$/.test(v)) return BigInt(v);
  throw clockError('FTVM_ERR_CLOCK_SNAPSHOT_INVALID', `ClockState.${name} must be an integer, got ${String(v)}`);
}

function toNumber(name: string, v: unknown): number {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'bigint') return Number(v);
  throw clockError('FTVM_ERR_CLOCK_SNAPSHOT_INVALID', `ClockState.${name} must be a number, got ${String(v)}`);
}

function maxBig(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

export class ClockCompensator {
  readonly mode: ClockMode;
  readonly tscHz: number;
  readonly maxSlewPpm: number;
  readonly stepThresholdMs: number;
  readonly slewHorizonMs: number;

  private readonly tscHzBig: bigint;
  private readonly stepThresholdNs: bigint;
  private readonly slewHorizonNs: bigint;
  private readonly maxSlewPpb: number;
  private readonly unitScale: TimeScale;

  // tsc(h) = tscBase + floor((h - hostBase) * tscHz / 1e9)
  private hostBase = 0n;
  private tscBase = 0n;
  // R(h) = refBase + (h - refHost)
  private refBase = 0n;
  private refHost = 0n;

  private cur!: PvclockFields;
  private ratePpb = 0;
  private paused = false;
  private pausedAtHost = 0n;
  /** Latest host time any event was given; events and queries before it are refused. */
  private lastHost = 0n;
  /** Host time of the last control update while running (resume or tick), or null while paused. */
  private lastControlHost: bigint | null = null;
  private lastIntervalNs = 0n;
  private dirty = true;

  private steps = 0;
  private steppedNs = 0n;
  private pauses = 0;
  private pausedNs = 0n;

  /** A guest booting at host time `hostNs`: running, guest time initialGuestNs, TSC 0. */
  constructor(hostNs: bigint, options: ClockOptions = {}) {
    const o = resolveOptions(options);
    this.mode = o.mode;
    this.tscHz = o.tscHz;
    this.maxSlewPpm = o.maxSlewPpm;
    this.stepThresholdMs = o.stepThresholdMs;
    this.slewHorizonMs = o.slewHorizonMs;
    this.tscHzBig = BigInt(o.tscHz);
    this.stepThresholdNs = BigInt(Math.round(o.stepThresholdMs * NS_PER_MS));
    this.slewHorizonNs = BigInt(Math.max(1, Math.round(o.slewHorizonMs * NS_PER_MS)));
    this.maxSlewPpb = Math.round(o.maxSlewPpm * 1000);
    this.unitScale = timeScale(NS_PER_S, this.tscHzBig);

    if (typeof hostNs !== 'bigint') throw optionError(`hostNs must be a bigint, got ${typeof hostNs}`);
    const initialGuestNs = options.initialGuestNs ?? 0n;
    if (typeof initialGuestNs !== 'bigint' || initialGuestNs < 0n) {
      throw optionError(`initialGuestNs must be a bigint >= 0, got ${String(initialGuestNs)}`);
    }
    this.hostBase = hostNs;
    this.tscBase = 0n;
    this.refBase = initialGuestNs;
    this.refHost = hostNs;
    this.lastHost = hostNs;
    this.lastControlHost = hostNs;
    this.anchor(hostNs, initialGuestNs, 0, PVCLOCK.FLAG_TSC_STABLE);
  }

  /**
   * Continues a checkpointed clock on this host at host time `hostNs` (which may be skewed
   * against the capturing host). The result is paused; call resume() when the vCPU starts.
   *
   * Elapsed time since capture is measured as hostNs - state.hostNs, wrong by the skew
   * between the two hosts' clocks. The reference follows it (R = R_c + elapsed, on this
   * host's clock); guest time and TSC never go below their checkpointed values, so when
   * this host is behind, the guest starts ahead of the reference and slews slower until
   * they meet. What resume() does with the gap depends on the mode: freeze loses it,
   * step jumps to the reference, slew absorbs it (or steps past stepThresholdMs).
   * `options` overrides the checkpointed mode parameters (this host's configuration).
   */
  static restore(state: ClockState, hostNs: bigint, options: Omit<ClockOptions, 'initialGuestNs'> = {}): ClockCompensator {
    if (state === null || typeof state !== 'object') {
      throw clockError('FTVM_ERR_CLOCK_SNAPSHOT_INVALID', 'ClockState must be an object');
    }
    if (state.v !== 1) throw clockError('FTVM_ERR_CLOCK_SNAPSHOT_INVALID', `ClockState.v ${String(state.v)} is not supported (expected 1)`);
    if (typeof hostNs !== 'bigint') throw optionError(`hostNs must be a bigint, got ${typeof hostNs}`);
    let fromState: ResolvedOptions;
    try {
      fromState = resolveOptions({
        mode: state.mode,
        tscHz: toNumber('tscHz', state.tscHz),
        maxSlewPpm: toNumber('maxSlewPpm', state.maxSlewPpm),
        stepThresholdMs: toNumber('stepThresholdMs', state.stepThresholdMs),
        slewHorizonMs: toNumber('slewHorizonMs', state.slewHorizonMs),
      });
    } catch (e) {
      throw clockError('FTVM_ERR_CLOCK_SNAPSHOT_INVALID', `ClockState parameters invalid: ${(e as Error).message}`);
    }
    const o = resolveOptions(options, fromState);
    if (o.tscHz !== fromState.tscHz) {
      // The guest computed its own deadlines against the checkpointed TSC frequency.
      throw optionError(`tscHz ${o.tscHz} differs from the checkpointed ${fromState.tscHz}; it cannot change across restore`);
    }
    const capturedHost = toBigInt('hostNs', state.hostNs);
    const guestNs = toBigInt('guestNs', state.guestNs);
    const referenceNs = toBigInt('referenceNs', state.referenceNs);
    const tsc = toBigInt('tsc', state.tsc);
    const lastIntervalNs = toBigInt('lastIntervalNs', state.lastIntervalNs);
    if (guestNs < 0n || tsc < 0n || lastIntervalNs < 0n) {
      throw clockError('FTVM_ERR_CLOCK_SNAPSHOT_INVALID', 'ClockState guestNs, tsc and lastIntervalNs must be >= 0');
    }

    const c = new ClockCompensator(hostNs, { ...o, initialGuestNs: guestNs });
    const elapsed = hostNs - capturedHost;
    const forward = maxBig(0n, elapsed);
    c.tscBase = tsc + (forward * c.tscHzBig) / NS_PER_S;
    c.hostBase = hostNs;
    c.refBase = referenceNs;
    c.refHost = capturedHost;
    c.lastIntervalNs = lastIntervalNs;
    c.ratePpb = 0;
    // Paused since capture: frozen at the checkpointed guest time.
    c.paused = true;
    c.pausedAtHost = hostNs - forward;
    c.lastControlHost = null;
    c.cur = c.frozenFields(hostNs, guestNs);
    c.dirty = true;
    return c;
  }

  /** The virtual TSC at host time h (what the guest's rdtsc() returns). */
  tscAt(hostNs: bigint): bigint {
    this.checkQuery(hostNs);
    return this.tscBase + ((hostNs - this.hostBase) * this.tscHzBig) / NS_PER_S;
  }

  /**
   * For a 1 GHz TSC, the offset with tsc(h) = h + offset: what a vCPU worker that computes
   * rdtsc() from its own host clock needs. It changes only at construction and restore.
   * FTVM_ERR_CLOCK_STATE for other frequencies (use tscAt()).
   */
  tscOffset(): bigint {
    if (this.tscHz !== 1_000_000_000) {
      throw clockError('FTVM_ERR_CLOCK_STATE', `tscOffset() needs tscHz 1e9 (got ${this.tscHz}); use tscAt(h)`);
    }
    return this.tscBase - this.hostBase;
  }

  guestNowNs(hostNs: bigint): bigint {
    return pvclockTimeNs(this.cur, this.tscAt(hostNs));
  }

  referenceNs(hostNs: bigint): bigint {
    this.checkQuery(hostNs);
    return this.refBase + (hostNs - this.refHost);
  }

  /** Guest time minus reference, ns (negative: the guest lags). */
  driftNs(hostNs: bigint): bigint {
    return this.guestNowNs(hostNs) - this.referenceNs(hostNs);
  }

  isPaused(): boolean {
    return this.paused;
  }

  /** Current slope of guest time relative to host time, ppm (0 while running at host rate). */
  ratePpm(): number {
    return this.ratePpb / 1000;
  }

  /**
   * The fields to publish (valid from host time h on) and whether they changed since the
   * last call; the VMM writes them with writePvclock() when changed.
   */
  fields(hostNs: bigint): { fields: PvclockFields; changed: boolean } {
    this.checkQuery(hostNs);
    const changed = this.dirty;
    this.dirty = false;
    return { fields: { ...this.cur }, changed };
  }

  /** The vCPU stopped at host time h: guest time freezes. */
  pause(hostNs: bigint): void {
    this.checkEvent(hostNs);
    if (this.paused) throw clockError('FTVM_ERR_CLOCK_STATE', 'pause() while already paused');
    const g = this.guestNowNs(hostNs);
    this.paused = true;
    this.pausedAtHost = hostNs;
    this.lastControlHost = null;
    this.ratePpb = 0;
    this.cur = this.frozenFields(hostNs, g);
    this.dirty = true;
  }

  /** The vCPU restarts at host time h: the mode decides what happens to the lag the pause made. */
  resume(hostNs: bigint): void {
    this.checkEvent(hostNs);
    if (!this.paused) throw clockError('FTVM_ERR_CLOCK_STATE', 'resume() while running');
    this.paused = false;
    this.pauses++;
    this.pausedNs += hostNs - this.pausedAtHost;
    this.lastControlHost = hostNs;
    const frozen = this.cur.systemTime;
    this.control(hostNs, frozen, PVCLOCK.FLAG_TSC_STABLE | PVCLOCK.FLAG_GUEST_STOPPED, true);
  }

  /** Periodic update (e.g. each epoch boundary): advances slewing. No effect while paused or in freeze mode. */
  tick(hostNs: bigint): void {
    this.checkEvent(hostNs);
    if (this.paused || this.lastControlHost === null) return;
    this.lastIntervalNs = hostNs - this.lastControlHost;
    this.lastControlHost = hostNs;
    this.control(hostNs, this.guestNowNs(hostNs), PVCLOCK.FLAG_TSC_STABLE, false);
  }

  /** The state to put in a checkpoint taken at host time h. */
  snapshot(hostNs: bigint): ClockState {
    this.checkQuery(hostNs);
    return {
      v: 1,
      mode: this.mode,
      tscHz: this.tscHz,
      maxSlewPpm: this.maxSlewPpm,
      stepThresholdMs: this.stepThresholdMs,
      slewHorizonMs: this.slewHorizonMs,
      hostNs,
      guestNs: this.guestNowNs(hostNs),
      referenceNs: this.referenceNs(hostNs),
      tsc: this.tscAt(hostNs),
      paused: this.paused,
      ratePpb: this.ratePpb,
      lastIntervalNs: this.lastIntervalNs,
      fields: { ...this.cur },
    };
  }

  stats(hostNs: bigint): ClockStats {
    return {
      mode: this.mode,
      paused: this.paused,
      driftNs: this.driftNs(hostNs),
      ratePpm: this.ratePpm(),
      steps: this.steps,
      steppedNs: this.steppedNs,
      pauses: this.pauses,
      pausedNs: this.pausedNs,
    };
  }

  /**
   * The earliest host time (>= the latest event) at which guest time reaches `guestNs`
   * under the fields in force (for guest timers), or null while paused.
   */
  hostTimeAt(guestNs: bigint): bigint | null {
    if (this.paused || this.cur.mul === 0) return null;
    const f = this.cur;
    const need = guestNs - f.systemTime;
    if (need <= 0n) return this.lastHost;
    const mul = BigInt(f.mul);
    const scaled = ((need << 32n) + mul - 1n) / mul;
    const ticks = f.shift >= 0 ? (scaled + (1n << BigInt(f.shift)) - 1n) >> BigInt(f.shift) : scaled << BigInt(-f.shift);
    const tsc = f.tscTimestamp + ticks;
    const num = (tsc - this.tscBase) * NS_PER_S;
    const h = this.hostBase + (num + this.tscHzBig - 1n) / this.tscHzBig;
    return maxBig(h, this.lastHost);
  }

  // -- internals --

  /** Applies the mode's rule at host time h, the guest showing `g`. */
  private control(hostNs: bigint, g: bigint, flags: number, forceAnchor: boolean): void {
    const lag = this.referenceNs(hostNs) - g;
    let target = g;
    let ratePpb = 0;
    switch (this.mode) {
      case 'freeze':
        break;
      case 'step':
        if (lag > 0n && (forceAnchor || lag > SLEW_DEADBAND_NS)) target = g + lag;
        else ratePpb = this.slewRatePpb(lag);
        break;
      case 'slew':
        if (lag > this.stepThresholdNs) target = g + lag;
        else ratePpb = this.slewRatePpb(lag);
        break;
    }
    if (target !== g) {
      this.steps++;
      this.steppedNs += target - g;
    }
    if (forceAnchor || target !== g || ratePpb !== this.ratePpb) this.anchor(hostNs, target, ratePpb, flags);
  }

  /**
   * Proportional slew: absorb `lag` over max(horizon, last tick interval), clamped to
   * +-maxSlewPpm. Positive lag (guest behind) speeds the guest up; negative slows it down,
   * never below 1 - maxSlewPpm/1e6 > 0, so guest time never runs backwards.
   */
  private slewRatePpb(lag: bigint): number {
    const abs = lag < 0n ? -lag : lag;
    if (abs <= SLEW_DEADBAND_NS) return 0;
    const horizon = maxBig(this.slewHorizonNs, this.lastIntervalNs);
    const ppb = (lag * NS_PER_S) / horizon;
    const max = BigInt(this.maxSlewPpb);
    return Number(ppb > max ? max : ppb < -max ? -max : ppb);
  }

  private anchor(hostNs: bigint, guestNs: bigint, ratePpb: number, flags: number): void {
    const scale = ratePpb === 0 ? this.unitScale : timeScale(NS_PER_S + BigInt(ratePpb), this.tscHzBig);
    this.ratePpb = ratePpb;
    this.cur = { tscTimestamp: this.tscAt(hostNs), systemTime: guestNs, mul: scale.mul, shift: scale.shift, flags };
    this.dirty = true;
  }

  private frozenFields(hostNs: bigint, guestNs: bigint): PvclockFields {
    return {
      tscTimestamp: this.tscAt(hostNs),
      systemTime: guestNs,
      mul: 0,
      shift: 0,
      flags: PVCLOCK.FLAG_TSC_STABLE | PVCLOCK.FLAG_GUEST_STOPPED,
    };
  }

  private checkQuery(hostNs: bigint): void {
    if (typeof hostNs !== 'bigint') throw optionError(`hostNs must be a bigint, got ${typeof hostNs}`);
    if (hostNs < this.lastHost) {
      throw clockError('FTVM_ERR_CLOCK_HOST_BACKWARDS', `host time ${hostNs} is before the last event's ${this.lastHost}`);
    }
  }

  private checkEvent(hostNs: bigint): void {
    this.checkQuery(hostNs);
    this.lastHost = hostNs;
  }
}
