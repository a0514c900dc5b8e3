import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PVCLOCK } from '@ftvm/guest-abi';
import {
  ClockError,
  loadPvclockFields,
  pvclockReadAttempt,
  pvclockTimeNs,
  pvclockWriteSteps,
  readPvclock,
  scaleFor,
  timeScale,
  writePvclock,
  type PvclockFields,
  type PvclockReading,
} from '@ftvm/clock';

const SEED = 0x5eed_c10c;

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ClockError);
    return (e as ClockError).code;
  }
  return undefined;
}

/** Exact ns for `ticks` of a `hz` clock, as a rational floor. */
function exactNs(ticks: bigint, hz: bigint): bigint {
  return (ticks * 1_000_000_000n) / hz;
}

describe('scaleFor (kvm_get_time_scale)', () => {
  it('gives mul 2^31, shift 1 for a 1 GHz TSC: one tick is exactly one ns', () => {
    expect(scaleFor(1_000_000_000)).toEqual({ mul: 2 ** 31, shift: 1 });
  });

  it('gives mul floor(0.8 * 2^32), shift -1 for a 2.5 GHz TSC', () => {
    expect(scaleFor(2_500_000_000)).toEqual({ mul: 3435973836, shift: -1 });
  });

  it('keeps mul in [2^31, 2^32) and converts ticks to ns within 1 ppm + 1 ns for any frequency', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1_000_000, max: 50_000_000_000 }), fc.bigInt({ min: 0n, max: 1n << 40n }), (hz, ticks) => {
        const s = scaleFor(hz);
        expect(s.mul).toBeGreaterThanOrEqual(2 ** 31);
        expect(s.mul).toBeLessThan(2 ** 32);
        const got = pvclockTimeNs({ tscTimestamp: 0n, systemTime: 0n, ...s, flags: 0 }, ticks);
        const want = exactNs(ticks, BigInt(hz));
        const err = got > want ? got - want : want - got;
        expect(err <= want / 1_000_000n + 1n).toBe(true);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('scales a rate-adjusted clock: 1e9 + 5e6 ns per second of a 1 GHz TSC runs 5000 ppm fast', () => {
    const s = timeScale(1_005_000_000n, 1_000_000_000n);
    const ns = pvclockTimeNs({ tscTimestamp: 0n, systemTime: 0n, ...s, flags: 0 }, 1_000_000_000n);
    expect(ns >= 1_004_999_990n && ns <= 1_005_000_000n).toBe(true);
  });

  it('rejects a non-positive frequency with FTVM_ERR_CLOCK_OPTION', () => {
    expect(code(() => scaleFor(0))).toBe('FTVM_ERR_CLOCK_OPTION');
    expect(code(() => scaleFor(1.5))).toBe('FTVM_ERR_CLOCK_OPTION');
  });
});

describe('pvclockTimeNs', () => {
  it('computes the 64x32 product without losing the high bits (96-bit intermediate)', () => {
    const f: PvclockFields = { tscTimestamp: 10n, systemTime: 7n, mul: 0xffff_ffff, shift: 0, flags: 0 };
    const delta = (1n << 63n) + 12345n; // delta * mul needs 95 bits
    expect(pvclockTimeNs(f, 10n + delta)).toBe(7n + ((delta * 0xffff_ffffn) >> 32n));
    expect(pvclockTimeNs(f, 10n + delta) > 1n << 62n).toBe(true);
  });

  it('shifts the delta right for a negative tsc_shift and left for a positive one', () => {
    const base = { tscTimestamp: 1000n, systemTime: 0n, mul: 2 ** 31, flags: 0 };
    expect(pvclockTimeNs({ ...base, shift: -2 }, 1000n + 800n)).toBe(100n); // 800 >> 2 = 200, * 0.5
    expect(pvclockTimeNs({ ...base, shift: 3 }, 1000n + 800n)).toBe(3200n); // 800 << 3 = 6400, * 0.5
  });

  it('returns system_time at tsc_timestamp and a constant when mul is 0 (frozen clock)', () => {
    const f: PvclockFields = { tscTimestamp: 5n, systemTime: 99n, mul: 0, shift: 0, flags: 0 };
    expect(pvclockTimeNs(f, 5n)).toBe(99n);
    expect(pvclockTimeNs(f, 5_000_000n)).toBe(99n);
  });

  it('wraps to u64 like Linux when the sum overflows', () => {
    const f: PvclockFields = { tscTimestamp: 0n, systemTime: (1n << 64n) - 1n, mul: 2 ** 31, shift: 1, flags: 0 };
    expect(pvclockTimeNs(f, 2n)).toBe(1n);
  });
});

describe('writePvclock / readPvclock', () => {
  const fields: PvclockFields = { tscTimestamp: 123n, systemTime: 456_000n, mul: 2 ** 31, shift: 1, flags: PVCLOCK.FLAG_TSC_STABLE };

  it('lays the fields out at the ABI offsets, little-endian, and bumps the version by 2 per update', () => {
    const view = new DataView(new ArrayBuffer(64));
    expect(writePvclock(view, 32, fields)).toBe(2);
    expect(view.getUint32(32 + PVCLOCK.version, true)).toBe(2);
    expect(view.getBigUint64(32 + PVCLOCK.tscTimestamp, true)).toBe(123n);
    expect(view.getBigUint64(32 + PVCLOCK.systemTime, true)).toBe(456_000n);
    expect(view.getUint32(32 + PVCLOCK.tscToSystemMul, true)).toBe(2 ** 31);
    expect(view.getInt8(32 + PVCLOCK.tscShift)).toBe(1);
    expect(view.getUint8(32 + PVCLOCK.flags)).toBe(PVCLOCK.FLAG_TSC_STABLE);
    expect(writePvclock(view, 32, { ...fields, shift: -3 })).toBe(4);
    expect(loadPvclockFields(view, 32)).toEqual({ ...fields, shift: -3 });
  });

  it('rounds an odd (junk) version up to even before its update', () => {
    const view = new DataView(new ArrayBuffer(32));
    view.setUint32(0, 7, true);
    expect(writePvclock(view, 0, fields)).toBe(10);
  });

  it('writes version - 1, then the given even version, when the caller keeps the sequence', () => {
    const view = new DataView(new ArrayBuffer(32));
    const steps = pvclockWriteSteps(view, 0, fields, 8);
    steps.next();
    expect(view.getUint32(0, true)).toBe(7);
    while (steps.next().done !== true);
    expect(view.getUint32(0, true)).toBe(8);
    expect(code(() => writePvclock(view, 0, fields, 9))).toBe('FTVM_ERR_CLOCK_OPTION');
  });

  it('wraps the version around u32', () => {
    const view = new DataView(new ArrayBuffer(32));
    view.setUint32(0, 0xffff_fffe, true);
    expect(writePvclock(view, 0, fields)).toBe(0);
    expect(readPvclock(view, 0, () => 123n).version).toBe(0);
  });

  it('reads back the time at the given TSC', () => {
    const view = new DataView(new ArrayBuffer(32));
    writePvclock(view, 0, fields);
    const r = readPvclock(view, 0, () => 1123n);
    expect(r.timeNs).toBe(457_000n);
    expect(r.version).toBe(2);
    expect(r.tsc).toBe(1123n);
  });

  it('gives up with FTVM_ERR_CLOCK_READ_RETRIES when the version stays odd (writer died mid-update)', () => {
    const view = new DataView(new ArrayBuffer(32));
    const steps = pvclockWriteSteps(view, 0, fields);
    steps.next(); // version now odd, never finished
    expect(code(() => readPvclock(view, 0, () => 0n, 5))).toBe('FTVM_ERR_CLOCK_READ_RETRIES');
  });

  it('retries an attempt during which the version changed', () => {
    const view = new DataView(new ArrayBuffer(32));
    writePvclock(view, 0, fields);
    // rdtsc runs between the field loads and the second version load: a whole update lands there.
    let updates = 0;
    const r = readPvclock(view, 0, () => {
      if (updates === 0) {
        updates++;
        writePvclock(view, 0, { ...fields, systemTime: 1n });
      }
      return 123n;
    });
    expect(r.version).toBe(4);
    expect(r.fields.systemTime).toBe(1n);
  });

  it('rejects a structure outside the view or misaligned with FTVM_ERR_CLOCK_ADDRESS', () => {
    const view = new DataView(new ArrayBuffer(64));
    expect(code(() => writePvclock(view, 40, fields))).toBe('FTVM_ERR_CLOCK_ADDRESS');
    expect(code(() => writePvclock(view, 2, fields))).toBe('FTVM_ERR_CLOCK_ADDRESS');
    expect(code(() => readPvclock(view, -8, () => 0n))).toBe('FTVM_ERR_CLOCK_ADDRESS');
  });

  it('rejects fields that do not fit their C types with FTVM_ERR_CLOCK_FIELDS', () => {
    const view = new DataView(new ArrayBuffer(32));
    expect(code(() => writePvclock(view, 0, { ...fields, mul: 2 ** 32 }))).toBe('FTVM_ERR_CLOCK_FIELDS');
    expect(code(() => writePvclock(view, 0, { ...fields, shift: 128 }))).toBe('FTVM_ERR_CLOCK_FIELDS');
    expect(code(() => writePvclock(view, 0, { ...fields, systemTime: -1n }))).toBe('FTVM_ERR_CLOCK_FIELDS');
    expect(code(() => writePvclock(view, 0, { ...fields, flags: 256 }))).toBe('FTVM_ERR_CLOCK_FIELDS');
    expect(view.getUint32(0, true)).toBe(0); // nothing was written
  });
});

describe('seqlock under interleaving', () => {
  const arbFields = fc.record({
    tscTimestamp: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    systemTime: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    mul: fc.integer({ min: 0, max: 0xffff_ffff }),
    shift: fc.integer({ min: -128, max: 127 }),
    flags: fc.integer({ min: 0, max: 255 }),
  });

  it('never returns a torn read: every reading is exactly the state published under its version', () => {
    let completedReads = 0;
    let retriedAttempts = 0;
    fc.assert(
      fc.property(
        fc.array(arbFields, { minLength: 1, maxLength: 8 }),
        // 30 % writer steps: readers (8 steps per attempt) then both complete and collide.
        fc.array(fc.integer({ min: 0, max: 9 }).map((x) => x < 3), { minLength: 10, maxLength: 300 }),
        (updates, schedule) => {
          const view = new DataView(new ArrayBuffer(32));
          const byVersion = new Map<number, PvclockFields>();
          byVersion.set(writePvclock(view, 0, updates[0]!), updates[0]!);
          let next = 1;
          let writer: Generator<void, number, void> | null = null;
          let writing: PvclockFields | null = null;
          let reader: Generator<void, PvclockReading | null, void> | null = null;
          let tsc = 0n;
          for (const writerTurn of schedule) {
            if (writerTurn) {
              if (writer === null && next < updates.length) {
                writing = updates[next++]!;
                writer = pvclockWriteSteps(view, 0, writing);
              }
              if (writer !== null) {
                const r = writer.next();
                if (r.done === true) {
                  byVersion.set(r.value, writing!);
                  writer = null;
                }
              }
            } else {
              reader ??= pvclockReadAttempt(view, 0, () => (tsc += 1n));
              const r = reader.next();
              if (r.done === true) {
                reader = null;
                if (r.value === null) {
                  retriedAttempts++;
                } else {
                  completedReads++;
                  const published = byVersion.get(r.value.version);
                  expect(published).toBeDefined();
                  expect(r.value.fields).toEqual(published);
                  expect(r.value.timeNs).toBe(pvclockTimeNs(published!, r.value.tsc));
                }
              }
            }
          }
        },
      ),
      { seed: SEED, numRuns: 500 },
    );
    // The schedules must have exercised both outcomes, or the property says nothing.
    expect(completedReads).toBeGreaterThan(100);
    expect(retriedAttempts).toBeGreaterThan(100);
  });
});
