import diagnosticsChannel from 'node:diagnostics_channel';
import { describe, expect, it } from 'vitest';
import { FtvmEvents, diagnosticsChannelName, type FtvmDiagnosticsMessage } from '../src/index.js';

describe('FtvmEvents', () => {
  it('delivers a typed payload to every listener of that event only', () => {
    const bus = new FtvmEvents();
    const got: number[] = [];
    const other: unknown[] = [];
    bus.on('committed', (p) => got.push(p.epoch));
    bus.on('committed', (p) => got.push(p.epoch * 10));
    bus.on('clients', (p) => other.push(p));
    bus.emit('committed', { epoch: 7 });
    expect(got).toEqual([7, 70]);
    expect(other).toEqual([]);
  });

  it('stops delivering after the returned unsubscribe is called', () => {
    const bus = new FtvmEvents();
    const got: number[] = [];
    const off = bus.on('committed', (p) => got.push(p.epoch));
    bus.emit('committed', { epoch: 1 });
    off();
    bus.emit('committed', { epoch: 2 });
    expect(got).toEqual([1]);
    expect(bus.listenerCount('committed')).toBe(0);
    expect(bus.hasListeners('committed')).toBe(false);
  });

  it('lets a listener unsubscribe itself during an emit without skipping the next one', () => {
    const bus = new FtvmEvents();
    const got: string[] = [];
    const off = bus.on('committed', () => { got.push('a'); off(); });
    bus.on('committed', () => got.push('b'));
    bus.emit('committed', { epoch: 1 });
    bus.emit('committed', { epoch: 2 });
    expect(got).toEqual(['a', 'b', 'b']);
  });

  it('counts and reports a throwing listener but never throws into the emitter', () => {
    const reported: string[] = [];
    const bus = new FtvmEvents({ onListenerError: (_e, ev) => reported.push(ev) });
    const got: number[] = [];
    bus.on('committed', () => { throw new Error('boom'); });
    bus.on('committed', (p) => got.push(p.epoch));
    expect(() => bus.emit('committed', { epoch: 3 })).not.toThrow();
    expect(got).toEqual([3]);
    expect(bus.listenerErrors).toBe(1);
    expect(reported).toEqual(['committed']);
  });

  it('rethrows a listener error as FTVM_ERR_METRICS_LISTENER in strict mode', () => {
    const bus = new FtvmEvents({ strict: true });
    bus.on('committed', () => { throw new Error('boom'); });
    expect(() => bus.emit('committed', { epoch: 3 })).toThrow(expect.objectContaining({ code: 'FTVM_ERR_METRICS_LISTENER' }));
  });

  it('refuses more listeners than maxListeners on one event', () => {
    const bus = new FtvmEvents({ maxListeners: 2 });
    bus.on('clients', () => {});
    bus.on('clients', () => {});
    expect(() => bus.on('clients', () => {})).toThrow(expect.objectContaining({ code: 'FTVM_ERR_INVALID_OPTION' }));
    expect(() => bus.on('committed', () => {})).not.toThrow();
  });

  it('rejects an unknown event name and bad options with FTVM_ERR_INVALID_OPTION', () => {
    const bus = new FtvmEvents();
    expect(() => bus.on('nope' as 'clients', () => {})).toThrow(expect.objectContaining({ code: 'FTVM_ERR_INVALID_OPTION' }));
    expect(() => new FtvmEvents({ maxListeners: 0 })).toThrow(expect.objectContaining({ code: 'FTVM_ERR_INVALID_OPTION' }));
    expect(() => new FtvmEvents({ name: '' })).toThrow(expect.objectContaining({ code: 'FTVM_ERR_INVALID_OPTION' }));
  });

  it('mirrors events on the ftvm:<event> diagnostics channel with the bus name', () => {
    const bus = new FtvmEvents({ name: 'primary' });
    const got: FtvmDiagnosticsMessage[] = [];
    const sub = (m: unknown): void => { got.push(m as FtvmDiagnosticsMessage); };
    diagnosticsChannel.subscribe(diagnosticsChannelName('failover'), sub);
    try {
      expect(bus.hasListeners('failover')).toBe(true);
      bus.emit('failover', { durationMs: 120, term: 2 });
    } finally {
      diagnosticsChannel.unsubscribe(diagnosticsChannelName('failover'), sub);
    }
    expect(got).toEqual([{ bus: 'primary', event: 'failover', payload: { durationMs: 120, term: 2 } }]);
  });
});
