import { describe, expect, it } from 'vitest';
import { FtvmEvents, StatusRecorder, createRoleMetrics } from '../src/index.js';

function fakeClock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => { t += ms; } };
}

describe('StatusRecorder', () => {
  it('turns totals into per-second rates and per-interval pause percentiles', () => {
    const clock = fakeClock();
    const bus = new FtvmEvents();
    const m = createRoleMetrics('primary', bus, { defaultMetrics: false, status: { autoStart: false, now: clock.now } });
    for (let i = 0; i < 10; i++) bus.emit('epochEnded', { epoch: i, policy: 'periodic', durationMs: 25, pauseMs: i + 1, dirtyPages: 1 });
    bus.emit('checkpointSent', { epoch: 9, wireBytes: 1000, rawBytes: 8192 });
    bus.emit('outputReleased', { bytes: 10, delayMs: 3 });
    clock.advance(2000);
    const s = m.status.sample();
    expect(s.epochsPerSec).toBe(5);
    expect(s.wireBytesPerSec).toBe(500);
    expect(s.rawBytesPerSec).toBe(4096);
    expect(s.pauseP50Ms).toBe(5);
    expect(s.pauseP99Ms).toBe(10);
    expect(s.pauseMaxMs).toBe(10);
    expect(s.outputDelayP50Ms).toBe(3);
    clock.advance(1000);
    const idle = m.status.sample();
    expect(idle.epochsPerSec).toBe(0);
    expect(idle.pauseP50Ms).toBeNull();
    expect(idle.outputDelayP99Ms).toBeNull();
    m.close();
  });

  it('never reports negative rates when the wall clock steps back', () => {
    const clock = fakeClock();
    const bus = new FtvmEvents();
    const m = createRoleMetrics('primary', bus, { defaultMetrics: false, status: { autoStart: false, now: clock.now, intervalMs: 1000 } });
    bus.emit('epochEnded', { epoch: 1, policy: 'periodic', durationMs: 25, pauseMs: 1, dirtyPages: 1 });
    clock.advance(-5000);
    const s = m.status.sample();
    expect(s.epochsPerSec).toBe(1);
    m.close();
  });

  it('keeps protection and failover state in each sample', () => {
    const clock = fakeClock();
    const bus = new FtvmEvents();
    const m = createRoleMetrics('proxy', bus, { defaultMetrics: false, status: { autoStart: false, now: clock.now } });
    bus.emit('protection', { protected: true, reason: 'ok' });
    clock.advance(1000);
    m.status.sample();
    bus.emit('protection', { protected: false, reason: 'x'.repeat(1000) });
    bus.emit('failover', { durationMs: 300, term: 2 });
    bus.emit('clockDrift', { driftNs: -1_500_000n, mode: 'slew' });
    clock.advance(1000);
    m.status.sample();
    const snap = m.status.snapshot();
    expect(snap.samples.map((x) => x.protected)).toEqual([1, 0]);
    expect(snap.samples.map((x) => x.failoversTotal)).toEqual([0, 1]);
    expect(snap.samples[1]!.driftMs).toBe(-1.5);
    expect(snap.current.protectionReason).toHaveLength(200);
    expect(snap.uptimeSec).toBe(2);
    m.close();
  });

  it('samples on its own timer when started', async () => {
    const bus = new FtvmEvents();
    const m = createRoleMetrics('run', bus, { defaultMetrics: false, status: { intervalMs: 20 } });
    await new Promise((r) => setTimeout(r, 150));
    m.close();
    const n = m.status.snapshot().samples.length;
    expect(n).toBeGreaterThanOrEqual(2);
    await new Promise((r) => setTimeout(r, 60));
    expect(m.status.snapshot().samples.length).toBe(n);
  });

  it('rejects out-of-range interval and capacity with FTVM_ERR_INVALID_OPTION', () => {
    const state = createRoleMetrics('run', new FtvmEvents(), { defaultMetrics: false, status: { autoStart: false } }).state;
    expect(() => new StatusRecorder(() => state, { intervalMs: 0 })).toThrow(expect.objectContaining({ code: 'FTVM_ERR_INVALID_OPTION' }));
    expect(() => new StatusRecorder(() => state, { capacity: 0 })).toThrow(expect.objectContaining({ code: 'FTVM_ERR_INVALID_OPTION' }));
    expect(() => new StatusRecorder(() => state, { capacity: 1e9 })).toThrow(expect.objectContaining({ code: 'FTVM_ERR_INVALID_OPTION' }));
  });
});
