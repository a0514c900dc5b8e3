import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { pack, unpack } from 'msgpackr';
import { PVCLOCK } from '@ftvm/guest-abi';
import {
  ClockCompensator,
  ClockError,
  CLOCK_DEFAULTS,
  pvclockTimeNs,
  readPvclock,
  writePvclock,
  type ClockOptions,
  type ClockState,
} from '@ftvm/clock';

const MS = 1_000_000n;
const S = 1_000_000_000n;
const T0 = 1_700_000_000_000_000_000n; // host clocks read ns since the Unix epoch
const SEED = 0xc10c;

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ClockError);
    return (e as ClockError).code;
  }
  return undefined;
}

function abs(x: bigint): bigint {
  return x < 0n ? -x : x;
}

/** Runs `n` epochs of `epochNs` running time followed by a `pauseNs` pause, ticking at each epoch end. */
function runEpochs(c: ClockCompensator, h: bigint, n: number, epochNs: bigint, pauseNs: bigint): bigint {
  for (let i = 0; i < n; i++) {
    h += epochNs;
    c.tick(h);
    if (pauseNs > 0n) {
      c.pause(h);
      h += pauseNs;
      c.resume(h);
    }
  }
  return h;
}

describe('ClockCompensator options', () => {
  const bad: Array<[ClockOptions, string]> = [
    [{ mode: 'warp' as never }, 'mode'],
    [{ tscHz: 1000 }, 'tscHz'],
    [{ tscHz: 1.5e9 + 0.5 }, 'tscHz'],
    [{ maxSlewPpm: 0 }, 'maxSlewPpm'],
    [{ maxSlewPpm: 600_000 }, 'maxSlewPpm'],
    [{ stepThresholdMs: -1 }, 'stepThresholdMs'],
    [{ slewHorizonMs: 0 }, 'slewHorizonMs'],
    [{ initialGuestNs: -1n }, 'initialGuestNs'],
  ];
  it.each(bad)('rejects %o with FTVM_ERR_CLOCK_OPTION naming %s', (opts, name) => {
    let err: unknown;
    try {
      new ClockCompensator(T0, opts);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ClockError);
    expect((err as ClockError).code).toBe('FTVM_ERR_CLOCK_OPTION');
    expect((err as ClockError).message).toContain(name);
  });

  it('defaults to slew at 50000 ppm, 1000 ms step threshold, 50 ms horizon, 1 GHz TSC', () => {
    const c = new ClockCompensator(T0);
    expect([c.mode, c.maxSlewPpm, c.stepThresholdMs, c.slewHorizonMs, c.tscHz]).toEqual(['slew', 50_000, 1000, 50, 1e9]);
    expect(CLOCK_DEFAULTS.mode).toBe('slew');
  });
});

describe('ClockCompensator basics', () => {
  it('boots at initialGuestNs and follows host time 1:1 with zero drift', () => {
    const c = new ClockCompensator(T0, { initialGuestNs: 5n * S });
    expect(c.guestNowNs(T0)).toBe(5n * S);
    expect(c.guestNowNs(T0 + 1234n * MS)).toBe(5n * S + 1234n * MS);
    expect(c.driftNs(T0 + 1234n * MS)).toBe(0n);
    expect(c.tscAt(T0 + 7n)).toBe(7n);
  });

  it('reports fields as changed once after each update', () => {
    const c = new ClockCompensator(T0, { mode: 'freeze' });
    expect(c.fields(T0).changed).toBe(true);
    expect(c.fields(T0).changed).toBe(false);
    c.tick(T0 + MS);
    expect(c.fields(T0 + MS).changed).toBe(false);
    c.pause(T0 + 2n * MS);
    const paused = c.fields(T0 + 2n * MS);
    expect(paused.changed).toBe(true);
    expect(paused.fields.mul).toBe(0);
    expect(paused.fields.flags).toBe(PVCLOCK.FLAG_TSC_STABLE | PVCLOCK.FLAG_GUEST_STOPPED);
  });

  it('exposes the 1 GHz TSC as host time plus an offset that restore moves forward', () => {
    const c = new ClockCompensator(T0);
    expect(c.tscOffset()).toBe(-T0);
    const r = ClockCompensator.restore(c.snapshot(T0 + 5n * S), T0 + 7n * S);
    expect(T0 + 9n * S + r.tscOffset()).toBe(r.tscAt(T0 + 9n * S));
    expect(r.tscAt(T0 + 7n * S)).toBe(7n * S);
    expect(code(() => new ClockCompensator(T0, { tscHz: 2e9 }).tscOffset())).toBe('FTVM_ERR_CLOCK_STATE');
  });

  it('freezes guest time while paused and keeps the TSC running', () => {
    const c = new ClockCompensator(T0, { mode: 'step' });
    c.pause(T0 + 10n * MS);
    expect(c.guestNowNs(T0 + 500n * MS)).toBe(10n * MS);
    expect(c.tscAt(T0 + 500n * MS)).toBe(500n * MS);
  });

  it('refuses host time going backwards and invalid transitions with coded errors', () => {
    const c = new ClockCompensator(T0);
    c.tick(T0 + 10n);
    expect(code(() => c.tick(T0 + 9n))).toBe('FTVM_ERR_CLOCK_HOST_BACKWARDS');
    expect(code(() => c.guestNowNs(T0))).toBe('FTVM_ERR_CLOCK_HOST_BACKWARDS');
    expect(code(() => c.resume(T0 + 20n))).toBe('FTVM_ERR_CLOCK_STATE');
    c.pause(T0 + 30n);
    expect(code(() => c.pause(T0 + 40n))).toBe('FTVM_ERR_CLOCK_STATE');
  });

  it('gives the earliest host time at which a guest deadline is reached', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1_000_000_000, 2_500_000_000, 3_000_000_007, 100_000_000),
        fc.bigInt({ min: 1n, max: 10n * S }),
        fc.bigInt({ min: 0n, max: 5n * MS }),
        (tscHz, ahead, pauseNs) => {
          const c = new ClockCompensator(T0, { tscHz, mode: 'slew' });
          c.pause(T0 + 10n * MS);
          c.resume(T0 + 10n * MS + pauseNs); // leaves a lag, so the guest is slewing fast
          const now = T0 + 10n * MS + pauseNs;
          const deadline = c.guestNowNs(now) + ahead;
          const h = c.hostTimeAt(deadline)!;
          expect(c.guestNowNs(h) >= deadline).toBe(true);
          expect(c.guestNowNs(h - 1n) < deadline).toBe(true);
        },
      ),
      { seed: SEED, numRuns: 200 },
    );
  });
});

describe('freeze mode', () => {
  it('drifts by exactly the summed pause time (1 GHz TSC)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ run: fc.bigInt({ min: 0n, max: S }), pause: fc.bigInt({ min: 0n, max: 2n * S }) }), { maxLength: 40 }),
        (epochs) => {
          const c = new ClockCompensator(T0, { mode: 'freeze' });
          let h = T0;
          let paused = 0n;
          for (const e of epochs) {
            h += e.run;
            c.tick(h);
            c.pause(h);
            h += e.pause;
            paused += e.pause;
            c.resume(h);
          }
          expect(c.driftNs(h)).toBe(-paused);
          expect(c.stats(h).pausedNs).toBe(paused);
          expect(c.stats(h).steps).toBe(0);
        },
      ),
      { seed: SEED, numRuns: 200 },
    );
  });

  it('drifts by the summed pause time within 1 ns per pause at a 3 GHz TSC', () => {
    const c = new ClockCompensator(T0, { mode: 'freeze', tscHz: 3_000_000_000 });
    const h = runEpochs(c, T0, 100, 25n * MS, 777_777n);
    expect(abs(c.driftNs(h) + 100n * 777_777n) <= 100n + 2n).toBe(true);
  });
});

describe('step mode', () => {
  it('sets guest time to the reference on resume: zero drift, forward jumps only', () => {
    const c = new ClockCompensator(T0, { mode: 'step' });
    let h = T0;
    for (let i = 0; i < 50; i++) {
      h += 25n * MS;
      c.pause(h);
      const before = c.guestNowNs(h);
      h += BigInt(i) * 100_000n;
      c.resume(h);
      expect(c.guestNowNs(h) >= before).toBe(true);
      expect(c.driftNs(h)).toBe(0n);
    }
    expect(c.stats(h).steps).toBe(49); // the first pause lasted 0 ns
  });

  it('converges to |drift| <= 100 us at a TSC frequency with an inexact scale', () => {
    const c = new ClockCompensator(T0, { mode: 'step', tscHz: 2_999_999_999 });
    const h = runEpochs(c, T0, 400, 25n * MS, 500_000n);
    expect(abs(c.driftNs(h)) <= 100_000n).toBe(true);
  });
});

describe('slew mode', () => {
  it('absorbs a pause lag without a jump and converges to |drift| <= 100 us', () => {
    const c = new ClockCompensator(T0, { mode: 'slew' });
    c.pause(T0 + 100n * MS);
    c.resume(T0 + 130n * MS);
    expect(c.guestNowNs(T0 + 130n * MS)).toBe(100n * MS); // no jump on resume
    expect(c.driftNs(T0 + 130n * MS)).toBe(-30n * MS);
    let h = T0 + 130n * MS;
    for (let i = 0; i < 200; i++) {
      h += 10n * MS;
      c.tick(h);
    }
    expect(abs(c.driftNs(h)) <= 100_000n).toBe(true);
    expect(c.ratePpm()).toBe(0);
  });

  it('keeps up with periodic FT pauses below its capacity, then converges once they stop', () => {
    const c = new ClockCompensator(T0, { mode: 'slew' });
    // 0.5 ms paused per 25 ms epoch is 2 % of the time, under the 5 % default slew limit.
    let h = runEpochs(c, T0, 400, 25n * MS, 500_000n);
    expect(c.stats(h).steps).toBe(0);
    expect(abs(c.driftNs(h)) <= 2n * MS).toBe(true);
    h = runEpochs(c, h, 100, 25n * MS, 0n);
    expect(abs(c.driftNs(h)) <= 100_000n).toBe(true);
  });

  it('never changes the rate of guest time by more than maxSlewPpm, and never runs it backwards', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 100, max: 500_000 }),
        fc.array(fc.record({ run: fc.bigInt({ min: 1n, max: 200n * MS }), pause: fc.bigInt({ min: 0n, max: 500n * MS }) }), { maxLength: 30 }),
        (maxSlewPpm, epochs) => {
          const c = new ClockCompensator(T0, { mode: 'slew', maxSlewPpm });
          let h = T0;
          for (const e of epochs) {
            // Sample inside the running interval: between two events the rate is constant.
            const g0 = c.guestNowNs(h);
            const mid = h + e.run / 2n;
            const g1 = c.guestNowNs(mid);
            const dh = mid - h;
            const dg = g1 - g0;
            expect(dg >= 0n).toBe(true);
            const bound = (dh * BigInt(Math.ceil(maxSlewPpm * 1000))) / S + 2n; // +2 ns: floors in tsc and scale
            expect(abs(dg - dh) <= bound).toBe(true);
            h += e.run;
            c.tick(h);
            c.pause(h);
            h += e.pause;
            c.resume(h);
          }
        },
      ),
      { seed: SEED, numRuns: 200 },
    );
  });

  it('steps forward only when the lag passes stepThresholdMs', () => {
    const c = new ClockCompensator(T0, { mode: 'slew', stepThresholdMs: 1000 });
    c.pause(T0);
    c.resume(T0 + 900n * MS);
    expect(c.stats(T0 + 900n * MS).steps).toBe(0);
    expect(c.guestNowNs(T0 + 900n * MS)).toBe(0n);
    c.pause(T0 + 900n * MS);
    c.resume(T0 + 2000n * MS);
    expect(c.stats(T0 + 2000n * MS).steps).toBe(1);
    expect(c.driftNs(T0 + 2000n * MS)).toBe(0n);
  });
});

describe('snapshot and restore', () => {
  it('survives msgpack encoding', () => {
    const c = new ClockCompensator(T0, { mode: 'step', tscHz: 2_500_000_000 });
    c.pause(T0 + 3n * S);
    const state = c.snapshot(T0 + 3n * S);
    const decoded = unpack(pack(state)) as ClockState;
    const a = ClockCompensator.restore(state, T0 + 4n * S);
    const b = ClockCompensator.restore(decoded, T0 + 4n * S);
    a.resume(T0 + 4n * S);
    b.resume(T0 + 4n * S);
    expect(b.guestNowNs(T0 + 5n * S)).toBe(a.guestNowNs(T0 + 5n * S));
    expect(b.tscAt(T0 + 5n * S)).toBe(a.tscAt(T0 + 5n * S));
  });

  it('continues guest time and TSC from the checkpoint plus elapsed wall time (step mode)', () => {
    const c = new ClockCompensator(T0, { mode: 'step' });
    c.pause(T0 + 10n * S);
    const state = c.snapshot(T0 + 10n * S);
    const r = ClockCompensator.restore(state, T0 + 12n * S);
    expect(r.isPaused()).toBe(true);
    r.resume(T0 + 12n * S);
    expect(r.guestNowNs(T0 + 12n * S)).toBe(12n * S);
    expect(r.tscAt(T0 + 12n * S)).toBe(12n * S);
    expect(r.driftNs(T0 + 13n * S)).toBe(0n);
  });

  it('loses the failover gap in freeze mode, as QEMU does', () => {
    const c = new ClockCompensator(T0, { mode: 'freeze' });
    const state = c.snapshot(T0 + 10n * S);
    const r = ClockCompensator.restore(state, T0 + 12n * S);
    r.resume(T0 + 12n * S);
    expect(r.guestNowNs(T0 + 12n * S)).toBe(10n * S);
    expect(r.driftNs(T0 + 12n * S)).toBe(-2n * S);
  });

  it('on a host whose clock is behind, keeps guest time and TSC from going back and slews slower until it meets the reference', () => {
    const c = new ClockCompensator(T0, { mode: 'slew' });
    c.pause(T0 + 10n * S);
    const state = c.snapshot(T0 + 10n * S);
    // The secondary's clock is 3 s behind: 1 s after the checkpoint it reads 2 s before it.
    const h = T0 + 8n * S;
    const r = ClockCompensator.restore(state, h);
    r.resume(h);
    expect(r.guestNowNs(h)).toBe(10n * S);
    expect(r.tscAt(h)).toBe(10n * S);
    expect(r.driftNs(h)).toBe(2n * S); // ahead of this host's reference
    expect(r.ratePpm()).toBe(-50_000);
    let last = r.guestNowNs(h);
    let t = h;
    for (let i = 0; i < 5000; i++) {
      t += 10n * MS;
      const g = r.guestNowNs(t);
      expect(g >= last).toBe(true);
      last = g;
      r.tick(t);
    }
    // 2 s ahead at 5 % takes 40 s; 50 s in, it has met the reference.
    expect(abs(r.driftNs(t)) <= 100_000n).toBe(true);
    expect(r.stats(t).steps).toBe(0);
  });

  it('lets this host override the mode but not the TSC frequency', () => {
    const state = new ClockCompensator(T0, { mode: 'freeze' }).snapshot(T0);
    expect(ClockCompensator.restore(state, T0, { mode: 'step' }).mode).toBe('step');
    expect(code(() => ClockCompensator.restore(state, T0, { tscHz: 2e9 }))).toBe('FTVM_ERR_CLOCK_OPTION');
  });

  it('rejects a malformed state with FTVM_ERR_CLOCK_SNAPSHOT_INVALID', () => {
    const state = new ClockCompensator(T0).snapshot(T0);
    expect(code(() => ClockCompensator.restore({ ...state, v: 2 } as never, T0))).toBe('FTVM_ERR_CLOCK_SNAPSHOT_INVALID');
    expect(code(() => ClockCompensator.restore({ ...state, guestNs: 'soon' } as never, T0))).toBe('FTVM_ERR_CLOCK_SNAPSHOT_INVALID');
    expect(code(() => ClockCompensator.restore({ ...state, mode: 'warp' } as never, T0))).toBe('FTVM_ERR_CLOCK_SNAPSHOT_INVALID');
    expect(code(() => ClockCompensator.restore(null as never, T0))).toBe('FTVM_ERR_CLOCK_SNAPSHOT_INVALID');
  });

  it('accepts bigint fields encoded as numbers or decimal strings', () => {
    const c = new ClockCompensator(T0, { mode: 'step' });
    const state = c.snapshot(T0 + S);
    const loose = { ...state, hostNs: String(state.hostNs), guestNs: Number(state.guestNs) } as unknown as ClockState;
    const r = ClockCompensator.restore(loose, T0 + 2n * S);
    r.resume(T0 + 2n * S);
    expect(r.guestNowNs(T0 + 2n * S)).toBe(2n * S);
  });
});
