import { describe, it, expect } from 'vitest';
import { GuestHarness } from './harness.js';

const MS = 1_000_000;
const C = 5;

function say(h: GuestHarness, line: string): string {
  h.data(C, line + '\n');
  return h.text(C);
}

function boot(opts?: ConstructorParameters<typeof GuestHarness>[1]): GuestHarness {
  const h = GuestHarness.load('clockprobe', opts).init();
  h.open(C);
  return h;
}

/** The kvmclock formula in exact integer arithmetic. */
function pvtime(tsc: bigint, tscTs: bigint, sys: bigint, mul: number, shift: number): bigint {
  let delta = tsc - tscTs;
  if (delta < 0n) delta = 0n;
  delta = shift >= 0 ? (delta << BigInt(shift)) & ((1n << 64n) - 1n) : delta >> BigInt(-shift);
  return (sys + ((delta * BigInt(mul)) >> 32n)) & ((1n << 64n) - 1n);
}

describe('clockprobe guest and the SDK clock', () => {
  it('registers a 32-byte-aligned pvclock page above the reserved 1 MiB', () => {
    const h = boot();
    expect(h.pvclockPtr).toBeGreaterThanOrEqual(1 << 20);
    expect(h.pvclockPtr % 32).toBe(0);
  });

  it('reads 0 before the host wrote the pvclock page', () => {
    const h = GuestHarness.load('clockprobe');
    // No ftvm_init: the page was never registered, so it is still all zero.
    expect(say(h, 'TIME')).toBe('0\n');
  });

  it('reports guest time that follows the TSC', () => {
    const h = boot({ bootNs: 5_000_000_000n });
    expect(say(h, 'TIME')).toBe('5000000000\n');
    h.advance(1234567);
    expect(say(h, 'TIME')).toBe('5001234567\n');
  });

  it('reports increasing time on a real clock', () => {
    const h = boot({ clock: 'real' });
    const a = BigInt(say(h, 'TIME').trim());
    const t0 = Date.now();
    while (Date.now() - t0 < 5) {
      /* let real time pass */
    }
    const b = BigInt(say(h, 'TIME').trim());
    expect(b).toBeGreaterThan(a + 4_000_000n);
  });

  it('applies mul and shift without overflow for large TSC deltas', () => {
    const h = boot();
    const cases: [bigint, bigint, number, number][] = [
      [1n << 40n, 777n, 0xffffffff, 1],
      [(1n << 50n) + 12345n, 10n ** 12n, 2 ** 31, -3],
      [123456789012n, 42n, 3_000_000_000, 0],
      [(1n << 62n) + 999n, 0n, 0x80000000, -8],
    ];
    for (const [delta, sys, mul, shift] of cases) {
      const tscTs = h.tsc();
      h.writePvclock(tscTs, sys, mul, shift);
      h.advance(delta);
      expect(BigInt(say(h, 'TIME').trim()), `delta ${delta} mul ${mul} shift ${shift}`).toBe(pvtime(h.tsc(), tscTs, sys, mul, shift));
    }
  });

  it('never goes below system_time when the TSC is behind tsc_timestamp', () => {
    const h = boot();
    h.writePvclock(h.tsc() + 1_000_000n, 9_000n);
    expect(say(h, 'TIME')).toBe('9000\n');
  });

  it('traps with a logged reason instead of spinning on a pvclock stuck mid-update', () => {
    const h = boot();
    const dv = new DataView(h.mem().buffer);
    dv.setUint32(h.pvclockPtr, 7, true);
    expect(() => say(h, 'TIME')).toThrow(WebAssembly.RuntimeError);
    expect(h.logs.at(-1)?.text).toContain('pvclock version never settled');
    expect(h.logs.at(-1)?.level).toBe(0);
  });

  it('ticks on a fixed grid and reports lateness in STATS', () => {
    const h = boot();
    expect(say(h, 'TICK 10')).toBe('OK\n');
    expect(h.runFor(1000 * MS)).toBe(100);
    const s = say(h, 'STATS');
    expect(s).toMatch(/^ticks=100 last_now=\d+ period_ms=10 late_max_ns=0 late_last_ns=0 missed=0\n$/);
    // Late delivery: the tick reports its lateness, the grid does not shift.
    h.advance(15 * MS);
    h.fireTimer();
    expect(say(h, 'STATS')).toMatch(/ticks=101 .* late_max_ns=5000000 late_last_ns=5000000 missed=0/);
    h.advance(3 * MS);
    expect(h.fireTimer()).toBe(false);
    h.advance(2 * MS);
    expect(h.fireTimer()).toBe(true);
    expect(say(h, 'TICK 0')).toBe('OK\n');
    expect(h.timerDeadline).toBe(0n);
  });

  it('counts ticks missed during a long pause', () => {
    const h = boot();
    say(h, 'TICK 10');
    h.advance(1000 * MS);
    h.fireTimer();
    expect(say(h, 'STATS')).toMatch(/ticks=1 .* missed=99\n$/);
  });

  it('answers unknown lines with ERR', () => {
    const h = boot();
    expect(say(h, 'WHAT')).toBe('ERR unknown command (TIME, TICK <ms>, STATS)\n');
    expect(say(h, 'TICK soon')).toMatch(/^ERR TICK takes a period in ms/);
  });
});
