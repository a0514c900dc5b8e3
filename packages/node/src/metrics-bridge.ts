import type { FtvmEvents, PolicyName } from '@ftvm/metrics';
import type { NodeHost } from './node-host.js';

/**
 * Publishes a node's runtime events on the metrics bus: the runtimes stay free of
 * metrics code, and only @ftvm/metrics knows prom-client.
 */
export function bridgeNodeMetrics(node: NodeHost, bus: FtvmEvents, policy: PolicyName): void {
  node.on('role', (role, term) => {
    bus.emit('role', { role, term });
    bus.emit('ready', { ready: role === 'primary', reason: role === 'primary' ? 'serving the guest' : 'waiting for a full sync' });
  });
  node.on('primary', (rt) => {
    bus.emit('link', { peer: 'secondary', up: rt.hasSecondary });
    rt.on('protection', (p, reason) => bus.emit('protection', { protected: p, reason }));
    rt.on('collected', (epoch, pauseMs, dirtyPages, durationMs) => bus.emit('epochEnded', { epoch, policy, durationMs, pauseMs, dirtyPages }));
    rt.on('sent', (s) => {
      bus.emit('checkpointSent', { epoch: s.epoch, wireBytes: s.wireBytes, rawBytes: s.rawBytes, byCodec: s.byCodec });
      bus.emit('inFlight', { epochs: rt.core.inFlightEpochs, bytes: 0 });
    });
    rt.on('acked', (epoch, ackLatencyMs) => {
      bus.emit('checkpointAcked', { epoch, ackLatencyMs });
      bus.emit('inFlight', { epochs: rt.core.inFlightEpochs, bytes: 0 });
    });
    rt.on('committed', (epoch) => bus.emit('committed', { epoch }));
    rt.on('scrub', (checked, bad) => bus.emit('scrub', { pagesChecked: checked, mismatches: bad.length }));
  });
  node.on('secondary', (rt) => {
    bus.emit('protection', { protected: false, reason: 'secondary: holds the committed image' });
    rt.on('applied', (epoch) => {
      bus.emit('committed', { epoch });
      bus.emit('ready', { ready: true, reason: `holds epoch ${epoch}` });
    });
    rt.on('log', (level, msg, f) => {
      if (msg === 'checkpoint not applied') bus.emit('checkpointRejected', { epoch: Number(f?.epoch ?? 0), reason: String(f?.reason ?? '') });
    });
  });
}
