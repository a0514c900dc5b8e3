import { describe, expect, it } from 'vitest';
import { adaptive, createPolicy, periodic, syncIo, type EpochPolicyInput } from '../src/index.js';

const base: EpochPolicyInput = {
  nowMs: 0,
  epochStartMs: 0,
  lastEpochEndMs: -Infinity,
  outputPending: false,
  dirtyBytesEstimate: 0,
  inFlight: 0,
  windowFull: false,
};
const at = (p: Partial<EpochPolicyInput>): EpochPolicyInput => ({ ...base, ...p });

describe('periodic', () => {
  it('ends the epoch exactly when the interval has elapsed, not a millisecond before', () => {
    const p = periodic({ intervalMs: 25 });
    expect(p.decide(at({ nowMs: 124.9, epochStartMs: 100 })).endEpoch).toBe(false);
    expect(p.decide(at({ nowMs: 124.9, epochStartMs: 100 })).nextDeadlineMs).toBe(125);
    expect(p.decide(at({ nowMs: 125, epochStartMs: 100 })).endEpoch).toBe(true);
  });
  it('ignores pending output (output waits for the interval)', () => {
    const p = periodic({ intervalMs: 100 });
    const d = p.decide(at({ nowMs: 10, outputPending: true, outputPendingSinceMs: 1 }));
    expect(d.endEpoch).toBe(false);
    expect(d.nextDeadlineMs).toBe(100);
  });
  it('does not end an epoch while the window is full and sets no deadline', () => {
    const d = periodic().decide(at({ nowMs: 1000, windowFull: true }));
    expect(d).toEqual({ endEpoch: false, nextDeadlineMs: undefined, waitForAck: false });
  });
  it('defaults to 25 ms (Remus)', () => {
    expect(periodic().options.intervalMs).toBe(25);
  });
});

describe('sync-io', () => {
  it('ends the epoch as soon as output is pending and makes the vCPU wait for the ack', () => {
    const d = syncIo().decide(at({ nowMs: 0.1, outputPending: true, outputPendingSinceMs: 0.1 }));
    expect(d).toMatchObject({ endEpoch: true, waitForAck: true });
  });
  it('never pipelines: waits while an epoch is in flight', () => {
    expect(syncIo().decide(at({ nowMs: 5000, outputPending: true, inFlight: 1 })).endEpoch).toBe(false);
  });
  it('ends a silent epoch at maxIntervalMs without holding the vCPU', () => {
    const p = syncIo({ maxIntervalMs: 200 });
    expect(p.decide(at({ nowMs: 199 })).nextDeadlineMs).toBe(200);
    expect(p.decide(at({ nowMs: 200 }))).toMatchObject({ endEpoch: true, waitForAck: false });
  });
});

describe('adaptive', () => {
  it('ends the epoch at once when output is pending and the min gap has passed', () => {
    const p = adaptive({ minGapMs: 1 });
    expect(p.decide(at({ nowMs: 11, lastEpochEndMs: 10, epochStartMs: 10, outputPending: true })).endEpoch).toBe(true);
  });
  it('coalesces output arriving inside the min gap and asks again when the gap opens', () => {
    const p = adaptive({ minGapMs: 2 });
    const d = p.decide(at({ nowMs: 10.5, lastEpochEndMs: 10, epochStartMs: 10, outputPending: true }));
    expect(d.endEpoch).toBe(false);
    expect(d.nextDeadlineMs).toBe(12);
    expect(d.waitForAck).toBe(false);
  });
  it('ends an epoch without output at maxIntervalMs', () => {
    const p = adaptive({ maxIntervalMs: 50 });
    expect(p.decide(at({ nowMs: 49.99, epochStartMs: 0, lastEpochEndMs: 0 })).endEpoch).toBe(false);
    expect(p.decide(at({ nowMs: 49.99, epochStartMs: 0, lastEpochEndMs: 0 })).nextDeadlineMs).toBe(50);
    expect(p.decide(at({ nowMs: 50, epochStartMs: 0, lastEpochEndMs: 0 })).endEpoch).toBe(true);
  });
  it('ends the epoch when the dirty budget is reached', () => {
    const p = adaptive({ dirtyBudgetBytes: 4096 });
    expect(p.decide(at({ nowMs: 5, lastEpochEndMs: 0, dirtyBytesEstimate: 4095 })).endEpoch).toBe(false);
    expect(p.decide(at({ nowMs: 5, lastEpochEndMs: 0, dirtyBytesEstimate: 4096 })).endEpoch).toBe(true);
  });
  it('never ends an epoch while the window is full, even with output pending', () => {
    const d = adaptive().decide(at({ nowMs: 1e6, outputPending: true, windowFull: true }));
    expect(d.endEpoch).toBe(false);
    expect(d.nextDeadlineMs).toBeUndefined();
  });
  it('documents its defaults: 1 ms gap, 50 ms max interval, 4 MiB dirty budget, no group commit', () => {
    expect(adaptive().options).toEqual({ minGapMs: 1, maxIntervalMs: 50, dirtyBudgetBytes: 4 * 1024 * 1024, groupCommit: false });
  });
  it('with no gap, ends the epoch of a lone reply at once', () => {
    expect(adaptive({ minGapMs: 0 }).decide(at({ nowMs: 10.01, lastEpochEndMs: 10, epochStartMs: 10, outputPending: true, inFlight: 0 })).endEpoch).toBe(true);
  });
  it('group commit: output waits while a protected primary awaits an ack, until the ack is overdue', () => {
    // Epoch 1 collected at 5 and unacked; epoch 2 runs from 10 with output pending.
    const waiting = { lastEpochEndMs: 10, epochStartMs: 10, outputPending: true, inFlight: 1, awaitingAckSinceMs: 5 };
    const gc = adaptive({ groupCommit: true });
    const d = gc.decide(at({ ...waiting, nowMs: 20 }));
    expect(d.endEpoch).toBe(false);
    expect(d.nextDeadlineMs).toBe(55);
    expect(gc.decide(at({ ...waiting, nowMs: 55 })).endEpoch).toBe(true);
    expect(adaptive().decide(at({ ...waiting, nowMs: 20 })).endEpoch).toBe(true);
    // Unprotected or syncing a new secondary: output is committed without acks, nothing waits.
    expect(gc.decide(at({ ...waiting, awaitingAckSinceMs: undefined, nowMs: 20 })).endEpoch).toBe(true);
    // Without output, an overdue ack ends the epoch only at its own maxIntervalMs.
    expect(gc.decide(at({ ...waiting, outputPending: false, nowMs: 55 }))).toMatchObject({ endEpoch: false, nextDeadlineMs: 60 });
  });
  it('group commit still ends an epoch over its dirty budget while one is in flight', () => {
    const p = adaptive({ dirtyBudgetBytes: 4096, minGapMs: 2, groupCommit: true });
    const over = { lastEpochEndMs: 10, epochStartMs: 10, inFlight: 1, awaitingAckSinceMs: 9, dirtyBytesEstimate: 4096 };
    expect(p.decide(at({ ...over, nowMs: 11 }))).toMatchObject({ endEpoch: false, nextDeadlineMs: 12 });
    expect(p.decide(at({ ...over, nowMs: 12 })).endEpoch).toBe(true);
  });
});

describe('option validation', () => {
  it('names the option in the message', () => {
    expect(() => adaptive({ minGapMs: -1 })).toThrow(/adaptive\.minGapMs must be >= 0/);
    expect(() => createPolicy('adaptive', { groupCommit: 1 })).toThrow(/adaptive\.groupCommit must be a boolean/);
    expect(() => periodic({ intervalMs: 0 })).toThrow(/periodic\.intervalMs must be > 0/);
    expect(() => adaptive({ minGapMs: 10, maxIntervalMs: 5 })).toThrow(/adaptive\.maxIntervalMs \(5\) must be >= adaptive\.minGapMs/);
  });
  it('refuses unknown options and unknown policy names with FTVM_ERR_CORE_OPTION', () => {
    expect(() => createPolicy('adaptive', { minGap: 1 })).toThrow(expect.objectContaining({ code: 'FTVM_ERR_CORE_OPTION' }));
    expect(() => createPolicy('remus')).toThrow(/policy must be one of periodic, sync-io, adaptive/);
  });
  it('builds each policy by name, adaptive by default', () => {
    expect(createPolicy().name).toBe('adaptive');
    expect(createPolicy('periodic', { intervalMs: 100 }).options.intervalMs).toBe(100);
    expect(createPolicy('sync-io').name).toBe('sync-io');
  });
});
