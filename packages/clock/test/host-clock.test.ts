import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ClockError, ManualClock, SkewedClock, createSystemHostClock, systemHostClock } from '@ftvm/clock';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ClockError);
    return (e as ClockError).code;
  }
  return undefined;
}

describe('ManualClock', () => {
  it('moves only when set or advanced', () => {
    const c = new ManualClock(10n);
    expect(c.nowNs()).toBe(10n);
    c.advance(5n);
    expect(c.nowNs()).toBe(15n);
    c.set(100n);
    expect(c.nowNs()).toBe(100n);
  });

  it('refuses to go backwards with FTVM_ERR_CLOCK_HOST_BACKWARDS', () => {
    const c = new ManualClock(100n);
    expect(code(() => c.set(99n))).toBe('FTVM_ERR_CLOCK_HOST_BACKWARDS');
    expect(code(() => c.advance(-1n))).toBe('FTVM_ERR_CLOCK_OPTION');
    expect(c.nowNs()).toBe(100n);
  });
});

describe('SkewedClock', () => {
  it('adds a constant offset', () => {
    const base = new ManualClock(1_000n);
    const behind = new SkewedClock(base, { offsetNs: -5_000_000_000n });
    expect(behind.nowNs()).toBe(1_000n - 5_000_000_000n);
  });

  it('runs fast by ratePpm from its anchor', () => {
    const base = new ManualClock(1_000_000n);
    const fast = new SkewedClock(base, { ratePpm: 100 });
    base.advance(1_000_000_000n);
    expect(fast.nowNs()).toBe(1_000_000n + 1_000_000_000n + 100_000n);
    const slow = new SkewedClock(base, { ratePpm: -100, anchorNs: 0n });
    expect(slow.nowNs()).toBe(base.nowNs() - base.nowNs() / 10_000n);
  });

  it('never decreases while its base does not, for any offset and rate', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: -5_000_000_000n, max: 5_000_000_000n }),
        fc.double({ min: -999_999, max: 999_999, noNaN: true }),
        fc.array(fc.bigInt({ min: 0n, max: 10_000_000n }), { maxLength: 50 }),
        (offsetNs, ratePpm, steps) => {
          const base = new ManualClock(1_700_000_000_000_000_000n);
          const c = new SkewedClock(base, { offsetNs, ratePpm, anchorNs: 1_600_000_000_000_000_000n });
          let last = c.nowNs();
          for (const d of steps) {
            base.advance(d);
            const now = c.nowNs();
            expect(now >= last).toBe(true);
            last = now;
          }
        },
      ),
      { seed: 42, numRuns: 200 },
    );
  });

  it('rejects a rate that would run the clock backwards', () => {
    expect(code(() => new SkewedClock(new ManualClock(), { ratePpm: -1e6 }))).toBe('FTVM_ERR_CLOCK_OPTION');
    expect(code(() => new SkewedClock(new ManualClock(), { ratePpm: Number.NaN }))).toBe('FTVM_ERR_CLOCK_OPTION');
  });
});

describe('systemHostClock', () => {
  it('reads ns since the Unix epoch, close to Date.now(), and never decreases', () => {
    const a = systemHostClock.nowNs();
    const wall = BigInt(Date.now()) * 1_000_000n;
    const diff = a > wall ? a - wall : wall - a;
    expect(diff < 50_000_000n).toBe(true);
    let last = a;
    for (let i = 0; i < 1000; i++) {
      const now = systemHostClock.nowNs();
      expect(now >= last).toBe(true);
      last = now;
    }
  });

  it('agrees with a clock anchored later in the same process to within 1 ms', () => {
    const other = createSystemHostClock();
    const a = systemHostClock.nowNs();
    const b = other.nowNs();
    const diff = a > b ? a - b : b - a;
    expect(diff < 1_000_000n).toBe(true);
  });
});
