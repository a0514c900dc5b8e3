import type { FtvmEvents } from '../../src/index.js';

export interface SimulatedCluster {
  proxy: FtvmEvents;
  primary: FtvmEvents;
  secondary: FtvmEvents;
}

/**
 * Drives the three buses the way the runtimes will (a stand-in until they exist): a protected
 * cluster running adaptive epochs, with output held and released; `failover()` reports one.
 * `tickMs` is the epoch period (ms).
 */
export function simulateCluster(c: SimulatedCluster, tickMs = 20): { stop: () => void; failover: () => void } {
  let epoch = 0;
  c.proxy.emit('role', { role: 'proxy', term: 1 });
  c.primary.emit('role', { role: 'primary', term: 1 });
  c.secondary.emit('role', { role: 'secondary', term: 1 });
  for (const b of [c.proxy, c.primary, c.secondary]) {
    b.emit('protection', { protected: true, reason: 'secondary synced and acking' });
    b.emit('ready', { ready: true, reason: 'serving' });
  }
  c.primary.emit('link', { peer: 'secondary', up: true });
  c.proxy.emit('clients', { connected: 3 });
  c.primary.emit('progress', { task: 'sync', done: 4096, total: 4096, unit: 'pages' });
  c.primary.emit('guestFault', { code: 'FTVM_ERR_GUEST_TRAP' });
  const timer = setInterval(() => {
    epoch++;
    const pauseMs = 0.05 + (epoch % 10) * 0.03;
    c.primary.emit('epochEnded', { epoch, policy: 'adaptive', durationMs: tickMs, pauseMs, dirtyPages: 10 + (epoch % 50) });
    c.primary.emit('checkpointSent', {
      epoch, wireBytes: 9000, rawBytes: 40960,
      byCodec: { ZERO: { pages: 2, bytes: 0 }, XOR_LZ4: { pages: 6, bytes: 6000 }, LZ4: { pages: 1, bytes: 2000 }, RAW: { pages: 1, bytes: 4096 } },
    });
    c.primary.emit('inFlight', { epochs: 1, bytes: 9000 });
    c.primary.emit('checkpointAcked', { epoch, ackLatencyMs: 0.8 + (epoch % 5) * 0.2 });
    c.primary.emit('committed', { epoch });
    c.secondary.emit('committed', { epoch });
    c.proxy.emit('committed', { epoch });
    c.proxy.emit('outputHeld', { bytes: 512, conns: 2 });
    c.proxy.emit('outputReleased', { bytes: 512, delayMs: 1 + (epoch % 7) });
    c.primary.emit('clockDrift', { driftNs: BigInt(-200_000 + (epoch % 100) * 1000), mode: 'slew' });
    c.secondary.emit('clockDrift', { driftNs: 0, mode: 'slew' });
    c.proxy.emit('clockDrift', { driftNs: 0, mode: 'slew' });
  }, tickMs);
  timer.unref();
  return {
    stop: () => clearInterval(timer),
    failover: () => {
      c.proxy.emit('failover', { durationMs: 420, term: 2 });
      c.proxy.emit('inputReplayed', { bytes: 128 });
      c.proxy.emit('role', { role: 'proxy', term: 2 });
    },
  };
}
