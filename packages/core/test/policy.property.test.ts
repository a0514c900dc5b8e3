import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { adaptive, periodic, syncIo, type EpochPolicy, type EpochPolicyInput } from '../src/index.js';

const input = fc
  .record({
    nowMs: fc.double({ min: 0, max: 1e6, noNaN: true }),
    age: fc.double({ min: 0, max: 1000, noNaN: true }),
    sinceLastEnd: fc.double({ min: 0, max: 1000, noNaN: true }),
    outputPending: fc.boolean(),
    dirtyBytesEstimate: fc.integer({ min: 0, max: 64 << 20 }),
    inFlight: fc.integer({ min: 0, max: 16 }),
    awaitingAck: fc.boolean(),
    ackWait: fc.double({ min: 0, max: 1000, noNaN: true }),
    windowFull: fc.boolean(),
  })
  .map(
    (r): EpochPolicyInput => ({
      nowMs: r.nowMs,
      epochStartMs: r.nowMs - r.age,
      lastEpochEndMs: r.nowMs - Math.max(r.age, r.sinceLastEnd),
      outputPending: r.outputPending,
      outputPendingSinceMs: r.outputPending ? r.nowMs - r.age / 2 : undefined,
      dirtyBytesEstimate: r.dirtyBytesEstimate,
      inFlight: r.inFlight,
      awaitingAckSinceMs: r.awaitingAck && r.inFlight > 0 ? r.nowMs - r.ackWait : undefined,
      windowFull: r.windowFull,
    }),
  );

const policies: [string, EpochPolicy][] = [
  ['periodic', periodic({ intervalMs: 25 })],
  ['sync-io', syncIo({ maxIntervalMs: 200 })],
  ['adaptive', adaptive({ minGapMs: 1, maxIntervalMs: 50, dirtyBudgetBytes: 1 << 20 })],
];

describe('every policy (property)', () => {
  for (const [name, p] of policies) {
    it(`${name}: never ends an epoch while the window is full, and a deadline it asks for is in the future`, () => {
      fc.assert(
        fc.property(input, (i) => {
          const d = p.decide(i);
          if (i.windowFull) expect(d.endEpoch).toBe(false);
          if (!d.endEpoch && d.nextDeadlineMs !== undefined) expect(d.nextDeadlineMs).toBeGreaterThan(i.nowMs);
          if (d.waitForAck) expect(d.endEpoch).toBe(true);
        }),
        { numRuns: 2000 },
      );
    });
  }

  it('adaptive: never ends an epoch inside the min gap unless the epoch reached maxIntervalMs', () => {
    const p = adaptive({ minGapMs: 2, maxIntervalMs: 50 });
    fc.assert(
      fc.property(input, (i) => {
        const d = p.decide(i);
        if (d.endEpoch && i.nowMs < i.lastEpochEndMs + 2) expect(i.nowMs).toBeGreaterThanOrEqual(i.epochStartMs + 50);
      }),
      { numRuns: 2000 },
    );
  });

  it('adaptive: with output pending, the gap open and no ack awaited, always ends the epoch (when the window allows)', () => {
    const p = adaptive({ minGapMs: 2, maxIntervalMs: 50, groupCommit: true });
    fc.assert(
      fc.property(input, (i) => {
        if (!i.outputPending || i.windowFull || i.awaitingAckSinceMs !== undefined || i.nowMs < i.lastEpochEndMs + 2) return;
        expect(p.decide(i).endEpoch).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});
