/**
 * The compensator driven the way the VMM drives it: events at host times read from a
 * (skewed) host clock, fields published into a guest memory page with the seqlock writer,
 * guest time read back through readPvclock with rdtsc from the compensator. Failover
 * restores the last checkpoint (clock state and the memory holding the pvclock page) on
 * a new host whose clock is up to 5 s off and 100 ppm fast or slow.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  ClockCompensator,
  CLOCK_MODES,
  ManualClock,
  SkewedClock,
  readPvclock,
  writePvclock,
  type ClockMode,
  type ClockState,
  type HostClock,
} from '@ftvm/clock';

const MS = 1_000_000n;
const S = 1_000_000_000n;
const PV_ADDR = 64;

type Cmd =
  | { k: 'advance'; ns: bigint }
  | { k: 'pause' }
  | { k: 'resume' }
  | { k: 'tick' }
  | { k: 'read' }
  | { k: 'checkpoint' }
  | { k: 'failover'; gapNs: bigint; offsetNs: bigint; ratePpm: number };

const arbSkew = {
  offsetNs: fc.bigInt({ min: -5n * S, max: 5n * S }),
  ratePpm: fc.integer({ min: -100, max: 100 }),
};

const arbCmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 6, arbitrary: fc.oneof(fc.bigInt({ min: 0n, max: MS }), fc.bigInt({ min: 0n, max: 100n * MS }), fc.bigInt({ min: 0n, max: 3n * S })).map((ns): Cmd => ({ k: 'advance', ns })) },
  { weight: 3, arbitrary: fc.constant<Cmd>({ k: 'pause' }) },
  { weight: 3, arbitrary: fc.constant<Cmd>({ k: 'resume' }) },
  { weight: 3, arbitrary: fc.constant<Cmd>({ k: 'tick' }) },
  { weight: 6, arbitrary: fc.constant<Cmd>({ k: 'read' }) },
  { weight: 2, arbitrary: fc.constant<Cmd>({ k: 'checkpoint' }) },
  {
    weight: 1,
    arbitrary: fc
      .record({ gapNs: fc.bigInt({ min: 0n, max: 4n * S }), ...arbSkew })
      .map((r): Cmd => ({ k: 'failover', ...r })),
  },
);

interface Checkpoint {
  state: ClockState;
  memory: ArrayBuffer;
  /** The latest guest time observed up to the checkpoint: the history the secondary continues. */
  observed: bigint;
}

function run(mode: ClockMode, tscHz: number, primarySkew: { offsetNs: bigint; ratePpm: number }, cmds: Cmd[]): { reads: number; failovers: number } {
  const world = new ManualClock(1_700_000_000_000_000_000n);
  let host: HostClock = new SkewedClock(world, primarySkew);
  let clock = new ClockCompensator(host.nowNs(), { mode, tscHz });
  let memory = new ArrayBuffer(4096);
  let view = new DataView(memory);
  let observed = -1n;
  let checkpoint: Checkpoint | null = null;
  let reads = 0;
  let failovers = 0;

  const publish = (h: bigint): void => {
    const { fields, changed } = clock.fields(h);
    if (changed) writePvclock(view, PV_ADDR, fields);
  };
  const observe = (g: bigint): void => {
    expect(g >= observed).toBe(true);
    observed = g;
  };
  publish(host.nowNs());

  for (const cmd of cmds) {
    const h = host.nowNs();
    switch (cmd.k) {
      case 'advance':
        world.advance(cmd.ns);
        break;
      case 'pause':
        if (!clock.isPaused()) clock.pause(h);
        break;
      case 'resume':
        if (clock.isPaused()) clock.resume(h);
        break;
      case 'tick':
        clock.tick(h);
        break;
      case 'read': {
        // Guest read through the page (the VMM also reads it while paused, for references).
        const r = readPvclock(view, PV_ADDR, () => clock.tscAt(h));
        expect(r.timeNs).toBe(clock.guestNowNs(h));
        observe(r.timeNs);
        reads++;
        break;
      }
      case 'checkpoint': {
        const state = clock.snapshot(h);
        observe(state.guestNs);
        checkpoint = { state, memory: memory.slice(0), observed };
        break;
      }
      case 'failover': {
        if (checkpoint === null) break;
        // The primary dies; the secondary, on its own skewed clock, detects it after gapNs.
        world.advance(cmd.gapNs);
        host = new SkewedClock(world, { offsetNs: cmd.offsetNs, ratePpm: cmd.ratePpm });
        const h2 = host.nowNs();
        clock = ClockCompensator.restore(checkpoint.state, h2);
        memory = checkpoint.memory.slice(0);
        view = new DataView(memory);
        // Reads the lost epoch made on the old primary are rolled back with its memory.
        observed = checkpoint.observed;
        expect(clock.guestNowNs(h2) >= checkpoint.state.guestNs).toBe(true);
        expect(clock.tscAt(h2) >= checkpoint.state.tsc).toBe(true);
        failovers++;
        publish(h2);
        clock.resume(h2);
        break;
      }
    }
    publish(host.nowNs());
  }
  return { reads, failovers };
}

describe('guest time across pauses, checkpoints and failover to skewed hosts', () => {
  it.each(CLOCK_MODES.map((m) => [m]))('never decreases when read through the pvclock page (%s mode)', (mode) => {
    let reads = 0;
    let failovers = 0;
    fc.assert(
      fc.property(
        fc.constantFrom(1_000_000_000, 2_999_999_999, 100_000_000),
        fc.record(arbSkew),
        fc.array(arbCmd, { minLength: 20, maxLength: 150 }),
        (tscHz, skew, cmds) => {
          const r = run(mode, tscHz, skew, cmds);
          reads += r.reads;
          failovers += r.failovers;
        },
      ),
      { seed: 0xfa11 + mode.length, numRuns: 300 },
    );
    expect(reads).toBeGreaterThan(1000);
    expect(failovers).toBeGreaterThan(50);
  });
});
